"""Parity plots of model predictions against reference labels (PNG, matplotlib Agg).

Contract
--------
- :func:`parity_plot` draws one predicted-vs-reference panel: a scatter (a hexbin above
  ``HEXBIN_ABOVE`` points), the ``y = x`` line and MAE / RMSE in the legend; it writes a
  PNG to ``path`` and returns the path.
- :func:`parity_panel` draws the 1x3 energy / force / stress panel of seed 001 Fig. 2
  from :func:`potstill.validation.metrics.pool_pairs` (axes in eV/atom, eV/A and GPa;
  MAE/RMSE in meV/atom, eV/A and MPa as in the seed); the stress panel is left out
  when the pool has no stress.

Figures are plain ``matplotlib.figure.Figure`` objects rendered by Agg (no pyplot, so
no display, no global backend switch); matplotlib is imported lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from potstill.errors import PotstillError

DPI = 120
HEXBIN_ABOVE = 5000
# (pair key in pool_pairs, axis label, axis unit, legend unit, legend scale)
PANELS = (
    ("energy_eV_per_atom", "energy per atom", "eV/atom", "meV/atom", 1000.0),
    ("forces_eV_per_A", "force component", "eV/A", "eV/A", 1.0),
    ("stress_GPa", "stress component", "GPa", "MPa", 1000.0),
)


def parity_plot(
    ref,
    pred,
    *,
    quantity: str,
    unit: str,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Predicted vs reference values of one quantity, saved as a PNG at ``path``.

    ``ref``, ``pred``: array-likes of equal size (flattened), in ``unit``.
    Returns the written path.
    """
    path = _png_path(path)
    fig = _figure(figsize=(4.2, 4.0))
    ax = fig.subplots()
    _draw_parity(ax, ref, pred, quantity=quantity, unit=unit, title=title)
    return _save(fig, path)


def parity_panel(
    pairs: Mapping[str, tuple],
    *,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """1x3 parity panel (energy, force, stress) of a pool, saved as a PNG at ``path``.

    ``pairs``: ``{key: (reference, predicted)}`` as returned by
    :func:`potstill.validation.metrics.pool_pairs`. Returns the written path.
    """
    panels = [p for p in PANELS if p[0] in pairs]
    if not panels:
        raise PotstillError(
            f"nothing to plot: pairs need some of {[p[0] for p in PANELS]}, got {sorted(pairs)}"
        )
    path = _png_path(path)
    fig = _figure(figsize=(4.0 * len(panels), 4.0))
    axes = fig.subplots(1, len(panels))
    for ax, panel in zip(np.atleast_1d(axes), panels):
        key, quantity, unit, error_unit, error_scale = panel
        ref, pred = pairs[key]
        _draw_parity(
            ax,
            ref,
            pred,
            quantity=quantity,
            unit=unit,
            error_unit=error_unit,
            error_scale=error_scale,
        )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _draw_parity(
    ax,
    ref,
    pred,
    *,
    quantity: str,
    unit: str,
    title: str | None = None,
    error_unit: str | None = None,
    error_scale: float = 1.0,
) -> None:
    """Draw one parity panel; MAE/RMSE are shown in ``error_unit`` (values x
    ``error_scale``), by default in ``unit``."""
    ref = np.asarray(ref, dtype=float).ravel()
    pred = np.asarray(pred, dtype=float).ravel()
    if ref.shape != pred.shape or ref.size == 0:
        raise PotstillError(
            f"parity plot of {quantity} needs equal, non-empty arrays; got {ref.size} "
            f"reference and {pred.size} predicted values"
        )
    err = (pred - ref) * error_scale
    error_unit = error_unit or unit
    label = (
        f"MAE {np.mean(np.abs(err)):.3g} {error_unit}\n"
        f"RMSE {np.sqrt(np.mean(err**2)):.3g} {error_unit}"
    )
    if ref.size > HEXBIN_ABOVE:
        ax.hexbin(ref, pred, gridsize=60, bins="log", mincnt=1, cmap="viridis")
        ax.plot([], [], " ", label=label)
    else:
        ax.scatter(ref, pred, s=6, alpha=0.6, label=label)
    low, high = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"reference {quantity} ({unit})")
    ax.set_ylabel(f"predicted {quantity} ({unit})")
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    if title:
        ax.set_title(title)


def _png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PotstillError(f"plots are written as PNG; give a path ending in .png, not {path}")
    return path


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _figure(*, figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def new_figure(*, figsize: tuple[float, float]):
    """A blank Agg-rendered ``Figure`` (no pyplot): the one way report figures start."""
    return _figure(figsize=figsize)


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig`` and write it as the PNG ``path``; returns the path."""
    return _save(fig, _png_path(path))
