"""Self energies (eV per atom of each element) by linear regression on composition.

E_frame ~ sum_s n_s(frame) * e_s; the network then learns only the remainder, which keeps
its outputs O(0.1 eV) instead of O(5 eV) per atom.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from potstill.frames import get_labels


def fit_self_energies(frames: Sequence[Atoms], reference: str, species: Sequence[str]) -> dict[str, float]:
    """Least-squares ``{element: e_s}`` (eV) with E ~ sum_s n_s e_s over ``frames``."""
    counts = np.array(
        [[atoms.get_chemical_symbols().count(s) for s in species] for atoms in frames], dtype=float
    )
    energies = np.array([get_labels(atoms, reference).energy for atoms in frames])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {s: float(e) for s, e in zip(species, solution)}
