"""Data augmentation by random coordinate noise (seed 004, Supplementary Note 1).

Each selected frame becomes ``copies`` frames: copy 0 is the frame itself (labels
kept), copies 1.. have every Cartesian coordinate shifted by uniform noise in
``[-delta_A, +delta_A]`` and are relabeled by the reference, so the network also sees
the energy landscape around each selected configuration.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError
from potstill.frames import LABEL_KINDS, available_references, label_key, labels_from_calculator, strip


def augment_with_noise(
    frames: Sequence[Atoms], *, copies: int, delta_A: float, reference, seed: int | np.random.Generator
) -> list[Atoms]:
    """``copies`` frames per input frame, in order (frame 0 copy 0, frame 0 copy 1, ...).

    Args:
        frames: labeled frames (copy 0 of each is returned unchanged, as a copy).
        copies: frames per input frame, including the unperturbed copy 0 (>= 1).
        delta_A: half-width of the uniform noise per coordinate, Angstrom (>= 0).
        reference: a :class:`~potstill.references.Reference` (``.name``, ``.calculator``)
            that labels the perturbed copies.
        seed: seed or ``numpy.random.Generator`` of the noise.

    Every copy carries ``info["augment_copy"]`` (0 for the original); perturbed copies
    lose every label of the original (they would be wrong) and get fresh ones.
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise PotstillError(f"copies must be a whole number >= 1 (copy 0 is the frame itself), got {copies!r}")
    if not np.isfinite(delta_A) or delta_A < 0:
        raise PotstillError(f"delta_A must be a noise amplitude >= 0 Angstrom, got {delta_A!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = []
    for atoms in frames:
        original = strip(atoms)
        original.info["augment_copy"] = 0
        out.append(original)
        for j in range(1, copies):
            noisy = _without_labels(atoms)
            noisy.positions = noisy.positions + rng.uniform(-delta_A, delta_A, size=noisy.positions.shape)
            noisy.info["augment_copy"] = j
            noisy.calc = reference.calculator
            out.append(labels_from_calculator(noisy, reference.name))
    return out


def _without_labels(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` keeping provenance but no labels of any reference."""
    bare = strip(atoms)
    for name in available_references(atoms):
        for kind in LABEL_KINDS:
            bare.info.pop(label_key(name, kind), None)
            if label_key(name, kind) in bare.arrays:
                del bare.arrays[label_key(name, kind)]
    bare.info.pop("store_id", None)
    return bare
