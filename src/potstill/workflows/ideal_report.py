"""The report of ``ideal``: ``summary.json`` and the figures of seed 003.

- ``traces.png`` (Fig. 4b-d): temperature, potential energy per atom and the largest
  atom uncertainty along the MD of the initial model alone and of every on-the-fly run,
  with the update events marked;
- ``rdf.png`` (Fig. 2d): the radial distribution of the first and last kept frames of
  the ``ides`` run;
- ``labels.png`` (Fig. 2e): cumulative reference calls and atoms labeled along the MD;
- ``errors.png`` (Tables 1 and 2): energy, force and stress errors on whole frames of
  the ``ides`` trajectory of the initial model and of each run's final model.
"""

from __future__ import annotations

import time

import numpy as np
from ase.geometry.rdf import get_rdf

from potstill.frames import get_labels
from potstill.models import predict
from potstill.report.plots import new_figure, save_figure
from potstill.rundir import Stage, write_json
from potstill.validation.metrics import pool_errors
from potstill.workflows.ideal_loop import crystal, load_model, load_trace, trajectory_frames

__all__ = ["run_summary", "write_report"]

_ERRORS = (
    ("energy_meV_per_atom", "energy MAE (meV/atom)"),
    ("forces_eV_per_A", "force MAE (eV/A)"),
    ("stress_GPa", "stress MAE (GPa)"),
)


def write_report(config, stage: Stage, runs: dict, baseline: dict | None, test, started):
    """Publish the ``ideal`` stage and put ``ideal`` in ``OUT/report/summary.json``."""
    out = stage.report
    out.mkdir(parents=True, exist_ok=True)
    models = {"initial": runs["ides"].model_dir(0)} | {m: r.model_dir() for m, r in runs.items()}
    errors = (
        {name: _errors(folder, test, config) for name, folder in models.items()} if test else {}
    )
    summary = {
        "reference": {"kind": config.reference.kind, "options": config.reference.options},
        "n_atoms": len(crystal(config, config.system.repeat)),
        "runs": {mode: run_summary(run) for mode, run in runs.items()},
        "baseline": baseline,
        "errors": errors,
        "n_test_frames": len(test),
        "ablation_order_holds": _order(errors),
        "wall_time_s": round(time.time() - started, 1),
    }
    traces = {mode: load_trace(run.root) for mode, run in runs.items()}
    if baseline is not None:
        traces["initial model (no learning)"] = load_trace(stage.root / "baseline")
    figures = [
        _traces_figure(out / "traces.png", traces, runs, config, test),
        _rdf_figure(out / "rdf.png", runs["ides"], config),
        _labels_figure(out / "labels.png", runs, config),
    ]
    if errors:
        figures.append(_errors_figure(out / "errors.png", errors))
    stage.publish(
        summary,
        title=f"{config.name}: on-the-fly learning on embedded substructures (seed 003)",
        tables=[
            ("Errors on whole frames of the IDEAL trajectory", _error_table(errors)),
            ("On-the-fly runs", _run_table(summary["runs"])),
        ],
        figures=figures,
    )
    merged = stage.run.summary()
    write_json(stage.run.report / "summary.json", merged)
    return merged


def run_summary(run) -> dict:
    """Events, substructures and labeled atoms per event, reference seconds per event."""
    events = [r for r in run.records[1:] if r.get("n_new_frames", 0) > 0]
    atoms = [r["n_atoms_labeled"] for r in events]
    subs = [r["n_new_frames"] for r in events]
    seconds = [r["reference_seconds"] for r in events]
    per_sub = [s["n_atoms"] for r in events for s in r.get("substructures", [])]
    last = run.records[-1]
    return {
        "events": len(events),
        "outcome": last.get("outcome"),
        "last_step": last.get("step", 0),
        "threshold": run.records[0]["threshold"],
        "substructures_per_event": _mean(subs),
        "atoms_per_event": _mean(atoms),
        "atoms_per_substructure": _mean(per_sub),
        "max_atoms_per_substructure": max(per_sub, default=0),
        "reference_s_per_event": _mean(seconds),
        "event_steps": [r["md_step"] for r in events],
        "atoms_per_event_list": atoms,
        "embed_mean_uncertainty": [
            (s.get("crop_mean_uncertainty"), s.get("embed_mean_uncertainty"))
            for r in events
            for s in r.get("substructures", [])
        ],
        "n_training_frames": last.get("n_training_frames"),
        "model_dir": last.get("model_dir"),
    }


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _errors(folder, test, config) -> dict:
    predictions = predict(load_model(folder), test, batch_size=8)
    return pool_errors(test, predictions, config.reference.name)


def _order(errors: dict) -> dict | None:
    """Whether seed 003's ablation order holds: vacuum worst, IDES best, per quantity."""
    if not {"ides", "periodic", "vacuum"} <= set(errors):
        return None
    out = {}
    for key, _ in _ERRORS:
        if key not in errors["ides"]:
            continue
        v, p, i = (errors[m][key]["mae"] for m in ("vacuum", "periodic", "ides"))
        out[key] = bool(v >= p >= i)
    return out


def _error_table(errors: dict) -> str:
    if not errors:
        return "no whole-frame test set (evaluation.frames is 0)"
    keys = [(k, label) for k, label in _ERRORS if k in next(iter(errors.values()))]
    lines = ["| model | " + " | ".join(label for _, label in keys) + " |"]
    lines.append("|---" * (len(keys) + 1) + "|")
    for name, e in errors.items():
        lines.append(f"| {name} | " + " | ".join(f"{e[k]['mae']:.4g}" for k, _ in keys) + " |")
    return "\n".join(lines)


def _run_table(runs: dict) -> str:
    lines = [
        "| run | outcome | events | substructures/event | atoms/event | atoms/substructure "
        "| reference s/event |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in runs.items():
        cells = [r["outcome"], r["events"]] + [
            "" if r[k] is None else f"{r[k]:.3g}"
            for k in (
                "substructures_per_event",
                "atoms_per_event",
                "atoms_per_substructure",
                "reference_s_per_event",
            )
        ]
        lines.append(f"| {mode} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _traces_figure(path, traces: dict, runs: dict, config, test):
    fig = new_figure(figsize=(7, 8))
    axes = fig.subplots(3, 1, sharex=True)
    ps = config.md.timestep_fs / 1000.0
    for name, trace in traces.items():
        if not len(trace["step"]):
            continue
        t = trace["step"] * ps
        style = {"color": "k", "lw": 1.5} if name.startswith("initial") else {"lw": 1}
        axes[0].plot(t, trace["temperature_K"], label=name, **style)
        axes[1].plot(t, trace["energy_eV_per_atom"], **style)
        axes[2].plot(t, trace["max_score"], **style)
    if test:  # the reference's energy of whole frames of the ides trajectory
        steps = np.array([a.info["step"] for a in test]) * ps
        reference = [get_labels(a, config.reference.name).energy / len(a) for a in test]
        axes[1].plot(steps, reference, "k.", ms=3, label=f"{config.reference.name} (ides frames)")
        axes[1].legend(fontsize=8)
    events = np.array(run_summary(runs["ides"])["event_steps"]) * ps
    for x in events:
        axes[2].axvline(x, color="C0", alpha=0.15, lw=0.8)
    axes[2].axhline(runs["ides"].records[0]["threshold"], color="r", ls="--", lw=1)
    axes[2].set_yscale("log")
    axes[0].set_ylabel("temperature (K)")
    axes[1].set_ylabel("potential energy (eV/atom)")
    axes[2].set_ylabel("largest atom uncertainty")
    axes[2].set_xlabel("time (ps)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def _labels_figure(path, runs: dict, config):
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    ps = config.md.timestep_fs / 1000.0
    for mode, run in runs.items():
        events = [r for r in run.records[1:] if r.get("n_new_frames", 0) > 0]
        steps = [0] + [r["md_step"] for r in events]
        atoms = np.cumsum([0] + [r["n_atoms_labeled"] for r in events])
        ax.step(np.array(steps) * ps, atoms, where="post", label=mode)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("atoms labeled by the reference (cumulative)")
    ax.legend()
    return save_figure(fig, path)


def _errors_figure(path, errors: dict):
    keys = [(k, label) for k, label in _ERRORS if k in next(iter(errors.values()))]
    fig = new_figure(figsize=(3.2 * len(keys), 3.5))
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    names = list(errors)
    for ax, (key, label) in zip(axes, keys):
        ax.bar(
            names,
            [errors[n][key]["mae"] for n in names],
            color=[f"C{i}" for i in range(len(names))],
        )
        ax.set_ylabel(label)
        ax.tick_params(axis="x", rotation=30)
    return save_figure(fig, path)


def _rdf_figure(path, run, config):
    """Radial distribution of the first and last kept frames of the ``ides`` run (seed
    003 Fig. 2d: the crystal's peaks, then the liquid's)."""
    steps, positions = trajectory_frames(run.root)
    if not len(steps):
        return None
    start = crystal(config, config.system.repeat)
    rmax = 0.49 * min(np.linalg.norm(start.cell[:], axis=1).min(), 10.0)
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    for k in (0, len(steps) - 1):
        atoms = start.copy()
        atoms.positions = positions[k]
        rdf, r = get_rdf(atoms, rmax, 100)
        ax.plot(r, rdf, label=f"{steps[k] * config.md.timestep_fs / 1000:.2f} ps")
    ax.set_xlabel("r (A)")
    ax.set_ylabel("g(r)")
    ax.legend()
    return save_figure(fig, path)
