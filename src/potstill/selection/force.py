"""Uniform selection over force-magnitude bins (the force-based baseline of seed 002).

Each frame's force magnitude is the maximum (``reduce="max"``, default) or the mean
(``reduce="mean"``) over its atoms of the atomic force norm ``|F_i|`` (eV/A, from the
``forces (n_atoms, 3)`` labels of ``reference``). These per-frame values are cut into
``bins`` equal-width bins between their minimum and maximum, and frames are picked as
``uniform-energy`` picks them (:func:`~potstill.selection.bins.balanced_bins`): one at a
time from the bin holding the fewest selected frames (``exclude`` frames count; ties at
random), at random within the bin, so the calm and the violent frames get equal shares.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.selection import prepare
from potstill.selection._features import per_frame
from potstill.selection.bins import balanced_bins, equal_width_bins

_REDUCE = {"max": np.max, "mean": np.mean}


class ForceSelector:
    """Uniform over bins of per-frame force magnitude.

    Args:
        reference: name of the labels whose forces are read (``arrays["<reference>_forces"]``).
        reduce: ``"max"`` (default) or ``"mean"`` of ``|F_i|`` over a frame's atoms.
        bins: number of bins; default ``n`` (one per frame selected).

    After ``select``: ``values_ (n_frames,)`` the force magnitude of every candidate,
    eV/A, and ``edges_ (bins + 1,)`` the bin edges, eV/A.
    """

    def __init__(self, *, reference: str = "eam", reduce: str = "max", bins: int | None = None):
        if reduce not in _REDUCE:
            raise PotstillError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        if bins is not None and bins < 1:
            raise PotstillError(f"bins must be >= 1, got {bins}")
        self.reference = reference
        self.reduce = reduce
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
        reduce = _REDUCE[self.reduce]
        self.values_ = per_frame(
            candidates,
            lambda atoms: reduce(
                np.linalg.norm(get_labels(atoms, self.reference, ("forces",)).forces, axis=1)
            ),
            f"{self.reduce} {self.reference} force norm",
        )
        n_bins = self.bins or n
        bin_of, self.edges_ = equal_width_bins(self.values_, n_bins)
        return balanced_bins(bin_of, n_bins, n, rng=rng, excluded=excluded)
