"""Selector benchmark (issue 5, seed 002 Fig. 2): which selector gives the best model
for a given number of training frames?

For every selector x budget x seed: select ``budget`` frames of ``pool`` with
``rng = np.random.default_rng(seed)``, train one model (``train.committee`` members; 1 is
enough) on them, evaluate energy/force/stress MAE, RMSE and L4 on ``test_pool`` (a
held-out store that is never selected from), and run a short Langevin NVT MD with the
model from a test-pool frame to classify it stable or not
(:mod:`potstill.validation.stability`).

The YAML is a normal workflow config (``species``, ``reference``, ``model``, ``train``)
plus a ``compare`` section (:class:`CompareConfig`)::

    compare:
      pool: /path/pool.db                 # or {path, start, stop, stride}
      test_pool: {path: /path/test.db, stride: 10}
      selectors: [random, {name: fps, options: {}}]
      budgets: [16, 32, 0.05]             # frames, or fractions (< 1) of the pool
      seeds: [0, 1, 2]
      md: {steps: 1000, temperature_K: 300, timestep_fs: 1.0}

Run directory::

    <out>/compare/results.jsonl          one line per finished (selector, budget, seed)
    <out>/compare/failures.jsonl         combinations that raised (retried on --resume)
    <out>/compare/models/<key>/          the trained members and committee.pt
    <out>/compare/settings.json          what the results depend on; compare.json: record
    <out>/report/compare_summary.json    per (selector, budget): means, stds, stable fraction
    <out>/report/compare_errors.png      errors vs training-set size, one line per selector
    <out>/report/compare_table.md, compare.html   the table (and the figure) for people
    <out>/report/compare_coverage.png    reference energy per atom: pool, test pool, picks

``coverage`` in the summary says what each selector picked: quantiles of the reference
energy per atom of its frames (all seeds) beside the pool's and the test pool's, so an
error that comes from where a selector looks (e.g. only liquid frames for a solid-rich
test pool) shows.

A rerun with ``resume=True`` skips the combinations already in ``results.jsonl``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from potstill.config import CompareConfig, PoolSpec, RunConfig, load_config
from potstill.errors import PotstillError
from potstill.records import claim_output, claim_settings, jsonable, write_record
from potstill.selection import options_with_reference
from potstill.store import Store


def load_compare_config(path: str | Path) -> tuple[RunConfig, CompareConfig]:
    """The workflow settings (``species``, ``reference``, ``model``, ``train``) and the
    ``compare`` section of a YAML; any problem is one :class:`PotstillError` line."""
    config = load_config(path)
    if config.compare is None:
        raise PotstillError(f"{path} has no `compare` section; see examples/compare-selectors-ni.yaml")
    return config, config.compare


# -- one combination ------------------------------------------------------------------
@dataclass(frozen=True)
class ComboTask:
    """Everything one (selector, budget, seed) job needs, picklable for any executor."""

    key: str
    selector: str
    selector_name: str
    selector_options: dict
    budget: float
    n_train: int
    seed: int
    pool_url: str
    pool_ids: tuple[int, ...]
    test_url: str
    test_ids: tuple[int, ...]
    reference: str
    species: tuple[str, ...]
    model: dict
    train: dict
    md: dict
    out_dir: str
    threads: int | None = None


def run_combo(task: ComboTask) -> dict:
    """Select, train, evaluate and MD-check one combination; its results line."""
    import torch

    if task.threads is not None:
        torch.set_num_threads(task.threads)
    times = {}
    started = time.time()
    selected_ids, selector_state = _select(task)
    times["select_s"] = time.time() - started
    started = time.time()
    model = _train(task, selected_ids)
    times["train_s"] = time.time() - started
    started = time.time()
    test_frames = Store(task.test_url, create=False).get(list(task.test_ids))
    errors = _evaluate(model, test_frames, task.reference)
    times["evaluate_s"] = time.time() - started
    started = time.time()
    stability = _stability(model, test_frames, task) if task.md.get("enabled", True) else None
    times["md_s"] = time.time() - started
    return {
        "key": task.key, "selector": task.selector, "selector_name": task.selector_name,
        "selector_options": task.selector_options, "budget": task.budget, "n_train": task.n_train,
        "seed": task.seed, "selected_ids": selected_ids, "selector_state": selector_state, **errors,
        "stability": stability,
        "stable": None if stability is None else stability["stable"],
        **{k: round(v, 2) for k, v in times.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


_STATE = ("levels_", "chunks_", "timings_")  # what selectors learned, worth keeping with the result


def _select(task: ComboTask) -> tuple[list[int], dict]:
    """The picked store ids and the selector's learned state (grid's counts per level,
    committee's per-chunk scores, timings)."""
    from potstill.selection import make_selector

    candidates = Store(task.pool_url, create=False).frames(list(task.pool_ids))
    selector = _share_descriptor(make_selector(task.selector_name, **task.selector_options), task.selector_options)
    positions = selector.select(candidates, task.n_train, rng=np.random.default_rng(task.seed))
    state = {name.rstrip("_"): getattr(selector, name) for name in _STATE if hasattr(selector, name)}
    return [int(task.pool_ids[p]) for p in positions], json.loads(json.dumps(state, default=jsonable))


_SHARED_DESCRIPTOR = None


def _share_descriptor(selector, options: dict):
    """Give a descriptor-based ``selector`` built without ``descriptor``/``aev`` options
    this process's one default AEV descriptor: its per-frame cache then serves every
    (selector, budget, seed) run here, so the pool's AEVs are computed once per worker
    instead of once per combination."""
    global _SHARED_DESCRIPTOR
    if not hasattr(selector, "descriptor") or {"descriptor", "aev"} & set(options):
        return selector
    if _SHARED_DESCRIPTOR is None:
        _SHARED_DESCRIPTOR = selector.descriptor
    selector.descriptor = _SHARED_DESCRIPTOR
    return selector


def _train(task: ComboTask, selected_ids: list[int]):
    from potstill.config import TrainConfig
    from potstill.models import ANIModel, save_checkpoint
    from potstill.training.trainer import train_committee

    frames = Store(task.pool_url, create=False).frames(selected_ids)
    config = TrainConfig(**{**task.train, "seed": task.train.get("seed", 0) + task.seed})
    model = {**task.model}

    def factory(seed: int):
        return ANIModel.from_preset(model["preset"], list(task.species), **model["overrides"], seed=seed)

    trained, _ = train_committee(frames, task.reference, model_factory=factory, config=config, out_dir=task.out_dir)
    save_checkpoint(trained, Path(task.out_dir) / "committee.pt", training_ids=selected_ids)
    return trained


def _evaluate(model, frames, reference: str) -> dict:
    from potstill.models import predict
    from potstill.validation.metrics import pool_errors

    errors = pool_errors(frames, predict(model, frames), reference)
    metrics = {"energy": ("energy_meV_per_atom", "meV_per_atom"), "force": ("forces_eV_per_A", "eV_per_A"),
               "stress": ("stress_GPa", "GPa")}
    flat = {"n_test": errors["n_frames"]}
    for name, (entry, unit) in metrics.items():
        for stat in ("mae", "rmse", "l4"):
            flat[f"{name}_{stat}_{unit}"] = errors[entry][stat] if entry in errors else None
    return flat


def _stability(model, test_frames, task: ComboTask) -> dict:
    from potstill.models.calculator import PotstillCalculator
    from potstill.validation.stability import md_stability

    md = {k: v for k, v in task.md.items() if k not in ("enabled", "start_frame")}
    start = test_frames[min(task.md.get("start_frame", 0), len(test_frames) - 1)]
    return md_stability(PotstillCalculator(model), start, seed=task.seed, **md)


# -- the benchmark --------------------------------------------------------------------
def compare_selectors(config: RunConfig, compare: CompareConfig, out: Path, *, overwrite: bool = False,
                      resume: bool = False, progress=None) -> dict:
    """Run every missing (selector, budget, seed) combination, then write the report;
    returns the summary (also ``<out>/report/compare_summary.json``)."""
    out = Path(out)
    root = out / "compare"
    pool_ids, test_ids = _pool_ids(compare)
    tasks = _tasks(config, compare, root, pool_ids, test_ids)
    claim_output([root], overwrite=overwrite, resume=resume, what="compare-selectors")
    started = time.time()
    claim_settings(root, _settings(config, compare),
                   refusal=f"{root} holds results of other settings (pools, model, train or md); "
                           "pass --overwrite to start over")
    done = _finished(root / "results.jsonl", tasks)
    todo = [t for t in tasks if t.key not in done]
    _run(todo, compare, root, progress)
    return _finish(config, compare, out, tasks, started)


def _ids(spec: PoolSpec, what: str) -> tuple[Store, list[int]]:
    if "://" not in spec.path and not Path(spec.path).exists():
        raise PotstillError(f"compare.{what}: store {spec.path} not found")
    store = Store(spec.path, create=False)
    ids = store.ids()[spec.start : spec.stop : spec.stride]
    if not ids:
        raise PotstillError(f"compare.{what}: no frames in {spec.path} [{spec.start}:{spec.stop}:{spec.stride}]")
    return store, ids


def _pool_ids(compare: CompareConfig) -> tuple[list[int], list[int]]:
    pool_store, pool_ids = _ids(compare.pool, "pool")
    test_store, test_ids = _ids(compare.test_pool, "test_pool")
    if pool_store.url == test_store.url:
        overlap = set(pool_ids) & set(test_ids)
        if overlap:
            raise PotstillError(f"compare.test_pool shares {len(overlap)} frames with compare.pool; give disjoint "
                                "start/stop ranges (the test pool is never selected from)")
    return pool_ids, test_ids


def _budget_frames(budget: int | float, n_pool: int) -> int:
    n = int(round(budget * n_pool)) if isinstance(budget, float) else int(budget)
    if not 2 <= n <= n_pool:
        raise PotstillError(f"compare budget {budget!r} means {n} frames, but the pool holds {n_pool}; "
                            f"choose budgets between 2 and {n_pool} frames")
    return n


def _tasks(config: RunConfig, compare: CompareConfig, root: Path, pool_ids: list[int], test_ids: list[int]) -> list[ComboTask]:
    pool_url = Store(compare.pool.path, create=False).url
    test_url = Store(compare.test_pool.path, create=False).url
    model = {"preset": config.model.preset, "overrides": dict(config.model.overrides)}
    md = compare.md.model_dump()
    threads = 1 if compare.workers > 1 else None
    tasks = []
    for spec in compare.selectors:
        options = options_with_reference(spec.name, spec.options, config.reference.name)
        for budget in compare.budgets:
            n = _budget_frames(budget, len(pool_ids))
            for seed in compare.seeds:
                key = f"{spec.key}_b{budget:g}_s{seed}"
                tasks.append(ComboTask(
                    key=key, selector=spec.key, selector_name=spec.name, selector_options=options,
                    budget=budget, n_train=n, seed=seed, pool_url=pool_url, pool_ids=tuple(pool_ids),
                    test_url=test_url, test_ids=tuple(test_ids), reference=config.reference.name,
                    species=tuple(config.species), model=model, train=config.train.model_dump(), md=md,
                    out_dir=str(root / "models" / key), threads=threads,
                ))
    return tasks


def _settings(config: RunConfig, compare: CompareConfig) -> dict:
    """What every result depends on (selectors, budgets and seeds may grow on resume)."""
    return json.loads(json.dumps({
        "pool": compare.pool.model_dump(), "test_pool": compare.test_pool.model_dump(), "md": compare.md.model_dump(),
        "train": config.train.model_dump(), "model": config.model.model_dump(), "species": config.species,
        "reference": config.reference.model_dump(),
    }, default=jsonable))


def read_results(path: Path) -> list[dict]:
    """The lines of a ``results.jsonl`` (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _finished(path: Path, tasks: list[ComboTask]) -> set[str]:
    options = {t.key: t.selector_options for t in tasks}
    done = set()
    for row in read_results(path):
        if row["key"] in options and row["selector_options"] != options[row["key"]]:
            raise PotstillError(f"{path} has {row['key']} with selector options {row['selector_options']}, the config "
                                f"{options[row['key']]}; give the new options another `label` or pass --overwrite")
        done.add(row["key"])
    return done


def _run(tasks: list[ComboTask], compare: CompareConfig, root: Path, progress) -> None:
    """Run ``tasks`` over the executor, at most ``workers`` at a time, appending each
    result to results.jsonl as it finishes (failures to failures.jsonl)."""
    from potstill.executors import make_executor

    if not tasks:
        return
    bar = progress.add_task(f"compare: {len(tasks)} trainings", total=len(tasks)) if progress else None
    pending, running = list(tasks), {}
    with make_executor(compare.executor, compare.workers, address=compare.scheduler_address) as executor:
        while pending or running:
            while pending and len(running) < compare.workers:
                task = pending.pop(0)
                try:
                    running[executor.submit(run_combo, task)] = task
                except BrokenExecutor as error:
                    raise PotstillError(f"the {compare.executor} executor's workers died ({error}); finished results "
                                        "are kept, rerun with --resume") from error
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    _append(root / "results.jsonl", future.result())
                except KeyboardInterrupt:
                    raise
                except Exception as error:  # noqa: BLE001 - recorded, retried on --resume
                    _append(root / "failures.jsonl", {"key": task.key, "error": f"{type(error).__name__}: {error}",
                                                      "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
                if progress is not None:
                    progress.update(bar, advance=1)


def _append(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row, default=jsonable) + "\n")
        handle.flush()


# -- outputs --------------------------------------------------------------------------
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


def _energies_per_atom(url: str, ids, reference: str) -> dict[int, float]:
    """``{store id: reference energy per atom (eV)}`` of the frames ``ids`` of ``url``."""
    from potstill.frames import get_labels

    store, energies = Store(url, create=False), {}
    for start in range(0, len(ids), 1024):
        for atoms in store.get(list(ids[start : start + 1024])):
            energies[int(atoms.info["store_id"])] = get_labels(atoms, reference).energy / len(atoms)
    return energies


def _largest_picks(rows: list[dict], pool_energy: dict[int, float]) -> dict[str, list[float]]:
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


def _finish(config: RunConfig, compare: CompareConfig, out: Path, tasks: list[ComboTask], started: float) -> dict:
    from potstill.report.compare import compare_markdown, compare_plot, coverage_markdown, coverage_plot
    from potstill.report.html import write_html

    root = out / "compare"
    wanted = {t.key for t in tasks}
    rows = [r for r in read_results(root / "results.jsonl") if r["key"] in wanted]
    failed = sorted({f["key"] for f in read_results(root / "failures.jsonl")} & (wanted - {r["key"] for r in rows}))
    table = summarize_results(rows)
    summary = {
        "name": config.name, "pool": compare.pool.model_dump(), "test_pool": compare.test_pool.model_dump(),
        "n_pool": len(tasks[0].pool_ids), "n_test": len(tasks[0].test_ids),
        "selectors": [s.model_dump() for s in compare.selectors], "budgets": compare.budgets, "seeds": compare.seeds,
        "n_finished": len(rows), "n_planned": len(tasks), "failed": failed, "table": table,
        "versus_random": versus_random(table),
    }
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    tables = []
    if rows:
        pool_energy = _energies_per_atom(tasks[0].pool_url, tasks[0].pool_ids, config.reference.name)
        test_energy = _energies_per_atom(tasks[0].test_url, tasks[0].test_ids, config.reference.name)
        summary["coverage"] = selection_coverage(rows, pool_energy, test_energy)
        coverage_plot(pool_energy, test_energy, _largest_picks(rows, pool_energy), path=report / "compare_coverage.png",
                      title=f"{config.name}: what the selectors picked (largest budget, all seeds)")
        tables.append(("reference energy per atom (eV) of the picked frames: percentiles over all seeds",
                       coverage_markdown(summary["coverage"])))
    if table:
        compare_plot(table, path=report / "compare_errors.png",
                     title=f"{config.name}: {summary['n_test']} test frames, mean +- std of {len(compare.seeds)} seeds")
        summary["figure"] = "compare_errors.png"
        markdown = compare_markdown(table)
        (report / "compare_table.md").write_text(markdown)
        write_html(report / "compare.html", title=f"{config.name}: selector benchmark",
                   summary={"n_finished": len(rows), "n_planned": len(tasks), "failed": failed,
                            "versus_random": summary["versus_random"]},
                   tables=[(f"test pool: {summary['n_test']} frames; mean ± std over seeds {compare.seeds}", markdown),
                           *tables],
                   figures=[report / "compare_errors.png", report / "compare_coverage.png"])
    (report / "compare_summary.json").write_text(json.dumps(summary, indent=2, default=jsonable))
    write_record(root / "compare.json", command="compare-selectors",
                 inputs={"compare": compare.model_dump(), **_settings(config, compare)},
                 results={k: v for k, v in summary.items() if k != "table"}, started=started)
    return summary


__all__ = ["CompareConfig", "ComboTask", "compare_selectors", "load_compare_config", "read_results", "run_combo",
           "selection_coverage", "summarize_results", "versus_random"]
