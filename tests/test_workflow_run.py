"""`potstill run` end to end on a tiny Ni job: LAMMPS sampling, training, validation and
the report; then resume after losing a committee member; stages that share the report
folder (a MOMT sample stage and validate) leave each other's outputs alone."""

import json
import subprocess
import sys

import pytest

from potstill.errors import PotstillError
from potstill.rundir import RunDir
from potstill.workflows import load_config, standard

CONFIG = """
name: tiny
species: [Ni]
reference: {kind: eam-ni, name: eam}
sample:
  structure: {element: Ni, lattice: fcc, a_A: 3.52, repeat: [2, 2, 2]}
  temperatures_K: [300, 1200]
  equilibration_steps: 100
  steps_per_temperature: 1000
  interval: 50
select: {method: random, n: 30, seed: 0}
model: {preset: demo, overrides: {hidden: [16, 8]}}
train: {committee: 2, max_epochs: 4, batch_size: 10, lr: 3.0e-3}
validate: {crystals: [fcc, hcp], elastic: true}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "tiny.yaml").write_text(CONFIG)
    out = root / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from potstill.cli import main; main()",
            "run",
            str(root / "tiny.yaml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return root, out


def test_report_has_every_promised_number(finished_run):
    _, out = finished_run
    run = json.loads((out / "report" / "summary.json").read_text())
    assert set(run) >= {"sample", "train", "validate"}
    assert run["sample"]["n_frames"] == 40 and len(run["train"]["members"]) == 2
    summary = run["validate"]
    pool = summary["pool"]
    assert pool["n_frames"] == 40
    for key in ("energy_mae_meV_per_atom", "force_mae_eV_per_A", "stress_mae_GPa"):
        assert pool[key] > 0
    for structure in ("fcc", "hcp"):
        for quantity in ("bond_length_A", "energy_eV_per_atom"):
            entry = summary["crystals"][structure][quantity]
            assert set(entry) >= {"model", "reference"}
    # the reference side is the EAM potential itself: FCC Ni, a = 3.520 A, E = -4.45 eV/atom
    assert summary["crystals"]["fcc"]["bond_length_A"]["reference"] == pytest.approx(
        3.52 / 2**0.5, abs=2e-3
    )
    assert summary["crystals"]["fcc"]["energy_eV_per_atom"]["reference"] == pytest.approx(
        -4.45, abs=1e-3
    )
    for constant in ("C11", "C12", "C44", "K", "G"):
        assert set(summary["elastic_GPa"][constant]) >= {"model", "reference"}
    assert summary["elastic_GPa"]["C11"]["reference"] == pytest.approx(246.2, rel=0.01)
    assert summary["wall_time_s"] > 0
    for name in ("index.html", "parity.png", "learning_curves.png"):
        assert (out / "report" / "validate" / name).stat().st_size > 1000
    html = (out / "report" / "validate" / "index.html").read_text()
    assert "parity.png" in html and "C11" in html
    index = (out / "report" / "index.html").read_text()
    assert all(f"{stage}/index.html" in index for stage in ("sample", "train", "validate"))
    for record in ("sample.json", "train/train.json", "report/validate/validate.json", "run.json"):
        data = json.loads((out / record).read_text())
        assert {"inputs", "versions", "wall_time_s", "results"} <= set(data)


def test_rerun_refuses_then_resumes_keeping_finished_members(finished_run):
    root, out = finished_run
    config = load_config(root / "tiny.yaml")
    with pytest.raises(PotstillError, match="--resume"):
        standard.run(config, RunDir(out))
    kept = (out / "train" / "member_0.pt").read_bytes()
    (out / "train" / "member_1.pt").unlink()  # as if interrupted while training it
    summary = standard.run(config, RunDir(out, resume=True))
    assert (out / "train" / "member_0.pt").read_bytes() == kept
    assert (out / "train" / "member_1.pt").exists()
    assert summary["validate"]["pool"]["n_frames"] == 40


def test_empty_pool_is_a_clear_error(tmp_path):
    from potstill.store import Store

    Store(tmp_path / "pool.db")  # created, no frames
    config = load_config_text(tmp_path, CONFIG)
    with pytest.raises(PotstillError, match="pool .* is empty"):
        standard.train(config, RunDir(tmp_path))


def load_config_text(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def test_interrupted_sampling_restarts_on_resume(tmp_path):
    config = load_config_text(tmp_path, CONFIG)
    out = tmp_path / "out"
    first = standard.sample(config, RunDir(out))
    (out / "sample.json").unlink()  # as if killed before sampling finished
    again = standard.sample(config, RunDir(out, resume=True))
    assert again["n_frames"] == first["n_frames"] == 40
    assert standard.sample(config, RunDir(out, resume=True)) == again  # finished: kept as is


def test_several_starting_structures_are_sampled_with_provenance(tmp_path):
    text = CONFIG.replace(
        "  structure: {element: Ni, lattice: fcc, a_A: 3.52, repeat: [2, 2, 2]}\n",
        "  structures:\n    - {element: Ni, lattice: fcc, a_A: 3.52, repeat: [1, 1, 1]}\n"
        "    - {element: Ni, lattice: bcc, a_A: 2.866, repeat: [2, 2, 2]}\n",
    )
    config = load_config_text(tmp_path, text)
    results = standard.sample(config, RunDir(tmp_path / "out"))
    assert results["n_atoms"] == [4, 16] and results["n_frames"] == 80
    from potstill.store import Store

    frames = Store(tmp_path / "out" / "pool.db").get()
    assert [a.info["start_structure"] for a in frames[::40]] == ["fcc", "bcc"]
    with pytest.raises(PotstillError, match="not both"):
        load_config_text(
            tmp_path, text.replace("  structures:", "  structure: {element: Ni}\n  structures:")
        )


def test_failed_stages_leave_nothing_that_blocks_a_rerun(tmp_path):
    config = load_config_text(tmp_path, CONFIG)
    out = tmp_path / "out"
    for _ in range(2):  # the same clear error both times, not "already holds results"
        with pytest.raises(PotstillError, match="no trained committee"):
            standard.validate(config, RunDir(out))
    assert not (out / "report").exists()
    wrong = load_config_text(tmp_path, CONFIG.replace("species: [Ni]", "species: [Al]"))
    for _ in range(2):
        with pytest.raises(PotstillError, match=r"\['Ni'\] not in species"):
            standard.sample(wrong, RunDir(out))
    assert not (out / "pool.db").exists()


MOMT = """
name: tiny-momt
species: [Ni]
reference: {kind: eam-ni, name: eam}
sample:
  sampler: momt
  structure: {element: Ni, lattice: fcc, a_A: 3.52, repeat: [2, 2, 2]}
  momt: {temperature_K: 1500, reference_steps: 2000, n_frames: 12, interval: 20,
         wang_landau: {max_steps: 3000, ln_f_final: 0.3}}
select: {method: all}
model: {preset: demo, overrides: {hidden: [8]}}
train: {committee: 2, max_epochs: 2, batch_size: 6, lr: 3.0e-3}
validate: {crystals: [], elastic: false}
"""


def _potstill(*args):
    return subprocess.run(
        [sys.executable, "-c", "from potstill.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _outputs(out):
    """Every file of a run, with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_momt_run_goes_through_validate_and_resume_deletes_nothing(tmp_path):
    """Regression: the MOMT sample stage and validate both write under report/; validate
    used to claim all of it, so `potstill run` stopped at validate ("report already holds
    results") and `--resume` deleted the MOMT figures."""
    (tmp_path / "momt.yaml").write_text(MOMT)
    out = tmp_path / "run"
    first = _potstill("run", tmp_path / "momt.yaml", "--out", out)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (out / "report" / "sample" / "momt_traces.png").stat().st_size > 0
    assert (out / "report" / "validate" / "parity.png").stat().st_size > 0
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["sample"]["n_frames"] == 12 and summary["validate"]["pool"]["n_frames"] == 12
    before = _outputs(out)
    again = _potstill("run", tmp_path / "momt.yaml", "--out", out, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    after = _outputs(out)
    assert set(before) <= set(after)  # nothing another stage wrote was deleted
    kept = [
        name
        for name in before
        if name.startswith(("report/sample/", "pool.db", "momt_", "train/member_"))
    ]
    assert kept and all(after[name] == before[name] for name in kept)
    assert (
        after["report/validate/summary.json"] == before["report/validate/summary.json"]
    )  # same committee: kept


def test_overwriting_one_stage_replaces_only_its_own_outputs(finished_run):
    root, out = finished_run
    config = load_config(root / "tiny.yaml")
    others = {p: p.read_bytes() for p in (out / "report" / "sample").iterdir()} | {
        p: p.read_bytes() for p in (out / "train").iterdir() if p.is_file()
    }
    (out / "report" / "validate" / "stale.txt").write_text("from an earlier validation")
    summary = standard.validate(config, RunDir(out, overwrite=True))
    assert (
        summary["pool"]["n_frames"] == 40 and (out / "report" / "validate" / "parity.png").exists()
    )
    assert not (out / "report" / "validate" / "stale.txt").exists()
    assert all(path.read_bytes() == data for path, data in others.items())
