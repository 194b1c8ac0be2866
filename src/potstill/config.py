"""Workflow configuration: one YAML file, one small pydantic model per stage.

Every section rejects unknown keys, so a typo is a one-line error naming the key and the
accepted ones (:func:`load_config`). Units are in the field names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from potstill.errors import PotstillError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceConfig(_Section):
    """Which labeler gives the labels, and the name they are stored under."""

    kind: str = "eam-ni"
    name: str = "eam"
    options: dict[str, Any] = Field(default_factory=dict)


class StructureConfig(_Section):
    """Starting structure: ``ase.build.bulk(element, lattice, a=a_A, cubic=True)``
    repeated ``repeat`` times."""

    element: str = "Ni"
    lattice: Literal["fcc", "bcc", "hcp", "sc", "diamond"] = "fcc"
    a_A: float | None = None
    repeat: tuple[int, int, int] = (2, 2, 2)


class SampleConfig(_Section):
    """LAMMPS MD sampling (NVT or NPT, Nose-Hoover) over a list of temperatures, from one
    starting ``structure`` or from each of several ``structures``."""

    sampler: Literal["md"] = "md"
    structure: StructureConfig | None = None
    structures: list[StructureConfig] | None = None
    ensemble: Literal["nvt", "npt"] = "npt"
    temperatures_K: list[float] = Field(default_factory=lambda: [300.0, 1000.0, 1700.0, 2500.0])
    ramp: bool = False
    pressure_bar: float = 1.0
    timestep_fs: float = 1.0
    equilibration_steps: int = Field(1000, ge=0)
    steps_per_temperature: int = Field(20000, gt=0)
    interval: int = Field(100, gt=0)
    seed: int = 1

    def starts(self) -> list[StructureConfig]:
        """The starting structures: each is run through every temperature (seed + k)."""
        return self.structures or [self.structure or StructureConfig()]

    @model_validator(mode="after")
    def _check(self) -> "SampleConfig":
        if self.structure is not None and self.structures is not None:
            raise ValueError("give either `structure` or a list of `structures`, not both")
        if self.structures == []:
            raise ValueError("structures is empty; give at least one starting structure")
        if not self.temperatures_K:
            raise ValueError("temperatures_K is empty; give at least one temperature")
        if any(t <= 0 for t in self.temperatures_K):
            raise ValueError("temperatures_K must be positive (kelvin)")
        return self


class SelectConfig(_Section):
    """Which frames of the pool to train on."""

    method: Literal["random", "all"] = "random"
    n: int = Field(200, gt=0)
    seed: int = 0


class ModelConfig(_Section):
    """ANI model: a named preset plus overrides of its AEV or network settings."""

    preset: Literal["paper", "demo"] = "demo"
    overrides: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Section):
    """Committee training (seed 001 eq. 3 loss and optimiser recipe)."""

    committee: int = Field(3, ge=1)
    max_epochs: int = Field(400, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: list[float] = Field(default_factory=lambda: [1e-4, 1e-5, 1e-6, 0.0])
    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 0.025
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    scheduler_factor: float = Field(0.5, gt=0, lt=1)
    scheduler_patience: int = Field(100, ge=0)
    early_stopping_patience: int = Field(200, ge=1)
    best_by: Literal["energy", "forces", "stress", "loss"] = "energy"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if min(self.alpha, self.beta, self.gamma) < 0 or self.alpha + self.beta + self.gamma == 0:
            raise ValueError("alpha, beta, gamma must be >= 0 and not all zero")
        return self


class ValidateConfig(_Section):
    """Physics checks after training."""

    pool: bool = True
    crystals: list[Literal["fcc", "bcc", "hcp"]] = Field(default_factory=lambda: ["fcc", "bcc", "hcp"])
    elastic: bool = True
    element: str | None = None


class RunConfig(_Section):
    """A whole workflow: sample -> select -> train -> validate -> report."""

    name: str = "potstill"
    species: list[str] = Field(default_factory=lambda: ["Ni"])
    reference: ReferenceConfig = Field(default_factory=ReferenceConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a workflow YAML; any problem is one :class:`PotstillError` line."""
    path = Path(path)
    if not path.exists():
        raise PotstillError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PotstillError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise PotstillError(f"{path} must hold a mapping of sections (sample, train, ...)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise PotstillError(f"{path}: {_one_line(error)}") from error


def _one_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "config"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{where}' (check spelling; see examples/*.yaml)")
        else:
            problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
