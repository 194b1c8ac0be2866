"""What every ``potstill`` command shares: the app, its options, progress and output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from potstill.rundir import jsonable, write_record

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Distil cheap simulations into small training sets; train, validate and report NNPs.",
)

OUT = typer.Option(
    Path("runs/potstill"), "--out", "-o", help="Run directory (pool.db, train/, report/)."
)
OVERWRITE = typer.Option(False, "--overwrite", help="Replace earlier outputs of this command.")
RESUME = typer.Option(
    False, "--resume", help="Keep finished outputs (pool, trained members, labels) and continue."
)
CONFIG = typer.Argument(..., help="Workflow YAML.")


def progress():
    """A rich progress display for long stages, on stderr (stdout carries the results)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=Console(stderr=True),
    )


def record_next_to(store: str, suffix: str, **record: Any) -> None:
    """Write a command's record beside the store file it worked on (``pool.<suffix>.json``);
    a database URL has no folder to write it in."""
    if "://" not in str(store):
        write_record(Path(store).with_suffix(f".{suffix}.json"), **record)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (numpy values and paths included)."""
    typer.echo(json.dumps(data, indent=2, default=jsonable))
