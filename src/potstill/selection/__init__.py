"""Selectors: pick ``n`` frames from candidates. One registry, one signature.

``make_selector(name, **options).select(candidates, n, *, rng) -> indices`` where
``candidates`` is a sequence of frames (or per-frame features), ``n`` the budget and
``rng`` a ``numpy.random.Generator``; ``indices`` is an ``(n,)`` int array of unique
positions into ``candidates``. Options are set when the selector is built.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, Sequence

import numpy as np

from potstill.errors import PotstillError

_REGISTRY: dict[str, str] = {
    "random": "potstill.selection.random:RandomSelector",
}


class Selector(Protocol):
    def select(self, candidates: Sequence, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``n`` unique candidates."""


def available() -> list[str]:
    """Registered selector names."""
    return sorted(_REGISTRY)


def make_selector(name: str, **options: Any) -> Selector:
    """Build selector ``name`` with ``options``."""
    if name not in _REGISTRY:
        raise PotstillError(f"unknown selector {name!r}; available selectors are {available()}")
    module_name, cls_name = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)(**options)


def check_budget(n_candidates: int, n: int) -> None:
    """Raise a clear error for an impossible budget."""
    if n_candidates == 0:
        raise PotstillError("the pool is empty; sample frames first (`potstill sample`)")
    if not 0 < n <= n_candidates:
        raise PotstillError(
            f"cannot select {n} frames from {n_candidates} candidates; "
            f"choose 1 <= n <= {n_candidates}"
        )
