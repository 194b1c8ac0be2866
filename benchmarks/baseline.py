"""The TorchANI baseline: potstill's networks and AEV inside TorchANI's own ``ANI`` model.

Contract: :func:`build_baseline` turns a potstill :class:`~potstill.models.ani.ANIModel`
into a ``torchani.arch.ANI`` (built by TorchANI's ``Assembler``) with the same AEV
parameters, the same per-element MLPs (weights copied) and the same self energies, in the
same dtype. It follows TorchANI's conventions: the model outputs Hartree (the last layer
and the self energies are divided by ``ase.units.Hartree``), takes atomic numbers, and
finds neighbours with its own neighbour list (``"all_pairs"``, the default of every
TorchANI model and hence of its ASE calculator).

:func:`frame_properties` evaluates ONE frame the way ``torchani.ase.Calculator`` does with
``stress_kind="scaling"``: energy from ``ANI.forward``, forces by autograd, stress as the
derivative with respect to a symmetric strain ``r' = r (1 + sym(eps))``, divided by the
volume; everything converted to eV, eV/A, eV/A^3 (Voigt ``xx yy zz yz xz xy``, ASE sign).
One frame at a time because TorchANI 2.9's neighbour list drops every neighbour of the
frames after the first in a batch of periodic frames.

:func:`batch_properties` loops over frames (what a TorchANI user would do) and returns the
dict potstill's loss expects; :func:`baseline_optimizers` mirrors potstill's
``make_optimizers`` (AdamW on weights with per-layer-position decay, SGD on biases).

Shared by ``train_throughput.py``, ``md_throughput.py`` and
``tests/test_torchani_equivalence.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

import copy  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import ase.units  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from torch import Tensor  # noqa: E402
from torchani.aev import ANIAngular, ANIRadial  # noqa: E402
from torchani.arch import ANI, Assembler  # noqa: E402
from torchani.nn import ANINetworks  # noqa: E402

from potstill.models.ani import ANIModel  # noqa: E402

__all__ = ["build_baseline", "frame_properties", "batch_properties", "baseline_optimizers"]

HARTREE_EV = ase.units.Hartree  # what torchani.ase.Calculator multiplies energies by
_VOIGT_ROWS = (0, 1, 2, 1, 0, 0)
_VOIGT_COLS = (0, 1, 2, 2, 2, 1)


def build_baseline(model: ANIModel, *, neighborlist: str = "all_pairs") -> ANI:
    """TorchANI ``ANI`` equal to ``model``, in Hartree, in ``model``'s dtype and device."""
    cfg = model.aev_config
    assembler = Assembler(symbols=model.species, neighborlist=neighborlist)
    assembler.set_global_cutoff_fn(cfg.cutoff_fn)
    assembler.set_aev_computer(
        radial=ANIRadial.cover_linearly(
            start=cfg.radial_start,
            cutoff=cfg.radial_cutoff,
            eta=cfg.radial_eta,
            num_shifts=cfg.radial_num_shifts,
        ),
        angular=ANIAngular.cover_linearly(
            start=cfg.angular_start,
            cutoff=cfg.angular_cutoff,
            eta=cfg.angular_eta,
            zeta=cfg.angular_zeta,
            num_shifts=cfg.angular_num_shifts,
            num_sections=cfg.angular_num_sections,
        ),
        strategy="pyaev",
    )
    first = next(iter(model.networks.values()))
    assembler.set_atomic_networks(
        cls=ANINetworks,
        ctor="build",
        kwargs={
            "dims": {},
            "default_dims": tuple(model.hidden),
            "activation": copy.deepcopy(first[1]),  # the same activation module
            "bias": True,
        },
    )
    assembler.set_self_energies({s: e / HARTREE_EV for s, e in model.self_energies_dict().items()})
    ani = assembler.assemble()
    ani.to(dtype=model.dtype, device=model.device)
    _copy_networks(model, ani)
    ani.energy_shifter.self_energies.copy_(model.self_energies.detach() / HARTREE_EV)
    return ani


def _copy_networks(model: ANIModel, ani: ANI) -> None:
    with torch.no_grad():
        for symbol, sequential in model.networks.items():
            source = [m for m in sequential if isinstance(m, torch.nn.Linear)]
            atomic = ani.neural_networks.atomics[symbol]
            target = [*atomic.layers, atomic.final_layer]
            assert len(source) == len(target)
            for k, (src, dst) in enumerate(zip(source, target)):
                scale = 1.0 / HARTREE_EV if k == len(source) - 1 else 1.0  # eV -> Hartree
                dst.weight.copy_(src.weight * scale)
                dst.bias.copy_(src.bias * scale)


def frame_properties(ani: ANI, atoms: Atoms, *, create_graph: bool = False) -> dict[str, Tensor]:
    """Energy (eV, 0-d), forces ``(n, 3)`` eV/A and stress ``(6,)`` eV/A^3 of one periodic
    frame, as ``torchani.ase.Calculator(stress_kind="scaling")`` computes them."""
    param = next(ani.parameters())
    dtype, device = param.dtype, param.device
    species = torch.tensor(atoms.numbers, dtype=torch.long, device=device).unsqueeze(0)
    coords = torch.tensor(atoms.positions, dtype=dtype, device=device).unsqueeze(0)
    cell = torch.tensor(atoms.cell[:], dtype=dtype, device=device)
    pbc = torch.tensor(atoms.pbc, dtype=torch.bool, device=device)
    coords.requires_grad_(True)
    strain = coords.new_zeros((3, 3), requires_grad=True)
    deformation = torch.eye(3, dtype=dtype, device=device) + 0.5 * (strain + strain.T)
    energy = ani((species, coords @ deformation), cell @ deformation, pbc).energies
    energy = energy.sum() * HARTREE_EV
    d_coords, d_strain = torch.autograd.grad(energy, [coords, strain], create_graph=create_graph)
    sigma = d_strain / torch.linalg.det(cell).abs()
    return {
        "energy": energy,
        "forces": -d_coords[0],
        "stress": sigma[list(_VOIGT_ROWS), list(_VOIGT_COLS)],
    }


def batch_properties(
    ani: ANI, frames: Sequence[Atoms], *, create_graph: bool = False
) -> dict[str, Tensor]:
    """:func:`frame_properties` frame by frame, stacked like potstill's model output:
    ``energy (B,)``, ``forces (n_total, 3)``, ``stress (B, 6)``."""
    results = [frame_properties(ani, atoms, create_graph=create_graph) for atoms in frames]
    return {
        "energy": torch.stack([r["energy"] for r in results]),
        "forces": torch.cat([r["forces"] for r in results]),
        "stress": torch.stack([r["stress"] for r in results]),
    }


def baseline_optimizers(ani: ANI, *, lr: float, weight_decay: Sequence[float]):
    """AdamW on weights (decay by layer position, as potstill), SGD on biases."""
    weight_groups: dict[int, list[torch.nn.Parameter]] = {}
    biases = []
    for atomic in ani.neural_networks.atomics.values():
        for position, layer in enumerate([*atomic.layers, atomic.final_layer]):
            weight_groups.setdefault(position, []).append(layer.weight)
            biases.append(layer.bias)
    decays = list(weight_decay) or [0.0]
    adamw = torch.optim.AdamW(
        [
            {"params": params, "weight_decay": decays[min(position, len(decays) - 1)]}
            for position, params in sorted(weight_groups.items())
        ],
        lr=lr,
    )
    return adamw, torch.optim.SGD(biases, lr=lr)
