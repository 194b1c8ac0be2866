"""Train/validation splits of committee members and the two data strategies of active
learning (definitions in ``seeds/INDEX.md``).

- :func:`split_keys`: a seeded random split of some keys (pool ids, positions) with
  ``round(fraction * n)`` held out for validation (:func:`validation_count`).
- :func:`next_splits`: each member's split after new frames arrive: ``random`` (a fresh
  split of all data, retrain from scratch) or ``inherited`` (old assignments kept, only
  the new frames split, warm start from the previous weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from potstill.errors import PotstillError

__all__ = ["STRATEGIES", "Split", "next_splits", "split_keys", "validation_count"]

STRATEGIES = ("random", "inherited")


@dataclass
class Split:
    """One member's data: ``train`` and ``validation`` keys (e.g. pool ids)."""

    train: list[int] = field(default_factory=list)
    validation: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"train": list(self.train), "validation": list(self.validation)}


def validation_count(n_frames: int, validation_fraction: float) -> int:
    """Frames held out for validation: ``round(fraction * n_frames)``, at least one and
    leaving at least one to train (none when there is a single frame)."""
    if n_frames < 2:
        return 0
    return min(max(1, int(round(validation_fraction * n_frames))), n_frames - 1)


def split_keys(keys: Sequence[int], validation_fraction: float, rng: np.random.Generator) -> Split:
    """Random split of ``keys`` (sorted within each part): see :func:`validation_count`."""
    keys = np.asarray(list(keys), dtype=int)
    order = rng.permutation(len(keys))
    n_val = validation_count(len(keys), validation_fraction)
    return Split(
        train=sorted(keys[order[n_val:]].tolist()), validation=sorted(keys[order[:n_val]].tolist())
    )


def next_splits(
    strategy: str,
    previous: Sequence[Split] | None,
    all_keys: Sequence[int],
    new_keys: Sequence[int],
    *,
    n_members: int,
    validation_fraction: float,
    rngs: Sequence[np.random.Generator],
) -> list[Split]:
    """Every member's split after ``new_keys`` joined the data (``all_keys`` includes
    them). ``random``, or no previous splits: a fresh split of ``all_keys`` per member;
    ``inherited``: the previous split plus a split of ``new_keys`` only."""
    if strategy not in STRATEGIES:
        raise PotstillError(f"unknown strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
    if strategy == "random" or previous is None:
        return [split_keys(all_keys, validation_fraction, rngs[k]) for k in range(n_members)]
    splits = []
    for k, old in enumerate(previous):
        new = split_keys(new_keys, validation_fraction, rngs[k]) if len(new_keys) else Split()
        splits.append(
            Split(
                train=sorted(old.train + new.train),
                validation=sorted(old.validation + new.validation),
            )
        )
    return splits
