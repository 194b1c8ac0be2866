"""A committee that is retrained as active learning adds data, with a data strategy.

:class:`CommitteeLearner` turns "these keys are the data now, these are new" into member
splits by the ``random`` or ``inherited`` strategy
(:func:`potstill.training.strategies.next_splits`) and trains the committee with the one
trainer (:func:`potstill.training.committee.train_committee`): ``inherited`` members
keep their split and continue from their previous weights, ``random`` members get a
fresh split and fresh weights. Keys are what the caller counts as one frame (pool ids);
each key may stand for several training frames (a frame and its noisy copies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError
from potstill.models import ModelSpec
from potstill.training.committee import TrainedCommittee, train_committee
from potstill.training.config import TrainConfig
from potstill.training.strategies import STRATEGIES, Split, next_splits

__all__ = ["CommitteeLearner", "Retrained"]


@dataclass
class Retrained:
    """A retrained committee and each member's split of the keys."""

    trained: TrainedCommittee
    splits: list[Split]
    member_paths: list[Path] = field(default_factory=list)

    @classmethod
    def saved(cls, splits: Sequence[Mapping], folder: Path, n_members: int) -> Retrained:
        """A committee saved earlier (``folder/member_<k>.pt``) with its recorded
        ``splits`` (as :meth:`Split.to_dict` wrote them): the ``previous`` of the next
        :meth:`CommitteeLearner.retrain`."""
        return cls(
            trained=None,
            splits=[Split(**s) for s in splits],
            member_paths=[Path(folder) / f"member_{k}.pt" for k in range(n_members)],
        )


@dataclass
class CommitteeLearner:
    """Retrains a committee of ``config.committee`` members as data grows.

    ``reference``: the labels trained on; ``model``: the members' network; ``strategy``:
    ``random`` or ``inherited``; ``executor``/``progress``: where and how visibly members
    train.
    """

    reference: str
    model: ModelSpec
    config: TrainConfig
    strategy: str = "random"
    executor: Executor | None = None
    progress: Any = None

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise PotstillError(
                f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}"
            )

    def retrain(
        self,
        frames: Sequence[Atoms],
        keys: Sequence[int],
        new_keys: Sequence[int],
        *,
        previous: Retrained | None,
        seeds: Sequence[int],
        split_rngs: Sequence[np.random.Generator],
        rows: Mapping[int, Sequence[int]] | None = None,
        out_dir: str | Path | None = None,
        metadata: dict | None = None,
    ) -> Retrained:
        """The committee on ``frames`` after ``new_keys`` joined ``keys``.

        ``rows``: the positions in ``frames`` of each key (default: key ``k`` is
        position ``k``); ``seeds`` and ``split_rngs``: per member, the seed of its fresh
        weights and the generator of its split of the new keys; ``out_dir``: where
        members are saved (needed for an ``inherited`` warm start from them).
        """
        splits = next_splits(
            self.strategy,
            previous.splits if previous else None,
            keys,
            new_keys,
            n_members=self.config.committee,
            validation_fraction=self.config.validation_fraction,
            rngs=split_rngs,
        )
        positions = [_expand(split, rows) for split in splits]
        warm = self.strategy == "inherited" and previous is not None
        trained = train_committee(
            frames,
            self.reference,
            model=self.model,
            config=self.config,
            splits=positions,
            seeds=seeds,
            warm_start=previous.member_paths if warm else None,
            out_dir=out_dir,
            executor=self.executor,
            progress=self.progress,
            metadata={**(metadata or {}), "strategy": self.strategy},
        )
        paths = (
            [Path(out_dir) / f"member_{k}.pt" for k in range(self.config.committee)]
            if out_dir
            else []
        )
        return Retrained(trained=trained, splits=splits, member_paths=paths)


def _expand(split: Split, rows: Mapping[int, Sequence[int]] | None) -> Split:
    """A split of keys as a split of frame positions."""
    if rows is None:
        return Split(train=list(split.train), validation=list(split.validation))
    return Split(
        train=[r for key in split.train for r in rows[key]],
        validation=[r for key in split.validation for r in rows[key]],
    )
