"""Samplers: functions that yield labeled frames (``ase.Atoms``) from cheap simulations.

One registry maps a config name to ``"module:function"``; the module is imported only
when the sampler is used (LAMMPS is heavy). Every sampler takes the starting
``atoms`` first and keyword-only options, including an explicit ``seed``, and returns an
iterator of frames labeled under ``reference_name`` (see :mod:`potstill.frames`) with
their provenance (``info["sampler"]``, ``info["step"]``, ...).
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterator

from ase import Atoms

from potstill.errors import PotstillError

SAMPLERS: dict[str, str] = {
    # LAMMPS NVT/NPT Nose-Hoover MD, constant temperatures or ramps
    "md": "potstill.sampling.md:sample_md",
}

Sampler = Callable[..., Iterator[Atoms]]


def available() -> list[str]:
    """Registered sampler names."""
    return sorted(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    """The sampler function registered as ``name`` (imported on first use)."""
    if name not in SAMPLERS:
        raise PotstillError(f"unknown sampler {name!r}; available samplers are {available()}")
    module_name, func_name = SAMPLERS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)
