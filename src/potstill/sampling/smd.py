"""Steered molecular dynamics (SMD) at constant pulling velocity in ASE (seed 004).

ASE has no SMD, so this module gives the two pieces LAMMPS' ``fix smd cvel ... couple``
has:

- :class:`PullingSpring`, an ASE constraint: a harmonic spring of stiffness ``k``
  (eV/A^2) between the centres of mass of two groups of atoms, along their current
  separation ``r = |R_b - R_a|`` (A), with rest length ``r0`` (A). It adds
  ``U = k/2 (r - r0)^2`` to the potential energy (``apply_constraint=True``) and its
  force, shared by mass within each group, to the forces; the tension
  ``f = k (r0 - r)`` (eV/A) pulls the groups apart when positive.
- :class:`SteeredPull`, an MD observer (``dyn.attach(pull, interval=1)``): after every
  step it moves ``r0`` on by ``v dt`` and accumulates the work of the moving spring,
  ``W = integral f v dt`` (eV, trapezoid over steps), and records the step, ``r``, ``r0``, ``f`` and ``W``.
  ASE computes a step's end-of-step forces before its observers run, so the second
  half-kick of that step used the old rest length; the observer adds the missing
  half-kick of the spring's change (``k v dt`` along the separation, shared by mass)
  when it moves ``r0``. With it the dynamics and the work equal LAMMPS'
  ``fix smd cvel ... couple`` to round-off under velocity Verlet and Berendsen (the
  thermostats SMD runs with; ``tests/test_smd.py``).

:func:`langevin_friction` gives the per-atom friction of an ASE ``Langevin`` run that
leaves the pulled atoms unthermostatted; :func:`work_plateau` the activation energy of
seed 004 from a work curve: the mean of ``W`` over the last ``n`` steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.nvtberendsen import NVTBerendsen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

from potstill.errors import PotstillError
from potstill.frames import set_labels

__all__ = [
    "PullingSpring",
    "SteeredPull",
    "Trajectory",
    "langevin_friction",
    "pull",
    "thermalize",
    "work_plateau",
]


class PullingSpring:
    """Harmonic spring between the centres of mass of ``group_a`` and ``group_b``.

    Args:
        group_a, group_b: atom indices of the two pulled groups (disjoint, non-empty).
        k_eV_per_A2: spring constant, eV/A^2 (> 0).
        r0_A: rest length, A; ``None`` sets it to the current separation the first time
            the spring sees the atoms.
    """

    def __init__(
        self,
        group_a: Sequence[int],
        group_b: Sequence[int],
        k_eV_per_A2: float,
        r0_A: float | None = None,
    ):
        self.a = np.asarray(list(group_a), dtype=int)
        self.b = np.asarray(list(group_b), dtype=int)
        if not len(self.a) or not len(self.b) or set(self.a) & set(self.b):
            raise PotstillError("the two pulled groups must be non-empty and disjoint")
        if not np.isfinite(k_eV_per_A2) or k_eV_per_A2 <= 0:
            raise PotstillError(f"spring constant must be > 0 eV/A^2, got {k_eV_per_A2!r}")
        self.k = float(k_eV_per_A2)
        self.r0 = None if r0_A is None else float(r0_A)

    def separation(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """``r`` (A) and the unit vector ``(3,)`` from group a's centre of mass to b's."""
        masses = atoms.get_masses()
        positions = atoms.positions
        ra = masses[self.a] @ positions[self.a] / masses[self.a].sum()
        rb = masses[self.b] @ positions[self.b] / masses[self.b].sum()
        d = rb - ra
        r = float(np.linalg.norm(d))
        return r, d / r

    def tension(self, atoms: Atoms) -> float:
        """``k (r0 - r)``, eV/A: the spring's pull on each group along the separation."""
        r, _ = self.separation(atoms)
        if self.r0 is None:
            self.r0 = r
        return self.k * (self.r0 - r)

    # ASE constraint interface
    def adjust_positions(self, atoms: Atoms, new: np.ndarray) -> None:
        pass

    def adjust_momenta(self, atoms: Atoms, momenta: np.ndarray) -> None:
        pass

    def adjust_forces(self, atoms: Atoms, forces: np.ndarray) -> None:
        _, unit = self.separation(atoms)
        pull = self.tension(atoms) * unit
        masses = atoms.get_masses()
        forces[self.b] += np.outer(masses[self.b] / masses[self.b].sum(), pull)
        forces[self.a] -= np.outer(masses[self.a] / masses[self.a].sum(), pull)

    def adjust_potential_energy(self, atoms: Atoms) -> float:
        return 0.5 * self.tension(atoms) ** 2 / self.k

    def get_removed_dof(self, atoms: Atoms) -> int:
        return 0

    def index_shuffle(self, atoms: Atoms, ind) -> None:
        raise PotstillError("a PullingSpring cannot follow a re-indexing of the atoms")

    def todict(self) -> dict:
        return {
            "name": "PullingSpring",
            "kwargs": {
                "group_a": self.a.tolist(),
                "group_b": self.b.tolist(),
                "k_eV_per_A2": self.k,
                "r0_A": self.r0,
            },
        }

    def __repr__(self) -> str:
        return f"PullingSpring(a={self.a.tolist()}, b={self.b.tolist()}, k={self.k}, r0={self.r0})"


class SteeredPull:
    """Constant-velocity pulling: moves the spring and integrates its work.

    Args:
        atoms: the atoms the dynamics moves (carrying ``spring`` as a constraint).
        spring: the :class:`PullingSpring`.
        speed_A_per_ps: pulling speed ``v``, A/ps (0 keeps the spring still).
        timestep_fs: the dynamics' time step, fs.

    Records after each call (one per MD step): ``steps``, ``distance`` (A), ``r0`` (A),
    ``tension`` (eV/A), ``work`` (eV), as lists; :meth:`as_arrays` returns them.
    """

    def __init__(self, atoms: Atoms, spring: PullingSpring, *, speed_A_per_ps, timestep_fs):
        self.atoms, self.spring = atoms, spring
        self.dr = float(speed_A_per_ps) * float(timestep_fs) / 1000.0  # A per step
        self.dt = float(timestep_fs) * units.fs
        self.work = 0.0
        self.records: dict[str, list[float]] = {
            k: [] for k in ("steps", "distance", "r0", "tension", "work")
        }
        self._record(0)

    def __call__(self) -> None:
        previous = self.records["tension"][-1]
        self.spring.r0 += self.dr
        self._half_kick()
        tension = self.spring.tension(self.atoms)
        self.work += 0.5 * (previous + tension) * self.dr  # trapezoid in time
        self._record(len(self.records["steps"]))

    def _half_kick(self) -> None:
        """The half-kick the step's end forces missed: the spring force changed by
        ``k dr`` along the separation when ``r0`` moved on."""
        _, unit = self.spring.separation(self.atoms)
        kick = 0.5 * self.dt * self.spring.k * self.dr * unit
        masses, momenta = self.atoms.get_masses(), self.atoms.get_momenta()
        a, b = self.spring.a, self.spring.b
        momenta[b] += np.outer(masses[b] / masses[b].sum(), kick)
        momenta[a] -= np.outer(masses[a] / masses[a].sum(), kick)
        self.atoms.set_momenta(momenta, apply_constraint=False)

    def _record(self, step: int) -> None:
        tension = self.spring.tension(self.atoms)
        r, _ = self.spring.separation(self.atoms)
        for key, value in zip(
            ("steps", "distance", "r0", "tension", "work"),
            (step, r, self.spring.r0, tension, self.work),
        ):
            self.records[key].append(float(value))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The records as ``(n_steps + 1,)`` arrays (entry 0: before the first step)."""
        return {k: np.asarray(v) for k, v in self.records.items()}


def langevin_friction(n_atoms: int, friction_per_fs: float, free: Sequence[int]) -> np.ndarray:
    """``(n_atoms, 1)`` per-atom friction (ASE time units) for ``ase.md.Langevin``:
    ``friction_per_fs`` (1/fs) everywhere except the atoms in ``free``, which get none."""
    friction = np.full((n_atoms, 1), float(friction_per_fs) / units.fs)
    friction[list(free)] = 0.0
    return friction


def work_plateau(work: np.ndarray, n_last: int = 100) -> float:
    """The mean of the last ``n_last`` entries of a work curve ``(n,)`` eV: seed 004's
    activation energy once the bond has broken."""
    work = np.asarray(work, dtype=float)
    if work.size < n_last or n_last < 1:
        raise PotstillError(f"need at least {n_last} work values for the plateau, got {work.size}")
    return float(work[-n_last:].mean())


@dataclass
class Trajectory:
    """Frames of an MD run, every ``every``-th step (step 0 included).

    ``positions (n, n_atoms, 3)`` A; ``energy (n,)`` eV and ``forces (n, n_atoms, 3)``
    eV/A of the driving calculator, without the spring; with a spring also
    ``distance``, ``r0`` (A), ``tension`` (eV/A) and ``work`` (eV), ``(n,)`` each.
    """

    symbols: str
    every: int
    positions: np.ndarray
    energy: np.ndarray
    forces: np.ndarray
    distance: np.ndarray | None = None
    r0: np.ndarray | None = None
    tension: np.ndarray | None = None
    work: np.ndarray | None = None

    def frames(self, name: str | None = None, indices: Sequence[int] | None = None) -> list[Atoms]:
        """The frames (``pbc=False``) at ``indices`` (default all); with ``name`` they
        carry the driving calculator's energy and forces as ``name`` labels, and
        ``info["smd_frame"]``, the frame's index."""
        indices = range(len(self.positions)) if indices is None else indices
        out = []
        for i in indices:
            atoms = Atoms(self.symbols, positions=self.positions[i], pbc=False)
            atoms.info["smd_frame"] = int(i)
            if name is not None:
                set_labels(atoms, name, energy=float(self.energy[i]), forces=self.forces[i])
            out.append(atoms)
        return out

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        np.savez_compressed(path, symbols=self.symbols, every=self.every, **arrays)

    @classmethod
    def load(cls, path: Path) -> Trajectory:
        with np.load(path) as data:
            values = {k: data[k] for k in data.files}
        return cls(symbols=str(values.pop("symbols")), every=int(values.pop("every")), **values)


class _Recorder:
    """Observer collecting a :class:`Trajectory` (and, with ``pull``, its work)."""

    def __init__(self, atoms: Atoms, pull: SteeredPull | None, every: int):
        self.atoms, self.pull, self.every, self.step = atoms, pull, every, 0
        self.rows: dict[str, list] = {k: [] for k in ("positions", "energy", "forces")}

    def __call__(self) -> None:
        if self.pull is not None and self.step > 0:
            self.pull()
        if self.step % self.every == 0:
            self.rows["positions"].append(self.atoms.positions.copy())
            self.rows["energy"].append(self.atoms.get_potential_energy(apply_constraint=False))
            self.rows["forces"].append(self.atoms.get_forces(apply_constraint=False).copy())
            if not np.isfinite(self.rows["energy"][-1]):
                raise PotstillError(
                    f"the energy became {self.rows['energy'][-1]} at MD step {self.step}"
                )
        self.step += 1

    def trajectory(self) -> Trajectory:
        arrays = {k: np.asarray(v) for k, v in self.rows.items()}
        if self.pull is not None:
            records = self.pull.as_arrays()
            arrays.update(
                {k: records[k][:: self.every] for k in ("distance", "r0", "tension", "work")}
            )
        return Trajectory(str(self.atoms.symbols), self.every, **arrays)


def thermalize(
    atoms: Atoms,
    calculator,
    *,
    pulled: Sequence[int],
    timestep_fs: float,
    temperature_K: float,
    langevin_steps: int,
    friction_per_fs: float,
    berendsen_steps: int,
    taut_fs: float,
    seed: int,
    every: int = 1,
) -> tuple[Atoms, Trajectory]:
    """Seed 004's equilibration: Maxwell-Boltzmann velocities at ``temperature_K``,
    ``langevin_steps`` of Langevin with no friction on the ``pulled`` atoms, then
    ``berendsen_steps`` of Berendsen NVT (time constant ``taut_fs``). Returns the final
    state (positions and momenta, no calculator) and the frames every ``every`` steps."""

    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    friction = langevin_friction(len(atoms), friction_per_fs, pulled)
    langevin = Langevin(
        atoms,
        timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction,
        rng=rng,
        fixcm=False,
    )
    recorder = _Recorder(atoms, None, every)
    langevin.attach(recorder, interval=1)
    langevin.run(langevin_steps)
    berendsen = NVTBerendsen(
        atoms, timestep_fs * units.fs, temperature_K=temperature_K, taut=taut_fs * units.fs
    )
    berendsen.attach(_skip_first(recorder), interval=1)
    berendsen.run(berendsen_steps)
    start = Atoms(atoms.symbols, positions=atoms.positions, momenta=atoms.get_momenta(), pbc=False)
    return start, recorder.trajectory()


def pull(
    start: Atoms,
    calculator,
    *,
    pulled: tuple[Sequence[int], Sequence[int]],
    k_eV_per_A2: float,
    speed_A_per_ps: float,
    steps: int,
    timestep_fs: float,
    temperature_K: float,
    taut_fs: float,
    every: int = 1,
) -> Trajectory:
    """Constant-velocity SMD from ``start`` (positions and momenta): the spring between
    the two ``pulled`` groups starts at their separation and its rest length moves at
    ``speed_A_per_ps`` for ``steps`` steps, with Berendsen NVT kept on (deterministic, so
    runs from one start differ only by their potential). Frames every ``every`` steps."""

    atoms = start.copy()
    atoms.calc = calculator
    spring = PullingSpring(*pulled, k_eV_per_A2)
    atoms.set_constraint(spring)
    observer = SteeredPull(atoms, spring, speed_A_per_ps=speed_A_per_ps, timestep_fs=timestep_fs)
    dynamics = NVTBerendsen(
        atoms, timestep_fs * units.fs, temperature_K=temperature_K, taut=taut_fs * units.fs
    )
    recorder = _Recorder(atoms, observer, every)
    dynamics.attach(recorder, interval=1)
    dynamics.run(steps)
    return recorder.trajectory()


def _skip_first(recorder: _Recorder):
    """The recorder, minus the call ASE makes before a second run's first step (that
    state was recorded as the last step of the previous run)."""
    calls = {"n": 0}

    def observe() -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            recorder()

    return observe
