"""MD stability of a potential (seed 002): run a short Langevin NVT trajectory and call
the potential stable or not.

Contract
--------
:func:`md_stability` drives ``calculator`` (any ASE calculator: a
:class:`~potstill.models.calculator.PotstillCalculator`, a reference) from ``atoms`` for
``steps`` steps of ASE Langevin dynamics at ``temperature_K`` and checks every
``interval`` steps (and the start) that

- energies, forces and positions are finite (no NaN, no blow-up);
- no pair of atoms is closer than ``min_distance_A`` (1.5 A: an RDF peak below 1.5 A
  means atoms fell into each other, the typical failure of an under-trained NNP);
- the largest force component stays below ``max_force_eV_per_A``;
- the total energy per atom stays within ``max_drift_eV_per_atom`` of its first
  checked value (Langevin NVT exchanges heat with the bath, so only a bound, not
  conservation, is asked).

The run stops at the first failed check. Returns a JSON-able dict: ``stable`` (bool),
``reason`` (``""`` when stable, else which check failed), ``steps_run``,
``min_distance_A``, ``max_force_eV_per_A``, ``drift_eV_per_atom`` (largest |change| seen).
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from pydantic import Field

from potstill.aev.neighbors import frame_pairs
from potstill.settings import Section

MIN_DISTANCE_A = 1.5
MAX_FORCE_EV_PER_A = 20.0
MAX_DRIFT_EV_PER_ATOM = 0.5


class StabilityConfig(Section):
    """The stability MD of a model: Langevin NVT from test-pool frame ``start_frame``
    with the checks of :func:`md_stability`; ``enabled: false`` skips it."""

    steps: int = Field(1000, ge=1)
    temperature_K: float = Field(300.0, gt=0)
    timestep_fs: float = Field(1.0, gt=0)
    friction_per_fs: float = Field(0.01, gt=0)
    interval: int = Field(10, ge=1)
    start_frame: int = Field(0, ge=0)
    min_distance_A: float = Field(MIN_DISTANCE_A, gt=0)
    max_force_eV_per_A: float = Field(MAX_FORCE_EV_PER_A, gt=0)
    max_drift_eV_per_atom: float = Field(MAX_DRIFT_EV_PER_ATOM, gt=0)
    enabled: bool = True

    def md_options(self) -> dict:
        """The keyword arguments of :func:`md_stability`."""
        return self.model_dump(exclude={"enabled", "start_frame"})


class _Unstable(Exception):
    """Raised by the observer to stop the dynamics at the first failed check."""


def md_stability(
    calculator,
    atoms: Atoms,
    *,
    steps: int = 1000,
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    interval: int = 10,
    seed: int = 0,
    min_distance_A: float = MIN_DISTANCE_A,
    max_force_eV_per_A: float = MAX_FORCE_EV_PER_A,
    max_drift_eV_per_atom: float = MAX_DRIFT_EV_PER_ATOM,
) -> dict:
    """Short NVT MD of ``atoms`` (copied) with ``calculator``; see the module contract."""
    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.set_constraint(FixCom())  # no centre-of-mass drift (ASE's replacement of fixcm)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    state = {
        "steps_run": 0,
        "min_distance_A": math.inf,
        "max_force_eV_per_A": 0.0,
        "drift_eV_per_atom": 0.0,
        "e0": None,
    }
    checks = dict(
        min_distance_A=min_distance_A,
        max_force_eV_per_A=max_force_eV_per_A,
        max_drift_eV_per_atom=max_drift_eV_per_atom,
    )
    result = {"stable": True, "reason": ""}
    try:
        _check(atoms, state, **checks)
        dynamics = Langevin(
            atoms,
            timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )

        def observe():
            state["steps_run"] = dynamics.nsteps
            _check(atoms, state, **checks)

        dynamics.attach(observe, interval=interval)
        dynamics.run(steps)
        state["steps_run"] = dynamics.nsteps
    except _Unstable as failure:
        result = {"stable": False, "reason": str(failure)}
    except (
        FloatingPointError,
        ValueError,
        RuntimeError,
    ) as error:  # NaN positions, neighbor-list blow-ups
        result = {"stable": False, "reason": f"the dynamics failed: {error}"}
    return result | {
        k: (None if not math.isfinite(v) else float(v)) if isinstance(v, float) else v
        for k, v in state.items()
        if k != "e0"
    }


def min_pair_distance(atoms: Atoms, cutoff_A: float = 3.0) -> float:
    """Shortest interatomic distance (A, periodic images included); ``inf`` when no pair
    is closer than ``cutoff_A``."""
    pairs, shifts = frame_pairs(atoms, cutoff_A)  # vesin, as the models' own neighbour search
    if pairs.shape[1] == 0:
        return math.inf
    positions = atoms.get_positions()
    vectors = positions[pairs[0]] - positions[pairs[1]] + shifts @ atoms.cell[:]
    return float(np.sqrt((vectors**2).sum(axis=1)).min())


def _check(
    atoms: Atoms,
    state: dict,
    *,
    min_distance_A: float,
    max_force_eV_per_A: float,
    max_drift_eV_per_atom: float,
) -> None:
    positions = atoms.get_positions()
    if not np.isfinite(positions).all():
        raise _Unstable("positions are not finite (blow-up)")
    distance = min_pair_distance(atoms, cutoff_A=max(3.0, min_distance_A))
    state["min_distance_A"] = min(state["min_distance_A"], distance)
    if distance < min_distance_A:
        raise _Unstable(f"two atoms {distance:.2f} A apart (< {min_distance_A} A)")
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    if not (np.isfinite(forces).all() and math.isfinite(energy)):
        raise _Unstable("energy or forces are not finite (NaN)")
    max_force = float(np.abs(forces).max())
    state["max_force_eV_per_A"] = max(state["max_force_eV_per_A"], max_force)
    if max_force > max_force_eV_per_A:
        raise _Unstable(f"force component {max_force:.1f} eV/A (> {max_force_eV_per_A} eV/A)")
    per_atom = energy / len(atoms)
    if state["e0"] is None:
        state["e0"] = per_atom
    drift = abs(per_atom - state["e0"])
    state["drift_eV_per_atom"] = max(state["drift_eV_per_atom"], drift)
    if drift > max_drift_eV_per_atom:
        raise _Unstable(
            f"total energy drifted {drift:.3f} eV/atom (> {max_drift_eV_per_atom} eV/atom)"
        )
