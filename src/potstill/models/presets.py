"""Named ANI model presets and the ``model`` section of a workflow YAML.

``paper``: seeds 000/001, 224-192-160 per element with the 6.9 A radial AEV for metals;
``demo``: 64-48-32 on a smaller AEV, small enough to train on 2 CPU cores. A
:class:`ModelConfig` names a preset and overrides of its AEV or network settings; with
the run's species it becomes a :class:`ModelSpec`, the picklable recipe that committee
members are built from in any process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from potstill.aev.config import AEV_PRESETS
from potstill.settings import Section

__all__ = ["PRESETS", "ModelConfig", "ModelSpec"]

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"aev": AEV_PRESETS["paper"], "hidden": (224, 192, 160)},
    "demo": {"aev": AEV_PRESETS["demo"], "hidden": (64, 48, 32)},
}


@dataclass(frozen=True)
class ModelSpec:
    """A preset, the species and overrides: everything needed to build a fresh model
    (see :meth:`potstill.models.ani.ANIModel.from_preset`)."""

    preset: str
    species: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "species": list(self.species),
            "overrides": dict(self.overrides),
        }


class ModelConfig(Section):
    """ANI model: a named preset plus overrides of its AEV or network settings."""

    preset: Literal["paper", "demo"] = "demo"
    overrides: dict[str, Any] = Field(default_factory=dict)

    def spec(self, species) -> ModelSpec:
        """The model of this section for ``species`` (element symbols, in order)."""
        return ModelSpec(self.preset, tuple(species), dict(self.overrides))
