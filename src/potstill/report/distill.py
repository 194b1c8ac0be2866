"""The distillation curve (seed 000 Fig. 2a layout): the committee's energy MAE on the
whole pool after each active-learning iteration (left axis, meV/atom, log scale) and the
fraction of the pool kept so far (right axis, %, bars), with the 2 meV/atom target."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from potstill.report.plots import _figure, _png_path, _save

TARGET_MEV_PER_ATOM = 2.0  # seed 000: 17 % of the pool reaches MAE < 2 meV/atom


def distill_curve(
    curve: Sequence[Mapping],
    *,
    path: str | Path,
    title: str | None = None,
    baseline: float | None = None,
) -> Path:
    """Plot ``curve`` rows (``iteration``, ``pool_energy_mae_meV_per_atom``,
    ``fraction_kept``) of a distillation record as a PNG at ``path``; ``baseline``
    (meV/atom): the pool MAE of the same committee trained on all frames, drawn with
    its 1.25x band."""
    path = _png_path(path)
    iterations = [row["iteration"] for row in curve]
    mae = [row["pool_energy_mae_meV_per_atom"] for row in curve]
    kept = [100 * row["fraction_kept"] for row in curve]
    fig = _figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    bars = ax.twinx()
    bars.bar(iterations, kept, width=0.6, color="tab:gray", alpha=0.35, label="pool kept (%)")
    bars.set_ylabel("pool kept (%)")
    bars.set_ylim(0, max(1.05 * max(kept), 1.0))
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(iterations, mae, "o-", color="tab:blue", label="committee energy MAE on the pool")
    for x, y, k in zip(iterations, mae, kept):
        ax.annotate(
            f"{k:.1f}%", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
        )
    ax.axhline(TARGET_MEV_PER_ATOM, color="tab:red", ls="--", lw=1, label="2 meV/atom")
    low = min(min(mae), TARGET_MEV_PER_ATOM)
    if baseline is not None:
        ax.axhspan(baseline, 1.25 * baseline, color="tab:green", alpha=0.15, lw=0)
        ax.axhline(baseline, color="tab:green", lw=1.2, label="trained on all frames (band: x1.25)")
        low = min(low, baseline)
    ax.set_yscale("log")
    ax.set_ylim(low / 1.3, max(mae) * 1.6)
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("active-learning iteration")
    ax.set_ylabel("pool energy MAE (meV/atom)")
    ax.set_xticks(iterations, [_label(row) for row in curve])
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def distill_markdown(curve: Sequence[Mapping], baseline: Mapping | None = None) -> str:
    """The curve as a markdown table (per iteration: chunk, frames added and kept, the
    threshold, the pool MAE), with the all-frames baseline's MAE as a last row."""
    lines = [
        "| iteration | chunk | added | kept | kept (% of pool) | threshold (meV) | pool energy MAE (meV/atom) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in curve:
        threshold = row.get("threshold_eV")
        mae = row.get("pool_energy_mae_meV_per_atom")
        lines.append(
            f"| {_label(row)} | {_chunk(row)} | {row['n_new']} | {row['n_selected']} | "
            f"{100 * row['fraction_kept']:.1f} | {'-' if threshold is None else f'{1000 * threshold:.1f}'} | "
            f"{'-' if mae is None else f'{mae:.2f}'} |"
        )
    if baseline and baseline.get("pool_energy_mae_meV_per_atom") is not None:
        lines.append(
            f"| all frames | | | {baseline.get('n_selected')} | 100.0 | - | "
            f"{baseline['pool_energy_mae_meV_per_atom']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _label(row: Mapping) -> str:
    """An iteration's axis and table label: its number, or ``final`` for the final pass."""
    return "final" if row.get("final_pass") else str(row["iteration"])


def _chunk(row: Mapping) -> str:
    chunk = row.get("chunk")
    return "distilled set" if chunk is None else f"{chunk[0]}-{chunk[1]}"
