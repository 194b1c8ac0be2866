"""Labeling: frames labeled by a reference over an executor (:mod:`potstill.labeling.label`)
and noisy copies of selected frames (:mod:`potstill.labeling.augment`)."""

from potstill.labeling.augment import augment_with_noise, noisy_copies
from potstill.labeling.label import Labeled, label_frames, label_store, seconds_key

__all__ = [
    "Labeled",
    "augment_with_noise",
    "label_frames",
    "label_store",
    "noisy_copies",
    "seconds_key",
]
