"""The active-learning loop: pick new frames with the last committee, label, retrain.

:func:`active_learning` runs ``n_iterations`` iterations; iteration ``i``

1. **selects** new data with the committee of iteration ``i - 1`` (iteration 0 starts
   from an initial set): score candidates (a chunk of a pool, or frames of a trajectory
   run with the model) and keep the highest above ``mu + k sigma`` or a quota, within a
   budget (:mod:`potstill.learning.pick`);
2. **adds** them: label with the reference (over the executor, noisy copies included)
   and store;
3. **retrains** the committee on all data so far (:class:`CommitteeLearner`, random or
   inherited strategy) and evaluates it;

and is **saved**, so a resumed run skips the iterations that finished (``finished``).
``stop`` ends the loop early (e.g. an error below a target for two iterations). The
steps are the caller's: ``distill`` scores sequential chunks of a pool, the
``committee`` selector a fixed quota per chunk, on-the-fly methods new trajectories.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Iteration", "Selection", "active_learning"]


@dataclass
class Selection:
    """The new data of one iteration: ``keys`` (pool ids, positions) and what the pick
    measured (threshold, scores, cuts) in ``info``."""

    keys: list[int]
    info: dict = field(default_factory=dict)


@dataclass
class Iteration:
    """A finished iteration: its JSON-able ``record`` and, while in memory, ``state``
    (the committee and whatever the next selection needs)."""

    index: int
    record: dict
    state: Any = None


def active_learning(
    n_iterations: int,
    *,
    select: Callable[[int, Iteration | None], Selection],
    retrain: Callable[[int, Selection, Iteration | None], Iteration],
    add: Callable[[int, Selection], None] | None = None,
    finished: Callable[[int], Iteration | None] | None = None,
    save: Callable[[Iteration], None] | None = None,
    stop: Callable[[list[Iteration]], bool] | None = None,
) -> list[Iteration]:
    """Run the loop (see the module docstring); returns every iteration, resumed ones
    included."""
    iterations: list[Iteration] = []
    for i in range(n_iterations):
        done = finished(i) if finished is not None else None
        if done is None:
            previous = iterations[-1] if iterations else None
            selection = select(i, previous)
            if add is not None:
                add(i, selection)
            done = retrain(i, selection, previous)
            if save is not None:
                save(done)
        iterations.append(done)
        if stop is not None and stop(iterations):
            break
    return iterations
