"""The per-atom uncertainty interface, and the same object as an ASE MD observer.

An uncertainty is any object with ``per_atom(frames) -> list[(n_atoms_i,) arrays]``:
one score per atom of every frame, read once in order (frames may be a lazy store view,
so a pool is scored without holding it). The committee std of atomic energies
(:mod:`potstill.uncertainty.committee`), the Mahalanobis distance of descriptors
(:mod:`potstill.uncertainty.mahalanobis`) and RND novelty
(:mod:`potstill.uncertainty.rnd`) all have it.

- :func:`frame_scores`: a frame's score from its atoms' (``max``, seed 000: a frame is
  new when any atom is; or ``mean``).
- :class:`UncertaintyObserver`: attached to an ASE dynamics (``dyn.attach(observer,
  interval=n)``) it scores the current atoms, records every score, flags the steps
  whose largest atom score exceeds ``threshold`` and, with ``stop=True``, ends the run
  after the first of them (the on-the-fly learners' trigger).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError

__all__ = ["AtomUncertainty", "UncertaintyObserver", "frame_scores"]

REDUCTIONS = ("max", "mean")


class AtomUncertainty(Protocol):
    def per_atom(self, frames: Iterable[Atoms]) -> list[np.ndarray]:
        """Per-atom scores of every frame, one ``(n_atoms_i,)`` array each."""


def frame_scores(per_atom: Sequence[np.ndarray], reduce: str = "max") -> np.ndarray:
    """``(n_frames,)``: the largest (``max``) or mean atom score of each frame."""
    if reduce not in REDUCTIONS:
        raise PotstillError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    function = np.max if reduce == "max" else np.mean
    return np.array([float(function(s)) if np.size(s) else 0.0 for s in per_atom])


class UncertaintyObserver:
    """Per-atom uncertainty of an MD run, recorded as it goes.

    Args:
        uncertainty: anything with ``per_atom(frames)``.
        atoms: the atoms the dynamics moves.
        dynamics: the ASE dynamics (for its step count, and to stop it).
        threshold: a step is flagged when any atom scores above it (score units).
        stop: end the run after the first flagged step (ASE runs it to completion
            otherwise).

    After (or during) the run: ``steps`` (the dynamics' step of each call),
    ``scores`` (one ``(n_atoms,)`` array per call), ``flagged`` (steps above the
    threshold) and ``frame_scores`` (the largest atom score per call).
    """

    def __init__(
        self,
        uncertainty: AtomUncertainty,
        atoms: Atoms,
        dynamics,
        *,
        threshold: float | None = None,
        stop: bool = False,
    ):
        if stop and threshold is None:
            raise PotstillError("stop=True needs a threshold to stop at")
        self.uncertainty, self.atoms, self.dynamics = uncertainty, atoms, dynamics
        self.threshold, self.stop = threshold, stop
        self.steps: list[int] = []
        self.scores: list[np.ndarray] = []
        self.flagged: list[int] = []

    @property
    def frame_scores(self) -> np.ndarray:
        return frame_scores(self.scores)

    def __call__(self) -> None:
        scores = np.asarray(self.uncertainty.per_atom([self.atoms])[0], dtype=float)
        step = int(self.dynamics.nsteps)
        self.steps.append(step)
        self.scores.append(scores)
        if self.threshold is not None and scores.size and scores.max() > self.threshold:
            self.flagged.append(step)
            if self.stop:  # ASE's MD loop runs while nsteps < max_steps
                self.dynamics.max_steps = self.dynamics.nsteps
