"""Frames are ``ase.Atoms``; labels live on them under the name of their reference.

For a reference named ``ref`` a labeled frame carries

- ``atoms.info["ref_energy"]``: total energy, eV (float)
- ``atoms.arrays["ref_forces"]``: forces, eV/A, shape (n_atoms, 3)
- ``atoms.info["ref_stress"]``: stress, eV/A^3, Voigt (xx, yy, zz, yz, xz, xy), ASE sign
  convention (``stress = (1/V) dE/dstrain``), shape (6,)
- ``atoms.arrays["ref_energies"]``: per-atom energies, eV, shape (n_atoms,), when the
  reference provides them (EAM does)

so labels from different references (``eam_*``, ``dft_*``) never overwrite each other.
Provenance (sampler, temperature_K, step, iteration, selected_by, ...) is kept as plain
scalars in ``atoms.info``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list

from potstill.errors import InvalidLabelError, MissingLabelError, PotstillError

LABEL_KINDS = ("energy", "forces", "stress", "energies")
_IN_INFO = {"energy", "stress"}


def label_key(reference: str, kind: str) -> str:
    """Key of label ``kind`` (one of :data:`LABEL_KINDS`) of ``reference``."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"unknown label kind {kind!r}; use one of {LABEL_KINDS}")
    return f"{reference}_{kind}"


@dataclass(frozen=True)
class Labels:
    """Labels of one frame from one reference (eV, eV/A, eV/A^3 Voigt, eV)."""

    energy: float
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    energies: np.ndarray | None = None


def set_labels(
    atoms: Atoms,
    reference: str,
    *,
    energy: float,
    forces: np.ndarray | None = None,
    stress: np.ndarray | None = None,
    energies: np.ndarray | None = None,
) -> Atoms:
    """Store labels of ``reference`` on ``atoms`` (in place) after checking them.

    Raises :class:`InvalidLabelError` for NaN/inf values or wrong shapes, so a broken
    reference never writes garbage into a pool.
    """
    given = {"energy": energy, "forces": forces, "stress": stress, "energies": energies}
    checked = {
        kind: None if value is None else _check(reference, kind, value, len(atoms))
        for kind, value in given.items()
    }
    for kind, value in checked.items():
        if value is None:
            continue
        key = label_key(reference, kind)
        if kind == "energy":
            atoms.info[key] = float(value)
        elif kind in _IN_INFO:
            atoms.info[key] = value
        else:
            atoms.arrays[key] = value
    return atoms


def get_labels(atoms: Atoms, reference: str, require: Sequence[str] = ("energy",)) -> Labels:
    """Labels of ``reference`` on ``atoms``; kinds in ``require`` must be present."""
    values = {}
    for kind in LABEL_KINDS:
        key = label_key(reference, kind)
        store = atoms.info if kind in _IN_INFO else atoms.arrays
        values[kind] = np.asarray(store[key], dtype=float) if key in store else None
    missing = [k for k in require if values[k] is None]
    if missing:
        have = sorted(available_references(atoms)) or ["none"]
        raise MissingLabelError(
            f"frame has no {reference!r} label(s) {missing}; labels present are from "
            f"{have}: label the pool first, `potstill label POOL --reference KIND --name {reference}` "
            "(`potstill references` lists the kinds)"
        )
    return Labels(
        energy=float(values["energy"]) if values["energy"] is not None else float("nan"),
        forces=values["forces"],
        stress=values["stress"],
        energies=values["energies"],
    )


def has_labels(atoms: Atoms, reference: str, require: Sequence[str] = ("energy",)) -> bool:
    """Whether ``atoms`` carries every label kind in ``require`` from ``reference``."""
    for kind in require:
        store = atoms.info if kind in _IN_INFO else atoms.arrays
        if label_key(reference, kind) not in store:
            return False
    return True


def check_labels(atoms: Atoms) -> None:
    """Raise :class:`InvalidLabelError` for any label on ``atoms`` (of any reference) that
    has the wrong shape or is not finite (NaN or inf)."""
    for reference in sorted(available_references(atoms)):
        for kind in LABEL_KINDS:
            key = label_key(reference, kind)
            where = atoms.info if kind in _IN_INFO else atoms.arrays
            if key not in where:
                continue
            value = np.asarray(where[key], dtype=float)
            value = value.reshape(3, 3) if kind == "stress" and value.size == 9 else value
            _check(reference, kind, value, len(atoms), stored=True)


def check_geometry(atoms: Atoms, *, min_distance_A: float = 0.1) -> None:
    """Raise :class:`PotstillError` for a frame no model can take: no atoms, positions or
    cell that are not finite, a periodic direction without a cell vector (zero volume),
    or two atoms closer than ``min_distance_A`` (overlapping)."""
    if len(atoms) == 0:
        raise PotstillError("the frame has no atoms")
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell[:]).all()):
        raise PotstillError("positions or cell are not finite (NaN or inf)")
    periodic = np.asarray(atoms.pbc, dtype=bool)
    if periodic.any() and np.linalg.matrix_rank(atoms.cell[:][periodic], tol=1e-6) < periodic.sum():
        raise PotstillError(
            f"the cell is degenerate (zero volume) along periodic directions {periodic.tolist()}"
        )
    if len(atoms) > 1 or periodic.any():
        distances = neighbor_list("d", atoms, min_distance_A)
        if len(distances):
            raise PotstillError(
                f"two atoms are {distances.min():.3f} A apart (overlapping, < {min_distance_A} A)"
            )


def available_references(atoms: Atoms) -> set[str]:
    """Names of references with an energy label on ``atoms``."""
    return {k[: -len("_energy")] for k in atoms.info if k.endswith("_energy")}


def labels_from_calculator(atoms: Atoms, reference: str) -> Atoms:
    """Copy the results of ``atoms.calc`` into ``reference`` labels and return a bare copy.

    Per-atom energies and stress are taken when the calculator implements them. A
    calculator may declare ``force_consistent = True`` (the energy stored is then the free
    energy, whose derivatives the forces are: DFT with smearing) and ``initial_magmoms``
    (Bohr magnetons per element, set on the atoms before the calculation).
    """
    calc = atoms.calc
    if calc is None:
        raise ValueError("labels_from_calculator needs atoms with a calculator attached")
    props = getattr(calc, "implemented_properties", ())
    magmoms = getattr(calc, "initial_magmoms", None)
    if magmoms:
        atoms.set_initial_magnetic_moments([magmoms.get(s, 0.0) for s in atoms.symbols])
    energy = atoms.get_potential_energy(force_consistent=getattr(calc, "force_consistent", False))
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True) if "stress" in props and atoms.pbc.all() else None
    energies = atoms.get_potential_energies() if "energies" in props else None
    frame = strip(atoms)
    return set_labels(
        frame, reference, energy=energy, forces=forces, stress=stress, energies=energies
    )


def strip(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` without calculator (labels and provenance are kept)."""
    frame = atoms.copy()
    frame.calc = None
    return frame


def check_elements(frames: Iterable[Atoms], species: Sequence[str]) -> None:
    """Raise a clear error if any frame holds an element outside ``species``."""
    allowed = set(species)
    for symbol in species:
        if symbol not in atomic_numbers:
            raise PotstillError(f"unknown element {symbol!r}; use chemical symbols like 'Ni'")
    for i, atoms in enumerate(frames):
        extra = set(atoms.get_chemical_symbols()) - allowed
        if extra:
            raise PotstillError(
                f"frame {i} contains element(s) {sorted(extra)} the model does not know "
                f"(model species: {list(species)}); add them to `species` in the config"
            )


def _voigt(stress: np.ndarray) -> np.ndarray:
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (3, 3):
        return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return stress


def _check(reference: str, kind: str, value, n_atoms: int, *, stored: bool = False) -> np.ndarray:
    """``value`` of label ``kind`` as a float array (stress in Voigt order), checked for
    its shape and for NaN/inf; ``stored`` says the label came from a file, not from the
    reference just now (the message differs)."""
    value = np.asarray(_voigt(value) if kind == "stress" else value, dtype=float)
    shape = {"energy": (), "forces": (n_atoms, 3), "stress": (6,), "energies": (n_atoms,)}[kind]
    if value.shape != shape:
        raise InvalidLabelError(f"{reference} {kind} has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise InvalidLabelError(
            f"{reference} {kind} is not finite (NaN or inf); drop the frame or fix the label"
            if stored
            else f"{reference} returned non-finite {kind} (NaN or inf); the frame was not "
            "stored: check the reference's settings or drop the frame"
        )
    return value.copy()
