"""Loss of seed 001 eq. 3, self-energy regression, and the committee trainer."""

import numpy as np
import pytest
import torch
from ase import Atoms

from conftest import emt_frames
from potstill.config import TrainConfig
from potstill.errors import MissingLabelError, PotstillError
from potstill.frames import get_labels, set_labels
from potstill.models import ANIModel, load_checkpoint
from potstill.models.calculator import PotstillCalculator
from potstill.models import predict
from potstill.training.loss import LossWeights, energy_force_stress_loss
from potstill.training.self_energy import fit_self_energies
from potstill.training.trainer import split_indices, train_committee


def test_loss_matches_equation_3_by_hand():
    pred = {"energy": torch.tensor([1.0, 2.0]), "forces": torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 2.0, 0]]),
            "stress": torch.tensor([[0.1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0.0]])}
    target = {"energy": torch.tensor([0.0, 0.0]), "forces": torch.zeros(3, 3), "stress": torch.zeros(2, 6),
              "n_atoms": torch.tensor([2, 1]), "frame_index": torch.tensor([0, 0, 1]),
              "volume": torch.tensor([10.0, 5.0]), "has_stress": torch.tensor([True, True])}
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
    train, val = split_indices(50, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(50))
    again, _ = split_indices(50, 0.2, seed=3)
    other, _ = split_indices(50, 0.2, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def _factory(seed):
    return ANIModel.from_preset("demo", ["Ni"], hidden=(16, 8), seed=seed)


_FAST = dict(committee=2, max_epochs=25, batch_size=8, lr=3e-3, scheduler_patience=5, early_stopping_patience=25)


def test_training_learns_energies_forces_and_stress():
    frames = emt_frames(40, seed=1)
    test = emt_frames(10, seed=2)
    config = TrainConfig(**{**_FAST, "max_epochs": 40, "lr": 1e-3, "beta": 1.0})
    model, results = train_committee(
        frames, "emt", model_factory=lambda s: ANIModel.from_preset("demo", ["Ni"], seed=s), config=config
    )
    first = results[0].history[0]
    best = results[0].history[results[0].best_epoch]
    assert best["energy_rmse"] < 0.5 * first["energy_rmse"]
    assert best["forces_rmse"] < 0.8 * first["forces_rmse"]
    # held-out frames: forces clearly better than predicting zero force
    pred = predict(model, test)
    f_pred = np.concatenate([p["forces"] for p in pred])
    f_ref = np.concatenate([get_labels(a, "emt", ("forces",)).forces for a in test])
    assert np.sqrt(((f_pred - f_ref) ** 2).mean()) < 0.75 * np.sqrt((f_ref**2).mean())
    # members differ (own seed, own split), and the committee reports their spread
    assert results[0].train_indices != results[1].train_indices
    assert all(p["energy_std"] > 0 for p in pred)


def test_same_seed_gives_identical_weights():
    frames = emt_frames(12, seed=3)
    config = TrainConfig(**{**_FAST, "committee": 1, "max_epochs": 3})
    a, _ = train_committee(frames, "emt", model_factory=_factory, config=config)
    b, _ = train_committee(frames, "emt", model_factory=_factory, config=config)
    c, _ = train_committee(frames, "emt", model_factory=_factory, config=config.model_copy(update={"seed": 9}))
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_finished_members_are_reused_and_load_into_the_calculator(tmp_path):
    frames = emt_frames(12, seed=4)
    config = TrainConfig(**{**_FAST, "max_epochs": 3})
    first, results = train_committee(frames, "emt", model_factory=_factory, config=config, out_dir=tmp_path)
    assert (tmp_path / "member_0.pt").exists() and (tmp_path / "member_1.pt").exists()
    (tmp_path / "member_1.pt").write_bytes(b"truncated")  # as if killed while saving it
    again, results = train_committee(frames, "emt", model_factory=_factory, config=config, out_dir=tmp_path)
    assert isinstance(results[0], dict) and not isinstance(results[1], dict)
    atoms = frames[0].copy()
    atoms.calc = PotstillCalculator(load_checkpoint(tmp_path / "member_0.pt"))
    direct = predict(first.members[0], [frames[0]])[0]
    assert atoms.get_potential_energy() == pytest.approx(direct["energy"], abs=1e-6)
    assert np.allclose(atoms.get_forces(), direct["forces"], atol=1e-6)


def test_bad_training_input_is_one_clear_error():
    frames = emt_frames(4)
    with pytest.raises(MissingLabelError, match="'dft'"):
        train_committee(frames, "dft", model_factory=_factory, config=TrainConfig(**_FAST))
    with pytest.raises(PotstillError, match="empty"):
        train_committee([], "emt", model_factory=_factory, config=TrainConfig(**_FAST))


def test_training_from_the_store_streams_and_matches_in_memory(tmp_path):
    """Store-backed frames are read lazily (never all at once) and give the same model."""
    from potstill.store import Store, StoredFrames

    frames = emt_frames(12, seed=5)
    store = Store(tmp_path / "pool.db")
    ids = store.add(frames)
    lazy = store.frames(ids, chunk=4)
    reads = []
    original_get = store.get
    store.get = lambda ids=None, selection=None: reads.append(len(ids)) or original_get(ids, selection)
    config = TrainConfig(**{**_FAST, "committee": 1, "max_epochs": 2})
    from_store, _ = train_committee(lazy, "emt", model_factory=_factory, config=config)
    from_list, _ = train_committee(frames, "emt", model_factory=_factory, config=config)
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
