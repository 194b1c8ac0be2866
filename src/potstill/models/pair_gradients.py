"""Forces, virial and stress from the energy's gradient with respect to pair vectors.

An ANI model sees the geometry only through the pair vectors
``d_p = r_i - r_j + shift @ cell`` of a :class:`~potstill.aev.neighbors.Batch`, so
``g_p = dE/dd_p (P, 3)`` gives everything:

- forces ``F = -dE/dr (n_total, 3)`` eV/A collect ``+g_p`` on ``j`` and ``-g_p`` on ``i``;
- the strain derivative is ``sym(sum_p d_p (x) g_p)`` per frame (positions and cell
  strained together, ``d' = d (1 + eps)``), the same numbers as autograd through
  ``r' = r (1 + sym(eps))``, ``cell' = cell (1 + sym(eps))``;
- the stress is that derivative over the volume, Voigt ``xx yy zz yz xz xy`` in eV/A^3
  with ASE's sign convention (zeros for zero-volume cells).
"""

from __future__ import annotations

import torch
from torch import Tensor

from potstill.aev.neighbors import Batch

__all__ = ["derivatives", "forces", "virial", "voigt_stress"]


def forces(batch: Batch, energy_by_diffs: Tensor) -> Tensor:
    """``-dE/dr (n_total, 3)``: pair ``p`` is ``r_i - r_j + shift``, so ``g_p`` pushes on
    ``i`` and ``j`` with opposite signs."""
    result = batch.positions.new_zeros(batch.positions.shape)
    if energy_by_diffs.shape[0]:
        result = result.index_add(0, batch.pairs[1], energy_by_diffs)
        # (index_add with alpha=-1 takes a much slower path on CPU)
        result = result.index_add(0, batch.pairs[0], -energy_by_diffs)
    return result


def virial(batch: Batch, diff_vectors: Tensor, energy_by_diffs: Tensor) -> Tensor:
    """``dE/d(strain) (B, 3, 3)`` for the symmetric strain ``d' = d (1 + strain)`` of every
    pair vector (positions and cell strained together): ``sym(sum_p d_p (x) g_p)``."""
    if diff_vectors.shape[0] == 0:
        return diff_vectors.new_zeros((batch.n_frames, 3, 3))
    if batch.n_frames == 1:
        total = (diff_vectors.T @ energy_by_diffs).unsqueeze(0)
    else:  # one (3, P_f) @ (P_f, 3) per frame
        counts = batch.pair_counts()
        total = torch.stack(
            [d.T @ g for d, g in zip(diff_vectors.split(counts), energy_by_diffs.split(counts))]
        )
    return 0.5 * (total + total.transpose(1, 2))


def voigt_stress(strain_gradient: Tensor, cells: Tensor) -> Tensor:
    """``(B, 6)`` Voigt stress ``dE/deps / V`` from ``(B, 3, 3)`` dE/deps; 0 if V = 0."""
    volume = torch.linalg.det(cells).abs()
    periodic = volume > 0
    safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
    sigma = strain_gradient / safe_volume[:, None, None]
    sigma = torch.where(periodic[:, None, None], sigma, torch.zeros_like(sigma))
    rows = torch.tensor([0, 1, 2, 1, 0, 0], device=cells.device)
    cols = torch.tensor([0, 1, 2, 2, 2, 1], device=cells.device)
    return sigma[:, rows, cols]


_pair_forces = forces  # derivatives() takes a flag of that name


def derivatives(
    batch: Batch,
    diff_vectors: Tensor,
    energy_by_diffs: Tensor,
    *,
    forces: bool = True,
    stress: bool = True,
) -> dict[str, Tensor]:
    """``forces (n_total, 3)`` eV/A and ``stress (B, 6)`` eV/A^3, those asked for, from
    the pair vectors ``(P, 3)`` and ``g_p (P, 3)``."""
    out = {}
    if forces:
        out["forces"] = _pair_forces(batch, energy_by_diffs)
    if stress:
        out["stress"] = voigt_stress(virial(batch, diff_vectors, energy_by_diffs), batch.cells)
    return out
