"""Selector benchmark plots (seed 002 Fig. 2 layout): test-pool errors against the
number of training frames, one line per selector, mean +- std over seeds as error bars,
log-log axes, and each seed's model as a marker: a circle when it ran stable MD, a square
when it broke down. Panels: force RMSE and force L4 (eV/A; :data:`FORCE_PANELS`), or
energy MAE and L4 (meV/atom), or the transfer pool's. Where the selectors looked:
histograms of the reference energy per atom of the pool, the test pool and each
selector's picks. Densities against temperature (seed 002 Fig. 3 layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from potstill.report.plots import _figure, _png_path, _save

FORCE_PANELS = (
    ("force_rmse_eV_per_A", "force RMSE (eV/A)"),
    ("force_l4_eV_per_A", "force L4 (eV/A)"),
)
ENERGY_PANELS = (
    ("energy_mae_meV_per_atom", "energy MAE (meV/atom)"),
    ("energy_l4_meV_per_atom", "energy L4 (meV/atom)"),
)
TRANSFER_PANELS = (
    ("transfer_force_rmse_eV_per_A", "transfer: force RMSE (eV/A)"),
    ("transfer_force_l4_eV_per_A", "transfer: force L4 (eV/A)"),
    ("transfer_energy_l4_meV_per_atom", "transfer: energy L4 (meV/atom)"),
)


def compare_plot(
    table: Sequence[Mapping],
    *,
    path: str | Path,
    title: str | None = None,
    panels: Sequence[tuple[str, str]] = FORCE_PANELS,
) -> Path:
    """Plot rows of :func:`potstill.workflows.compare_summary.summarize_results`
    (``selector``, ``n_train``, ``{metric: {"mean", "std"}}``, ``stable_fraction``,
    ``per_seed``) as a PNG at ``path``, one panel per ``(metric, label)`` of ``panels``."""
    path = _png_path(path)
    selectors = list(dict.fromkeys(row["selector"] for row in table))
    fig = _figure(figsize=(4.2 * len(panels), 3.9))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (metric, label) in zip(axes, panels):
        for index, selector in enumerate(selectors):
            rows = sorted(
                (r for r in table if r["selector"] == selector and r.get(metric)),
                key=lambda r: r["n_train"],
            )
            if not rows:
                continue
            x = [r["n_train"] for r in rows]
            y = [r[metric]["mean"] for r in rows]
            err = [r[metric]["std"] for r in rows]
            color = f"C{index % 10}"
            ax.errorbar(
                x, y, yerr=err, color=color, lw=1.2, capsize=3, label=_legend(selector, rows)
            )
            _seed_markers(ax, rows, metric, color)
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
    axes[0].plot([], [], "o", mfc="none", mec="black", label="a seed: stable MD")
    axes[0].plot([], [], "s", mfc="none", mec="black", label="a seed: MD broke down")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _seed_markers(ax, rows: Sequence[Mapping], metric: str, color: str) -> None:
    """Each seed's value of ``metric``: a circle if its model ran stable, a square if
    not, a dot if unchecked (seed 002 Fig. 2's circles and squares)."""
    for row in rows:
        for seed in row.get("per_seed") or ():
            if metric not in seed:
                continue
            marker = {True: "o", False: "s"}.get(seed.get("stable"), ".")
            ax.plot(row["n_train"], seed[metric], marker, ms=5, mfc="none", mec=color, alpha=0.8)


COLUMNS = (
    ("energy_mae_meV_per_atom", "energy MAE (meV/atom)", 1),
    ("energy_l4_meV_per_atom", "energy L4 (meV/atom)", 1),
    ("force_rmse_eV_per_A", "force RMSE (eV/A)", 3),
    ("force_l4_eV_per_A", "force L4 (eV/A)", 3),
    ("stress_mae_GPa", "stress MAE (GPa)", 3),
)
TRANSFER_COLUMNS = tuple((f"transfer_{metric}", label, digits) for metric, label, digits in COLUMNS)


def compare_markdown(
    table: Sequence[Mapping],
    columns: Sequence[tuple[str, str, int]] = COLUMNS,
    *,
    baseline: str = "random",
) -> str:
    """The summary rows as a markdown table: per (frames, selector) mean +- std over
    seeds of ``columns``, the stable models out of the seeds (with the mean MD steps
    run before a breakdown or the end), and the seed-mean force
    RMSE and L4 (of the first two force columns) as ratios to ``baseline``'s."""
    forces = [m for m, _, _ in columns if "force_" in m][:2]
    base = {r["n_train"]: r for r in table if r["selector"] == baseline}
    head = [
        "frames",
        "selector",
        *(label for _, label, _ in columns),
        "stable",
        *(f"{'RMSE' if 'rmse' in m else 'L4'} / {baseline}" for m in forces),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(table, key=lambda r: (r["n_train"], r["selector"])):
        cells = [str(row["n_train"]), row["selector"]]
        for metric, _, digits in columns:
            value = row.get(metric)
            cells.append(
                "-" if not value else f"{value['mean']:.{digits}f} ± {value['std']:.{digits}f}"
            )
        fraction, survived = row.get("stable_fraction"), row.get("md_steps_survived")
        cells.append(
            "-"
            if fraction is None
            else f"{round(fraction * len(row['seeds']))}/{len(row['seeds'])}"
            + ("" if survived is None else f" ({survived:.0f} steps)")
        )
        other = base.get(row["n_train"])
        for metric in forces:
            if other and row.get(metric) and other.get(metric):
                cells.append(f"{row[metric]['mean'] / other[metric]['mean']:.2f}")
            else:
                cells.append("-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def density_plot(table: Sequence[Mapping], *, path: str | Path, title: str | None = None) -> Path:
    """Density (g/cm^3) against temperature (K), seed 002 Fig. 3 layout: the reference's
    NPT density (stars), each model's (crosses; stable runs only) and their mean."""
    path = _png_path(path)
    fig = _figure(figsize=(5.0, 3.8))
    ax = fig.subplots()
    temperatures = [row["temperature_K"] for row in table]
    reference = [row["reference_g_cm3"] for row in table]
    ax.plot(temperatures, reference, "*-", color="tab:blue", ms=10, label="reference potential")
    first = True
    for row in table:
        values = [
            d for d, ok in zip(row["models_g_cm3"], row["models_stable"]) if ok and d is not None
        ]
        if not values:
            ax.annotate(
                f"{len(row['models_stable'])} models: none stable",
                (row["temperature_K"], row["reference_g_cm3"]),
                textcoords="offset points",
                xytext=(0, -18),
                ha="center",
                fontsize=7,
                color="tab:orange",
            )
            continue
        ax.plot(
            [row["temperature_K"]] * len(values),
            values,
            "x",
            color="tab:orange",
            ms=8,
            label="models (one per seed)" if first else None,
        )
        first = False
    means = [(row["temperature_K"], row["model_mean_g_cm3"]) for row in table]
    means = [(t, m) for t, m in means if m is not None]
    if means:
        ax.plot(*zip(*means), "--", color="tab:orange", lw=1, label="model mean")
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("density (g/cm$^3$)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def density_markdown(table: Sequence[Mapping]) -> str:
    """Densities per temperature: reference, model mean +- std, relative error, stable
    models."""
    lines = [
        "| T (K) | reference (g/cm3) | models (g/cm3) | model / reference - 1 | stable models |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        reference = row["reference_g_cm3"]
        mean = row["model_mean_g_cm3"]
        lines.append(
            f"| {row['temperature_K']:g} | "
            + ("-" if reference is None else f"{reference:.4f}")
            + " | "
            + ("-" if mean is None else f"{mean:.4f} ± {row['model_std_g_cm3']:.4f}")
            + " | "
            + (f"{100 * row['relative_error']:+.2f} %" if "relative_error" in row else "-")
            + f" | {sum(bool(s) for s in row['models_stable'])}/{len(row['models_stable'])} |"
        )
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
