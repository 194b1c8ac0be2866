"""The rare_events workflow (seed 004): the alkane, molecules in the ANI model, the pick
of new SMD frames, and the loop end to end at toy size with the real GFN2-xTB (tblite):
propane pulled fast, a committee of 2-3 small models.

Checks that the work curve plateaus once the bond is broken, that every SMD run starts
from the one stored state, that each label is computed once (also across a resume) and
that a reference that fails on a frame leaves that frame out without stopping the loop.
"""

import json

import numpy as np
import pytest
import yaml
from ase.optimize import BFGS

from conftest import write_config
from counting_reference import calls
from potstill.models import Committee, PotstillCalculator, predict
from potstill.models.ani import ANIModel
from potstill.molecules import alkane
from potstill.references import make_calculator
from potstill.rundir import RunDir
from potstill.sampling.smd import Trajectory
from potstill.store import Store
from potstill.workflows import load_config
from potstill.workflows import rare_events as rare_events_module
from potstill.workflows.rare_events_loop import bonded, select_frames

KCAL = 23.060548


def tiny_config(path, log, **changes):
    """A rare_events YAML at toy size (propane, 600 SMD steps at 10 A/ps), labels
    through the counting wrapper around the real GFN2-xTB."""
    data = {
        "workflow": "rare_events",
        "name": "rare-events-tiny",
        "species": ["H", "C"],
        "reference": {
            "kind": "counting_reference:make_calculator",
            "name": "xtb",
            "options": {"inner": "xtb", "log": str(log)},
        },
        "executor": {"kind": "process", "workers": 2},
        "smd": {
            "n_carbons": 3,
            "langevin_steps": 100,
            "berendsen_steps": 100,
            "speed_A_per_ps": 10.0,
            "distance_A": 3.0,
            "plateau_steps": 20,
            "thermal_starts": 2,
            "initial_every": 5,
            "test_every": 5,
        },
        "learning": {
            "runs": [{"name": "inherited-2", "strategy": "inherited", "committee": 2}],
            "max_iterations": 3,
            "uq_window": 100,
            "k_sigma": 1.0,
            "max_new": 4,
            "min_energy_change_kcal_per_mol": 0.1,
            "neighbour_A": 6.0,
            "warm_epochs": 5,
        },
        "loading": {"run": "inherited-2", "speeds_A_per_ps": [20.0]},
        "model": {"preset": "demo", "overrides": {"hidden": [16, 16]}},
        "train": {"max_epochs": 15, "batch_size": 16, "lr": 1e-3, "gamma": 0.0},
    }
    return write_config(path, data, changes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rare_events")
    log = root / "calls.log"
    config = load_config(tiny_config(root / "re.yaml", log))
    rundir = RunDir(root / "run")
    summary = rare_events_module.run(config, rundir)
    return config, rundir, summary, log


def test_alkane_is_all_trans_hexane_and_relaxes_with_xtb():
    hexane = alkane(6)
    assert hexane.get_chemical_formula() == "C6H14" and not hexane.pbc.any()
    d = hexane.get_all_distances()
    carbons = d[:6, :6]
    assert np.allclose(np.diag(carbons, 1), 1.53)
    assert np.allclose(d[:6, 6:].min(axis=0), 1.09)  # every H bonded to one carbon
    np.fill_diagonal(d, np.inf)
    assert d[6:, 6:].min() > 1.7  # no H-H clash
    hexane.calc = make_calculator("xtb")
    BFGS(hexane, logfile=None).run(fmax=0.01)
    assert 6.3 < hexane.get_distance(0, 5) < 6.45  # the 6.3-6.4 A start
    d = hexane.get_all_distances()
    assert 1.50 < np.diag(d[:6, :6], 1).min() and np.diag(d[:6, :6], 1).max() < 1.56


def test_molecule_forces_of_a_two_element_model_are_finite_differences():
    atoms = alkane(4)
    atoms.rattle(0.05, seed=3)
    model = ANIModel.from_preset("demo", ["H", "C"], seed=1).double()
    atoms.calc = PotstillCalculator(model)
    forces = atoms.get_forces()
    h, numeric = 1e-4, np.zeros_like(forces)
    for i in range(len(atoms)):
        for j in range(3):
            energies = []
            for step in (h, -h):
                moved = atoms.copy()
                moved.positions[i, j] += step
                moved.calc = PotstillCalculator(model)
                energies.append(moved.get_potential_energy())
            numeric[i, j] = -(energies[0] - energies[1]) / (2 * h)
    assert np.abs(forces - numeric).max() < 1e-6 < np.abs(forces).max()
    # batched molecules of two sizes equal single frames; no stress without a cell
    frames = [atoms, alkane(2)]
    batch = predict(model, frames)
    assert "stress" not in batch[0]
    for frame, out in zip(frames, batch):
        frame.calc = PotstillCalculator(model)
        assert out["energy"] == pytest.approx(frame.get_potential_energy(), abs=1e-9)
    # the committee spread of the total energy, the per-frame UQ of seed 004
    committee = Committee([model, ANIModel.from_preset("demo", ["H", "C"], seed=2).double()])
    energies = [predict(m, [atoms])[0]["energy"] for m in committee.members]
    assert predict(committee, [atoms])[0]["energy_std"] == pytest.approx(
        abs(energies[0] - energies[1]) / 2, rel=1e-9
    )


def test_select_frames_thresholds_filters_and_spreads():
    n = 400
    uq = np.full(n, 1.0)
    uq[::2] += 0.1  # window: mean 1.05, population std 0.05 -> threshold 1.2 at k = 3
    uq[200:] = 5.0  # every later frame a candidate
    distance = 6.4 + 0.0015 * np.arange(n)  # 0.0015 A per frame
    energy = 0.01 * np.arange(n)  # 0.01 eV per frame
    ok = np.ones(n, dtype=bool)
    ok[300:310] = False  # an atom without neighbours: never kept
    picked, info = select_frames(
        uq,
        distance,
        energy,
        ok,
        window=200,
        k_sigma=3.0,
        min_distance_change_A=0.01,
        min_energy_change_eV=0.05,
        max_new=1000,
    )
    assert info["threshold_eV"] == pytest.approx(1.05 + 3 * 0.05)
    assert info["n_above_threshold"] == 200
    # moved more than 0.01 A (7 frames) and 0.05 eV (6 frames) from the last kept one
    assert picked[0] == 200 and np.all(np.diff(picked[picked < 300]) == 7)
    assert not set(picked) & set(range(300, 310))
    spread, _ = select_frames(
        uq,
        distance,
        energy,
        ok,
        window=200,
        k_sigma=3.0,
        min_distance_change_A=0.01,
        min_energy_change_eV=0.05,
        max_new=5,
    )
    assert len(spread) == 5 and spread[0] == picked[0] and spread[-1] == picked[-1]


def test_bonded_finds_an_atom_that_flew_off():
    positions = alkane(3).positions[None].repeat(2, axis=0)
    positions[1, -1] += [10.0, 0, 0]
    assert bonded(positions, 3.0).tolist() == [True, False]


def test_tiny_run_learns_along_the_pull_and_reports(tiny_run):
    config, rundir, summary, _ = tiny_run
    reference = summary["reference"]
    starts = np.array(reference["thermal_starts_Ea_eV"])
    assert reference["Ea_kcal_per_mol"] == pytest.approx(starts[0] * KCAL)
    # propane's C-C bond: a few eV of work once it is broken
    assert 3.0 < starts.min() and starts.max() < 8.0
    root = rundir.path / "rare_events"
    smd = Trajectory.load(root / "reference" / "smd_0.npz")
    assert smd.distance[-1] - smd.distance[0] > 2.0  # broken: the carbons followed the spring
    tail = smd.work[-20:]
    assert tail.max() - tail.min() < 0.05 * tail.mean()  # a plateau
    run = summary["runs"]["inherited-2"]
    assert len(run["abs_error_kcal_per_mol"]) == 3
    for i, error in enumerate(run["abs_error_kcal_per_mol"]):
        record = json.loads((root / "inherited-2" / f"iter_{i}" / "iteration.json").read_text())
        assert record["abs_error_kcal_per_mol"] == pytest.approx(
            abs(record["Ea_eV"] - starts[0]) * KCAL
        )
        nnp = Trajectory.load(root / "inherited-2" / f"iter_{i}" / "smd.npz")
        np.testing.assert_allclose(nnp.positions[0], smd.positions[0])  # one stored start
    assert run["n_new_frames"][0] == 41  # 200 equilibration steps, every 5th
    assert run["n_training_frames"][0] == 3 * 41  # and two noisy copies of each
    assert sum(run["n_new_frames"][1:]) > 0
    store = Store(root / "inherited-2" / "train.db", create=False)
    copies = [f.info.get("augment_copy", 0) for f in store.get(store.ids("al_iteration=1"))]
    assert sorted(set(copies)) == [0, 1, 2]  # each selected frame and two noisy copies
    assert set(summary["rare_events"]["loading"]) == {"20"}
    for name in ("error.png", "uq.png", "work_inherited-2.png", "loading.png", "index.html"):
        assert (rundir.report / "rare_events" / name).exists()


def _keys(frames):
    return [f"{f.info['al_key']}-{f.info.get('augment_copy', 0)}" for f in frames]


def test_each_label_is_computed_once_and_resume_recomputes_nothing(tiny_run):
    config, rundir, summary, log = tiny_run
    computed = [key for key in calls(log) if key != "None"]  # "None": the MD runs' calls
    frames = [
        f
        for f in Store(rundir.path / "rare_events" / "inherited-2" / "train.db").get()
        if f.info["al_iteration"] > 0 or f.info.get("augment_copy")  # not labeled by MD
    ]
    labeled = _keys(f for f in frames if "xtb_energy" in f.info)
    failed = _keys(f for f in frames if "xtb_energy" not in f.info)
    assert labeled and all(computed.count(key) == 1 for key in labeled)
    assert all(computed.count(key) == 3 for key in failed)  # an SCF that fails, tried 3 times
    assert sorted(computed) == sorted(labeled + 3 * failed)
    before = len(calls(log))
    resumed = rare_events_module.run(config, RunDir(rundir.path, resume=True))
    assert len(calls(log)) == before  # no reference call at all: MD runs and labels kept
    assert resumed["runs"] == summary["runs"] | {
        "inherited-2": summary["runs"]["inherited-2"]
        | {"total_wall_time_s": resumed["runs"]["inherited-2"]["total_wall_time_s"]}
    }


def test_a_frame_the_reference_fails_on_is_left_out_and_the_loop_goes_on(tmp_path, tiny_run):
    _, rundir, _, _ = tiny_run
    record = json.loads(
        (rundir.path / "rare_events" / "inherited-2" / "iter_1" / "iteration.json").read_text()
    )
    first = 1_000_000 + record["selected_frames"][0]
    log = tmp_path / "calls.log"
    path = tiny_config(
        tmp_path / "re.yaml",
        log,
        learning={"max_iterations": 2},
        loading={"speeds_A_per_ps": []},
    )
    raw = yaml.safe_load(path.read_text())
    raw["reference"]["options"]["nan_on"] = [f"{first}-1"]
    path.write_text(yaml.safe_dump(raw))
    summary = rare_events_module.run(load_config(path), RunDir(tmp_path / "run"))
    assert calls(log).count(f"{first}-1") == 3  # tried, retried twice, recorded
    frames = Store(tmp_path / "run" / "rare_events" / "inherited-2" / "train.db").get()
    failed = {key: f for key, f in zip(_keys(frames), frames) if "xtb_energy" not in f.info}
    assert "non-finite" in failed[f"{first}-1"].info["xtb_label_error"]
    run = summary["runs"]["inherited-2"]
    assert run["n_label_failures"] == [0, len(failed)] and len(run["abs_error_kcal_per_mol"]) == 2
    # the loop trained on the rest: the new key's other copies are in iteration 1's data
    record = json.loads(
        (tmp_path / "run" / "rare_events" / "inherited-2" / "iter_1" / "iteration.json").read_text()
    )
    assert record["n_training_frames"] == len(frames) - len(failed)


def test_bad_settings_are_one_line_errors(tmp_path):
    from potstill.errors import PotstillError

    with pytest.raises(PotstillError, match="species must be"):
        load_config(tiny_config(tmp_path / "a.yaml", tmp_path / "l", species=["C", "O"]))
    with pytest.raises(PotstillError, match="loading.run"):
        load_config(tiny_config(tmp_path / "b.yaml", tmp_path / "l", loading={"run": "nope"}))
    with pytest.raises(PotstillError, match="plateau_steps"):
        load_config(tiny_config(tmp_path / "c.yaml", tmp_path / "l", smd={"plateau_steps": 5000}))
