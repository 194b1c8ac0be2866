"""The ideal workflow (seed 003) end to end at toy size with the real Li SNAP in LAMMPS:
128 atoms of BCC lithium heated from 200 K to 800 K, substructures cut around the
uncertain atoms, labeled (calls counted), streamed into the Mahalanobis statistics and
learned on the fly; a vacuum-crop ablation run beside it and the initial model alone.

Checks the SNAP reference (forces and stress are its energy's derivatives), that each
label is computed once, that the statistics hold exactly the atoms labeled, that the
substructures are smaller than the frame, that the model learned on the fly is more
accurate on whole frames of its own trajectory than the initial one, and the summary
a script reads.
"""

import json

import numpy as np
import pytest
from ase.build import bulk

from conftest import write_config
from counting_reference import calls
from potstill.models import predict
from potstill.references import make_calculator
from potstill.rundir import RunDir
from potstill.store import Store
from potstill.validation.metrics import pool_errors
from potstill.workflows import ideal as ideal_module
from potstill.workflows import load_config
from potstill.workflows.ideal_loop import load_model


def tiny_config(path, log, **changes):
    """An ideal YAML at toy size, labels through the counting wrapper around the SNAP."""
    data = {
        "workflow": "ideal",
        "name": "ideal-tiny",
        "species": ["Li"],
        "reference": {
            "kind": "counting_reference:make_calculator",
            "name": "snap",
            "options": {"inner": "snap-li", "log": str(log)},
        },
        "executor": {"kind": "process", "workers": 2},
        "system": {"lattice_A": 3.506, "repeat": [4, 4, 4]},
        "initial": {"frames": 8, "repeat": [3, 3, 3], "rattle_A": 0.1, "strain": 0.02},
        "md": {"schedule": [[20, 200.0], [60, 800.0]], "check_every": 5, "frame_every": 10},
        "substructure": {"candidates": 10, "max_groups": 2, "embed_steps": 8},
        "update": {"epochs": 40, "replay": 16, "max_events": 3},
        "evaluation": {"frames": 6, "ablation": ["vacuum"], "baseline": True},
        "train": {  # the workflow's defaults (forces first) with fewer epochs
            "committee": 1,
            "max_epochs": 80,
            "batch_size": 4,
            "lr": 1e-3,
            "alpha": 0.05,
            "beta": 1.0,
            "gamma": 1e-5,
            "best_by": "loss",
        },
    }
    return write_config(path, data, changes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ideal")
    log = root / "calls.log"
    config = load_config(tiny_config(root / "ideal.yaml", log))
    rundir = RunDir(root / "run")
    summary = ideal_module.run(config, rundir)
    return config, rundir, summary, log


def test_snap_forces_and_stress_are_derivatives_of_its_energy():
    atoms = bulk("Li", "bcc", a=3.506, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=1)
    atoms.calc = make_calculator("snap-li")
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    h = 1e-4
    for i, j in [(0, 0), (5, 2), (11, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, j] += h
        minus.positions[i, j] -= h
        plus.calc = minus.calc = make_calculator("snap-li")
        numeric = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)
        assert forces[i, j] == pytest.approx(numeric, abs=2e-5)
    for a, b in [(0, 0), (1, 2)]:
        strain = np.eye(3)
        strain[a, b] += h
        strain_minus = np.eye(3)
        strain_minus[a, b] -= h
        energies = []
        for s in (strain, strain_minus):
            strained = atoms.copy()
            strained.set_cell(atoms.cell[:] @ s, scale_atoms=True)
            strained.calc = make_calculator("snap-li")
            energies.append(strained.get_potential_energy())
        numeric = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
        assert stress[a, b] == pytest.approx(numeric, abs=1e-6)
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-1.89, abs=0.02)


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_every_label_is_computed_once_and_substructures_are_small(tiny_run):
    config, rundir, summary, log = tiny_run
    computed = calls(log)
    assert len(computed) == len(set(computed))  # initial, substructure and test frames
    root = rundir.path / "ideal" / "ides"
    records = [json.loads(p.read_text()) for p in sorted(root.glob("iter_*/iteration.json"))]
    events = [r for r in records if r.get("n_new_frames") and r["iteration"] > 0]
    assert events, "the heated crystal never became uncertain"
    for r in events:
        assert r["outcome"] == "flagged" and r["max_score"] > r["threshold"]
        assert 0 < len(r["substructures"]) <= 2
        assert all(20 < s["n_atoms"] < 128 for s in r["substructures"])
        assert r["reference_seconds"] > 0
    stored = Store(root / "train.db").get()
    assert all("snap_energy" in f.info for f in stored)


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_the_statistics_hold_exactly_the_atoms_labeled(tiny_run):
    config, rundir, summary, log = tiny_run
    root = rundir.path / "ideal" / "ides"
    last = max(root.glob("iter_*"), key=lambda p: int(p.name[5:]))
    first_count = int(np.load(root / "iter_0" / "uncertainty.npz")["count"])
    last_count = int(np.load(last / "uncertainty.npz")["count"])
    stored = Store(root / "train.db").get()
    assert first_count == sum(len(f) for f in stored if f.info["al_iteration"] == 0)
    assert last_count == sum(len(f) for f in stored)  # every labeled atom, streamed in


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_the_updated_model_learned_the_substructures(tiny_run):
    """The model after the on-the-fly updates predicts the labeled substructures better
    than the initial model did; both are also scored on whole frames of the trajectory."""
    config, rundir, summary, log = tiny_run
    s = summary["ideal"]
    root = rundir.path / "ideal" / "ides"
    learned = [f for f in Store(root / "train.db").get() if f.info["al_iteration"] > 0]
    before = pool_errors(learned, predict(load_model(root / "iter_0"), learned), "snap")
    after = pool_errors(
        learned, predict(load_model(s["runs"]["ides"]["model_dir"]), learned), "snap"
    )
    assert after["forces_eV_per_A"]["mae"] < 0.9 * before["forces_eV_per_A"]["mae"]
    assert s["n_test_frames"] == 6
    assert set(s["errors"]) == {"initial", "ides", "vacuum"}
    for errors in s["errors"].values():
        assert 0 < errors["forces_eV_per_A"]["mae"] < 1.0
    assert s["runs"]["ides"]["outcome"] == "finished"  # the MD reached the schedule's end
    assert s["runs"]["ides"]["last_step"] == 80
    assert s["baseline"]["outcome"] in ("finished", "unstable")


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_summary_and_figures(tiny_run):
    config, rundir, summary, log = tiny_run
    s = summary["ideal"]
    ides = s["runs"]["ides"]
    assert ides["atoms_per_event"] == pytest.approx(np.mean(ides["atoms_per_event_list"]))
    assert ides["events"] == len(ides["event_steps"]) >= 1
    report = rundir.path / "report" / "ideal"
    for name in ("traces.png", "rdf.png", "labels.png", "errors.png", "index.html"):
        assert (report / name).stat().st_size > 1000
    on_disk = json.loads((rundir.path / "report" / "summary.json").read_text())
    assert on_disk["ideal"]["runs"]["ides"]["events"] == ides["events"]


def test_impossible_configs_are_one_line_errors(tmp_path):
    path = tiny_config(tmp_path / "bad.yaml", tmp_path / "log", species=["Li", "Al"])
    with pytest.raises(Exception, match="one element"):
        load_config(path)
    path = tiny_config(tmp_path / "bad.yaml", tmp_path / "log", md={"schedule": []})
    with pytest.raises(Exception, match="md.schedule"):
        load_config(path)
    path = tiny_config(tmp_path / "bad.yaml", tmp_path / "log", uncertainty={"kind": "committee"})
    with pytest.raises(Exception, match="committee >= 2"):
        load_config(path)
