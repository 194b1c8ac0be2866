"""ANI-type neural network potentials on TorchANI's AEV, for batches of periodic frames.

- :class:`Batch` (``neighbors``): frames flattened into one set of atoms with per-frame
  vesin neighbour lists.
- :class:`ANIModel` (``ani``): species-wise MLPs; energy, atomic energies, forces, stress.
- :class:`Committee` (``committee``): K models, mean and population std.
- :class:`PotstillCalculator` (``calculator``): either of them as an ASE calculator.
- :func:`save_checkpoint` / :func:`load_checkpoint`: ``weights_only``-safe files.
"""

from potstill.models.ani import PRESETS, AEVConfig, ANIModel, load_checkpoint, save_checkpoint
from potstill.models.calculator import PotstillCalculator
from potstill.models.committee import Committee
from potstill.models.neighbors import Batch, NeighborCache, frame_pairs

__all__ = [
    "PRESETS",
    "AEVConfig",
    "ANIModel",
    "Batch",
    "Committee",
    "NeighborCache",
    "PotstillCalculator",
    "frame_pairs",
    "load_checkpoint",
    "save_checkpoint",
]
