"""References (labelers): anything that gives an ASE ``Calculator``.

One registry maps a config name to a factory; each factory lives in its own module and
is imported only when used (LAMMPS, GPAW are heavy). ``make_reference("eam-ni")`` or
``make_reference("lammps", pair_style=..., potential=..., elements=[...])``.

A :class:`Reference` pairs the calculator with the ``name`` its labels are stored under
(``info["<name>_energy"]`` etc., see :mod:`potstill.frames`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ase.calculators.calculator import Calculator

from potstill.errors import PotstillError

# name -> ("module:function", default keyword arguments)
_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "lammps": ("potstill.references.lammps:make_calculator", {}),
    # Angelo, Moody & Baskes Ni (the Ni part of NiAlH_jea.eam.alloy): realistic
    # FCC/HCP/BCC gaps and elastic constants; the default nickel reference.
    "eam-ni": (
        "potstill.references.lammps:make_calculator",
        {"pair_style": "eam/alloy", "potential": "NiAlH_jea.eam.alloy", "elements": ["Ni"]},
    ),
    # Mendelev Al, the aluminium potential of seed 000.
    "eam-al": (
        "potstill.references.lammps:make_calculator",
        {"pair_style": "eam/fs", "potential": "Al_mm.eam.fs", "elements": ["Al"]},
    ),
    # Nb.uf3 (UF3 2+3-body spline potential fitted to DFT, shipped with LAMMPS): BCC is
    # its ground state; the Nb target of seed 000's translation (SI Note 6). Its energy
    # zero differs from an EAM cohesive energy (BCC at -4.44 eV/atom).
    "uf3-nb": (
        "potstill.references.lammps:make_calculator",
        {"pair_style": "uf3 3", "potential": "Nb.uf3", "elements": ["Nb"]},
    ),
    "emt": ("potstill.references.emt:make_calculator", {}),
}


@dataclass
class Reference:
    """A named labeler: ``calculator`` gives the labels stored under ``name``."""

    name: str
    calculator: Calculator
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


def available() -> list[str]:
    """Registered reference kinds."""
    return sorted(_REGISTRY)


def make_calculator(kind: str, **options: Any) -> Calculator:
    """Build the ASE calculator of reference ``kind`` with ``options``."""
    if kind not in _REGISTRY:
        raise PotstillError(
            f"unknown reference {kind!r}; available references are {available()}"
        )
    target, defaults = _REGISTRY[kind]
    module_name, func_name = target.split(":")
    factory: Callable[..., Calculator] = getattr(importlib.import_module(module_name), func_name)
    return factory(**{**defaults, **options})


def make_reference(kind: str, *, name: str | None = None, **options: Any) -> Reference:
    """Build a :class:`Reference`; labels go under ``name`` (default: ``"eam"`` for
    LAMMPS kinds, else ``kind``)."""
    calc = make_calculator(kind, **options)
    if name is None:
        name = "eam" if _REGISTRY[kind][0].startswith("potstill.references.lammps") else kind
    return Reference(name=name, calculator=calc, kind=kind, options=options)


def lammps_options(kind: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``pair_style``, ``potential``, ``elements`` (and extras) of a LAMMPS reference
    ``kind``, for samplers that run the potential inside LAMMPS themselves."""
    if kind not in _REGISTRY:
        raise PotstillError(f"unknown reference {kind!r}; available references are {available()}")
    target, defaults = _REGISTRY[kind]
    if not target.startswith("potstill.references.lammps"):
        raise PotstillError(
            f"reference {kind!r} is not a LAMMPS pair style; LAMMPS samplers need one of "
            f"{[k for k, (t, _) in _REGISTRY.items() if t.startswith('potstill.references.lammps')]}"
        )
    merged = {**defaults, **(options or {})}
    missing = {"pair_style", "potential", "elements"} - set(merged)
    if missing:
        raise PotstillError(f"reference {kind!r} needs options {sorted(missing)}")
    return merged
