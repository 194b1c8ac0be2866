"""Committee active learning: the loop, the learner that retrains a committee with a data
strategy, and the pick of new frames within a budget.

- :func:`active_learning` (``loop``): select with the last committee, label, retrain,
  save; resumable per iteration.
- :class:`CommitteeLearner` (``learner``): random or inherited retraining on one trainer.
- :func:`pick_highest`, :func:`budget_frames` (``pick``): ``mu + k sigma`` or a quota
  within a labeling budget.
"""

from potstill.learning.learner import CommitteeLearner, Retrained
from potstill.learning.loop import Iteration, Selection, active_learning
from potstill.learning.pick import budget_frames, pick_highest

__all__ = [
    "CommitteeLearner",
    "Iteration",
    "Retrained",
    "Selection",
    "active_learning",
    "budget_frames",
    "pick_highest",
]
