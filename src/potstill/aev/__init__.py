"""Atomic environments: neighbour lists and TorchANI's AEV, shared by models and descriptors.

- :mod:`potstill.aev.neighbors`: :class:`Batch` (frames flattened into one set of atoms
  with per-frame vesin neighbour lists), :class:`FrameBatcher`, :class:`NeighborCache`,
  :func:`frame_pairs`.
- :mod:`potstill.aev.config`: :class:`AEVConfig` and the AEV presets.
- :mod:`potstill.aev.kernel`: the AEV with first derivatives through autograd.
- :mod:`potstill.aev.inference`: the AEV with its derivative written out by hand.
"""

from potstill.aev.config import AEV_PRESETS, AEVConfig
from potstill.aev.neighbors import Batch, FrameBatcher, NeighborCache, frame_pairs

__all__ = ["AEV_PRESETS", "AEVConfig", "Batch", "FrameBatcher", "NeighborCache", "frame_pairs"]
