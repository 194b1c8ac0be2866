"""Selector benchmark (seed 002 Fig. 2): which selector gives the best model for a given
number of training frames?

For every selector x budget x seed: select ``budget`` frames of ``pool`` with
``rng = np.random.default_rng(seed)``, train one model (``train.committee`` members; 1 is
enough) on them, evaluate energy/force/stress MAE, RMSE and L4 on ``test_pool`` (the
**in-distribution** held-out pool: an independent run of the same sampler and size,
never selected from) and, optionally, on ``transfer_pool`` (e.g. larger cells; its
metrics carry a ``transfer_`` prefix), and run a short NVT or NPT MD with the model
from a test-pool frame to classify it stable or not
(:mod:`potstill.validation.stability`, seed 002's checks). The runs fan out over the
workflow's executor; one that fails is recorded and the others go on.

With a ``density`` section, the models of one selector and frame count (every seed) and
the reference itself then run NPT at each temperature, and their mean densities are
compared (seed 002 Fig. 3): ``<out>/compare/density.jsonl``, one line per (model or
reference, temperature), resumable.

The YAML is ``workflow: compare-selectors`` with ``species``, ``reference``, ``model``,
``train``, ``executor`` and a ``compare`` section (:class:`CompareConfig`)::

    compare:
      pool: runs/momt-ni32/pool.db         # or {path, start, stop, stride}
      test_pool: {path: runs/momt-ni32-heldout/pool.db, stride: 100}
      transfer_pool: {path: runs/momt-ni108/pool.db, stride: 100}   # optional
      selectors: [random, {name: fps, options: {}}]
      budgets: [16, 32, 0.05]             # frames, or fractions (<= 1) of the pool
      seeds: [0, 1, 2]
      md: {ensemble: nvt, steps: 1000, temperature_K: 300, timestep_fs: 1.0}
      density: {selector: rnd, n_train: 32, temperatures_K: [1100, 1300, 1500]}  # optional

Run directory::

    <out>/compare/results.jsonl          one line per finished (selector, budget, seed)
    <out>/compare/failures.jsonl         combinations that raised (retried on --resume)
    <out>/compare/models/<key>/          the trained members and committee.pt
    <out>/compare/density.jsonl          NPT densities (with a density section)
    <out>/compare/settings.json          what the results depend on; compare.json: record
    <out>/report/compare/                summary.json (per (selector, budget): means, stds,
                                         stable fraction, versus random, coverage,
                                         density), compare_forces.png (seed 002 Fig. 2),
                                         compare_energy.png, compare_transfer.png,
                                         compare_coverage.png, compare_density.png,
                                         compare_table.md and the page

A rerun with ``--resume`` skips the combinations already in ``results.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from potstill.errors import PotstillError
from potstill.executors import fan_out, make_executor, one_torch_thread
from potstill.faults import kill_point
from potstill.learning import budget_frames
from potstill.models import ModelConfig, ModelSpec, PotstillCalculator, predict, save_checkpoint
from potstill.rundir import RunDir, jsonable
from potstill.selection import make_selector, options_with_reference
from potstill.settings import Section
from potstill.store import Store
from potstill.training.committee import train_committee
from potstill.training.config import TrainConfig
from potstill.validation.metrics import pool_errors
from potstill.validation.stability import StabilityConfig, md_stability
from potstill.workflows import WorkflowConfig
from potstill.workflows.compare_density import DensityConfig, run_densities
from potstill.workflows.compare_summary import finish, read_results

__all__ = ["ComboTask", "CompareConfig", "Config", "headline", "read_results", "run", "run_combo"]


class PoolSpec(Section):
    """Frames of a store, in id order: positions ``start:stop:stride``."""

    path: str
    start: int = Field(0, ge=0)
    stop: int | None = Field(None, gt=0)
    stride: int = Field(1, ge=1)


class SelectorSpec(Section):
    """A selector of the registry with its options; ``label`` names it in results and
    plots (default: ``name``), so one selector can appear with two option sets."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


class CompareConfig(Section):
    """The ``compare`` section: pools, selectors x budgets x seeds, the stability MD and,
    optionally, the density comparison."""

    pool: PoolSpec
    test_pool: PoolSpec
    transfer_pool: PoolSpec | None = None
    selectors: list[SelectorSpec]
    budgets: list[int | float]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    md: StabilityConfig = Field(default_factory=StabilityConfig)
    density: DensityConfig | None = None

    @field_validator("pool", "test_pool", "transfer_pool", mode="before")
    @classmethod
    def _path_shorthand(cls, value):
        return {"path": value} if isinstance(value, str) else value

    @field_validator("selectors", mode="before")
    @classmethod
    def _name_shorthand(cls, value):
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        if not self.selectors:
            raise ValueError("selectors is empty; name at least one (e.g. [random, fps])")
        labels = [s.key for s in self.selectors]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"selector labels must be unique, got {labels}; give `label` to tell them apart"
            )
        if not self.budgets:
            raise ValueError(
                "budgets is empty; give frame counts (16, 32) or pool fractions (0.05)"
            )
        for b in self.budgets:
            if isinstance(b, bool) or b <= 0 or (isinstance(b, float) and b > 1):
                raise ValueError(
                    f"budget {b!r}: give a frame count >= 2 or a pool fraction 0 < f <= 1"
                )
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed")
        if self.density is not None and self.density.selector not in labels:
            raise ValueError(
                f"density.selector {self.density.selector!r} is not among the selectors {labels}"
            )
        return self


class Config(WorkflowConfig):
    """``model``, ``train`` (one model per run is enough: ``committee: 1``) and ``compare``."""

    workflow: Literal["compare-selectors"] = "compare-selectors"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    compare: CompareConfig


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
    transfer_url: str | None
    transfer_ids: tuple[int, ...]
    reference: str
    model: ModelSpec
    train: TrainConfig
    md: StabilityConfig
    out_dir: str


def run_combo(task: ComboTask) -> dict:
    """Select, train, evaluate and MD-check one combination (on one torch thread); its
    results line."""
    times = {}
    with one_torch_thread():
        started = time.time()
        selected_ids, selector_state = _select(task)
        times["select_s"] = time.time() - started
        started = time.time()
        model = _train(task, selected_ids)
        times["train_s"] = time.time() - started
        started = time.time()
        test_frames = Store(task.test_url, create=False).get(list(task.test_ids))
        errors = _evaluate(model, test_frames, task.reference)
        if task.transfer_url is not None:
            transfer = Store(task.transfer_url, create=False).get(list(task.transfer_ids))
            errors |= {
                f"transfer_{k}": v for k, v in _evaluate(model, transfer, task.reference).items()
            }
        times["evaluate_s"] = time.time() - started
        started = time.time()
        stability = _stability(model, test_frames, task) if task.md.enabled else None
        times["md_s"] = time.time() - started
    return {
        "key": task.key,
        "selector": task.selector,
        "selector_name": task.selector_name,
        "selector_options": task.selector_options,
        "budget": task.budget,
        "n_train": task.n_train,
        "seed": task.seed,
        "selected_ids": selected_ids,
        "selector_state": selector_state,
        **errors,
        "stability": stability,
        "stable": None if stability is None else stability["stable"],
        **{k: round(v, 2) for k, v in times.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


_STATE = ("levels_", "chunks_", "timings_")  # what selectors learned, worth keeping with the result
_SHARED_DESCRIPTOR = None


def _select(task: ComboTask) -> tuple[list[int], dict]:
    """The picked store ids and the selector's learned state (grid's counts per level,
    committee's per-chunk scores, timings)."""
    candidates = Store(task.pool_url, create=False).frames(list(task.pool_ids))
    selector = _share_descriptor(
        make_selector(task.selector_name, **task.selector_options), task.selector_options
    )
    positions = selector.select(candidates, task.n_train, rng=np.random.default_rng(task.seed))
    state = {
        name.rstrip("_"): getattr(selector, name) for name in _STATE if hasattr(selector, name)
    }
    return [int(task.pool_ids[p]) for p in positions], json.loads(
        json.dumps(state, default=jsonable)
    )


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
    frames = Store(task.pool_url, create=False).frames(selected_ids)
    config = task.train.model_copy(update={"seed": task.train.seed + task.seed})
    trained = train_committee(
        frames, task.reference, model=task.model, config=config, out_dir=task.out_dir
    ).model
    save_checkpoint(trained, Path(task.out_dir) / "committee.pt", training_ids=selected_ids)
    return trained


def _evaluate(model, frames, reference: str) -> dict:
    errors = pool_errors(frames, predict(model, frames), reference)
    metrics = {
        "energy": ("energy_meV_per_atom", "meV_per_atom"),
        "force": ("forces_eV_per_A", "eV_per_A"),
        "stress": ("stress_GPa", "GPa"),
    }
    flat = {"n_test": errors["n_frames"]}
    for name, (entry, unit) in metrics.items():
        for stat in ("mae", "rmse", "l4"):
            flat[f"{name}_{stat}_{unit}"] = errors[entry][stat] if entry in errors else None
    return flat


def _stability(model, test_frames, task: ComboTask) -> dict:
    start = test_frames[min(task.md.start_frame, len(test_frames) - 1)]
    return md_stability(PotstillCalculator(model), start, seed=task.seed, **task.md.md_options())


# -- the benchmark --------------------------------------------------------------------
def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """Run every missing (selector, budget, seed) combination, then write the report;
    returns the summary (also ``<out>/report/compare/summary.json``)."""
    compare = config.compare
    stage = rundir.stage("compare")
    pool_ids, test_ids, transfer_ids = _pool_ids(compare)
    tasks = _tasks(config, stage.root, pool_ids, test_ids, transfer_ids)
    stage.claim()
    started = time.time()
    stage.check_settings(_settings(config), what="pools, model, train or md")
    done = _finished(stage.root / "results.jsonl", tasks)
    _run([t for t in tasks if t.key not in done], config, stage.root, progress)
    rows = [
        r for r in read_results(stage.root / "results.jsonl") if r["key"] in {t.key for t in tasks}
    ]
    failures = read_results(stage.root / "failures.jsonl")
    if compare.density is not None:
        run_densities(config, stage.root, tasks, rows, progress)
    return finish(
        config,
        stage,
        tasks,
        rows,
        failures,
        inputs={"compare": config.compare.model_dump(), **_settings(config)},
        started=started,
    )


def headline(summary: dict) -> list[dict]:
    """What ``potstill compare-selectors`` prints: seed means per selector and size."""
    keys = (
        "selector",
        "n_train",
        "energy_l4_meV_per_atom",
        "force_rmse_eV_per_A",
        "force_l4_eV_per_A",
        "stable_fraction",
    )
    return [
        {k: (row[k]["mean"] if isinstance(row[k], dict) else row[k]) for k in keys if k in row}
        for row in summary["table"]
    ]


def _ids(spec: PoolSpec, what: str) -> tuple[Store, list[int]]:
    if "://" not in spec.path and not Path(spec.path).exists():
        raise PotstillError(f"compare.{what}: store {spec.path} not found")
    store = Store(spec.path, create=False)
    ids = store.ids()[spec.start : spec.stop : spec.stride]
    if not ids:
        raise PotstillError(
            f"compare.{what}: no frames in {spec.path} [{spec.start}:{spec.stop}:{spec.stride}]"
        )
    return store, ids


def _pool_ids(compare: CompareConfig) -> tuple[list[int], list[int], list[int]]:
    """Store ids of the pool, the test pool and the transfer pool (empty without one)."""
    pool_store, pool_ids = _ids(compare.pool, "pool")
    held_out = [("test_pool", compare.test_pool)]
    if compare.transfer_pool is not None:
        held_out.append(("transfer_pool", compare.transfer_pool))
    ids = []
    for what, spec in held_out:
        store, spec_ids = _ids(spec, what)
        overlap = set(pool_ids) & set(spec_ids) if store.url == pool_store.url else set()
        if overlap:
            raise PotstillError(
                f"compare.{what} shares {len(overlap)} frames with compare.pool; give disjoint "
                "start/stop ranges (held-out frames are never selected from)"
            )
        ids.append(spec_ids)
    return pool_ids, ids[0], ids[1] if len(ids) > 1 else []


def _train_frames(budget: int | float, n_pool: int) -> int:
    n = budget_frames(budget, n_pool)
    if not 2 <= n <= n_pool:
        raise PotstillError(
            f"compare budget {budget!r} means {n} frames, but the pool holds {n_pool}; "
            f"choose budgets between 2 and {n_pool} frames"
        )
    return n


def _tasks(
    config: Config,
    root: Path,
    pool_ids: list[int],
    test_ids: list[int],
    transfer_ids: list[int],
) -> list[ComboTask]:
    compare = config.compare
    pool_url = Store(compare.pool.path, create=False).url
    test_url = Store(compare.test_pool.path, create=False).url
    transfer = compare.transfer_pool
    transfer_url = None if transfer is None else Store(transfer.path, create=False).url
    tasks = []
    for spec in compare.selectors:
        options = options_with_reference(spec.name, spec.options, config.reference.name)
        for budget in compare.budgets:
            n = _train_frames(budget, len(pool_ids))
            for seed in compare.seeds:
                key = f"{spec.key}_b{budget:g}_s{seed}"
                tasks.append(
                    ComboTask(
                        key=key,
                        selector=spec.key,
                        selector_name=spec.name,
                        selector_options=options,
                        budget=budget,
                        n_train=n,
                        seed=seed,
                        pool_url=pool_url,
                        pool_ids=tuple(pool_ids),
                        test_url=test_url,
                        test_ids=tuple(test_ids),
                        transfer_url=transfer_url,
                        transfer_ids=tuple(transfer_ids),
                        reference=config.reference.name,
                        model=config.model.spec(config.species),
                        train=config.train,
                        md=compare.md,
                        out_dir=str(root / "models" / key),
                    )
                )
    return tasks


def _settings(config: Config) -> dict:
    """What every result depends on (selectors, budgets and seeds may grow on resume)."""
    compare = config.compare
    return {
        "pool": compare.pool.model_dump(),
        "test_pool": compare.test_pool.model_dump(),
        "transfer_pool": None
        if compare.transfer_pool is None
        else compare.transfer_pool.model_dump(),
        "md": compare.md.model_dump(),
        "train": config.train.model_dump(),
        "model": config.model.model_dump(),
        "species": config.species,
        "reference": config.reference.model_dump(),
    }


def _finished(path: Path, tasks: list[ComboTask]) -> set[str]:
    options = {t.key: t.selector_options for t in tasks}
    done = set()
    for row in read_results(path):
        if row["key"] in options and row["selector_options"] != options[row["key"]]:
            raise PotstillError(
                f"{path} has {row['key']} with selector options {row['selector_options']}, the config "
                f"{options[row['key']]}; give the new options another `label` or pass --overwrite"
            )
        done.add(row["key"])
    return done


def _run(tasks: list[ComboTask], config: Config, root: Path, progress) -> None:
    """Run ``tasks`` over the executor, appending each result to results.jsonl as it
    finishes; a failure goes to failures.jsonl (retried on --resume) and the rest go on."""
    if not tasks:
        return
    bar = (
        progress.add_task(f"compare: {len(tasks)} trainings", total=len(tasks))
        if progress
        else None
    )
    with make_executor(config.executor, jobs=len(tasks)) as executor:
        for task, future in fan_out(executor, run_combo, tasks):
            try:
                _append(root / "results.jsonl", future.result())
            except Exception as error:  # noqa: BLE001 - recorded, retried on --resume
                _append(
                    root / "failures.jsonl",
                    {
                        "key": task.key,
                        "error": f"{type(error).__name__}: {error}",
                        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    },
                )
            if progress is not None:
                progress.update(bar, advance=1)


def _append(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row, default=jsonable) + "\n")
        handle.flush()
    kill_point("result-written")
