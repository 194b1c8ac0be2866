"""Which scored candidates become new data, and how many frames a budget allows.

- :func:`pick_highest`: the candidates above a threshold (``mu + k sigma``,
  :func:`potstill.uncertainty.mu_k_sigma`), or all of them, highest score first, at
  most ``limit`` (a quota, or what is left of a labeling budget).
- :func:`budget_frames`: a budget given as a frame count (int) or as a fraction of the
  pool (float, ``0 < f <= 1``) in frames; a fraction rounds down, so a budget is never
  overrun.
"""

from __future__ import annotations

import numpy as np

from potstill.errors import PotstillError

__all__ = ["budget_frames", "pick_highest"]


def pick_highest(
    scores: np.ndarray, *, threshold: float | None = None, limit: int | None = None
) -> np.ndarray:
    """Positions into ``scores (n,)`` of the candidates above ``threshold`` (all when
    None), highest first (ties: the earlier candidate), at most ``limit``."""
    scores = np.asarray(scores, dtype=float)
    candidates = np.arange(len(scores)) if threshold is None else np.flatnonzero(scores > threshold)
    ranked = candidates[np.argsort(-scores[candidates], kind="stable")]
    return ranked if limit is None else ranked[: max(int(limit), 0)]


def budget_frames(budget: int | float, n_pool: int) -> int:
    """Frames a ``budget`` allows in a pool of ``n_pool``: a frame count as given, or a
    fraction ``0 < f <= 1`` of the pool rounded down."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise PotstillError(
            f"budget {budget!r}: give a frame count (int) or a pool fraction 0 < f <= 1"
        )
    if isinstance(budget, (float, np.floating)):
        if not 0 < budget <= 1:
            raise PotstillError(
                f"budget {budget!r}: a pool fraction must be 0 < f <= 1 (or give a frame count)"
            )
        return int(np.floor(budget * n_pool + 1e-9))
    if budget < 1:
        raise PotstillError(f"budget {budget!r}: give at least 1 frame")
    return int(budget)
