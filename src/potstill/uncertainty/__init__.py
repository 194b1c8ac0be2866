"""Per-atom and per-frame uncertainty scores: Mahalanobis distance to a streamed
distribution (seed 003) and random network distillation novelty (seed 002)."""

from potstill.uncertainty.mahalanobis import StreamingGaussian
from potstill.uncertainty.rnd import RNDScorer

__all__ = ["RNDScorer", "StreamingGaussian"]
