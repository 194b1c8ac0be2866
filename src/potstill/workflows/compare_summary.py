"""The selector comparison's results: per (selector, frames) means over seeds, the ratios
to random, where each selector looked (reference energies of its picks), and the report.

Functions of the rows of ``results.jsonl`` (:mod:`potstill.workflows.compare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from potstill.frames import get_labels
from potstill.report.compare import (
    ENERGY_PANELS,
    FORCE_PANELS,
    TRANSFER_COLUMNS,
    TRANSFER_PANELS,
    compare_markdown,
    compare_plot,
    coverage_markdown,
    coverage_plot,
    density_markdown,
    density_plot,
)
from potstill.rundir import Stage, read_jsonl
from potstill.store import Store
from potstill.workflows.compare_density import density_table

__all__ = [
    "METRICS",
    "finish",
    "read_results",
    "energies_per_atom",
    "largest_picks",
    "selection_coverage",
    "summarize_results",
    "versus_random",
]

METRICS = tuple(
    f"{prefix}{q}_{s}_{u}"
    for prefix in ("", "transfer_")
    for q, u in (("energy", "meV_per_atom"), ("force", "eV_per_A"), ("stress", "GPa"))
    for s in ("mae", "rmse", "l4")
)
# what the verdicts against random compare (seed 002 judges by force RMSE and force L4)
VERDICT_METRICS = ("force_rmse_eV_per_A", "force_l4_eV_per_A", "energy_l4_meV_per_atom")


def summarize_results(rows: list[dict]) -> list[dict]:
    """Per (selector, budget): ``n_train``, seeds, mean and std (population) over seeds of
    every metric (``transfer_`` ones with a transfer pool), the fraction of stable models,
    the mean MD steps run before a breakdown (``md_steps_survived``)
    and, per seed, whether its model ran stable and its verdict metrics (``per_seed``: a
    list of ``{"seed", "stable", metric: value}``)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["selector"], row["budget"]), []).append(row)
    table = []
    for (selector, budget), group in groups.items():
        entry = {
            "selector": selector,
            "budget": budget,
            "n_train": group[0]["n_train"],
            "seeds": sorted(r["seed"] for r in group),
        }
        for metric in METRICS:
            values = [r[metric] for r in group if r.get(metric) is not None]
            entry[metric] = (
                {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
            )
        checked = [r["stable"] for r in group if r.get("stable") is not None]
        entry["stable_fraction"] = float(np.mean(checked)) if checked else None
        entry["stable_count"] = int(sum(checked)) if checked else None
        survived = [r["stability"]["steps_run"] for r in group if r.get("stability")]
        entry["md_steps_survived"] = float(np.mean(survived)) if survived else None
        entry["per_seed"] = [
            {
                "seed": int(r["seed"]),
                "stable": r.get("stable"),
                **{m: r[m] for m in VERDICT_METRICS if r.get(m) is not None},
            }
            for r in sorted(group, key=lambda r: r["seed"])
        ]
        table.append(entry)
    return sorted(table, key=lambda e: (e["selector"], e["n_train"]))


def versus_random(table: list[dict], baseline: str = "random") -> list[dict]:
    """For every other selector and frame count that ``baseline`` also ran: whether its
    seed-mean force RMSE, force L4 and energy L4 on the test pool are below the
    baseline's, the ratios (selector / baseline), and both stable counts."""
    base = {row["n_train"]: row for row in table if row["selector"] == baseline}
    verdicts = []
    for row in table:
        other = base.get(row["n_train"])
        if row["selector"] == baseline or other is None:
            continue
        entry = {
            "selector": row["selector"],
            "n_train": row["n_train"],
            "budget": row["budget"],
            "stable_count": row.get("stable_count"),
            f"{baseline}_stable_count": other.get("stable_count"),
        }
        for metric in VERDICT_METRICS:
            if row.get(metric) and other.get(metric):
                ratio = row[metric]["mean"] / other[metric]["mean"]
                entry[f"{metric}_ratio"] = ratio
                entry[f"beats_{baseline}_{metric.split('_')[0]}_{metric.split('_')[1]}"] = ratio < 1
        verdicts.append(entry)
    return verdicts


_PERCENTILES = (5, 25, 50, 75, 95)


def selection_coverage(
    rows: list[dict], pool_energy: dict[int, float], test_energy: dict[int, float]
) -> dict:
    """Where the selectors looked: percentiles (``p5`` ... ``p95``, eV/atom) of the
    reference energy per atom of the pool, the test pool and, per (selector, frames), the
    frames picked over all seeds; ``below_pool_p25``: the share of picks below the
    pool's 25th percentile (0.25 for a uniform pick)."""

    def percentiles(values) -> dict:
        return {
            f"p{q}": float(v)
            for q, v in zip(_PERCENTILES, np.percentile(list(values), _PERCENTILES))
        }

    pool = percentiles(pool_energy.values())
    picks: dict[tuple, list[float]] = {}
    for row in rows:
        picks.setdefault((row["selector"], row["n_train"]), []).extend(
            pool_energy[i] for i in row["selected_ids"]
        )
    selected = [
        {
            "selector": selector,
            "n_train": n,
            **percentiles(values),
            "below_pool_p25": float(np.mean(np.asarray(values) < pool["p25"])),
        }
        for (selector, n), values in sorted(
            picks.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]
    return {"pool": pool, "test": percentiles(test_energy.values()), "selected": selected}


def energies_per_atom(url: str, ids, reference: str) -> dict[int, float]:
    """``{store id: reference energy per atom (eV)}`` of the frames ``ids`` of ``url``."""
    store, energies = Store(url, create=False), {}
    for start in range(0, len(ids), 1024):
        for atoms in store.get(list(ids[start : start + 1024])):
            energies[int(atoms.info["store_id"])] = get_labels(atoms, reference).energy / len(atoms)
    return energies


def largest_picks(rows: list[dict], pool_energy: dict[int, float]) -> dict[str, list[float]]:
    """Per selector, the energies per atom of its picks at its largest frame count."""
    largest: dict[str, int] = {}
    for row in rows:
        largest[row["selector"]] = max(largest.get(row["selector"], 0), row["n_train"])
    picks: dict[str, list[float]] = {}
    for row in rows:
        if row["n_train"] == largest[row["selector"]]:
            picks.setdefault(f"{row['selector']} ({row['n_train']})", []).extend(
                pool_energy[i] for i in row["selected_ids"]
            )
    return picks


def read_results(path: Path) -> list[dict]:
    """The lines of a ``results.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(path)


def finish(
    config,
    stage: Stage,
    tasks: Sequence,
    rows: list[dict],
    failures: list[dict],
    *,
    inputs: dict,
    started: float,
) -> dict:
    """The comparison's summary, tables and figures from the finished ``rows`` (and the
    ``failures``) of ``tasks`` and the densities, published as the stage's report;
    returns the summary."""
    compare, report = config.compare, stage.report
    wanted = {t.key for t in tasks}
    failed = sorted({f["key"] for f in failures} & (wanted - {r["key"] for r in rows}))
    table = summarize_results(rows)
    summary = {
        "name": config.name,
        "pool": compare.pool.model_dump(),
        "test_pool": compare.test_pool.model_dump(),
        "transfer_pool": None
        if compare.transfer_pool is None
        else compare.transfer_pool.model_dump(),
        "n_pool": len(tasks[0].pool_ids),
        "n_test": len(tasks[0].test_ids),
        "n_transfer": len(tasks[0].transfer_ids),
        "selectors": [s.model_dump() for s in compare.selectors],
        "budgets": compare.budgets,
        "seeds": compare.seeds,
        "md": compare.md.model_dump(),
        "n_finished": len(rows),
        "n_planned": len(tasks),
        "failed": failed,
        "table": table,
        "versus_random": versus_random(table),
    }
    report.mkdir(parents=True, exist_ok=True)
    tables, figures = _error_report(config, summary, report) if table else ([], [])
    if rows:
        pool_energy = energies_per_atom(tasks[0].pool_url, tasks[0].pool_ids, config.reference.name)
        test_energy = energies_per_atom(tasks[0].test_url, tasks[0].test_ids, config.reference.name)
        summary["coverage"] = selection_coverage(rows, pool_energy, test_energy)
        figures.append(
            coverage_plot(
                pool_energy,
                test_energy,
                largest_picks(rows, pool_energy),
                path=report / "compare_coverage.png",
                title=f"{config.name}: what the selectors picked (largest budget, all seeds)",
            )
        )
        tables.append(
            (
                "reference energy per atom (eV) of the picked frames: percentiles over all seeds",
                coverage_markdown(summary["coverage"]),
            )
        )
    densities = [] if compare.density is None else density_table(stage.root / "density.jsonl")
    if densities:
        summary["density"] = {**compare.density.model_dump(), "table": densities}
        label = f"{compare.density.selector}, {compare.density.n_train} frames"
        figures.append(
            density_plot(
                densities,
                path=report / "compare_density.png",
                title=f"{config.name}: NPT density at {compare.density.pressure_bar:g} bar "
                f"({label})",
            )
        )
        tables.append((f"NPT density: reference and {label} models", density_markdown(densities)))
    stage.publish(
        summary, title=f"{config.name}: selector benchmark", tables=tables, figures=figures
    )
    stage.write_record(
        inputs=inputs,
        results={k: v for k, v in summary.items() if k != "table"},
        started=started,
    )
    return summary


def _error_report(config, summary: dict, report: Path) -> tuple[list, list]:
    """The error figures (seed 002 Fig. 2 layout: forces; energies; the transfer pool's)
    and markdown tables of ``summary["table"]``: ``(tables, figures)``."""
    compare, table = config.compare, summary["table"]
    seeds = f"mean ± std over seeds {compare.seeds}"
    stable = f"{compare.md.ensemble.upper()} {compare.md.temperature_K:g} K"
    figures = []
    for name, panels, pool, n in (
        ("compare_forces.png", FORCE_PANELS, "in-distribution test", summary["n_test"]),
        ("compare_energy.png", ENERGY_PANELS, "in-distribution test", summary["n_test"]),
        ("compare_transfer.png", TRANSFER_PANELS, "transfer", summary["n_transfer"]),
    ):
        if n:
            figures.append(
                compare_plot(
                    table,
                    path=report / name,
                    panels=panels,
                    title=f"{config.name}: {n} {pool} frames; {seeds}; circles: stable {stable} MD",
                )
            )
    summary["figure"] = "compare_forces.png"
    markdown = compare_markdown(table)
    (report / "compare_table.md").write_text(markdown)
    tables = [(f"in-distribution test pool: {summary['n_test']} frames; {seeds}", markdown)]
    if summary["n_transfer"]:
        transfer = compare_markdown(table, TRANSFER_COLUMNS)
        (report / "compare_transfer_table.md").write_text(transfer)
        tables.append((f"transfer pool: {summary['n_transfer']} frames; {seeds}", transfer))
    return tables, figures
