"""The tables of ``low2high``: elastic constants of every model in the layout of seed
001 Tables 2-5 and S1-S4, model errors on pools, and the summary a script checks.

``report/summary.json`` gets, besides each stage's summary::

    elastic_GPa.<eam | dft | nnp_eam_initial | nnp_eam_finetuned | nnp_eam_final |
                 nnp_eam_finetuned_nostress | nnp_dft_scratch_initial | nnp_dft_scratch |
                 nnp_dft_transfer>.{a_A, C11, C12, C44, K, G, nu}
    error_percent.<model>.{...}      against eam (nnp_eam_*) or dft (nnp_dft_*)
    dft_heldout_errors.<model>.{energy_meV_per_atom, forces_eV_per_A, stress_GPa}.{mae, rmse}

The elastic constants of a model are computed once per set of weights (cached under
``elastic/`` by parameter checksum) and fan out over the executor.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from potstill.executors import ExecutorConfig, fan_out, make_executor
from potstill.models import PotstillCalculator, load_checkpoint, parameter_checksum, predict
from potstill.report.plots import new_figure, save_figure
from potstill.rundir import RunDir, read_record, write_json
from potstill.validation.elastic import SUMMARY_KEYS, fcc_elastic, percent_errors
from potstill.validation.metrics import pool_errors

__all__ = ["evaluate_models", "write_report"]

KEYS = ("a_A",) + SUMMARY_KEYS
_ERRORS = ("energy_meV_per_atom", "forces_eV_per_A", "stress_GPa")


def evaluate_models(models: dict, sets: dict, reference: str, executor: ExecutorConfig) -> dict:
    """``{model: {set: {energy_meV_per_atom, forces_eV_per_A, stress_GPa: {mae, rmse}}}}``
    of each checkpoint in ``models`` on each frame list in ``sets`` (``reference``
    labels)."""
    jobs = [
        (name, set_name, str(path), list(frames), reference)
        for name, path in models.items()
        for set_name, frames in sets.items()
    ]
    out: dict = {name: {} for name in models}
    with make_executor(executor, jobs=len(jobs)) as pool:
        for job, future in fan_out(pool, _errors_job, jobs):
            out[job[0]][job[1]] = future.result()
    return out


def _errors_job(job) -> dict:
    _, _, path, frames, reference = job
    errors = pool_errors(frames, predict(load_checkpoint(path), frames), reference)
    return {k: {m: errors[k][m] for m in ("mae", "rmse")} for k in _ERRORS if k in errors}


def _elastic_job(job) -> dict:
    """Elastic constants of one calculator: ``kind`` ``"reference"`` (a ReferenceConfig,
    the EAM) or ``"model"`` (a checkpoint path)."""
    _, _, kind, target, element, strain = job
    if kind == "reference":
        calc = target.build().calculator
    else:
        calc = PotstillCalculator(load_checkpoint(target))
    result = fcc_elastic(calc, element, strain=strain)
    return {k: result[k] for k in KEYS} | {"converged": bool(result["converged"])}


def elastic_table(config, rundir: RunDir, models: dict) -> dict:
    """``{model: {a_A, C11, ...}}`` for EAM and every checkpoint (cached by checksum)."""
    element = config.dft_elastic.element
    cache = rundir.path / "elastic"
    cache.mkdir(parents=True, exist_ok=True)
    jobs, results = [], {}
    targets = {"eam": ("reference", config.reference)} | {
        name: ("model", str(path)) for name, path in models.items()
    }
    for name, (kind, target) in targets.items():
        key = (
            parameter_checksum(load_checkpoint(target))
            if kind == "model"
            else config.reference.model_dump()
        )
        saved = read_record(cache / f"{name}.json")
        if saved is not None and saved.get("key") == key and saved.get("strain") == config.strain:
            results[name] = saved["results"]
            continue
        jobs.append((name, key, kind, target, element, config.strain))
    with make_executor(config.executor, jobs=len(jobs) or 1) as pool:
        for job, future in fan_out(pool, _elastic_job, jobs):
            name, key = job[:2]
            results[name] = future.result()
            write_json(
                cache / f"{name}.json",
                {"key": key, "strain": config.strain, "results": results[name]},
            )
    return results


def write_report(
    config, rundir: RunDir, *, models, pool_errors, dft_heldout, dft_reference, started
) -> dict:
    """Publish the ``low2high`` stage and the top-level keys of ``report/summary.json``."""
    stage = rundir.stage("low2high")
    stage.claim()
    elastic = elastic_table(config, rundir, models)
    elastic["dft"] = {k: dft_reference["reference"][k] for k in KEYS}
    elastic = {name: elastic[name] for name in ["eam", "dft", *models]}
    errors = {name: percent_errors(elastic[name], elastic[_against(name)], KEYS) for name in models}
    summary = {
        "elastic_GPa": elastic,
        "error_percent": errors,
        "dft_mesh_scan": [
            {k: m[k] for k in ("mesh", *KEYS, "wall_time_s")} for m in dft_reference["meshes"]
        ],
        "dft_mesh_change_percent": dft_reference["change_percent"],
        "dft_heldout_errors": {k: v["dft_heldout"] for k, v in dft_heldout.items()},
        "pool_errors": pool_errors,
        "wall_time_s": round(time.time() - started, 1),
    }
    figures = [
        _plot(errors, stage.report / "elastic_errors.png"),
        _plot_meshes(summary["dft_mesh_scan"], stage.report / "dft_mesh_scan.png"),
    ]
    stage.publish(
        summary,
        title=f"{config.name}: Low2High elastic constants (seed 001 Tables 2-5, S1-S4)",
        tables=_tables(elastic, errors),
        figures=figures,
    )
    merged = rundir.summary()
    merged.update(
        elastic_GPa=elastic,
        error_percent=errors,
        dft_heldout_errors=summary["dft_heldout_errors"],
    )
    write_json(rundir.report / "summary.json", merged)
    return merged


def _against(name: str) -> str:
    return "dft" if name.startswith("nnp_dft") else "eam"


def _tables(elastic: dict, errors: dict) -> list[tuple[str, str]]:
    """One markdown table per model, as seed 001: reference, model, error (%)."""
    header = "| | l_a (A) | C11 (GPa) | C12 (GPa) | C44 (GPa) | K (GPa) | G (GPa) | nu |"
    rule = "|---" * 8 + "|"

    def row(label, values, fmt):
        return f"| {label} | " + " | ".join(fmt(k, values[k]) for k in KEYS) + " |"

    def value(key, v):
        return f"{v:.3f}" if key in ("a_A", "nu") else f"{v:.1f}"

    tables = []
    for name, error in errors.items():
        ref = _against(name)
        lines = [
            header,
            rule,
            row(ref.upper(), elastic[ref], value),
            row(name, elastic[name], value),
            row("Error (%)", error, lambda k, v: f"{v:+.2f}"),
        ]
        tables.append((name, "\n".join(lines)))
    return tables


def _plot(errors: dict, path: Path) -> Path:
    """Bar chart of the C11, C12, C44 and G errors (%) of every model."""
    keys = ("C11", "C12", "C44", "G")
    names = list(errors)
    fig = new_figure(figsize=(9, 4))
    ax = fig.subplots()
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        ax.bar(np.arange(len(keys)) + i * width, [errors[name][k] for k in keys], width, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_ylabel("error vs reference (%)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _plot_meshes(scan: list[dict], path: Path) -> Path:
    """DFT C11, C12, C44, G (GPa) against the k-point mesh of the 4-atom cell."""
    fig = new_figure(figsize=(5, 3.5))
    ax = fig.subplots()
    meshes = [m["mesh"] for m in scan]
    for key in ("C11", "C12", "C44", "G"):
        ax.plot(meshes, [m[key] for m in scan], "o-", label=key)
    ax.set_xlabel("k-points per direction (4-atom cell)")
    ax.set_ylabel("GPa")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
