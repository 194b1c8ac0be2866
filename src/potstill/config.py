"""Workflow configuration: one YAML file, one small pydantic model per stage.

Every section rejects unknown keys, so a typo is a one-line error naming the key and the
accepted ones (:func:`load_config`). Units are in the field names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class TranslateConfig(_Section):
    """Build the pool by translating another element's pool (seed 000, SI Note 6): scale
    by the ratio of relaxed ``structure`` lattice constants of ``from_reference`` and the
    run's ``reference``, then relabel with the run's reference."""

    source: str
    from_reference: str = "eam-ni"
    structure: Literal["fcc", "bcc", "hcp"] = "fcc"
    scale: float | None = None
    n: int | None = Field(None, gt=0)
    seed: int = 0


class WangLandauConfig(_Section):
    """Wang-Landau schedule of the MOMT bias (see :mod:`potstill.sampling.bias`)."""

    ln_f0: float = Field(1.0, gt=0)
    ln_f_final: float = Field(0.01, gt=0)
    flatness: float = Field(0.5, gt=0, lt=1)
    max_stage_updates: int = Field(20_000, gt=0)
    update_interval: int = Field(10, gt=0)
    min_mean_visits: float = Field(20.0, ge=0)
    max_steps: int = Field(2_000_000, gt=0)


class MomtConfig(_Section):
    """Multiorder-multithermal Wang-Landau MD (seed 000 SI Note 1, Table S1).

    ``h_range_eV``/``o_range``: the bias grid; when omitted they adapt to the potential
    from plain NPT runs at T0 started from the crystal and from a melt
    (``reference_steps`` each; also the plain-NPT comparison of the report).
    """

    temperature_K: float = Field(2000.0, gt=0)
    pressure_bar: float = 1.0
    h_range_eV: tuple[float, float] | None = None
    o_range: tuple[float, float] | None = None
    n_h_bins: int = Field(60, ge=4)
    n_o_bins: int = Field(100, ge=4)
    h_margin: float = Field(2.0, ge=0)
    reference_steps: int = Field(200_000, gt=0)
    wang_landau: WangLandauConfig = Field(default_factory=WangLandauConfig)
    n_frames: int = Field(20_000, gt=0)
    interval: int = Field(100, gt=0)
    timestep_fs: float = Field(1.0, gt=0)
    seed: int = 1


class SampleConfig(_Section):
    """LAMMPS MD sampling (NVT or NPT, Nose-Hoover) over a list of temperatures, from one
    starting ``structure`` or from each of several ``structures``."""

    sampler: Literal["md", "translate", "momt"] = "md"
    translate: TranslateConfig | None = None
    momt: MomtConfig | None = None
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
        if (self.sampler == "translate") != (self.translate is not None):
            raise ValueError("sampler: translate needs a `translate` section, and only it")
        if self.sampler == "momt" and self.momt is None:
            self.momt = MomtConfig()
        if self.sampler != "momt" and self.momt is not None:
            raise ValueError("a `momt` section needs sampler: momt")
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
    """Which frames of the pool to train on: ``all``, or ``n`` frames picked by the
    selector ``method`` of the registry (``random``, ``fps``, ``rnd``, ``committee``, ...;
    :mod:`potstill.selection`) built with ``options``, seeded with ``seed``."""

    method: str = "random"
    n: int = Field(200, gt=0)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        from potstill.selection import available

        if value != "all" and value not in available():
            raise ValueError(f"unknown selection method {value!r}; use 'all' or one of {available()}")
        return value


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


class _FanOut(_Section):
    """Where independent jobs (committee members, comparison runs) run: ``executor``
    ``serial`` (in this process), ``process`` (``workers`` local processes) or ``dask``
    (a local cluster, or the scheduler at ``scheduler_address``)."""

    executor: Literal["serial", "process", "dask"] = "serial"
    workers: int = Field(1, ge=1)
    scheduler_address: str | None = None


class DistillConfig(_FanOut):
    """Committee active-learning distillation (seed 000 SI Note 4; strategies, reference
    window and noise augmentation from seed 004). The committee is ``train.committee``
    models (3, 5 or 7) trained with the ``train`` settings.

    ``pool``: the store to distil (default: the run's ``pool.db``), read in sampling
    (id) order, every ``stride``-th frame, at most ``max_frames``; cut into ``n_chunks``
    sequential chunks. ``initial``: train iteration 0 on a random subset of chunk 0 of
    this size (default: all of it). A frame of the next chunk is kept when any atom's
    committee std of atomic energies exceeds ``mu + k_sigma * sigma`` of the atomic stds
    of the frames kept so far, or of the pool frames ``reference_window`` (start, stop).
    ``augment_copies``/``augment_delta_A``: copies per kept frame with uniform coordinate
    noise, relabeled by the run's reference (copy 0 is the frame itself).
    ``budget``: a labeling budget, at most this many pool frames kept (or this fraction
    of the pool, if < 1); a chunk whose frames above the threshold would exceed it keeps
    its highest-scoring ones up to the budget.
    ``final_pass``: after the last chunk, train the committee once more on the
    distilled set, with no new frames (``inherited``: members continue from their
    weights and keep their splits, so the small set gets more optimiser steps within
    the same ``train.max_epochs`` per training); recorded as iteration ``n_chunks``.
    ``baseline_run``: output directory of a distill run of the same pool with
    ``n_chunks: 1`` (the committee trained on all frames); its pool MAE and the ratio
    to it go into the summary and the curve.
    """

    pool: str | None = None
    stride: int = Field(1, ge=1)
    max_frames: int | None = Field(None, gt=0)
    n_chunks: int = Field(10, ge=1)
    initial: int | None = Field(None, ge=2)
    k_sigma: float = Field(4.0, gt=0)
    reference_window: tuple[int, int] | None = None
    strategy: Literal["random", "inherited"] = "random"
    augment_copies: int = Field(1, ge=1)
    augment_delta_A: float = Field(0.05, ge=0)
    evaluate_pool: bool = True
    budget: int | float | None = Field(None, gt=0)
    final_pass: bool = False
    baseline_run: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        if self.reference_window is not None and not 0 <= self.reference_window[0] < self.reference_window[1]:
            raise ValueError("reference_window must be (start, stop) pool positions with 0 <= start < stop")
        if isinstance(self.budget, float) and self.budget > 1:
            raise ValueError(f"budget {self.budget!r}: give a frame count (int) or a pool fraction 0 < f <= 1")
        return self


class PoolSpec(_Section):
    """Frames of a store, in id order: positions ``start:stop:stride``."""

    path: str
    start: int = Field(0, ge=0)
    stop: int | None = Field(None, gt=0)
    stride: int = Field(1, ge=1)


class SelectorSpec(_Section):
    """A selector of the registry with its options; ``label`` names it in results and
    plots (default: ``name``), so one selector can appear with two option sets."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


class MDCheckConfig(_Section):
    """The stability MD: Langevin NVT from test-pool frame ``start_frame``."""

    steps: int = Field(1000, ge=1)
    temperature_K: float = Field(300.0, gt=0)
    timestep_fs: float = Field(1.0, gt=0)
    friction_per_fs: float = Field(0.01, gt=0)
    interval: int = Field(10, ge=1)
    start_frame: int = Field(0, ge=0)
    min_distance_A: float = Field(1.5, gt=0)
    max_force_eV_per_A: float = Field(20.0, gt=0)
    max_drift_eV_per_atom: float = Field(0.5, gt=0)
    enabled: bool = True


class CompareConfig(_FanOut):
    """The ``compare`` section: pools, selectors x budgets x seeds, the stability MD and
    where training runs (``executor``: serial, process or dask, ``workers``)."""

    pool: PoolSpec
    test_pool: PoolSpec
    selectors: list[SelectorSpec]
    budgets: list[int | float]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    md: MDCheckConfig = Field(default_factory=MDCheckConfig)

    @field_validator("pool", "test_pool", mode="before")
    @classmethod
    def _path_shorthand(cls, value):
        return {"path": value} if isinstance(value, str) else value

    @field_validator("selectors", mode="before")
    @classmethod
    def _name_shorthand(cls, value):
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> "CompareConfig":
        if not self.selectors:
            raise ValueError("selectors is empty; name at least one (e.g. [random, fps])")
        labels = [s.key for s in self.selectors]
        if len(set(labels)) != len(labels):
            raise ValueError(f"selector labels must be unique, got {labels}; give `label` to tell them apart")
        if not self.budgets:
            raise ValueError("budgets is empty; give frame counts (16, 32) or pool fractions (0.05)")
        for b in self.budgets:
            if isinstance(b, bool) or b <= 0 or (isinstance(b, float) and b >= 1):
                raise ValueError(f"budget {b!r}: give a frame count >= 2 or a pool fraction 0 < f < 1")
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one seed")
        return self


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
    compare: CompareConfig | None = None
    distill: DistillConfig | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def load_config(path: str | Path, *, sampler: str | None = None) -> RunConfig:
    """Read and validate a workflow YAML; any problem is one :class:`PotstillError` line.

    ``sampler`` overrides ``sample.sampler`` (the CLI's ``--sampler``).
    """
    path = Path(path)
    if not path.exists():
        raise PotstillError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PotstillError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise PotstillError(f"{path} must hold a mapping of sections (sample, train, ...)")
    if sampler is not None:
        raw["sample"] = {**(raw.get("sample") or {}), "sampler": sampler}
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
