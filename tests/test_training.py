"""Loss of seed 001 eq. 3, self-energy regression, and the one committee trainer."""

import numpy as np
import pytest
import torch
from ase import Atoms

from conftest import emt_frames
from potstill.errors import MissingLabelError, PotstillError
from potstill.executors import make_executor
from potstill.frames import get_labels, set_labels
from potstill.models import ModelSpec, PotstillCalculator, load_checkpoint, predict
from potstill.training.committee import train_committee
from potstill.training.config import TrainConfig
from potstill.training.loss import LossWeights, energy_force_stress_loss
from potstill.training.self_energy import fit_self_energies
from potstill.training.strategies import split_keys


def test_loss_matches_equation_3_by_hand():
    pred = {
        "energy": torch.tensor([1.0, 2.0]),
        "forces": torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 2.0, 0]]),
        "stress": torch.tensor([[0.1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0.0]]),
    }
    target = {
        "energy": torch.tensor([0.0, 0.0]),
        "forces": torch.zeros(3, 3),
        "stress": torch.zeros(2, 6),
        "n_atoms": torch.tensor([2, 1]),
        "frame_index": torch.tensor([0, 0, 1]),
        "volume": torch.tensor([10.0, 5.0]),
        "has_stress": torch.tensor([True, True]),
    }
    terms = energy_force_stress_loss(pred, target, LossWeights(1.0, 0.1, 0.025))
    energy = (1.0 / np.sqrt(2) + 4.0 / 1.0) / 2
    forces = (1.0 / 2 + 4.0 / 1) / 2
    stress = ((10 * 0.1) ** 2 + 0.0) / 2
    assert float(terms["energy"]) == pytest.approx(energy)
    assert float(terms["forces"]) == pytest.approx(forces)
    assert float(terms["stress"]) == pytest.approx(stress)
    assert float(terms["loss"]) == pytest.approx(energy + 0.1 * forces + 0.025 * stress)


def test_self_energies_recover_per_element_energies():
    frames = []
    rng = np.random.default_rng(0)
    for _ in range(6):
        n_ni, n_al = rng.integers(1, 6, size=2)
        atoms = Atoms(["Ni"] * n_ni + ["Al"] * n_al)
        set_labels(atoms, "ref", energy=-4.4 * n_ni - 3.3 * n_al)
        frames.append(atoms)
    fitted = fit_self_energies(frames, "ref", ["Ni", "Al"])
    assert fitted["Ni"] == pytest.approx(-4.4) and fitted["Al"] == pytest.approx(-3.3)


def test_split_is_seeded_disjoint_and_complete():
    split = split_keys(range(50), 0.2, np.random.default_rng(3))
    assert len(split.validation) == 10 and len(split.train) == 40
    assert sorted(split.train + split.validation) == list(range(50))
    again = split_keys(range(50), 0.2, np.random.default_rng(3))
    other = split_keys(range(50), 0.2, np.random.default_rng(4))
    assert split.train == again.train and split.train != other.train


SMALL = ModelSpec("demo", ("Ni",), {"hidden": (16, 8)})


_FAST = dict(
    committee=2,
    max_epochs=25,
    batch_size=8,
    lr=3e-3,
    scheduler_patience=5,
    early_stopping_patience=25,
)


def test_training_learns_energies_forces_and_stress():
    frames = emt_frames(40, seed=1)
    test = emt_frames(10, seed=2)
    config = TrainConfig(**{**_FAST, "max_epochs": 40, "lr": 1e-3, "beta": 1.0})
    trained = train_committee(frames, "emt", model=ModelSpec("demo", ("Ni",)), config=config)
    model = trained.model
    first = trained.histories[0][0]
    best = trained.histories[0][trained.summaries[0]["best_epoch"]]
    assert best["energy_rmse"] < 0.5 * first["energy_rmse"]
    assert best["forces_rmse"] < 0.8 * first["forces_rmse"]
    # held-out frames: forces clearly better than predicting zero force
    pred = predict(model, test)
    f_pred = np.concatenate([p["forces"] for p in pred])
    f_ref = np.concatenate([get_labels(a, "emt", ("forces",)).forces for a in test])
    assert np.sqrt(((f_pred - f_ref) ** 2).mean()) < 0.75 * np.sqrt((f_ref**2).mean())
    # members differ (own seed, own split), and the committee reports their spread
    assert trained.splits[0].train != trained.splits[1].train
    assert all(p["energy_std"] > 0 for p in pred)


def test_same_seed_gives_identical_weights():
    frames = emt_frames(12, seed=3)
    config = TrainConfig(**{**_FAST, "committee": 1, "max_epochs": 3})
    a = train_committee(frames, "emt", model=SMALL, config=config).model
    b = train_committee(frames, "emt", model=SMALL, config=config).model
    c = train_committee(
        frames, "emt", model=SMALL, config=config.model_copy(update={"seed": 9})
    ).model
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values()
    ):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_members_in_parallel_equal_members_trained_one_after_another(tmp_path):
    """Over a two-worker process pool each member trains in its own process, on one
    thread, as it does serially: the same seeds give bit-identical weights."""
    from potstill.store import Store

    store = Store(tmp_path / "pool.db")
    ids = store.add(emt_frames(12, seed=7))
    config = TrainConfig(**{**_FAST, "committee": 3, "max_epochs": 3})
    serial = train_committee(store.frames(ids), "emt", model=SMALL, config=config)
    with make_executor("process", workers=2) as executor:
        parallel = train_committee(
            store.frames(ids),
            "emt",
            model=SMALL,
            config=config,
            executor=executor,
            out_dir=tmp_path / "members",
        )
    for k, (a, b) in enumerate(zip(serial.model.members, parallel.model.members)):
        for name, value in a.state_dict().items():
            assert torch.equal(value, b.state_dict()[name]), (k, name)
    assert serial.summaries[0]["best_metric"] == parallel.summaries[0]["best_metric"]
    assert [s.train for s in serial.splits] == [s.train for s in parallel.splits]
    assert all((tmp_path / "members" / f"member_{k}.pt").exists() for k in range(3))


def test_finished_members_are_reused_and_load_into_the_calculator(tmp_path):
    frames = emt_frames(12, seed=4)
    config = TrainConfig(**{**_FAST, "max_epochs": 3})
    first = train_committee(frames, "emt", model=SMALL, config=config, out_dir=tmp_path).model
    assert (tmp_path / "member_0.pt").exists() and (tmp_path / "member_1.pt").exists()
    saved = (tmp_path / "member_0.pt").stat().st_mtime_ns
    (tmp_path / "member_1.pt").write_bytes(b"truncated")  # as if killed while saving it
    again = train_committee(frames, "emt", model=SMALL, config=config, out_dir=tmp_path).model
    assert (tmp_path / "member_0.pt").stat().st_mtime_ns == saved  # reused, not retrained
    assert load_checkpoint(tmp_path / "member_1.pt") is not None  # retrained and saved whole
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    atoms = frames[0].copy()
    atoms.calc = PotstillCalculator(load_checkpoint(tmp_path / "member_0.pt"))
    direct = predict(first.members[0], [frames[0]])[0]
    assert atoms.get_potential_energy() == pytest.approx(direct["energy"], abs=1e-6)
    assert np.allclose(atoms.get_forces(), direct["forces"], atol=1e-6)
    # other data: the saved members do not match it and are trained again
    train_committee(emt_frames(12, seed=40), "emt", model=SMALL, config=config, out_dir=tmp_path)
    assert (tmp_path / "member_0.pt").stat().st_mtime_ns != saved


def test_bad_training_input_is_one_clear_error():
    frames = emt_frames(4)
    with pytest.raises(MissingLabelError, match="'dft'"):
        train_committee(frames, "dft", model=SMALL, config=TrainConfig(**_FAST))
    with pytest.raises(PotstillError, match="empty"):
        train_committee([], "emt", model=SMALL, config=TrainConfig(**_FAST))


def test_training_from_the_store_streams_and_matches_in_memory(tmp_path, monkeypatch):
    """Store-backed frames are read lazily (never all at once) and give the same model."""
    from potstill.store import Store, StoredFrames

    frames = emt_frames(12, seed=5)
    store = Store(tmp_path / "pool.db")
    ids = store.add(frames)
    lazy = store.frames(ids, chunk=4)
    reads = []
    original_get = Store.get
    monkeypatch.setattr(
        Store,
        "get",
        lambda self, ids=None, selection=None: (
            reads.append(len(ids)) or original_get(self, ids, selection)
        ),
    )
    config = TrainConfig(**{**_FAST, "committee": 1, "max_epochs": 2})
    from_store = train_committee(lazy, "emt", model=SMALL, config=config).model
    from_list = train_committee(frames, "emt", model=SMALL, config=config).model
    for a, b in zip(from_store.state_dict().values(), from_list.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert max(reads) <= 4  # never more than one chunk in memory
    assert isinstance(lazy.subset([0, 2]), StoredFrames)


def test_neighbor_cache_respects_its_byte_budget():
    from potstill.aev.neighbors import NeighborCache

    frames = emt_frames(6, seed=6)
    cache = NeighborCache(max_frames=100, max_bytes=1)
    for atoms in frames:
        cache.pairs(atoms, 5.2)
    assert len(cache) == 0 and cache.bytes == 0
    roomy = NeighborCache(max_frames=100)
    for atoms in frames + frames:
        roomy.pairs(atoms, 5.2)
    assert len(roomy) == 6 and roomy.bytes > 0


def test_fine_tuning_keeps_the_frozen_layers_and_lowers_the_stress_error(tmp_path):
    """Seed 001 section 2.2.3: the input and output layers stay as trained, the inner
    layers move, and weighting forces and stress up lowers the stress error."""
    frames = emt_frames(24, seed=5)
    config = TrainConfig(**{**_FAST, "committee": 1, "max_epochs": 15, "lr": 1e-3})
    initial = train_committee(frames, "emt", model=SMALL, config=config, out_dir=tmp_path / "a")
    tune = config.model_copy(
        update={
            "alpha": 0.2,
            "beta": 0.4,
            "gamma": 0.4,
            "freeze": ["input", "output"],
            "bias_lr": 1e-5,
            "best_by": "stress",
            "max_epochs": 15,
        }
    )
    everything = split_keys(range(len(frames)), 0.2, np.random.default_rng(0))
    everything.train = everything.validation = list(range(len(frames)))
    tuned = train_committee(
        frames,
        "emt",
        model=SMALL,
        config=tune,
        splits=[everything],
        warm_start=[tmp_path / "a" / "member_0.pt"],
    )
    before, after = initial.model.state_dict(), tuned.model.state_dict()
    layers = sorted({k.rsplit(".", 1)[0] for k in before if k.endswith(".weight")})
    network = [k for k in layers if k.startswith(layers[0].rsplit(".", 1)[0] + ".")]
    assert len(network) >= 3
    for name in (network[0], network[-1]):  # input and output layers: unchanged
        for part in ("weight", "bias"):
            assert torch.equal(before[f"{name}.{part}"], after[f"{name}.{part}"]), name
    assert any(not torch.equal(before[f"{k}.weight"], after[f"{k}.weight"]) for k in network[1:-1])
    stress = np.array([get_labels(a, "emt", ("stress",)).stress for a in frames])

    def stress_rmse(model):
        return np.sqrt(
            ((np.array([p["stress"] for p in predict(model, frames)]) - stress) ** 2).mean()
        )

    assert stress_rmse(tuned.model) < 0.9 * stress_rmse(initial.model)
    assert tuned.summaries[0]["warm_start_from"].endswith("member_0.pt")
