"""Committee active-learning distillation of a pool (seed 000, SI Note 4; seed 004).

The pool, in sampling (store id) order, is cut into ``n_chunks`` sequential chunks and
run through the active-learning loop of :mod:`potstill.learning`: iteration 0 trains K
members on chunk 0 (or a random ``initial`` subset of it); each later iteration scores
the next chunk with the committee of the previous one (per-atom std of atomic energies,
:mod:`potstill.uncertainty.committee`), keeps the frames with any atom above
``mu + k sigma`` (of the atomic stds of the frames kept so far, or of a reference window
of the pool) within the labeling ``budget``, labels their noisy copies over the executor
and retrains with the ``random`` or ``inherited`` strategy. After each iteration the
committee's energy MAE on the whole pool is recorded: the curve of seed 000 Fig. 2. With
``final_pass``, iteration ``n_chunks`` trains the committee once more on the distilled
set, without new frames.

Run directory (``<out>/distill``)::

    iter_<i>/member_<k>.pt   the members after iteration i
    iter_<i>/uq.npz          their pool evaluation (energy errors, atomic-std sums, scores)
    iter_<i>/iteration.json  written last: iteration i is finished
    train.db                 the distilled training set (kept frames + noisy copies)
    selected_ids.json        kept pool ids and the iteration that kept each
    committee.pt             the final committee;  distill.json: the record

and ``<out>/report/distill/`` (``distill_curve.png``, ``distill_table.md``, the page and
its summary, also under ``distill`` in ``<out>/report/summary.json``). A rerun with
``--resume`` skips finished iterations and reuses finished members of an interrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from potstill.errors import PotstillError
from potstill.executors import make_executor
from potstill.learning import CommitteeLearner, active_learning
from potstill.models import ModelConfig, save_checkpoint
from potstill.report.distill import distill_curve, distill_markdown
from potstill.rundir import RunDir, Stage
from potstill.store import Store
from potstill.training.config import TrainConfig
from potstill.workflows import WorkflowConfig
from potstill.workflows.distill_loop import (
    DistillConfig,
    DistillSteps,
    Pool,
    check,
    load_committee,
    open_pool,
    pool_budget,
)

__all__ = ["Config", "DistillConfig", "headline", "run"]


class Config(WorkflowConfig):
    """``model``, ``train`` and ``distill``."""

    workflow: Literal["distill"] = "distill"
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """Run the distillation loop; returns its summary."""
    d = config.distill
    stage = rundir.stage("distill")
    stage.claim()
    started = time.time()
    pool = open_pool(d, rundir.path)
    check(d, config.train.committee, pool)
    stage.check_settings(_settings(config), what="distill, train, model, species or reference")
    with make_executor(config.executor, jobs=config.train.committee) as executor:
        learner = CommitteeLearner(
            config.reference.name,
            config.model.spec(config.species),
            config.train,
            strategy=d.strategy,
            executor=executor,
            progress=progress,
        )
        steps = DistillSteps(
            config, pool, Store(stage.root / "train.db"), stage.root, learner, executor, progress
        )
        iterations = active_learning(
            d.n_chunks + int(d.final_pass),
            select=steps.select,
            add=steps.add,
            retrain=steps.retrain,
            finished=steps.finished,
            save=steps.save,
        )
    return _finish(config, stage, pool, [it.record for it in iterations], started)


def headline(summary: dict) -> dict:
    """What ``potstill distill`` prints: the kept fraction and the pool MAE per iteration."""
    keys = ("iteration", "n_new", "fraction_kept", "pool_energy_mae_meV_per_atom")
    return {k: v for k, v in summary.items() if k != "curve"} | {
        "curve": [{k: row.get(k) for k in keys} for row in summary["curve"]]
    }


def _settings(config: Config) -> dict:
    return {
        "distill": config.distill.model_dump(exclude={"baseline_run", "final_pass"}),
        "train": config.train.model_dump(),
        "model": config.model.model_dump(),
        "species": config.species,
        "reference": config.reference.model_dump(),
    }


# -- outputs --------------------------------------------------------------------------
def _baseline(run: Path, pool: Pool, mae: float | None) -> dict:
    """The all-frames committee of ``run`` (a finished ``n_chunks: 1`` distill run of the
    same pool): its pool MAE and ``ratio`` = this run's MAE / it. A baseline that is not
    (yet) there is noted in the summary, not an error: rerun with --resume once it is."""
    path = run / "report" / "summary.json"
    if not path.exists():
        return {
            "run": str(run),
            "missing": f"{path} not found; run the baseline, then `potstill distill --resume`",
        }
    other = json.loads(path.read_text()).get("distill") or {}
    if (
        other.get("pool") != pool.store.url
        or other.get("n_pool") != len(pool.ids)
        or other.get("n_chunks") != 1
    ):
        raise PotstillError(
            f"distill.baseline_run {run} is not an n_chunks: 1 run of the same {len(pool.ids)} pool "
            f"frames of {pool.store.url}; point it to one"
        )
    reference = other.get("pool_energy_mae_meV_per_atom")
    return {
        "run": str(run),
        "n_selected": other.get("n_selected"),
        "pool_energy_mae_meV_per_atom": reference,
        "mae_ratio": None if mae is None or not reference else mae / reference,
    }


_CURVE_KEYS = (
    "iteration",
    "final_pass",
    "chunk",
    "n_chunk",
    "n_new",
    "n_selected",
    "n_training_frames",
    "fraction_new_of_chunk",
    "fraction_kept",
    "fraction_kept_of_seen",
    "threshold_eV",
    "mu_eV",
    "sigma_eV",
    "chunk_score_max_eV",
    "n_above_threshold",
    "n_cut_by_budget",
    "pool_energy_mae_meV_per_atom",
    "pool_energy_rmse_meV_per_atom",
    "retrained",
    "wall_time_s",
)


def _finish(config: Config, stage: Stage, pool: Pool, records: list[dict], started: float) -> dict:
    d, root, last = config.distill, stage.root, records[-1]
    curve = [{k: r[k] for k in _CURVE_KEYS if k in r} for r in records]
    kept_in = {pid: r["iteration"] for r in records for pid in r["new_ids"]}
    (root / "selected_ids.json").write_text(
        json.dumps(
            {
                "pool": pool.store.url,
                "n_pool": len(pool.ids),
                "ids": last["selected_ids"],
                "iteration": [kept_in[pid] for pid in last["selected_ids"]],
            }
        )
    )
    save_checkpoint(
        load_committee(root, len(records) - 1, config.train.committee),
        root / "committee.pt",
        training_ids=last["selected_ids"],
    )
    summary = {
        "pool": pool.store.url,
        "n_pool": len(pool.ids),
        "strategy": d.strategy,
        "k_sigma": d.k_sigma,
        "budget_frames": pool_budget(d, pool),
        "n_cut_by_budget": sum(r.get("n_cut_by_budget", 0) for r in records),
        "committee": config.train.committee,
        "n_chunks": d.n_chunks,
        "final_pass": bool(last.get("final_pass")),
        "n_selected": last["n_selected"],
        "fraction_kept": last["fraction_kept"],
        "n_training_frames": last["n_training_frames"],
        "pool_energy_mae_meV_per_atom": last.get("pool_energy_mae_meV_per_atom"),
        "curve": curve,
        "wall_time_s": round(sum(r["wall_time_s"] for r in records), 1),
    }
    if d.baseline_run is not None:
        summary["baseline"] = _baseline(
            Path(d.baseline_run), pool, summary["pool_energy_mae_meV_per_atom"]
        )
    stage.report.mkdir(parents=True, exist_ok=True)
    figures = []
    if d.evaluate_pool:
        baseline = summary.get("baseline") or {}
        figures.append(
            distill_curve(
                curve,
                path=stage.report / "distill_curve.png",
                baseline=baseline.get("pool_energy_mae_meV_per_atom"),
                title=f"{config.name}: {d.strategy}, K={config.train.committee}, "
                f"mu+{d.k_sigma:g} sigma",
            )
        )
        summary["figure"] = "distill_curve.png"
    markdown = distill_markdown(curve, summary.get("baseline"))
    (stage.report / "distill_table.md").write_text(markdown)
    caption = (
        f"{d.n_chunks} chunks of {len(pool.ids)} pool frames, K = {config.train.committee}, "
        f"mu + {d.k_sigma:g} sigma, {d.strategy} strategy"
    )
    stage.publish(
        summary,
        title=f"{config.name}: committee distillation",
        tables=[(caption, markdown)],
        figures=figures,
    )
    stage.write_record(inputs=_settings(config), results=summary, started=started)
    return summary
