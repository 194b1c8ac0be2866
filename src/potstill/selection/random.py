"""Uniform random selection without replacement (the baseline of seeds 000 and 002)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.selection import prepare


class RandomSelector:
    """Pick ``n`` candidates uniformly at random, without replacement, never one of
    ``exclude``. Candidates may be anything with a length (frames, store ids)."""

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        free = np.flatnonzero(~excluded)
        return np.sort(rng.choice(free, size=n, replace=False))
