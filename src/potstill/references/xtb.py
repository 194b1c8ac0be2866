"""GFN-xTB tight binding (tblite) as a reference: the labeler of rare_events.

:func:`make_calculator` builds tblite's ASE calculator (``tblite.ase.TBLite``) from the
``options`` of a ``reference`` section::

    reference: {kind: xtb, name: xtb, options: {method: GFN2-xTB, electronic_temperature_K: 1000}}

- ``method``: ``GFN2-xTB`` (default; Bannwarth, Ehlert & Grimme, JCTC 15, 1652 (2019)),
  ``GFN1-xTB`` (Grimme, Bannwarth & Shushkov, JCTC 13, 1989 (2017)) or ``IPEA1-xTB``,
  the parametrisations tblite ships;
- ``electronic_temperature_K``: the Fermi smearing of the occupations (kelvin). 1000 K,
  not tblite's 300 K, smooths the occupations where the gap closes (stretched bonds,
  transition states) so the SCF converges there; a closed-shell molecule with a gap
  of several eV has the same energy (water: within 1e-9 Hartree of 300 K);
- ``max_iterations`` and ``accuracy``: the SCF iteration limit and tblite's accuracy
  factor (the SCF thresholds scale with it, smaller is tighter; 1e-4 to 1e3);
- ``charge`` (e) and ``multiplicity`` (2S + 1) of every frame; unset, tblite takes the
  sums of a frame's initial charges and initial magnetic moments (none: neutral,
  closed shell);
- other tblite keywords (``mixer_damping``, ``solvation``, ...) go to ``TBLite`` as is.

Units are ASE's: energy eV, forces eV/Angstrom, stress eV/Angstrom^3 (tblite works in
Hartree and Bohr and converts with ASE's constants). Labels are energy, forces and
per-atom energies for molecules (``pbc`` False) and any periodic cell, and stress for
fully periodic cells. The energy is the free energy at the electronic temperature,
the one whose derivatives the forces and stress are. Periodic cells are sampled at
the Gamma point only, so use cells large enough for that.

An SCF that does not converge within ``max_iterations`` raises: tblite raises
``TBLiteRuntimeError("SCF not converged in N cycles")``, which its ASE calculator
passes on as ASE's ``CalculationFailed``; labeling retries the frame and then records
it as failed (see :mod:`potstill.labeling`). Each frame starts from tblite's
superposition-of-atomic-densities guess (``cache_api`` off: no cost on small
molecules), so a label never depends on the frame a worker computed before it.
Nothing is printed (``verbosity`` 0). Run one thread per worker
(``OMP_NUM_THREADS=1``; the executors set it).
"""

from __future__ import annotations

import math
from typing import Any

from ase.calculators.calculator import Calculator

from potstill.errors import PotstillError

__all__ = ["make_calculator"]

# TBLite keywords this factory sets itself (under its own names, or fixed)
_SET_HERE = (
    *("method", "electronic_temperature", "max_iterations", "accuracy", "charge"),
    *("multiplicity", "verbosity", "cache_api"),
)


def make_calculator(
    *,
    method: str = "GFN2-xTB",
    electronic_temperature_K: float = 1000.0,
    max_iterations: int = 250,
    accuracy: float = 1.0,
    charge: float | None = None,
    multiplicity: int | None = None,
    **extra: Any,
) -> Calculator:
    """tblite's ``TBLite`` calculator (see the module docstring); ``extra`` holds other
    ``TBLite`` keywords, passed as is."""
    try:
        from tblite.ase import TBLite  # heavy: only when an xtb reference is built
        from tblite.interface import Calculator as _Api
    except ImportError as error:
        raise PotstillError(
            f"the xtb reference needs tblite ({error}); install it with "
            "`pip install tblite==0.8.0` (a dependency of potstill)"
        ) from None
    methods = sorted(getattr(_Api, "_loader", ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")))
    if method not in methods:
        raise PotstillError(f"unknown xtb method {method!r}; use one of {', '.join(methods)}")
    temperature = _number("electronic_temperature_K", electronic_temperature_K)
    if temperature < 0:
        raise PotstillError(
            f"electronic_temperature_K is a temperature in kelvin, >= 0 (e.g. 300 or 1000), "
            f"got {electronic_temperature_K!r}"
        )
    if not _positive_int(max_iterations):
        raise PotstillError(f"max_iterations should be a positive integer, got {max_iterations!r}")
    if not 1e-4 <= _number("accuracy", accuracy) <= 1e3:
        raise PotstillError(
            f"accuracy should be between 1e-4 and 1e3 (1.0 default), got {accuracy!r}"
        )
    if charge is not None:
        _number("charge", charge)
    if multiplicity is not None and not _positive_int(multiplicity):
        raise PotstillError(
            f"multiplicity is 2S + 1, a positive integer (1 singlet, 2 doublet), got {multiplicity!r}"
        )
    unknown = sorted(set(extra) - (set(TBLite.default_parameters) - set(_SET_HERE)))
    if unknown:
        raise PotstillError(
            f"unknown xtb option(s) {unknown}; use method, electronic_temperature_K, "
            "max_iterations, accuracy, charge, multiplicity or a tblite keyword such as mixer_damping"
        )
    return TBLite(
        method=method,
        electronic_temperature=temperature,
        max_iterations=max_iterations,
        accuracy=float(accuracy),
        charge=charge,
        multiplicity=multiplicity,
        verbosity=0,
        cache_api=False,
        **extra,
    )


def _number(name: str, value: Any) -> float:
    """``value`` as a finite float, or a one-line error naming option ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise PotstillError(f"xtb option {name} should be a finite number, got {value!r}")
    return number


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
