"""Per-atom and per-frame uncertainties: one interface, one registry.

Every uncertainty has ``per_atom(frames) -> list of (n_atoms_i,) arrays`` (see
:mod:`potstill.uncertainty.base`), so the same object scores frames from a store and,
wrapped in an :class:`UncertaintyObserver`, watches an ASE MD run step by step:

- ``committee``: std of the members' atomic energies, eV (seeds 000, 004);
- ``mahalanobis``: squared Mahalanobis distance of descriptors to the training atoms,
  with O(1) streaming updates (seed 003);
- ``rnd``: random network distillation novelty of descriptors (seed 002).

``mu_k_sigma`` (:mod:`potstill.uncertainty.threshold`) is the one threshold rule.
"""

from __future__ import annotations

import importlib
from typing import Any

from potstill.errors import PotstillError
from potstill.uncertainty.base import AtomUncertainty, UncertaintyObserver, frame_scores
from potstill.uncertainty.threshold import Threshold, UQStats, mu_k_sigma

_REGISTRY = {
    "committee": "potstill.uncertainty.committee:CommitteeUncertainty",
    "mahalanobis": "potstill.uncertainty.mahalanobis:MahalanobisUncertainty",
    "rnd": "potstill.uncertainty.rnd:RNDUncertainty",
}


def available() -> list[str]:
    """Registered uncertainty names."""
    return sorted(_REGISTRY)


def make_uncertainty(name: str, *args: Any, **options: Any) -> AtomUncertainty:
    """Build uncertainty ``name`` (``committee`` takes the committee or its checkpoint)."""
    if name not in _REGISTRY:
        raise PotstillError(
            f"unknown uncertainty {name!r}; available uncertainties are {available()}"
        )
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    try:
        return cls(*args, **options)
    except TypeError as error:
        raise PotstillError(f"bad options for uncertainty {name!r}: {error}") from error


__all__ = [
    "AtomUncertainty",
    "Threshold",
    "UQStats",
    "UncertaintyObserver",
    "available",
    "frame_scores",
    "make_uncertainty",
    "mu_k_sigma",
]
