"""Workflows: one module per method, found through one registry.

A workflow module owns its configuration and its run:

- ``Config``: a :class:`WorkflowConfig` (the sections every workflow has: ``workflow``,
  ``name``, ``species``, ``reference``, ``executor``) plus its own sections;
- ``run(config, rundir, *, progress=None) -> dict``: the method, stage by stage, in a
  :class:`~potstill.rundir.RunDir`; returns its summary;
- optionally ``headline(summary)``: the few numbers the CLI prints.

A YAML names its ``workflow:`` (``standard`` when it does not); :func:`load_config`
validates it with that module's ``Config``. Adding a method is one new module and one
entry in :data:`WORKFLOWS` (its module and a line of help, so ``potstill --help`` lists
it without importing it); the CLI gives every workflow its own command
(``potstill <name> CONFIG``) besides ``potstill run CONFIG``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ase.data import atomic_numbers
from pydantic import Field, field_validator

from potstill.errors import PotstillError
from potstill.executors import ExecutorConfig
from potstill.references import ReferenceConfig
from potstill.settings import Section, read_yaml, validate

__all__ = ["WORKFLOWS", "Entry", "WorkflowConfig", "available", "get_workflow", "load_config"]


@dataclass(frozen=True)
class Entry:
    """A registered workflow: its module and one line of help."""

    module: str
    help: str


WORKFLOWS: dict[str, Entry] = {
    "standard": Entry(
        "potstill.workflows.standard", "Sample, select, train a committee, validate and report."
    ),
    "distill": Entry(
        "potstill.workflows.distill",
        "Committee active-learning distillation of a pool into OUT/distill (seed 000, SI Note 4).",
    ),
    "low2high": Entry(
        "potstill.workflows.low2high",
        "EAM sampling and training, DFT relabeling of a few frames, transfer learning (seed 001).",
    ),
    "rare_events": Entry(
        "potstill.workflows.rare_events",
        "Active learning of a bond-breaking barrier along steered MD, tight-binding labels (seed 004).",
    ),
    "ideal": Entry(
        "potstill.workflows.ideal",
        "On-the-fly MD learning on embedded substructures around uncertain atoms (seed 003).",
    ),
    "compare-selectors": Entry(
        "potstill.workflows.compare",
        "Benchmark selectors x budgets x seeds on a held-out test pool -> OUT/compare.",
    ),
}


class WorkflowConfig(Section):
    """The sections every workflow has: which ``workflow``, the run's ``name``, the
    elements of its models (``species``), the ``reference`` that labels its frames and
    the ``executor`` its independent jobs run on."""

    workflow: str = "standard"
    name: str = "potstill"
    species: list[str] = Field(default_factory=lambda: ["Ni"])
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @field_validator("species")
    @classmethod
    def _elements(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in atomic_numbers]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"species must be distinct element symbols like 'Ni', got {value}")
        return value


def available() -> list[str]:
    """Registered workflow names."""
    return sorted(WORKFLOWS)


def get_workflow(name: str) -> ModuleType:
    """The module of workflow ``name`` (imported on first use)."""
    if name not in WORKFLOWS:
        raise PotstillError(f"unknown workflow {name!r}; available workflows are {available()}")
    return importlib.import_module(WORKFLOWS[name].module)


def load_config(
    path: str | Path, *, workflow: str | None = None, overrides: dict[str, dict] | None = None
) -> Any:
    """Read and validate a workflow YAML; any problem is one :class:`PotstillError` line.

    ``workflow`` (a command's own workflow) must agree with the file's ``workflow:``;
    ``overrides`` update sections key by key (the CLI's ``--sampler``).
    """
    raw = read_yaml(path)
    named = raw.get("workflow")
    if named is not None and not isinstance(named, str):
        raise PotstillError(f"{path}: workflow must be a name, one of {available()}; got {named!r}")
    if workflow is not None and named is not None and named != workflow:
        raise PotstillError(
            f"{path} is a `{named}` workflow, not `{workflow}`; run it with `potstill run {path}`"
        )
    name = workflow or named or "standard"
    for section, values in (overrides or {}).items():
        current = raw.get(section) or {}
        if not isinstance(current, dict):
            raise PotstillError(f"{path}: `{section}` must be a mapping of keys, got {current!r}")
        raw[section] = {**current, **values}
    return validate(get_workflow(name).Config, {**raw, "workflow": name}, where=str(path))
