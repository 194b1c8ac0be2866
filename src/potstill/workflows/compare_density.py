"""The selector comparison's density check (seed 002 Fig. 3): do the models of one
selector and frame count run stable NPT, and at the reference's density?

For the ``density`` section of :mod:`potstill.workflows.compare`: every model of
``density.selector`` at ``density.n_train`` frames (one per seed) and the reference run
isotropic NPT (:func:`potstill.validation.stability.md_stability`, the ``md`` section's
checks) from the same test-pool frame at each temperature. One line per (model or
reference, temperature) goes to ``<out>/compare/density.jsonl`` as it finishes; a rerun
skips the lines already there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from potstill.executors import fan_out, make_executor, one_torch_thread
from potstill.models import PotstillCalculator, load_checkpoint
from potstill.references import ReferenceConfig
from potstill.rundir import jsonable, read_jsonl
from potstill.settings import Section
from potstill.store import Store
from potstill.validation.stability import md_stability

__all__ = [
    "DensityConfig",
    "DensityTask",
    "density_tasks",
    "density_table",
    "run_densities",
    "run_density",
]

REFERENCE = "reference"


class DensityConfig(Section):
    """The ``density`` section (seed 002 Fig. 3): NPT densities of the models of
    ``selector`` (its label) at ``n_train`` frames, one per seed, and of the reference, at
    each of ``temperatures_K`` and ``pressure_bar``: ``equilibration_steps`` unrecorded,
    then the mean over ``steps`` more (checked and recorded every ``interval``), from
    test-pool frame ``start_frame``. The stability checks of the ``md`` section apply."""

    selector: str
    n_train: int = Field(gt=0)
    temperatures_K: list[float] = Field(default_factory=lambda: [1100.0, 1300.0, 1500.0])
    pressure_bar: float = 1.0
    timestep_fs: float = Field(2.0, gt=0)
    equilibration_steps: int = Field(2500, ge=0)
    steps: int = Field(10000, gt=0)
    interval: int = Field(10, ge=1)
    start_frame: int = Field(0, ge=0)

    @field_validator("temperatures_K")
    @classmethod
    def _temperatures(cls, value: list[float]) -> list[float]:
        if not value or any(t <= 0 for t in value):
            raise ValueError("temperatures_K must list positive temperatures (kelvin)")
        return value


@dataclass(frozen=True)
class DensityTask:
    """One NPT run: ``who`` is ``"reference"`` or a comparison key (its model at
    ``checkpoint``), at ``temperature_K``."""

    key: str
    who: str
    seed: int
    checkpoint: str | None
    reference: ReferenceConfig
    temperature_K: float
    start_url: str
    start_id: int
    md: dict


def run_density(task: DensityTask) -> dict:
    """The NPT run of ``task`` (on one torch thread): its :func:`md_stability` result with
    the mean density (g/cm^3) and, as ``measured_temperature_K``, the mean temperature
    after equilibration; ``temperature_K`` is the target."""
    with one_torch_thread():
        if task.checkpoint is None:
            calculator = task.reference.build().calculator
        else:
            calculator = PotstillCalculator(load_checkpoint(task.checkpoint))
        start = Store(task.start_url, create=False).get([task.start_id])[0]
        started = time.time()
        result = md_stability(
            calculator, start, temperature_K=task.temperature_K, seed=task.seed, **task.md
        )
    measured = {
        f"measured_{k}": result.pop(k)
        for k in ("temperature_K", "temperature_K_std")
        if k in result
    }
    return {
        "key": task.key,
        "who": task.who,
        "seed": task.seed,
        "temperature_K": task.temperature_K,
        **result,
        **measured,
        "seconds": round(time.time() - started, 1),
    }


def density_tasks(config, tasks: list, rows: list[dict]) -> list[DensityTask]:
    """The reference's and each finished model's NPT runs, per temperature."""
    density, md = config.compare.density, config.compare.md
    options = md.md_options() | dict(  # the md section's checks, at each temperature
        ensemble="npt",
        steps=density.equilibration_steps + density.steps,
        record_after=density.equilibration_steps,
        pressure_bar=density.pressure_bar,
        timestep_fs=density.timestep_fs,
        interval=density.interval,
    )
    del options["temperature_K"]  # each task's own
    by_key = {t.key: t for t in tasks}
    start_url = tasks[0].test_url
    start_id = tasks[0].test_ids[min(density.start_frame, len(tasks[0].test_ids) - 1)]
    models = [(REFERENCE, 0, None)] + [
        (row["key"], row["seed"], str(Path(by_key[row["key"]].out_dir) / "committee.pt"))
        for row in sorted(rows, key=lambda r: r["seed"])
        if row["selector"] == density.selector and row["n_train"] == density.n_train
    ]
    return [
        DensityTask(
            key=f"{who}_T{temperature:g}",
            who=who,
            seed=seed,
            checkpoint=checkpoint,
            reference=config.reference,
            temperature_K=float(temperature),
            start_url=start_url,
            start_id=int(start_id),
            md=options,
        )
        for temperature in density.temperatures_K
        for who, seed, checkpoint in models
    ]


def run_densities(config, root: Path, tasks: list, rows: list[dict], progress=None) -> None:
    """Run the density tasks not yet in ``root/density.jsonl`` over the executor."""
    path = root / "density.jsonl"
    done = {row["key"] for row in read_jsonl(path)}
    todo = [t for t in density_tasks(config, tasks, rows) if t.key not in done]
    if not todo:
        return
    bar = progress.add_task(f"density: {len(todo)} NPT runs", total=len(todo)) if progress else None
    with make_executor(config.executor, jobs=len(todo)) as executor:
        for _, future in fan_out(executor, run_density, todo):
            with path.open("a") as handle:
                handle.write(json.dumps(future.result(), default=jsonable) + "\n")
            if progress is not None:
                progress.update(bar, advance=1)


def density_table(path: Path) -> list[dict]:
    """Per temperature: the reference's density and the models' (mean and std over the
    stable ones, each model's value, how many ran stable), g/cm^3."""
    rows = read_jsonl(path)
    table = []
    for temperature in sorted({r["temperature_K"] for r in rows}):
        at = [r for r in rows if r["temperature_K"] == temperature]
        reference = next((r for r in at if r["who"] == REFERENCE), None)
        models = [r for r in at if r["who"] != REFERENCE]
        stable = [r["density_g_cm3"] for r in models if r["stable"] and "density_g_cm3" in r]
        entry = {
            "temperature_K": temperature,
            "reference_g_cm3": None if reference is None else reference.get("density_g_cm3"),
            "reference_stable": None if reference is None else reference["stable"],
            "models_g_cm3": [r.get("density_g_cm3") for r in models],
            "models_stable": [r["stable"] for r in models],
            "models_reason": [r["reason"] for r in models],
            "model_mean_g_cm3": float(np.mean(stable)) if stable else None,
            "model_std_g_cm3": float(np.std(stable)) if stable else None,
        }
        if entry["model_mean_g_cm3"] is not None and entry["reference_g_cm3"]:
            entry["relative_error"] = entry["model_mean_g_cm3"] / entry["reference_g_cm3"] - 1
        table.append(entry)
    return table
