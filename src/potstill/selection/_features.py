"""Helpers of the selectors: per-frame values, greedy picks, timings."""

from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import numpy as np

from potstill.errors import PotstillError


def highest_free(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``scores (n_frames,)`` outside the ``excluded``
    mask, highest first (ties: the earliest frame): one greedy pick of ``mahalanobis``
    and ``rnd``."""
    free = np.where(excluded, -np.inf, scores)
    return np.argsort(-free, kind="stable")[:k]


class Stopwatch:
    """Wall seconds of named phases, for a selector's ``timings_``."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self._start
        self._start = now


def frames_of(candidates: Sequence) -> Iterator:
    """The candidates, read once in order, each checked to be a frame (``ase.Atoms``)."""
    for atoms in candidates:
        if not hasattr(atoms, "positions"):
            raise PotstillError(
                "candidates must be frames (ase.Atoms, e.g. store.frames(ids)), got "
                f"{type(atoms).__name__}"
            )
        yield atoms


def per_frame(candidates: Sequence, value_of: Any, what: str) -> np.ndarray:
    """Values ``value_of(frame)`` (a number or a tuple of numbers) of every candidate,
    read once in order: ``(n_frames,)`` or ``(n_frames, k)`` floats. ``what`` names the
    value in the error raised for a non-finite one."""
    values = np.asarray([value_of(atoms) for atoms in frames_of(candidates)], dtype=float)
    bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
    if bad.size:
        raise PotstillError(f"{what} of frame {bad[0]} is not finite: {values[bad[0]]}")
    return values
