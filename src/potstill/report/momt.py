"""MOMT figures: energy traces (seed 000 Fig. S1 layout), reweighted P(H, O) and the
solid/liquid free-energy difference vs temperature. PNG via matplotlib's Agg.

Traces are (n_rows, 6) arrays with the columns of
:data:`potstill.sampling.momt.TRACE_COLUMNS` (step, E eV, H eV, O, V A^3, dH eV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from potstill.report.plots import new_figure, save_figure


def traces_plot(
    plain: Mapping[str, np.ndarray],
    momt: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    n_atoms: int,
    timestep_fs: float = 1.0,
    title: str = "",
) -> Path:
    """Seed 000 Fig. S1 layout: E per atom (top) and O / N (bottom) vs time, plain NPT
    runs on the left (a), MOMT on the right (b), one line per named trace."""
    fig = new_figure(figsize=(11, 6))
    axes = fig.subplots(2, 2, sharey="row", gridspec_kw={"width_ratios": [1, 2]})
    for column, traces in enumerate((plain, momt)):
        for name, trace in traces.items():
            if len(trace) == 0:
                continue
            t_ps = (trace[:, 0] - trace[0, 0]) * timestep_fs / 1000.0
            if column == 1 and name != next(iter(traces)):  # MOMT phases follow each other
                first = next(iter(traces.values()))
                t_ps = t_ps + (trace[0, 0] - first[0, 0]) * timestep_fs / 1000.0
            axes[0, column].plot(t_ps, trace[:, 1] / n_atoms, lw=0.5, label=name)
            axes[1, column].plot(t_ps, trace[:, 3] / n_atoms, lw=0.5, label=name)
        axes[1, column].set_xlabel("time (ps)")
        axes[1, column].axhline(0.5, color="grey", ls=":", lw=0.8)
        axes[1, column].axhline(0.1, color="grey", ls=":", lw=0.8)
        axes[0, column].legend(fontsize=8, loc="upper right")
    axes[0, 0].set_ylabel("E (eV/atom)")
    axes[1, 0].set_ylabel("O / N")
    axes[0, 0].set_title("(a) plain NPT at T0")
    axes[0, 1].set_title("(b) MOMT" + (f": {title}" if title else ""))
    return save_figure(fig, path)


def reweighting_plot(
    histograms: Mapping[float, tuple[np.ndarray, np.ndarray, np.ndarray]],
    balance,
    path: str | Path,
    *,
    n_atoms: int,
) -> Path:
    """Reweighted ln P(H, O) at a few temperatures and dG(T) with the melting point.

    ``histograms``: T (K) -> (P (n_h, n_o), h_edges eV, o_edges); ``balance``: a
    :class:`potstill.sampling.reweight.PhaseBalance`.
    """
    n = len(histograms)
    fig = new_figure(figsize=(4 * (n + 1), 3.6))
    axes = fig.subplots(1, n + 1)
    for ax, (T, (hist, h_edges, o_edges)) in zip(axes, histograms.items()):
        with np.errstate(divide="ignore"):
            image = np.log(hist.T)
        ax.pcolormesh(
            h_edges / n_atoms, o_edges / n_atoms, np.ma.masked_invalid(image), shading="flat"
        )
        ax.set_xlabel("H (eV/atom)")
        ax.set_ylabel("O / N")
        ax.set_title(f"ln P(H, O), T = {T:.0f} K")
    ax = axes[-1]
    ax.plot(balance.temperatures_K, balance.dG_eV / n_atoms * 1000.0, "o-", ms=3)
    ax.axhline(0.0, color="grey", lw=0.8)
    if balance.melting_K is not None:
        ax.axvline(
            balance.melting_K, color="C3", ls="--", lw=1, label=f"T_m = {balance.melting_K:.0f} K"
        )
        ax.legend(fontsize=8)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("G_liquid - G_solid (meV/atom)")
    return save_figure(fig, path)
