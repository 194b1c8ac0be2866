"""Fault injection: every long-running command, killed with SIGKILL at named points (right
after a write, after a member, after an iteration) or at a seeded random time, then rerun
with --resume, ends as an uninterrupted run does, and no reference call is repeated for
a label that had been stored (counted by a wrapper around the real EMT reference).

The kill points are ``potstill.faults.kill_point`` (``POTSTILL_KILL_AT=<point>:<n>``).
The quick cases run in the default suite; the longer ones are marked ``slow``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import emt_frames, unlabeled_store
from counting_reference import calls
from potstill.models import load_checkpoint
from potstill.store import Store

HERE = Path(__file__).parent
POTSTILL = [sys.executable, "-c", "from potstill.cli import main; main()"]
KILLED = -signal.SIGKILL
COUNTING = "counting_reference:make_calculator"


def _run(*args, kill_at=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    env.pop("POTSTILL_KILL_AT", None)
    if kill_at:
        env["POTSTILL_KILL_AT"] = kill_at
    return subprocess.run(
        [*POTSTILL, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )


def _killed_then_resumed(args, kill_at):
    """Run ``args`` killed at ``kill_at``, then again with --resume."""
    killed = _run(*args, kill_at=kill_at)
    assert killed.returncode == KILLED, (
        f"not killed at {kill_at}: {killed.returncode} {killed.stderr[-1500:]}"
    )
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return resumed


def _yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def _frames_equal(a, b, labels=("eam",), atol=0.0):
    """The same frames with the same labels (to ``atol``: a LAMMPS instance that is new
    after a resume can round the last digit differently from one that went on)."""
    first, second = Store(a, create=False).get(), Store(b, create=False).get()
    assert len(first) == len(second) > 0
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x.positions, y.positions)
        for name in labels:
            assert x.info[f"{name}_energy"] == pytest.approx(
                y.info[f"{name}_energy"], abs=atol, rel=0
            )
            np.testing.assert_allclose(
                x.arrays[f"{name}_forces"], y.arrays[f"{name}_forces"], atol=atol, rtol=0
            )


def _same_weights(a, b):
    first, second = load_checkpoint(a), load_checkpoint(b)
    for (name, value), other in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(value, other), name


def _emt_pool(path, n=16):
    Store(path).add(emt_frames(n, seed=21))


BASE = {
    "species": ["Ni"],
    "executor": "serial",
    "model": {"preset": "demo", "overrides": {"hidden": [16, 8]}},
}
TRAIN = {"committee": 2, "max_epochs": 6, "batch_size": 4, "lr": 3e-3}


def test_sample_md_killed_after_a_write_resumes_to_the_same_pool(tmp_path):
    config = _yaml(
        tmp_path / "md.yaml",
        {
            "species": ["Ni"],
            "reference": {"kind": "eam-ni", "name": "eam"},
            "sample": {
                "temperatures_K": [300, 1500],
                "equilibration_steps": 100,
                "steps_per_temperature": 5000,
                "interval": 20,
            },
        },
    )
    assert _run("sample", config, "--out", tmp_path / "whole").returncode == 0
    _killed_then_resumed(["sample", config, "--out", tmp_path / "cut"], "store-write:1")
    _frames_equal(tmp_path / "whole" / "pool.db", tmp_path / "cut" / "pool.db")
    record = json.loads((tmp_path / "cut" / "sample.json").read_text())["results"]
    assert record["n_frames"] == 500 and record["n_resumed"] == 200  # the first chunk was kept


def test_label_killed_after_a_write_resumes_without_repeating_a_stored_label(tmp_path):
    unlabeled_store(tmp_path / "pool.db", 10, seed=22)
    log = tmp_path / "calls.log"
    args = [
        "label",
        tmp_path / "pool.db",
        "--reference",
        COUNTING,
        "--name",
        "emt",
        "--chunk",
        "2",
        "--executor",
        "serial",
        "--options",
        f"{{inner: emt, log: {log}}}",
    ]
    killed = _run(*args, kill_at="label-write:2")
    assert killed.returncode == KILLED
    assert sorted(calls(log)) == [0, 1, 2, 3]  # two jobs stored, then killed
    resumed = _run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(calls(log)) == list(range(10))  # the stored four were not computed again
    assert json.loads(resumed.stdout)["already_labeled"] == 4


def test_train_killed_after_a_member_resumes_to_the_same_committee(tmp_path):
    config = _yaml(
        tmp_path / "t.yaml",
        {
            **BASE,
            "reference": {"kind": "emt", "name": "emt"},
            "select": {"method": "all"},
            "train": TRAIN,
        },
    )
    for run in ("whole", "cut"):
        _emt_pool(tmp_path / run / "pool.db")
    assert _run("train", config, "--out", tmp_path / "whole").returncode == 0
    _killed_then_resumed(["train", config, "--out", tmp_path / "cut"], "member-trained:1")
    _same_weights(
        tmp_path / "whole" / "train" / "committee.pt", tmp_path / "cut" / "train" / "committee.pt"
    )


def _distill_config(path, pool, log):
    return _yaml(
        path,
        {
            **BASE,
            "workflow": "distill",
            "train": {**TRAIN, "committee": 2},
            "reference": {
                "kind": COUNTING,
                "name": "emt",
                "options": {"inner": "emt", "log": str(log)},
            },
            "distill": {
                "pool": str(pool),
                "n_chunks": 3,
                "k_sigma": 0.5,
                "strategy": "inherited",
                "augment_copies": 2,
                "augment_delta_A": 0.03,
                "final_pass": True,
            },
        },
    )


@pytest.mark.parametrize(
    "kill_at",
    [
        "member-trained:3",  # in the middle of iteration 1
        pytest.param("iteration-saved:1", marks=pytest.mark.slow),
        pytest.param("label-write:1", marks=pytest.mark.slow),  # among the noisy copies' labels
    ],
)
def test_distill_killed_anywhere_resumes_to_the_same_curve_and_committee(tmp_path, kill_at):
    _emt_pool(tmp_path / "pool.db", 18)
    whole_log, cut_log = tmp_path / "whole.log", tmp_path / "cut.log"
    whole = _distill_config(tmp_path / "whole.yaml", tmp_path / "pool.db", whole_log)
    cut = _distill_config(tmp_path / "cut.yaml", tmp_path / "pool.db", cut_log)
    assert _run("distill", whole, "--out", tmp_path / "whole").returncode == 0
    _killed_then_resumed(["distill", cut, "--out", tmp_path / "cut"], kill_at)
    curves = [
        json.loads((tmp_path / run / "report" / "summary.json").read_text())["distill"]["curve"]
        for run in ("whole", "cut")
    ]
    drop = {"wall_time_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in curves[0]] == [
        {k: v for k, v in r.items() if k not in drop} for r in curves[1]
    ]
    _same_weights(
        tmp_path / "whole" / "distill" / "committee.pt",
        tmp_path / "cut" / "distill" / "committee.pt",
    )
    # the noisy copies were labeled by the counted reference: none twice
    assert sorted(calls(cut_log)) == sorted(calls(whole_log)) and len(calls(cut_log)) > 0


def test_compare_killed_after_a_result_resumes_to_the_same_results(tmp_path):
    _emt_pool(tmp_path / "pool.db", 24)
    _emt_pool(tmp_path / "test.db", 4)
    config = _yaml(
        tmp_path / "c.yaml",
        {
            **BASE,
            "workflow": "compare-selectors",
            "reference": {"kind": "emt", "name": "emt"},
            "train": {**TRAIN, "committee": 1},
            "compare": {
                "pool": str(tmp_path / "pool.db"),
                "test_pool": str(tmp_path / "test.db"),
                "selectors": ["random", "fps"],
                "budgets": [4],
                "seeds": [0, 1],
                "md": {"enabled": False},
            },
        },
    )
    assert _run("compare-selectors", config, "--out", tmp_path / "whole").returncode == 0
    _killed_then_resumed(
        ["compare-selectors", config, "--out", tmp_path / "cut"], "result-written:2"
    )
    rows = []
    for run in ("whole", "cut"):
        lines = (tmp_path / run / "compare" / "results.jsonl").read_text().splitlines()
        rows.append({r["key"]: r for r in map(json.loads, lines)})
    assert set(rows[0]) == set(rows[1]) and len(rows[0]) == 4
    for key, row in rows[0].items():
        for metric in (
            "selected_ids",
            "energy_mae_meV_per_atom",
            "force_rmse_eV_per_A",
            "stress_mae_GPa",
        ):
            assert row[metric] == rows[1][key][metric], (key, metric)


RUN = {
    "species": ["Ni"],
    "executor": "serial",
    "reference": {"kind": "eam-ni", "name": "eam"},
    "sample": {
        "temperatures_K": [300, 1200],
        "equilibration_steps": 100,
        "steps_per_temperature": 1000,
        "interval": 50,
    },
    "select": {"method": "random", "n": 30, "seed": 0},
    "model": {"preset": "demo", "overrides": {"hidden": [16, 8]}},
    "train": {"committee": 2, "max_epochs": 4, "batch_size": 10, "lr": 3e-3},
    "validate": {"crystals": ["fcc"], "elastic": False},
}


def _validated(run):
    summary = json.loads((run / "report" / "summary.json").read_text())["validate"]
    return summary["pool"], summary["crystals"]["fcc"]


def test_run_killed_after_a_member_resumes_to_the_same_report(tmp_path):
    config = _yaml(tmp_path / "run.yaml", RUN)
    assert _run("run", config, "--out", tmp_path / "whole").returncode == 0
    _killed_then_resumed(["run", config, "--out", tmp_path / "cut"], "member-trained:1")
    assert _validated(tmp_path / "whole") == _validated(tmp_path / "cut")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_killed_at_a_random_time_resumes_to_the_same_report(tmp_path, seed):
    config = _yaml(tmp_path / "run.yaml", {**RUN, "train": {**RUN["train"], "max_epochs": 40}})
    started = time.time()
    assert _run("run", config, "--out", tmp_path / "whole").returncode == 0
    duration = time.time() - started
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(
        [*POTSTILL, "run", str(config), "--out", str(tmp_path / "cut")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(np.random.default_rng(seed).uniform(1.0, 0.9 * duration))
    process.kill()  # SIGKILL
    process.wait()
    resumed = _run("run", config, "--out", tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _validated(tmp_path / "whole") == _validated(tmp_path / "cut")


@pytest.mark.slow
def test_sample_momt_killed_after_a_state_save_keeps_its_frames_and_finishes(tmp_path):
    """MOMT resumes from its saved state (bias, positions, velocities; the Nose-Hoover
    chain restarts), so frames after the kill are not those of an uninterrupted run, but
    every frame stored before the last saved state is kept and the pool is completed."""
    config = _yaml(
        tmp_path / "m.yaml",
        {
            "species": ["Ni"],
            "reference": {"kind": "eam-ni", "name": "eam"},
            "sample": {
                "sampler": "momt",
                "structure": {"element": "Ni", "lattice": "fcc", "a_A": 3.52, "repeat": [2, 2, 2]},
                "momt": {
                    "temperature_K": 1500,
                    "reference_steps": 2000,
                    "n_frames": 450,
                    "interval": 20,
                    "wang_landau": {"max_steps": 3000, "ln_f_final": 0.3},
                },
            },
        },
    )
    args = ["sample", config, "--out", tmp_path / "cut"]
    killed = _run(
        *args, kill_at="momt-state:3"
    )  # Wang-Landau's save, its last, then a production chunk
    assert killed.returncode == KILLED
    kept = Store(tmp_path / "cut" / "pool.db").get()
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = Store(tmp_path / "cut" / "pool.db").get()
    assert len(after) == 450 and len(kept) > 0
    for before, now in zip(kept, after):
        np.testing.assert_array_equal(before.positions, now.positions)


def test_translate_killed_after_a_write_resumes_to_the_same_pool(tmp_path):
    from ase.build import bulk

    from potstill.references import lammps_options
    from potstill.sampling.md import sample_md

    frames = sample_md(
        bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2),
        **lammps_options("eam-ni"),
        temperatures_K=[900.0],
        steps_per_temperature=600,
        interval=50,
        seed=3,
    )
    Store(tmp_path / "ni.db").add(list(frames))
    args = [
        "translate",
        tmp_path / "ni.db",
        "--to",
        "eam-al",
        "--scale",
        "1.15",
        "--chunk",
        "3",
        "--executor",
        "serial",
    ]
    assert _run(*args, "--out", tmp_path / "whole.db").returncode == 0
    resumed = _killed_then_resumed([*args, "--out", tmp_path / "cut.db"], "label-write:2")
    assert json.loads(resumed.stdout)["n_labeled"] == 12 - 6  # the six labels stored were kept
    _frames_equal(tmp_path / "whole.db", tmp_path / "cut.db", atol=1e-9)


@pytest.mark.slow  # 1.5 min and more; GPAW's own kill test stays in the default suite
@pytest.mark.parametrize("kill_at", ["label-write:2", "member-trained:3"])
def test_low2high_killed_resumes_without_losing_or_recomputing_a_dft_label(tmp_path, kill_at):
    """Killed while GPAW labels (or while members train), ``--resume`` finishes the run;
    every DFT label stored before the kill is computed exactly once (GPAW calls counted)."""
    from test_low2high import tiny_config

    log = tmp_path / "calls.log"
    config = tiny_config(tmp_path / "l2h.yaml", log)
    args = ["run", config, "--out", tmp_path / "run"]
    killed = _run(*args, kill_at=kill_at)
    assert killed.returncode == KILLED, killed.stderr[-1500:]
    path = tmp_path / "run" / "relabel" / "dft.db"
    stored = (
        [
            f"{f.info['source']}-{f.info['source_index']}"
            for f in Store(path).get()
            if "dft_energy" in f.info
        ]
        if path.exists()
        else []
    )
    assert len(stored) == (2 if kill_at.startswith("label") else 0)
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    computed = [key for key in calls(log) if key != "None"]
    assert all(computed.count(step) == 1 for step in stored)  # none lost, none recomputed
    frames = Store(path).get()
    assert len(frames) == 6 and all("dft_energy" in f.info for f in frames)
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    assert set(summary["elastic_GPa"]) >= {"eam", "dft", "nnp_dft_transfer"}


@pytest.mark.parametrize(
    "kill_at", ["label-write:2", pytest.param("iteration-saved:1", marks=pytest.mark.slow)]
)
def test_rare_events_killed_resumes_without_losing_or_recomputing_a_label(tmp_path, kill_at):
    """Killed while xtb labels an iteration's frames (or right after an iteration was
    saved), ``--resume`` finishes the run; no label stored before the kill is computed
    again (xtb calls counted), and the finished iterations are the killed run's."""
    from test_rare_events import tiny_config

    log = tmp_path / "calls.log"
    config = tiny_config(
        tmp_path / "re.yaml", log, learning={"max_iterations": 2}, loading={"speeds_A_per_ps": []}
    )
    args = ["run", config, "--out", tmp_path / "run"]
    killed = _run(*args, kill_at=kill_at)
    assert killed.returncode == KILLED, killed.stderr[-1500:]
    root = tmp_path / "run" / "rare_events" / "inherited-2"

    def labeled_by_xtb(frames):  # every row but the equilibration frames (labeled by MD)
        return [f for f in frames if f.info["al_iteration"] > 0 or f.info.get("augment_copy")]

    stored = [
        f"{f.info['al_key']}-{f.info.get('augment_copy', 0)}"
        for f in labeled_by_xtb(Store(root / "train.db").get())
        if "xtb_energy" in f.info
    ]
    assert stored
    saved = sorted(p.parent.name for p in root.glob("iter_*/iteration.json"))
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    computed = [key for key in calls(log) if key != "None"]
    assert all(computed.count(key) == 1 for key in stored)  # none lost, none recomputed
    frames = labeled_by_xtb(Store(root / "train.db").get())
    assert frames and all(
        "xtb_energy" in f.info or f.info.get("xtb_label_attempts") == 3 for f in frames
    )
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    assert len(summary["runs"]["inherited-2"]["abs_error_kcal_per_mol"]) == 2
    assert saved == (["iter_0"] if kill_at.startswith("iteration") else [])


@pytest.mark.slow  # about 1-2 min each (make test-slow)
@pytest.mark.parametrize("kill_at", ["label-write:10", "iteration-saved:2"])
def test_ideal_killed_resumes_without_recomputing_a_label(tmp_path, kill_at):
    """Killed while the SNAP labels an event's substructures (the 8 initial frames are
    writes 1-8), or right after an update was saved, ``--resume`` finishes the run and
    no label stored before the kill is computed again (SNAP calls counted); the slow
    case also checks that the resumed trajectory is the uninterrupted one."""
    from test_ideal import tiny_config

    log = tmp_path / "calls.log"
    quick = {"frames": 4, "ablation": [], "baseline": False}
    config = tiny_config(tmp_path / "ideal.yaml", log, evaluation=quick)
    args = ["run", config, "--out", tmp_path / "run"]
    killed = _run(*args, kill_at=kill_at)
    assert killed.returncode == KILLED, killed.stderr[-1500:]
    root = tmp_path / "run" / "ideal"
    stored = [
        f"{f.info['al_key']}-0"
        for path in (root / "initial.db", root / "ides" / "train.db")
        if path.exists()
        for f in Store(path).get()
        if "snap_energy" in f.info
    ]
    assert len(stored) >= 9
    resumed = _run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    computed = calls(log)
    assert all(computed.count(key) == 1 for key in stored)  # none lost, none recomputed
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    assert summary["ideal"]["runs"]["ides"]["outcome"] == "finished"
    if kill_at.startswith("iteration"):
        whole = tiny_config(tmp_path / "whole.yaml", tmp_path / "whole.log", evaluation=quick)
        assert _run("run", whole, "--out", tmp_path / "whole").returncode == 0
        again = json.loads((tmp_path / "whole" / "report" / "summary.json").read_text())
        runs = (summary["ideal"]["runs"]["ides"], again["ideal"]["runs"]["ides"])
        assert runs[0]["event_steps"] == runs[1]["event_steps"]
        assert runs[0]["atoms_per_event_list"] == runs[1]["atoms_per_event_list"]
        last = [
            np.load(sorted((p / "ideal" / "ides").glob("iter_*/md.npz"))[-1])["positions"]
            for p in (tmp_path / "run", tmp_path / "whole")
        ]
        np.testing.assert_allclose(last[0], last[1], atol=1e-6)
