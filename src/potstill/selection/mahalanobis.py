"""Greedy selection by Mahalanobis distance of atoms to the selected set (seed 003).

Per-atom descriptors (AEV by default) are standardised over the pool. The selected
atoms define a Gaussian (:class:`~potstill.uncertainty.StreamingGaussian`: streaming
mean, covariance and inverse covariance, O(d^2) per atom). A frame's score is the largest
squared Mahalanobis distance of its atoms; each step picks the highest-scoring frame,
adds its atoms to the statistics by rank-one updates and rescores the pool. The first
frame is drawn from ``rng``, unless ``exclude`` gives frames to start the statistics from.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from potstill.descriptors import resolve_descriptor
from potstill.descriptors.features import per_atom_features
from potstill.errors import PotstillError
from potstill.selection import prepare
from potstill.selection._features import (
    Stopwatch,
    highest_free,
)
from potstill.uncertainty.mahalanobis import StreamingGaussian


class MahalanobisSelector:
    """Greedy max-Mahalanobis-distance selection of frames.

    Args:
        descriptor: object with ``per_atom(frames)``; default an ``AEVDescriptor(aev=aev)``.
        aev: AEV parameters or preset name for the default descriptor.
        ridge: pseudo-scatter added to the scatter matrix, in units of the standardised
            features (keeps the inverse defined while fewer atoms than features are seen).
        reduce: frame score from atom scores, ``"max"`` (seed 003) or ``"mean"``.
        batch_size: frames picked per rescoring (1: strictly greedy).

    Candidates may also be precomputed per-atom descriptors, one ``(n_atoms, d)`` array
    per frame. After ``select``, ``scores_`` holds the frame scores at each pick.
    ``timings_``: wall seconds of ``descriptors`` (reading frames included) and
    ``selection``.
    """

    def __init__(
        self,
        *,
        descriptor: Any = None,
        aev: Any = None,
        ridge: float = 1e-2,
        reduce: str = "max",
        batch_size: int = 1,
    ):
        if reduce not in ("max", "mean"):
            raise PotstillError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        if not ridge > 0:
            raise PotstillError(f"ridge must be > 0, got {ridge}")
        if batch_size < 1:
            raise PotstillError(f"batch_size must be >= 1, got {batch_size}")
        self.descriptor = resolve_descriptor(descriptor, aev)
        self.ridge = float(ridge)
        self.reduce = reduce
        self.batch_size = int(batch_size)

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        watch = Stopwatch()
        atoms = per_atom_features(candidates, self.descriptor)
        watch.lap("descriptors")
        mean, std = atoms.standardization()
        values = atoms.values  # a fresh array: standardise in place
        values -= mean.astype(np.float32)
        values /= std.astype(np.float32)
        gaussian = StreamingGaussian(values.shape[1], ridge=self.ridge)
        gaussian.update_many(values[atoms.rows(np.flatnonzero(excluded))])
        picked: list[int] = []
        self.scores_: list[float] = []
        if gaussian.count < 2:  # nothing (or one atom) to measure from: start at random
            first = int(rng.choice(np.flatnonzero(~excluded)))
            picked.append(first)
            excluded[first] = True
            gaussian.update_many(values[atoms.rows([first])])
            self.scores_.append(float("nan"))
        while len(picked) < n:
            scores = atoms.frame_scores(gaussian.distances(values), self.reduce)
            for pick in highest_free(scores, excluded, min(self.batch_size, n - len(picked))):
                picked.append(int(pick))
                excluded[pick] = True
                self.scores_.append(float(scores[pick]))
                gaussian.update_many(values[atoms.rows([pick])])
        watch.lap("selection")
        self.timings_ = watch.timings
        return np.asarray(picked, dtype=int)
