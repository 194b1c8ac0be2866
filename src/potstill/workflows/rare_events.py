"""Rare events: active learning of a bond-breaking barrier along steered MD (seed 004).

One YAML (``examples/rare-events-hexane.yaml``) runs it; ``OUT/rare_events/`` holds::

    reference/     the molecule relaxed by the reference; per thermal start ``s``:
                   ``start_<s>.json`` (equilibrated positions and momenta, the start of
                   every SMD run), ``equilibration_<s>.npz`` and ``smd_<s>.npz`` (the
                   reference's SMD: work curve, frames); start 0's SMD, every
                   ``test_every``-th frame, is the unseen test set; the spread of E_a
                   over the starts is reported beside the result
    <run>/         one active-learning run per ``learning.runs`` entry (``random-3``,
                   ``inherited-7``, ...): ``train.db`` (every labeled frame),
                   ``iter_<i>/`` (members, the best member's SMD, its committee UQ,
                   ``iteration.json`` written last: a finished iteration)
    loading/       the loading-rate study: reference and NNP SMD at each speed

and ``OUT/report/`` the figures and ``summary.json``. The loop per run
(:mod:`potstill.workflows.rare_events_loop`): iteration 0 trains a committee on frames
of the reference's equilibration (no bond broken); every iteration, the committee's best
member (lowest force MAE on its own data) drives an SMD run from the stored start; the
committee's std of the total energy scores its frames; the frames above ``mu + k sigma``
of the first ``uq_window`` SMD frames that moved on (distance and energy) from the last
kept one, with every atom bonded, up to ``max_new`` spread along the trajectory, and
``augment_copies`` noisy copies of each are labeled by the reference over the executor
and added; the committee is retrained (``random`` or ``inherited``). The loop stops when
``|E_a(NNP) - E_a(reference)| < target`` for ``hold`` iterations in a row, after ``max_iterations``, or when an iteration found no
frame to add.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, model_validator

from potstill.models import ModelConfig
from potstill.rundir import RunDir
from potstill.settings import Section
from potstill.training.config import TrainConfig
from potstill.workflows import WorkflowConfig
from potstill.workflows import rare_events_loop as loop
from potstill.workflows import rare_events_reference as reference
from potstill.workflows import rare_events_report as report

__all__ = ["Config", "LearningConfig", "RunSpec", "SMDConfig", "headline", "run"]

KCAL_PER_MOL_PER_EV = 23.060548


class SMDConfig(Section):
    """The molecule and seed 004's SMD protocol (times in fs, lengths in A).

    An all-trans alkane of ``n_carbons`` (n-hexane: 6) relaxed by the reference to
    ``relax_fmax_eV_per_A``; ``pulled``: the two atoms pulled apart (default: the
    terminal carbons). Equilibration at ``temperature_K``: ``langevin_steps`` of
    Langevin (``langevin_damping_fs``; no friction on the pulled atoms), then
    ``berendsen_steps`` of Berendsen (``berendsen_taut_fs``), which stays on while
    pulling; the spring (``k_eV_per_A2``) moves at ``speed_A_per_ps`` over
    ``distance_A``. E_a is the mean work over the last ``plateau_steps`` steps.
    ``thermal_starts``: equilibrations (seeds ``seed``, ``seed + 1``, ...) whose
    reference E_a spread is reported; start 0 is the start of every run.
    ``initial_every``/``test_every``: the equilibration frames kept as initial data,
    the reference SMD frames kept as the unseen test set.
    """

    n_carbons: int = Field(6, ge=2)
    pulled: tuple[int, int] | None = None
    relax_fmax_eV_per_A: float = Field(0.01, gt=0)
    timestep_fs: float = Field(0.5, gt=0)
    temperature_K: float = Field(10.0, gt=0)
    langevin_steps: int = Field(1000, ge=0)
    langevin_damping_fs: float = Field(100.0, gt=0)
    berendsen_steps: int = Field(1000, ge=0)
    berendsen_taut_fs: float = Field(100.0, gt=0)
    k_eV_per_A2: float = Field(10.0, gt=0)
    speed_A_per_ps: float = Field(1.0, gt=0)
    distance_A: float = Field(3.5, gt=0)
    plateau_steps: int = Field(100, ge=1)
    thermal_starts: int = Field(3, ge=1)
    initial_every: int = Field(10, ge=1)
    test_every: int = Field(5, ge=1)
    seed: int = 0

    def steps(self, speed_A_per_ps: float | None = None) -> int:
        """SMD steps to pull ``distance_A`` at ``speed_A_per_ps`` (default: the config's)."""
        speed = speed_A_per_ps or self.speed_A_per_ps
        return int(round(self.distance_A / (speed * self.timestep_fs / 1000.0)))

    @model_validator(mode="after")
    def _check(self) -> SMDConfig:
        if self.pulled is not None and self.pulled[0] == self.pulled[1]:
            raise ValueError("smd.pulled must name two different atoms")
        if self.steps() <= self.plateau_steps:
            raise ValueError(
                f"the pull lasts {self.steps()} steps, not more than plateau_steps = "
                f"{self.plateau_steps}; pull further or average fewer steps"
            )
        return self


class RunSpec(Section):
    """One active-learning run: its ``name``, data ``strategy``, ``committee`` size,
    whether selected frames get noisy copies (``augment``) and, when it should stop
    earlier than ``learning.max_iterations``, its own ``max_iterations``."""

    name: str
    strategy: Literal["random", "inherited"] = "inherited"
    committee: int = Field(7, ge=2)
    augment: bool = True
    max_iterations: int | None = Field(None, ge=1)


def _runs() -> list[RunSpec]:
    return [
        RunSpec(name="inherited-7", committee=7),
        RunSpec(name="random-3", strategy="random", committee=3),
        RunSpec(name="inherited-3", committee=3),
        RunSpec(name="inherited-5", committee=5),
        RunSpec(name="inherited-7-no-augmentation", committee=7, augment=False),
    ]


class LearningConfig(Section):
    """The active-learning loop (seed 004).

    ``uq_window``: the first SMD frames whose committee energy std gives ``mu`` and
    ``sigma``; candidates lie above ``mu + k_sigma * sigma``; a candidate is kept when,
    since the last kept frame, the pulled distance moved more than
    ``min_distance_change_A`` and the energy changed more than
    ``min_energy_change_kcal_per_mol``, and every atom has a neighbour within
    ``neighbour_A``; at most ``max_new`` per iteration, evenly spread over the kept
    ones. ``augment_copies`` noisy copies per kept frame (uniform noise of
    ``augment_delta_A`` on every coordinate). Stop when the E_a error is below
    ``target_kcal_per_mol`` for ``hold`` iterations in a row, or after
    ``max_iterations`` (iteration 0 included). ``warm_epochs``: the epochs of a
    warm-started (``inherited``) retraining, when fewer than ``train.max_epochs`` are
    enough to continue from the previous weights. ``label_retries``: retries of a failed
    reference call before the frame is recorded and left out.
    """

    runs: list[RunSpec] = Field(default_factory=_runs)
    max_iterations: int = Field(12, ge=1)
    target_kcal_per_mol: float = Field(1.0, gt=0)
    hold: int = Field(2, ge=1)
    uq_window: int = Field(1000, ge=2)
    k_sigma: float = Field(3.0, gt=0)
    max_new: int = Field(50, ge=1)
    min_distance_change_A: float = Field(0.01, ge=0)
    min_energy_change_kcal_per_mol: float = Field(1.0, ge=0)
    neighbour_A: float = Field(3.0, gt=0)
    augment_copies: int = Field(2, ge=0)
    augment_delta_A: float = Field(0.05, ge=0)
    warm_epochs: int | None = Field(None, ge=1)
    label_retries: int = Field(2, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> LearningConfig:
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"learning.runs need distinct names, got {names}")
        return self


class LoadingConfig(Section):
    """The loading-rate study (seed 004, Fig. S7): SMD of the reference and of the
    final best member of run ``run`` at each of ``speeds_A_per_ps`` (empty: skipped)."""

    run: str = "inherited-7"
    speeds_A_per_ps: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])


def _train() -> TrainConfig:
    return TrainConfig(alpha=1.0, beta=0.1, gamma=0.0, best_by="loss", max_epochs=200)


class Config(WorkflowConfig):
    """``smd``, ``learning``, ``loading``, ``model`` and ``train`` (``train.committee``
    is set per run by ``learning.runs``)."""

    workflow: Literal["rare_events"] = "rare_events"
    species: list[str] = Field(default_factory=lambda: ["H", "C"])
    smd: SMDConfig = Field(default_factory=SMDConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    loading: LoadingConfig = Field(default_factory=LoadingConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=_train)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if set(self.species) != {"H", "C"}:
            raise ValueError(
                f"rare_events pulls an alkane: species must be [H, C], got {self.species}"
            )
        names = [r.name for r in self.learning.runs]
        if self.loading.speeds_A_per_ps and self.loading.run not in names:
            raise ValueError(
                f"loading.run {self.loading.run!r} is not one of learning.runs {names}"
            )
        return self


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """The reference runs, every active-learning run, the loading-rate study and the
    report; returns the summary."""
    started = time.time()
    config.reference.build()  # bad reference options fail here, in one line
    stage = rundir.stage("rare_events")
    stage.claim()
    stage.check_settings(
        config.model_dump(include={"species", "reference", "smd", "model", "train"})
        | {"learning": config.learning.model_dump(exclude={"runs", "max_iterations"})},
        what="smd, learning, model, train, species or reference",
    )
    ref = reference.reference_runs(config, stage.root, progress=progress)
    runs, loading = {}, {}
    for spec in config.learning.runs:
        runs[spec.name] = loop.learn(config, stage.root, spec, ref, progress=progress)
        if spec.name == config.loading.run:  # as soon as its model is final
            loading = reference.loading_study(
                config, stage.root, runs[spec.name], ref, progress=progress
            )
    return report.write_report(config, stage, ref, runs, loading, started)


def headline(summary: dict) -> dict:
    """What ``potstill run`` prints: the reference E_a and each run's last error."""
    s = summary.get("rare_events") or {}
    return {
        "reference_Ea_kcal_per_mol": (s.get("reference") or {}).get("Ea_kcal_per_mol"),
        **{
            name: (r.get("abs_error_kcal_per_mol") or [None])[-1]
            for name, r in (s.get("runs") or {}).items()
        },
        "wall_time_s": s.get("wall_time_s"),
    }
