"""Committee statistics, the ASE calculator and checkpoints (float64)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.optimize import BFGS

from potstill.errors import PotstillError
from potstill.models import (
    ANIModel,
    Committee,
    PotstillCalculator,
    load_checkpoint,
    save_checkpoint,
)

SPECIES = ["Ni", "Al"]
SELF_ENERGIES = {"Ni": -1.2, "Al": -0.4}


def _cell(seed=1):
    """8-atom triclinic Ni/Al cell, rattled; smaller than twice the cutoff."""
    atoms = bulk("Ni", "fcc", a=3.52).repeat((2, 2, 2))
    atoms.symbols[[1, 6]] = "Al"
    deformation = np.eye(3) + [[0.01, 0.02, 0], [0, 0.03, 0], [0, 0.01, -0.02]]
    atoms.set_cell(atoms.cell[:] @ deformation, scale_atoms=True)
    atoms.rattle(0.06, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def committee():
    return Committee.from_preset(
        "demo", SPECIES, n_members=3, seed=11, self_energies=SELF_ENERGIES
    ).double()


def test_committee_mean_and_std_equal_numpy_over_members(committee):
    frames = [_cell(1), bulk("Al", "fcc", a=4.05, cubic=True)]
    batch = committee.batch(frames)
    out = committee(batch, return_members=True)
    singles = [member(batch) for member in committee.members]
    for key in ("energy", "atomic_energies", "forces", "stress"):
        members = np.stack([single[key].detach().numpy() for single in singles])
        np.testing.assert_allclose(out["members"][key].detach().numpy(), members, atol=1e-12)
        np.testing.assert_allclose(out[key].detach().numpy(), members.mean(0), atol=1e-12)
        np.testing.assert_allclose(out[f"{key}_std"].detach().numpy(), members.std(0), atol=1e-12)
    assert out["atomic_energies_std"].min() > 0  # members really differ
    assert out["energy"].shape == (2,) and out["forces_std"].shape == (len(batch.species), 3)


def test_shared_aev_committee_equals_its_members_and_computes_the_aev_once(committee, monkeypatch):
    """Without a graph the members share one AEV (and its derivative); the numbers are
    each member's own, evaluated alone with autograd."""
    import potstill.models.ani as ani

    frames = [_cell(1), bulk("Al", "fcc", a=4.05, cubic=True)]
    batch = committee.batch(frames)
    singles = [member(batch) for member in committee.members]  # autograd, one by one
    calls = []
    original = ani.ani_aev_with_vjp
    monkeypatch.setattr(ani, "ani_aev_with_vjp", lambda *args: calls.append(1) or original(*args))
    with torch.no_grad():
        out = committee(batch, return_members=True)
        mean_only = committee(batch, member_forces=False)
        energies = committee(batch, forces=False, stress=False)
    assert committee.shares_aev() and len(calls) == 2  # once per call with forces
    for key in ("energy", "atomic_energies", "forces", "stress"):
        members = np.stack([single[key].detach().numpy() for single in singles])
        np.testing.assert_allclose(out["members"][key].numpy(), members, atol=1e-12)
        np.testing.assert_allclose(out[f"{key}_std"].numpy(), members.std(0), atol=1e-12)
        # forces and stress of the mean energy: the mean of the members' (linearity)
        np.testing.assert_allclose(mean_only[key].numpy(), members.mean(0), atol=1e-12)
    assert "forces_std" not in mean_only and "stress_std" not in mean_only
    np.testing.assert_allclose(
        mean_only["atomic_energies_std"].numpy(), out["atomic_energies_std"].numpy(), atol=1e-14
    )
    np.testing.assert_allclose(
        energies["energy_std"].numpy(), out["energy_std"].numpy(), atol=1e-12
    )
    assert "forces" not in energies


def test_committee_calculator_without_member_forces(committee):
    atoms, reference = _cell(2), _cell(2)
    atoms.calc = PotstillCalculator(committee, forces_std=False)
    reference.calc = PotstillCalculator(committee)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), atol=1e-12)
    np.testing.assert_allclose(
        atoms.calc.results["energies_std"], reference.calc.results["energies_std"], atol=1e-14
    )
    assert "forces_std" not in atoms.calc.results and "forces_std" in reference.calc.results


def test_committee_rejects_mismatched_species():
    with pytest.raises(PotstillError, match="species"):
        Committee(
            [ANIModel.from_preset("demo", SPECIES), ANIModel.from_preset("demo", ["Al", "Ni"])]
        )


def test_calculator_equals_model_outputs():
    model = ANIModel.from_preset("demo", SPECIES, seed=4, self_energies=SELF_ENERGIES).double()
    atoms = _cell()
    atoms.calc = PotstillCalculator(model)
    assert atoms.calc.model is model  # same dtype: shared, not copied
    out = model(model.batch([atoms]))
    assert atoms.get_potential_energy() == pytest.approx(out["energy"].item(), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), out["stress"][0].numpy(), atol=1e-12)
    np.testing.assert_allclose(
        atoms.get_potential_energies(), out["atomic_energies"].detach().numpy(), atol=1e-12
    )
    assert "energy_std" not in atoms.calc.results


def test_committee_calculator_reports_uncertainties(committee):
    atoms = _cell()
    atoms.calc = PotstillCalculator(committee)
    energy = atoms.get_potential_energy()
    out = committee(committee.batch([atoms]))
    results = atoms.calc.results
    assert energy == pytest.approx(out["energy"].item(), abs=1e-12)
    assert results["energy_std"] == pytest.approx(out["energy_std"].item(), abs=1e-12)
    np.testing.assert_allclose(results["energies_std"], out["atomic_energies_std"].detach().numpy())
    np.testing.assert_allclose(results["forces_std"], out["forces_std"].detach().numpy())
    assert results["energies_std"].shape == (len(atoms),)


def test_calculator_recomputes_exactly_when_the_atoms_change(committee):
    """check_state compares exactly: unchanged atoms reuse the results, any change to
    positions, cell or charges (a new array) triggers one new evaluation."""
    model = committee.members[0]
    atoms = _cell(4)
    atoms.calc = PotstillCalculator(model)
    calls = []
    original = atoms.calc.calculate
    atoms.calc.calculate = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    first = atoms.get_forces().copy()
    atoms.get_forces()
    atoms.get_potential_energy()
    assert len(calls) == 1
    atoms.positions[2, 1] += 1e-9  # ASE's own check ignores changes below 1e-15 only
    moved = atoms.get_forces()
    assert len(calls) == 2 and atoms.calc.check_state(atoms) == []
    assert not np.array_equal(moved, first)
    atoms.set_cell(atoms.cell[:] * 1.001, scale_atoms=False)
    assert atoms.calc.check_state(atoms) == ["cell"]
    atoms.get_forces()
    atoms.set_initial_charges(np.zeros(len(atoms)))  # a new array: ASE's own check decides
    assert "initial_charges" in atoms.calc.check_state(atoms)
    atoms.get_forces()
    assert len(calls) == 4


def test_calculator_stress_equals_finite_difference_of_energy(committee):
    atoms = _cell(seed=5)
    atoms.calc = PotstillCalculator(committee)
    stress = atoms.get_stress()
    assert np.abs(stress).max() > 1e-4
    numeric = calculate_numerical_stress(atoms, eps=1e-5)  # ASE's central differences
    np.testing.assert_allclose(stress, numeric, atol=1e-8)


def test_calculator_without_pbc_has_no_stress_and_drives_an_optimizer():
    model = ANIModel.from_preset("demo", SPECIES, seed=4)  # float32: calculator copies
    cluster = Atoms("Ni3Al", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [1.2, 1.2, 2.0]])
    cluster.calc = PotstillCalculator(model)
    assert cluster.calc.model is not model and cluster.calc.model.dtype == torch.float64
    assert model.dtype == torch.float32
    with pytest.raises(PropertyNotImplementedError):
        cluster.get_stress()
    start = cluster.get_potential_energy()
    BFGS(cluster, logfile=None).run(fmax=1e-3, steps=5)
    assert cluster.get_potential_energy() < start


@pytest.mark.parametrize("kind", ["model", "committee"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, committee, kind):
    original = committee if kind == "committee" else committee.members[1]
    path = tmp_path / f"{kind}.pt"
    save_checkpoint(original, path, epoch=12, note="round trip", ids=np.arange(3))
    loaded = load_checkpoint(path)
    assert type(loaded) is type(original) and loaded.dtype == torch.float64
    assert loaded.checkpoint_metadata == {"epoch": 12, "note": "round trip", "ids": [0, 1, 2]}
    assert loaded.config() == original.config()
    batch = original.batch([_cell(3)])
    expected, actual = original(batch), loaded(batch)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)
    from_path = PotstillCalculator(str(path))
    atoms = _cell(3)
    atoms.calc = from_path
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"].item(), abs=1e-12)


def test_checkpoint_keeps_float32_and_rejects_bad_metadata(tmp_path):
    model = ANIModel.from_preset("demo", ["Ni"], seed=9)
    save_checkpoint(model, tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt").dtype == torch.float32
    with pytest.raises(PotstillError, match="JSON"):
        save_checkpoint(model, tmp_path / "bad.pt", rng=np.random.default_rng(0))
