"""What every ``potstill`` command shares: the app, its options, progress and output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from potstill.rundir import jsonable

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
    """A rich progress display for long stages."""
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
    )


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (numpy values and paths included)."""
    typer.echo(json.dumps(data, indent=2, default=jsonable))
