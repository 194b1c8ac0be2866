"""Learning curves of committee training: validation RMSE vs epoch, one line per member."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ase.units import GPa

from potstill.report.plots import new_figure, save_figure

_PANELS = (
    ("energy_rmse", "energy RMSE (meV/atom)", 1000.0),
    ("forces_rmse", "force RMSE (eV/A)", 1.0),
    ("stress_rmse", "stress RMSE (GPa)", 1.0 / GPa),  # eV/A^3 -> GPa
)


def learning_curves(histories: Sequence[Sequence[dict]], *, path: str | Path) -> Path:
    """Plot validation RMSEs per epoch of each member (histories of the trainer) as PNG."""
    fig = new_figure(figsize=(4.0 * len(_PANELS), 3.6))
    axes = fig.subplots(1, len(_PANELS))
    for ax, (key, label, scale) in zip(axes, _PANELS):
        for k, history in enumerate(histories):
            epochs = [h["epoch"] for h in history]
            ax.plot(epochs, [h[key] * scale for h in history], label=f"member {k + 1}", lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"validation {label}")
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)
