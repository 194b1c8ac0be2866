"""The reference side of ``rare_events``: the relaxed molecule, the thermal starts and
the reference's SMD from each (``OUT/rare_events/reference/``), and the loading-rate
study (``OUT/rare_events/loading/``).

Every thermal start is one job over the executor: equilibrate with the reference
(:func:`potstill.sampling.smd.thermalize`), then pull
(:func:`potstill.sampling.smd.pull`); its results are saved in one file as it finishes
(``start_<s>.npz``), so a resumed run recomputes only the starts that were missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS

from potstill.errors import PotstillError
from potstill.executors import fan_out, make_executor
from potstill.faults import kill_point
from potstill.models import PotstillCalculator
from potstill.molecules import alkane
from potstill.rundir import read_record, write_json
from potstill.sampling.smd import Trajectory, pull, thermalize, work_plateau

__all__ = ["ReferenceRuns", "loading_study", "reference_runs", "smd_options"]

KCAL = 23.060548  # kcal/mol per eV


@dataclass
class ReferenceRuns:
    """The relaxed ``molecule``, the ``pulled`` atoms, and per thermal start its
    equilibrated state (``starts``), equilibration frames and SMD trajectory; ``Ea_eV``
    per start."""

    molecule: Atoms
    pulled: tuple[int, int]
    starts: list[Atoms]
    equilibration: list[Trajectory]
    smd: list[Trajectory]
    Ea_eV: list[float]

    def test_frames(self, name: str, every: int) -> list[Atoms]:
        """Start 0's SMD frames every ``every`` steps (step 0 left out), with the
        reference's labels: the unseen test set."""
        smd = self.smd[0]
        return smd.frames(name, range(every, len(smd.positions), every))


def smd_options(config, speed_A_per_ps: float | None = None) -> dict:
    """Keyword arguments of :func:`potstill.sampling.smd.pull` from the ``smd`` section."""
    s = config.smd
    return dict(
        k_eV_per_A2=s.k_eV_per_A2,
        speed_A_per_ps=speed_A_per_ps or s.speed_A_per_ps,
        steps=s.steps(speed_A_per_ps),
        timestep_fs=s.timestep_fs,
        temperature_K=s.temperature_K,
        taut_fs=s.berendsen_taut_fs,
    )


def reference_runs(config, root: Path, *, progress=None) -> ReferenceRuns:
    """The molecule relaxed by the reference, and every thermal start's equilibration and
    SMD (computed once, over the executor)."""
    root = root / "reference"
    root.mkdir(parents=True, exist_ok=True)
    molecule, pulled = _molecule(config, root)
    s = config.smd
    todo = [k for k in range(s.thermal_starts) if not (root / f"start_{k}.npz").exists()]
    if todo:
        bar = progress.add_task("reference SMD runs", total=len(todo)) if progress else None
        with make_executor(config.executor, jobs=len(todo)) as executor:
            jobs = [(config, molecule, pulled, k, str(root)) for k in todo]
            for _, future in fan_out(executor, _thermal_start, jobs):
                future.result()
                kill_point("reference-start")
                if progress is not None:
                    progress.update(bar, advance=1)
    starts, equilibration, smd, ea = [], [], [], []
    for k in range(s.thermal_starts):
        with np.load(root / f"start_{k}.npz") as data:
            starts.append(
                Atoms(
                    molecule.symbols,
                    positions=data["start_positions"],
                    momenta=data["start_momenta"],
                    pbc=False,
                )
            )
        equilibration.append(Trajectory.load(root / f"equilibration_{k}.npz"))
        smd.append(Trajectory.load(root / f"smd_{k}.npz"))
        ea.append(work_plateau(smd[-1].work, s.plateau_steps))
    write_json(
        root / "reference.json",
        {"Ea_eV": ea, "Ea_kcal_per_mol": [e * KCAL for e in ea], "pulled": list(pulled)},
    )
    return ReferenceRuns(molecule, pulled, starts, equilibration, smd, ea)


def _molecule(config, root: Path) -> tuple[Atoms, tuple[int, int]]:
    """The alkane relaxed by the reference (cached in ``molecule.json``)."""
    s = config.smd
    pulled = tuple(s.pulled) if s.pulled is not None else (0, s.n_carbons - 1)
    path = root / "molecule.json"
    saved = read_record(path)
    molecule = alkane(s.n_carbons)
    if saved is None:
        molecule.calc = config.reference.build().calculator
        BFGS(molecule, logfile=None).run(fmax=s.relax_fmax_eV_per_A, steps=1000)
        write_json(path, {"positions": molecule.positions.tolist(), "pulled": list(pulled)})
    else:
        molecule.positions = np.asarray(saved["positions"])
    molecule.calc = None
    if max(pulled) >= len(molecule):
        raise PotstillError(
            f"smd.pulled names atom {max(pulled)} but the molecule has {len(molecule)} atoms"
        )
    return molecule, pulled


def _thermal_start(job) -> None:
    """One thermal start: equilibrate with the reference, pull, save (worker side)."""
    config, molecule, pulled, k, root = job
    s, root = config.smd, Path(root)
    calculator = config.reference.build().calculator
    start, equilibration = thermalize(
        molecule,
        calculator,
        pulled=pulled,
        timestep_fs=s.timestep_fs,
        temperature_K=s.temperature_K,
        langevin_steps=s.langevin_steps,
        friction_per_fs=1.0 / s.langevin_damping_fs,
        berendsen_steps=s.berendsen_steps,
        taut_fs=s.berendsen_taut_fs,
        seed=s.seed + k,
        every=s.initial_every,
    )
    smd = pull(start, calculator, pulled=([pulled[0]], [pulled[1]]), **smd_options(config))
    equilibration.save(root / f"equilibration_{k}.npz")
    smd.save(root / f"smd_{k}.npz")
    _save_npz(
        root / f"start_{k}.npz",  # written last: a start with this file is finished
        start_positions=start.positions,
        start_momenta=start.get_momenta(),
    )


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def loading_study(config, root: Path, learned, ref: ReferenceRuns, *, progress=None):
    """SMD of the reference and of ``learned``'s final best member (run
    ``loading.run``) from start 0 at each ``loading.speeds_A_per_ps``; E_a of both per
    speed (cached per speed and model)."""
    speeds = config.loading.speeds_A_per_ps
    if not speeds:
        return {}
    root = root / "loading"
    root.mkdir(parents=True, exist_ok=True)
    model = learned.best_member
    out = {}
    bar = progress.add_task("loading-rate study", total=len(speeds)) if progress else None
    for speed in speeds:
        path = root / f"speed_{speed:g}.json"
        record = read_record(path)
        if record is None or record.get("model") != str(model):
            curves = {}
            for who, calculator in (
                ("reference", config.reference.build().calculator),
                ("nnp", PotstillCalculator(model)),
            ):
                if who == "reference" and speed == config.smd.speed_A_per_ps:
                    trajectory = ref.smd[0]
                else:
                    trajectory = pull(
                        ref.starts[0],
                        calculator,
                        pulled=([ref.pulled[0]], [ref.pulled[1]]),
                        **smd_options(config, speed),
                    )
                curves[who] = trajectory
            record = {
                "speed_A_per_ps": speed,
                "model": str(model),
                **{
                    f"Ea_{who}_eV": work_plateau(t.work, config.smd.plateau_steps)
                    for who, t in curves.items()
                },
                **{
                    f"{who}_curve": _thin(t, config.smd.steps(speed) // 500 or 1)
                    for who, t in curves.items()
                },
            }
            write_json(path, record)
        out[f"{speed:g}"] = record
        if progress is not None:
            progress.update(bar, advance=1)
    return out


def _thin(trajectory: Trajectory, every: int) -> dict:
    """Distance and work every ``every`` frames, for the figures."""
    return {
        "distance_A": trajectory.distance[::every].round(5).tolist(),
        "work_eV": trajectory.work[::every].round(6).tolist(),
    }
