"""``low2high``: sample and train cheaply with EAM, relabel a few frames with DFT,
transfer (seed 001, "Enhancing High-Fidelity NNPs through Low-Fidelity Sampling").

Stages, each in its own folder of the run (all resumable)::

    eam/           the EAM data: an MOMT run (``eam_data.pool``); its last ``train_last``
                   frames train, the rest and ``eam_data.test_pools`` (test_<k>/) test
    initial/       NNP_EAM: a committee (``initial``, seed 001 2.2.2); the best member by
                   validation force RMSE is the initial NNP_EAM
    finetune/      that member fine-tuned on train + validation (``fine_tune``, 2.2.3:
                   input and output layers frozen); finetune_nostress/ the gamma = 0 ablation
                   (initial stage only, as Tables S3-S4)
    deform/        deformation MD (the ``deform`` sampler, 2.1.2); frames with an atomic
                   committee UQ above mu + k sigma (``uq_k``) of the atomic UQs of the
                   deformation frames (or, ``uq_window: train``, of the training data)
                   are kept (2.1.3)
    final/         committee retrained on both, its best member fine-tuned: final NNP_EAM
    relabel/       frames chosen for DFT from both sets within a budget (``relabel``),
                   labeled by ``high_fidelity`` over the executor (relabel/dft.db)
    dft/           NNP_DFT from scratch (initial recipe, then the same fine-tune) and by
                   transfer (final NNP_EAM fine-tuned on the DFT frames); held-out errors
    dft_elastic/   DFT lattice and elastic constants over k meshes (:mod:`.low2high_dft`)
    report/        tables in the layout of seed 001 Tables 2-5, S1-S4; summary.json with
                   ``elastic_GPa.<model>.{a_A, C11, C12, C44, K, G, nu}``

Steps live in :mod:`potstill.workflows.low2high_steps`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator

from potstill.models import ModelConfig
from potstill.references import ReferenceConfig
from potstill.rundir import RunDir
from potstill.sampling import sampler_config
from potstill.selection import SelectConfig
from potstill.settings import Section
from potstill.training.config import TrainConfig
from potstill.workflows import WorkflowConfig
from potstill.workflows import low2high_steps as steps
from potstill.workflows.low2high_dft import DFTElasticConfig, dft_elastic

__all__ = ["Config", "headline", "run"]


def _initial() -> TrainConfig:
    """Seed 001 2.2.2: 5 models, (1.0, 0.1, 0.025), 400 epochs, best by energy."""
    return TrainConfig(committee=5, max_epochs=400, scheduler_patience=100, best_by="energy")


def _fine_tune() -> TrainConfig:
    """Seed 001 2.2.3: (0.2, 0.4, 0.4), lr 1e-4 / 1e-5, plateau 0.8 / 50, 1,000 epochs,
    best by stress, input and output layers frozen."""
    return TrainConfig(
        committee=1,
        max_epochs=1000,
        alpha=0.2,
        beta=0.4,
        gamma=0.4,
        lr=1e-4,
        bias_lr=1e-5,
        scheduler_factor=0.8,
        scheduler_patience=50,
        early_stopping_patience=1000,
        best_by="stress",
        freeze=["input", "output"],
    )


class EAMDataConfig(Section):
    """``pool``: the sampler section of the EAM run (MOMT); its last ``train_last``
    frames are the training data, the rest a test set; ``test_pools``: more sampler
    sections whose frames only test (the paper's 108-atom pool)."""

    pool: Any = Field(default_factory=lambda: sampler_config({"sampler": "momt"}))
    train_last: int = Field(2000, gt=1)
    test_pools: list[Any] = Field(default_factory=list)

    @field_validator("pool", mode="before")
    @classmethod
    def _pool(cls, value: Any) -> Any:
        return sampler_config(value)

    @field_validator("test_pools", mode="before")
    @classmethod
    def _tests(cls, value: Any) -> Any:
        return [sampler_config(v) for v in value or []]


class RelabelConfig(Section):
    """Frames to label with the high fidelity: ``n_train`` chosen by ``select`` (default
    the final committee's UQ: the most uncertain frames, ``info["uq_eV"]``), a share
    ``deform_share`` of them from the deformation frames and the rest from the EAM
    data; ``n_test`` more held out at random (seed ``seed``) from the frames not chosen.
    ``retries``: extra tries of a frame whose calculation fails."""

    n_train: int = Field(40, ge=2)
    n_test: int = Field(12, ge=1)
    deform_share: float = Field(0.5, ge=0, le=1)
    select: SelectConfig = Field(
        default_factory=lambda: SelectConfig(
            method="threshold", n=1, options={"score": "uq_eV", "k": 0.0}
        )
    )
    seed: int = 0
    retries: int = Field(1, ge=0)


class Config(WorkflowConfig):
    """``reference``: the low fidelity (EAM); ``high_fidelity``: the DFT reference;
    the sections of the stages in the module docstring."""

    workflow: Literal["low2high"] = "low2high"
    high_fidelity: ReferenceConfig = Field(
        default_factory=lambda: ReferenceConfig(
            kind="gpaw", name="dft", options={"cutoff_eV": 300, "kpts": [3, 3, 3]}
        )
    )
    eam_data: EAMDataConfig = Field(default_factory=EAMDataConfig)
    deform: Any = Field(default_factory=lambda: sampler_config({"sampler": "deform"}))
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(preset="paper"))
    initial: TrainConfig = Field(default_factory=_initial)
    fine_tune: TrainConfig = Field(default_factory=_fine_tune)
    ablation: bool = True
    uq_k: float = 3.0
    uq_window: Literal["deform", "train"] = "deform"
    relabel: RelabelConfig = Field(default_factory=RelabelConfig)
    dft_elastic: DFTElasticConfig = Field(default_factory=DFTElasticConfig)
    strain: float = Field(0.01, gt=0, lt=0.1)

    @field_validator("deform", mode="before")
    @classmethod
    def _deform(cls, value: Any) -> Any:
        return sampler_config({"sampler": "deform", **(value or {})})


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    """Every stage in order (see the module docstring); returns the run's summary."""
    started = time.time()
    config.high_fidelity.build()  # bad DFT options fail here, in one line, not per frame
    data = steps.eam_data(config, rundir, progress=progress)
    initial = steps.nnp_eam(config, rundir, data.train, "initial", progress=progress)
    deform = steps.deform_frames(config, rundir, initial, data, progress=progress)
    final = steps.nnp_eam(config, rundir, data.train + deform, "final", progress=progress)
    relabeled = steps.relabel(config, rundir, data, deform, final, progress=progress)
    dft = steps.nnp_dft(config, rundir, relabeled, final, progress=progress)
    stage = rundir.stage("dft_elastic")
    stage.claim()
    reference = dft_elastic(config.dft_elastic, config.high_fidelity, stage.root)
    return steps.report(config, rundir, data, initial, final, dft, reference, started)


def headline(summary: dict) -> dict:
    """What ``potstill run`` prints: the elastic constants error table (percent)."""
    return (summary.get("low2high") or {}).get("error_percent", {}) | {
        "wall_time_s": (summary.get("low2high") or {}).get("wall_time_s")
    }
