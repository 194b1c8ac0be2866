"""The ``momt`` sampler of the sample stage: reference runs, Wang-Landau, production into
the pool, reweighting and figures (seed 000, SI Note 1).

Outputs in the run directory::

    pool.db                 production frames, labeled (see potstill.sampling.momt)
    momt_reference.npz      plain NPT traces at T0 from the crystal and from a melt
    momt_state.npz          bias + MD state, saved every chunk (resume continues from it)
    sample.json             record: ranges, Wang-Landau stages, round trips, wall times, T_m
    report/sample/momt_traces.png       E and O vs time: NPT crystal, NPT liquid, MOMT
    report/sample/momt_reweighting.png  reweighted P(H, O) and G_liquid - G_solid vs T

An interrupted run resumes from the last saved state: finished frames stay in the pool;
frames written after the last state save are replaced.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from potstill.crystals import StructureConfig
from potstill.errors import PotstillError
from potstill.references import ReferenceConfig, lammps_options
from potstill.report.momt import reweighting_plot, traces_plot
from potstill.rundir import Stage
from potstill.sampling.bias import BiasGrid, WangLandau
from potstill.sampling.md import sample_md
from potstill.sampling.momt import MomtRun, MomtSettings, count_round_trips
from potstill.sampling.reweight import phase_balance, reweighted_histogram
from potstill.settings import Section
from potstill.store import Store

__all__ = ["MomtConfig", "MomtSamplerConfig", "OWNS", "run"]

SOLID, LIQUID = 0.5, 0.1  # O / N above which a frame is solid, below which liquid
FRAME_CHUNK = 200
OWNS = ("momt_state.npz", "momt_reference.npz")
STATE, REFERENCE = OWNS


class MomtConfig(MomtSettings):
    """Multiorder-multithermal Wang-Landau MD (seed 000 SI Note 1, Table S1): the MD
    settings of :class:`MomtSettings` plus the bias grid, the schedule and production.

    ``h_range_eV``/``o_range``: the bias grid; when omitted they adapt to the potential
    from plain NPT runs at T0 started from the crystal and from a melt
    (``reference_steps`` each; also the plain-NPT comparison of the report).
    """

    h_range_eV: tuple[float, float] | None = None
    o_range: tuple[float, float] | None = None
    n_h_bins: int = Field(60, ge=4)
    n_o_bins: int = Field(100, ge=4)
    h_margin: float = Field(2.0, ge=0)
    reference_steps: int = Field(200_000, gt=0)
    wang_landau: WangLandau = Field(default_factory=WangLandau)
    n_frames: int = Field(20_000, gt=0)
    interval: int = Field(100, gt=0)


class MomtSamplerConfig(Section):
    """The ``momt`` sampler: MOMT MD of the FCC ``structure`` (an n x n x n cubic cell)."""

    sampler: Literal["momt"] = "momt"
    structure: StructureConfig = Field(default_factory=StructureConfig)
    momt: MomtConfig = Field(default_factory=MomtConfig)


Config = MomtSamplerConfig


def run(
    config: MomtSamplerConfig,
    *,
    species: Sequence[str],
    reference: ReferenceConfig,
    stage: Stage,
    executor=None,
    progress=None,
) -> dict:
    """Run MOMT sampling into the run's pool (resumed from its saved state)."""
    m, start = config.momt, config.structure
    _check_start(start, species)
    root = stage.root
    state_path = root / STATE
    if not state_path.exists():
        stage.run.pool.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    potential = lammps_options(reference.kind, reference.options)
    crystal = start.build()
    started, timings = time.time(), {}
    references = _reference_runs(
        crystal, potential, m, root / REFERENCE, progress=progress, timings=timings
    )
    store = Store(stage.run.pool)
    run_ = _start_or_resume(state_path, store, crystal, potential, m, references, reference.name)
    with run_:
        t = time.time()
        raised_nodes = _wang_landau(run_, m, state_path, progress)
        timings["wang_landau_s"] = time.time() - t
        t = time.time()
        _production(run_, m, store, state_path, start.lattice, progress)
        timings["production_s"] = time.time() - t
        trace, production_start, bias, clipped = (
            run_.trace,
            run_.production_start,
            run_.bias,
            run_.clipped_steps,
        )
    n_atoms = len(crystal)
    wl = trace[trace[:, 0] < production_start]
    prod = trace[trace[:, 0] >= production_start]
    results = {
        "n_frames": len(store),
        "n_atoms": n_atoms,
        "store": str(stage.run.pool),
        "temperature_K": m.temperature_K,
        "pressure_bar": m.pressure_bar,
        "h_range_eV": list(bias.h_range),
        "o_range": list(bias.o_range),
        "wang_landau": {
            "stages": bias.stage,
            "ln_f": bias.ln_f,
            "steps": int(production_start - trace[0, 0]) if len(trace) else 0,
            "bins_visited": int((bias.visits > 0).sum()),
        },
        "round_trips": {
            "wang_landau": count_round_trips(wl[:, 3], n_atoms, solid=SOLID, liquid=LIQUID),
            "production": count_round_trips(prod[:, 3], n_atoms, solid=SOLID, liquid=LIQUID),
        },
        "production_steps_off_h_momt": clipped,
        "production_steps": int(trace[-1, 0] - production_start) if len(trace) else 0,
        "bias_nodes_raised_by_slope_limit": raised_nodes,
        "production_ns": float(len(prod) and (prod[-1, 0] - prod[0, 0]) * m.timestep_fs * 1e-6),
        "reference_runs": {name: _phase_summary(tr, n_atoms) for name, tr in references.items()},
        "timings_s": timings,
    }
    results.update(_analyse(stage.report, references, wl, prod, n_atoms, m))
    results["wall_time_s"] = time.time() - started
    return results


def _check_start(start: StructureConfig, species: Sequence[str]) -> None:
    start.check_species(species)
    if start.lattice != "fcc" or len(set(start.repeat)) != 1:
        raise PotstillError(
            f"MOMT's order parameter counts FCC reciprocal vectors of an n x n x n cubic FCC cell; got "
            f"{start.lattice} repeated {list(start.repeat)}: use lattice: fcc and repeat: [n, n, n]"
        )


def _start_or_resume(
    state_path: Path,
    store: Store,
    crystal,
    potential,
    m: MomtConfig,
    references,
    reference_name: str,
) -> MomtRun:
    """The saved run (frames written after its last save are dropped), or a new one
    with a fresh bias on the configured or adapted (H, O) grid."""
    if state_path.exists():
        run = MomtRun.load(state_path, reference_name=reference_name)
        stale = store.ids(f"momt_frame>={run.n_frames}")
        if stale:
            store.delete(stale)
        return run
    n_atoms = len(crystal)
    h_range = (
        tuple(m.h_range_eV) if m.h_range_eV else _auto_h_range(references, n_atoms, m.h_margin)
    )
    o_range = tuple(m.o_range) if m.o_range else (-5.0, 1.1 * n_atoms)
    bias = BiasGrid.empty(h_range, o_range, m.n_h_bins, m.n_o_bins, ln_f=m.wang_landau.ln_f0)
    return MomtRun.start(crystal, **potential, bias=bias, settings=m, reference_name=reference_name)


def _wang_landau(run: MomtRun, m: MomtConfig, state_path: Path, progress) -> int | None:
    """Build the bias (checkpointed every chunk), freeze it and limit its slopes; the
    number of bias nodes the slope limit raised (None when resumed after it)."""
    task = (
        progress.add_task("MOMT Wang-Landau steps", total=m.wang_landau.max_steps)
        if progress
        else None
    )
    steps_before = int(run.lmp.extract_global("ntimestep"))
    if not run.bias.frozen and run.production_start < 0:

        def checkpoint(r, done):
            r.save(state_path)
            if progress:
                progress.update(task, completed=done)

        run.wang_landau(
            m.wang_landau,
            max_steps=max(0, m.wang_landau.max_steps - steps_before),
            chunk=50_000,
            on_chunk=checkpoint,
        )
    raised = None
    if not run.bias.frozen or run.production_start < 0:
        run.bias.frozen = True
        raised = run.bias.limit_slopes(m.min_force_scale)
    run.save(state_path)
    return raised


def _production(
    run: MomtRun, m: MomtConfig, store: Store, state_path: Path, lattice: str, progress
) -> None:
    """Record frames with the frozen bias, saving the state after every chunk."""
    task = (
        progress.add_task("MOMT production frames", total=m.n_frames, completed=run.n_frames)
        if progress
        else None
    )
    while run.n_frames < m.n_frames:
        frames = run.production(min(FRAME_CHUNK, m.n_frames - run.n_frames), m.interval)
        for frame in frames:
            frame.info["start_structure"] = lattice
        store.add(frames)
        run.save(state_path)
        if progress:
            progress.update(task, completed=run.n_frames)


def _reference_runs(
    crystal, potential, m: MomtConfig, path: Path, *, progress, timings
) -> dict[str, np.ndarray]:
    """Plain NPT at T0 (zero, frozen bias) from the crystal and from a melt; cached in ``path``."""
    if path.exists():
        with np.load(path) as data:
            return {
                "NPT from crystal": np.array(data["crystal"]),
                "NPT from liquid": np.array(data["liquid"]),
            }
    t = time.time()
    melt = list(
        sample_md(
            crystal,
            **potential,
            temperatures_K=[2.0 * m.temperature_K],
            steps_per_temperature=20_000,
            interval=20_000,
            seed=m.seed,
        )
    )[-1]
    traces = {}
    plain = MomtSettings(
        **m.model_dump(include=set(MomtSettings.model_fields)) | {"trace_interval": 100}
    )
    task = progress.add_task("plain NPT reference runs", total=2) if progress else None
    for name, atoms in (("crystal", crystal), ("liquid", melt)):
        bias = BiasGrid.empty((-1.0, 1.0), (-1.0, 1.0), 4, 4)
        bias.frozen = True
        with MomtRun.start(atoms, **potential, bias=bias, settings=plain) as run:
            run.md(m.reference_steps)
            traces[name] = run.trace
        if progress:
            progress.advance(task)
    np.savez(path, **traces)
    timings["reference_runs_s"] = time.time() - t
    return {"NPT from crystal": traces["crystal"], "NPT from liquid": traces["liquid"]}


def _auto_h_range(
    references: dict[str, np.ndarray], n_atoms: int, margin: float
) -> tuple[float, float]:
    """(H_solid - margin dH, H_liquid + margin dH) from the reference runs, dH = H_l - H_s."""
    rows = np.vstack(list(references.values()))
    solid = rows[rows[:, 3] > SOLID * n_atoms, 2]
    liquid = rows[rows[:, 3] < LIQUID * n_atoms, 2]
    if solid.size == 0 or liquid.size == 0:
        phase = "the crystal melts" if solid.size == 0 else "the liquid freezes"
        raise PotstillError(
            f"in plain NPT at T0 {phase}, so T0 is far from the potential's melting point; "
            "choose a temperature_K nearer it or give momt.h_range_eV"
        )
    h_s, h_l = float(solid.mean()), float(liquid.mean())
    gap = max(h_l - h_s, 1e-3 * n_atoms)
    return (h_s - margin * gap, h_l + margin * gap)


def _phase_summary(trace: np.ndarray, n_atoms: int) -> dict:
    """Range of O / N in a plain run and whether it ever reached the solid (O > 0.5 N) or
    the liquid (O < 0.1 N) region: a run that stays in its phase visits only one."""
    o = trace[:, 3] / n_atoms
    return {
        "O_over_N_min": float(o.min()),
        "O_over_N_max": float(o.max()),
        "visited_solid": bool((o > SOLID).any()),
        "visited_liquid": bool((o < LIQUID).any()),
        "E_eV_per_atom_mean": float(trace[:, 1].mean() / n_atoms),
        "ps": float((trace[-1, 0] - trace[0, 0]) / 1000.0),
    }


def _analyse(report: Path, references, wl, prod, n_atoms: int, m: MomtConfig) -> dict:
    """Figures (in the stage's ``report`` folder) and the reweighting estimate of T_m."""
    report.mkdir(parents=True, exist_ok=True)
    traces_plot(
        references,
        {"Wang-Landau": wl, "production": prod},
        report / "momt_traces.png",
        n_atoms=n_atoms,
        timestep_fs=m.timestep_fs,
        title=f"{n_atoms} atoms, T0 = {m.temperature_K:.0f} K, P0 = {m.pressure_bar:g} bar",
    )
    results: dict = {"figures": ["momt_traces.png"]}
    if len(prod) < 10:
        return results
    T0 = m.temperature_K
    temps = np.linspace(0.7 * T0, 1.3 * T0, 25)
    try:
        balance = phase_balance(
            prod[:, 2], prod[:, 3], prod[:, 5], T0_K=T0, temperatures_K=temps, o_split=0.3 * n_atoms
        )
    except PotstillError as error:
        results["reweighting"] = {"error": str(error)}
        return results
    h_edges = np.linspace(prod[:, 2].min(), prod[:, 2].max(), 41)
    o_edges = np.linspace(min(0.0, prod[:, 3].min()), prod[:, 3].max(), 41)
    shown = [balance.melting_K or T0, 0.9 * T0, 1.1 * T0]
    histograms = {
        T: (
            reweighted_histogram(
                prod[:, 2], prod[:, 3], prod[:, 5], T0_K=T0, T_K=T, h_edges=h_edges, o_edges=o_edges
            ),
            h_edges,
            o_edges,
        )
        for T in sorted(shown)
    }
    reweighting_plot(histograms, balance, report / "momt_reweighting.png", n_atoms=n_atoms)
    results["figures"].append("momt_reweighting.png")
    results["reweighting"] = {
        "melting_K": balance.melting_K,
        "temperatures_K": balance.temperatures_K.tolist(),
        "dG_meV_per_atom": (balance.dG_eV / n_atoms * 1000).tolist(),
        "effective_samples": balance.effective_samples.tolist(),
    }
    return results
