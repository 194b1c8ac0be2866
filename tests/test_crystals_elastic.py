"""Relaxed crystals and elastic constants of EAM Ni, checked against LAMMPS itself.

The reference is ``NiAlH_jea.eam.alloy`` (Angelo, Moody & Baskes Ni) through
:class:`potstill.references.lammps.LammpsCalculator`. LAMMPS' own minimizer (with
``fix box/relax``) and its own finite-strain elastic constants (``change_box`` +
``minimize``, pressure tensor) are computed here, independently of potstill, and
potstill's ASE-driven numbers must match them.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from potstill.crystals import build_crystal, default_lattice_A, relax_crystal, shortest_bond_A
from potstill.errors import PotstillError
from potstill.lammps_runtime import load_lammps, resolve_potential
from potstill.references.lammps import LammpsCalculator
from potstill.validation.crystals import compare_crystals, format_crystal_table
from potstill.validation.elastic import (
    compare_elastic,
    cubic_summary,
    elastic_constants,
    format_elastic_table,
    strained,
)

POTENTIAL = "NiAlH_jea.eam.alloy"
BAR_TO_GPA = 1e-4
STRUCTURES = ("fcc", "bcc", "hcp")


@pytest.fixture(scope="module")
def eam_ni():
    calc = LammpsCalculator("eam/alloy", POTENTIAL, ["Ni"])
    yield calc
    calc.close()


@pytest.fixture(scope="module")
def relaxed(eam_ni):
    return {s: relax_crystal(s, "Ni", eam_ni) for s in STRUCTURES}


# ---------------------------------------------------------------- LAMMPS, independently


def _lammps(atoms, commands: str):
    """A LAMMPS instance holding ``atoms`` (triclinic box) with EAM Ni, then ``commands``."""
    lmp = load_lammps()
    with tempfile.NamedTemporaryFile("w", suffix=".data") as data:
        write(data.name, atoms, format="lammps-data", specorder=["Ni"], force_skew=True)
        lmp.commands_string(
            f"""
            units metal
            atom_style atomic
            boundary p p p
            read_data {data.name}
            mass 1 58.6934
            pair_style eam/alloy
            pair_coeff * * {resolve_potential(POTENTIAL)} Ni
            thermo_style custom step pe pxx pyy pzz pyz pxz pxy lx ly lz
            min_style cg
            {commands}
            """
        )
    return lmp


def _lammps_box_relax(atoms):
    """Energy per atom (eV) and shortest bond (A) after LAMMPS' own cell+ion relaxation."""
    lmp = _lammps(atoms, "fix r all box/relax aniso 0.0 vmax 0.001\nminimize 0 1e-12 20000 200000")
    energy = lmp.get_thermo("pe") / lmp.get_natoms()
    lengths = np.array([lmp.get_thermo(k) for k in ("lx", "ly", "lz")])
    positions = np.array(lmp.numpy.extract_atom("x")[: lmp.get_natoms()], dtype=float)
    lmp.close()
    final = Atoms("Ni%d" % len(positions), positions=positions, cell=np.diag(lengths), pbc=True)
    return energy, shortest_bond_A(final), lengths


def _lammps_elastic_matrix_GPa(atoms, strain=0.01):
    """C_ij (GPa) by LAMMPS finite strains: change_box (tilts for shear) + minimize."""
    deform = {
        0: "x scale {s}",
        1: "y scale {s}",
        2: "z scale {s}",
        3: "yz delta {t}",  # y += gamma z
        4: "xz delta {t}",  # x += gamma z
        5: "xy delta {t}",  # x += gamma y
    }
    keys = ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")
    lz, ly = atoms.cell[2, 2], atoms.cell[1, 1]
    matrix = np.zeros((6, 6))
    for j in range(6):
        pressures = []
        for sign in (1.0, -1.0):
            e = sign * strain
            tilt = e * (ly if j == 5 else lz)
            change = deform[j].format(s=1.0 + e, t=tilt)
            lmp = _lammps(
                atoms,
                f"change_box all {change} remap units box\nminimize 0 1e-12 10000 100000\nrun 0",
            )
            pressures.append(np.array([lmp.get_thermo(k) for k in keys]))
            lmp.close()
        matrix[:, j] = -(pressures[0] - pressures[1]) / (2 * strain) * BAR_TO_GPA
    return matrix


# ---------------------------------------------------------------- crystals


def test_fcc_lattice_and_bond_length(relaxed):
    fcc = relaxed["fcc"]
    assert fcc["n_atoms"] == 32 and fcc["converged"]
    a = fcc["lattice_A"]["a"]
    assert a == pytest.approx(3.52, abs=0.01)
    assert fcc["bond_length_A"] == pytest.approx(a / math.sqrt(2.0), abs=1e-3)
    # the start was really expanded, so the relaxation had work to do
    assert default_lattice_A("fcc", "Ni")["a"] * 1.025 - a > 0.08


def test_sizes_and_energy_ranking(relaxed):
    assert [relaxed[s]["n_atoms"] for s in STRUCTURES] == [32, 54, 48]
    assert all(relaxed[s]["converged"] for s in STRUCTURES)
    e = {s: relaxed[s]["energy_eV_per_atom"] for s in STRUCTURES}
    assert e["fcc"] < e["hcp"] < e["bcc"]
    # this potential's gaps (measured with LAMMPS box/relax): 12.6 and 76.4 meV/atom
    assert 1000 * (e["hcp"] - e["fcc"]) == pytest.approx(12.6, abs=2.0)
    assert 1000 * (e["bcc"] - e["fcc"]) == pytest.approx(76.4, abs=3.0)
    assert e["fcc"] == pytest.approx(-4.450, abs=0.002)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_relaxed_crystal_matches_lammps_box_relax(relaxed, structure):
    ours = relaxed[structure]
    start = build_crystal(structure, "Ni", lattice_A=default_lattice_A(structure, "Ni"))
    energy, bond, lengths = _lammps_box_relax(start)
    assert ours["energy_eV_per_atom"] == pytest.approx(energy, abs=2e-5)
    assert ours["bond_length_A"] == pytest.approx(bond, abs=1e-3)
    np.testing.assert_allclose(ours["atoms"].cell.lengths(), lengths, atol=2e-3)


def test_hcp_lattice_has_c_and_realistic_c_over_a(relaxed):
    lattice = relaxed["hcp"]["lattice_A"]
    assert set(lattice) == {"a", "c"}
    assert 1.55 < lattice["c"] / lattice["a"] < 1.75


def test_compare_crystals_same_calculator_has_zero_errors(eam_ni):
    result = compare_crystals(eam_ni, eam_ni, "Ni", structures=("fcc", "hcp"))
    for s in ("fcc", "hcp"):
        assert result[s]["bond_length_A"]["error"] == pytest.approx(0.0, abs=1e-9)
        assert result[s]["energy_eV_per_atom"]["error"] == pytest.approx(0.0, abs=1e-9)
    assert result["ranking"] == {"model": ["fcc", "hcp"], "reference": ["fcc", "hcp"], "same": True}
    table = format_crystal_table(result)
    assert "Ni-FCC (32)" in table and "Ni-HCP (48)" in table and "(same)" in table


def test_compare_crystals_emt_model_vs_eam(eam_ni):
    result = compare_crystals(EMT(), eam_ni, "Ni", structures=("fcc", "bcc"))
    fcc = result["fcc"]
    # EMT Ni's lattice is a few hundredths of an A off this EAM; its energy scale differs
    assert abs(fcc["bond_length_A"]["error"]) < 0.05
    assert abs(fcc["energy_eV_per_atom"]["error"]) > 1.0
    assert result["ranking"]["reference"] == ["fcc", "bcc"]
    assert "Model (errors)" in format_crystal_table(result)


def test_crystal_input_errors(eam_ni):
    with pytest.raises(PotstillError, match="unknown crystal structure"):
        relax_crystal("diamond", "Ni", eam_ni)
    with pytest.raises(PotstillError, match="unknown element"):
        default_lattice_A("fcc", "Xx")


# ---------------------------------------------------------------- elastic constants


@pytest.fixture(scope="module")
def eam_elastic(eam_ni, relaxed):
    return elastic_constants(relaxed["fcc"]["atoms"], eam_ni)


def test_elastic_constants_match_lammps(relaxed, eam_elastic):
    """THE key test: potstill's C11, C12, C44 within 2 % of LAMMPS' own finite strains."""
    lammps_matrix = _lammps_elastic_matrix_GPa(relaxed["fcc"]["atoms"])
    lammps = cubic_summary(lammps_matrix)
    for key in ("C11", "C12", "C44"):
        assert eam_elastic[key] == pytest.approx(lammps[key], rel=0.02), key
    # and the known values of this potential
    assert eam_elastic["C11"] == pytest.approx(246.0, rel=0.02)
    assert eam_elastic["C12"] == pytest.approx(147.0, rel=0.02)
    assert eam_elastic["C44"] == pytest.approx(125.0, rel=0.02)
    np.testing.assert_allclose(eam_elastic["matrix_GPa"], lammps_matrix, atol=1.0)


def test_elastic_tensor_symmetric_and_moduli_consistent(eam_elastic):
    c = np.array(eam_elastic["matrix_GPa"])
    scale = np.max(np.abs(c))
    assert np.max(np.abs(c - c.T)) < 0.01 * scale
    # cubic: normal-shear couplings vanish, equivalent entries agree
    assert np.max(np.abs(c[:3, 3:])) < 0.01 * scale
    np.testing.assert_allclose(np.diag(c)[:3], eam_elastic["C11"], rtol=0.01)
    np.testing.assert_allclose(np.diag(c)[3:], eam_elastic["C44"], rtol=0.01)
    c11, c12 = eam_elastic["C11"], eam_elastic["C12"]
    assert eam_elastic["K"] == pytest.approx((c11 + 2 * c12) / 3)
    assert eam_elastic["G"] == pytest.approx((c11 - c12) / 2)
    assert eam_elastic["nu"] == pytest.approx(c12 / (c11 + c12))
    # mechanically stable (Born): C11 > |C12|, C11 + 2 C12 > 0, C44 > 0
    assert c11 > abs(c12) and c11 + 2 * c12 > 0 and eam_elastic["C44"] > 0
    assert max(abs(s) for s in eam_elastic["residual_stress_GPa"]) < 0.05
    assert eam_elastic["ions_converged"]
    assert eam_elastic["lattice_A"]["a"] == pytest.approx(3.52, abs=0.01)


def test_relaxed_ion_constants_of_hcp_match_lammps(eam_ni, relaxed):
    """HCP has internal relaxation under strain: exercises relax_ions against LAMMPS."""
    atoms = relaxed["hcp"]["atoms"]
    relaxed_ions = np.array(elastic_constants(atoms, eam_ni)["matrix_GPa"])
    clamped = np.array(elastic_constants(atoms, eam_ni, relax_ions=False)["matrix_GPa"])
    lammps = _lammps_elastic_matrix_GPa(atoms)
    np.testing.assert_allclose(relaxed_ions, lammps, atol=0.02 * np.max(np.abs(lammps)))
    # internal relaxation matters for HCP: clamped-ion constants are measurably off
    assert np.max(np.abs(clamped - lammps)) > 0.02 * np.max(np.abs(lammps))


def test_shear_strain_is_engineering():
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
    sheared = strained(atoms, [0, 0, 0, 0, 0, 0.02])
    # symmetric F: x gains 0.01 y and y gains 0.01 x (gamma_xy = 2 eps_xy = 0.02)
    assert sheared.cell[1, 0] == pytest.approx(0.01 * 3.52)
    assert sheared.cell[0, 1] == pytest.approx(0.01 * 3.52)


def test_compare_elastic_layout_and_table(eam_ni):
    result = compare_elastic(eam_ni, eam_ni, "Ni")
    for key in ("a_A", "C11", "C12", "C44", "K", "G", "nu"):
        assert result[key]["error_percent"] == pytest.approx(0.0, abs=1e-6)
    assert result["converged"] == {"model": True, "reference": True}
    assert result["C44"]["reference"] == pytest.approx(125.0, rel=0.02)
    table = format_elastic_table(result)
    assert "C44 (GPa)" in table and "Error (%)" in table and "l_a (A)" in table


def test_cubic_elastic_with_four_calculations_matches_the_full_matrix():
    """The DFT path (4-atom cell, zero pressure by secant, xx and yz strains only) gives
    what the full 12-strain calculation and a cell relaxation give."""
    from ase.calculators.emt import EMT

    from potstill.crystals import relax_crystal
    from potstill.validation.elastic import cubic_elastic, elastic_constants

    cheap = cubic_elastic("Ni", EMT(), a_guess_A=3.60)
    relaxed = relax_crystal("fcc", "Ni", EMT(), fmax_eV_per_A=1e-5)
    full = elastic_constants(relaxed["atoms"], EMT())
    assert cheap["a_A"] == pytest.approx(relaxed["lattice_A"]["a"], abs=2e-4)
    assert abs(cheap["pressure_GPa"]) < 0.02 and cheap["n_calculations"] <= 11
    for key in ("C11", "C12", "C44", "G"):
        assert cheap[key] == pytest.approx(full[key], rel=0.01), key
