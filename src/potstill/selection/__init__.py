"""Selectors: pick ``n`` frames from candidates. One registry, one signature.

``make_selector(name, **options).select(candidates, n, *, rng, exclude=()) -> indices``

- ``candidates``: a sequence of frames (``ase.Atoms``, or a lazy
  :class:`~potstill.store.StoredFrames` view, iterated once in order); descriptor-based
  selectors also take precomputed descriptors instead (see each selector).
- ``n``: the budget; ``rng``: a ``numpy.random.Generator``, the only source of
  randomness, so the same seed gives the same indices.
- ``exclude``: positions of candidates already selected (e.g. in earlier rounds). They
  are never returned, and selectors that measure coverage (``fps``, ``grid``,
  ``mahalanobis``, ``rnd``, ``uniform-energy``, ``force``, ``local-energy``, ``quests``
  with ``method: msc``) count them as already in the training set: FPS measures
  distances from them, Mahalanobis and RND start from their atoms, grid keeps them at
  every level, uniform-energy and force count them in their bins, local-energy counts
  their atoms in its atomic-energy bins, quests' msc takes them as the reference set of
  its ``msc_conditional``; ``threshold`` takes them as its default reference window,
  ``committee`` trains its first committee on them. ``quests`` with ``method: fps`` runs
  on the other frames only: excluded frames are no coverage for it.
- ``indices``: ``(m,)`` int array of unique positions into ``candidates``, in the order
  picked (``random``: sorted); ``m == n`` for every selector except ``threshold``,
  which returns only candidates above its threshold (``m <= n``).

The binned baselines of seed 002 are ``uniform-energy`` (energy per atom), ``local-energy``
(atomic energies) and ``force`` (force magnitude); ``quests`` is a peer, the published
quests package's dataset compression, an optional dependency (``pip install quests``;
the ``test`` extra installs it) imported only when a ``quests`` selector is built.

Options are set when the selector is built; learned state after ``select`` carries a
trailing underscore (e.g. ``grid``'s ``levels_``). Bad input raises
:class:`~potstill.errors.PotstillError` with a one-line message. :class:`SelectConfig`
is the ``select`` section of a workflow YAML, and :func:`select_frames` applies it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Protocol, Sequence

import numpy as np
from pydantic import Field, field_validator

from potstill.errors import PotstillError
from potstill.settings import Section

_REGISTRY: dict[str, str] = {
    "random": "potstill.selection.random:RandomSelector",
    "uniform-energy": "potstill.selection.energy:UniformEnergySelector",
    "local-energy": "potstill.selection.local_energy:LocalEnergySelector",
    "force": "potstill.selection.force:ForceSelector",
    "fps": "potstill.selection.fps:FarthestPointSelector",
    "grid": "potstill.selection.grid:GridSelector",
    "threshold": "potstill.selection.threshold:ThresholdSelector",
    "mahalanobis": "potstill.selection.mahalanobis:MahalanobisSelector",
    "rnd": "potstill.selection.rnd:RNDSelector",
    "committee": "potstill.selection.committee:CommitteeSelector",
    "quests": "potstill.selection.quests:QuestsSelector",
}


class Selector(Protocol):
    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        """Indices of ``n`` unique candidates, none of them in ``exclude``."""


def available() -> list[str]:
    """Registered selector names."""
    return sorted(_REGISTRY)


def make_selector(name: str, **options: Any) -> Selector:
    """Build selector ``name`` with ``options``."""
    if name not in _REGISTRY:
        raise PotstillError(f"unknown selector {name!r}; available selectors are {available()}")
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    try:
        return cls(**options)
    except TypeError as error:  # unknown or missing option: say which, in one line
        raise PotstillError(f"bad options for selector {name!r}: {error}") from error


def options_with_reference(name: str, options: dict[str, Any], reference: str) -> dict[str, Any]:
    """``options`` checked by building selector ``name`` (unknown name or option: one
    line), plus the run's ``reference`` label name for selectors that read labels
    (``uniform-energy``, ``local-energy``, ``force``, ``grid``, ``committee``) unless the
    options set it."""
    selector = make_selector(name, **options)
    takes_reference = "reference" in inspect.signature(type(selector).__init__).parameters
    if takes_reference and "reference" not in options:
        return {**options, "reference": reference}
    return dict(options)


def check_budget(n_candidates: int, n: int, n_excluded: int = 0) -> None:
    """Raise a clear error for an impossible budget."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise PotstillError(f"the budget n must be a whole number of frames, got {n!r}")
    if n_candidates == 0:
        raise PotstillError("the pool is empty; sample frames first (`potstill sample`)")
    free = n_candidates - n_excluded
    if not 0 < n <= free:
        excluded = f" ({n_excluded} already selected)" if n_excluded else ""
        raise PotstillError(
            f"cannot select {n} frames from {n_candidates} candidates{excluded}; "
            f"choose 1 <= n <= {free}"
        )


def excluded_mask(exclude: Sequence[int] | None, n_candidates: int) -> np.ndarray:
    """``(n_candidates,)`` bool mask of the positions in ``exclude`` (checked)."""
    mask = np.zeros(n_candidates, dtype=bool)
    if exclude is None:
        return mask
    positions = np.asarray(list(exclude) if not isinstance(exclude, np.ndarray) else exclude)
    if positions.size == 0:
        return mask
    if positions.ndim != 1 or not np.issubdtype(positions.dtype, np.integer):
        raise PotstillError("exclude must be a list of integer candidate positions")
    if positions.min() < 0 or positions.max() >= n_candidates:
        raise PotstillError(
            f"exclude holds positions outside 0..{n_candidates - 1}; give positions into "
            "the candidates, not store ids"
        )
    mask[positions] = True
    return mask


def prepare(candidates: Sequence, n: int, exclude: Sequence[int] | None) -> np.ndarray:
    """Check ``n`` against the candidates left after ``exclude``; the exclusion mask."""
    mask = excluded_mask(exclude, len(candidates))
    check_budget(len(candidates), n, int(mask.sum()))
    return mask


class SelectConfig(Section):
    """Which frames of the pool to train on: ``all``, or ``n`` frames picked by the
    selector ``method`` of the registry (``random``, ``fps``, ``rnd``, ``committee``, ...)
    built with ``options``, seeded with ``seed``."""

    method: str = "random"
    n: int = Field(200, gt=0)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != "all" and value not in available():
            raise ValueError(
                f"unknown selection method {value!r}; use 'all' or one of {available()}"
            )
        return value


def select_frames(config: SelectConfig, candidates: Sequence, *, reference: str) -> np.ndarray:
    """Positions of the candidates ``config`` picks (all of them for ``all``); the run's
    ``reference`` label name goes to selectors that read labels."""
    if config.method == "all":
        return np.arange(len(candidates))
    selector = make_selector(
        config.method, **options_with_reference(config.method, config.options, reference)
    )
    return selector.select(
        candidates, min(config.n, len(candidates)), rng=np.random.default_rng(config.seed)
    )
