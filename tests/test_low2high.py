"""The low2high workflow (seed 001) end to end at toy size, with the real GPAW on 4-atom
Al cells (PW 200 eV, 2x2x2 k-points: about a second a frame) and real EAM in LAMMPS.

Checks that the pieces do what the paper says (the fine-tune keeps input and output
layers, the transfer start sits at the DFT zero of energy, the deformation frames move
only lx and xy, the tables are complete), that each DFT label is computed once, also
across a resume, and that the EAM reference's elastic constants are Mendelev's.
"""

import numpy as np
import pytest
import torch
import yaml

from counting_reference import calls
from potstill.frames import get_labels
from potstill.models import load_checkpoint, predict
from potstill.rundir import RunDir
from potstill.store import Store
from potstill.workflows import load_config
from potstill.workflows import low2high as low2high_module

pytest.importorskip("gpaw")

MODELS = (
    "eam",
    "dft",
    "nnp_eam_initial",
    "nnp_eam_finetuned",
    "nnp_eam_finetuned_nostress",
    "nnp_eam_final",
    "nnp_dft_scratch",
    "nnp_dft_transfer",
)
AL = {"element": "Al", "lattice": "fcc", "a_A": 4.05, "repeat": [1, 1, 1]}


def tiny_config(path, log, **changes):
    """A low2high YAML at toy size; DFT through the counting wrapper around GPAW."""
    md = {"sampler": "md", "structure": AL, "equilibration_steps": 100, "interval": 100}
    data = {
        "workflow": "low2high",
        "name": "low2high-tiny",
        "species": ["Al"],
        "reference": {"kind": "eam-al", "name": "eam"},
        "high_fidelity": {
            "kind": "counting_reference:make_calculator",
            "name": "dft",
            "options": {"inner": "gpaw", "log": str(log), "cutoff_eV": 200, "kpts": [2, 2, 2]},
        },
        "executor": {"kind": "process", "workers": 2},
        "eam_data": {
            "pool": {**md, "temperatures_K": [300, 900], "steps_per_temperature": 2000},
            "train_last": 24,
            "test_pools": [{**md, "temperatures_K": [600], "steps_per_temperature": 1000}],
        },
        "deform": {"structure": AL, "equilibration_steps": 100, "steps": 1500, "interval": 100},
        "model": {"preset": "demo", "overrides": {"hidden": [16, 8]}},
        "initial": {"committee": 2, "max_epochs": 4, "batch_size": 8, "lr": 1e-3},
        "fine_tune": {
            "max_epochs": 4,
            "batch_size": 8,
            "alpha": 0.2,
            "beta": 0.4,
            "gamma": 0.4,
            "lr": 1e-4,
            "bias_lr": 1e-5,
            "freeze": ["input", "output"],
            "best_by": "stress",
        },
        "uq_k": 0.0,
        "relabel": {"n_train": 4, "n_test": 2},
        "dft_elastic": {"a_guess_A": 4.05, "meshes": [2, 3], "options": {"cutoff_eV": 200}},
        **changes,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _label_calls(log):
    return [key for key in calls(log) if key != "None"]  # elastic cells carry no step


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("low2high")
    log = root / "calls.log"
    config = load_config(tiny_config(root / "tiny.yaml", log))
    summary = low2high_module.run(config, RunDir(root / "run"))
    return root, config, summary, log


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_the_tables_hold_every_model_and_the_eam_reference_is_mendelev(tiny_run):
    _, _, summary, _ = tiny_run
    elastic = summary["elastic_GPa"]
    assert set(MODELS) <= set(elastic)
    for model in MODELS:
        for key in ("a_A", "C11", "C12", "C44", "K", "G", "nu"):
            assert np.isfinite(elastic[model][key]), (model, key)
    # Mendelev Al (Al_mm.eam.fs): a = 4.045 A, C11 = 105, C12 = 59, C44 = 32 GPa (approx.)
    eam = elastic["eam"]
    assert eam["a_A"] == pytest.approx(4.045, abs=0.005)
    assert eam["C11"] == pytest.approx(106, rel=0.1) and eam["C44"] == pytest.approx(31, rel=0.15)
    assert eam["G"] == pytest.approx((eam["C11"] - eam["C12"]) / 2)
    error = summary["error_percent"]["nnp_eam_final"]["C11"]
    assert error == pytest.approx(100 * (elastic["nnp_eam_final"]["C11"] / eam["C11"] - 1))
    assert set(summary["dft_heldout_errors"]) >= {"nnp_dft_scratch", "nnp_dft_transfer"}
    assert summary["low2high"]["dft_mesh_scan"][-1]["mesh"] == 3


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_each_dft_label_is_computed_once_and_resume_computes_none(tiny_run):
    root, config, _, log = tiny_run
    store = Store(root / "run" / "relabel" / "dft.db", create=False)
    frames = store.get()
    assert len(frames) == 6 and len(_label_calls(log)) == 6
    for frame in frames:  # DFT and EAM labels on the same configuration
        assert np.isfinite(get_labels(frame, "dft", ("energy", "forces", "stress")).energy)
        assert np.isfinite(get_labels(frame, "eam").energy)
    before = (root / "run" / "final" / "member_0.pt").stat().st_mtime_ns
    low2high_module.run(config, RunDir(root / "run", resume=True))
    assert len(_label_calls(log)) == 6  # nothing recomputed
    assert (root / "run" / "final" / "member_0.pt").stat().st_mtime_ns == before


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_fine_tune_keeps_the_outer_layers_and_transfer_starts_at_the_dft_zero(tiny_run):
    root = tiny_run[0] / "run"
    summary = tiny_run[2]
    best = root / "initial" / summary["initial"]["best_member"]
    start, tuned = (
        load_checkpoint(best).state_dict(),
        load_checkpoint(root / "initial" / "finetune" / "member_0.pt").state_dict(),
    )
    weights = [k for k in start if k.endswith(".weight")]
    network = [k for k in weights if k.startswith(weights[0].rsplit(".", 2)[0] + ".")]
    for name in (network[0], network[-1]):
        assert torch.equal(start[name], tuned[name]), name
    assert not all(torch.equal(start[k], tuned[k]) for k in network[1:-1])
    # the transfer start predicts the DFT training energies on average (self energies moved)
    train = [
        f for f in Store(root / "relabel" / "dft.db").get() if f.info["relabel_set"] == "train"
    ]
    shifted = load_checkpoint(root / "dft" / "transfer_start.pt")
    residual = [
        f.info["dft_energy"] - p["energy"]
        for f, p in zip(train, predict(shifted, train, forces=False))
    ]
    assert abs(np.mean(residual)) < 1e-3 * len(train[0])
    unshifted = predict(load_checkpoint(root / "final" / "finetune" / "member_0.pt"), train)
    assert abs(
        np.mean([f.info["dft_energy"] - p["energy"] for f, p in zip(train, unshifted)])
    ) > 0.1 * len(train[0])


@pytest.mark.slow  # the module's tiny run takes minutes (make test-slow)
def test_uq_keeps_the_deformation_frames_above_mu_plus_k_sigma(tiny_run):
    summary = tiny_run[2]
    uq = summary["uq"]
    assert uq["threshold"] == pytest.approx(uq["mu"] + uq["k"] * uq["sigma"])
    assert 0 < uq["n_kept"] <= uq["n_deform"] == 15
    final = summary["final"]
    assert final["n_frames"] == 24 + uq["n_kept"]


def test_bad_dft_options_stop_the_run_in_one_line_before_any_work(tmp_path):
    import subprocess
    import sys

    config = tiny_config(
        tmp_path / "bad.yaml",
        tmp_path / "calls.log",
        high_fidelity={"kind": "gpaw", "name": "dft", "options": {"cutoff_eV": 300}},
    )
    result = subprocess.run(
        [sys.executable, "-c", "from potstill.cli import main; main()", "run", str(config)]
        + ["--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "exactly one of kpts" in lines[0], result.stderr
    assert not (tmp_path / "r" / "eam").exists()
