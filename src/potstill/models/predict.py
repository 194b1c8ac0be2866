"""Batched predictions of a model or committee on many frames.

Faster than driving the ASE calculator frame by frame: frames are evaluated ``batch_size``
at a time, always without a graph (``torch.no_grad()``): forces and stress come from the
model's hand-written inference path, as in the ASE calculator. Returns, per frame, a dict with ``energy`` (eV), ``forces`` (n_atoms, 3) eV/A,
``stress`` (6,) eV/A^3 Voigt (periodic frames only) and ``energies`` (n_atoms,) eV; a
committee adds ``energy_std`` (eV) and ``energies_std`` (n_atoms,) eV.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from potstill.aev.neighbors import Batch


def predict(
    model: torch.nn.Module,
    frames: Sequence[Atoms],
    *,
    batch_size: int = 32,
    dtype: torch.dtype | None = torch.float64,
    device: str = "cpu",
    forces: bool = True,
    progress=None,
) -> list[dict[str, np.ndarray | float]]:
    """Per-frame predictions of ``model`` (an ``ANIModel`` or ``Committee``): ``energy``
    (eV), ``energies`` ``(n_atoms,)`` eV, and with ``forces`` also ``forces``
    ``(n_atoms, 3)`` eV/A and, for periodic frames, ``stress`` (Voigt, eV/A^3); a
    committee adds the member stds (``energy_std``, ``energies_std``, ``forces_std``).
    ``dtype=None`` keeps the model's own precision."""
    if dtype is None:
        dtype = next(model.parameters()).dtype
    model = model.to(device=device, dtype=dtype).eval()
    results: list[dict] = []
    task = progress.add_task("predicting", total=len(frames)) if progress else None
    for start in range(0, len(frames), batch_size):
        chunk = list(frames[start : start + batch_size])
        batch = Batch.from_atoms(
            chunk, species=model.species, cutoff=model.cutoff, dtype=dtype, device=device
        )
        with torch.no_grad():
            out = model(batch, forces=forces, stress=forces and all(a.pbc.all() for a in chunk))
        results.extend(_split(out, batch, chunk))
        if progress is not None:
            progress.update(task, advance=len(chunk))
    return results


def _split(out: dict[str, torch.Tensor], batch: Batch, frames: Sequence[Atoms]) -> list[dict]:
    index = batch.frame_index.cpu().numpy()
    per_frame = []
    for b, atoms in enumerate(frames):
        mask = index == b
        entry = {"energy": float(out["energy"][b].detach())}
        if "energy_std" in out:
            entry["energy_std"] = float(out["energy_std"][b].detach())
        for key, name in (
            ("forces", "forces"),
            ("atomic_energies", "energies"),
            ("atomic_energies_std", "energies_std"),
            ("forces_std", "forces_std"),
        ):
            if key in out:
                entry[name] = out[key].detach().cpu().numpy()[mask]
        if "stress" in out and atoms.pbc.all():
            entry["stress"] = out["stress"][b].detach().cpu().numpy()
        per_frame.append(entry)
    return per_frame
