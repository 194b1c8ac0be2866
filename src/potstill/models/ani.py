"""ANI-type neural network potential on TorchANI's AEV, for batches of periodic frames.

Contract: ``ANIModel(batch)`` maps a :class:`~potstill.models.neighbors.Batch` to a dict
of named tensors in eV and Angstrom:

- ``energy (B,)`` eV, the sum of the atomic energies of each frame;
- ``atomic_energies (n_total,)`` eV, network output plus the element's self energy;
- ``forces (n_total, 3)`` eV/A, ``-dE/dr``;
- ``stress (B, 6)`` eV/A^3, Voigt ``xx yy zz yz xz xy``, ASE's sign convention
  ``stress = (1/V) dE/d(strain)`` for a symmetric strain (zeros for zero-volume cells).

Architecture (seed 001): the TorchANI AEV (radial + angular symmetry functions over a
vesin neighbour list), one MLP per element ``AEV -> hidden... -> 1`` with GELU, Kaiming
normal weights and zero biases, plus a buffer of per-element self energies.

Forces and stress come from the gradient ``g_p = dE/dd_p`` of the energy with respect to
the pair vectors ``d_p = r_i - r_j + shift @ cell``, the only way the AEV sees the
geometry: ``F = -dE/dr`` collects ``+g_p`` on ``j`` and ``-g_p`` on ``i``, and the strain
derivative is ``sym(sum_p d_p (x) g_p)`` per frame (positions and cell strained together,
``d' = d (1 + eps)``): the same numbers as autograd through ``r' = r (1 + sym(eps))``,
``cell' = cell (1 + sym(eps))``. With ``create_graph=True`` forces and stress can be
backpropagated to the weights (training on forces and stress); the AEV's Jacobian is then
applied as a constant (``torch.func.vjp``), so they are not differentiable with respect
to the positions, which training never needs. Under ``torch.no_grad()`` (the ASE
calculator, validation) no graph is recorded at all: ``g_p`` comes from the chain rule
written out by hand (:func:`_ani_aev_with_vjp`, :func:`_mlp_with_vjp`), the same numbers
up to rounding, without a graph to record and walk back.

The AEV is TorchANI's (its radial and angular parameters, cutoff functions and triples),
summed without materialising the per-triple outer products (see :func:`_ani_aev`).

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) hold only the JSON-able
config, the dtype, state dicts and metadata, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# torchani warns on import that its optional CUDA extensions are missing; we never use
# them (pure-PyTorch AEV), so silence it unless the user chose otherwise.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

from torchani.aev import AEVComputer, ANIAngular, ANIRadial  # noqa: E402
from torchani.cutoffs import CutoffCosine  # noqa: E402
from torchani.neighbors import (  # noqa: E402
    Neighbors,
    Triples,
    discard_outside_cutoff,
    neighbors_to_triples,
)

from potstill.errors import PotstillError  # noqa: E402
from potstill.models.neighbors import Batch  # noqa: E402

__all__ = ["AEVConfig", "ANIModel", "PRESETS", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "potstill-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class AEVConfig:
    """Parameters of the ANI atomic environment vector (lengths in Angstrom).

    Radial shifts are ``radial_num_shifts`` evenly spaced centres from ``radial_start``
    up to (excluding) ``radial_cutoff``; angular shifts likewise; ``angular_num_sections``
    angle centres cover ``[0, pi)`` (TorchANI's ``cover_linearly``). Etas are in 1/A^2.
    """

    radial_cutoff: float = 5.1
    angular_cutoff: float = 3.5
    radial_start: float = 0.8
    radial_eta: float = 19.7
    radial_num_shifts: int = 16
    angular_start: float = 0.8
    angular_eta: float = 12.5
    angular_zeta: float = 14.1
    angular_num_shifts: int = 8
    angular_num_sections: int = 4
    cutoff_fn: str = "cosine"

    def __post_init__(self):
        if not 0 < self.angular_cutoff <= self.radial_cutoff:
            raise PotstillError(
                f"need 0 < angular_cutoff <= radial_cutoff, got {self.angular_cutoff} "
                f"and {self.radial_cutoff} A"
            )
        if self.cutoff_fn not in ("cosine", "smooth"):
            raise PotstillError(f"cutoff_fn must be 'cosine' or 'smooth', got {self.cutoff_fn!r}")

    def build(self, num_species: int) -> AEVComputer:
        """TorchANI ``AEVComputer`` for ``num_species`` elements (pure-PyTorch strategy)."""
        return AEVComputer(
            radial=ANIRadial.cover_linearly(
                start=self.radial_start,
                cutoff=self.radial_cutoff,
                eta=self.radial_eta,
                num_shifts=self.radial_num_shifts,
                cutoff_fn=self.cutoff_fn,
            ),
            angular=ANIAngular.cover_linearly(
                start=self.angular_start,
                cutoff=self.angular_cutoff,
                eta=self.angular_eta,
                zeta=self.angular_zeta,
                num_shifts=self.angular_num_shifts,
                num_sections=self.angular_num_sections,
                cutoff_fn=self.cutoff_fn,
            ),
            num_species=num_species,
            strategy="pyaev",
        )


# "paper": seeds 000/001 (224-192-160, 6.9 A radial cutoff for metals) with ANI-2x etas
# and spacing: ANI-2x puts 16 radial centres on 0.8-5.1 A (0.269 A apart); 23 centres
# on 0.8-6.9 A keep that spacing (0.265 A). "demo": small enough to train on 2 CPU cores.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "aev": AEVConfig(radial_cutoff=6.9, radial_num_shifts=23),
        "hidden": (224, 192, 160),
    },
    "demo": {
        "aev": AEVConfig(
            radial_cutoff=5.2,
            radial_eta=10.0,
            radial_num_shifts=12,
            angular_cutoff=3.5,
            angular_eta=4.0,
            angular_num_shifts=4,
            angular_num_sections=4,
        ),
        "hidden": (64, 48, 32),
    },
}

_ACTIVATIONS = {
    "gelu": torch.nn.GELU,
    "celu": lambda: torch.nn.CELU(alpha=0.1),
    "silu": torch.nn.SiLU,
}


class ANIModel(torch.nn.Module):
    """Species-wise MLPs on the TorchANI AEV, returning energies, forces and stress.

    Args:
        species: element symbols; their order fixes the species indices of a Batch.
        aev: AEV parameters.
        hidden: widths of the hidden layers of every element's MLP.
        activation: ``"gelu"`` (the papers'), ``"celu"`` (ANI's, alpha 0.1) or ``"silu"``.
        self_energies: eV per atom of each element, added to the network output
            (missing elements get 0).
        seed: seed of the weight initialisation.
    """

    def __init__(
        self,
        species: Sequence[str],
        *,
        aev: AEVConfig,
        hidden: Sequence[int] = (224, 192, 160),
        activation: str = "gelu",
        self_energies: Mapping[str, float] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        species = list(species)
        if not species or len(set(species)) != len(species):
            raise PotstillError(f"species must be distinct element symbols, got {species}")
        if activation not in _ACTIVATIONS:
            raise PotstillError(
                f"unknown activation {activation!r}; accepted: {', '.join(_ACTIVATIONS)}"
            )
        self.species = species
        self.aev_config = aev
        self.hidden = tuple(int(width) for width in hidden)
        self.activation = activation
        self.aev_computer = aev.build(len(species))
        generator = torch.Generator().manual_seed(seed)
        self.networks = torch.nn.ModuleDict(
            {symbol: self._mlp(generator) for symbol in species}
        )
        self.register_buffer("self_energies", torch.zeros(len(species)))
        self.set_self_energies(self_energies or {})

    def _mlp(self, generator: torch.Generator) -> torch.nn.Sequential:
        widths = (self.aev_computer.out_dim, *self.hidden, 1)
        layers: list[torch.nn.Module] = []
        for k, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = torch.nn.Linear(width_in, width_out)
            torch.nn.init.kaiming_normal_(linear.weight, generator=generator)
            torch.nn.init.zeros_(linear.bias)
            layers.append(linear)
            if k < len(self.hidden):
                layers.append(_ACTIVATIONS[self.activation]())
        return torch.nn.Sequential(*layers)

    # --- construction --------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, species: Sequence[str], **overrides: Any) -> ANIModel:
        """Model from a named preset (``"paper"``, ``"demo"``).

        ``overrides`` may be any ``__init__`` keyword (``hidden``, ``activation``,
        ``self_energies``, ``seed``, ``aev``) or any :class:`AEVConfig` field, e.g.
        ``from_preset("demo", ["Ni"], radial_cutoff=6.0, seed=3)``.
        """
        if name not in PRESETS:
            raise PotstillError(f"unknown preset {name!r}; accepted: {', '.join(PRESETS)}")
        options = dict(PRESETS[name])
        aev_fields = {field.name for field in dataclasses.fields(AEVConfig)}
        aev_overrides = {k: v for k, v in overrides.items() if k in aev_fields}
        model_options = {"hidden", "activation", "self_energies", "seed", "aev"}
        unknown = set(overrides) - aev_fields - model_options
        if unknown:
            raise PotstillError(
                f"unknown option(s) {', '.join(sorted(unknown))} for from_preset; accepted: "
                f"{', '.join(sorted(model_options | aev_fields))}"
            )
        options.update({k: v for k, v in overrides.items() if k in model_options})
        options["aev"] = dataclasses.replace(options["aev"], **aev_overrides)
        return cls(species, **options)

    def config(self) -> dict[str, Any]:
        """JSON-able description; ``ANIModel.from_config(model.config())`` rebuilds it."""
        return {
            "species": list(self.species),
            "aev": dataclasses.asdict(self.aev_config),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "self_energies": self.self_energies_dict(),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0) -> ANIModel:
        """Model described by :meth:`config` (weights freshly initialised from ``seed``)."""
        return cls(
            config["species"],
            aev=AEVConfig(**config["aev"]),
            hidden=tuple(config["hidden"]),
            activation=config["activation"],
            self_energies=config.get("self_energies"),
            seed=seed,
        )

    # --- self energies ---------------------------------------------------------------

    def set_self_energies(self, energies: Mapping[str, float]) -> None:
        """Set the per-element self energies, eV/atom (elements not given get 0)."""
        unknown = set(energies) - set(self.species)
        if unknown:
            raise PotstillError(
                f"self energies given for {', '.join(sorted(unknown))}, which are not in "
                f"the model's species {', '.join(self.species)}"
            )
        values = [float(energies.get(symbol, 0.0)) for symbol in self.species]
        self.self_energies.copy_(torch.tensor(values, dtype=torch.float64))

    def self_energies_dict(self) -> dict[str, float]:
        """Per-element self energies, eV/atom."""
        return {s: float(e) for s, e in zip(self.species, self.self_energies.tolist())}

    # --- evaluation ------------------------------------------------------------------

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff a Batch must be built with, Angstrom."""
        return self.aev_config.radial_cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.self_energies.dtype

    @property
    def device(self) -> torch.device:
        return self.self_energies.device

    def batch(self, frames, **options) -> Batch:
        """``Batch.from_atoms(frames, self.species, self.cutoff)`` in this model's dtype."""
        options.setdefault("dtype", self.dtype)
        options.setdefault("device", self.device)
        return Batch.from_atoms(frames, self.species, self.cutoff, **options)

    def aev(self, batch: Batch, *, positions: Tensor | None = None,
            cells: Tensor | None = None) -> Tensor:
        """Atomic environment vectors ``(n_total, aev_dim)`` of a batch.

        ``positions (n_total, 3)`` and ``cells (B, 3, 3)`` default to the batch's; pass
        strained or differentiable copies to take (first) derivatives.
        """
        self._check_cutoff(batch)
        positions = batch.positions if positions is None else positions
        cells = batch.cells if cells is None else cells
        if batch.pairs.shape[1] == 0:
            return positions.new_zeros((positions.shape[0], self.aev_computer.out_dim))
        return self._aev_from_diff_vectors(batch, _diff_vectors(batch, positions, cells))

    def _check_cutoff(self, batch: Batch) -> None:
        if batch.cutoff < self.cutoff:
            raise PotstillError(
                f"batch built with cutoff {batch.cutoff} A but the model needs {self.cutoff} A;"
                " build it with model.batch(frames)"
            )

    def _aev_from_diff_vectors(self, batch: Batch, diff_vectors: Tensor) -> Tensor:
        """AEVs ``(n_total, aev_dim)`` from the pair vectors ``(P, 3)`` of ``batch.pairs``."""
        n_total = batch.species.shape[0]
        neighbors = Neighbors(batch.pairs, diff_vectors.norm(dim=-1), diff_vectors)
        if batch.cutoff > self.cutoff:  # e.g. a committee whose members differ in cutoff
            neighbors = discard_outside_cutoff(neighbors, self.cutoff)
            if neighbors.indices.shape[1] == 0:
                return diff_vectors.new_zeros((n_total, self.aev_computer.out_dim))
        return _ani_aev(self.aev_computer, batch.species, neighbors)

    def atomic_energies(self, aev: Tensor, species: Tensor) -> Tensor:
        """Atomic energies ``(n_total,)`` eV from AEVs ``(n_total, aev_dim)``."""
        if len(self.networks) == 1:  # one element: no gathering and scattering by species
            (network,) = self.networks.values()
            return network(aev).squeeze(-1) + self.self_energies[species]
        indices, outputs = [], []
        for k, network in enumerate(self.networks.values()):
            selected = torch.nonzero(species == k).squeeze(-1)
            if selected.numel():
                indices.append(selected)
                outputs.append(network(aev.index_select(0, selected)).squeeze(-1))
        energies = aev.new_zeros(aev.shape[0])
        if indices:
            energies = energies.index_add(0, torch.cat(indices), torch.cat(outputs))
        return energies + self.self_energies[species]

    def _energy(self, batch: Batch, aev: Tensor) -> dict[str, Tensor]:
        atomic = self.atomic_energies(aev, batch.species)
        energy = atomic.new_zeros(batch.n_frames).index_add(0, batch.frame_index, atomic)
        return {"energy": energy, "atomic_energies": atomic}

    def _energy_and_gradient(self, batch: Batch, diff_vectors: Tensor, *, retain_graph: bool):
        """Energies and ``dE/d(pair vectors) (P, 3)`` by plain autograd through the AEV."""
        diff_vectors = diff_vectors.detach().requires_grad_(True)
        out = self._energy(batch, self._aev_from_diff_vectors(batch, diff_vectors))
        (energy_by_diffs,) = torch.autograd.grad(
            out["energy"].sum(), diff_vectors, retain_graph=retain_graph,
            materialize_grads=True,  # pairs beyond this model's cutoff
        )
        return out, energy_by_diffs

    def _energy_and_gradient_inference(self, batch: Batch, diff_vectors: Tensor):
        """Energies and ``dE/d(pair vectors) (P, 3)`` without autograd (no graph kept).

        Same numbers as :meth:`_energy_and_gradient` (up to the rounding of a few sums):
        the AEV and the MLPs apply their chain rules by hand (:func:`_ani_aev_with_vjp`,
        :func:`_mlp_with_vjp`). For evaluation under ``torch.no_grad()``, e.g. MD.
        """
        n_total = batch.species.shape[0]
        pairs = batch.pairs
        kept = None
        if batch.cutoff > self.cutoff:  # e.g. a committee whose members differ in cutoff
            kept = (diff_vectors.norm(dim=-1) <= self.cutoff).nonzero().flatten()
            pairs, diff_vectors = pairs.index_select(1, kept), diff_vectors.index_select(0, kept)
        if pairs.shape[1] == 0:
            aev = diff_vectors.new_zeros((n_total, self.aev_computer.out_dim))
            aev_vjp = lambda energy_by_aev: diff_vectors.new_zeros((0, 3))  # noqa: E731
        else:
            neighbors = Neighbors(pairs, diff_vectors.norm(dim=-1), diff_vectors)
            aev, aev_vjp = _ani_aev_with_vjp(self.aev_computer, batch.species, neighbors)
        atomic, energy_by_aev = self._atomic_energies_with_gradient(aev, batch.species)
        energy = atomic.new_zeros(batch.n_frames).index_add(0, batch.frame_index, atomic)
        energy_by_diffs = aev_vjp(energy_by_aev)
        if kept is not None:
            energy_by_diffs = diff_vectors.new_zeros((batch.pairs.shape[1], 3)).index_copy_(
                0, kept, energy_by_diffs
            )
        return {"energy": energy, "atomic_energies": atomic}, energy_by_diffs

    def _atomic_energies_with_gradient(self, aev: Tensor, species: Tensor):
        """:meth:`atomic_energies` ``(n_total,)`` and ``dE/dAEV (n_total, aev_dim)``, by
        hand (see :func:`_mlp_with_vjp`)."""
        if len(self.networks) == 1:
            (network,) = self.networks.values()
            outputs, energy_by_aev = _mlp_with_vjp(network, aev)
            return outputs + self.self_energies[species], energy_by_aev
        indices, outputs = [], []
        energy_by_aev = torch.zeros_like(aev)
        for k, network in enumerate(self.networks.values()):
            selected = torch.nonzero(species == k).squeeze(-1)
            if selected.numel():
                output, gradient = _mlp_with_vjp(network, aev.index_select(0, selected))
                indices.append(selected)
                outputs.append(output)
                energy_by_aev.index_copy_(0, selected, gradient)
        energies = aev.new_zeros(aev.shape[0])
        if indices:
            energies = energies.index_add(0, torch.cat(indices), torch.cat(outputs))
        return energies + self.self_energies[species], energy_by_aev

    def _energy_and_gradient_for_training(self, batch: Batch, diff_vectors: Tensor):
        """Energies and ``dE/d(pair vectors) (P, 3)`` with a graph to the weights only.

        Same numbers as :meth:`_energy_and_gradient`, but the AEV's Jacobian is applied
        as a constant (``torch.func.vjp`` at the pair vectors): backpropagating a force or
        stress loss then costs one pass through the AEV's first derivatives instead of
        its second derivatives with respect to the positions, which training never uses.
        """
        aev, aev_vjp = torch.func.vjp(
            lambda diffs: self._aev_from_diff_vectors(batch, diffs), diff_vectors
        )
        aev = aev.detach().requires_grad_(True)
        out = self._energy(batch, aev)
        (energy_by_aev,) = torch.autograd.grad(out["energy"].sum(), aev, create_graph=True)
        (energy_by_diffs,) = aev_vjp(energy_by_aev)
        return out, energy_by_diffs

    def forward(
        self,
        batch: Batch,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, Tensor]:
        """Energies, forces and stress of a batch (see the module docstring for units).

        Args:
            batch: frames to evaluate; cast to this model's dtype and device if needed.
            forces: compute ``forces``.
            stress: compute ``stress``.
            create_graph: keep the graph of forces and stress for backpropagation.

        Returns:
            dict with ``energy (B,)``, ``atomic_energies (n_total,)`` and, as requested,
            ``forces (n_total, 3)`` and ``stress (B, 6)``.
        """
        if batch.dtype != self.dtype or batch.device != self.device:
            batch = batch.to(dtype=self.dtype, device=self.device)
        self._check_cutoff(batch)
        caller_tracks_grad = torch.is_grad_enabled()
        if not (forces or stress):
            out = self._energy(batch, self.aev(batch))
        elif batch.pairs.shape[1] == 0:  # no neighbours anywhere: AEVs are all zero
            out = self._energy(batch, self.aev(batch))
            diff_vectors = energy_by_diffs = batch.positions.new_zeros((0, 3))
        else:
            diff_vectors = _diff_vectors(batch, batch.positions, batch.cells).detach()
            if create_graph:
                with torch.enable_grad():
                    out, energy_by_diffs = self._energy_and_gradient_for_training(
                        batch, diff_vectors
                    )
            elif caller_tracks_grad:  # the caller may backpropagate the energy
                out, energy_by_diffs = self._energy_and_gradient(
                    batch, diff_vectors, retain_graph=True
                )
            else:  # under torch.no_grad(), e.g. MD: no graph at all
                out, energy_by_diffs = self._energy_and_gradient_inference(batch, diff_vectors)
        if forces:
            out["forces"] = _forces(batch, energy_by_diffs)
        if stress:
            virial = _virial(batch, diff_vectors, energy_by_diffs)
            out["stress"] = _voigt_stress(virial, batch.cells)
        if not (caller_tracks_grad or create_graph):
            out = {key: value.detach() for key, value in out.items()}
        return out


def _ani_aev(computer: AEVComputer, species: Tensor, neighbors: Neighbors) -> Tensor:
    """TorchANI's AEV ``(n_total, aev_dim)`` of all atoms from their neighbour pairs.

    The same terms and layout as ``AEVComputer.compute_from_neighbors`` (the computer's
    radial and angular parameters and cutoff function, TorchANI's triples), with all
    frames as one "molecule" (pairs never cross frames), computed faster on CPU:

    - each atom's angular AEV is the product ``R_i^T A_i`` of its triples' radial factors
      (``(t_i, shifts)``, cutoff functions included) and angle factors (``(t_i,
      sections)``), one batched matmul over atoms padded to the largest triple count,
      instead of materialising and scattering ``(triples, shifts x sections)`` products;
    - the Gaussians and the angle factor carry their derivatives from the forward pass
      (:class:`_WeightedGaussians`, :class:`_AngleTerms`).

    Derivatives are first order in the geometry (forces, stress, and their gradients with
    respect to the weights); second derivatives with respect to positions are not
    available through it.
    """
    n_total = species.shape[0]
    term = computer.radial
    distances = neighbors.distances
    # as ANIRadial: 0.25 exp(-eta (d - shift)^2) fc(d), (P, radial shifts)
    weight = 0.25 * term.cutoff_fn(distances, term.cutoff)
    radial_terms = _gaussians(distances, weight, term.shifts, term.eta)
    # as AEVComputer._collect_radial: row (atom, element of the other atom)
    n_species = computer.num_species
    rows = neighbors.indices * n_species + species[neighbors.indices].flip(0)
    radial = radial_terms.new_zeros((n_total * n_species, radial_terms.shape[1]))
    radial = radial.index_add_(0, rows[0], radial_terms).index_add_(0, rows[1], radial_terms)
    angular_neighbors = discard_outside_cutoff(neighbors, computer.angular.cutoff)
    angular = _collect_angular(computer, species, angular_neighbors)
    return torch.cat([radial.view(n_total, computer.radial_len), angular], dim=-1)


def _collect_angular(computer: AEVComputer, species: Tensor, neighbors: Neighbors) -> Tensor:
    """Angular AEV ``(n_total, species_pairs * shifts * sections)``; see :func:`_ani_aev`."""
    term = computer.angular
    n_total, n_pairs = species.shape[0], computer.num_species_pairs
    if neighbors.indices.shape[1] < 2:
        return neighbors.diff_vectors.new_zeros((n_total, computer.angular_len))
    triples = neighbors_to_triples(neighbors)
    distances = triples.distances  # (2, T)
    vectors = triples.diff_vectors  # (2, T, 3)
    # as TorchANI's _BaseAngular.forward, split into its two factors
    cos_angles = (vectors[0] * vectors[1]).sum(-1, keepdim=True) / torch.clamp(
        distances[0] * distances[1], min=1e-10
    ).unsqueeze(-1)
    angle_factor = _angle_terms(cos_angles.squeeze(-1), term.sections, term.zeta)
    cutoff = term.cutoff_fn(distances, term.cutoff)
    # as ANIAngular.compute_radial, times both cutoff functions: (T, shifts)
    mean_distances = (distances[0] + distances[1]) / 2
    radial_factor = _gaussians(mean_distances, cutoff[0] * cutoff[1], term.shifts, term.eta)
    n_rows = n_total * n_pairs
    flat, width = _triple_slots(computer, species, neighbors.indices, triples)
    _, _, angular = _padded_products(radial_factor, angle_factor, flat, n_rows, width)
    return angular.reshape(n_total, computer.angular_len)


def _padded_products(
    radial_factor: Tensor, angle_factor: Tensor, flat: Tensor, n_rows: int, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Scatter the per-triple factors ``radial_factor (T, shifts)`` and ``angle_factor
    (T, sections)`` to their slots ``flat`` of ``n_rows`` rows padded to ``width``; return
    both padded factors ``(rows, width, channels)`` and their per-row product, the
    angular AEV blocks ``(rows, shifts, sections)``."""
    padded_radial = radial_factor.new_zeros((n_rows * width, radial_factor.shape[1]))
    padded_radial = padded_radial.index_copy_(0, flat, radial_factor).view(n_rows, width, -1)
    padded_angle = angle_factor.new_zeros((n_rows * width, angle_factor.shape[1]))
    padded_angle = padded_angle.index_copy_(0, flat, angle_factor).view(n_rows, width, -1)
    # (rows, sections, shifts) -> (rows, shifts, sections); transposing the narrower
    # angle factor is cheaper than transposing the radial one
    angular = torch.bmm(padded_angle.transpose(1, 2), padded_radial).transpose(1, 2)
    return padded_radial, padded_angle, angular


def _triple_slots(
    computer: AEVComputer, species: Tensor, pair_indices: Tensor, triples: Triples
) -> tuple[Tensor, int]:
    """Where each triple goes in the padded per-row layout of :func:`_collect_angular`.

    A row is (central atom, element pair of the two side atoms), as in TorchANI's
    angular AEV; rows are padded to ``width``, the largest triple count of any row.

    Args:
        pair_indices: ``(2, P_angular)`` atom indices of the angular pairs.
        triples: TorchANI's triples of those pairs.

    Returns:
        ``flat (T,)``: index ``row * width + slot`` of each triple, and ``width``.
    """
    n_pairs = computer.num_species_pairs
    n_rows = species.shape[0] * n_pairs
    if n_pairs == 1:  # one element: rows are the central atoms, already in order
        rows = triples.central_idxs
        slots = _slots_within_sorted_rows(rows, n_rows)
    else:
        pair_species = species[pair_indices]  # (2, P)
        side_species = pair_species[:, triples.side_idxs]  # (2, 2, T)
        side_species = torch.where(triples.diff_signs == 1, side_species[1], side_species[0])
        pair_index = computer.triu_index[side_species[0], side_species[1]]
        rows = triples.central_idxs * n_pairs + pair_index
        order = torch.sort(rows, stable=True).indices
        slots = torch.empty_like(rows).index_copy_(
            0, order, _slots_within_sorted_rows(rows[order], n_rows)
        )
    width = int(slots.max()) + 1
    return rows * width + slots, width


# --- inference: the AEV with its derivative written out -------------------------------
#
# Forces and stress without create_graph need only dE/d(pair vectors). Autograd gets it
# by recording a graph of a few hundred small ops and walking it back; at ~100 atoms that
# bookkeeping is a sizeable part of the time. The functions below compute the
# same terms as _ani_aev in the same order and keep what the derivative needs, then apply
# the chain rule by hand: the same numbers up to the rounding of a few sums.


def _ani_aev_with_vjp(
    computer: AEVComputer, species: Tensor, neighbors: Neighbors
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """The AEV of :func:`_ani_aev` and its vector-Jacobian product, without autograd.

    Args:
        computer: the TorchANI AEV computer (parameters and cutoff functions).
        species: ``(n_total,)`` species index of each atom.
        neighbors: ``indices (2, P)``, ``distances (P,)`` A, ``diff_vectors (P, 3)`` A;
            every pair within the radial cutoff.

    Returns:
        ``aev (n_total, aev_dim)`` and ``vjp``, which maps ``dE/dAEV (n_total, aev_dim)``
        to ``dE/d(diff_vectors) (P, 3)``. Call under ``torch.no_grad()``.
    """
    n_total, n_species = species.shape[0], computer.num_species
    term = computer.radial
    vectors, distances = neighbors.diff_vectors, neighbors.distances
    cutoff, cutoff_slope = _cutoff_and_slope(term.cutoff_fn, distances, term.cutoff)
    # as _ani_aev: 0.25 exp(-eta (d - shift)^2) fc(d), (P, radial shifts)
    radial_terms, gaussians, gaussians_slope = _WeightedGaussians.forward(
        distances, 0.25 * cutoff, term.shifts, term.eta
    )
    if n_species == 1:  # rows are the atoms
        rows = neighbors.indices
    else:  # as _ani_aev: row (atom, element of the other atom)
        rows = neighbors.indices * n_species + species[neighbors.indices].flip(0)
    radial = radial_terms.new_zeros((n_total * n_species, radial_terms.shape[1]))
    radial = radial.index_add_(0, rows[0], radial_terms).index_add_(0, rows[1], radial_terms)
    angular, angular_vjp = _angular_with_vjp(computer, species, neighbors)
    aev = torch.cat([radial.view(n_total, computer.radial_len), angular], dim=-1)

    def vjp(energy_by_aev: Tensor) -> Tensor:
        by_radial = energy_by_aev[:, : computer.radial_len].reshape(radial.shape)
        by_terms = by_radial.index_select(0, rows[0]) + by_radial.index_select(0, rows[1])
        by_distances = (by_terms * gaussians_slope).sum(-1)
        by_distances += (by_terms * gaussians).sum(-1) * (0.25 * cutoff_slope)
        by_vectors = torch.zeros_like(vectors)
        angular_vjp(energy_by_aev[:, computer.radial_len :], by_distances, by_vectors)
        # d|v|/dv = v / |v| (0 for coincident atoms, as autograd's norm)
        by_distances = (by_distances / distances).masked_fill_(distances == 0, 0.0)
        return by_vectors.addcmul_(by_distances.unsqueeze(-1), vectors)

    return aev, vjp


def _angular_with_vjp(computer: AEVComputer, species: Tensor, neighbors: Neighbors):
    """Angular AEV ``(n_total, angular_len)`` of :func:`_collect_angular` and its VJP.

    Returns the AEV and ``vjp(energy_by_angular, by_distances, by_vectors)``, which adds
    the angular terms' ``dE/d(distances) (P,)`` and ``dE/d(diff_vectors) (P, 3)`` (all
    radial pairs) in place.
    """
    term = computer.angular
    n_total, n_pairs = species.shape[0], computer.num_species_pairs
    n_shifts, n_sections = term.shifts.numel(), term.sections.numel()
    def no_triples():  # zero AEV, nothing to add to the gradients
        return neighbors.diff_vectors.new_zeros((n_total, computer.angular_len)), (
            lambda *gradients: None
        )

    closer = (neighbors.distances <= term.cutoff).nonzero().flatten()
    if closer.shape[0] < 2:
        return no_triples()
    angular_neighbors = Neighbors(
        neighbors.indices.index_select(1, closer),
        neighbors.distances.index_select(0, closer),
        neighbors.diff_vectors.index_select(0, closer),
    )
    triples = neighbors_to_triples(angular_neighbors)
    if triples.central_idxs.shape[0] == 0:
        return no_triples()
    distances, vectors = triples.distances, triples.diff_vectors  # (2, T), (2, T, 3)
    sides = triples.side_idxs  # (2, T) angular pair of each side
    # as _collect_angular
    products = distances[0] * distances[1]
    clamped = torch.clamp(products, min=1e-10)
    cos_angles = (vectors[0] * vectors[1]).sum(-1) / clamped
    angle_factor, angle_slope = _AngleTerms.forward(cos_angles, term.sections, term.zeta)
    pair_cutoff, pair_cutoff_slope = _cutoff_and_slope(
        term.cutoff_fn, angular_neighbors.distances, term.cutoff
    )
    cutoff = pair_cutoff.index_select(0, sides.view(-1)).view(2, -1)  # (2, T)
    mean_distances = (distances[0] + distances[1]) / 2
    radial_factor, gaussians, gaussians_slope = _WeightedGaussians.forward(
        mean_distances, cutoff[0] * cutoff[1], term.shifts, term.eta
    )
    n_rows = n_total * n_pairs
    flat, width = _triple_slots(computer, species, angular_neighbors.indices, triples)
    padded_radial, padded_angle, angular = _padded_products(radial_factor, angle_factor, flat, n_rows, width)

    def vjp(energy_by_angular: Tensor, by_distances: Tensor, by_vectors: Tensor) -> None:
        by_rows = energy_by_angular.reshape(n_rows, n_shifts, n_sections)
        # products with the width last: several times faster on CPU than width-major ones
        by_radial = torch.bmm(by_rows, padded_angle.transpose(1, 2))  # (rows, shifts, width)
        by_angle = torch.bmm(by_rows.transpose(1, 2), padded_radial.transpose(1, 2))
        # per triple, channels first: (shifts, T) and (sections, T)
        by_radial = by_radial.transpose(0, 1).reshape(n_shifts, -1).index_select(1, flat)
        by_angle = by_angle.transpose(0, 1).reshape(n_sections, -1).index_select(1, flat)
        by_mean = (by_radial * gaussians_slope.T).sum(0)
        by_weight = (by_radial * gaussians.T).sum(0)  # weight = fc(d_0) fc(d_1)
        by_cos = (by_angle * angle_slope.T).sum(0)
        # cos = (v_0 . v_1) / clamp(d_0 d_1)
        by_dot = by_cos / clamped
        by_product = torch.where(products >= 1e-10, -by_cos * cos_angles / clamped, 0.0)
        # (2, T): each side's distance and vector
        side_cutoff_slope = pair_cutoff_slope.index_select(0, sides.view(-1)).view(2, -1)
        by_side_distances = (by_mean / 2).expand(2, -1) + by_weight * cutoff.flip(0) * (
            side_cutoff_slope
        )
        by_side_distances += by_product * distances.flip(0)
        by_side_vectors = by_dot.unsqueeze(-1) * vectors.flip(0)  # (2, T, 3)
        # triple vector k is diff_signs_k * (vector of angular pair sides_k)
        by_side_vectors *= triples.diff_signs.unsqueeze(-1).to(by_side_vectors.dtype)
        by_pair_distances = by_distances.new_zeros(closer.shape[0])
        by_pair_distances.index_add_(0, sides.view(-1), by_side_distances.reshape(-1))
        by_pair_vectors = by_vectors.new_zeros((closer.shape[0], 3))
        by_pair_vectors.index_add_(0, sides.view(-1), by_side_vectors.view(-1, 3))
        by_distances.index_add_(0, closer, by_pair_distances)
        by_vectors.index_add_(0, closer, by_pair_vectors)

    return angular.reshape(n_total, computer.angular_len), vjp


def _cutoff_and_slope(cutoff_fn: torch.nn.Module, distances: Tensor, cutoff: float):
    """TorchANI cutoff function ``fc(d)`` and its derivative ``fc'(d)``, ``(n,)`` each."""
    if isinstance(cutoff_fn, CutoffCosine):  # 0.5 cos(pi d / rc) + 0.5, as TorchANI's
        scaled = distances * (math.pi / cutoff)
        return 0.5 * torch.cos(scaled) + 0.5, (-0.5 * math.pi / cutoff) * torch.sin(scaled)
    with torch.enable_grad():  # any other elementwise cutoff: its slope by autograd
        inputs = distances.detach().requires_grad_(True)
        value = cutoff_fn(inputs, cutoff)
        (slope,) = torch.autograd.grad(value.sum(), inputs)
    return value.detach(), slope


def _mlp_with_vjp(network: torch.nn.Sequential, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Output ``(n,)`` of an MLP of Linear and activation layers and its input gradient
    ``d(sum of outputs)/d(inputs) (n, d)``, by hand (call under ``torch.no_grad()``)."""
    x, saved = inputs, []
    for layer in network:
        saved.append(x)
        x = layer(x)
    gradient = x.new_ones(x.shape)
    for layer, layer_input in zip(reversed(network), reversed(saved)):
        if isinstance(layer, torch.nn.Linear):
            gradient = gradient @ layer.weight
        elif isinstance(layer, torch.nn.GELU):
            gradient = torch.ops.aten.gelu_backward(
                gradient, layer_input, approximate=layer.approximate
            )
        else:  # another elementwise activation: its derivative by autograd
            with torch.enable_grad():
                layer_input = layer_input.detach().requires_grad_(True)
                (gradient,) = torch.autograd.grad(layer(layer_input), layer_input, gradient)
    return x.squeeze(-1), gradient


def _angle_terms(cos_angles: Tensor, sections: Tensor, zeta: Tensor) -> Tensor:
    """ANI's angle factor ``2 ((1 + cos(acos(0.95 cos_angle) - section)) / 2)^zeta``,
    ``(T,) -> (T, sections)``, as TorchANI's ``ANIAngular.compute_cos_angles``."""
    return _AngleTerms.apply(cos_angles, sections, zeta)[0]


class _AngleTerms(torch.autograd.Function):
    """:func:`_angle_terms` with its derivative kept from the forward pass (see
    :class:`_WeightedGaussians` for why)."""

    @staticmethod
    def forward(cos_angles, sections, zeta):
        scaled = 0.95 * cos_angles
        deviations = torch.acos(scaled).unsqueeze(-1) - sections.view(1, -1)
        halves = (1 + torch.cos(deviations)) / 2
        value = 2 * halves**zeta
        # d/dc: zeta h^(zeta-1) sin(dev) * 0.95 / sqrt(1 - (0.95 c)^2)
        chain = 0.95 / torch.sqrt(1 - scaled * scaled)
        slope = halves.pow_(zeta - 1).mul_(torch.sin(deviations))
        slope = slope.mul_(zeta * chain.unsqueeze(-1))
        return value, slope

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_value, _grad_slope):
        if grad_value is None:
            return None, None, None
        (slope,) = ctx.saved_tensors
        return (grad_value * slope).sum(-1), None, None


def _gaussians(x: Tensor, weight: Tensor, shifts: Tensor, eta: Tensor) -> Tensor:
    """``weight * exp(-eta (x - shift)^2)``: ``(n,), (n,) -> (n, shifts)``."""
    return _WeightedGaussians.apply(x, weight, shifts, eta)[0]


class _WeightedGaussians(torch.autograd.Function):
    """``weight * exp(-eta (x - shift)^2)`` with a hand-written backward.

    The forward pass keeps ``dvalue/dx`` and ``dvalue/dweight`` per element, so the
    backward is one multiply-and-sum per input instead of autograd's chain through every
    intermediate; it is linear in the incoming gradient and made of plain ops, so it is
    itself differentiable (training backpropagates force and stress losses through it).

    The exponent is floored where ``exp`` would leave the normal float range (below
    ~1e-38 in float32, ~1e-308 in float64): ``exp`` is 15-40x slower there (its
    denormal/underflow path), and the change (< 1e-38 resp. 1e-307 per term) is far below
    the rounding of any sum of these terms.
    """

    @staticmethod
    def forward(x, weight, shifts, eta):
        # in place where possible: fewer large allocations (and page faults) per call
        offsets = x.unsqueeze(-1) - shifts.view(1, -1)
        gaussians = offsets.square().mul_(-eta)
        floor = math.ceil(math.log(torch.finfo(gaussians.dtype).tiny))
        gaussians.clamp_(min=floor).exp_()
        value = gaussians * weight.unsqueeze(-1)
        slope = offsets.mul_(-2 * eta).mul_(value)
        return value, gaussians, slope

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, gaussians, slope = output
        ctx.save_for_backward(gaussians, slope)
        ctx.mark_non_differentiable(gaussians, slope)
        ctx.set_materialize_grads(False)  # no zero gradients for the two helper outputs

    @staticmethod
    def backward(ctx, grad_value, _grad_gaussians, _grad_slope):
        gaussians, slope = ctx.saved_tensors
        if grad_value is None:
            return None, None, None, None
        grad_x = (grad_value * slope).sum(-1)
        grad_weight = (grad_value * gaussians).sum(-1)
        return grad_x, grad_weight, None, None


def _slots_within_sorted_rows(rows: Tensor, n_rows: int) -> Tensor:
    """Position of each entry among the entries of its row (0, 1, 2, ...); ``rows``
    sorted."""
    counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(rows.shape[0], device=rows.device) - starts[rows]


def _diff_vectors(batch: Batch, positions: Tensor, cells: Tensor) -> Tensor:
    """Pair vectors ``(P, 3)`` ``r_i - r_j + shift @ cell`` of ``batch.pairs``."""
    if batch.n_frames == 1:
        shift_vectors = batch.shifts @ cells[0]
    else:  # one small matmul per frame: much faster than a 3x3 product per pair
        blocks = batch.shifts.split(_pair_counts(batch))
        shift_vectors = torch.cat([shifts @ cell for shifts, cell in zip(blocks, cells)])
    return positions[batch.pairs[0]] - positions[batch.pairs[1]] + shift_vectors


def _pair_counts(batch: Batch) -> list[int]:
    """Pairs of each frame; a Batch keeps each frame's pairs together, in frame order."""
    return torch.bincount(batch.pair_frame, minlength=batch.n_frames).tolist()


def _forces(batch: Batch, energy_by_diffs: Tensor) -> Tensor:
    """``-dE/dr (n_total, 3)``: pair ``p`` is ``r_i - r_j + shift``, so ``g_p`` pushes on
    ``i`` and ``j`` with opposite signs."""
    forces = batch.positions.new_zeros(batch.positions.shape)
    if energy_by_diffs.shape[0]:
        forces = forces.index_add(0, batch.pairs[1], energy_by_diffs)
        # (index_add with alpha=-1 takes a much slower path on CPU)
        forces = forces.index_add(0, batch.pairs[0], -energy_by_diffs)
    return forces


def _virial(batch: Batch, diff_vectors: Tensor, energy_by_diffs: Tensor) -> Tensor:
    """``dE/d(strain) (B, 3, 3)`` for the symmetric strain ``d' = d (1 + strain)`` of every
    pair vector (positions and cell strained together): ``sym(sum_p d_p (x) g_p)``."""
    if diff_vectors.shape[0] == 0:
        return diff_vectors.new_zeros((batch.n_frames, 3, 3))
    if batch.n_frames == 1:
        virial = (diff_vectors.T @ energy_by_diffs).unsqueeze(0)
    else:  # one (3, P_f) @ (P_f, 3) per frame
        counts = _pair_counts(batch)
        virial = torch.stack([
            d.T @ g for d, g in zip(diff_vectors.split(counts), energy_by_diffs.split(counts))
        ])
    return 0.5 * (virial + virial.transpose(1, 2))


def _voigt_stress(strain_gradient: Tensor, cells: Tensor) -> Tensor:
    """``(B, 6)`` Voigt stress ``dE/deps / V`` from ``(B, 3, 3)`` dE/deps; 0 if V = 0."""
    volume = torch.linalg.det(cells).abs()
    periodic = volume > 0
    safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
    sigma = strain_gradient / safe_volume[:, None, None]
    sigma = torch.where(periodic[:, None, None], sigma, torch.zeros_like(sigma))
    rows = torch.tensor([0, 1, 2, 1, 0, 0], device=cells.device)
    cols = torch.tensor([0, 1, 2, 2, 2, 1], device=cells.device)
    return sigma[:, rows, cols]


# --- checkpoints ---------------------------------------------------------------------


def save_checkpoint(model, path: str | os.PathLike, **metadata: Any) -> None:
    """Write an :class:`ANIModel` or a ``Committee`` to ``path`` (``torch.save``).

    ``metadata`` must be JSON-able (numbers, strings, lists, dicts; numpy scalars and
    arrays become numbers and lists): it is stored as plain data and returned by
    :func:`load_checkpoint` as ``model.checkpoint_metadata``.
    """
    from potstill.models.committee import Committee

    try:
        metadata = json.loads(json.dumps(metadata, default=_numpy_to_builtin))
    except TypeError as error:
        raise PotstillError(f"checkpoint metadata must be JSON-able: {error}") from None
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dtype": str(model.dtype).removeprefix("torch."),
        "metadata": metadata,
    }
    if isinstance(model, Committee):
        payload["kind"] = "committee"
        payload["config"] = model.config()
        payload["state_dicts"] = [member.state_dict() for member in model.members]
    elif isinstance(model, ANIModel):
        payload["kind"] = "ani"
        payload["config"] = model.config()
        payload["state_dict"] = model.state_dict()
    else:
        raise PotstillError(
            f"can only checkpoint an ANIModel or a Committee, got {type(model).__name__}"
        )
    # write then rename: a crash while saving never leaves a truncated checkpoint behind
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, os.fspath(path))


def _numpy_to_builtin(value: Any) -> Any:
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def load_checkpoint(path: str | os.PathLike, *, device: torch.device | str = "cpu"):
    """Read a checkpoint written by :func:`save_checkpoint` (safe: ``weights_only``).

    Returns an :class:`ANIModel` or a ``Committee`` in the dtype it was saved in, on
    ``device``, with ``checkpoint_metadata`` set to the saved metadata.
    """
    from potstill.models.committee import Committee

    payload = torch.load(os.fspath(path), map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise PotstillError(f"{path} is not a potstill checkpoint")
    dtype = getattr(torch, payload["dtype"])
    if payload["kind"] == "committee":
        model = Committee.from_config(payload["config"])
        for member, state in zip(model.members, payload["state_dicts"]):
            member.to(dtype=dtype, device=device).load_state_dict(state)
    elif payload["kind"] == "ani":
        model = ANIModel.from_config(payload["config"])
        model.to(dtype=dtype, device=device).load_state_dict(payload["state_dict"])
    else:
        raise PotstillError(f"{path}: unknown checkpoint kind {payload['kind']!r}")
    model.checkpoint_metadata = payload["metadata"]
    return model
