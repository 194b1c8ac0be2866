"""MOMT figures: energy traces (seed 000 Fig. S1 layout), reweighted P(H, O) and the
solid/liquid free-energy difference vs temperature. PNG via matplotlib's Agg.

Traces are (n_rows, 6) arrays with the columns of
:data:`potstill.sampling.momt.TRACE_COLUMNS` (step, E eV, H eV, O, V A^3, dH eV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from potstill.report.plots import DPI


def _figure(*size):
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def traces_plot(traces: Mapping[str, np.ndarray], path: str | Path, *, n_atoms: int,
                timestep_fs: float = 1.0, title: str = "") -> Path:
    """Energy per atom (top) and O / N (bottom) vs time for each named trace."""
    fig = _figure(8, 6)
    ax_e, ax_o = fig.subplots(2, 1, sharex=True)
    for name, trace in traces.items():
        if len(trace) == 0:
            continue
        t_ps = (trace[:, 0] - trace[0, 0]) * timestep_fs / 1000.0
        ax_e.plot(t_ps, trace[:, 1] / n_atoms, lw=0.6, label=name)
        ax_o.plot(t_ps, trace[:, 3] / n_atoms, lw=0.6, label=name)
    ax_e.set_ylabel("E (eV/atom)")
    ax_o.set_ylabel("O / N")
    ax_o.set_xlabel("time (ps)")
    ax_o.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax_o.axhline(0.1, color="grey", ls=":", lw=0.8)
    ax_e.legend(fontsize=8, loc="best")
    if title:
        ax_e.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)


def reweighting_plot(histograms: Mapping[float, tuple[np.ndarray, np.ndarray, np.ndarray]],
                     balance, path: str | Path, *, n_atoms: int) -> Path:
    """Reweighted ln P(H, O) at a few temperatures and dG(T) with the melting point.

    ``histograms``: T (K) -> (P (n_h, n_o), h_edges eV, o_edges); ``balance``: a
    :class:`potstill.sampling.reweight.PhaseBalance`.
    """
    n = len(histograms)
    fig = _figure(4 * (n + 1), 3.6)
    axes = fig.subplots(1, n + 1)
    for ax, (T, (hist, h_edges, o_edges)) in zip(axes, histograms.items()):
        with np.errstate(divide="ignore"):
            image = np.log(hist.T)
        ax.pcolormesh(h_edges / n_atoms, o_edges / n_atoms, np.ma.masked_invalid(image), shading="flat")
        ax.set_xlabel("H (eV/atom)")
        ax.set_ylabel("O / N")
        ax.set_title(f"ln P(H, O), T = {T:.0f} K")
    ax = axes[-1]
    ax.plot(balance.temperatures_K, balance.dG_eV / n_atoms * 1000.0, "o-", ms=3)
    ax.axhline(0.0, color="grey", lw=0.8)
    if balance.melting_K is not None:
        ax.axvline(balance.melting_K, color="C3", ls="--", lw=1, label=f"T_m = {balance.melting_K:.0f} K")
        ax.legend(fontsize=8)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("G_liquid - G_solid (meV/atom)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return Path(path)
