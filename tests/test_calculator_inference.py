"""The inference path (float64): the hand-derived forces under torch.no_grad() equal
autograd's, the calculator computes stress only once asked, and one-frame batches that
reuse the previous call's tensors equal fresh ones (atoms moved within and beyond the
neighbour list's skin, cell changed, elements changed)."""

import dataclasses

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.filters import FrechetCellFilter

from potstill.aev import Batch, FrameBatcher
from potstill.models import ANIModel, Committee, PotstillCalculator

SPECIES = ["Ni", "Al"]


def _alloy(seed=1, repeat=2):
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(repeat)
    atoms.symbols[::5] = "Al"
    atoms.set_cell(
        atoms.cell[:] @ (np.eye(3) + [[0.02, 0.03, 0], [0, -0.01, 0.04], [0, 0, 0]]),
        scale_atoms=True,
    )
    atoms.rattle(0.08, seed=seed)
    return atoms


def _frames():
    small = bulk("Ni", "fcc", a=3.52).repeat((2, 2, 1))  # much smaller than the cutoff
    small.symbols[1] = "Al"
    small.rattle(0.05, seed=2)
    molecule = bulk("Ni", "fcc", a=3.52, cubic=True)
    molecule.pbc = False
    molecule.rattle(0.05, seed=3)
    return [_alloy(), small, molecule]


def _no_grad(model, batch):
    with torch.no_grad():
        return model(batch)


def _assert_same(ours, reference, keys=("energy", "atomic_energies", "forces", "stress")):
    for key in keys:
        torch.testing.assert_close(ours[key], reference[key].detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        {"preset": "paper", "hidden": (32, 16)},
        {"preset": "demo"},
        {"preset": "demo", "activation": "celu", "cutoff_fn": "smooth"},
    ],
    ids=["paper", "demo", "celu-smooth"],
)
@pytest.mark.parametrize("species", [SPECIES, ["Ni"]], ids=["two-elements", "one-element"])
def test_no_grad_path_equals_autograd(options, species):
    options = dict(options)
    model = ANIModel.from_preset(
        options.pop("preset"), species, seed=5, self_energies={"Ni": -1.5}, **options
    ).double()
    frames = _frames()
    if species == ["Ni"]:
        for atoms in frames:
            atoms.symbols[:] = "Ni"
    batch = model.batch(frames)
    reference = model(batch)  # grad enabled: autograd through the AEV
    ours = _no_grad(model, batch)  # no graph: the hand-derived chain rule
    assert not any(value.requires_grad for value in ours.values())
    assert reference["forces"].abs().max() > 0.1
    _assert_same(ours, reference)


def test_no_grad_path_with_a_larger_batch_cutoff():
    """A committee's batch uses its largest cutoff; each member drops the pairs beyond its
    own."""
    short = ANIModel.from_preset("demo", SPECIES, seed=1, radial_cutoff=4.0).double()
    batch = Batch.from_atoms(_frames(), SPECIES, 5.5, dtype=torch.float64)
    _assert_same(_no_grad(short, batch), short(batch))
    committee = Committee([short, ANIModel.from_preset("demo", SPECIES, seed=2).double()])
    batch = committee.batch(_frames())
    with torch.no_grad():
        ours = committee(batch)
    reference = committee(batch)
    for key in ("energy", "forces", "forces_std", "stress_std"):
        torch.testing.assert_close(ours[key], reference[key].detach(), rtol=0, atol=1e-12)


def test_no_grad_path_without_angular_neighbours():
    """Pairs only beyond the angular cutoff: the angular AEV and its gradient are zero."""
    model = ANIModel.from_preset("demo", ["Ni"], seed=3).double()
    atoms = bulk("Ni", "sc", a=4.0).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=1)
    batch = model.batch([atoms])
    _assert_same(_no_grad(model, batch), model(batch))


@pytest.fixture(scope="module")
def model():
    return ANIModel.from_preset(
        "demo", SPECIES, seed=4, self_energies={"Ni": -1.2, "Al": -0.4}
    ).double()


def test_calculator_computes_stress_only_once_asked(model):
    atoms = _alloy()
    calc = PotstillCalculator(model)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert "stress" not in calc.results  # MD asks for forces only
    energy = atoms.get_potential_energy()  # no new evaluation: energy came with forces
    stress = atoms.get_stress()
    assert "stress" in calc.results
    out = model(model.batch([atoms]))
    np.testing.assert_array_equal(forces, calc.results["forces"])  # same numbers either way
    assert energy == calc.results["energy"]
    np.testing.assert_allclose(forces, out["forces"].detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stress, out["stress"][0].detach().numpy(), rtol=0, atol=1e-12)
    atoms.positions[0] += 0.01
    atoms.get_forces()
    assert "stress" in calc.results  # once asked, computed at every call (cell filters)


def test_calculator_drives_a_cell_filter(model):
    atoms = _alloy()
    atoms.calc = PotstillCalculator(model)
    forces = FrechetCellFilter(atoms).get_forces()
    assert forces.shape == (len(atoms) + 3, 3) and np.isfinite(forces).all()


def _fresh(model, atoms):
    return _no_grad(model, model.batch([atoms]))


def _assert_batches_equal(reused, fresh):
    for field in dataclasses.fields(Batch):
        a, b = getattr(reused, field.name), getattr(fresh, field.name)
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype, field.name
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=field.name)
        else:
            assert a == b


def test_frame_batcher_equals_fresh_batches_as_atoms_move(model):
    atoms = _alloy(repeat=3)
    batcher = FrameBatcher(SPECIES, model.cutoff, dtype=torch.float64)
    first = batcher(atoms)
    _assert_batches_equal(first, model.batch([atoms]))
    rng = np.random.default_rng(0)
    shared_pairs = 0
    # within the 0.5 A skin (vesin re-filters its pairs), then beyond it (a new search)
    for scale in (0.0005, 0.0005, 0.01, 0.3, 0.6):
        previous = batcher._previous
        start = atoms.positions.copy()
        atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
        reused = batcher(atoms)
        _assert_batches_equal(reused, model.batch([atoms]))
        shared_pairs += reused.pairs is previous.pairs
        assert reused.species is first.species  # never rebuilt for the same elements
        assert not np.shares_memory(reused.positions.numpy(), atoms.positions)
        np.testing.assert_array_equal(reused.positions.numpy(), atoms.positions)
        assert not np.array_equal(start, atoms.positions)
        with torch.no_grad():
            _assert_same(model(reused), _fresh(model, atoms))
    assert shared_pairs >= 1  # small moves kept the same pairs (and shared the tensors)


def test_frame_batcher_follows_cell_and_element_changes(model):
    atoms = _alloy()
    batcher = FrameBatcher(SPECIES, model.cutoff, dtype=torch.float64)
    batcher(atoms)
    atoms.set_cell(atoms.cell[:] * 1.01, scale_atoms=True)
    _assert_batches_equal(batcher(atoms), model.batch([atoms]))
    atoms.symbols[3] = "Al" if atoms.symbols[3] == "Ni" else "Ni"
    _assert_batches_equal(batcher(atoms), model.batch([atoms]))
    other = _alloy(repeat=3)  # another system altogether
    _assert_batches_equal(batcher(other), model.batch([other]))


def test_calculator_md_equals_fresh_evaluations(model):
    """Consecutive MD-like calls (reused batches) give the numbers of fresh batches."""
    atoms = _alloy(repeat=3)
    atoms.calc = PotstillCalculator(model)
    rng = np.random.default_rng(1)
    for _ in range(4):
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        fresh = _fresh(model, atoms)
        np.testing.assert_allclose(atoms.get_forces(), fresh["forces"].numpy(), rtol=0, atol=1e-12)
        assert atoms.get_potential_energy() == pytest.approx(fresh["energy"].item(), abs=1e-12)
