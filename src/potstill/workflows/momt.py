"""The MOMT sampling stage (``sample.sampler: momt``): reference runs, Wang-Landau,
production into the pool, reweighting and figures.

Outputs in the run directory::

    pool.db                 production frames, labeled (see potstill.sampling.momt)
    momt_reference.npz      plain NPT traces at T0 from the crystal and from a melt
    momt_state.npz          bias + MD state, saved every chunk (resume continues from it)
    sample.json             record: ranges, Wang-Landau stages, round trips, wall times, T_m
    report/momt_traces.png  E and O vs time: NPT crystal, NPT liquid, MOMT (Fig. S1 layout)
    report/momt_reweighting.png  reweighted P(H, O) and G_liquid - G_solid vs T

An interrupted run resumes (``resume=True``) from the last saved state: finished
frames stay in the pool; frames written after the last state save are replaced.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from potstill.config import RunConfig
from potstill.errors import PotstillError
from potstill.records import claim_output, write_record
from potstill.store import Store

SOLID, LIQUID = 0.5, 0.1  # O / N above which a frame is solid, below which liquid
FRAME_CHUNK = 200


def sample(config: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False, progress=None) -> dict:
    """Run MOMT sampling as configured in ``config.sample.momt`` into ``<out>/pool.db``."""
    from ase.build import bulk

    from potstill.references import lammps_options
    from potstill.sampling.bias import BiasGrid, WangLandau
    from potstill.sampling.momt import MomtRun, MomtSettings, count_round_trips

    m = config.sample.momt
    start = config.sample.structure or config.sample.starts()[0]
    if start.element not in config.species:
        raise PotstillError(f"sample structure element {start.element} not in species {config.species}")
    if start.lattice != "fcc" or len(set(start.repeat)) != 1:
        raise PotstillError(
            f"MOMT's order parameter counts FCC reciprocal vectors of an n x n x n cubic FCC cell; got "
            f"{start.lattice} repeated {list(start.repeat)}: use lattice: fcc and repeat: [n, n, n]"
        )
    pool, state_path, reference_path = out / "pool.db", out / "momt_state.npz", out / "momt_reference.npz"
    record_path = out / "sample.json"
    outputs = [pool, state_path, reference_path, record_path]
    if not (resume and state_path.exists()):
        claim_output(outputs, overwrite=overwrite, resume=resume, what="sample")
        for path in (pool, state_path):
            path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    potential = lammps_options(config.reference.kind, config.reference.options)
    crystal = bulk(start.element, start.lattice, a=start.a_A, cubic=True).repeat(start.repeat)
    n_atoms = len(crystal)
    settings = MomtSettings(temperature_K=m.temperature_K, pressure_bar=m.pressure_bar,
                            timestep_fs=m.timestep_fs, seed=m.seed)
    schedule = WangLandau(**m.wang_landau.model_dump(exclude={"max_steps"}))
    started = time.time()
    timings: dict[str, float] = {}
    references = _reference_runs(crystal, potential, settings, m.reference_steps, reference_path,
                                 progress=progress, timings=timings)
    store = Store(pool)
    if resume and state_path.exists():
        run = MomtRun.load(state_path, reference_name=config.reference.name)
        stale = store.ids(f"momt_frame>={run.n_frames}")
        if stale:
            store.delete(stale)
    else:
        h_range = tuple(m.h_range_eV) if m.h_range_eV else _auto_h_range(references, n_atoms, m.h_margin)
        o_range = tuple(m.o_range) if m.o_range else (-5.0, 1.1 * n_atoms)
        bias = BiasGrid.empty(h_range, o_range, m.n_h_bins, m.n_o_bins, ln_f=schedule.ln_f0)
        run = MomtRun.start(crystal, **potential, bias=bias, settings=settings, reference_name=config.reference.name)
    with run:
        t = time.time()
        wl_task = progress.add_task("MOMT Wang-Landau steps", total=m.wang_landau.max_steps) if progress else None
        steps_before = int(run.lmp.extract_global("ntimestep"))
        if not run.bias.frozen and run.production_start < 0:
            def checkpoint(r, done):
                r.save(state_path)
                if progress:
                    progress.update(wl_task, completed=done)
            run.wang_landau(schedule, max_steps=max(0, m.wang_landau.max_steps - steps_before),
                            chunk=50_000, on_chunk=checkpoint)
        if not run.bias.frozen or run.production_start < 0:
            run.bias.frozen = True
            raised_nodes = run.bias.limit_slopes(settings.min_force_scale)
        else:
            raised_nodes = None
        run.save(state_path)
        timings["wang_landau_s"] = time.time() - t
        t = time.time()
        task = progress.add_task("MOMT production frames", total=m.n_frames, completed=run.n_frames) if progress else None
        while run.n_frames < m.n_frames:
            frames = run.production(min(FRAME_CHUNK, m.n_frames - run.n_frames), m.interval)
            for frame in frames:
                frame.info["start_structure"] = start.lattice
            store.add(frames)
            run.save(state_path)
            if progress:
                progress.update(task, completed=run.n_frames)
        timings["production_s"] = time.time() - t
        trace, production_start, bias = run.trace, run.production_start, run.bias
        clipped = run.clipped_steps
        production_steps = int(trace[-1, 0] - production_start) if len(trace) else 0
    wl = trace[trace[:, 0] < production_start]
    prod = trace[trace[:, 0] >= production_start]
    results = {
        "n_frames": len(store), "n_atoms": n_atoms, "store": str(pool),
        "temperature_K": m.temperature_K, "pressure_bar": m.pressure_bar,
        "h_range_eV": list(bias.h_range), "o_range": list(bias.o_range),
        "wang_landau": {"stages": bias.stage, "ln_f": bias.ln_f, "steps": int(production_start - trace[0, 0]) if len(trace) else 0,
                        "bins_visited": int((bias.visits > 0).sum())},
        "round_trips": {"wang_landau": count_round_trips(wl[:, 3], n_atoms, solid=SOLID, liquid=LIQUID),
                        "production": count_round_trips(prod[:, 3], n_atoms, solid=SOLID, liquid=LIQUID)},
        "production_steps_off_h_momt": clipped, "production_steps": production_steps,
        "bias_nodes_raised_by_slope_limit": raised_nodes,
        "production_ns": float(len(prod) and (prod[-1, 0] - prod[0, 0]) * m.timestep_fs * 1e-6),
        "reference_runs": {name: _phase_summary(tr, n_atoms) for name, tr in references.items()},
        "timings_s": timings,
    }
    results.update(_analyse(out, references, wl, prod, n_atoms, m))
    results["wall_time_s"] = time.time() - started
    write_record(record_path, command="sample", inputs=config.sample.model_dump(), results=results, started=started)
    return results


def _reference_runs(crystal, potential, settings, steps, path: Path, *, progress, timings) -> dict[str, np.ndarray]:
    """Plain NPT at T0 (zero, frozen bias) from the crystal and from a melt; cached in ``path``."""
    from potstill.sampling.bias import BiasGrid
    from potstill.sampling.md import sample_md
    from potstill.sampling.momt import MomtRun

    if path.exists():
        with np.load(path) as data:
            return {"NPT from crystal": np.array(data["crystal"]), "NPT from liquid": np.array(data["liquid"])}
    t = time.time()
    melt = list(sample_md(crystal, **potential, temperatures_K=[2.0 * settings.temperature_K],
                          steps_per_temperature=20_000, interval=20_000, seed=settings.seed))[-1]
    traces = {}
    plain = dataclasses.replace(settings, trace_interval=100)
    task = progress.add_task("plain NPT reference runs", total=2) if progress else None
    for name, atoms in (("crystal", crystal), ("liquid", melt)):
        bias = BiasGrid.empty((-1.0, 1.0), (-1.0, 1.0), 4, 4)
        bias.frozen = True
        with MomtRun.start(atoms, **potential, bias=bias, settings=plain) as run:
            run.md(steps)
            traces[name] = run.trace
        if progress:
            progress.advance(task)
    np.savez(path, **traces)
    timings["reference_runs_s"] = time.time() - t
    return {"NPT from crystal": traces["crystal"], "NPT from liquid": traces["liquid"]}


def _auto_h_range(references: dict[str, np.ndarray], n_atoms: int, margin: float) -> tuple[float, float]:
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
    return {"O_over_N_min": float(o.min()), "O_over_N_max": float(o.max()),
            "visited_solid": bool((o > SOLID).any()), "visited_liquid": bool((o < LIQUID).any()),
            "E_eV_per_atom_mean": float(trace[:, 1].mean() / n_atoms),
            "ps": float((trace[-1, 0] - trace[0, 0]) / 1000.0)}


def _analyse(out: Path, references, wl, prod, n_atoms: int, m) -> dict:
    """Figures and the reweighting estimate of the melting point."""
    from potstill.report.momt import reweighting_plot, traces_plot
    from potstill.sampling.reweight import phase_balance, reweighted_histogram

    report = out / "report"
    report.mkdir(exist_ok=True)
    traces_plot(references, {"Wang-Landau": wl, "production": prod}, report / "momt_traces.png",
                n_atoms=n_atoms, timestep_fs=m.timestep_fs,
                title=f"{n_atoms} atoms, T0 = {m.temperature_K:.0f} K, P0 = {m.pressure_bar:g} bar")
    results: dict = {"figures": ["report/momt_traces.png"]}
    if len(prod) < 10:
        return results
    T0 = m.temperature_K
    temps = np.linspace(0.7 * T0, 1.3 * T0, 25)
    try:
        balance = phase_balance(prod[:, 2], prod[:, 3], prod[:, 5], T0_K=T0, temperatures_K=temps,
                                o_split=0.3 * n_atoms)
    except PotstillError as error:
        results["reweighting"] = {"error": str(error)}
        return results
    h_edges = np.linspace(prod[:, 2].min(), prod[:, 2].max(), 41)
    o_edges = np.linspace(min(0.0, prod[:, 3].min()), prod[:, 3].max(), 41)
    shown = [balance.melting_K or T0, 0.9 * T0, 1.1 * T0]
    histograms = {T: (reweighted_histogram(prod[:, 2], prod[:, 3], prod[:, 5], T0_K=T0, T_K=T,
                                           h_edges=h_edges, o_edges=o_edges), h_edges, o_edges)
                  for T in sorted(shown)}
    reweighting_plot(histograms, balance, report / "momt_reweighting.png", n_atoms=n_atoms)
    results["figures"].append("report/momt_reweighting.png")
    results["reweighting"] = {
        "melting_K": balance.melting_K,
        "temperatures_K": balance.temperatures_K.tolist(),
        "dG_meV_per_atom": (balance.dG_eV / n_atoms * 1000).tolist(),
        "effective_samples": balance.effective_samples.tolist(),
    }
    return results
