"""Random network distillation (RND) selection (seed 002).

Per-atom descriptors (AEV by default) go through a frozen random target network ``f``
and a trained predictor ``g`` (:class:`~potstill.uncertainty.RNDScorer`). A frame's score
is the largest (or mean) ``|f - g|^2`` over its atoms. Each round picks the
highest-scoring frame (``batch_size`` frames in batch mode), trains ``g`` further on the
atoms of everything picked so far, and rescores the pool. With ``exclude``, ``g`` is
first trained on the excluded frames' atoms.
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
from potstill.uncertainty.rnd import RNDScorer


class RNDSelector:
    """Greedy RND selection of frames.

    Args:
        descriptor: object with ``per_atom(frames)``; default an ``AEVDescriptor(aev=aev)``.
        aev: AEV parameters or preset name for the default descriptor.
        reduce: frame score from atom scores, ``"max"`` (default) or ``"mean"``.
        batch_size: frames picked per round (1: strictly greedy, as seed 002).
        hidden, n_outputs, lr, train_steps: the networks and the predictor's training
            per round (see :class:`~potstill.uncertainty.RNDScorer`).

    The networks are seeded from ``rng``. Candidates may also be precomputed per-atom
    descriptors, one ``(n_atoms, d)`` array per frame. After ``select``, ``scores_``
    holds the frame score of each pick when it was picked.
    ``timings_``: wall seconds of ``descriptors`` (reading frames included) and
    ``selection``.
    """

    def __init__(
        self,
        *,
        descriptor: Any = None,
        aev: Any = None,
        reduce: str = "max",
        batch_size: int = 1,
        hidden: Sequence[int] = (64, 64),
        n_outputs: int = 16,
        lr: float = 3e-3,
        train_steps: int = 100,
    ):
        if reduce not in ("max", "mean"):
            raise PotstillError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        if batch_size < 1:
            raise PotstillError(f"batch_size must be >= 1, got {batch_size}")
        self.descriptor = resolve_descriptor(descriptor, aev)
        self.reduce = reduce
        self.batch_size = int(batch_size)
        self.network = {
            "hidden": tuple(hidden),
            "n_outputs": n_outputs,
            "lr": lr,
            "train_steps": train_steps,
        }

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
        scorer = RNDScorer(
            atoms.values.shape[1],
            seed=int(rng.integers(1 << 31)),
            input_mean=mean,
            input_scale=std,
            **self.network,
        )
        targets = scorer.embed(atoms.values)
        if excluded.any():
            scorer.train(atoms.values[atoms.rows(np.flatnonzero(excluded))])
        picked: list[int] = []
        self.scores_: list[float] = []
        while len(picked) < n:
            atom_scores = scorer.distances(atoms.values, targets=targets)
            scores = atoms.frame_scores(atom_scores, self.reduce)
            best = highest_free(scores, excluded, min(self.batch_size, n - len(picked)))
            picked.extend(int(i) for i in best)
            self.scores_.extend(float(scores[i]) for i in best)
            excluded[best] = True
            if len(picked) < n:
                scorer.train(atoms.values[atoms.rows(np.flatnonzero(excluded))])
        watch.lap("selection")
        self.timings_ = watch.timings
        return np.asarray(picked, dtype=int)
