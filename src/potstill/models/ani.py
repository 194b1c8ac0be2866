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

Forces and stress come from one ``torch.autograd.grad`` of the total energy with respect
to the positions and a per-frame strain ``eps (B, 3, 3)`` applied as
``r' = r (1 + sym(eps))``, ``cell' = cell (1 + sym(eps))``; with ``create_graph=True``
they can be backpropagated (training on forces and stress).

Checkpoints (:func:`save_checkpoint`, :func:`load_checkpoint`) hold only the JSON-able
config, the dtype, state dicts and metadata, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# torchani warns on import that its optional CUDA extensions are missing; we never use
# them (pure-PyTorch AEV), so silence it unless the user chose otherwise.
os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")

from torchani.aev import AEVComputer, ANIAngular, ANIRadial  # noqa: E402
from torchani.neighbors import Neighbors, discard_outside_cutoff  # noqa: E402

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
        strained or differentiable copies to take derivatives.
        """
        if batch.cutoff < self.cutoff:
            raise PotstillError(
                f"batch built with cutoff {batch.cutoff} A but the model needs {self.cutoff} A;"
                " build it with model.batch(frames)"
            )
        positions = batch.positions if positions is None else positions
        cells = batch.cells if cells is None else cells
        n_total = positions.shape[0]
        if batch.pairs.shape[1] == 0:
            return positions.new_zeros((n_total, self.aev_computer.out_dim))
        shift_vectors = torch.einsum("pi,pij->pj", batch.shifts, cells[batch.pair_frame])
        diff_vectors = positions[batch.pairs[0]] - positions[batch.pairs[1]] + shift_vectors
        neighbors = Neighbors(batch.pairs, diff_vectors.norm(dim=-1), diff_vectors)
        if batch.cutoff > self.cutoff:  # e.g. a committee whose members differ in cutoff
            neighbors = discard_outside_cutoff(neighbors, self.cutoff)
            if neighbors.indices.shape[1] == 0:
                return positions.new_zeros((n_total, self.aev_computer.out_dim))
        # All frames form ONE TorchANI "molecule"; pairs never cross frames.
        aev = self.aev_computer.compute_from_neighbors(
            batch.species.unsqueeze(0), positions.unsqueeze(0), neighbors
        )
        return aev.squeeze(0)

    def atomic_energies(self, aev: Tensor, species: Tensor) -> Tensor:
        """Atomic energies ``(n_total,)`` eV from AEVs ``(n_total, aev_dim)``."""
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
        caller_tracks_grad = torch.is_grad_enabled()
        with torch.enable_grad() if (forces or stress) else contextlib.nullcontext():
            positions, cells = batch.positions, batch.cells
            if forces:
                positions = positions.detach().requires_grad_(True)
            if stress:
                strain = torch.zeros_like(cells, requires_grad=True)
                deformation = 0.5 * (strain + strain.transpose(1, 2))
                strained_positions = positions + torch.einsum(
                    "ni,nij->nj", positions, deformation[batch.frame_index]
                )
                strained_cells = cells + cells @ deformation
            else:
                strained_positions, strained_cells = positions, cells
            aev = self.aev(batch, positions=strained_positions, cells=strained_cells)
            atomic = self.atomic_energies(aev, batch.species)
            energy = atomic.new_zeros(batch.n_frames).index_add(0, batch.frame_index, atomic)
            out = {"energy": energy, "atomic_energies": atomic}
            inputs = ([positions] if forces else []) + ([strain] if stress else [])
            if inputs and energy.requires_grad:
                grads = torch.autograd.grad(
                    energy.sum(),
                    inputs,
                    create_graph=create_graph,
                    retain_graph=create_graph or caller_tracks_grad,
                    materialize_grads=True,  # frames without neighbours
                )
            else:  # no neighbours at all and frozen weights: nothing depends on inputs
                grads = [torch.zeros_like(tensor) for tensor in inputs]
            if forces:
                out["forces"] = -grads[0]
            if stress:
                out["stress"] = _voigt_stress(grads[-1], cells)
        if not (caller_tracks_grad or create_graph):
            out = {key: value.detach() for key, value in out.items()}
        return out


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
    torch.save(payload, os.fspath(path))


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
