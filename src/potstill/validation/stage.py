"""The validate stage: a trained committee against its reference.

Errors on the pool (parity plot), relaxed FCC/BCC/HCP crystals (seed 000 Table 2
layout), elastic constants (seed 001 Table 4 layout) and the members' learning curves,
written to ``<out>/report/validate/`` (summary.json, PNGs, index.html) and merged into
the run's ``report/summary.json`` under ``validate``. The stage owns only its report
folder, so it never touches what other stages wrote there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from potstill.errors import PotstillError
from potstill.models import PotstillCalculator, load_checkpoint, predict
from potstill.references import ReferenceConfig, make_calculator
from potstill.report.learning import learning_curves
from potstill.report.plots import parity_panel
from potstill.rundir import RunDir
from potstill.settings import Section
from potstill.store import Store
from potstill.validation.crystals import compare_crystals, format_crystal_table
from potstill.validation.elastic import compare_elastic, format_elastic_table
from potstill.validation.metrics import pair_errors, pool_pairs

__all__ = ["ValidateConfig", "pool_summary", "validate"]


class ValidateConfig(Section):
    """Physics checks after training: errors on the whole ``pool``, relaxed
    ``crystals``, ``elastic`` constants, of ``element`` (default: the first species)."""

    pool: bool = True
    crystals: list[Literal["fcc", "bcc", "hcp"]] = Field(
        default_factory=lambda: ["fcc", "bcc", "hcp"]
    )
    elastic: bool = True
    element: str | None = None


def validate(
    config: ValidateConfig,
    *,
    name: str,
    species: list[str],
    reference: ReferenceConfig,
    run: RunDir,
    committee_path: Path,
    checksum: str | None = None,
    progress=None,
) -> dict:
    """Validate the committee at ``committee_path`` (whose parameters hash to
    ``checksum``, kept in the summary); returns the stage's summary."""
    if not committee_path.exists():
        raise PotstillError(f"no trained committee at {committee_path}; run `potstill train` first")
    stage = run.stage("validate", root="report/validate")
    stage.claim()
    started = time.time()
    committee = load_checkpoint(committee_path)
    summary: dict[str, Any] = {"name": name, "species": species, "committee_checksum": checksum}
    figures, tables = [], []
    stage.report.mkdir(parents=True, exist_ok=True)
    if config.pool:
        frames = Store(run.pool, create=False).get()
        pairs = pool_pairs(frames, predict(committee, frames, progress=progress), reference.name)
        errors = pair_errors(pairs)
        summary["pool"] = pool_summary(errors) | {"errors": errors}
        figures.append(
            parity_panel(
                pairs,
                path=stage.report / "parity.png",
                title=f"{name}: whole pool ({len(frames)} frames)",
            )
        )
    model_calc = PotstillCalculator(committee)
    reference_calc = make_calculator(reference.kind, **reference.options)
    element = config.element or species[0]
    done = _progress_of(
        progress, "validate: relaxations", 2 * len(config.crystals) + 2 * config.elastic
    )
    if config.crystals:
        crystals = compare_crystals(
            model_calc, reference_calc, element, structures=config.crystals, done=done
        )
        summary["crystals"] = crystals
        tables.append(
            ("Relaxed crystals (seed 000 Table 2 layout)", format_crystal_table(crystals))
        )
    if config.elastic:
        elastic = compare_elastic(model_calc, reference_calc, element, done=done)
        summary["elastic_GPa"] = {k: elastic[k] for k in ("C11", "C12", "C44", "K", "G", "nu")}
        summary["elastic_lattice_A"] = elastic["a_A"]
        tables.append(
            ("Elastic constants (seed 001 Table 4 layout)", format_elastic_table(elastic))
        )
    histories = [m.get("history", []) for m in _member_metadata(committee_path.parent)]
    if any(histories):
        figures.append(learning_curves(histories, path=stage.report / "learning_curves.png"))
    summary["wall_time_s"] = round(time.time() - started, 1)
    stage.write_record(
        inputs=config.model_dump(), results={"summary": "summary.json"}, started=started
    )
    return stage.publish(summary, title=f"potstill report: {name}", tables=tables, figures=figures)


def pool_summary(errors: dict) -> dict:
    """The headline numbers of :func:`~potstill.validation.metrics.pair_errors`."""
    summary = {
        "n_frames": errors["n_frames"],
        "energy_mae_meV_per_atom": errors["energy_meV_per_atom"]["mae"],
        "energy_rmse_meV_per_atom": errors["energy_meV_per_atom"]["rmse"],
        "force_mae_eV_per_A": errors["forces_eV_per_A"]["mae"],
        "force_rmse_eV_per_A": errors["forces_eV_per_A"]["rmse"],
    }
    if "stress_GPa" in errors:
        summary["stress_mae_GPa"] = errors["stress_GPa"]["mae"]
        summary["stress_rmse_GPa"] = errors["stress_GPa"]["rmse"]
    return summary


def _progress_of(progress, description: str, total: int):
    """A ``done(label)`` callback advancing a progress bar of ``total`` steps (or None)."""
    if progress is None or total == 0:
        return None
    task = progress.add_task(description, total=total)
    return lambda label: progress.update(task, advance=1, description=f"{description}: {label}")


def _member_metadata(train_dir: Path) -> list[dict]:
    """The checkpoint metadata of the members saved next to a committee."""
    return [
        load_checkpoint(path).checkpoint_metadata
        for path in sorted(train_dir.glob("member_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    ]
