"""The energy + force + stress loss of seed 001, eq. 3.

    L = alpha/N_data sum (E_nnp - E_ref)^2 / sqrt(N_atom)
      + beta /N_data sum |F_nnp - F_ref|^2 / N_atom
      + gamma/N_data sum |V sigma_nnp - V sigma_ref|^2

with energies in eV, forces in eV/A, stress in eV/A^3 (6 Voigt components, so
V sigma is in eV). Frames without a stress label (non-periodic) contribute no stress term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossWeights:
    """alpha, beta, gamma of eq. 3 (seed 001 uses 1.0, 0.1, 0.025; fine-tune 0.2, 0.4, 0.4)."""

    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 0.025


def energy_force_stress_loss(
    predicted: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Loss terms of one batch of B frames with n_total atoms.

    predicted/target: ``energy (B,)``, ``forces (n_total, 3)``, ``stress (B, 6)``;
    target also holds ``n_atoms (B,)``, ``frame_index (n_total,)``, ``volume (B,)`` A^3
    and ``has_stress (B,)`` bool. Returns ``loss`` and the three unweighted terms.
    """
    n_atoms = target["n_atoms"].to(predicted["energy"].dtype)
    n_frames = n_atoms.shape[0]
    energy = ((predicted["energy"] - target["energy"]) ** 2 / n_atoms.sqrt()).mean()
    zero = energy.new_zeros(())
    force = zero
    if weights.beta and "forces" in predicted:
        per_atom = ((predicted["forces"] - target["forces"]) ** 2).sum(-1)
        per_frame = torch.zeros_like(n_atoms).index_add_(0, target["frame_index"], per_atom)
        force = (per_frame / n_atoms).mean()
    stress = zero
    if weights.gamma and "stress" in predicted and bool(target["has_stress"].any()):
        volume = target["volume"].unsqueeze(-1)
        diff = (volume * (predicted["stress"] - target["stress"])) ** 2
        stress = (diff.sum(-1) * target["has_stress"]).sum() / n_frames
    loss = weights.alpha * energy + weights.beta * force + weights.gamma * stress
    return {"loss": loss, "energy": energy, "forces": force, "stress": stress}
