"""Selector benchmark plot (seed 002 Fig. 2 layout): test-pool errors against the number
of training frames, one line per selector, mean +- std over seeds as error bars, log-log
axes. Panels: energy L4 (meV/atom), force RMSE (eV/A), energy MAE (meV/atom)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from potstill.report.plots import _figure, _png_path, _save

PANELS = (
    ("energy_l4_meV_per_atom", "energy L4 (meV/atom)"),
    ("force_rmse_eV_per_A", "force RMSE (eV/A)"),
    ("energy_mae_meV_per_atom", "energy MAE (meV/atom)"),
)


def compare_plot(table: Sequence[Mapping], *, path: str | Path, title: str | None = None) -> Path:
    """Plot rows of :func:`potstill.workflows.compare.summarize_results` (``selector``,
    ``n_train``, ``{metric: {"mean", "std"}}``, ``stable_fraction``) as a PNG at ``path``."""
    path = _png_path(path)
    selectors = list(dict.fromkeys(row["selector"] for row in table))
    fig = _figure(figsize=(4.0 * len(PANELS), 3.8))
    axes = fig.subplots(1, len(PANELS))
    for ax, (metric, label) in zip(axes, PANELS):
        for selector in selectors:
            rows = sorted((r for r in table if r["selector"] == selector and r.get(metric)), key=lambda r: r["n_train"])
            if not rows:
                continue
            x = [r["n_train"] for r in rows]
            y = [r[metric]["mean"] for r in rows]
            err = [r[metric]["std"] for r in rows]
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=_legend(selector, rows))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.set_xticks(sorted({r["n_train"] for r in table}))
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (0.8, not 8x10^-1)
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training frames")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


_COLUMNS = (
    ("energy_mae_meV_per_atom", "energy MAE (meV/atom)", 1),
    ("energy_l4_meV_per_atom", "energy L4 (meV/atom)", 1),
    ("force_rmse_eV_per_A", "force RMSE (eV/A)", 3),
    ("stress_mae_GPa", "stress MAE (GPa)", 3),
)


def compare_markdown(table: Sequence[Mapping]) -> str:
    """The summary rows as a markdown table: per (frames, selector) mean +- std over
    seeds of the headline errors, and the stable models out of the seeds."""
    head = ["frames", "selector", *(label for _, label, _ in _COLUMNS), "stable"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(table, key=lambda r: (r["n_train"], r["selector"])):
        cells = [str(row["n_train"]), row["selector"]]
        for metric, _, digits in _COLUMNS:
            value = row.get(metric)
            cells.append("-" if not value else f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}")
        fraction = row.get("stable_fraction")
        cells.append("-" if fraction is None else f"{round(fraction * len(row['seeds']))}/{len(row['seeds'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _legend(selector: str, rows: Sequence[Mapping]) -> str:
    fractions = [r["stable_fraction"] for r in rows if r.get("stable_fraction") is not None]
    if not fractions:
        return selector
    return f"{selector} (stable {100 * sum(fractions) / len(fractions):.0f}%)"
