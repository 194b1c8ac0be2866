"""The stages of the standard workflow, each alone: ``sample``, ``label``, ``train``,
``validate``, and ``evaluate`` (a committee on any pool). Heavy modules are imported
inside the commands, so ``potstill --help`` stays instant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from potstill.cli.common import (
    CONFIG,
    OUT,
    OVERWRITE,
    RESUME,
    app,
    echo_json,
    progress,
    record_next_to,
)
from potstill.errors import PotstillError
from potstill.executors import ExecutorConfig, make_executor
from potstill.references import ReferenceConfig, default_name
from potstill.rundir import RunDir, claim_paths, write_record
from potstill.settings import build, read_mapping
from potstill.workflows import load_config


def _standard(config: Path, sampler: str | None = None):
    overrides = {"sample": {"sampler": sampler}} if sampler else None
    return load_config(config, workflow="standard", overrides=overrides)


def _rundir(out: Path, overwrite: bool, resume: bool) -> RunDir:
    return RunDir(out, overwrite=overwrite, resume=resume)


@app.command(rich_help_panel="Stages")
def sample(
    config: Path = CONFIG,
    out: Path = OUT,
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
    sampler: Optional[str] = typer.Option(
        None, "--sampler", help="Override `sample.sampler`: md, momt, translate."
    ),
) -> None:
    """Sample frames and store them, labeled, in OUT/pool.db."""
    from potstill.workflows import standard

    settings = _standard(config, sampler)
    with progress() as bars:
        results = standard.sample(settings, _rundir(out, overwrite, resume), progress=bars)
    echo_json(results)


@app.command(rich_help_panel="Stages")
def train(
    config: Path = CONFIG, out: Path = OUT, overwrite: bool = OVERWRITE, resume: bool = RESUME
) -> None:
    """Select training frames from OUT/pool.db and train a committee into OUT/train."""
    from potstill.workflows import standard

    settings = _standard(config)
    with progress() as bars:
        echo_json(standard.train(settings, _rundir(out, overwrite, resume), progress=bars))


@app.command(rich_help_panel="Stages")
def validate(
    config: Path = CONFIG, out: Path = OUT, overwrite: bool = OVERWRITE, resume: bool = RESUME
) -> None:
    """Validate OUT/train/committee.pt; write OUT/report/validate (summary.json, PNGs, HTML)."""
    from potstill.workflows import standard

    settings = _standard(config)
    rundir = _rundir(out, overwrite, resume)
    with progress() as bars:
        summary = standard.validate(settings, rundir, progress=bars)
    pool = {k: v for k, v in summary.get("pool", {}).items() if k != "errors"}
    echo_json(
        {
            "pool": pool,
            "wall_time_s": summary.get("wall_time_s"),
            "report": str(rundir.report / "index.html"),
        }
    )


_NAME = typer.Option(
    None, "--name", help="Label name (default: eam for LAMMPS kinds, else the kind)."
)
_CHUNK = typer.Option(
    50, min=1, help="Frames per job (and per transaction); 1 for expensive references."
)
_RETRIES = typer.Option(
    2, min=0, help="Tries after the first before a frame is recorded as failed."
)
_RETRY_FAILED = typer.Option(
    False, "--retry-failed", help="Try again the frames that failed before."
)
_EXECUTOR = typer.Option(
    "auto", "--executor", help="Where labels run: auto, serial, process, dask."
)
_WORKERS = typer.Option(None, "--workers", min=1, help="Parallel workers (default: the cores).")
_ADDRESS = typer.Option(None, "--address", help="A running Dask scheduler (with --executor dask).")
_OPTIONS = typer.Option(
    None, "--options", help="The reference's options: a YAML mapping, inline or a file."
)
_TIMEOUT = typer.Option(
    None, "--timeout-s", help="Stop a reference call after this many seconds (each runs alone)."
)


@app.command(rich_help_panel="Stages")
def label(
    store: str = typer.Argument(..., help="Pool (ASE db file or URL)."),
    reference: str = typer.Option(
        "eam-ni", "--reference", "-r", help="Reference kind (see `potstill references`)."
    ),
    name: Optional[str] = _NAME,
    chunk: int = _CHUNK,
    retries: int = _RETRIES,
    retry_failed: bool = _RETRY_FAILED,
    executor: str = _EXECUTOR,
    workers: Optional[int] = _WORKERS,
    address: Optional[str] = _ADDRESS,
    options: Optional[str] = _OPTIONS,
    timeout_s: Optional[float] = _TIMEOUT,
) -> None:
    """Label every frame of STORE that lacks labels of this reference, over the executor
    (resumable: stored labels are never recomputed; failures are recorded on the frames)."""
    from potstill.labeling.label import check_failures, label_store
    from potstill.store import Store

    started = time.time()
    target = build(
        ReferenceConfig,
        kind=reference,
        name=name or default_name(reference),
        options=read_mapping(options) if options else {},
        timeout_s=timeout_s,
    )
    frames = Store(store, create=False)
    where = build(ExecutorConfig, kind=executor, workers=workers, address=address)
    with make_executor(where) as pool, progress() as bars:
        results = label_store(
            frames,
            target,
            executor=pool,
            chunk=chunk,
            retries=retries,
            retry_failed=retry_failed,
            progress=bars,
        )
    inputs = {
        "store": store,
        "reference": target.model_dump(),
        "chunk": chunk,
        "retries": retries,
        "executor": where.model_dump(),
    }
    record_next_to(
        store,
        f"label-{target.name}",
        command="label",
        inputs=inputs,
        results=results,
        started=started,
    )
    echo_json({k: v for k, v in results.items() if k != "errors"})
    check_failures(
        results, f"rerun `potstill label {store} --reference {reference} --retry-failed`"
    )


@app.command(rich_help_panel="Stages")
def evaluate(
    committee: Path = typer.Argument(..., help="Trained committee, e.g. RUN/train/committee.pt."),
    pool: str = typer.Argument(
        ..., help="Any labeled pool (ASE db file or URL), e.g. an independent MOMT pool."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for evaluate.json and parity.png."
    ),
    name: str = typer.Option("eam", "--name", help="Label name of the reference values in POOL."),
    stride: int = typer.Option(
        1, "--stride", min=1, help="Every STRIDE-th frame of POOL (in id order)."
    ),
    overwrite: bool = OVERWRITE,
) -> None:
    """Energy, force and stress errors of COMMITTEE on POOL, with a parity plot."""
    from potstill.models import load_checkpoint, predict
    from potstill.report.plots import parity_panel
    from potstill.store import Store
    from potstill.validation.metrics import pair_errors, pool_pairs

    started = time.time()
    if not committee.exists():
        raise PotstillError(f"no trained committee at {committee}; run `potstill train` first")
    store = Store(pool, create=False)
    frames = store.get(store.ids()[::stride]) if stride > 1 else store.get()
    if not frames:
        raise PotstillError(f"the pool {pool} is empty")
    claim_paths(
        [out / "evaluate.json", out / "parity.png"],
        overwrite=overwrite,
        resume=False,
        what="evaluate",
    )
    model = load_checkpoint(committee)
    with progress() as bars:
        pairs = pool_pairs(frames, predict(model, frames, progress=bars), name)
    errors = pair_errors(pairs)
    out.mkdir(parents=True, exist_ok=True)
    parity_panel(
        pairs,
        path=out / "parity.png",
        title=f"{committee.parent.parent.name} on {Path(pool).name} ({len(frames)} frames)",
    )
    write_record(
        out / "evaluate.json",
        command="evaluate",
        inputs={"committee": str(committee), "pool": str(pool), "name": name, "stride": stride},
        results=errors,
        started=started,
    )
    echo_json(
        {
            "n_frames": errors["n_frames"],
            "energy_mae_meV_per_atom": errors["energy_meV_per_atom"]["mae"],
            "force_mae_eV_per_A": errors["forces_eV_per_A"]["mae"],
            "out": str(out),
            "wall_time_s": round(time.time() - started, 2),
        }
    )
