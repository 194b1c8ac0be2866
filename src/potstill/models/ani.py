"""ANI-type neural network potential on TorchANI's AEV, for batches of periodic frames.

Contract: ``ANIModel(batch)`` maps a :class:`~potstill.aev.neighbors.Batch` to a dict of
named tensors in eV and Angstrom:

- ``energy (B,)`` eV, the sum of the atomic energies of each frame;
- ``atomic_energies (n_total,)`` eV, network output plus the element's self energy;
- ``forces (n_total, 3)`` eV/A, ``-dE/dr``;
- ``stress (B, 6)`` eV/A^3, Voigt ``xx yy zz yz xz xy``, ASE's sign convention
  ``stress = (1/V) dE/d(strain)`` for a symmetric strain (zeros for zero-volume cells).

Architecture (seed 001): the TorchANI AEV (:mod:`potstill.aev`), one MLP per element
``AEV -> hidden... -> 1`` with GELU, Kaiming normal weights and zero biases
(:mod:`potstill.models.mlp`), plus a buffer of per-element self energies.

Forces and stress come from the gradient ``g_p = dE/dd_p`` of the energy with respect to
the pair vectors, the only way the AEV sees the geometry
(:mod:`potstill.models.pair_gradients`). It is computed one of three ways:

- with ``create_graph=True`` (training on forces and stress) the AEV's Jacobian is
  applied as a constant (``torch.func.vjp``): forces and stress backpropagate to the
  weights, not to the positions, which training never needs;
- when the caller tracks gradients (it may backpropagate the energy), plain autograd;
- under ``torch.no_grad()`` (MD, relaxations, evaluation) no graph is recorded at all:
  ``g_p`` comes from the chain rule written out by hand
  (:func:`potstill.aev.inference.ani_aev_with_vjp`,
  :func:`potstill.models.mlp.mlp_with_vjp`), the same numbers up to rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchani.neighbors import Neighbors

from potstill.aev.config import AEVConfig
from potstill.aev.inference import ani_aev_with_vjp
from potstill.aev.kernel import batch_aev
from potstill.aev.neighbors import Batch
from potstill.errors import PotstillError
from potstill.models import pair_gradients
from potstill.models.allocator import keep_freed_memory
from potstill.models.mlp import ACTIVATIONS, element_outputs, make_mlp
from potstill.models.presets import PRESETS, ModelSpec

__all__ = ["ANIModel", "build_model"]


def build_model(spec: ModelSpec, *, seed: int) -> ANIModel:
    """A fresh model of ``spec`` with weights initialised from ``seed``."""
    return ANIModel.from_preset(spec.preset, list(spec.species), **spec.overrides, seed=seed)


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
        keep_freed_memory()  # process-wide, once: see potstill.models.allocator
        species = list(species)
        if not species or len(set(species)) != len(species):
            raise PotstillError(f"species must be distinct element symbols, got {species}")
        if activation not in ACTIVATIONS:
            raise PotstillError(
                f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}"
            )
        self.species = species
        self.aev_config = aev
        self.hidden = tuple(int(width) for width in hidden)
        self.activation = activation
        self.aev_computer = aev.build(len(species))
        generator = torch.Generator().manual_seed(seed)
        widths = (self.aev_computer.out_dim, *self.hidden, 1)
        self.networks = torch.nn.ModuleDict(
            {symbol: make_mlp(widths, activation, generator) for symbol in species}
        )
        self.register_buffer("self_energies", torch.zeros(len(species)))
        self.set_self_energies(self_energies or {})

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

    def aev(
        self, batch: Batch, *, positions: Tensor | None = None, cells: Tensor | None = None
    ) -> Tensor:
        """Atomic environment vectors ``(n_total, aev_dim)`` of a batch.

        ``positions (n_total, 3)`` and ``cells (B, 3, 3)`` default to the batch's; pass
        strained or differentiable copies to take (first) derivatives.
        """
        self._check_cutoff(batch)
        return self._aev(batch, batch.pair_vectors(positions, cells))

    def _aev(self, batch: Batch, diff_vectors: Tensor) -> Tensor:
        return batch_aev(self.aev_computer, batch, diff_vectors, self.cutoff)

    def _ready(self, batch: Batch) -> Batch:
        """``batch`` in this model's dtype and on its device, built with a large enough
        cutoff."""
        if batch.dtype != self.dtype or batch.device != self.device:
            batch = batch.to(dtype=self.dtype, device=self.device)
        self._check_cutoff(batch)
        return batch

    def _check_cutoff(self, batch: Batch) -> None:
        if batch.cutoff < self.cutoff:
            raise PotstillError(
                f"batch built with cutoff {batch.cutoff} A but the model needs {self.cutoff} A;"
                " build it with model.batch(frames)"
            )

    def atomic_energies(self, aev: Tensor, species: Tensor) -> Tensor:
        """Atomic energies ``(n_total,)`` eV from AEVs ``(n_total, aev_dim)``."""
        outputs, _ = element_outputs(self.networks, aev, species)
        return outputs + self.self_energies[species]

    def _energy(self, batch: Batch, aev: Tensor) -> dict[str, Tensor]:
        atomic = self.atomic_energies(aev, batch.species)
        return {"energy": self._frame_sums(batch, atomic), "atomic_energies": atomic}

    @staticmethod
    def _frame_sums(batch: Batch, atomic: Tensor) -> Tensor:
        return atomic.new_zeros(batch.n_frames).index_add(0, batch.frame_index, atomic)

    def _energy_and_gradient(self, batch: Batch, diff_vectors: Tensor):
        """Energies and ``dE/d(pair vectors) (P, 3)`` by plain autograd through the AEV
        (the graph is kept: the caller may backpropagate the energy)."""
        diff_vectors = diff_vectors.detach().requires_grad_(True)
        out = self._energy(batch, self._aev(batch, diff_vectors))
        (energy_by_diffs,) = torch.autograd.grad(
            out["energy"].sum(),
            diff_vectors,
            retain_graph=True,
            materialize_grads=True,  # pairs beyond this model's cutoff
        )
        return out, energy_by_diffs

    def _energy_and_gradient_inference(self, batch: Batch, diff_vectors: Tensor):
        """Energies and ``dE/d(pair vectors) (P, 3)`` without autograd (no graph kept):
        the AEV and the MLPs apply their chain rules by hand. Under ``torch.no_grad()``."""
        aev, aev_vjp = self.aev_with_vjp(batch, diff_vectors)
        out, energy_by_aev = self.energies_with_gradient(batch, aev)
        return out, aev_vjp(energy_by_aev)

    def aev_with_vjp(self, batch: Batch, diff_vectors: Tensor):
        """AEVs ``(n_total, aev_dim)`` of ``batch`` and the VJP that maps ``dE/dAEV
        (n_total, aev_dim)`` to ``dE/d(pair vectors) (P, 3)`` (zero for pairs beyond this
        model's cutoff), both by hand: call under ``torch.no_grad()``."""
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
            aev, aev_vjp = ani_aev_with_vjp(self.aev_computer, batch.species, neighbors)
        if kept is None:
            return aev, aev_vjp
        n_pairs = batch.pairs.shape[1]

        def vjp_all_pairs(energy_by_aev: Tensor) -> Tensor:
            return diff_vectors.new_zeros((n_pairs, 3)).index_copy_(0, kept, aev_vjp(energy_by_aev))

        return aev, vjp_all_pairs

    def energies_with_gradient(self, batch: Batch, aev: Tensor):
        """``{"energy" (B,), "atomic_energies" (n_total,)}`` from AEVs and ``dE/dAEV
        (n_total, aev_dim)``, by hand: call under ``torch.no_grad()``."""
        outputs, energy_by_aev = element_outputs(
            self.networks, aev, batch.species, with_gradient=True
        )
        atomic = outputs + self.self_energies[batch.species]
        return {
            "energy": self._frame_sums(batch, atomic),
            "atomic_energies": atomic,
        }, energy_by_aev

    def _energy_and_gradient_for_training(self, batch: Batch, diff_vectors: Tensor):
        """Energies and ``dE/d(pair vectors) (P, 3)`` with a graph to the weights only.

        Same numbers as :meth:`_energy_and_gradient`, but the AEV's Jacobian is applied
        as a constant (``torch.func.vjp`` at the pair vectors): backpropagating a force or
        stress loss then costs one pass through the AEV's first derivatives instead of
        its second derivatives with respect to the positions, which training never uses.
        """
        aev, aev_vjp = torch.func.vjp(lambda diffs: self._aev(batch, diffs), diff_vectors)
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
        batch = self._ready(batch)
        caller_tracks_grad = torch.is_grad_enabled()
        if not (forces or stress):  # the energy keeps its graph to the batch's positions
            return self._energy(batch, self._aev(batch, batch.pair_vectors()))
        diff_vectors = batch.pair_vectors().detach()
        if batch.pairs.shape[1] == 0:  # no neighbours anywhere: AEVs are all zero
            out = self._energy(batch, self._aev(batch, diff_vectors))
            energy_by_diffs = diff_vectors
        elif create_graph:
            with torch.enable_grad():
                out, energy_by_diffs = self._energy_and_gradient_for_training(batch, diff_vectors)
        elif caller_tracks_grad:
            out, energy_by_diffs = self._energy_and_gradient(batch, diff_vectors)
        else:
            out, energy_by_diffs = self._energy_and_gradient_inference(batch, diff_vectors)
        out.update(
            pair_gradients.derivatives(
                batch, diff_vectors, energy_by_diffs, forces=forces, stress=stress
            )
        )
        if not (caller_tracks_grad or create_graph):
            out = {key: value.detach() for key, value in out.items()}
        return out
