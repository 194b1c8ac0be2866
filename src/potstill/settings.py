"""Configuration plumbing shared by every section of a workflow YAML.

Each stage and workflow owns its own small pydantic model (a :class:`Section`: unknown
keys are errors, so a typo names the key); this module only reads YAML and turns any
validation problem into one :class:`~potstill.errors.PotstillError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from potstill.errors import PotstillError

__all__ = ["Section", "build", "one_line", "read_mapping", "read_yaml", "validate"]

SectionT = TypeVar("SectionT", bound=BaseModel)


class Section(BaseModel):
    """A config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file; a missing, unreadable or non-mapping file
    is one :class:`PotstillError` line."""
    path = Path(path)
    if not path.exists():
        raise PotstillError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise PotstillError(f"{path} is not valid YAML: {reason}") from error
    if not isinstance(raw, dict):
        raise PotstillError(f"{path} must hold a mapping of sections (sample, train, ...)")
    return raw


def read_mapping(text: str) -> dict[str, Any]:
    """A mapping given on the command line: a YAML file's path, or YAML inline."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        return read_yaml(path)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PotstillError(
            f"{text!r} is not a YAML mapping: {' '.join(str(error).split())}"
        ) from error
    if not isinstance(value, dict):
        raise PotstillError(f"{text!r} is not a YAML mapping like '{{key: value}}'")
    return value


def validate(model: type[SectionT], raw: Any, *, where: str) -> SectionT:
    """``model.model_validate(raw)``; a problem is one :class:`PotstillError` line that
    starts with ``where`` (e.g. the file name)."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise PotstillError(f"{where}: {one_line(error)}") from error


def build(model: type[SectionT], **values: Any) -> SectionT:
    """``model(**values)`` from user input given in code or on the command line; a bad
    value is one :class:`PotstillError` line naming the section."""
    return validate(model, values, where=model.__name__)


def one_line(error: ValidationError) -> str:
    """Every problem of a pydantic ``ValidationError``, joined on one line."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}' (check spelling; see examples/*.yaml)")
        else:
            problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
