"""Checkpoints of models and committees: plain data that loads with ``weights_only``.

A checkpoint holds the JSON-able config (:meth:`ANIModel.config`,
:meth:`Committee.config`), the dtype, the state dicts and JSON-able metadata, so
``torch.load(..., weights_only=True)`` reads it safely. Writes go to a temporary file
that is renamed into place: a crash while saving never leaves a truncated checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch

from potstill.errors import PotstillError
from potstill.models.ani import ANIModel
from potstill.models.committee import Committee

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "load_checkpoint",
    "parameter_checksum",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "potstill-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(model, path: str | os.PathLike, **metadata: Any) -> None:
    """Write an :class:`ANIModel` or a ``Committee`` to ``path`` (``torch.save``).

    ``metadata`` must be JSON-able (numbers, strings, lists, dicts; numpy scalars and
    arrays become numbers and lists): it is stored as plain data and returned by
    :func:`load_checkpoint` as ``model.checkpoint_metadata``.
    """
    try:
        metadata = json.loads(json.dumps(metadata, default=_numpy_to_builtin))
    except TypeError as error:
        raise PotstillError(f"checkpoint metadata must be JSON-able: {error}") from None
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "dtype": str(model.dtype).removeprefix("torch."),
        "metadata": metadata,
    }
    if isinstance(model, Committee):
        payload["kind"] = "committee"
        payload["config"] = model.config()
        payload["state_dicts"] = [member.state_dict() for member in model.members]
    elif isinstance(model, ANIModel):
        payload["kind"] = "ani"
        payload["config"] = model.config()
        payload["state_dict"] = model.state_dict()
    else:
        raise PotstillError(
            f"can only checkpoint an ANIModel or a Committee, got {type(model).__name__}"
        )
    # write then rename: a crash while saving never leaves a truncated checkpoint behind
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, os.fspath(path))


def _numpy_to_builtin(value: Any) -> Any:
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def load_checkpoint(path: str | os.PathLike, *, device: torch.device | str = "cpu"):
    """Read a checkpoint written by :func:`save_checkpoint` (safe: ``weights_only``).

    Returns an :class:`ANIModel` or a ``Committee`` in the dtype it was saved in, on
    ``device``, with ``checkpoint_metadata`` set to the saved metadata.
    """
    if not os.path.exists(path):
        raise PotstillError(f"no checkpoint at {path}")
    try:
        payload = torch.load(os.fspath(path), map_location=device, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged file
        reason = " ".join(str(error).split())[:200]
        raise PotstillError(
            f"cannot read the checkpoint {path} (truncated or not a potstill checkpoint: {reason}); "
            "train it again (`potstill train --resume` retrains what is missing) or point to another file"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise PotstillError(f"{path} is not a potstill checkpoint")
    dtype = getattr(torch, str(payload.get("dtype")), None)
    if not isinstance(dtype, torch.dtype):
        raise PotstillError(
            f"{path}: the checkpoint names no torch dtype ({payload.get('dtype')!r})"
        )
    try:
        model = _rebuild(payload, dtype, device)
    except PotstillError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # another layout, or tampered
        reason = " ".join(str(error).split())[:200]
        raise PotstillError(
            f"{path} does not match the model it describes ({type(error).__name__}: {reason}); "
            "it was written by another potstill version or altered: train it again"
        ) from None
    model.checkpoint_metadata = payload.get("metadata", {})
    return model


def _rebuild(payload: dict, dtype: torch.dtype, device) -> ANIModel | Committee:
    """The model of a checkpoint's config, with its saved weights loaded."""
    if payload["kind"] == "committee":
        model = Committee.from_config(payload["config"])
        for member, state in zip(model.members, payload["state_dicts"], strict=True):
            member.to(dtype=dtype, device=device).load_state_dict(state)
        return model
    if payload["kind"] == "ani":
        model = ANIModel.from_config(payload["config"])
        model.to(dtype=dtype, device=device).load_state_dict(payload["state_dict"])
        return model
    raise PotstillError(f"unknown checkpoint kind {payload['kind']!r}")


def parameter_checksum(model: torch.nn.Module) -> str:
    """Hash of a model's (or committee's) parameters and buffers: equal checksums, equal
    numbers (e.g. where a warm start began, or whether a committee changed)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()
