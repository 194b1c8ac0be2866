"""Per-atom descriptors of frames: ``aev`` (potstill's TorchANI AEV, the default) and
``soap`` (DScribe's SOAP, optional: ``pip install 'potstill[soap]'``).

A descriptor maps a frame to a ``(n_atoms, n_features)`` float32 array and a sequence of
frames to a list of them (``descriptor.per_atom(frames)``); selectors and uncertainty
scores take any object with that method, or a registry name with options
(``make_descriptor("soap", r_cut=5.0)``).
"""

from __future__ import annotations

import importlib
from typing import Any

from potstill.descriptors.aev import AEVDescriptor
from potstill.errors import PotstillError

_REGISTRY = {
    "aev": "potstill.descriptors.aev:AEVDescriptor",
    "soap": "potstill.descriptors.soap:SOAPDescriptor",
}


def available() -> list[str]:
    """Registered descriptor names."""
    return sorted(_REGISTRY)


def resolve_descriptor(descriptor: Any = None, aev: Any = None):
    """A descriptor object from what a config or caller gives: an object with
    ``per_atom``, a registry name (``"aev"``, ``"soap"``), ``{"name": ..., **options}``
    (as in a YAML), or None: an :class:`AEVDescriptor` with AEV parameters ``aev`` (an
    ``AEVConfig``, a preset name, or None for the default)."""
    if isinstance(descriptor, (str, dict)):
        spec = {"name": descriptor} if isinstance(descriptor, str) else dict(descriptor)
        if "name" not in spec:
            raise PotstillError(
                f"a descriptor given as options needs a `name` (aev or soap), got {descriptor}"
            )
        return make_descriptor(spec.pop("name"), **spec)
    if descriptor is not None:
        if not callable(getattr(descriptor, "per_atom", None)):
            raise PotstillError(
                "descriptor must have a per_atom(frames) method returning (n_atoms, d) arrays"
            )
        return descriptor
    return AEVDescriptor(aev=aev)


def make_descriptor(name: str, **options: Any):
    """Build descriptor ``name`` with ``options``."""
    if name not in _REGISTRY:
        raise PotstillError(f"unknown descriptor {name!r}; available descriptors are {available()}")
    module_name, cls_name = _REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    try:
        return cls(**options)
    except TypeError as error:
        raise PotstillError(f"bad options for descriptor {name!r}: {error}") from error


__all__ = ["AEVDescriptor", "available", "make_descriptor", "resolve_descriptor"]
