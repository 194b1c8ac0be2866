"""Descriptors compute frames a chunk at a time, reading them once, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from ase import Atoms


def per_atom_in_chunks(
    frames: Iterable[Atoms], size: int, compute: Callable[[list[Atoms]], list[np.ndarray]]
) -> list[np.ndarray]:
    """``compute`` applied to consecutive chunks of ``size`` frames (the last may be
    shorter); the per-frame ``(n_atoms_i, d)`` arrays of all chunks, in order. A lazy
    store view is iterated once and never held whole."""
    result: list[np.ndarray] = []
    chunk: list[Atoms] = []
    for atoms in frames:
        chunk.append(atoms)
        if len(chunk) == size:
            result.extend(compute(chunk))
            chunk = []
    if chunk:
        result.extend(compute(chunk))
    return result
