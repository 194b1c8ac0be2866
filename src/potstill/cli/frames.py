"""Commands on pools of frames: ``import``/``export`` (extxyz), ``translate`` (to another
element) and ``references`` (the kinds a config can name)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from potstill.cli.common import OVERWRITE, RESUME, app, echo_json, progress, record_next_to
from potstill.executors import make_executor
from potstill.references import available


@app.command("import", rich_help_panel="Pools")
def import_frames(
    path: Path = typer.Argument(..., help="extxyz file."),
    store: str = typer.Option(
        ..., "--store", help="Pool to add the frames to (file or database URL)."
    ),
) -> None:
    """Add the frames of an extxyz file to a pool (all or, for a bad file, none)."""
    from potstill.store import Store, read_extxyz

    frames = read_extxyz(path)  # checked before the pool is created or touched
    ids = Store(store).add(frames)
    typer.echo(f"added {len(ids)} frames to {store}")


@app.command("export", rich_help_panel="Pools")
def export_frames(
    store: str = typer.Argument(..., help="Pool (file or database URL)."),
    path: Path = typer.Argument(..., help="extxyz file to write."),
    selection: Optional[str] = typer.Option(
        None, help="ASE db selection, e.g. 'temperature_K>1000'."
    ),
) -> None:
    """Write frames of a pool to an extxyz file."""
    from potstill.store import Store

    n = Store(store, create=False).export_extxyz(path, selection)
    typer.echo(f"wrote {n} frames to {path}")


@app.command(rich_help_panel="Pools")
def references() -> None:
    """List the reference kinds configs can name."""
    typer.echo("\n".join(available()))


@app.command(rich_help_panel="Pools")
def translate(
    source: str = typer.Argument(..., help="Source pool (ASE db file or URL)."),
    to: str = typer.Option(..., "--to", help="Target reference kind, e.g. eam-al or uf3-nb."),
    from_: str = typer.Option("eam-ni", "--from", help="Reference kind of the source frames."),
    structure: str = typer.Option(
        "fcc", help="Crystal whose relaxed lattice constants give the scale: fcc, bcc or hcp."
    ),
    scale: Optional[float] = typer.Option(
        None, help="Use this scale factor instead of relaxing --structure."
    ),
    out: str = typer.Option(
        ..., "--out", "-o", help="New pool for the translated frames (e.g. RUN/pool.db)."
    ),
    n: Optional[int] = typer.Option(
        None, "--n", help="Translate a random subset of N frames (default: all)."
    ),
    seed: int = typer.Option(0, help="Seed of the random subset."),
    name: Optional[str] = typer.Option(
        None, "--name", help="Label name (default: eam for LAMMPS kinds, else the kind)."
    ),
    chunk: int = typer.Option(50, help="Frames per transaction and per labeling job."),
    executor: str = typer.Option(
        "auto", "--executor", help="Where labels run: auto, serial, process, dask."
    ),
    overwrite: bool = OVERWRITE,
    resume: bool = RESUME,
) -> None:
    """Scale SOURCE frames to the target element's lattice and relabel them into OUT."""
    from potstill.sampling.translate import translate_store

    started = time.time()
    inputs = {
        "source": str(source),
        "to": to,
        "from": from_,
        "structure": structure,
        "scale": scale,
        "out": str(out),
        "n": n,
        "seed": seed,
        "name": name,
        "chunk": chunk,
        "executor": executor,
    }
    with make_executor(executor) as pool, progress() as bars:
        results = translate_store(
            source,
            out,
            source_reference=from_,
            target_reference=to,
            structure=structure,
            scale_factor=scale,
            label=name,
            n=n,
            seed=seed,
            chunk=chunk,
            resume=resume,
            overwrite=overwrite,
            executor=pool,
            progress=bars,
        )
    record_next_to(
        out, "translate", command="translate", inputs=inputs, results=results, started=started
    )
    echo_json(results)
