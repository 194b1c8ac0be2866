"""A workflow defined outside potstill, as a new method would be: one module with its
``Config`` and ``run``; registering it is one entry in ``potstill.workflows.WORKFLOWS``."""

from typing import Literal

import numpy as np

from potstill.frames import get_labels
from potstill.rundir import RunDir
from potstill.store import Store
from potstill.workflows import WorkflowConfig


class Config(WorkflowConfig):
    workflow: Literal["energy-range"] = "energy-range"
    pool: str


def run(config: Config, rundir: RunDir, *, progress=None) -> dict:
    stage = rundir.stage("energy-range")
    stage.claim()
    store = Store(config.pool, create=False)
    energies = [get_labels(a, config.reference.name).energy / len(a) for a in store.frames()]
    summary = {
        "n_frames": len(energies),
        "min_eV_per_atom": float(np.min(energies)),
        "max_eV_per_atom": float(np.max(energies)),
    }
    return stage.publish(summary, title="energy range")


def headline(summary: dict) -> dict:
    return summary
