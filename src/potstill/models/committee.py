"""A committee of ANI models: mean predictions and their spread for uncertainty.

Contract: ``Committee(members)(batch)`` returns the same keys as
:class:`~potstill.models.ani.ANIModel` (each the mean over the K members) plus
``energy_std (B,)``, ``atomic_energies_std (n_total,)``, ``forces_std (n_total, 3)`` and
``stress_std (B, 6)``: the POPULATION standard deviation across members (divide by K,
like ``numpy.std``). The papers' uncertainty is the spread of atomic energies.
With ``return_members=True`` the dict also holds ``members``: each member's outputs
stacked along a leading axis of length K.

Members that share their AEV parameters (every committee a workflow trains: one preset,
different seeds) share its evaluation: without a graph (``torch.no_grad()``: MD,
scoring, validation) the AEV and its derivative are computed once and only the networks
run per member. ``member_forces=False`` goes one step further for MD driven by the
committee: the forces and stress are those of the committee-mean energy, one backward
pass through the AEV instead of K (the derivative is linear, so they equal the mean of
the members' up to rounding), and ``forces_std``/``stress_std`` are not computed; the
atomic-energy spread, the papers' uncertainty, is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from potstill.aev.neighbors import Batch
from potstill.errors import PotstillError
from potstill.models import pair_gradients
from potstill.models.ani import ANIModel

__all__ = ["Committee"]


class Committee(torch.nn.Module):
    """K ANI models over the same species, evaluated together.

    Args:
        members: the models; they must share their species (in the same order).
    """

    def __init__(self, members: Sequence[ANIModel]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise PotstillError(f"a committee needs at least 2 models, got {len(members)}")
        species = members[0].species
        for member in members[1:]:
            if member.species != species:
                raise PotstillError(
                    f"committee members must share species in the same order, got "
                    f"{species} and {member.species}"
                )
        self.members = torch.nn.ModuleList(members)

    @classmethod
    def from_preset(
        cls, name: str, species: Sequence[str], *, n_members: int, seed: int = 0, **overrides: Any
    ) -> Committee:
        """``n_members`` models of one preset, member k initialised with ``seed + k``."""
        return cls(
            [
                ANIModel.from_preset(name, species, seed=seed + k, **overrides)
                for k in range(n_members)
            ]
        )

    def config(self) -> dict[str, Any]:
        """JSON-able description: ``{"members": [member.config(), ...]}``."""
        return {"members": [member.config() for member in self.members]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0) -> Committee:
        """Committee described by :meth:`config`, member k initialised with ``seed + k``."""
        return cls(
            [
                ANIModel.from_config(member, seed=seed + k)
                for k, member in enumerate(config["members"])
            ]
        )

    @property
    def species(self) -> list[str]:
        return self.members[0].species

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff a Batch must be built with (the members' largest), Angstrom."""
        return max(member.cutoff for member in self.members)

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def __len__(self) -> int:
        return len(self.members)

    def batch(self, frames, **options) -> Batch:
        """``Batch.from_atoms(frames, self.species, self.cutoff)`` in this committee's dtype."""
        options.setdefault("dtype", self.dtype)
        options.setdefault("device", self.device)
        return Batch.from_atoms(frames, self.species, self.cutoff, **options)

    def forward(
        self,
        batch: Batch,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
        return_members: bool = False,
        member_forces: bool = True,
    ) -> dict[str, Any]:
        """Mean and population std over members of every quantity (see module docstring).

        ``member_forces=False``: forces and stress of the mean energy, without ``_std``
        (and without them in ``members``).
        """
        means: dict[str, Tensor] = {}  # quantities of the mean energy, without a spread
        if self.shares_aev() and not (create_graph or torch.is_grad_enabled()):
            stacked, means = self._shared_members(batch, forces, stress, member_forces)
        else:
            outputs = [
                member(batch, forces=forces, stress=stress, create_graph=create_graph)
                for member in self.members
            ]
            stacked = {key: torch.stack([out[key] for out in outputs]) for key in outputs[0]}
        if not member_forces:
            for key in ("forces", "stress"):
                if key in stacked:
                    means[key] = stacked.pop(key).mean(dim=0)
        result: dict[str, Any] = dict(means)
        for key, values in stacked.items():
            result[key] = values.mean(dim=0)
            result[f"{key}_std"] = values.std(dim=0, correction=0)
        if return_members:
            result["members"] = stacked
        return result

    def shares_aev(self) -> bool:
        """Whether every member has the same AEV parameters (so one AEV serves all)."""
        first = self.members[0].aev_config
        return all(member.aev_config == first for member in self.members[1:])

    def _shared_members(
        self, batch: Batch, forces: bool, stress: bool, member_forces: bool
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Members' outputs stacked ``(K, ...)`` from one AEV (and one AEV derivative), by
        hand: under ``torch.no_grad()``; and, without ``member_forces``, the forces and
        stress of the mean energy (else an empty dict)."""
        first = self.members[0]
        batch = first._ready(batch)
        diff_vectors = batch.pair_vectors()
        if not (forces or stress):
            aev = first._aev(batch, diff_vectors)
            outputs = [member._energy(batch, aev) for member in self.members]
            return {key: torch.stack([out[key] for out in outputs]) for key in outputs[0]}, {}
        aev, aev_vjp = first.aev_with_vjp(batch, diff_vectors)
        outputs, gradients = zip(
            *(member.energies_with_gradient(batch, aev) for member in self.members)
        )
        stacked = {key: torch.stack([out[key] for out in outputs]) for key in outputs[0]}
        options = dict(forces=forces, stress=stress)
        if member_forces:
            derived = [
                pair_gradients.derivatives(batch, diff_vectors, aev_vjp(g), **options)
                for g in gradients
            ]
            stacked.update({key: torch.stack([d[key] for d in derived]) for key in derived[0]})
            return stacked, {}
        # d(mean E)/d(pairs) = VJP of the mean dE/dAEV
        mean_gradient = torch.stack(gradients).mean(dim=0)
        return stacked, pair_gradients.derivatives(
            batch, diff_vectors, aev_vjp(mean_gradient), **options
        )
