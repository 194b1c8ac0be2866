"""Samplers: ways to fill a run's pool with labeled frames from cheap simulations.

One registry maps a config name (``sample.sampler``) to a module; the module is imported
only when the sampler is used (LAMMPS is heavy). Every sampler module has

- ``Config``: its section of the YAML (a pydantic model with ``sampler: <name>``);
- ``run(config, *, species, reference, stage, executor, progress) -> dict``: fill the
  run's pool (``stage.run.pool``), resuming what it can, and return what it did;
- ``OWNS``: the files it writes in the run folder besides the pool and its record.

``md``: LAMMPS NVT/NPT MD, constant temperatures or ramps (:mod:`potstill.sampling.md`);
``momt``: multiorder-multithermal Wang-Landau MD (:mod:`potstill.sampling.momt_stage`);
``translate``: another element's pool scaled and relabeled
(:mod:`potstill.sampling.translate`); ``deform``: uniaxial and shear deformation MD of a
relaxed crystal (:mod:`potstill.sampling.deform`). The sample stage is :mod:`potstill.sampling.stage`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from potstill.errors import PotstillError

SAMPLERS: dict[str, str] = {
    "md": "potstill.sampling.md",
    "momt": "potstill.sampling.momt_stage",
    "translate": "potstill.sampling.translate",
    "deform": "potstill.sampling.deform",
}


def available() -> list[str]:
    """Registered sampler names."""
    return sorted(SAMPLERS)


def get_sampler(name: str) -> ModuleType:
    """The module of sampler ``name`` (imported on first use)."""
    if name not in SAMPLERS:
        raise PotstillError(f"unknown sampler {name!r}; available samplers are {available()}")
    return importlib.import_module(SAMPLERS[name])


def sampler_config(raw: Any) -> Any:
    """The ``sample`` section validated by its sampler's ``Config`` (``sampler`` names
    it; default ``md``); a section that is already a config passes as is."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return raw
    name = raw.get("sampler", "md")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available samplers are {available()}")
    return get_sampler(name).Config.model_validate(raw)
