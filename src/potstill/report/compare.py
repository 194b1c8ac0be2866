"""Selector benchmark plot (seed 002 Fig. 2 layout): test-pool errors against the number
of training frames, one line per selector, mean +- std over seeds as error bars, log-log
axes. Panels: energy L4 (meV/atom), force RMSE (eV/A), energy MAE (meV/atom). And where
the selectors looked: histograms of the reference energy per atom of the pool, the test
pool and each selector's picks."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
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
            rows = sorted(
                (r for r in table if r["selector"] == selector and r.get(metric)),
                key=lambda r: r["n_train"],
            )
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
            cells.append(
                "-" if not value else f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"
            )
        fraction = row.get("stable_fraction")
        cells.append(
            "-"
            if fraction is None
            else f"{round(fraction * len(row['seeds']))}/{len(row['seeds'])}"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _legend(selector: str, rows: Sequence[Mapping]) -> str:
    fractions = [r["stable_fraction"] for r in rows if r.get("stable_fraction") is not None]
    if not fractions:
        return selector
    return f"{selector} (stable {100 * sum(fractions) / len(fractions):.0f}%)"


def coverage_plot(
    pool: Mapping[int, float],
    test: Mapping[int, float],
    picks: Mapping[str, Sequence[float]],
    *,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Density histograms of the reference energy per atom (eV) of the ``pool`` and
    ``test`` frames (``{id: energy}``) and of each selector's ``picks``
    (``{label: energies}``), on common bins, as a PNG at ``path``."""
    path = _png_path(path)
    everything = [*pool.values(), *test.values(), *(e for values in picks.values() for e in values)]
    bins = np.linspace(min(everything), max(everything), 41)
    fig = _figure(figsize=(6.0, 3.8))
    ax = fig.subplots()
    ax.hist(
        list(pool.values()), bins=bins, density=True, color="tab:gray", alpha=0.35, label="pool"
    )
    ax.hist(
        list(test.values()),
        bins=bins,
        density=True,
        histtype="step",
        color="black",
        lw=1.5,
        ls="--",
        label="test pool",
    )
    for label, values in picks.items():
        ax.hist(list(values), bins=bins, density=True, histtype="step", lw=1.3, label=label)
    ax.set_xlabel("reference energy (eV/atom)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def coverage_markdown(coverage: Mapping) -> str:
    """:func:`potstill.workflows.compare.selection_coverage` as a markdown table: the
    pool's and test pool's percentiles, then each (frames, selector)'s picks."""
    keys = ("p5", "p25", "p50", "p75", "p95")
    lines = [
        "| frames | selector | " + " | ".join(keys) + " | picks below pool p25 |",
        "|" + "---|" * 8,
    ]
    for name in ("pool", "test"):
        lines.append(
            f"| | {name} | "
            + " | ".join(f"{coverage[name][k]:.3f}" for k in keys)
            + (" | 25 % |" if name == "pool" else " | - |")
        )
    for row in coverage["selected"]:
        lines.append(
            f"| {row['n_train']} | {row['selector']} | "
            + " | ".join(f"{row[k]:.3f}" for k in keys)
            + f" | {100 * row['below_pool_p25']:.0f} % |"
        )
    return "\n".join(lines) + "\n"
