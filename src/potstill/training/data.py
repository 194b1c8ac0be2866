"""Labeled batches: frames -> (model input, targets) tensors.

A :class:`LabeledBatch` pairs the model's :class:`~potstill.aev.neighbors.Batch`
(species, positions, cells, neighbor pairs) with the reference's labels as tensors:
``energy (B,)`` eV, ``forces (n_total, 3)`` eV/A, ``stress (B, 6)`` eV/A^3 (zeros where
a frame has none, flagged by ``has_stress``), ``volume (B,)`` A^3, ``n_atoms (B,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from potstill.aev.neighbors import Batch, NeighborCache
from potstill.errors import PotstillError
from potstill.frames import get_labels


@dataclass
class LabeledBatch:
    """Model input plus targets for B frames."""

    inputs: Batch
    targets: dict[str, torch.Tensor]


def labeled_batch(
    frames: Sequence[Atoms],
    reference: str,
    *,
    species: Sequence[str],
    cutoff: float,
    dtype: torch.dtype,
    device: str | torch.device = "cpu",
    require: Sequence[str] = ("energy", "forces"),
    cache: NeighborCache | None = None,
) -> LabeledBatch:
    """Build one :class:`LabeledBatch` from ``frames`` labeled by ``reference``;
    ``cache`` reuses neighbor lists of frames seen in earlier epochs."""
    if not frames:
        raise PotstillError("cannot build a batch from zero frames; the training set is empty")
    labels = [get_labels(atoms, reference, require=require) for atoms in frames]
    has_stress = [lab.stress is not None for lab in labels]
    stress = np.array([lab.stress if lab.stress is not None else np.zeros(6) for lab in labels])
    forces = np.concatenate(
        [
            lab.forces if lab.forces is not None else np.zeros((len(a), 3))
            for lab, a in zip(labels, frames)
        ]
    )
    volume = np.array([atoms.get_volume() if atoms.pbc.all() else 0.0 for atoms in frames])
    inputs = Batch.from_atoms(
        list(frames), species=list(species), cutoff=cutoff, dtype=dtype, device=device, cache=cache
    )
    as_tensor = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
    targets = {
        "energy": as_tensor([lab.energy for lab in labels]),
        "forces": as_tensor(forces),
        "stress": as_tensor(stress),
        "has_stress": torch.as_tensor(has_stress, device=device),
        "volume": as_tensor(volume),
        "n_atoms": torch.as_tensor([len(a) for a in frames], device=device),
        "frame_index": inputs.frame_index,
    }
    return LabeledBatch(inputs=inputs, targets=targets)


def iterate_batches(
    frames: Sequence[Atoms],
    reference: str,
    *,
    batch_size: int,
    rng: np.random.Generator | None,
    **batch_options,
) -> Iterator[LabeledBatch]:
    """Yield labeled batches of ``batch_size`` frames; shuffled when ``rng`` is given."""
    order = np.arange(len(frames)) if rng is None else rng.permutation(len(frames))
    for start in range(0, len(order), batch_size):
        chunk = [frames[i] for i in order[start : start + batch_size]]
        yield labeled_batch(chunk, reference, **batch_options)
