"""Committee active-learning distillation (seed 000 SI Note 4), the random and inherited
strategies and noise augmentation (seed 004), the executors."""

import json
import operator

import numpy as np
import pytest
from ase.calculators.emt import EMT

from conftest import emt_frames
from potstill.errors import PotstillError
from potstill.executors import make_executor
from potstill.frames import get_labels, labels_from_calculator
from potstill.labeling import augment_with_noise
from potstill.models import load_checkpoint, parameter_checksum
from potstill.references import ReferenceConfig
from potstill.rundir import RunDir
from potstill.store import Store
from potstill.training import committee as committee_module
from potstill.uncertainty import UQStats
from potstill.uncertainty.committee import committee_uncertainty
from potstill.workflows import distill as distill_module
from potstill.workflows import load_config
from potstill.workflows.distill import Config
from potstill.workflows.distill_loop import load_committee


def distill(config, out, **flags):
    return distill_module.run(config, RunDir(out, **flags))


_TRAIN = dict(
    committee=3,
    max_epochs=6,
    batch_size=8,
    lr=3e-3,
    scheduler_patience=5,
    early_stopping_patience=10,
)


def _liquid_like(seed: int):
    """A 4-atom Ni cell unlike the near-perfect FCC frames: compressed and strongly
    displaced (a stand-in for a liquid frame among solid ones)."""
    from ase.build import bulk

    atoms = bulk("Ni", "fcc", a=3.30, cubic=True)
    atoms.positions += np.random.default_rng(seed).uniform(-0.45, 0.45, size=(4, 3))
    atoms.calc = EMT()
    return labels_from_calculator(atoms, "emt")


@pytest.fixture
def pool(tmp_path):
    """24 solid 4-atom frames; position 13 (in chunk 1 of 3) is the liquid-like one."""
    frames = emt_frames(24, seed=5, size=1)
    frames[13] = _liquid_like(1)
    store = Store(tmp_path / "pool.db")
    store.add(frames)
    return store


def _config(pool, **distill) -> Config:
    return Config.model_validate(
        {
            "species": ["Ni"],
            "reference": {"kind": "emt", "name": "emt"},
            "executor": "serial",
            "model": {"preset": "demo", "overrides": {"hidden": [16, 8]}},
            "train": _TRAIN,
            "distill": {
                "pool": pool.url,
                "n_chunks": 3,
                "k_sigma": 3.0,
                "augment_copies": 1,
                **distill,
            },
        }
    )


def _record(out, i):
    return json.loads((out / "distill" / f"iter_{i}" / "iteration.json").read_text())


def test_random_strategy_selects_the_unusual_frame_above_mu_plus_k_sigma(pool, tmp_path):
    out = tmp_path / "run"
    summary = distill(_config(pool), out)
    ids = pool.ids()
    first, second = _record(out, 0), _record(out, 1)
    # chunks are sequential and cover the pool
    chunks = [_record(out, i)["chunk"] for i in range(3)]
    assert chunks == [[0, 8], [8, 16], [16, 24]]
    assert first["new_ids"] == ids[:8] and first["threshold_eV"] is None
    # the liquid-like frame is kept, and the threshold is mu + k sigma of the atomic
    # stds of the training frames under iteration 0's committee
    assert ids[13] in second["new_ids"]
    assert len(second["new_ids"]) < 8
    committee = load_committee(out / "distill", 0, 3)
    train_uq = committee_uncertainty(committee, pool.get(ids[:8]))
    stats = UQStats.of(train_uq.atom_std)
    assert second["threshold_eV"] == pytest.approx(stats.mu + 3.0 * stats.sigma, rel=1e-6)
    assert second["threshold_eV"] == pytest.approx(second["mu_eV"] + 3.0 * second["sigma_eV"])
    # random strategy: every member re-split from scratch, no warm start
    old, new = first["splits"], second["splits"]
    assert any(
        sorted(n["validation"]) != sorted(o["validation"])
        and set(o["validation"]) - set(n["validation"])
        for o, n in zip(old, new)
    )
    assert all(m["warm_start_from"] is None for m in second["members"])
    # outputs: record, selected ids, committee, report
    selected = json.loads((out / "distill" / "selected_ids.json").read_text())
    assert selected["ids"] == _record(out, 2)["selected_ids"] and ids[13] in selected["ids"]
    assert summary["fraction_kept"] == pytest.approx(len(selected["ids"]) / 24)
    assert len(summary["curve"]) == 3 and all(
        r["pool_energy_mae_meV_per_atom"] > 0 for r in summary["curve"]
    )
    assert (out / "report" / "distill" / "distill_curve.png").stat().st_size > 0
    assert json.loads((out / "report" / "summary.json").read_text())["distill"][
        "n_selected"
    ] == len(selected["ids"])
    assert len(load_checkpoint(out / "distill" / "committee.pt")) == 3


def test_inherited_keeps_old_splits_and_warm_starts(pool, tmp_path):
    out = tmp_path / "run"
    distill(
        _config(pool, strategy="inherited", n_chunks=2, augment_copies=2, augment_delta_A=0.03), out
    )
    first, second = _record(out, 0), _record(out, 1)
    assert second["n_new"] > 0
    assert (
        second["n_training_frames"] == 2 * second["n_selected"]
    )  # each kept frame + one noisy copy
    for k, (old, new) in enumerate(zip(first["splits"], second["splits"])):
        old_ids = set(old["train"]) | set(old["validation"])
        assert set(old["train"]) <= set(new["train"]) and set(old["validation"]) <= set(
            new["validation"]
        )
        assert (set(new["train"]) | set(new["validation"])) - old_ids == set(second["new_ids"])
        previous = load_checkpoint(out / "distill" / "iter_0" / f"member_{k}.pt")
        member = second["members"][k]
        assert member["warm_start_from"].endswith(f"iter_0/member_{k}.pt")
        assert member["initial_checksum"] == parameter_checksum(previous)


def test_final_pass_retrains_the_inherited_committee_on_the_distilled_set(pool, tmp_path):
    out = tmp_path / "run"
    distill(_config(pool, strategy="inherited", n_chunks=2), out)
    assert not (out / "distill" / "iter_2").exists()
    # a finished run gains the final pass on resume: the pass adds no frames to the settings
    summary = distill(
        _config(pool, strategy="inherited", n_chunks=2, final_pass=True), out, resume=True
    )
    last, final = _record(out, 1), _record(out, 2)
    assert (
        final["final_pass"]
        and final["chunk"] is None
        and final["n_new"] == 0
        and final["retrained"]
    )
    assert final["selected_ids"] == last["selected_ids"] and final["splits"] == last["splits"]
    assert final["fraction_kept"] == last["fraction_kept"]
    for k, member in enumerate(final["members"]):
        previous = load_checkpoint(out / "distill" / "iter_1" / f"member_{k}.pt")
        assert member["warm_start_from"].endswith(f"iter_1/member_{k}.pt")
        assert member["initial_checksum"] == parameter_checksum(previous)
        trained = load_checkpoint(out / "distill" / "iter_2" / f"member_{k}.pt")
        assert parameter_checksum(trained) != member["initial_checksum"]
    assert summary["final_pass"] and len(summary["curve"]) == 3
    assert summary["pool_energy_mae_meV_per_atom"] == final["pool_energy_mae_meV_per_atom"]
    assert (
        "| final | distilled set | 0 |"
        in (out / "report" / "distill" / "distill_table.md").read_text()
    )


def test_budget_keeps_the_highest_scores_above_the_threshold_and_no_more(pool, tmp_path):
    out = tmp_path / "run"
    summary = distill(_config(pool, k_sigma=0.1, budget=11), out)
    ids = pool.ids()
    first, second, third = (_record(out, i) for i in range(3))
    assert second["n_above_threshold"] > 3  # the budget binds: 8 + 3 = 11
    assert second["n_new"] == 3 and second["n_cut_by_budget"] == second["n_above_threshold"] - 3
    assert third["n_new"] == 0 and third["n_cut_by_budget"] == third["n_above_threshold"]
    scores = np.load(out / "distill" / "iter_0" / "uq.npz")["score"][8:16]
    top = sorted(ids[8 + j] for j in np.argsort(-scores)[:3])
    assert second["new_ids"] == top and second["threshold_eV"] < scores[np.argsort(-scores)[2]]
    assert summary["n_selected"] == 11 and summary["budget_frames"] == 11
    assert summary["n_cut_by_budget"] == second["n_cut_by_budget"] + third["n_cut_by_budget"]
    # a fraction of the pool; and a budget below iteration 0 is a one-line error
    assert Config.model_validate(_config(pool, budget=0.17).model_dump()).distill.budget == 0.17
    with pytest.raises(PotstillError, match="budget allows 4 frames but iteration 0 keeps 8"):
        distill(_config(pool, budget=4), tmp_path / "small")


def test_resume_after_an_interrupted_iteration_trains_only_what_is_left(
    pool, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    calls = []
    real = committee_module.train_member

    def interrupted(task, progress=None):
        if "iter_1" in task.out_path and task.index == 1:
            raise KeyboardInterrupt
        calls.append(task.out_path)
        return real(task, progress=progress)

    monkeypatch.setattr(committee_module, "train_member", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(_config(pool), out)
    assert len(calls) == 4 and not (out / "distill" / "iter_1" / "iteration.json").exists()
    with pytest.raises(PotstillError, match="--resume"):
        distill(_config(pool), out)
    member_0 = out / "distill" / "iter_1" / "member_0.pt"
    saved = member_0.stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(
        committee_module,
        "train_member",
        lambda task, progress=None: calls.append(task.out_path) or real(task),
    )
    distill(_config(pool), out, resume=True)
    # iteration 0 is not retrained; member 0 of iteration 1 is reused from disk
    assert calls and not any("iter_0" in path for path in calls)
    assert member_0.stat().st_mtime_ns == saved
    assert (out / "distill" / "iter_2" / "iteration.json").exists()
    with pytest.raises(PotstillError, match="other settings"):
        distill(_config(pool, k_sigma=1.0), out, resume=True)


def test_a_noisy_copy_the_reference_fails_on_is_recorded_and_left_out(pool, tmp_path, monkeypatch):
    from pathlib import Path

    from counting_reference import calls

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    log = tmp_path / "calls.log"
    config = _config(pool, n_chunks=2, augment_copies=2, augment_delta_A=0.03)
    failing = {
        "kind": "counting_reference:make_calculator",
        "name": "emt",
        "options": {"inner": "emt", "log": str(log), "fail_on": [2]},
    }
    config = Config.model_validate({**config.model_dump(by_alias=True), "reference": failing})
    distill(config, tmp_path / "run")
    first = _record(tmp_path / "run", 0)
    # chunk 0: 12 frames and their copies, less the failed one
    assert first["n_label_failures"] == 1 and first["n_training_frames"] == 2 * 12 - 1
    keys = [k for k in calls(log) if k != "None"]  # later iterations keep the liquid-like frame
    assert keys.count(2) == 3 and len(set(keys)) == len(keys) - 2  # the other copies once each
    failed = Store(tmp_path / "run" / "distill" / "train.db").get(selection="emt_label_attempts>0")
    assert len(failed) == 1 and "node lost on frame 2" in failed[0].info["emt_label_error"]
    assert all(
        len(rows) == 2 for pid, rows in first["all_rows"].items() if pid != str(pool.ids()[2])
    )


def test_augmentation_copy_zero_is_the_frame_and_copies_are_relabeled():
    frames = emt_frames(2, seed=3, size=1)
    reference = ReferenceConfig(kind="emt", name="emt")
    copies = augment_with_noise(frames, copies=3, delta_A=0.04, reference=reference, seed=0)
    assert len(copies) == 6
    for f, frame in enumerate(frames):
        original, *noisy = copies[3 * f : 3 * f + 3]
        assert (
            np.array_equal(original.positions, frame.positions)
            and original.info["augment_copy"] == 0
        )
        assert get_labels(original, "emt").energy == get_labels(frame, "emt").energy
        for copy in noisy:
            shift = np.abs(copy.positions - frame.positions)
            assert 0 < shift.max() <= 0.04
            check = copy.copy()
            check.calc = EMT()
            assert get_labels(copy, "emt", ("energy", "forces")).energy == pytest.approx(
                check.get_potential_energy()
            )
            assert get_labels(copy, "emt").energy != get_labels(frame, "emt").energy
    again = augment_with_noise(frames, copies=3, delta_A=0.04, reference=reference, seed=0)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(copies, again))
    with pytest.raises(PotstillError, match="copies"):
        augment_with_noise(frames, copies=0, delta_A=0.04, reference=reference, seed=0)


def test_bad_distill_config_is_one_line_error(pool, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("workflow: distill\ndistill: {k_sigma: 0}\n")
    with pytest.raises(PotstillError, match="k_sigma") as error:
        load_config(path)
    assert "\n" not in str(error.value)
    with pytest.raises(PotstillError, match="n_chunks = 30 exceeds the 24 pool frames") as error:
        distill(_config(pool, n_chunks=30), tmp_path / "run")
    assert "\n" not in str(error.value)
    with pytest.raises(PotstillError, match="at least 2 models"):
        distill(
            Config.model_validate(
                {**_config(pool).model_dump(by_alias=True), "train": {"committee": 1}}
            ),
            tmp_path / "run2",
        )


def test_executors_run_jobs_and_dask_is_optional():
    with make_executor("serial") as executor:
        assert executor.submit(operator.add, 2, 3).result() == 5
        failing = executor.submit(operator.truediv, 1, 0)
        with pytest.raises(ZeroDivisionError):
            failing.result()
    with make_executor("process", workers=2) as executor:
        assert list(executor.map(operator.mul, [1, 2, 3], [4, 5, 6])) == [4, 10, 18]
    with pytest.raises(PotstillError, match="unknown executor"):
        make_executor("threads")
    with make_executor("auto", workers=4, jobs=1) as executor:  # one job: nothing to spread
        assert executor.workers == 1


def test_baseline_run_gives_the_mae_ratio_to_the_all_frames_committee(pool, tmp_path):
    base, run = tmp_path / "all", tmp_path / "run"
    all_frames = distill(_config(pool, n_chunks=1), base)
    assert all_frames["n_selected"] == 24 and all_frames["fraction_kept"] == 1.0
    pending = distill(_config(pool, n_chunks=2, baseline_run=str(tmp_path / "later")), run)
    assert "missing" in pending["baseline"]  # noted, nothing lost: resume once it exists
    summary = distill(_config(pool, n_chunks=2, baseline_run=str(base)), run, resume=True)
    reference = all_frames["pool_energy_mae_meV_per_atom"]
    assert summary["baseline"]["pool_energy_mae_meV_per_atom"] == reference
    assert summary["baseline"]["mae_ratio"] == pytest.approx(
        summary["pool_energy_mae_meV_per_atom"] / reference
    )
    table = (run / "report" / "distill" / "distill_table.md").read_text().splitlines()
    assert len(table) == 2 + 2 + 1 and table[-1].startswith("| all frames | | | 24 | 100.0 |")
    assert "distill_curve.png" in (run / "report" / "distill" / "index.html").read_text()
    other = tmp_path / "other"
    distill(_config(pool, n_chunks=1, stride=2), other)
    with pytest.raises(PotstillError, match="not an n_chunks: 1 run of the same 24 pool frames"):
        distill(_config(pool, n_chunks=2, baseline_run=str(other)), run, resume=True)
