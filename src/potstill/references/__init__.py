"""References (labelers): anything that gives an ASE ``Calculator``.

One registry maps a config name to a factory; each factory lives in its own module and
is imported only when used (LAMMPS, GPAW are heavy). ``make_reference("eam-ni")`` or
``make_reference("lammps", pair_style=..., potential=..., elements=[...])``. A kind may
also be the import path of any calculator factory, ``"package.module:function"``.

A :class:`Reference` pairs the calculator with the ``name`` its labels are stored under
(``info["<name>_energy"]`` etc., see :mod:`potstill.frames`). :class:`ReferenceConfig` is
the ``reference`` section of a workflow YAML (kind, name, options), picklable, so a
labeling job builds the same reference in any worker.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from ase.calculators.calculator import Calculator
from pydantic import Field, field_validator

from potstill.errors import PotstillError
from potstill.references.tosi_fumi import born_options
from potstill.settings import Section

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
    # Zuo et al.'s Li SNAP (J. Phys. Chem. A 124, 731 (2020), fitted to PBE; shipped with
    # LAMMPS): a many-body reference whose cost grows with the atoms; IDEAL's reference.
    "snap-li": (
        "potstill.references.lammps:make_calculator",
        {"pair_style": "snap", "potential": "Li_Zuo_JPCA2020.snapcoeff", "elements": ["Li"]},
    ),
    # Born-Mayer-Huggins / Tosi-Fumi molten salts with PPPM (seed 002's KCl and NaCl);
    # parameters and citations in potstill.references.tosi_fumi.
    "born-kcl": ("potstill.references.lammps:make_calculator", born_options("KCl")),
    "born-nacl": ("potstill.references.lammps:make_calculator", born_options("NaCl")),
    "emt": ("potstill.references.emt:make_calculator", {}),
    # GPAW plane-wave DFT (PBE), the high fidelity of Low2High; options in its module.
    "gpaw": ("potstill.references.gpaw:make_calculator", {}),
    # GFN2-xTB tight binding (tblite), the reference of rare_events; options in its module.
    "xtb": ("potstill.references.xtb:make_calculator", {}),
}


class ReferenceConfig(Section):
    """Which labeler gives the labels (``kind``, see ``potstill references``), the name
    they are stored under, and the factory's ``options``. With ``timeout_s`` each call
    runs in a process of its own that is stopped after that many seconds, so a call
    that hangs or crashes its process costs only itself (see :mod:`potstill.labeling`)."""

    kind: str = "eam-ni"
    name: str = "eam"
    options: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, gt=0)

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in _REGISTRY and ":" not in value:
            raise ValueError(f"unknown reference {value!r}; available references are {available()}")
        return value

    def build(self) -> Reference:
        """The reference with its calculator."""
        return make_reference(self.kind, name=self.name, **self.options)


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
    """Build the ASE calculator of reference ``kind`` (a registered name or
    ``"module:function"``) with ``options``."""
    if kind in _REGISTRY:
        target, defaults = _REGISTRY[kind]
    elif ":" in kind:
        target, defaults = kind, {}
    else:
        raise PotstillError(f"unknown reference {kind!r}; available references are {available()}")
    module_name, func_name = target.split(":")
    try:
        factory: Callable[..., Calculator] = getattr(
            importlib.import_module(module_name), func_name
        )
    except (ImportError, AttributeError) as error:
        raise PotstillError(f"reference {kind!r}: cannot import {target} ({error})") from error
    return factory(**{**defaults, **options})


def make_reference(kind: str, *, name: str | None = None, **options: Any) -> Reference:
    """Build a :class:`Reference`; labels go under ``name`` (default:
    :func:`default_name`)."""
    calc = make_calculator(kind, **options)
    if getattr(calc, "reference_name", False) is None:  # LAMMPS names its reference in errors
        calc.reference_name = kind
    return Reference(name=name or default_name(kind), calculator=calc, kind=kind, options=options)


def default_name(kind: str) -> str:
    """The label name of reference ``kind`` unless one is given: ``"eam"`` for LAMMPS
    kinds, else the kind (the function's name for an import path)."""
    target = _REGISTRY[kind][0] if kind in _REGISTRY else kind
    return "eam" if target.startswith("potstill.references.lammps") else kind.rsplit(":", 1)[-1]


def registered_options(kind: str) -> dict[str, Any]:
    """The default options a registered reference ``kind`` passes to its factory (none
    for an import path)."""
    if ":" in kind and kind not in _REGISTRY:
        return {}
    if kind not in _REGISTRY:
        raise PotstillError(f"unknown reference {kind!r}; available references are {available()}")
    return dict(_REGISTRY[kind][1])


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
    merged = {"potential": None, **defaults, **(options or {})}
    missing = {"pair_style", "elements"} - set(merged)
    if missing:
        raise PotstillError(f"reference {kind!r} needs options {sorted(missing)}")
    return merged
