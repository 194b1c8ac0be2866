"""Frames whose score exceeds ``mu + k sigma`` of a reference window (seeds 000, 001, 004).

Any per-frame score works: a callable ``frame -> float`` (e.g. the largest committee
std of atomic energies) or the name of an ``info`` entry. ``mu`` and ``sigma`` are the
mean and standard deviation of the scores of the reference window: explicit
``reference_scores``, the first ``window`` candidates (or ``window=(start, stop)``),
else the already-selected ``exclude`` frames (the training data, seed 000 SI Note 4),
else the whole pool. Of the frames above the threshold and not excluded, the ``n``
highest are returned, highest first: fewer than ``n`` when fewer pass.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.selection import prepare
from potstill.selection._features import per_frame
from potstill.uncertainty.threshold import mu_k_sigma


class ThresholdSelector:
    """Scores above ``mu + k sigma`` of a reference window.

    Args:
        score: ``frame -> float`` or an ``info`` key holding the score.
        k: threshold in standard deviations (3 in seeds 001/004, 4 in seed 000).
        window: reference window: ``int`` (the first ``window`` candidates) or
            ``(start, stop)`` positions; ignored when ``reference_scores`` is given.
        reference_scores: the reference window's scores themselves.

    After ``select``: ``scores_`` (every candidate's score), ``threshold_``, ``mu_``,
    ``sigma_``.
    """

    def __init__(
        self,
        *,
        score: Callable[[Any], float] | str,
        k: float = 3.0,
        window: int | tuple[int, int] | None = None,
        reference_scores: Sequence[float] | None = None,
    ):
        if not (callable(score) or isinstance(score, str)):
            raise PotstillError("score must be a callable frame -> float or an info key")
        if not np.isfinite(k):
            raise PotstillError(f"k must be a finite number of standard deviations, got {k}")
        self.score = score
        self.k = float(k)
        self.window = window
        self.reference_scores = reference_scores

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        name = self.score if isinstance(self.score, str) else "score"
        self.scores_ = per_frame(candidates, self._score_of, name)
        threshold = mu_k_sigma(self._reference(self.scores_, excluded), self.k)
        self.mu_, self.sigma_, self.threshold_ = threshold.mu, threshold.sigma, threshold.value
        above = np.flatnonzero((self.scores_ > self.threshold_) & ~excluded)
        order = above[np.argsort(-self.scores_[above], kind="stable")]
        return order[:n].astype(int)

    def _score_of(self, atoms) -> float:
        if callable(self.score):
            return float(self.score(atoms))
        if self.score not in atoms.info:
            raise PotstillError(
                f"frame has no info[{self.score!r}]; score the pool first or pass score= "
                "as a callable"
            )
        return float(atoms.info[self.score])

    def _reference(self, scores: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        if self.reference_scores is not None:
            reference = np.asarray(self.reference_scores, dtype=float).ravel()
        elif self.window is not None:
            start, stop = (0, self.window) if np.ndim(self.window) == 0 else self.window
            if not 0 <= int(start) < int(stop) <= len(scores):
                raise PotstillError(
                    f"window {self.window} is not a range of positions within 0..{len(scores)}"
                )
            reference = scores[int(start) : int(stop)]
        elif excluded.sum() >= 2:
            reference = scores[excluded]
        else:
            reference = scores
        return reference
