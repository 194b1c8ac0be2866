"""potstill's batched model equals TorchANI's own ANI model frame by frame (float64).

The baseline (``benchmarks/baseline.py``) is TorchANI's ``ANI`` with potstill's weights,
self energies and AEV copied in, run on one frame at a time with TorchANI's neighbour
list, autograd forces and strain-derivative stress, as TorchANI's ASE calculator does.
potstill evaluates all frames in ONE batch of different (triclinic) cells and sizes.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from baseline import HARTREE_EV, batch_properties, build_baseline  # noqa: E402
from potstill.models.ani import ANIModel  # noqa: E402

ENERGY_TOL_EV_PER_ATOM = 1e-6
FORCE_TOL_EV_PER_A = 1e-5
STRESS_TOL_EV_PER_A3 = 1e-6


def _random_triclinic_frames(seed: int = 7):
    """Rattled Ni FCC frames of 32, 108 and 4 atoms, each in its own sheared cell."""
    rng = np.random.default_rng(seed)
    frames = []
    for repeat in (2, 3, 1):
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(repeat)
        deformation = np.eye(3) + 0.06 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell[:] @ deformation, scale_atoms=True)
        atoms.rattle(0.12, seed=int(rng.integers(1 << 30)))
        frames.append(atoms)
    return frames


def _model(preset: str) -> ANIModel:
    model = ANIModel.from_preset(preset, ["Ni"], seed=3, self_energies={"Ni": -4.47})
    model = model.to(dtype=torch.float64)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():  # non-zero biases, so copying them is tested too
        for layer in model.networks["Ni"]:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=generator))
    return model


@pytest.mark.parametrize("create_graph", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("preset", ["paper", "demo"])
def test_batched_potstill_equals_torchani_frame_by_frame(preset, create_graph):
    model = _model(preset)
    baseline = build_baseline(model)
    frames = _random_triclinic_frames()
    assert len({len(a) for a in frames}) == 3  # different sizes and cells in one batch

    ours = model(model.batch(frames), forces=True, stress=True, create_graph=create_graph)
    theirs = batch_properties(baseline, frames, create_graph=create_graph)

    n_atoms = torch.tensor([len(a) for a in frames], dtype=torch.float64)
    energy_error = ((ours["energy"] - theirs["energy"]).abs() / n_atoms).max()
    force_error = (ours["forces"] - theirs["forces"]).abs().max()
    stress_error = (ours["stress"] - theirs["stress"]).abs().max()
    assert energy_error < ENERGY_TOL_EV_PER_ATOM
    assert force_error < FORCE_TOL_EV_PER_A
    assert stress_error < STRESS_TOL_EV_PER_A3
    # the comparison is not vacuous: real forces and stresses, per-frame energies differ
    assert theirs["forces"].abs().max() > 0.1
    assert theirs["stress"].abs().max() > 1e-3
    assert len(set(np.round((theirs["energy"] / n_atoms).tolist(), 6))) == 3


def test_baseline_is_in_hartree_like_torchani_and_its_ase_calculator_agrees():
    """The baseline model outputs Hartree (TorchANI's convention); TorchANI's ASE
    calculator on it gives potstill's eV numbers."""
    from torchani.ase import Calculator

    model = _model("demo")
    baseline = build_baseline(model)
    atoms = _random_triclinic_frames()[0]
    with torch.no_grad():  # potstill takes its derivatives inside and detaches
        ours = model(model.batch([atoms]), forces=True, stress=True)
    species = torch.tensor(atoms.numbers).unsqueeze(0)
    coords = torch.tensor(atoms.positions).unsqueeze(0)
    cell, pbc = torch.tensor(atoms.cell[:]), torch.tensor(atoms.pbc)
    with torch.no_grad():
        hartree = float(baseline((species, coords), cell, pbc).energies)
    assert hartree * HARTREE_EV == pytest.approx(float(ours["energy"][0]), abs=1e-9)

    atoms.calc = Calculator(baseline)
    assert atoms.get_potential_energy() == pytest.approx(float(ours["energy"][0]), abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), ours["forces"].numpy(), atol=1e-9)
    np.testing.assert_allclose(atoms.get_stress(), ours["stress"][0].numpy(), atol=1e-10)


def test_force_and_stress_loss_gradients_equal_torchani_double_backward():
    """Training backpropagates a force + stress loss to the weights; potstill applies the
    AEV's Jacobian as a constant, TorchANI's autograd goes through everything."""
    from potstill.training.loss import LossWeights, energy_force_stress_loss

    model = _model("paper")
    baseline = build_baseline(model)
    frames = _random_triclinic_frames()
    batch = model.batch(frames)
    rng = np.random.default_rng(5)
    targets = {
        "energy": torch.tensor([-4.4 * len(a) for a in frames], dtype=torch.float64),
        "forces": torch.tensor(rng.normal(size=(batch.species.shape[0], 3))),
        "stress": torch.tensor(rng.normal(scale=0.01, size=(len(frames), 6))),
        "has_stress": torch.ones(len(frames), dtype=torch.bool),
        "volume": torch.tensor([a.get_volume() for a in frames], dtype=torch.float64),
        "n_atoms": batch.n_atoms,
        "frame_index": batch.frame_index,
    }
    weights = LossWeights(alpha=1.0, beta=1.0, gamma=1.0)
    ours = energy_force_stress_loss(model(batch, create_graph=True), targets, weights)["loss"]
    theirs = energy_force_stress_loss(
        batch_properties(baseline, frames, create_graph=True), targets, weights
    )["loss"]
    ours.backward()
    theirs.backward()
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-10)
    first_ours = model.networks["Ni"][0].weight.grad
    first_theirs = baseline.neural_networks.atomics["Ni"].layers[0].weight.grad
    assert first_ours.abs().max() > 1e-3
    torch.testing.assert_close(first_ours, first_theirs, rtol=1e-7, atol=1e-9)
    # the last layer is stored in Hartree by the baseline: its gradient is Hartree times ours
    last_ours = model.networks["Ni"][-1].weight.grad
    last_theirs = baseline.neural_networks.atomics["Ni"].final_layer.weight.grad
    torch.testing.assert_close(last_ours, last_theirs / HARTREE_EV, rtol=1e-7, atol=1e-9)
