"""Data augmentation by random coordinate noise (seed 004, Supplementary Note 1).

Each selected frame becomes ``copies`` frames: copy 0 is the frame itself (labels kept),
copies 1.. have every Cartesian coordinate shifted by uniform noise in
``[-delta_A, +delta_A]`` and carry no labels (they would be wrong) until the reference
labels them (:mod:`potstill.labeling.label`), so the network also sees the energy
landscape around each selected configuration.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Sequence

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError
from potstill.frames import LABEL_KINDS, available_references, label_key, strip
from potstill.labeling.label import label_frames
from potstill.references import ReferenceConfig

__all__ = ["augment_with_noise", "noisy_copies"]


def noisy_copies(
    frames: Sequence[Atoms], *, copies: int, delta_A: float, seed: int | np.random.Generator
) -> list[Atoms]:
    """``copies`` frames per input frame, in order (frame 0 copy 0, frame 0 copy 1, ...).

    Args:
        frames: labeled frames (copy 0 of each is returned unchanged, as a copy).
        copies: frames per input frame, including the unperturbed copy 0 (>= 1).
        delta_A: half-width of the uniform noise per coordinate, Angstrom (>= 0).
        seed: seed or ``numpy.random.Generator`` of the noise.

    Every copy carries ``info["augment_copy"]`` (0 for the original); perturbed copies
    lose every label of the original.
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise PotstillError(
            f"copies must be a whole number >= 1 (copy 0 is the frame itself), got {copies!r}"
        )
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
            noisy.positions = noisy.positions + rng.uniform(
                -delta_A, delta_A, size=noisy.positions.shape
            )
            noisy.info["augment_copy"] = j
            out.append(noisy)
    return out


def augment_with_noise(
    frames: Sequence[Atoms],
    *,
    copies: int,
    delta_A: float,
    reference: ReferenceConfig,
    seed: int | np.random.Generator,
    executor: Executor | None = None,
) -> list[Atoms]:
    """:func:`noisy_copies` with the perturbed copies labeled by ``reference`` (over
    ``executor``); a copy the reference fails on raises :class:`PotstillError`."""
    out = noisy_copies(frames, copies=copies, delta_A=delta_A, seed=seed)
    todo = [i for i, atoms in enumerate(out) if atoms.info["augment_copy"] > 0]
    for outcomes in label_frames([out[i] for i in todo], reference, executor=executor):
        for outcome in outcomes:
            if outcome.frame is None:
                raise PotstillError(
                    f"reference {reference.kind} failed on a noisy copy: {outcome.error}"
                )
            out[todo[outcome.index]] = outcome.frame
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
