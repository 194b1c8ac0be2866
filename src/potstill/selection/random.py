"""Uniform random selection without replacement (the baseline of seeds 000 and 002)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.selection import check_budget


class RandomSelector:
    """Pick ``n`` candidates uniformly at random, without replacement."""

    def select(self, candidates: Sequence, n: int, *, rng: np.random.Generator) -> np.ndarray:
        check_budget(len(candidates), n)
        return np.sort(rng.choice(len(candidates), size=n, replace=False))
