"""The xtb reference (GFN-xTB over tblite), run for real on small molecules (milliseconds
per calculation) and one 8-atom silicon cell (a quarter of a second).

- GFN2-xTB and GFN1-xTB energies and gradients match the xtb program's own unit tests;
- forces and stress are derivatives of the stored energy;
- bad options are one-line errors;
- an SCF that does not converge raises, and labeling records the frame as failed.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import CalculationFailed
from ase.units import Bohr, Hartree

from potstill.errors import PotstillError
from potstill.frames import get_labels, labels_from_calculator
from potstill.labeling import label_store
from potstill.references import ReferenceConfig, make_calculator
from potstill.store import Store

pytest.importorskip("tblite")

# Reference values of the xtb program (an implementation of GFN-xTB independent of
# tblite), github.com/grimme-lab/xtb: geometries in Bohr, energies in Hartree, gradients
# in Hartree/Bohr, electronic temperature 300 K, accuracy 1. Fortran gradient(k, i) is
# component k of atom i, here gradient[i - 1, k - 1].
# test/unit/test_gfn2.f90, test_gfn2_api: propyne, GFN2-xTB.
PROPYNE_BOHR = [
    [0.00000000000000, 0.00000000000000, -1.79755622305860],
    [0.00000000000000, 0.00000000000000, 0.95338756106749],
    [0.00000000000000, 0.00000000000000, 3.22281255790261],
    [-0.96412815539807, -1.66991895015711, -2.53624948351102],
    [-0.96412815539807, 1.66991895015711, -2.53624948351102],
    [1.92825631079613, 0.00000000000000, -2.53624948351102],
    [0.00000000000000, 0.00000000000000, 5.23010455462158],
]
PROPYNE_GFN2_HARTREE = -8.3824793849585
PROPYNE_GFN2_GRADIENT = {(0, 2): -0.74649908147372e-03, (3, 0): -0.28433755158510e-03}
PROPYNE_GFN2_GRADIENT_NORM = 0.11544410028854e-01
# test/unit/test_gfn1.f90, test_gfn1_api: allene, GFN1-xTB.
ALLENE_BOHR = [
    [0.00000000000000, 0.00000000000000, 0.00000000000000],
    [0.00000000000000, 0.00000000000000, -2.45883087071663],
    [0.00000000000000, 0.00000000000000, 2.45883087071663],
    [-1.23873299308709, -1.23873299308709, -3.52402313872811],
    [1.23873299308709, 1.23873299308709, -3.52402313872811],
    [-1.23873299308709, 1.23873299308709, 3.52402313872811],
    [1.23873299308709, -1.23873299308709, 3.52402313872811],
]
ALLENE_GFN1_HARTREE = -8.4156335928615
ALLENE_GFN1_GRADIENT = {(4, 0): 0.18116310445596e-02, (5, 2): -0.76256813454808e-03}
# tblite reproduces these to 5e-9 Hartree; the tolerance leaves room for SCF noise
E_TOL_HARTREE = 1e-6
G_TOL = 1e-6  # Hartree/Bohr


def _molecule(positions_bohr) -> Atoms:
    return Atoms("C3H4", positions=np.array(positions_bohr) * Bohr)


def _energy_and_gradient(atoms: Atoms, **options):
    """Energy (Hartree) and gradient (Hartree/Bohr) of the xtb reference, from its eV."""
    atoms = atoms.copy()
    atoms.calc = make_calculator("xtb", **options)
    energy_eV = atoms.get_potential_energy()
    return energy_eV / Hartree, -atoms.get_forces() * Bohr / Hartree


def test_gfn2_energy_and_gradient_of_propyne_match_the_xtb_program(capfd):
    energy, gradient = _energy_and_gradient(_molecule(PROPYNE_BOHR), electronic_temperature_K=300.0)
    assert energy == pytest.approx(PROPYNE_GFN2_HARTREE, abs=E_TOL_HARTREE)
    assert np.linalg.norm(gradient) == pytest.approx(PROPYNE_GFN2_GRADIENT_NORM, abs=G_TOL)
    for index, value in PROPYNE_GFN2_GRADIENT.items():
        assert gradient[index] == pytest.approx(value, abs=G_TOL)
    # the default 1000 K smearing leaves a closed-shell molecule's energy as it is
    default, _ = _energy_and_gradient(_molecule(PROPYNE_BOHR))
    assert default == pytest.approx(energy, abs=1e-8)
    assert capfd.readouterr().out == ""  # verbosity 0: tblite prints nothing


def test_gfn1_is_selectable_and_differs_from_gfn2():
    allene = _molecule(ALLENE_BOHR)
    gfn1, gradient = _energy_and_gradient(allene, method="GFN1-xTB", electronic_temperature_K=300)
    assert gfn1 == pytest.approx(ALLENE_GFN1_HARTREE, abs=E_TOL_HARTREE)
    for index, value in ALLENE_GFN1_GRADIENT.items():
        assert gradient[index] == pytest.approx(value, abs=G_TOL)
    gfn2, _ = _energy_and_gradient(allene, method="GFN2-xTB", electronic_temperature_K=300)
    assert np.isfinite(gfn2) and abs(gfn1 - gfn2) * Hartree > 0.5  # eV: another Hamiltonian


def test_forces_are_the_derivative_of_the_energy():
    calc = make_calculator("xtb")
    ethane = molecule("C2H6")
    ethane.rattle(0.05, seed=3)
    ethane.calc = calc
    forces = ethane.get_forces()
    step = 1e-3  # Angstrom
    numeric = np.zeros_like(forces)
    for i in range(len(ethane)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                moved = ethane.copy()
                moved.positions[i, k] += sign * step
                moved.calc = calc
                energies.append(moved.get_potential_energy())
            numeric[i, k] = -(energies[0] - energies[1]) / (2 * step)
    assert np.abs(forces).max() > 1.0  # the rattled molecule feels forces worth checking
    np.testing.assert_allclose(forces, numeric, atol=2e-4)  # eV/Angstrom


def test_stress_of_a_periodic_cell_is_stored_and_is_the_strain_derivative():
    calc = make_calculator("xtb")
    silicon = bulk("Si", "diamond", a=5.43, cubic=True)
    silicon.rattle(0.03, seed=1)
    silicon.calc = calc
    labels = get_labels(
        labels_from_calculator(silicon, "xtb"), "xtb", require=("energy", "forces", "stress")
    )
    step = 1e-4
    for (i, j), voigt in (((0, 0), 0), ((1, 2), 3)):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * step / 2
            strain[j, i] += sign * step / 2
            strained = silicon.copy()
            strained.set_cell(silicon.cell[:] @ strain, scale_atoms=True)
            strained.calc = calc
            energies.append(strained.get_potential_energy())
        derivative = (energies[0] - energies[1]) / (2 * step) / silicon.get_volume()
        assert labels.stress[voigt] == pytest.approx(derivative, abs=2e-6)  # eV/Angstrom^3
    ethane = molecule("C2H6")
    ethane.calc = calc
    assert "xtb_stress" not in labels_from_calculator(ethane, "xtb").info  # a molecule: none


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "GFN3-xTB"}, "unknown xtb method 'GFN3-xTB'; use one of GFN1-xTB, GFN2-xTB"),
        ({"electronic_temperature_K": -100.0}, "electronic_temperature_K is a temperature"),
        ({"electronic_temperature_K": "hot"}, "electronic_temperature_K should be a finite"),
        ({"max_iterations": 0}, "max_iterations should be a positive integer"),
        ({"accuracy": 0.0}, "accuracy should be between"),
        ({"multiplicity": 0}, "multiplicity is 2S \\+ 1"),
        ({"temperature": 300.0}, "unknown xtb option\\(s\\) \\['temperature'\\]"),
    ],
)
def test_bad_xtb_options_are_one_line(options, message):
    with pytest.raises(PotstillError, match=message) as error:
        make_calculator("xtb", **options)
    assert "\n" not in str(error.value)
    with pytest.raises(PotstillError, match=message):
        ReferenceConfig(kind="xtb", name="xtb", options=options).build()


def test_an_unconverged_scf_raises_and_labeling_records_the_frame(tmp_path):
    from tblite.exceptions import TBLiteRuntimeError

    ethane = molecule("C2H6")
    ethane.calc = make_calculator("xtb", max_iterations=1)
    with pytest.raises(CalculationFailed, match="SCF not converged in 1 cycles") as error:
        ethane.get_potential_energy()
    assert isinstance(error.value.__cause__, TBLiteRuntimeError)

    store = Store(tmp_path / "pool.db")
    frames = [molecule("C2H6"), molecule("CH3CH2OH")]
    for step, frame in enumerate(frames):
        frame.rattle(0.02, seed=step)
        frame.info["step"] = step
    store.add(frames)
    broken = ReferenceConfig(kind="xtb", name="xtb", options={"max_iterations": 1})
    result = label_store(store, broken, retries=1)
    assert result["labeled"] == 0 and len(result["failed"]) == 2
    for frame in store.get():
        assert frame.info["xtb_label_attempts"] == 2
        assert "SCF not converged" in frame.info["xtb_label_error"]
        assert "xtb_energy" not in frame.info
    fixed = label_store(store, ReferenceConfig(kind="xtb", name="xtb"), retry_failed=True)
    assert fixed["labeled"] == 2 and not fixed["failed"]
    for frame in store.get():
        labels = get_labels(frame, "xtb", require=("energy", "forces"))
        assert np.isfinite(labels.energy) and "xtb_label_error" not in frame.info
