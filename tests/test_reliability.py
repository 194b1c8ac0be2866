"""What a user meets when things go wrong: Ctrl-C, usage errors, bad files and labels,
an element that does not exist, a damaged checkpoint, a reference that hangs, crashes
or returns NaN, and validation of a model that makes crystals collapse. Each is one
line (or a recorded failure), and nothing stored is lost."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from conftest import emt_frames, unlabeled_store
from counting_reference import calls
from potstill.executors import make_executor
from potstill.frames import has_labels
from potstill.labeling.label import label_store
from potstill.references import ReferenceConfig
from potstill.store import Store

POTSTILL = [sys.executable, "-c", "from potstill.cli import main; main()"]
HERE = Path(__file__).parent


def _potstill(*args, **kwargs):
    return subprocess.run(
        [*POTSTILL, *map(str, args)], capture_output=True, text=True, timeout=600, **kwargs
    )


def _one_line(result, code=2):
    assert result.returncode == code, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    return result.stderr


def test_usage_errors_are_one_line():
    assert "Missing argument" in _one_line(_potstill("train"))
    assert "No such option: --resume" in _one_line(_potstill("label", "x.db", "--resume"))
    assert "bogus" in _one_line(_potstill("bogus"))


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "species: [Ni]\nreference: {kind: emt, name: emt}\nselect: {method: all}\n"
        "model: {preset: demo}\ntrain: {committee: 2, max_epochs: 4000, batch_size: 4}\n"
    )
    Store(tmp_path / "run" / "pool.db").add(emt_frames(12))
    process = subprocess.Popen(
        [*POTSTILL, "train", str(config), "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background (``cmd &``) runs with SIGINT ignored, which
        # the child would inherit: give it the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(8)  # training has started
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "run" / "train" / "committee.pt").exists()


def test_nan_labels_are_refused_at_import_and_at_training(tmp_path):
    from ase.io import write

    frames = emt_frames(4)
    frames[2].arrays["emt_forces"][1, 0] = np.nan
    write(tmp_path / "bad.xyz", frames, format="extxyz")
    result = _potstill("import", tmp_path / "bad.xyz", "--store", tmp_path / "pool.db")
    assert "frame 2" in _one_line(result) and "emt forces is not finite" in result.stderr
    assert not (tmp_path / "pool.db").exists()  # nothing created, nothing imported
    # frames that reached a store some other way are refused by the trainer, by name
    store = Store(tmp_path / "run" / "pool.db")
    store.add(frames)
    config = tmp_path / "c.yaml"
    config.write_text(
        "species: [Ni]\nreference: {kind: emt, name: emt}\nselect: {method: all}\n"
        "model: {preset: demo}\ntrain: {committee: 2, max_epochs: 2}\n"
    )
    result = _potstill("train", config, "--out", tmp_path / "run")
    assert f"store row {store.ids()[2]}" in _one_line(result) and "not finite" in result.stderr


def test_a_truncated_extxyz_is_one_line_and_creates_no_store(tmp_path):
    from ase.io import write

    write(tmp_path / "good.xyz", emt_frames(3), format="extxyz")
    text = (tmp_path / "good.xyz").read_text()
    (tmp_path / "cut.xyz").write_text(text[: len(text) // 2])
    result = _potstill("import", tmp_path / "cut.xyz", "--store", tmp_path / "pool.db")
    assert "truncated" in _one_line(result) and "cut.xyz" in result.stderr
    assert not (tmp_path / "pool.db").exists()


def test_an_unknown_element_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("species: [Xx]\nsample: {structure: {element: Xx}}\n")
    assert "unknown element 'Xx'" in _one_line(
        _potstill("sample", config, "--out", tmp_path / "run")
    )


def test_a_damaged_checkpoint_is_one_line(tmp_path):
    from potstill.models import ANIModel, save_checkpoint

    Store(tmp_path / "pool.db").add(emt_frames(2))
    save_checkpoint(ANIModel.from_preset("demo", ["Ni"]), tmp_path / "committee.pt")
    data = (tmp_path / "committee.pt").read_bytes()
    (tmp_path / "committee.pt").write_bytes(data[: len(data) // 3])
    result = _potstill(
        "evaluate", tmp_path / "committee.pt", tmp_path / "pool.db", "--out", tmp_path / "e"
    )
    assert "cannot read the checkpoint" in _one_line(result) and "train it again" in result.stderr


def test_a_pool_without_the_labels_names_the_command_that_adds_them(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("species: [Ni]\nreference: {kind: emt, name: dft}\nselect: {method: all}\n")
    Store(tmp_path / "run" / "pool.db").add(emt_frames(4))
    result = _potstill("train", config, "--out", tmp_path / "run")
    assert "potstill label POOL --reference KIND --name dft" in _one_line(result)
    assert "potstill references" in result.stderr


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_a_hung_a_crashing_and_a_nan_reference_call_fail_alone(tmp_path, monkeypatch, executor):
    """With a per-call time limit each call runs in a process of its own: a call that
    hangs is stopped, one that segfaults takes only its own process down, one that
    returns NaN is refused; each is retried, then recorded, and the rest are labeled."""
    monkeypatch.syspath_prepend(str(HERE))
    store = unlabeled_store(tmp_path / "pool.db", 6, seed=9)
    log = tmp_path / "calls.log"
    faulty = ReferenceConfig(
        kind="counting_reference:make_calculator",
        name="dft",
        timeout_s=3,
        options={"inner": "emt", "log": str(log), "hang_on": [1], "crash_on": [3], "nan_on": [4]},
    )
    with make_executor(executor, workers=2) as pool:
        results = label_store(store, faulty, executor=pool, chunk=3, retries=1)
    ids = store.ids()
    assert results["labeled"] == 3 and sorted(results["failed"]) == [ids[1], ids[3], ids[4]]
    assert "longer than 3 s" in results["errors"][ids[1]]
    assert "process died" in results["errors"][ids[3]]
    assert "not finite" in results["errors"][ids[4]] or "non-finite" in results["errors"][ids[4]]
    assert sorted(calls(log)) == [0, 1, 1, 2, 3, 3, 4, 4, 5]  # each fault tried twice
    frames = store.get()
    assert [has_labels(a, "dft") for a in frames] == [True, False, True, False, False, True]
    assert all(a.info.get("dft_label_attempts") == 2 for a in frames if not has_labels(a, "dft"))


def test_validating_a_model_that_collapses_a_crystal_stops_and_says_so():
    """A relaxation guard ends what a poor model would run forever: the crystal is
    reported as not converged, with the reason, in a bounded number of steps."""
    from ase.calculators.lj import LennardJones

    from potstill.crystals import relax_crystal

    collapsing = LennardJones(sigma=1.2, epsilon=1.0, rc=6.0)  # wants bonds near 1.35 A, not 2.5
    result = relax_crystal("fcc", "Ni", collapsing, steps=3000)
    assert not result["converged"] and (
        "collapsed" in result["stopped"] or "volume" in result["stopped"]
    )
    assert result["steps"] < 3000
    fine = relax_crystal("fcc", "Ni", LennardJones(sigma=2.28, epsilon=0.5, rc=6.0), steps=3000)
    assert fine["converged"] and fine["stopped"] == ""
    assert bulk("Ni").get_chemical_symbols() == ["Ni"]
