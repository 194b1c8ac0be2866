"""GPAW plane-wave DFT as a reference (the high fidelity of seed 001, Low2High).

:func:`make_calculator` builds an ASE calculator of GPAW in plane-wave mode (PBE by
default) from the ``options`` of a ``reference`` section::

    reference: {kind: gpaw, name: dft, options: {cutoff_eV: 300, kpts: [3, 3, 3]}}

- ``cutoff_eV``: plane-wave cutoff (eV); ``kpts``: a Monkhorst-Pack mesh ``[n1, n2, n3]``
  or ``kpt_density`` (k-points per reciprocal Angstrom, ``kpts={"density": ...}``) so
  cells of any size get a comparable sampling;
- ``smearing_eV`` with ``smearing`` (``fermi-dirac``, ``marzari-vanderbilt``,
  ``methfessel-paxton``, ``gaussian``): the occupation smearing width (eV);
- ``spinpol`` with ``magmoms`` (initial moment per element in Bohr magnetons, e.g.
  ``{Ni: 0.6}``) for magnetic elements;
- ``convergence`` and ``maxiter``: GPAW's SCF criteria and iteration limit. An SCF that
  does not converge raises GPAW's ``KohnShamConvergenceError``; labeling retries the
  frame and then records it as failed (see :mod:`potstill.labeling`).

Labels are energy, forces and stress. The energy stored is the **force-consistent**
(free) energy, the one whose derivatives the forces and stress are: GPAW's extrapolated
zero-width energy is not, and seed 001 subtracts the smearing term for the same reason.
The calculator carries ``force_consistent = True``, which
:func:`potstill.frames.labels_from_calculator` honours.

Run one thread per worker (``OMP_NUM_THREADS=1``; the executors set it): this GPAW is
the serial build of ``scripts/install-gpaw``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ase.calculators.calculator import Calculator

from potstill.errors import PotstillError

__all__ = ["make_calculator"]

SMEARINGS = ("fermi-dirac", "marzari-vanderbilt", "methfessel-paxton", "gaussian")


def make_calculator(
    *,
    cutoff_eV: float = 400.0,
    kpts: Sequence[int] | None = None,
    kpt_density: float | None = None,
    xc: str = "PBE",
    smearing: str = "fermi-dirac",
    smearing_eV: float = 0.1,
    spinpol: bool = False,
    magmoms: dict[str, float] | None = None,
    convergence: dict[str, float] | None = None,
    maxiter: int = 333,
    txt: str | None = None,
    **extra: Any,
) -> Calculator:
    """GPAW PW calculator (see the module docstring); ``extra`` goes to GPAW as is."""
    try:
        from gpaw import GPAW, PW  # heavy: only when a GPAW reference is built
    except ImportError as error:
        raise PotstillError(
            f"the gpaw reference needs GPAW ({error}); install it with `scripts/install-gpaw .venv` "
            "(make test and make demo do)"
        ) from None
    if smearing not in SMEARINGS:
        raise PotstillError(f"unknown smearing {smearing!r}; use one of {', '.join(SMEARINGS)}")
    if (kpts is None) == (kpt_density is None):
        raise PotstillError(
            "a gpaw reference needs exactly one of kpts: [n1, n2, n3] and kpt_density"
        )
    if kpts is not None and (len(kpts) != 3 or min(kpts) < 1):
        raise PotstillError(f"kpts should be three positive integers, got {list(kpts)}")
    if cutoff_eV <= 0 or smearing_eV < 0:
        raise PotstillError(
            f"need cutoff_eV > 0 and smearing_eV >= 0, got {cutoff_eV}, {smearing_eV}"
        )
    occupations = {"name": smearing, "width": smearing_eV}
    if smearing == "methfessel-paxton":
        occupations["order"] = 1
    calc = GPAW(
        mode=PW(cutoff_eV),
        xc=xc,
        kpts=list(kpts) if kpts is not None else {"density": kpt_density},
        occupations=occupations,
        spinpol=spinpol,
        convergence=convergence or {},
        maxiter=maxiter,
        txt=txt,
        **extra,
    )
    calc.force_consistent = True
    calc.initial_magmoms = dict(magmoms or {})
    if spinpol and not magmoms:
        raise PotstillError("spinpol: true needs initial magmoms per element, e.g. {Ni: 0.6}")
    return calc
