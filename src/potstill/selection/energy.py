"""Uniform selection over per-atom energy bins (the "global energy" baseline of seed 002).

The pool's per-atom energies ``E / N`` (eV/atom, from the labels of ``reference``) are
cut into ``bins`` equal-width bins between their minimum and maximum. Frames are taken
one at a time from the bin holding the fewest selected frames so far (already-selected
``exclude`` frames count; ties broken at random), at random within a bin, so every
energy range gets an equal share until its bin runs out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.selection import prepare
from potstill.selection._features import per_frame
from potstill.selection.bins import balanced_bins, equal_width_bins


class UniformEnergySelector:
    """Uniform over per-atom energy bins.

    Args:
        reference: name of the labels whose energy is binned (``info["<reference>_energy"]``).
        bins: number of bins; default ``n`` (one per frame selected).
    """

    def __init__(self, *, reference: str = "eam", bins: int | None = None):
        if bins is not None and bins < 1:
            raise PotstillError(f"bins must be >= 1, got {bins}")
        self.reference = reference
        self.bins = bins

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        energies = per_frame(
            candidates,
            lambda atoms: get_labels(atoms, self.reference).energy / len(atoms),
            f"{self.reference} energy per atom",
        )
        n_bins = self.bins or n
        bin_of, self.edges_ = equal_width_bins(energies, n_bins)
        return balanced_bins(bin_of, n_bins, n, rng=rng, excluded=excluded)
