"""``potstill run CONFIG`` and one command per registered workflow (``potstill distill``,
``potstill compare-selectors``, ...): the registry, not this module, knows them."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from potstill.cli.common import CONFIG, OUT, OVERWRITE, RESUME, app, echo_json, progress
from potstill.rundir import RunDir, write_record
from potstill.workflows import WORKFLOWS, get_workflow, load_config


def run_workflow(
    config: Path, out: Path, *, overwrite: bool, resume: bool, workflow: str | None
) -> None:
    """Validate ``config`` as workflow ``workflow`` (default: the file's), run it in
    ``out``, record it in ``out/run.json`` and print its headline."""
    started = time.time()
    settings = load_config(config, workflow=workflow)
    module = get_workflow(settings.workflow)
    rundir = RunDir(out, overwrite=overwrite, resume=resume)
    with progress() as bars:
        summary = module.run(settings, rundir, progress=bars)
    write_record(
        rundir.path / "run.json",
        command=f"run {settings.workflow}",
        inputs=settings.model_dump(by_alias=True),
        results={"config": str(config), "report": str(rundir.report / "index.html")},
        started=started,
    )
    typer.echo(f"report: {rundir.report / 'index.html'}")
    if hasattr(module, "headline"):
        echo_json(module.headline(summary))


@app.command(rich_help_panel="Workflows")
def run(
    config: Path = CONFIG, out: Path = OUT, overwrite: bool = OVERWRITE, resume: bool = RESUME
) -> None:
    """Run the workflow the YAML names (`workflow:`; standard when it names none)."""
    run_workflow(config, out, overwrite=overwrite, resume=resume, workflow=None)


@app.command("workflows", rich_help_panel="Workflows")
def list_workflows() -> None:
    """List the workflows a YAML can name."""
    for name, entry in sorted(WORKFLOWS.items()):
        typer.echo(f"{name}: {entry.help}")


def _workflow_command(name: str, help: str) -> None:
    def command(
        config: Path = CONFIG, out: Path = OUT, overwrite: bool = OVERWRITE, resume: bool = RESUME
    ) -> None:
        run_workflow(config, out, overwrite=overwrite, resume=resume, workflow=name)

    command.__doc__ = help
    app.command(name, rich_help_panel="Workflows")(command)


for _name, _entry in WORKFLOWS.items():
    if _name != "standard":  # the standard workflow's stages have commands of their own
        _workflow_command(_name, _entry.help)
