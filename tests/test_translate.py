"""Cross-element translation: the scale is the ratio of relaxed lattice constants, frames
are scaled and relabeled exactly, an interrupted run resumes without relabeling."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.labeling import label_frames
from potstill.lammps_runtime import load_lammps, resolve_potential
from potstill.references import ReferenceConfig, make_calculator
from potstill.sampling.translate import (
    LatticeScale,
    lattice_scale,
    translate_frame,
    translate_store,
)
from potstill.store import Store

POTSTILL = [sys.executable, "-c", "from potstill.cli import main; main()"]


def _lammps_lattice_A(structure: str, a_guess: float, pair_lines: list[str]) -> float:
    """Cubic lattice constant from LAMMPS's own box relaxation (independent of ASE)."""
    lmp = load_lammps()
    lmp.commands_list(
        [
            "units metal",
            "boundary p p p",
            f"lattice {structure} {a_guess}",
            "region box block 0 3 0 3 0 3",
            "create_box 1 box",
            "create_atoms 1 box",
            "mass 1 1.0",
            *pair_lines,
            "fix relax all box/relax iso 0.0 vmax 0.001",
            "min_style cg",
            "minimize 0 1e-10 10000 100000",
        ]
    )
    a = lmp.extract_box()[1][0] - lmp.extract_box()[0][0]
    lmp.close()
    return a / 3.0


def _ni_store(path, *, n=6, seed=0):
    """A small pool of rattled, strained 32- and 16-atom Ni frames labeled by eam-ni."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 2, 2) if i % 2 == 0 else (2, 2, 1))
        atoms.set_cell(
            atoms.cell[:] @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True
        )
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        frames.append(atoms)
    outcomes = [
        o for job in label_frames(frames, ReferenceConfig(kind="eam-ni"), chunk=n) for o in job
    ]
    labeled = [o.frame for o in sorted(outcomes, key=lambda o: o.index)]
    for i, frame in enumerate(labeled):
        frame.info.update(sampler="md", temperature_K=300.0 + 100 * i, step=i)
    store = Store(path)
    store.add(labeled)
    return store


@pytest.fixture(scope="module")
def ni_al_scale():
    return lattice_scale("eam-ni", "eam-al", structure="fcc")


def test_scale_is_the_ratio_of_independently_relaxed_lattice_constants(ni_al_scale):
    ni = _lammps_lattice_A(
        "fcc",
        3.6,
        ["pair_style eam/alloy", f"pair_coeff * * {resolve_potential('NiAlH_jea.eam.alloy')} Ni"],
    )
    al = _lammps_lattice_A(
        "fcc", 4.1, ["pair_style eam/fs", f"pair_coeff * * {resolve_potential('Al_mm.eam.fs')} Al"]
    )
    assert ni_al_scale.source_element == "Ni" and ni_al_scale.target_element == "Al"
    assert ni_al_scale.source_lattice_A["a"] == pytest.approx(ni, abs=2e-4)
    assert ni_al_scale.target_lattice_A["a"] == pytest.approx(al, abs=2e-4)
    assert ni_al_scale.factor == pytest.approx(al / ni, abs=1e-4)
    assert 1.14 < ni_al_scale.factor < 1.16  # seed 000: 4.05 / 3.52 ~ 1.15


def test_nb_reference_has_a_bcc_ground_state_and_bcc_scale():
    scale = lattice_scale("eam-ni", "uf3-nb", structure="bcc")
    nb = _lammps_lattice_A(
        "bcc", 3.4, ["pair_style uf3 3", f"pair_coeff * * {resolve_potential('Nb.uf3')} Nb"]
    )
    assert scale.target_lattice_A["a"] == pytest.approx(nb, abs=2e-4)
    assert 1.15 < scale.factor < 1.19
    from potstill.crystals import relax_crystal

    calc = make_calculator("uf3-nb")
    energies = {
        s: relax_crystal(s, "Nb", calc, fmax_eV_per_A=1e-2)["energy_eV_per_atom"]
        for s in ("fcc", "bcc", "hcp")
    }
    assert min(energies, key=energies.get) == "bcc"


def test_translated_frames_are_scaled_and_carry_fresh_target_labels(tmp_path, ni_al_scale):
    source = _ni_store(tmp_path / "ni.db")
    result = translate_store(
        tmp_path / "ni.db",
        tmp_path / "al.db",
        source_reference="eam-ni",
        target_reference="eam-al",
        structure="fcc",
    )
    assert result["n_translated"] == len(source) and result["scale"]["factor"] == pytest.approx(
        ni_al_scale.factor
    )
    fresh = make_calculator("eam-al")
    for ni, al in zip(source.get(), Store(tmp_path / "al.db").get()):
        assert set(al.get_chemical_symbols()) == {"Al"}
        assert np.allclose(al.cell[:], ni.cell[:] * ni_al_scale.factor)
        assert np.allclose(al.get_scaled_positions(wrap=False), ni.get_scaled_positions(wrap=False))
        assert al.info["source_id"] == ni.info["store_id"] and al.info["sampler"] == "translate"
        assert (
            al.info["source_sampler"] == "md"
            and al.info["source_temperature_K"] == ni.info["temperature_K"]
        )
        assert "momenta" not in al.arrays
        labels = get_labels(al, "eam", require=("energy", "forces", "stress", "energies"))
        atoms = al.copy()
        atoms.calc = fresh
        assert labels.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        assert np.allclose(labels.forces, atoms.get_forces(), atol=1e-8)
        assert np.allclose(labels.stress, atoms.get_stress(), atol=1e-10)
        assert labels.energy != pytest.approx(
            get_labels(ni, "eam").energy, abs=1e-3
        )  # not the Ni label


def test_a_failed_label_is_recorded_and_resumed_without_relabeling(tmp_path, monkeypatch):
    from counting_reference import calls

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    _ni_store(tmp_path / "ni.db", n=7)
    log = tmp_path / "calls.log"
    counting = "counting_reference:make_calculator"
    options = dict(
        source_reference="eam-ni",
        target_reference=counting,
        scale_factor=1.15,
        chunk=2,
        label="eam",
        source_element="Ni",
        target_element="Al",
    )
    broken = {"inner": "eam-al", "log": str(log), "fail_on": [5]}
    with pytest.raises(
        PotstillError, match="node lost on frame 5.*6 frames labeled and stored"
    ) as error:
        translate_store(tmp_path / "ni.db", tmp_path / "al.db", target_options=broken, **options)
    assert "\n" not in str(error.value)
    assert sorted(calls(log)) == [
        1,
        2,
        3,
        4,
        5,
        5,
        5,
        6,
        7,
    ]  # frame 5: tried, retried twice, recorded
    kept = Store(tmp_path / "al.db").get()
    assert [a.info["source_id"] for a in kept] == list(range(1, 8))
    failed = next(a for a in kept if a.info["source_id"] == 5)
    assert "eam_energy" not in failed.info and failed.info["eam_label_attempts"] == 3
    assert "node lost" in failed.info["eam_label_error"]

    log.unlink()
    fixed = {"inner": "eam-al", "log": str(log)}
    with pytest.raises(PotstillError, match="--resume"):
        translate_store(tmp_path / "ni.db", tmp_path / "al.db", target_options=fixed, **options)
    result = translate_store(
        tmp_path / "ni.db", tmp_path / "al.db", resume=True, target_options=fixed, **options
    )
    assert result["n_resumed"] == 7 and result["n_translated"] == 0 and result["n_labeled"] == 1
    assert calls(log) == [5]  # no finished label recomputed
    out = Store(tmp_path / "al.db").get()
    assert [a.info["eam_energy"] for a in out if a.info["source_id"] != 5] == [
        a.info["eam_energy"] for a in kept if a.info["source_id"] != 5
    ]
    assert "eam_label_error" not in out[4].info and "eam_energy" in out[4].info
    with pytest.raises(PotstillError, match="scale 1.15"):
        translate_store(
            tmp_path / "ni.db",
            tmp_path / "al.db",
            resume=True,
            target_options=fixed,
            **{**options, "scale_factor": 1.2},
        )


def test_subset_is_seeded_and_in_source_order(tmp_path):
    _ni_store(tmp_path / "ni.db", n=6)
    ids = []
    for k in range(2):
        translate_store(
            tmp_path / "ni.db",
            tmp_path / f"al{k}.db",
            source_reference="eam-ni",
            target_reference="eam-al",
            scale_factor=1.15,
            n=3,
            seed=4,
        )
        ids.append([a.info["source_id"] for a in Store(tmp_path / f"al{k}.db").get()])
    assert ids[0] == ids[1] == sorted(ids[0]) and len(ids[0]) == 3


def test_bad_input_is_one_line(tmp_path):
    store = _ni_store(tmp_path / "ni.db", n=2)
    with pytest.raises(PotstillError, match="unknown reference 'eam-xx'"):
        translate_store(
            tmp_path / "ni.db",
            tmp_path / "a.db",
            source_reference="eam-ni",
            target_reference="eam-xx",
        )
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.info["eam_energy"] = -1.0
    store.add([cu])
    with pytest.raises(PotstillError, match=r"frame 3 holds \['Cu'\].*one-element Ni"):
        translate_store(
            tmp_path / "ni.db",
            tmp_path / "b.db",
            source_reference="eam-ni",
            target_reference="eam-al",
            scale_factor=1.15,
        )
    with pytest.raises(PotstillError, match="one-element Ni"):
        translate_frame(cu, LatticeScale("fcc", "eam-ni", "eam-al", "Ni", "Al", factor=1.1))
    result = subprocess.run(
        [
            *POTSTILL,
            "translate",
            str(tmp_path / "ni.db"),
            "--to",
            "nope",
            "--out",
            str(tmp_path / "c.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "unknown reference 'nope'" in result.stderr


def test_workflow_sample_section_translates(tmp_path):
    from potstill.rundir import RunDir
    from potstill.workflows import standard

    _ni_store(tmp_path / "ni.db", n=3)
    config = standard.Config.model_validate(
        {
            "species": ["Al"],
            "reference": {"kind": "eam-al", "name": "eam"},
            "executor": "serial",
            "sample": {
                "sampler": "translate",
                "translate": {"source": str(tmp_path / "ni.db"), "scale": 1.15},
            },
        }
    )
    results = standard.sample(config, RunDir(tmp_path / "run"))
    assert results["n_translated"] == 3 and len(Store(tmp_path / "run" / "pool.db")) == 3
    assert (
        standard.sample(config, RunDir(tmp_path / "run", resume=True))["n_translated"] == 3
    )  # the record
    with pytest.raises(PotstillError, match="not in species"):
        standard.sample(config.model_copy(update={"species": ["Ni"]}), RunDir(tmp_path / "run2"))
    with pytest.raises(ValueError, match="translate"):
        standard.Config.model_validate({"sample": {"sampler": "translate"}})


def test_evaluate_scores_a_committee_on_any_pool(tmp_path):
    """`potstill evaluate` (for an independent pool, e.g. a MOMT pool of the target
    element): errors and parity plot of a saved committee against the pool's labels."""
    import json

    from potstill.models import ANIModel, save_checkpoint
    from potstill.models.committee import Committee

    _ni_store(tmp_path / "ni.db", n=2)
    translate_store(
        tmp_path / "ni.db",
        tmp_path / "al.db",
        source_reference="eam-ni",
        target_reference="eam-al",
        scale_factor=1.15,
    )
    save_checkpoint(
        Committee([ANIModel.from_preset("demo", ["Al"], seed=k) for k in range(2)]),
        tmp_path / "committee.pt",
    )
    args = [
        "evaluate",
        str(tmp_path / "committee.pt"),
        str(tmp_path / "al.db"),
        "--out",
        str(tmp_path / "ev"),
    ]
    result = subprocess.run([*POTSTILL, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert record["results"]["n_frames"] == 2 and (tmp_path / "ev" / "parity.png").exists()
    again = subprocess.run([*POTSTILL, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    strided = subprocess.run(
        [*POTSTILL, *args, "--stride", "2", "--overwrite"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert strided.returncode == 0, strided.stderr
    assert json.loads((tmp_path / "ev" / "evaluate.json").read_text())["results"]["n_frames"] == 1
