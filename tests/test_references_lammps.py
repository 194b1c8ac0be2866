"""LAMMPS reference: agreement with matscipy's EAM, physics checks, reuse, bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_stress

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.labeling import label_frames
from potstill.lammps_runtime import load_lammps, potentials_dir, resolve_potential
from potstill.references import ReferenceConfig, make_calculator
from potstill.references.lammps import LammpsCalculator

NI = dict(pair_style="eam/alloy", potential="NiAlH_jea.eam.alloy", elements=["Ni"])
AL = dict(pair_style="eam/fs", potential="Al_mm.eam.fs", elements=["Al"])
NIAL = dict(pair_style="eam/alloy", potential="NiAlH_jea.eam.alloy", elements=["Ni", "Al"])


def strained(atoms: Atoms, seed: int, *, strain: float = 0.04, rattle_A: float = 0.08) -> Atoms:
    """Copy of ``atoms`` with a random general (triclinic, rotated) cell and rattled atoms."""
    rng = np.random.default_rng(seed)
    frame = atoms.copy()
    deformation = np.eye(3) + rng.normal(0.0, strain, (3, 3))
    frame.set_cell(frame.cell @ deformation, scale_atoms=True)
    frame.positions += rng.normal(0.0, rattle_A, frame.positions.shape)
    return frame


def ni_fcc(n: int = 2) -> Atoms:
    return bulk("Ni", "fcc", a=3.52, cubic=True).repeat(n)


def al_fcc() -> Atoms:
    return bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)


def nial_frame(seed: int) -> Atoms:
    frame = strained(ni_fcc(), seed)
    rng = np.random.default_rng(seed)
    frame.symbols[rng.permutation(len(frame))[: len(frame) // 2]] = "Al"
    return frame


def matscipy_eam(potential: str, kind: str):
    eam = pytest.importorskip("matscipy.calculators.eam")
    return eam.EAM(str(resolve_potential(potential)), kind=kind)


@pytest.mark.parametrize(
    "options, kind, make_frame",
    [
        (NI, "eam/alloy", lambda seed: strained(ni_fcc(), seed)),
        (AL, "eam/fs", lambda seed: strained(al_fcc(), seed)),
        (NIAL, "eam/alloy", nial_frame),
    ],
    ids=["Ni-eam/alloy", "Al-eam/fs", "NiAl-eam/alloy"],
)
def test_agrees_with_matscipy_eam(options, kind, make_frame):
    calc = LammpsCalculator(**options)
    reference = matscipy_eam(options["potential"], kind)
    for seed in range(3):
        frame = make_frame(seed)
        expected = frame.copy()
        expected.calc = reference
        frame.calc = calc
        n = len(frame)
        assert abs(frame.get_potential_energy() - expected.get_potential_energy()) / n < 1e-6
        np.testing.assert_allclose(frame.get_forces(), expected.get_forces(), atol=1e-4)
        np.testing.assert_allclose(frame.get_stress(), expected.get_stress(), atol=1e-5)


def test_nickel_fcc_energy_is_physical():
    atoms = ni_fcc(1)
    atoms.calc = make_calculator("eam-ni")
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(-4.45, abs=0.05)
    np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-10)


def test_stress_is_strain_derivative_on_triclinic_cell():
    atoms = strained(ni_fcc(), seed=7, strain=0.06)
    atoms.calc = LammpsCalculator(**NI)
    stress = atoms.get_stress()
    numeric = calculate_numerical_stress(atoms, eps=1e-5)  # ASE's central differences
    np.testing.assert_allclose(stress, numeric, atol=3e-6)


def test_forces_are_minus_energy_gradient():
    atoms = strained(ni_fcc(), seed=3, strain=0.05)
    atoms.calc = LammpsCalculator(**NI)
    forces = atoms.get_forces()
    h = 1e-5
    for atom in (0, 5, 17):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                frame = atoms.copy()
                frame.positions[atom, axis] += sign * h
                frame.calc = atoms.calc
                energies.append(frame.get_potential_energy())
            assert forces[atom, axis] == pytest.approx(
                -(energies[0] - energies[1]) / (2 * h), abs=1e-5
            )


def test_per_atom_energies_sum_to_total():
    atoms = nial_frame(seed=2)
    atoms.calc = LammpsCalculator(**NIAL)
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def test_rotating_the_frame_rotates_forces_and_stress():
    atoms = strained(ni_fcc(), seed=4)
    calc = LammpsCalculator(**NI)
    atoms.calc = calc
    energy, forces, stress = (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        atoms.get_stress(voigt=False),
    )
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell @ rotation.T)
    rotated.positions = atoms.positions @ rotation.T
    rotated.calc = calc
    assert rotated.get_potential_energy() == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(rotated.get_forces(), forces @ rotation.T, atol=1e-9)
    np.testing.assert_allclose(
        rotated.get_stress(voigt=False), rotation @ stress @ rotation.T, atol=1e-10
    )


def test_reused_instance_equals_fresh_instance():
    calc = LammpsCalculator(**NIAL)
    frames = [nial_frame(seed) for seed in range(3)] + [strained(ni_fcc(3), 9), nial_frame(5)]
    for frame in frames:
        frame.calc = calc
        fresh = frame.copy()
        fresh.calc = LammpsCalculator(**NIAL)
        energy = fresh.get_potential_energy()
        assert frame.get_potential_energy() == pytest.approx(energy, abs=1e-9)
        np.testing.assert_allclose(frame.get_forces(), fresh.get_forces(), atol=1e-10)
        np.testing.assert_allclose(frame.get_stress(), fresh.get_stress(), atol=1e-12)


def test_cluster_equals_cluster_in_vacuum_box():
    cluster = strained(ni_fcc(1), seed=1).repeat((2, 1, 1))
    cluster.pbc = False
    cluster.calc = LammpsCalculator(**NI)
    in_box = cluster.copy()
    in_box.set_cell(np.eye(3) * 40.0)
    in_box.center()
    in_box.pbc = True
    in_box.calc = LammpsCalculator(**NI)
    assert cluster.get_potential_energy() == pytest.approx(in_box.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(cluster.get_forces(), in_box.get_forces(), atol=1e-9)
    moved = cluster.copy()  # same size: the shrink-wrapped system is reused
    moved.positions = 1.05 * cluster.positions + 30.0
    moved.calc = cluster.calc
    fresh = moved.copy()
    fresh.calc = LammpsCalculator(**NI)
    assert moved.get_potential_energy() == pytest.approx(fresh.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), fresh.get_forces(), atol=1e-9)


def _labeled(frames, kind="eam-ni"):
    """Frames labeled through the labeling stage (one reused calculator), in order."""
    outcomes = [
        o
        for job in label_frames(frames, ReferenceConfig(kind=kind, name="eam"), chunk=len(frames))
        for o in job
    ]
    return [o.frame for o in sorted(outcomes, key=lambda o: o.index)], outcomes


def test_label_frames_labels_copies_in_order():
    frames = [strained(ni_fcc(2), 1), strained(ni_fcc(1), 2), strained(ni_fcc(2), 3)]
    labeled, _ = _labeled(frames)
    assert [len(f) for f in labeled] == [len(f) for f in frames]
    assert all("eam_energy" not in f.info for f in frames)
    calc = LammpsCalculator(**NI)
    for frame, result in zip(frames, labeled):
        labels = get_labels(result, "eam", require=("energy", "forces", "stress", "energies"))
        frame.calc = calc
        assert labels.energy == pytest.approx(frame.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(labels.forces, frame.get_forces(), atol=1e-10)
        np.testing.assert_allclose(labels.stress, frame.get_stress(), atol=1e-12)
        assert result.calc is None


def test_unknown_potential_file_names_it_and_close_matches():
    with pytest.raises(PotstillError, match=r"NiAlH_jea\.eam\.aloy.*NiAlH_jea\.eam\.alloy"):
        LammpsCalculator("eam/alloy", "NiAlH_jea.eam.aloy", ["Ni"])


def test_unknown_element_names_it_and_the_known_ones():
    frame = ni_fcc(1)
    frame.symbols[0] = "Cu"
    message = r"contains Cu but reference eam-ni knows only \['Ni'\]"
    _, (outcome,) = _labeled([frame])
    assert outcome.frame is None and outcome.attempts == 3  # tried, retried twice, recorded
    assert re.search(message, outcome.error) and "\n" not in outcome.error


def test_mixed_periodicity_is_refused():
    frame = ni_fcc(1)
    frame.pbc = [True, True, False]
    frame.calc = LammpsCalculator(**NI)
    with pytest.raises(PotstillError, match="mixed periodicity"):
        frame.get_potential_energy()


def test_bad_element_symbol_is_refused():
    with pytest.raises(PotstillError, match="unknown element 'Xx'"):
        LammpsCalculator("eam/alloy", "NiAlH_jea.eam.alloy", ["Xx"])


def test_potential_resolves_by_name_and_by_path():
    by_name = resolve_potential("Al_mm.eam.fs")
    assert by_name.parent == potentials_dir()
    assert resolve_potential(str(by_name)) == by_name


def test_lammps_loads_without_ld_library_path():
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    code = "from potstill.lammps_runtime import load_lammps; print(load_lammps().version())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 20200000
    assert load_lammps().version() > 20200000


# -- molten-salt references (seed 002): Born-Mayer-Huggins / Tosi-Fumi with PPPM ---------
MADELUNG_ROCKSALT = 1.747564594633  # per ion pair, in units of e^2 / (4 pi eps0 r0)
COULOMB_EV_A = 14.399645478  # e^2 / (4 pi eps0) in eV A


def _born_short_range(atoms: Atoms, salt: str) -> float:
    """The short-range Born-Mayer-Huggins energy (eV) of ``atoms`` by a direct sum over
    pairs within the 9 A cutoff, from the published table of potstill.references.tosi_fumi."""
    from ase.neighborlist import neighbor_list

    from potstill.references.tosi_fumi import _B_EV, _C_UNIT, _D_UNIT, _PAULING, CUTOFF_A, SALTS

    table = SALTS[salt]
    i, j, d = neighbor_list("ijd", atoms, CUTOFF_A)
    charge = np.where(np.array(atoms.get_chemical_symbols()) == "Cl", -1, 1)
    kind = np.where(
        charge[i] + charge[j] == 2, "++", np.where(charge[i] + charge[j] == 0, "+-", "--")
    )
    symbols = np.array(atoms.get_chemical_symbols())
    sigma = np.array([table["sigma"][s] for s in symbols])
    energy = 0.0
    for k in ("++", "+-", "--"):
        m = kind == k
        r = d[m]
        energy += np.sum(
            _PAULING[k] * _B_EV * np.exp((sigma[i[m]] + sigma[j[m]] - r) / table["rho"])
            - table["C"][k] * _C_UNIT / r**6
            - table["D"][k] * _D_UNIT / r**8
        )
    return 0.5 * energy  # each pair was counted twice


@pytest.mark.parametrize("salt,a", [("KCl", 6.22), ("NaCl", 5.60)])
def test_molten_salt_crystal_energy_is_madelung_plus_born(salt, a):
    """The rocksalt crystal's energy per ion pair equals the Madelung energy plus the
    short-range sum of the published Tosi-Fumi table: checks charges, units, the sign of
    LAMMPS's D term and PPPM."""
    crystal = bulk(salt, "rocksalt", a=a, cubic=True).repeat(2)
    crystal.calc = make_calculator(f"born-{salt.lower()}")
    pairs = len(crystal) / 2
    madelung = -MADELUNG_ROCKSALT * COULOMB_EV_A / (a / 2)
    expected = madelung + _born_short_range(crystal, salt) / pairs
    assert crystal.get_potential_energy() / pairs == pytest.approx(expected, abs=2e-4)
    # a bound ionic crystal near its lattice constant (Tosi-Fumi KCl: ~-7.3 eV per pair)
    assert -8.5 < crystal.get_potential_energy() / pairs < -7.0
    assert np.abs(crystal.get_forces()).max() < 1e-3  # forces vanish by symmetry


def test_molten_salt_forces_and_stress_are_energy_derivatives():
    from potstill.crystals import StructureConfig

    ions = StructureConfig(element="KCl", lattice="rocksalt", a_A=6.22, n_atoms=100).build()
    assert len(ions) == 100 and ions.get_chemical_formula() == "Cl50K50"
    assert np.allclose(ions.cell.lengths(), ions.cell.lengths()[0])  # the near-cubic cell
    # a general cell, but not one whose tilts sit at LAMMPS's flip limit (as the 100-ion
    # cell's do): PPPM's energy differs by ~1e-3 eV between two equivalent boxes, which a
    # finite difference across the flip would turn into a spurious stress
    frame = strained(bulk("KCl", "rocksalt", a=6.22, cubic=True).repeat(2), seed=3, strain=0.02)
    calc = make_calculator("born-kcl")
    frame.calc = calc
    forces = frame.get_forces()
    assert frame.calc.results["energies"].sum() == pytest.approx(
        frame.get_potential_energy(), abs=1e-8
    )
    h = 1e-4
    for atom, axis in ((0, 0), (37, 1), (63, 2)):
        moved = frame.copy()
        moved.calc = calc
        moved.positions[atom, axis] += h
        plus = moved.get_potential_energy()
        moved.positions[atom, axis] -= 2 * h
        minus = moved.get_potential_energy()
        # PPPM (relative accuracy 1e-5) forces are not the exact gradient of its energy
        assert -(plus - minus) / (2 * h) == pytest.approx(forces[atom, axis], abs=5e-3)
    numerical = calculate_numerical_stress(frame, eps=1e-5)
    assert np.abs(frame.get_stress() - numerical).max() < 2e-4  # eV/A^3 (0.03 GPa)


def test_charges_are_needed_for_every_element():
    with pytest.raises(PotstillError, match="no charge for"):
        make_calculator(
            "lammps",
            pair_style="born/coul/long 9.0",
            potential=None,
            elements=["K", "Cl"],
            charges={"K": 1.0},
        )


def test_a_formula_structure_checks_each_element_against_the_species():
    from potstill.crystals import StructureConfig

    salt = StructureConfig(element="KCl", lattice="rocksalt", a_A=6.22)
    assert salt.elements == ["K", "Cl"]
    salt.check_species(["K", "Cl"], "deform")  # every sampler's one check accepts it
    with pytest.raises(PotstillError, match=r"deform structure element\(s\) \['Cl'\] not in"):
        salt.check_species(["K", "Na"], "deform")
