"""Uniform selection over bins of atomic energies (the "local energy" baseline of seed 002).

The per-atom energies of every frame (``arrays["<reference>_energies"]``, eV, shape
``(n_atoms,)``; EMT and LAMMPS references give them) of the whole pool are cut into
``bins`` equal-width bins between their minimum and maximum (``edges_ (bins + 1,)``,
eV). Frames are then picked one at a time so that the histogram of the selected atoms'
energies grows as flat as it can: take the bin with the fewest selected atoms among the
bins that still hold atoms of unselected frames (ties at random), then a frame at random
among the unselected frames with an atom in that bin. Frames in ``exclude`` count as
selected from the start (their atoms fill their bins). A frame adds all its atoms, so
rare high-energy environments (surfaces, defects, hot spots) are sought out while the
bulk bins fill up by themselves. Cost: O(n * (bins + frames per bin)) after one pass.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.selection import prepare
from potstill.selection._features import frames_of
from potstill.selection.bins import equal_width_bins


class LocalEnergySelector:
    """Uniform over bins of per-atom energies.

    Args:
        reference: name of the labels whose per-atom energies are binned.
        bins: number of bins; default ``n`` (as many as frames selected).
    """

    def __init__(self, *, reference: str = "eam", bins: int | None = None):
        if bins is not None and bins < 1:
            raise PotstillError(f"bins must be >= 1, got {bins}")
        self.reference = reference
        self.bins = bins

    def atomic_energies(self, candidates: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom energies of all candidates, concatenated: ``(n_atoms_total,)`` eV, and
        ``offsets (n_frames + 1,)`` (frame ``i`` holds atoms ``offsets[i]:offsets[i+1]``)."""
        energies = []
        for i, atoms in enumerate(frames_of(candidates)):
            values = get_labels(atoms, self.reference, require=()).energies
            if values is None or len(values) == 0:
                raise PotstillError(
                    f"frame {i} has no {self.reference} per-atom energies; label with a "
                    "reference that gives them (LAMMPS and EMT do) or use uniform-energy"
                )
            if not np.isfinite(values).all():
                raise PotstillError(
                    f"per-atom {self.reference} energies of frame {i} are not finite"
                )
            energies.append(values)
        offsets = np.cumsum([0] + [len(values) for values in energies])
        return np.concatenate(energies), offsets

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        energies, offsets = self.atomic_energies(candidates)
        n_frames, n_bins = len(offsets) - 1, self.bins or n
        atom_bin, self.edges_ = equal_width_bins(energies, n_bins)
        # (frame, bin) pairs holding at least one atom, sorted by frame then bin
        frame_of_atom = np.repeat(np.arange(n_frames), np.diff(offsets))
        pairs, atoms_in_pair = np.unique(frame_of_atom * n_bins + atom_bin, return_counts=True)
        pair_frame, pair_bin = np.divmod(pairs, n_bins)
        frame_start = np.searchsorted(pair_frame, np.arange(n_frames + 1))
        by_bin = np.argsort(pair_bin, kind="stable")
        frames_in_bin = pair_frame[by_bin]
        bin_start = np.searchsorted(pair_bin[by_bin], np.arange(n_bins + 1))

        taken = excluded.copy()
        selected_atoms = np.zeros(n_bins, dtype=int)  # atoms of taken frames, per bin
        np.add.at(selected_atoms, pair_bin[taken[pair_frame]], atoms_in_pair[taken[pair_frame]])
        open_frames = np.bincount(pair_bin[~taken[pair_frame]], minlength=n_bins)
        picked: list[int] = []
        while len(picked) < n:
            open_bins = np.flatnonzero(open_frames)
            fewest = open_bins[selected_atoms[open_bins] == selected_atoms[open_bins].min()]
            b = fewest[rng.integers(len(fewest))]
            members = frames_in_bin[bin_start[b] : bin_start[b + 1]]
            members = members[~taken[members]]
            frame = int(members[rng.integers(len(members))])
            picked.append(frame)
            taken[frame] = True
            own = slice(frame_start[frame], frame_start[frame + 1])
            selected_atoms[pair_bin[own]] += atoms_in_pair[own]
            open_frames[pair_bin[own]] -= 1
        return np.asarray(picked, dtype=int)
