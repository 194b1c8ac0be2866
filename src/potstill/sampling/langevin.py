"""Resumable Langevin NVT in ASE, watched by a per-atom uncertainty (seed 003, SI S9).

:func:`run_langevin` moves an :class:`MDState` (positions, momenta, the step, the
thermostat's random generator) with any ASE calculator, ``check_every`` steps at a
time; after each chunk it records the temperature, the potential energy per atom and
the largest and mean atom score of ``score(atoms)``, and stops early when

- an atom scores above ``threshold`` (``"flagged"``: the on-the-fly learner labels and
  retrains, then calls it again on the returned state),
- the run is unphysical (``"unstable"``: temperature above ``blowup_K`` or two atoms
  closer than ``min_distance_A``),

or at ``end_step`` (``"finished"``). The state after a call holds everything to
continue the same trajectory: run from a saved state with the same calculator, the
steps that follow are the ones an uninterrupted run would have made.

Temperatures follow ``schedule``: ``[[steps, K], ...]`` blocks one after another (seed
003: 200 K, then 800 K through melting). Units: fs, K, eV, A.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.neighborlist import neighbor_list

from potstill.errors import PotstillError

__all__ = ["TRACE_KEYS", "MDState", "Segment", "run_langevin", "temperature_at"]

TRACE_KEYS = ("step", "temperature_K", "energy_eV_per_atom", "max_score", "mean_score")


@dataclass
class MDState:
    """Where a trajectory is: ``atoms`` (positions A, momenta amu A/fs as ASE keeps
    them, cell), the MD ``step`` and the thermostat generator's ``rng_state``."""

    atoms: Atoms
    step: int
    rng_state: dict

    @classmethod
    def start(cls, atoms: Atoms, temperature_K: float, seed: int) -> MDState:
        """Velocities drawn at ``temperature_K`` (seeded, no net momentum), step 0."""
        atoms = atoms.copy()
        rng = np.random.default_rng(seed)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
        Stationary(atoms)
        return cls(atoms, 0, rng.bit_generator.state)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            numbers=self.atoms.numbers,
            positions=self.atoms.positions,
            momenta=self.atoms.get_momenta(),
            cell=self.atoms.cell[:],
            pbc=self.atoms.pbc,
            step=self.step,
            rng_state=json.dumps(self.rng_state),
        )

    @classmethod
    def load(cls, path: Path) -> MDState:
        data = np.load(path)
        atoms = Atoms(
            data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"]
        )
        atoms.set_momenta(data["momenta"])
        return cls(atoms, int(data["step"]), json.loads(str(data["rng_state"])))


@dataclass
class Segment:
    """What one call did: ``outcome`` (``flagged``, ``unstable``, ``finished``), the
    trace (:data:`TRACE_KEYS`, one row per chunk), the positions every
    ``frame_every`` steps (``frame_steps``, ``frames (k, n_atoms, 3)``) and, when
    flagged, the scores ``(n_atoms,)`` of the last frame."""

    outcome: str
    trace: dict[str, np.ndarray]
    frame_steps: np.ndarray
    frames: np.ndarray
    scores: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def temperature_at(schedule: Sequence[Sequence[float]], step: int) -> float:
    """Thermostat temperature (K) at ``step`` of ``[[steps, K], ...]`` blocks (the last
    one continues)."""
    end = 0
    for steps, kelvin in schedule:
        end += int(steps)
        if step < end:
            return float(kelvin)
    return float(schedule[-1][1])


def run_langevin(
    state: MDState,
    calculator,
    *,
    schedule: Sequence[Sequence[float]],
    end_step: int,
    timestep_fs: float,
    friction_per_fs: float,
    check_every: int,
    score: Callable[[Atoms], np.ndarray],
    threshold: float | None = None,
    frame_every: int | None = None,
    blowup_K: float = np.inf,
    min_distance_A: float = 0.0,
) -> tuple[MDState, Segment]:
    """Run from ``state`` until flagged, unstable or ``end_step`` (module docstring)."""
    if check_every < 1:
        raise PotstillError(f"check_every must be >= 1 step, got {check_every}")
    atoms = state.atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    dynamics = Langevin(
        atoms,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_at(schedule, state.step),
        friction=friction_per_fs / units.fs,
        rng=rng,
        fixcm=True,
    )
    step, rows, frame_steps, frames = state.step, [], [], []
    outcome, scores = "finished", None
    while step < end_step:
        dynamics.set_temperature(temperature_K=temperature_at(schedule, step))
        n = min(check_every, end_step - step)
        dynamics.run(n)
        step += n
        scores = np.asarray(score(atoms), dtype=float)
        kelvin = atoms.get_temperature()
        rows.append(
            (step, kelvin, atoms.get_potential_energy() / len(atoms), scores.max(), scores.mean())
        )
        if frame_every and step % frame_every < n:
            frame_steps.append(step)
            frames.append(atoms.positions.copy())
        if not np.isfinite(kelvin) or kelvin > blowup_K or _too_close(atoms, min_distance_A):
            outcome = "unstable"
            break
        if threshold is not None and scores.max() > threshold:
            outcome = "flagged"
            break
    after = atoms.copy()
    after.set_momenta(atoms.get_momenta())
    trace = {key: np.array([r[k] for r in rows]) for k, key in enumerate(TRACE_KEYS)}
    segment = Segment(
        outcome,
        trace,
        np.array(frame_steps, dtype=int),
        np.array(frames).reshape(-1, len(atoms), 3),
        scores if outcome == "flagged" else None,
    )
    return MDState(after, step, rng.bit_generator.state), segment


def _too_close(atoms: Atoms, limit_A: float) -> bool:
    return limit_A > 0 and len(neighbor_list("d", atoms, limit_A)) > 0
