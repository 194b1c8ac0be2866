"""The selector comparison's numbers: per (selector, frames) means over seeds, the
ratios to random, and where each selector looked (reference energies of its picks).

Pure functions of the rows of ``results.jsonl`` (:mod:`potstill.workflows.compare`).
"""

from __future__ import annotations

import numpy as np

from potstill.frames import get_labels
from potstill.store import Store

__all__ = ["METRICS", "energies_per_atom", "largest_picks", "selection_coverage", "summarize_results", "versus_random"]

METRICS = tuple(f"{q}_{s}_{u}" for q, u in (("energy", "meV_per_atom"), ("force", "eV_per_A"), ("stress", "GPa"))
                for s in ("mae", "rmse", "l4"))


def summarize_results(rows: list[dict]) -> list[dict]:
    """Per (selector, budget): ``n_train``, seeds, mean and std (population) over seeds of
    every metric, and the fraction of stable models."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["selector"], row["budget"]), []).append(row)
    table = []
    for (selector, budget), group in groups.items():
        entry = {"selector": selector, "budget": budget, "n_train": group[0]["n_train"],
                 "seeds": sorted(r["seed"] for r in group)}
        for metric in METRICS:
            values = [r[metric] for r in group if r.get(metric) is not None]
            entry[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None
        checked = [r["stable"] for r in group if r.get("stable") is not None]
        entry["stable_fraction"] = float(np.mean(checked)) if checked else None
        table.append(entry)
    return sorted(table, key=lambda e: (e["selector"], e["n_train"]))


def versus_random(table: list[dict], baseline: str = "random") -> list[dict]:
    """For every other selector and frame count that ``baseline`` also ran: whether its
    seed-mean energy L4 and force RMSE on the test pool are below the baseline's, and
    the ratios (selector / baseline)."""
    base = {row["n_train"]: row for row in table if row["selector"] == baseline}
    verdicts = []
    for row in table:
        other = base.get(row["n_train"])
        if row["selector"] == baseline or other is None:
            continue
        entry = {"selector": row["selector"], "n_train": row["n_train"], "budget": row["budget"]}
        for metric in ("energy_l4_meV_per_atom", "force_rmse_eV_per_A"):
            if row.get(metric) and other.get(metric):
                ratio = row[metric]["mean"] / other[metric]["mean"]
                entry[f"{metric}_ratio"] = ratio
                entry[f"beats_{baseline}_{metric.split('_')[0]}_{metric.split('_')[1]}"] = ratio < 1
        verdicts.append(entry)
    return verdicts


_PERCENTILES = (5, 25, 50, 75, 95)


def selection_coverage(rows: list[dict], pool_energy: dict[int, float], test_energy: dict[int, float]) -> dict:
    """Where the selectors looked: percentiles (``p5`` ... ``p95``, eV/atom) of the
    reference energy per atom of the pool, the test pool and, per (selector, frames), the
    frames picked over all seeds; ``below_pool_p25``: the share of picks below the
    pool's 25th percentile (0.25 for a uniform pick)."""
    def percentiles(values) -> dict:
        return {f"p{q}": float(v) for q, v in zip(_PERCENTILES, np.percentile(list(values), _PERCENTILES))}

    pool = percentiles(pool_energy.values())
    picks: dict[tuple, list[float]] = {}
    for row in rows:
        picks.setdefault((row["selector"], row["n_train"]), []).extend(pool_energy[i] for i in row["selected_ids"])
    selected = [{"selector": selector, "n_train": n, **percentiles(values),
                 "below_pool_p25": float(np.mean(np.asarray(values) < pool["p25"]))}
                for (selector, n), values in sorted(picks.items(), key=lambda item: (item[0][1], item[0][0]))]
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
                pool_energy[i] for i in row["selected_ids"])
    return picks
