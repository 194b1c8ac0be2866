"""The standard workflow: sample -> select -> train -> validate -> report.

Each stage reads what the previous one left in the run directory and writes its own
outputs, its record and its report page, so any stage can run alone from the CLI, and a
rerun with ``--resume`` keeps what finished (the pool, trained members, the report of a
committee that did not change)::

    <out>/pool.db            frames with labels and provenance (ASE db)
    <out>/sample.json        sampling record
    <out>/train/member_k.pt  committee members; committee.pt; train.json
    <out>/report/<stage>/    each stage's summary.json, PNG plots, index.html
    <out>/report/            summary.json of every stage, index.html linking them
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator

from potstill.errors import PotstillError
from potstill.executors import make_executor
from potstill.frames import check_elements
from potstill.models import ModelConfig, parameter_checksum, save_checkpoint
from potstill.rundir import RunDir, read_record
from potstill.sampling import sampler_config
from potstill.sampling.stage import sample as sample_stage
from potstill.selection import SelectConfig, select_frames
from potstill.store import Store
from potstill.training.committee import train_committee
from potstill.training.config import TrainConfig
from potstill.validation.stage import ValidateConfig
from potstill.validation.stage import validate as validate_stage
from potstill.workflows import WorkflowConfig

__all__ = ["Config", "headline", "run", "sample", "select_training_frames", "train", "validate"]


class Config(WorkflowConfig):
    """``sample`` (its ``sampler``'s section: md, momt, translate), ``select``, ``model``,
    ``train``, ``validate``."""

    workflow: Literal["standard"] = "standard"
    sample: Any = Field(default_factory=lambda: sampler_config({}))
    select: SelectConfig = Field(default_factory=SelectConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")

    model_config = {"populate_by_name": True}

    @field_validator("sample", mode="before")
    @classmethod
    def _sampler(cls, value: Any) -> Any:
        return sampler_config(value)


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """All stages in order; returns the run's summary (every stage's, by name)."""
    started = time.time()
    sample(config, rundir, progress=progress)
    train(config, rundir, progress=progress)
    validate(config, rundir, progress=progress)
    summary = rundir.summary()
    summary["wall_time_s"] = round(time.time() - started, 1)
    return summary


def headline(summary: dict) -> dict:
    """What ``potstill run`` prints: the pool errors of the validated committee."""
    pool = (summary.get("validate") or {}).get("pool", {})
    return {k: v for k, v in pool.items() if k != "errors"} | {
        "wall_time_s": summary.get("wall_time_s")
    }


def sample(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """The sample stage with the configured sampler (see :mod:`potstill.sampling`)."""
    return sample_stage(
        config.sample,
        species=config.species,
        reference=config.reference,
        run=rundir,
        executor=config.executor,
        progress=progress,
    )


def select_training_frames(config: Config, store: Store):
    """Store ids and (lazily read) frames of the training subset chosen by
    ``config.select``."""
    ids = store.ids()
    chosen = select_frames(config.select, store.frames(ids), reference=config.reference.name)
    chosen_ids = [ids[i] for i in chosen]
    return chosen_ids, store.frames(chosen_ids)


def train(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """Select the training frames from the pool and train the committee (members in
    parallel over the executor; finished members are reused on ``--resume``)."""
    stage = rundir.stage("train")
    stage.claim()
    started = time.time()
    store = Store(rundir.pool, create=False)
    if len(store) == 0:
        raise PotstillError(f"the pool {rundir.pool} is empty; run `potstill sample` first")
    ids, frames = select_training_frames(config, store)
    check_elements(frames, config.species)
    with make_executor(config.executor, jobs=config.train.committee) as executor:
        trained = train_committee(
            frames,
            config.reference.name,
            model=config.model.spec(config.species),
            config=config.train,
            out_dir=stage.root,
            executor=executor,
            progress=progress,
        )
    save_checkpoint(trained.model, stage.root / "committee.pt", training_ids=ids)
    results = {
        "n_selected": len(ids),
        "n_pool": len(store),
        "members": trained.summaries,
        "committee_checksum": parameter_checksum(trained.model),
    }
    stage.write_record(
        inputs={
            "select": config.select.model_dump(),
            "model": config.model.model_dump(),
            "train": config.train.model_dump(),
        },
        results=results,
        started=started,
    )
    stage.publish(
        results | {"wall_time_s": round(time.time() - started, 1)},
        title=f"{config.name}: {config.train.committee} members on {len(ids)} frames",
    )
    return results


def validate(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """Validate the trained committee (pool, crystals, elastic constants); on
    ``--resume`` a report of the same committee is kept."""
    committee = rundir.path / "train" / "committee.pt"
    record = read_record(rundir.path / "train" / "train.json")
    checksum = record["results"].get("committee_checksum") if record else None
    done = rundir.summary().get("validate")
    if rundir.resume and done and checksum and done.get("committee_checksum") == checksum:
        return done
    return validate_stage(
        config.validate_,
        name=config.name,
        species=config.species,
        reference=config.reference,
        run=rundir,
        committee_path=committee,
        progress=progress,
        checksum=checksum,
    )
