"""The ``train`` section of a workflow YAML: committee size, loss weights, optimiser."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from potstill.settings import Section

__all__ = ["TrainConfig"]


class TrainConfig(Section):
    """Committee training (seed 001 eq. 3 loss and optimiser recipe).

    ``committee``: members K; ``alpha``, ``beta``, ``gamma``: weights of the energy,
    force and stress terms; ``lr``: AdamW (weights) and SGD (biases) learning rate;
    ``weight_decay``: per layer position; ``scheduler_*``: ReduceLROnPlateau on the
    validation ``best_by`` RMSE; ``seed``: member k starts from ``seed + k``.

    Fine-tuning by transfer learning (seed 001 section 2.2.3): ``freeze`` fixes the
    weights and biases of the ``input`` (AEV -> first hidden) and/or ``output`` (last
    hidden -> energy) layer of every element's network; ``bias_lr`` is the biases' SGD
    learning rate when it differs from ``lr`` (1e-5 against 1e-4 in the paper).
    """

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
    freeze: list[Literal["input", "output"]] = Field(default_factory=list)
    bias_lr: float | None = Field(None, gt=0)
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if min(self.alpha, self.beta, self.gamma) < 0 or self.alpha + self.beta + self.gamma == 0:
            raise ValueError("alpha, beta, gamma must be >= 0 and not all zero")
        return self
