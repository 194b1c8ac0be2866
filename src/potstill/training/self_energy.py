"""Self energies (eV per atom of each element) by linear regression on composition.

E_frame ~ sum_s n_s(frame) * e_s; the network then learns only the remainder, which keeps
its outputs O(0.1 eV) instead of O(5 eV) per atom.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from potstill.frames import get_labels


def fit_self_energies(
    frames: Sequence[Atoms], reference: str, species: Sequence[str]
) -> dict[str, float]:
    """Least-squares ``{element: e_s}`` (eV) with E ~ sum_s n_s e_s over ``frames``."""
    counts = [composition(atoms, species) for atoms in frames]
    energies = [get_labels(atoms, reference).energy for atoms in frames]
    return solve_self_energies(counts, energies, species)


def composition(atoms: Atoms, species: Sequence[str]) -> np.ndarray:
    """Number of atoms of each element of ``species`` in ``atoms``, shape (n_species,)."""
    symbols = atoms.get_chemical_symbols()
    return np.array([symbols.count(s) for s in species], dtype=float)


def solve_self_energies(counts, energies, species: Sequence[str]) -> dict[str, float]:
    """Least-squares self energies from ``counts (n_frames, n_species)`` and total
    ``energies (n_frames,)`` eV."""
    solution, *_ = np.linalg.lstsq(
        np.asarray(counts, dtype=float), np.asarray(energies), rcond=None
    )
    return {s: float(e) for s, e in zip(species, solution)}
