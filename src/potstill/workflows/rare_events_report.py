"""The report of ``rare_events``: ``summary.json`` and the figures of seed 004.

- ``work_<run>.png`` (Figs. S2a-S5a): work against pulled distance of the reference and
  of the best member at every iteration;
- ``error.png`` (Figs. S2b-S5b, S8a): |E_a error| per iteration of every run, with the
  1 kcal/mol target;
- ``uq.png`` (Fig. S1): the committee's energy std along the SMD of a few iterations of
  the first run, with the window and the ``mu + k sigma`` threshold;
- ``loading.png`` (Fig. S7): work curves of the reference and the NNP at each speed.
"""

from __future__ import annotations

import time

import numpy as np

from potstill.report.plots import new_figure, save_figure
from potstill.rundir import Stage, write_json
from potstill.sampling.smd import Trajectory
from potstill.uncertainty import mu_k_sigma
from potstill.workflows.rare_events_reference import KCAL, ReferenceRuns

__all__ = ["write_report"]


def write_report(config, stage: Stage, ref: ReferenceRuns, runs: dict, loading: dict, started):
    """Publish the ``rare_events`` stage (``OUT/report/rare_events/``: figures, page)
    and put ``reference`` and ``runs`` at the top of ``OUT/report/summary.json``;
    return the run's summary."""
    out = stage.report
    out.mkdir(parents=True, exist_ok=True)
    ea = np.array(ref.Ea_eV)
    summary = {
        "reference": {
            "kind": config.reference.kind,
            "options": config.reference.options,
            "Ea_eV": float(ea[0]),
            "Ea_kcal_per_mol": float(ea[0] * KCAL),
            "thermal_starts_Ea_eV": ea.tolist(),
            "thermal_starts_Ea_kcal_per_mol": (ea * KCAL).tolist(),
            "thermal_spread_kcal_per_mol": float((ea.max() - ea.min()) * KCAL),
            "n_unseen_frames": len(ref.test_frames(config.reference.name, config.smd.test_every)),
        },
        "runs": {name: _run_summary(run, config) for name, run in runs.items()},
        "loading": {
            speed: {k: v for k, v in record.items() if not k.endswith("_curve")}
            for speed, record in loading.items()
        },
        "wall_time_s": round(time.time() - started, 1),
    }
    figures = [
        _error_figure(out / "error.png", runs, config),
        _uq_figure(out / "uq.png", stage.root, config),
        *[_work_figure(out / f"work_{name}.png", stage.root, ref, name) for name in runs],
    ]
    if loading:
        figures.append(_loading_figure(out / "loading.png", loading))
    stage.publish(
        summary,
        title=f"{config.name}: active learning of a bond-breaking barrier (seed 004)",
        tables=[("E_a error per iteration (kcal/mol)", _table(summary["runs"]))],
        figures=figures,
    )
    merged = stage.run.summary()
    merged.update(reference=summary["reference"], runs=summary["runs"])
    write_json(stage.run.report / "summary.json", merged)
    return merged


def _table(runs: dict) -> str:
    """Markdown: one row per iteration, one column per run."""
    n = max(len(r["abs_error_kcal_per_mol"]) for r in runs.values())
    lines = ["| iteration | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for i in range(n):
        cells = [
            f"{r['abs_error_kcal_per_mol'][i]:.2f}" if i < len(r["abs_error_kcal_per_mol"]) else ""
            for r in runs.values()
        ]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run_summary(run, config) -> dict:
    records = run.records
    errors = [r["abs_error_kcal_per_mol"] for r in records]
    target, hold = config.learning.target_kcal_per_mol, config.learning.hold
    reached = next(
        (
            r["iteration"]
            for k, r in enumerate(records)
            if all(e < target for e in errors[k : k + hold]) and len(errors[k : k + hold]) == hold
        ),
        None,
    )
    return {
        "iterations": [r["iteration"] for r in records],
        "Ea_kcal_per_mol": [r["Ea_kcal_per_mol"] for r in records],
        "abs_error_kcal_per_mol": errors,
        "unseen_mae_kcal_per_mol": [r["unseen_mae_kcal_per_mol"] for r in records],
        "data_mae_kcal_per_mol": [r["data_mae_kcal_per_mol"] for r in records],
        "n_new_frames": [r["n_new_frames"] for r in records],
        "n_training_frames": [r["n_training_frames"] for r in records],
        "n_label_failures": [r.get("n_label_failures", 0) for r in records],
        "wall_time_s": [r["wall_time_s"] for r in records],
        "total_wall_time_s": round(sum(r["wall_time_s"] for r in records), 1),
        "reached_target_at_iteration": reached,
        "best_member": str(run.best_member),
    }


def _error_figure(path, runs, config):
    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, run in runs.items():
        ax.plot(
            [r["iteration"] for r in run.records],
            [r["abs_error_kcal_per_mol"] for r in run.records],
            marker="o",
            label=name,
        )
    ax.axhline(config.learning.target_kcal_per_mol, color="k", ls="--", lw=1, label="target")
    ax.set_yscale("log")
    ax.set_xlabel("active-learning iteration")
    ax.set_ylabel("|E_a(NNP) - E_a(reference)| (kcal/mol)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _work_figure(path, root, ref: ReferenceRuns, name: str):
    from matplotlib import colormaps

    fig = new_figure(figsize=(6, 4))
    ax = fig.subplots()
    smd = ref.smd[0]
    ax.plot(smd.distance, smd.work, color="k", lw=2, label="reference")
    folders = sorted(
        (root / name).glob("iter_*/smd.npz"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    colors = colormaps["viridis"](np.linspace(0, 1, max(len(folders), 1)))
    for color, path_i in zip(colors, folders):
        t = Trajectory.load(path_i)
        ax.plot(t.distance, t.work, color=color, lw=1, label=path_i.parent.name.replace("_", " "))
    ax.set_xlabel("pulled C-C distance (A)")
    ax.set_ylabel("work (eV)")
    ax.set_title(name)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def _uq_figure(path, root, config):
    name = config.learning.runs[0].name
    root = root / name
    shown = [i for i in (0, 1, 2, 9) if (root / f"iter_{i}" / "uq.npy").exists()]
    fig = new_figure(figsize=(6, 1.8 * max(len(shown), 1)))
    axes = fig.subplots(len(shown) or 1, 1, squeeze=False)
    window = config.learning.uq_window
    for ax, i in zip(axes[:, 0], shown):
        uq = np.load(root / f"iter_{i}" / "uq.npy")
        threshold = mu_k_sigma(uq[:window], config.learning.k_sigma)
        ax.plot(uq, lw=0.6)
        ax.axvspan(0, window, color="tab:blue", alpha=0.15)
        ax.axhline(threshold.value, color="r", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel(f"AL{i} std E (eV)", fontsize=8)
    axes[-1, 0].set_xlabel("SMD step")
    fig.suptitle(f"{name}: committee energy std, window and mu + {config.learning.k_sigma:g} sigma")
    return save_figure(fig, path)


def _loading_figure(path, loading: dict):
    fig = new_figure(figsize=(3.2 * len(loading), 3.2))
    axes = fig.subplots(1, len(loading), squeeze=False)
    for ax, (speed, record) in zip(axes[0], loading.items()):
        for who, style in (("reference", "k-"), ("nnp", "r--")):
            curve = record[f"{who}_curve"]
            ax.plot(curve["distance_A"], curve["work_eV"], style, label=who)
        ax.set_title(
            f"{speed} A/ps: E_a {record['Ea_reference_eV'] * KCAL:.0f} / "
            f"{record['Ea_nnp_eV'] * KCAL:.0f} kcal/mol",
            fontsize=8,
        )
        ax.set_xlabel("distance (A)")
    axes[0, 0].set_ylabel("work (eV)")
    axes[0, 0].legend(fontsize=8)
    return save_figure(fig, path)
