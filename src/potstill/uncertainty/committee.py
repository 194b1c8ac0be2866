"""Committee uncertainty: the spread of the members' atomic energies (seeds 000, 004).

An atom's uncertainty is the population std across the K members of their atomic
energies (eV); a frame's score is its largest atom's (seed 000 SI Note 4: a frame is new
when any atom is uncertain). :class:`CommitteeUncertainty` computes energies only (no
forces or stress) in batches, and with :meth:`~CommitteeUncertainty.with_gradient` their
derivative with respect to the positions (IDEAL's embedding, seed 003); in an MD run driven by a calculator of the same committee
it reads the spread the calculator already computed for the step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from potstill.aev.neighbors import Batch
from potstill.models import Committee, PotstillCalculator, load_checkpoint, predict

__all__ = ["CommitteeUncertainty", "FrameUncertainty", "committee_uncertainty"]


@dataclass
class FrameUncertainty:
    """Committee predictions on ``n`` frames.

    ``energy (n,)`` eV, committee mean; ``atom_std``: list of ``(n_atoms,)`` arrays,
    eV, the population std of atomic energies across members; ``score (n,)`` eV, the
    max of ``atom_std`` over each frame's atoms.
    """

    energy: np.ndarray
    atom_std: list[np.ndarray]

    @property
    def score(self) -> np.ndarray:
        return np.array([s.max() if s.size else 0.0 for s in self.atom_std])


class CommitteeUncertainty:
    """Per-atom committee std of atomic energies (eV).

    Args:
        committee: a :class:`~potstill.models.Committee` or the path of its checkpoint.
        batch_size: frames evaluated at a time.
    """

    name = "committee"

    def __init__(self, committee: Committee | str | os.PathLike, *, batch_size: int = 64):
        self.committee = (
            load_checkpoint(committee) if isinstance(committee, (str, os.PathLike)) else committee
        )
        self.batch_size = int(batch_size)

    def evaluate(self, frames) -> FrameUncertainty:
        """Committee-mean energies and per-atom stds of ``frames`` (a sequence)."""
        predictions = predict(
            self.committee, frames, batch_size=self.batch_size, dtype=None, forces=False
        )
        return FrameUncertainty(
            energy=np.array([p["energy"] for p in predictions]),
            atom_std=[p["energies_std"] for p in predictions],
        )

    def per_atom(self, frames: Iterable[Atoms]) -> list[np.ndarray]:
        frames = frames if hasattr(frames, "__getitem__") else list(frames)
        current = self._current(frames[0]) if len(frames) == 1 else None
        return [current] if current is not None else self.evaluate(frames).atom_std

    def with_gradient(self, atoms: Atoms, weights=None) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom stds ``(n_atoms,)`` (eV) of one frame and the gradient ``(n_atoms, 3)``
        (eV/A) of ``sum_i weights_i std_i`` with respect to the positions (autograd
        through every member; ``weights`` an array or a function of the stds, default 1),
        so the committee can drive IDEAL's embedding like the Mahalanobis distance."""
        import torch

        committee = self.committee
        members = committee.members if isinstance(committee, Committee) else [committee]
        dtype = next(committee.parameters()).dtype
        batch = Batch.from_atoms([atoms], committee.species, committee.cutoff, dtype=dtype)
        batch.positions.requires_grad_(True)
        with torch.enable_grad():
            energies = torch.stack(
                [m(batch, forces=False, stress=False)["atomic_energies"] for m in members]
            )
            std = energies.std(dim=0, correction=0)
            scores = std.detach().double().numpy()
            if callable(weights):
                weights = weights(scores)
            w = torch.ones_like(std) if weights is None else torch.as_tensor(weights).to(std)
            (gradient,) = torch.autograd.grad((std * w).sum(), batch.positions)
        return scores, gradient.double().numpy()

    # the statistics of a committee are its weights: fitting and streaming add nothing
    def fit(self, frames) -> CommitteeUncertainty:
        return self

    def update(self, frames) -> None:
        return None

    def save(self, path) -> None:
        return None

    def load(self, path) -> CommitteeUncertainty:
        return self

    def _current(self, atoms: Atoms) -> np.ndarray | None:
        """The spread this committee's calculator computed for ``atoms`` as they are."""
        calc = atoms.calc
        if not isinstance(calc, PotstillCalculator) or calc.model is not self.committee:
            return None
        if "energies_std" not in calc.results or calc.check_state(atoms):
            return None
        return np.asarray(calc.results["energies_std"], dtype=float)


def committee_uncertainty(committee, frames, *, batch_size: int = 64) -> FrameUncertainty:
    """Committee-mean energies and per-atom std of atomic energies of ``frames``."""
    return CommitteeUncertainty(committee, batch_size=batch_size).evaluate(frames)
