"""Per-atom descriptors of frames: ``aev`` (potstill's TorchANI AEV, the default).

A descriptor maps a frame to a ``(n_atoms, n_features)`` float32 array and a sequence of
frames to a list of them (``descriptor.per_atom(frames)``); selectors and uncertainty
scores take any object with that method.
"""

from potstill.descriptors.aev import AEVDescriptor

__all__ = ["AEVDescriptor"]
