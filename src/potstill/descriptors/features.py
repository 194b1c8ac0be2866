"""Per-atom descriptors of many frames, flattened into one array.

:func:`per_atom_features` computes (or takes precomputed) descriptors of every frame;
:class:`AtomFeatures` holds them as ``values (n_atoms_total, d)`` with ``offsets``
marking each frame's rows, and gives the per-feature standardisation that the
descriptor-based selectors and uncertainties share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from potstill.errors import PotstillError

__all__ = ["AtomFeatures", "per_atom_features"]


@dataclass
class AtomFeatures:
    """Per-atom descriptors of all candidates, flattened.

    ``values (n_atoms_total, d)`` float32; ``offsets (n_frames + 1,)``: the atoms of frame
    ``i`` are rows ``offsets[i]:offsets[i+1]``.
    """

    values: np.ndarray
    offsets: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.offsets) - 1

    def rows(self, frames: np.ndarray | Sequence[int]) -> np.ndarray:
        """Atom rows of the given frames, concatenated."""
        frames = np.asarray(frames, dtype=int)
        if frames.size == 0:
            return np.zeros(0, dtype=int)
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in frames])

    def frame_scores(self, atom_scores: np.ndarray, reduce: str = "max") -> np.ndarray:
        """``(n_frames,)`` largest (``reduce="max"``) or mean atom score of each frame."""
        if reduce == "max":
            return np.maximum.reduceat(atom_scores, self.offsets[:-1])
        return np.add.reduceat(atom_scores, self.offsets[:-1]) / np.diff(self.offsets)

    def standardization(self, *, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation over all atoms, float64, in chunks.

        Standard deviations are floored at 1e-3 of the largest one (1 if all are 0), so a
        near-constant feature is not blown up to the scale of the informative ones.
        """
        n = len(self.values)
        mean = sum(block.sum(axis=0, dtype=np.float64) for block in self._blocks(chunk)) / n
        variance = sum(np.square(block - mean).sum(axis=0) for block in self._blocks(chunk)) / n
        std = np.sqrt(variance)
        floor = 1e-3 * std.max()
        return mean, np.maximum(std, floor) if floor > 0 else np.ones_like(std)

    def _blocks(self, chunk: int):
        for start in range(0, len(self.values), chunk):
            yield self.values[start : start + chunk]


def per_atom_features(candidates: Sequence, descriptor: Any) -> AtomFeatures:
    """Per-atom descriptors of ``candidates``: frames (computed with ``descriptor``, read
    once in order) or precomputed ``(n_atoms_i, d)`` arrays, one per candidate."""
    if len(candidates) == 0:
        raise PotstillError("the pool is empty; sample frames first (`potstill sample`)")
    first = candidates[0]
    if isinstance(first, np.ndarray):
        blocks = [np.asarray(block, dtype=np.float32) for block in candidates]
    elif hasattr(first, "positions"):
        blocks = descriptor.per_atom(candidates)
    else:
        raise PotstillError(
            "candidates must be frames (ase.Atoms, e.g. store.frames(ids)) or per-atom "
            f"descriptor arrays, got {type(first).__name__}"
        )
    widths = {block.shape[1] if block.ndim == 2 else -1 for block in blocks}
    if len(widths) != 1 or -1 in widths:
        raise PotstillError(
            "per-atom descriptors must be (n_atoms, n_features) arrays of one width; got "
            f"widths {sorted(widths)}"
        )
    counts = np.array([len(block) for block in blocks])
    if (counts == 0).any():
        raise PotstillError(f"candidate {int(np.argmin(counts))} has no atoms")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    values = np.concatenate(blocks).astype(np.float32, copy=False)
    if not np.isfinite(values).all():
        raise PotstillError("descriptors contain NaN or inf; check the frames' positions and cells")
    return AtomFeatures(values=values, offsets=offsets)
