"""Farthest point sampling (FPS) on frame fingerprints.

Each frame's fingerprint is the mean and the maximum over its atoms of the per-atom
descriptors (AEV by default), each feature standardised over the pool. The first frame
is drawn from ``rng`` (or, with ``exclude``, the set starts from the excluded frames);
every next pick is the frame farthest (Euclidean) from all frames picked so far. Cost:
O(n_frames * n * d).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from potstill.descriptors import resolve_descriptor
from potstill.descriptors.features import per_atom_features
from potstill.errors import PotstillError
from potstill.selection import prepare
from potstill.selection._features import Stopwatch


class FarthestPointSelector:
    """Farthest point sampling on pooled per-atom descriptors.

    Args:
        descriptor: object with ``per_atom(frames)``; default an ``AEVDescriptor(aev=aev)``.
        aev: AEV parameters or preset name for the default descriptor.
        pooling: ``"mean+max"`` (default), ``"mean"`` or ``"max"``.
        standardize: scale each fingerprint feature to unit variance over the pool.

    Candidates may also be precomputed fingerprints, a ``(n_frames, d)`` array, or
    per-atom descriptors, one ``(n_atoms, d)`` array per frame. After ``select``,
    ``timings_``: wall seconds of ``descriptors`` (reading frames included) and
    ``selection``.
    """

    def __init__(
        self,
        *,
        descriptor: Any = None,
        aev: Any = None,
        pooling: str = "mean+max",
        standardize: bool = True,
    ):
        if pooling not in ("mean+max", "mean", "max"):
            raise PotstillError(f"pooling must be 'mean+max', 'mean' or 'max', got {pooling!r}")
        self.descriptor = resolve_descriptor(descriptor, aev)
        self.pooling = pooling
        self.standardize = standardize

    def fingerprints(self, candidates: Sequence) -> np.ndarray:
        """``(n_frames, d')`` fingerprints (before standardisation), float64."""
        if isinstance(candidates, np.ndarray) and candidates.ndim == 2:
            return candidates.astype(np.float64)
        atoms = per_atom_features(candidates, self.descriptor)
        parts = []
        if "mean" in self.pooling:
            parts.append(
                np.add.reduceat(atoms.values, atoms.offsets[:-1], dtype=np.float64)
                / np.diff(atoms.offsets)[:, None]
            )
        if "max" in self.pooling:
            parts.append(np.maximum.reduceat(atoms.values, atoms.offsets[:-1]).astype(np.float64))
        return np.concatenate(parts, axis=1)

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
        points = self.fingerprints(candidates)
        watch.lap("descriptors")
        if self.standardize:
            std = points.std(axis=0)
            points = (points - points.mean(axis=0)) / np.where(std > 0, std, 1.0)
        distance = np.full(len(points), np.inf)
        for i in np.flatnonzero(excluded):
            distance = np.minimum(distance, _squared_distances(points, points[i]))
        if excluded.any():
            first = None
        else:
            first = int(rng.integers(len(points)))
        picked: list[int] = []
        while len(picked) < n:
            if first is not None:
                pick, first = first, None
            else:
                free = np.where(excluded, -np.inf, distance)
                pick = int(np.argmax(free))  # ties: the earliest frame
            picked.append(pick)
            excluded[pick] = True
            distance = np.minimum(distance, _squared_distances(points, points[pick]))
        watch.lap("selection")
        self.timings_ = watch.timings
        return np.asarray(picked, dtype=int)


def _squared_distances(points: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", points - point, points - point)
