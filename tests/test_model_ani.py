"""ANIModel and Batch: physics checks in float64 (forces and stress against finite
differences, batching against single frames, neighbours against ASE, AEV against
TorchANI's own periodic AEV)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from potstill.aev import AEVConfig, Batch, NeighborCache, frame_pairs
from potstill.errors import PotstillError
from potstill.models import ANIModel

SPECIES = ["Ni", "Al"]


def _alloy_32(seed=1):
    """32-atom Ni cell (~7 A) with 6 Al, rattled, triclinic strain, atoms partly unwrapped."""
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    atoms.symbols[[0, 5, 9, 14, 22, 30]] = "Al"
    atoms.set_cell(
        atoms.cell[:] @ (np.eye(3) + [[0.02, 0.03, 0.0], [0.0, -0.01, 0.04], [0.01, 0.0, 0.0]]),
        scale_atoms=True,
    )
    atoms.rattle(0.08, seed=seed)
    atoms.positions[3] += atoms.cell[0]  # outside the cell: shifts must absorb it
    return atoms


def _small_triclinic(seed=2):
    """4 atoms in a primitive fcc cell repeated 2x2x1: much smaller than the cutoff."""
    atoms = bulk("Ni", "fcc", a=3.52).repeat((2, 2, 1))
    atoms.symbols[1] = "Al"
    atoms.rattle(0.05, seed=seed)
    return atoms


def _frames():
    cubic4 = bulk("Al", "fcc", a=4.05, cubic=True)
    cubic4.symbols[0] = "Ni"
    cubic4.rattle(0.05, seed=3)
    big = bulk("Ni", "fcc", a=3.54, cubic=True).repeat(3)
    big.symbols[::7] = "Al"
    big.rattle(0.05, seed=4)
    return [_alloy_32(), cubic4, big, _small_triclinic()]


@pytest.fixture(scope="module")
def paper_model():
    """Paper AEV (6.9 A radial cutoff) with narrow layers, in float64."""
    model = ANIModel.from_preset(
        "paper", SPECIES, hidden=(32, 16), self_energies={"Ni": -1.5, "Al": -0.7}, seed=7
    )
    return model.double()


def _energy(model, atoms):
    with torch.no_grad():
        return float(model(model.batch([atoms]), forces=False, stress=False)["energy"][0])


def _pair_set(i, j, shifts):
    """Full, directed pair set {(i, j, Sx, Sy, Sz)} with vesin/ASE's r_j - r_i + S @ cell."""
    return set(zip(i.tolist(), j.tolist(), *shifts.T.tolist()))


@pytest.mark.parametrize("cutoff", [3.0, 6.9])
@pytest.mark.parametrize("build", [_alloy_32, _small_triclinic])
def test_vesin_pairs_equal_ase_neighbor_list(build, cutoff):
    atoms = build()
    pairs, shifts = frame_pairs(atoms, cutoff)
    i, j = pairs
    # Ours are TorchANI's (r_i - r_j + S @ cell), i.e. ASE's (j, i, S) direction.
    ours = _pair_set(j, i, shifts) | _pair_set(i, j, -shifts)
    ase_i, ase_j, ase_shifts, ase_d = neighbor_list("ijSd", atoms, cutoff)
    assert ours == _pair_set(ase_i, ase_j, ase_shifts)
    distances = np.linalg.norm(
        atoms.positions[i] - atoms.positions[j] + shifts @ atoms.cell[:], axis=1
    )
    assert len(distances) * 2 == len(ase_d)
    np.testing.assert_allclose(np.sort(np.repeat(distances, 2)), np.sort(ase_d), atol=1e-12)


def test_non_periodic_and_mixed_pbc_pairs_equal_ase():
    molecule = Atoms("NiAl2", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0.3]])
    slab = _alloy_32()
    slab.pbc = [True, True, False]
    for atoms, cutoff in [(molecule, 3.0), (slab, 5.0)]:
        (i, j), shifts = frame_pairs(atoms, cutoff)
        ours = _pair_set(j, i, shifts) | _pair_set(i, j, -shifts)
        assert ours == _pair_set(*neighbor_list("ijS", atoms, cutoff))


def test_batch_layout_and_cache():
    frames = _frames()
    cache = NeighborCache(max_frames=2)
    batch = Batch.from_atoms(frames, SPECIES, 5.0, dtype=torch.float64, cache=cache)
    assert batch.n_atoms.tolist() == [len(a) for a in frames]
    assert batch.positions.shape == (sum(len(a) for a in frames), 3)
    assert batch.positions.dtype == torch.float64 and batch.cells.shape == (4, 3, 3)
    # pairs never cross frames
    assert torch.equal(batch.frame_index[batch.pairs[0]], batch.pair_frame)
    assert torch.equal(batch.frame_index[batch.pairs[1]], batch.pair_frame)
    assert len(cache) == 2
    again = Batch.from_atoms(frames[-2:], SPECIES, 5.0, dtype=torch.float64, cache=cache)
    direct = Batch.from_atoms(frames[-2:], SPECIES, 5.0, dtype=torch.float64)
    assert torch.equal(again.pairs, direct.pairs) and torch.equal(again.shifts, direct.shifts)
    assert batch.to(dtype=torch.float32).positions.dtype == torch.float32


def test_unknown_element_is_a_clear_error():
    with pytest.raises(PotstillError, match="Cu"):
        Batch.from_atoms([bulk("Cu")], SPECIES, 5.0)


def test_aev_equals_torchani_periodic_aev(paper_model):
    atoms = _alloy_32()
    batch = paper_model.batch([atoms])
    ours = paper_model.aev(batch)
    reference = paper_model.aev_computer(
        batch.species.unsqueeze(0),
        batch.positions.unsqueeze(0),
        batch.cells[0],
        torch.tensor([True, True, True]),
    )[0]
    assert ours.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)


def test_forces_equal_minus_finite_difference_gradient(paper_model):
    atoms = _alloy_32()
    forces = paper_model(paper_model.batch([atoms]), stress=False)["forces"].numpy()
    assert np.abs(forces).max() > 1e-2  # a rattled cell has non-trivial forces
    rng = np.random.default_rng(0)
    h = 1e-5
    for atom, axis in zip(rng.choice(len(atoms), 8, replace=False), rng.integers(0, 3, 8)):
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, axis] += sign * h
            energies.append(_energy(paper_model, displaced))
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(forces[atom, axis], abs=1e-6)


@pytest.mark.parametrize("build", [_alloy_32, _small_triclinic])
def test_stress_equals_finite_difference_strain_derivative(paper_model, build):
    atoms = build()
    stress = paper_model(paper_model.batch([atoms]))["stress"][0].numpy()
    assert np.abs(stress).max() > 1e-4
    volume = atoms.get_volume()
    h = 1e-5
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for component, (a, b) in enumerate(voigt):
        energies = []
        for sign in (1, -1):
            strain = np.zeros((3, 3))
            strain[a, b] += sign * h / 2
            strain[b, a] += sign * h / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
            energies.append(_energy(paper_model, strained))
        expected = (energies[0] - energies[1]) / (2 * h * volume)
        assert stress[component] == pytest.approx(expected, abs=1e-8)


def test_batched_frames_equal_single_frames(paper_model):
    frames = _frames()
    together = paper_model(paper_model.batch(frames))
    start = 0
    for k, atoms in enumerate(frames):
        alone = paper_model(paper_model.batch([atoms]))
        atoms_slice = slice(start, start + len(atoms))
        start += len(atoms)
        torch.testing.assert_close(together["energy"][k], alone["energy"][0], rtol=0, atol=1e-10)
        torch.testing.assert_close(together["stress"][k], alone["stress"][0], rtol=0, atol=1e-10)
        for key in ("forces", "atomic_energies"):
            torch.testing.assert_close(together[key][atoms_slice], alone[key], rtol=0, atol=1e-10)


def test_energy_is_translation_and_permutation_invariant(paper_model):
    atoms = _alloy_32()
    moved = atoms.copy()
    moved.positions += [0.3, -1.7, 2.2]
    order = np.random.default_rng(5).permutation(len(atoms))
    permuted = atoms[order]
    energy = _energy(paper_model, atoms)
    assert _energy(paper_model, moved) == pytest.approx(energy, abs=1e-10)
    assert _energy(paper_model, permuted) == pytest.approx(energy, abs=1e-10)


def test_self_energies_add_per_atom(paper_model):
    atoms = _small_triclinic()
    shifted = ANIModel.from_config(paper_model.config(), seed=0).double()
    shifted.load_state_dict(paper_model.state_dict())
    shifted.set_self_energies({"Ni": 0.5, "Al": -0.7})  # Ni +2.0 eV relative
    n_ni = atoms.get_chemical_symbols().count("Ni")
    assert _energy(shifted, atoms) - _energy(paper_model, atoms) == pytest.approx(2.0 * n_ni)


def test_non_periodic_molecule_and_isolated_atom():
    model = ANIModel.from_preset("demo", SPECIES, self_energies={"Ni": -1.0}).double()
    molecule = Atoms("NiAl2", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0.3]])
    lonely = Atoms("Ni", positions=[[0, 0, 0]])
    out = model(model.batch([molecule, lonely]))
    assert torch.all(out["stress"] == 0)
    torch.testing.assert_close(out["forces"].sum(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out["forces"][3], torch.zeros(3, dtype=torch.float64))
    assert torch.isfinite(out["energy"]).all()
    model.requires_grad_(False)  # frozen weights and no neighbours at all
    alone = model(model.batch([lonely]))
    assert torch.all(alone["forces"] == 0) and torch.all(alone["stress"] == 0)


@pytest.mark.parametrize("species", [["Ni"], SPECIES])
def test_angular_pairs_without_triples(species):
    """Two far-apart dimers: angular pairs, but no atom with two of them; the angular
    AEV is zero and both gradient paths agree with finite differences of the energy."""
    model = ANIModel.from_preset("demo", species, seed=2).double()
    atoms = Atoms(
        f"Ni{species[-1]}Ni2", positions=[[0, 0, 0], [2.4, 0, 0], [0, 9, 0], [2.2, 9, 0.3]]
    )
    batch = model.batch([atoms])
    aev = model.aev(batch)
    radial_len = model.aev_computer.radial_len
    assert aev[:, :radial_len].abs().max() > 0 and torch.all(aev[:, radial_len:] == 0)
    with torch.no_grad():
        forces = model(batch)["forces"]
    torch.testing.assert_close(forces, model(batch)["forces"].detach(), rtol=0, atol=1e-12)
    step = 1e-5
    shifted = atoms.copy()
    shifted.positions[1, 0] += step
    back = atoms.copy()
    back.positions[1, 0] -= step
    energies = [
        model(model.batch([a]), forces=False, stress=False)["energy"].item()
        for a in (shifted, back)
    ]
    assert abs(forces[1, 0].item()) > 1e-3
    assert forces[1, 0].item() == pytest.approx(-(energies[0] - energies[1]) / (2 * step), abs=1e-7)


def test_create_graph_gives_the_parameter_gradient_of_a_force_loss(paper_model):
    atoms = _small_triclinic()
    batch = paper_model.batch([atoms])

    def loss():
        out = paper_model(batch, create_graph=True)
        return (out["forces"] ** 2).sum() + (out["stress"] ** 2).sum() * 1e3

    weight = paper_model.networks["Al"][0].weight
    paper_model.zero_grad()
    loss().backward()
    analytic = weight.grad[3, 5].item()
    assert analytic != 0
    h = 1e-6
    with torch.no_grad():
        weight[3, 5] += h
    upper = loss().item()
    with torch.no_grad():
        weight[3, 5] -= 2 * h
    lower = loss().item()
    with torch.no_grad():
        weight[3, 5] += h
    paper_model.zero_grad()
    assert analytic == pytest.approx((upper - lower) / (2 * h), rel=1e-5)


def test_float32_model_agrees_with_float64():
    model32 = ANIModel.from_preset("demo", SPECIES, seed=3)
    model64 = ANIModel.from_preset("demo", SPECIES, seed=3).double()
    frames = _frames()[:2]
    out32, out64 = model32(model32.batch(frames)), model64(model64.batch(frames))
    assert out32["forces"].dtype == torch.float32
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(out32[key].double(), out64[key], rtol=1e-4, atol=1e-4)


def test_presets_config_round_trip_and_errors():
    model = ANIModel.from_preset("paper", SPECIES)
    assert model.hidden == (224, 192, 160)
    assert model.cutoff == 6.9 and model.aev_config.radial_num_shifts == 23
    demo = ANIModel.from_preset("demo", ["Ni"], radial_cutoff=6.0, hidden=(8,), seed=2)
    assert demo.cutoff == 6.0 and demo.hidden == (8,)
    demo.set_self_energies({"Ni": -4.2})
    config = demo.config()
    assert ANIModel.from_config(config).config() == config
    assert config["aev"] == AEVConfig(**config["aev"]).__dict__
    with pytest.raises(PotstillError, match="preset"):
        ANIModel.from_preset("huge", SPECIES)
    with pytest.raises(PotstillError, match="radial_cutof"):
        ANIModel.from_preset("demo", SPECIES, radial_cutof=5.0)
    with pytest.raises(PotstillError, match="cutoff"):
        AEVConfig(radial_cutoff=3.0, angular_cutoff=4.0)
    small = Batch.from_atoms([_small_triclinic()], SPECIES, 3.0)
    with pytest.raises(PotstillError, match="cutoff"):
        model(small)
