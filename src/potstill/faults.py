"""Named points where a fault-injection test may kill this process, as a crash would.

With ``POTSTILL_KILL_AT=<name>:<n>`` in the environment, the ``n``-th call of
``kill_point(<name>)`` in this process sends it ``SIGKILL`` (no cleanup, no flush:
exactly what ``kill -9`` does). Without the variable a call costs one dictionary lookup.
The points sit where a crash is most likely to lose work: right after a write
(``store-write``, ``label-write``, ``result-written``, ``momt-state``), after a
committee member is trained (``member-trained``) and after a distillation iteration is
saved (``iteration-saved``). ``tests/test_faults.py`` uses them to check that every
long-running command resumes to the same result.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["kill_point"]

_CALLS: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """Die here (SIGKILL) when ``POTSTILL_KILL_AT`` names this point and call count."""
    spec = os.environ.get("POTSTILL_KILL_AT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _CALLS[name] += 1
    if _CALLS[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
