"""IDEAL: on-the-fly learning that labels small embedded substructures (seed 003).

One YAML (``examples/ideal-lithium.yaml``) runs it; ``OUT/ideal/`` holds::

    initial.db     the initial data: crystal frames (rattled, strained) labeled whole
    <mode>/        one on-the-fly run per substructure mode (``ides``, and the
                   ablation's ``periodic`` and ``vacuum``): ``train.db`` (every
                   labeled frame), ``iter_<i>/`` (the model, the uncertainty's
                   statistics, the MD state and the trajectory segment since the last
                   update, ``iteration.json`` written last)
    baseline/      MD with the initial model alone (no learning), same start and seed
    test.db        whole frames of the ``ides`` trajectory labeled by the reference

and ``OUT/report/`` the figures and ``summary.json``. The loop of a run
(:mod:`potstill.workflows.ideal_loop`): iteration 0 trains the initial model on the
initial data and fits the Mahalanobis statistics of its atoms; every later iteration
continues the Langevin MD (:mod:`potstill.sampling.langevin`) with the current model
until an atom's uncertainty passes the threshold, cuts the substructures around the
uncertain atoms (:mod:`potstill.sampling.substructure`), labels them over the
executor, streams their atoms into the uncertainty's statistics and updates the model
on them plus a replay of earlier data (probability proportional to the model's
``MAE_E + MAE_F + 0.1 MAE_S`` on each frame, seed 003 SI S12). The run ends at the end
of the temperature schedule or when the MD is unphysical; after ``max_events``
updates the model is final and the MD runs on to the end of the schedule.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, model_validator

from potstill.models import ModelConfig
from potstill.references import ReferenceConfig
from potstill.rundir import RunDir
from potstill.sampling.substructure import SubstructureConfig
from potstill.settings import Section
from potstill.training.config import TrainConfig
from potstill.workflows import WorkflowConfig
from potstill.workflows import ideal_loop as loop
from potstill.workflows import ideal_report as report

__all__ = ["Config", "headline", "run"]


class SystemConfig(Section):
    """The crystal the MD starts from: ``structure`` of ``species[0]`` with the cubic
    ``lattice_A``, repeated ``repeat`` times (BCC: 2 atoms per cubic cell)."""

    structure: Literal["bcc", "fcc"] = "bcc"
    lattice_A: float = Field(3.506, gt=0)
    repeat: tuple[int, int, int] = (4, 4, 8)


class InitialConfig(Section):
    """The initial data: ``frames`` copies of the crystal repeated ``repeat`` times,
    every atom displaced by a Gaussian of ``rattle_A`` and the cell strained
    isotropically by up to ``strain`` (a low-temperature crystal); labeled whole."""

    frames: int = Field(20, ge=2)
    repeat: tuple[int, int, int] = (3, 3, 3)
    rattle_A: float = Field(0.08, ge=0)
    strain: float = Field(0.01, ge=0)
    seed: int = 0


class MDSettings(Section):
    """Langevin NVT (seed 003 SI S9): ``schedule`` ``[[steps, K], ...]``, the
    uncertainty checked every ``check_every`` steps, positions kept every
    ``frame_every`` steps; unphysical above ``blowup_K`` or below ``min_distance_A``."""

    timestep_fs: float = Field(1.0, gt=0)
    friction_per_fs: float = Field(0.01, gt=0)
    schedule: list[tuple[int, float]] = Field(default_factory=lambda: [(300, 200.0), (2700, 800.0)])
    check_every: int = Field(5, ge=1)
    frame_every: int = Field(20, ge=1)
    blowup_K: float = Field(5000.0, gt=0)
    min_distance_A: float = Field(1.2, ge=0)
    seed: int = 0

    @property
    def steps(self) -> int:
        return sum(int(n) for n, _ in self.schedule)

    @model_validator(mode="after")
    def _check(self) -> MDSettings:
        if not self.schedule or any(n < 1 or kelvin <= 0 for n, kelvin in self.schedule):
            raise ValueError(
                f"md.schedule must be [[steps, K], ...] blocks with steps >= 1 and K > 0, "
                f"got {self.schedule}"
            )
        return self


class UncertaintySettings(Section):
    """Per-atom uncertainty: ``mahalanobis``, the squared distance of the model's AEV
    (``descriptor: aev``) or of SOAP (``soap``, with ``soap`` options) to the training
    atoms (seed 003), or ``committee``, the members' std of atomic energies (eV; needs
    ``train.committee >= 2``); the threshold is ``mu + k_sigma sigma`` of the initial
    training atoms' scores."""

    kind: Literal["mahalanobis", "committee"] = "mahalanobis"
    descriptor: Literal["aev", "soap"] = "aev"
    soap: dict = Field(default_factory=dict)
    ridge: float = Field(1e-2, gt=0)
    k_sigma: float = Field(5.0, gt=0)


class UpdateConfig(Section):
    """Each model update: ``epochs`` of training (warm start, learning rate ``lr``: seed
    003's 1e-4, SI S12) on the new substructures plus ``replay`` earlier frames drawn by
    error; after ``max_events`` updates the model
    is final and the MD runs on to the end of the schedule."""

    epochs: int = Field(60, ge=1)
    lr: float = Field(1e-4, gt=0)
    replay: int = Field(16, ge=0)
    max_events: int = Field(60, ge=1)
    label_retries: int = Field(2, ge=0)
    seed: int = 0


class EvaluationConfig(Section):
    """``frames`` whole frames drawn evenly from the ``ides`` trajectory, labeled by
    the reference (seed 003 Table 1); ``ablation``: the other substructure modes run
    beside ``ides`` (Table 2); ``baseline``: MD with the initial model alone."""

    frames: int = Field(100, ge=0)
    ablation: list[Literal["periodic", "vacuum"]] = Field(
        default_factory=lambda: ["periodic", "vacuum"]
    )
    baseline: bool = True


def _train() -> TrainConfig:
    # forces first (they drive the MD): seed 001's energy and stress weights, with frames
    # of 50-100 atoms whose total energies and V sigma reach tens of eV, drown the force
    # term, and an update then fits the new substructures' forces worse than before
    return TrainConfig(
        committee=1,
        max_epochs=300,
        batch_size=4,
        lr=1e-3,
        alpha=0.05,
        beta=1.0,
        gamma=1e-5,
        best_by="loss",
    )


def _model() -> ModelConfig:
    # a 4.5 A environment keeps the substructures small enough for DFT (about 40-80 atoms)
    return ModelConfig(preset="demo", overrides={"radial_cutoff": 4.5})


class Config(WorkflowConfig):
    """``system``, ``initial``, ``md``, ``uncertainty``, ``substructure``, ``update``,
    ``evaluation``, ``model`` and ``train`` (``train`` trains the initial model)."""

    workflow: Literal["ideal"] = "ideal"
    species: list[str] = Field(default_factory=lambda: ["Li"])
    reference: ReferenceConfig = Field(
        default_factory=lambda: ReferenceConfig(kind="snap-li", name="snap")
    )
    system: SystemConfig = Field(default_factory=SystemConfig)
    initial: InitialConfig = Field(default_factory=InitialConfig)
    md: MDSettings = Field(default_factory=MDSettings)
    uncertainty: UncertaintySettings = Field(default_factory=UncertaintySettings)
    substructure: SubstructureConfig = Field(default_factory=SubstructureConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    model: ModelConfig = Field(default_factory=_model)
    train: TrainConfig = Field(default_factory=_train)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if len(self.species) != 1:
            raise ValueError(
                f"ideal runs a one-element crystal: species must be one element, got {self.species}"
            )
        if self.uncertainty.kind == "committee" and self.train.committee < 2:
            raise ValueError(
                "uncertainty.kind committee needs train.committee >= 2 members to disagree"
            )
        if self.substructure.mode != "ides":
            raise ValueError(
                "substructure.mode is set per run: leave it `ides`; the ablation adds the others"
            )
        return self


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """The initial data, the IDEAL run, the ablation runs, the no-learning baseline,
    the whole-frame test set and the report; returns the summary."""
    started = time.time()
    config.reference.build()  # bad reference options fail here, in one line
    stage = rundir.stage("ideal")
    stage.claim()
    stage.check_settings(
        config.model_dump(exclude={"workflow", "name", "executor", "evaluation"}),
        what="system, initial, md, uncertainty, substructure, update, model, train, species or reference",
    )
    initial = loop.initial_data(config, stage.root, progress=progress)
    runs = {"ides": loop.learn(config, stage.root, "ides", initial, progress=progress)}
    for mode in config.evaluation.ablation:
        runs[mode] = loop.learn(config, stage.root, mode, initial, progress=progress)
    baseline = (
        loop.baseline(config, stage.root, runs["ides"]) if config.evaluation.baseline else None
    )
    test = loop.test_frames(config, stage.root, runs["ides"], progress=progress)
    return report.write_report(config, stage, runs, baseline, test, started)


def headline(summary: dict) -> dict:
    """What ``potstill run`` prints: events, atoms per event, and the force errors."""
    s = summary.get("ideal") or {}
    ides = (s.get("runs") or {}).get("ides") or {}
    errors = s.get("errors") or {}
    return {
        "events": ides.get("events"),
        "atoms_per_event": ides.get("atoms_per_event"),
        "outcome": ides.get("outcome"),
        **{
            f"force_mae_{name}": (e.get("forces_eV_per_A") or {}).get("mae")
            for name, e in errors.items()
        },
        "wall_time_s": s.get("wall_time_s"),
    }
