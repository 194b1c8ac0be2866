"""Equal-width bins of a per-frame (or per-atom) value, and bin-balanced picks of frames.

Shared by the binned baselines: ``uniform-energy`` (energy per atom), ``force`` (force
magnitude) and ``local-energy`` (per-atom energies, binned here, picked by its own loop).
"""

from __future__ import annotations

import heapq

import numpy as np


def equal_width_bins(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``values (m,)`` into ``bins`` equal-width bins between their minimum and maximum.

    Returns ``bin_of (m,)`` int in ``0..bins-1`` (the maximum goes to the last bin; all
    values in bin 0 when they are all equal) and ``edges (bins + 1,)`` in the unit of
    ``values``.
    """
    low = values.min()
    span = values.max() - low
    relative = (values - low) / span if span > 0 else np.zeros_like(values)
    bin_of = np.minimum((relative * bins).astype(int), bins - 1)
    return bin_of, low + span * np.linspace(0.0, 1.0, bins + 1)


def balanced_bins(
    bin_of: np.ndarray,
    bins: int,
    n: int,
    *,
    rng: np.random.Generator,
    excluded: np.ndarray,
) -> np.ndarray:
    """Pick ``n`` frames one at a time from the bin holding the fewest picked frames.

    Args:
        bin_of: ``(n_frames,)`` bin of each frame, in ``0..bins-1``.
        bins: number of bins.
        n: frames to pick, at most the number outside ``excluded``.
        rng: draws the order within each bin, then the order of bins with equal counts.
        excluded: ``(n_frames,)`` bool; these frames are never picked and count as
            already picked in their bins.

    Returns ``(n,)`` int positions in the order picked. A bin that runs out of frames
    drops out; the others keep taking turns.
    """
    counts = np.bincount(bin_of[excluded], minlength=bins)
    shuffled = rng.permutation(len(bin_of))
    members: dict[int, list[int]] = {b: [] for b in range(bins)}
    for i in shuffled:
        if not excluded[i]:
            members[int(bin_of[i])].append(int(i))
    tie_break = rng.permutation(bins)
    heap = [(int(counts[b]), int(tie_break[b]), b) for b in range(bins) if members[b]]
    heapq.heapify(heap)
    picked: list[int] = []
    while len(picked) < n:
        count, tie, b = heapq.heappop(heap)
        picked.append(members[b].pop())
        if members[b]:
            heapq.heappush(heap, (count + 1, tie, b))
    return np.asarray(picked, dtype=int)
