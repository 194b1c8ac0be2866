"""MD stability of a potential (seed 002): run a short NVT or NPT trajectory and call
the potential stable or not; under NPT, also the density it predicts.

Contract
--------
:func:`md_stability` drives ``calculator`` (any ASE calculator: a
:class:`~potstill.models.calculator.PotstillCalculator`, a reference) from ``atoms`` for
``steps`` steps at ``temperature_K``: ASE Langevin dynamics (``ensemble="nvt"``), or
isotropic Nose-Hoover-chain / MTK NPT at ``pressure_bar`` (``ensemble="npt"``, ASE's
``IsotropicMTKNPT``, as seed 002's Nose-Hoover-chain NPT; the calculator must give stress).
Every ``interval`` steps (and at the start) it checks seed 002's failure signs:

- energies, forces and positions are finite (no NaN, no blow-up);
- no pair of atoms is closer than ``min_distance_A`` (1.5 A: an RDF peak below 1.5 A
  means atoms fell into each other, the typical failure of an under-trained NNP);
- the largest force component stays below ``max_force_eV_per_A``;
- the total energy per atom stays within ``max_drift_eV_per_atom`` of its first
  checked value (a thermostat exchanges heat with the bath, so only a bound, not
  conservation, is asked);
- the temperature stays below ``max_temperature_factor`` x ``temperature_K`` (a model
  that pumps energy in heats up before it explodes);
- NPT: the volume stays within a factor ``1 +- max_volume_change`` of the start (the
  cell neither collapses nor boils off).

The run stops at the first failed check. Returns a JSON-able dict: ``stable`` (bool),
``reason`` (``""`` when stable, else which check failed), ``steps_run``,
``min_distance_A``, ``max_force_eV_per_A``, ``drift_eV_per_atom`` (largest |change| seen),
``max_temperature_K``; with ``record_after`` (steps), the mean and std over the checks
from that step on of ``temperature_K`` and, under NPT, ``density_g_cm3`` (g/cm^3) and
``n_recorded``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from pydantic import Field

from potstill.aev.neighbors import frame_pairs
from potstill.settings import Section

MIN_DISTANCE_A = 1.5
MAX_FORCE_EV_PER_A = 20.0
MAX_DRIFT_EV_PER_ATOM = 0.5
MAX_TEMPERATURE_FACTOR = 2.0
MAX_VOLUME_CHANGE = 0.5
_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


class StabilityConfig(Section):
    """The stability MD of a model: NVT (Langevin) or NPT (Nose-Hoover chain, MTK) from
    test-pool frame ``start_frame`` with the checks of :func:`md_stability`;
    ``enabled: false`` skips it."""

    ensemble: Literal["nvt", "npt"] = "nvt"
    steps: int = Field(1000, ge=1)
    temperature_K: float = Field(300.0, gt=0)
    pressure_bar: float = 1.0
    timestep_fs: float = Field(1.0, gt=0)
    friction_per_fs: float = Field(0.01, gt=0)
    tdamp_fs: float = Field(100.0, gt=0)
    pdamp_fs: float = Field(1000.0, gt=0)
    interval: int = Field(10, ge=1)
    start_frame: int = Field(0, ge=0)
    min_distance_A: float = Field(MIN_DISTANCE_A, gt=0)
    max_force_eV_per_A: float = Field(MAX_FORCE_EV_PER_A, gt=0)
    max_drift_eV_per_atom: float = Field(MAX_DRIFT_EV_PER_ATOM, gt=0)
    max_temperature_factor: float = Field(MAX_TEMPERATURE_FACTOR, gt=1)
    max_volume_change: float = Field(MAX_VOLUME_CHANGE, gt=0, lt=1)
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
    ensemble: str = "nvt",
    steps: int = 1000,
    temperature_K: float = 300.0,
    pressure_bar: float = 1.0,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    interval: int = 10,
    seed: int = 0,
    min_distance_A: float = MIN_DISTANCE_A,
    max_force_eV_per_A: float = MAX_FORCE_EV_PER_A,
    max_drift_eV_per_atom: float = MAX_DRIFT_EV_PER_ATOM,
    max_temperature_factor: float = MAX_TEMPERATURE_FACTOR,
    max_volume_change: float = MAX_VOLUME_CHANGE,
    record_after: int | None = None,
) -> dict:
    """Short NVT or NPT MD of ``atoms`` (copied) with ``calculator``; see the module
    contract. ``seed`` draws the starting velocities (and Langevin's noise)."""
    atoms, rng = _start(calculator, atoms, ensemble, temperature_K, seed)
    state = {
        "steps_run": 0,
        "min_distance_A": math.inf,
        "max_force_eV_per_A": 0.0,
        "drift_eV_per_atom": 0.0,
        "max_temperature_K": 0.0,
        "e0": None,
        "v0": atoms.get_volume() if ensemble == "npt" else None,
    }
    checks = dict(
        min_distance_A=min_distance_A,
        max_force_eV_per_A=max_force_eV_per_A,
        max_drift_eV_per_atom=max_drift_eV_per_atom,
        max_temperature_K=max_temperature_factor * temperature_K,
        max_volume_change=max_volume_change,
    )
    recorded: dict[str, list[float]] = {"temperature_K": [], "density_g_cm3": []}
    result = {"stable": True, "reason": ""}
    try:
        _check(atoms, state, **checks)
        dynamics = _dynamics(
            atoms,
            ensemble,
            rng,
            timestep_fs=timestep_fs,
            temperature_K=temperature_K,
            pressure_bar=pressure_bar,
            friction_per_fs=friction_per_fs,
            tdamp_fs=tdamp_fs,
            pdamp_fs=pdamp_fs,
        )
        masses_g = atoms.get_masses().sum() * _AMU_PER_A3_TO_G_PER_CM3

        def observe():
            state["steps_run"] = dynamics.nsteps
            _check(atoms, state, **checks)
            if record_after is not None and dynamics.nsteps >= record_after:
                recorded["temperature_K"].append(atoms.get_temperature())
                recorded["density_g_cm3"].append(masses_g / atoms.get_volume())

        dynamics.attach(observe, interval=interval)
        dynamics.run(steps)
        state["steps_run"] = dynamics.nsteps
    except _Unstable as failure:
        result = {"stable": False, "reason": str(failure)}
    except (FloatingPointError, ValueError, RuntimeError) as error:  # NaN, blow-ups
        result = {"stable": False, "reason": f"the dynamics failed: {error}"}
    if record_after is not None:
        result |= _averages(recorded, npt=ensemble == "npt")
    return result | {
        k: (None if not math.isfinite(v) else float(v)) if isinstance(v, float) else v
        for k, v in state.items()
        if k not in ("e0", "v0")
    }


def _start(calculator, atoms: Atoms, ensemble: str, temperature_K: float, seed: int):
    """A copy of ``atoms`` on ``calculator`` with Maxwell-Boltzmann velocities drawn from
    ``seed`` (no centre-of-mass motion), and the generator for the dynamics."""
    if ensemble not in ("nvt", "npt"):
        raise ValueError(f"ensemble must be 'nvt' or 'npt', got {ensemble!r}")
    atoms = atoms.copy()
    atoms.calc = calculator
    if ensemble == "nvt":
        atoms.set_constraint(FixCom())  # no centre-of-mass drift
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    if ensemble == "npt":
        Stationary(atoms)  # MTK allows no constraint: start with zero total momentum
    return atoms, rng


def _averages(recorded: dict[str, list[float]], *, npt: bool) -> dict:
    """``n_recorded`` and the mean and std of each recorded series (density only NPT)."""
    result: dict = {"n_recorded": len(recorded["temperature_K"])}
    for name, values in recorded.items():
        if values and (name == "temperature_K" or npt):
            result[name] = float(np.mean(values))
            result[f"{name}_std"] = float(np.std(values))
    return result


def _dynamics(
    atoms: Atoms,
    ensemble: str,
    rng: np.random.Generator,
    *,
    timestep_fs: float,
    temperature_K: float,
    pressure_bar: float,
    friction_per_fs: float,
    tdamp_fs: float,
    pdamp_fs: float,
):
    """ASE Langevin NVT, or isotropic MTK NPT with Nose-Hoover chains."""
    if ensemble == "nvt":
        return Langevin(
            atoms,
            timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    return IsotropicMTKNPT(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        pressure_au=pressure_bar * units.bar,
        tdamp=tdamp_fs * units.fs,
        pdamp=pdamp_fs * units.fs,
    )


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
    max_temperature_K: float,
    max_volume_change: float,
) -> None:
    positions = atoms.get_positions()
    if not np.isfinite(positions).all() or not np.isfinite(atoms.cell.array).all():
        raise _Unstable("positions are not finite (blow-up)")
    if state["v0"] is not None:
        ratio = atoms.get_volume() / state["v0"]
        if not 1 - max_volume_change <= ratio <= 1 + max_volume_change:
            raise _Unstable(
                f"the volume changed by a factor {ratio:.2f} (beyond 1 +- {max_volume_change})"
            )
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
    temperature = atoms.get_temperature()
    state["max_temperature_K"] = max(state["max_temperature_K"], temperature)
    if temperature > max_temperature_K:
        raise _Unstable(f"temperature {temperature:.0f} K (> {max_temperature_K:.0f} K)")
    per_atom = energy / len(atoms)
    if state["e0"] is None:
        state["e0"] = per_atom
    drift = abs(per_atom - state["e0"])
    state["drift_eV_per_atom"] = max(state["drift_eV_per_atom"], drift)
    if drift > max_drift_eV_per_atom:
        raise _Unstable(
            f"total energy drifted {drift:.3f} eV/atom (> {max_drift_eV_per_atom} eV/atom)"
        )
