"""ANI-type neural network potentials on TorchANI's AEV, for batches of periodic frames.

- :class:`ANIModel` (``ani``): species-wise MLPs (``mlp``); energy, atomic energies,
  forces and stress (``pair_gradients``).
- :class:`Committee` (``committee``): K models, mean and population std.
- :class:`PotstillCalculator` (``calculator``): either of them as an ASE calculator.
- :func:`predict` (``predict``): batched predictions on many frames.
- :func:`save_checkpoint` / :func:`load_checkpoint` (``checkpoint``): ``weights_only``-safe
  files.
- :data:`PRESETS`, :class:`ModelConfig`, :class:`ModelSpec` (``presets``): named models.

The AEV and the neighbour lists (:class:`~potstill.aev.neighbors.Batch`) are
:mod:`potstill.aev`, shared with the descriptors.
"""

from potstill.models.ani import ANIModel, build_model
from potstill.models.calculator import PotstillCalculator
from potstill.models.checkpoint import load_checkpoint, parameter_checksum, save_checkpoint
from potstill.models.committee import Committee
from potstill.models.predict import predict
from potstill.models.presets import PRESETS, ModelConfig, ModelSpec

__all__ = [
    "PRESETS",
    "ANIModel",
    "Committee",
    "ModelConfig",
    "ModelSpec",
    "PotstillCalculator",
    "build_model",
    "load_checkpoint",
    "parameter_checksum",
    "predict",
    "save_checkpoint",
]
