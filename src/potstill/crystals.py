"""FCC, BCC and HCP supercells, relaxed with any ASE calculator.

The cells of seed 000's validation (Tables 1-3, S6, S7), used to compare a model with its
reference (:mod:`potstill.validation.crystals`), for elastic constants
(:mod:`potstill.validation.elastic`) and for the lattice ratio of a translation
(:mod:`potstill.sampling.translate`).

Contract
--------
- Cells: FCC is the 2x2x2 conventional cubic cell (32 atoms), BCC the 3x3x3
  conventional cubic cell (54 atoms), HCP the 4-atom orthorhombic cell
  (a, sqrt(3) a, c) repeated 3x2x2 (48 atoms, about 7.5 x 8.6 x 8.1 A for Ni).
- Start: the lattice guess (default: the element's atomic volume from
  ``ase.data.reference_states``, kept equal across structures, ideal c/a for HCP) is
  expanded by ``expand`` (2.5 % by default, as in seed 001) so every relaxation does
  real work; no EOS scan is needed.
- Relaxation: positions and cell together with FIRE on ``ase.filters.FrechetCellFilter``
  until the largest force (eV/A; cell "forces" are virial / n_atoms, eV) is below
  ``fmax_eV_per_A``. The default 1e-3 eV/A leaves a residual stress of ~0.02 GPa,
  i.e. lattice errors ~1e-4 A.
- No rattle by default: a perfect start keeps the crystal's symmetry, so a mechanically
  unstable phase (BCC Ni in EAM) stays in its own basin, as in the seeds' tables. A
  seeded rattle (``rattle_A``) is available to test whether a phase survives.
- Bond length: shortest interatomic distance under periodic boundaries, A.
- Energies are totals per atom, eV/atom, exactly as the calculator reports them (for an
  NNP this includes its self-energies, so compare like with like).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, Sequence

import numpy as np
from ase import Atoms, units
from ase.build import bulk, find_optimal_cell_shape, make_supercell
from ase.calculators.calculator import Calculator
from ase.data import atomic_numbers, reference_states
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE
from ase.symbols import string2symbols
from pydantic import Field, field_validator

from potstill.errors import PotstillError
from potstill.settings import Section

STRUCTURES = ("fcc", "bcc", "hcp")
SUPERCELLS = {"fcc": (2, 2, 2), "bcc": (3, 3, 3), "hcp": (3, 2, 2)}
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)
_ATOMS_PER_CELL = {"fcc": 4, "bcc": 2, "hcp": 4}  # conventional / orthorhombic cells


def default_lattice_A(structure: str, element: str) -> dict[str, float]:
    """Lattice guess (A) of ``structure`` at the element's reference atomic volume.

    The atomic volume comes from ``ase.data.reference_states`` (for Ni: FCC, a = 3.52 A,
    10.90 A^3/atom); FCC and BCC get the cubic ``a`` of that volume, HCP ``a`` and ``c``
    at the ideal c/a = sqrt(8/3).
    """
    _check_structure(structure)
    volume = _reference_atomic_volume_A3(element)
    if structure == "fcc":
        return {"a": (4.0 * volume) ** (1.0 / 3.0)}
    if structure == "bcc":
        return {"a": (2.0 * volume) ** (1.0 / 3.0)}
    a = (4.0 * volume / (math.sqrt(3.0) * IDEAL_C_OVER_A)) ** (1.0 / 3.0)
    return {"a": a, "c": a * IDEAL_C_OVER_A}


def build_crystal(
    structure: str,
    element: str,
    *,
    lattice_A: dict[str, float],
    repeat: tuple[int, int, int] | None = None,
) -> Atoms:
    """The validation supercell of ``structure`` (see module docstring for sizes; or
    ``repeat`` conventional cells, e.g. ``(1, 1, 1)`` for DFT).

    ``lattice_A``: ``{"a": ...}`` (and ``"c"`` for HCP; ideal c/a when absent), A.
    The structure and repeats are recorded in ``atoms.info["crystal_structure"]`` and
    ``atoms.info["supercell"]`` so :func:`lattice_constants_A` can read them back.
    """
    _check_structure(structure)
    a = float(lattice_A["a"])
    if structure == "hcp":
        c = float(lattice_A.get("c", a * IDEAL_C_OVER_A))
        cell = bulk(element, "hcp", a=a, c=c, orthorhombic=True)
    else:
        cell = bulk(element, structure, a=a, cubic=True)
    repeat = tuple(repeat or SUPERCELLS[structure])
    atoms = cell.repeat(repeat)
    atoms.info["crystal_structure"] = structure
    atoms.info["supercell"] = repeat
    return atoms


def zero_pressure_cubic(
    atoms: Atoms, calc: Calculator, *, tol_GPa: float = 0.02, max_calculations: int = 8
) -> dict:
    """Scale a cubic cell in place (isotropically) until its pressure is within
    ``tol_GPa`` of zero, by the secant method on p(a): 3-4 calculations with a costly
    ``calc`` where a cell relaxation would take tens. Returns ``{"a_A" (the cubic
    lattice constant of :func:`lattice_constants_A`), "pressure_GPa",
    "n_calculations"}``."""

    def pressure(scale: float) -> float:
        trial = atoms.copy()
        trial.set_cell(atoms.cell[:] * scale, scale_atoms=True)
        trial.calc = calc
        return -float(np.trace(trial.get_stress(voigt=False))) / 3.0 / units.GPa

    points = [(1.0, pressure(1.0)), (1.005, pressure(1.005))]
    while abs(points[-1][1]) > tol_GPa and len(points) < max_calculations:
        (s0, p0), (s1, p1) = points[-2], points[-1]
        if p1 == p0:
            break
        scale = s1 - p1 * (s1 - s0) / (p1 - p0)
        points.append((scale, pressure(scale)))
    scale, p = min(points, key=lambda point: abs(point[1]))
    if abs(p) > tol_GPa:
        raise PotstillError(
            f"the cubic cell did not reach zero pressure in {max_calculations} calculations "
            f"(|p| = {abs(p):.3f} GPa); start nearer the lattice constant"
        )
    atoms.set_cell(atoms.cell[:] * scale, scale_atoms=True)
    return {
        "a_A": lattice_constants_A(atoms)["a"],
        "pressure_GPa": p,
        "n_calculations": len(points),
    }


def lattice_constants_A(atoms: Atoms) -> dict[str, float]:
    """Lattice constants (A) of a cell made by :func:`build_crystal` (possibly relaxed).

    Cubic: ``{"a"}``, the mean of the three cell lengths over the repeats. HCP:
    ``{"a", "c"}`` from the orthorhombic cell's first and third lengths (the second,
    sqrt(3) a, is a check of the shape, not reported).
    """
    structure = atoms.info.get("crystal_structure")
    repeats = atoms.info.get("supercell")
    if structure not in STRUCTURES or repeats is None:
        raise PotstillError(
            "lattice constants need a cell built by potstill.crystals."
            "build_crystal (atoms.info lacks 'crystal_structure'/'supercell')"
        )
    per_cell = atoms.cell.lengths() / np.asarray(repeats, dtype=float)
    if structure == "hcp":
        return {"a": float(per_cell[0]), "c": float(per_cell[2])}
    return {"a": float(np.mean(per_cell))}


def shortest_bond_A(atoms: Atoms) -> float:
    """Shortest interatomic distance (A), minimum image under the cell's periodicity."""
    if len(atoms) < 2 and not atoms.pbc.any():
        raise PotstillError("a bond length needs at least two atoms or a periodic cell")
    volume_per_atom = abs(atoms.get_volume()) / len(atoms) if atoms.pbc.all() else 20.0
    cutoff = 1.5 * volume_per_atom ** (1.0 / 3.0)
    for _ in range(4):
        distances = neighbor_list("d", atoms, cutoff)
        if len(distances):
            return float(np.min(distances))
        cutoff *= 2.0
    raise PotstillError(f"no neighbours within {cutoff:.1f} A; is the structure exploded?")


class _Collapsed(Exception):
    """Raised by the guard of :func:`relax_atoms` to stop a relaxation gone wrong."""


def relax_atoms(
    atoms: Atoms,
    calc: Calculator,
    *,
    fmax_eV_per_A: float = 1e-3,
    steps: int = 3000,
    relax_cell: bool = True,
    min_bond_ratio: float = 0.6,
    max_volume_ratio: float = 2.0,
) -> dict:
    """Relax ``atoms`` in place (positions, and the cell when ``relax_cell``) with FIRE.

    At most ``steps`` steps; every 10 steps a guard stops a relaxation that collapses
    (shortest bond below ``min_bond_ratio`` of the start's) or blows up (volume outside
    ``1 / max_volume_ratio``..``max_volume_ratio`` of the start's), as a poorly trained
    model can make it do, instead of letting it run on with ever more neighbours.
    Returns ``{"converged": bool, "steps": int, "stopped": str}`` (``stopped`` says why a
    relaxation that did not converge ended). The calculator stays attached.
    """
    atoms.calc = calc
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    optimizer = FIRE(target, logfile=None)
    bond, volume = shortest_bond_A(atoms), abs(atoms.get_volume()) if atoms.pbc.all() else None

    def guard():
        if shortest_bond_A(atoms) < min_bond_ratio * bond:
            raise _Collapsed(f"collapsed: a bond shrank below {min_bond_ratio:g} of its start")
        if (
            volume
            and not 1 / max_volume_ratio < abs(atoms.get_volume()) / volume < max_volume_ratio
        ):
            raise _Collapsed(
                f"the cell volume left {1 / max_volume_ratio:g}-{max_volume_ratio:g} times its start"
            )

    optimizer.attach(guard, interval=10)
    stopped = ""
    with warnings.catch_warnings():
        # FrechetCellFilter's matrix log warns about ~1e-13 round-off near the identity
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        try:
            converged = bool(optimizer.run(fmax=fmax_eV_per_A, steps=steps))
        except _Collapsed as reason:
            converged, stopped = False, str(reason)
    if not converged and not stopped:
        stopped = f"not converged to {fmax_eV_per_A:g} eV/A in {steps} steps"
    return {
        "converged": converged,
        "steps": int(optimizer.get_number_of_steps()),
        "stopped": stopped,
    }


def relax_crystal(
    structure: str,
    element: str,
    calc: Calculator,
    *,
    lattice_guess_A: dict[str, float] | None = None,
    expand: float = 0.025,
    fmax_eV_per_A: float = 1e-3,
    steps: int = 3000,
    rattle_A: float = 0.0,
    seed: int = 0,
) -> dict:
    """Relax the ``structure`` supercell of ``element`` with ``calc``.

    ``lattice_guess_A``: start lattice (see :func:`build_crystal`), default
    :func:`default_lattice_A`; it is scaled by ``1 + expand`` (linear) before relaxing.
    ``rattle_A``: standard deviation (A) of a seeded Gaussian displacement of the start.

    Returns ``{"structure", "n_atoms", "bond_length_A", "energy_eV_per_atom",
    "lattice_A": {"a"[, "c"]}, "converged", "stopped", "steps", "atoms"}``; ``atoms`` is the
    relaxed cell (no calculator), for elastic constants or writing out.
    """
    _check_structure(structure)
    if not -0.2 < expand < 0.2:
        raise PotstillError(f"expand={expand} is a linear strain; use a few percent, e.g. 0.025")
    guess = dict(lattice_guess_A or default_lattice_A(structure, element))
    start = {k: v * (1.0 + expand) for k, v in guess.items()}
    atoms = build_crystal(structure, element, lattice_A=start)
    if rattle_A > 0.0:
        atoms.rattle(stdev=rattle_A, seed=seed)
    run = relax_atoms(atoms, calc, fmax_eV_per_A=fmax_eV_per_A, steps=steps)
    energy = float(atoms.get_potential_energy()) / len(atoms)
    relaxed = atoms.copy()
    relaxed.calc = None
    return {
        "structure": structure,
        "n_atoms": len(atoms),
        "bond_length_A": shortest_bond_A(atoms),
        "energy_eV_per_atom": energy,
        "lattice_A": lattice_constants_A(atoms),
        "converged": run["converged"],
        "stopped": run["stopped"],
        "steps": run["steps"],
        "atoms": relaxed,
    }


def _check_structure(structure: str) -> None:
    if structure not in STRUCTURES:
        raise PotstillError(f"unknown crystal structure {structure!r}; use one of {STRUCTURES}")


def _reference_atomic_volume_A3(element: str) -> float:
    if element not in atomic_numbers:
        raise PotstillError(f"unknown element {element!r}; use a chemical symbol like 'Ni'")
    state = reference_states[atomic_numbers[element]]
    if state is None or state.get("symmetry") not in ("fcc", "bcc", "hcp", "diamond", "sc"):
        raise PotstillError(
            f"ASE has no usable reference crystal for {element}; pass lattice_guess_A="
            "{'a': ...} (and 'c' for hcp) explicitly"
        )
    atoms = bulk(element)
    return atoms.get_volume() / len(atoms)


class StructureConfig(Section):
    """A starting structure: ``ase.build.bulk(element, lattice, a=a_A, cubic=True)``
    (HCP: its primitive cell) repeated ``repeat`` times; or, with ``n_atoms``, the most
    nearly cubic supercell of the primitive cell holding ``n_atoms`` atoms (ASE's
    ``find_optimal_cell_shape``; e.g. 100 ions of rocksalt KCl in a 14.4 A cell, which no
    repeat of the cubic cell gives). For two-element lattices (``rocksalt``,
    ``zincblende``, ``cesiumchloride``) ``element`` is the formula, e.g. ``KCl``."""

    element: str = "Ni"
    lattice: Literal[
        "fcc", "bcc", "hcp", "sc", "diamond", "rocksalt", "zincblende", "cesiumchloride"
    ] = "fcc"
    a_A: float | None = None
    repeat: tuple[int, int, int] = (2, 2, 2)
    n_atoms: int | None = Field(None, gt=0)

    @field_validator("element")
    @classmethod
    def _element(cls, value: str) -> str:
        try:
            symbols = string2symbols(value)
        except ValueError:
            symbols = [value]
        unknown = [s for s in symbols if s not in atomic_numbers]
        if unknown or not symbols:
            raise ValueError(
                f"unknown element {value!r}; use a chemical symbol like 'Ni' (or a formula "
                "like 'KCl' for a rocksalt lattice)"
            )
        return value

    @property
    def elements(self) -> list[str]:
        """The chemical symbols of the structure, in formula order."""
        return list(dict.fromkeys(string2symbols(self.element)))

    def check_species(self, species: Sequence[str], what: str = "sample") -> None:
        """Raise a one-line :class:`PotstillError` naming the structure's elements that
        are not among the run's ``species``."""
        unknown = [e for e in self.elements if e not in species]
        if unknown:
            raise PotstillError(
                f"{what} structure element(s) {unknown} not in species {list(species)}"
            )

    def build(self) -> Atoms:
        """The structure as ``ase.Atoms``."""
        if self.n_atoms is None:
            cubic = self.lattice != "hcp"
            return bulk(self.element, self.lattice, a=self.a_A, cubic=cubic).repeat(self.repeat)
        primitive = bulk(self.element, self.lattice, a=self.a_A)
        if self.n_atoms % len(primitive):
            raise PotstillError(
                f"n_atoms {self.n_atoms} is not a multiple of the {len(primitive)}-atom "
                f"primitive {self.lattice} cell; choose e.g. {len(primitive) * 50}"
            )
        shape = find_optimal_cell_shape(primitive.cell, self.n_atoms // len(primitive), "sc")
        return make_supercell(primitive, shape)
