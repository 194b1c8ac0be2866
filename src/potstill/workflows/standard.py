"""The standard workflow: sample -> select -> train -> validate -> report.

Each stage reads what the previous one left in the run directory and writes its own
outputs plus a JSON record (:mod:`potstill.records`), so any stage can run alone from the
CLI, and a rerun with ``resume=True`` keeps what finished (the pool, trained members)::

    <out>/pool.db            frames with labels and provenance (ASE db)
    <out>/sample.json        sampling record
    <out>/train/member_k.pt  committee members; committee.pt; train.json
    <out>/report/            summary.json, PNG plots, index.html
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from potstill.config import RunConfig
from potstill.errors import PotstillError
from potstill.records import claim_output, jsonable, read_record, write_record
from potstill.store import Store


def pool_path(out: Path) -> Path:
    return out / "pool.db"


# -- sample -------------------------------------------------------------------------
def sample(config: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False, progress=None) -> dict:
    """Run the configured sampler and store its labeled frames in ``<out>/pool.db``."""
    from ase.build import bulk

    from potstill.references import lammps_options
    from potstill.sampling.md import sample_md

    record_path = out / "sample.json"
    if resume and read_record(record_path):
        return read_record(record_path)["results"]
    if config.sample.sampler == "momt":
        from potstill.workflows import momt

        return momt.sample(config, out, overwrite=overwrite, resume=resume, progress=progress)
    if config.sample.sampler == "translate":
        return _sample_translate(config, out, overwrite=overwrite, resume=resume, progress=progress)
    if not resume:
        claim_output([pool_path(out), record_path], overwrite=overwrite, resume=False, what="sample")
    if pool_path(out).exists():  # interrupted while sampling: the seeded run starts again
        pool_path(out).unlink()
    started = time.time()
    s = config.sample
    unknown = sorted({start.element for start in s.starts()} - set(config.species))
    if unknown:
        raise PotstillError(f"sample structure element(s) {unknown} not in species {config.species}")
    potential = lammps_options(config.reference.kind, config.reference.options)
    store = Store(pool_path(out))
    n_frames, n_atoms = 0, []
    for k, start in enumerate(s.starts()):
        atoms = bulk(start.element, start.lattice, a=start.a_A, cubic=start.lattice != "hcp").repeat(start.repeat)
        n_atoms.append(len(atoms))
        frames = sample_md(
            atoms,
            **potential,
            reference_name=config.reference.name,
            ensemble=s.ensemble,
            temperatures_K=s.temperatures_K,
            ramp=s.ramp,
            steps_per_temperature=s.steps_per_temperature,
            equilibration_steps=s.equilibration_steps,
            interval=s.interval,
            timestep_fs=s.timestep_fs,
            pressure_bar=s.pressure_bar,
            seed=s.seed + k,
            progress=progress is not None,
        )
        n_frames += _store_in_chunks(store, frames, start_structure=start.lattice)
    results = {"n_frames": n_frames, "n_atoms": n_atoms, "store": str(pool_path(out))}
    write_record(record_path, command="sample", inputs=config.sample.model_dump(), results=results, started=started)
    return results


def _sample_translate(config: RunConfig, out: Path, *, overwrite: bool, resume: bool, progress=None) -> dict:
    """The pool as another element's pool translated to the run's reference (seed 000,
    SI Note 6); an interrupted translation resumes without relabeling finished frames."""
    from potstill.sampling.translate import reference_element, translate_store

    started = time.time()
    t = config.sample.translate
    element = reference_element(config.reference.kind, config.reference.options)
    if element is not None and element not in config.species:
        raise PotstillError(f"translation target {element} (reference {config.reference.kind}) not in species {config.species}")
    if overwrite and not resume:
        claim_output([out / "sample.json"], overwrite=True, resume=False, what="sample")
    results = translate_store(
        t.source, pool_path(out), source_reference=t.from_reference, target_reference=config.reference.kind,
        target_options=config.reference.options, structure=t.structure, scale_factor=t.scale,
        label=config.reference.name, n=t.n, seed=t.seed, resume=resume, overwrite=overwrite, progress=progress,
    )
    write_record(out / "sample.json", command="sample", inputs=config.sample.model_dump(), results=results, started=started)
    return results


def _store_in_chunks(store: Store, frames, *, chunk: int = 200, **provenance) -> int:
    """Add ``frames`` (an iterator) to ``store`` ``chunk`` at a time, with ``provenance``."""

    def tagged():
        for frame in frames:
            frame.info.update(provenance)
            yield frame

    return store.add_stream(tagged(), chunk=chunk)


# -- label --------------------------------------------------------------------------
def label(store_url: str | Path, reference_kind: str, *, name: str | None = None, options: dict | None = None,
          chunk: int = 50, progress=None) -> dict:
    """Label every frame of the store that lacks ``name`` labels, ``chunk`` frames per
    transaction; frames labeled before a crash stay labeled."""
    from potstill.frames import has_labels, labels_from_calculator
    from potstill.references import make_reference

    reference = make_reference(reference_kind, name=name, **(options or {}))
    store = Store(store_url, create=False)
    pool = store.frames()
    todo = [i for i, atoms in zip(pool.ids, pool) if not has_labels(atoms, reference.name)]
    task = progress.add_task(f"labeling with {reference_kind}", total=len(todo)) if progress else None
    done = 0
    for start in range(0, len(todo), chunk):
        ids = todo[start : start + chunk]
        labeled = []
        for row_id, atoms in zip(ids, store.get(ids)):
            atoms.calc = reference.calculator
            try:
                labeled.append(labels_from_calculator(atoms, reference.name))
            except PotstillError as error:
                raise PotstillError(f"frame {row_id}: {error} ({done} frames labeled and stored)") from error
            except Exception as error:  # noqa: BLE001 - a crashing reference is user-facing
                raise PotstillError(
                    f"reference {reference_kind} failed on frame {row_id}: {error}; "
                    f"{done} frames labeled and stored, rerun `potstill label` to continue"
                ) from error
        store.update(ids, labeled)
        done += len(ids)
        if progress is not None:
            progress.update(task, advance=len(ids))
    return {"labeled": done, "already_labeled": len(pool) - len(todo), "reference": reference.name}


# -- select + train -----------------------------------------------------------------
def select_training_frames(config: RunConfig, store: Store):
    """Store ids and (lazily read) frames of the training subset chosen by
    ``config.select``."""
    from potstill.selection import make_selector, options_with_reference

    ids = store.ids()
    if config.select.method == "all":
        chosen = np.arange(len(ids))
    else:
        s = config.select
        selector = make_selector(s.method, **options_with_reference(s.method, s.options, config.reference.name))
        chosen = selector.select(store.frames(ids), min(s.n, len(ids)), rng=np.random.default_rng(s.seed))
    chosen_ids = [ids[i] for i in chosen]
    return chosen_ids, store.frames(chosen_ids)


def make_model_factory(config: RunConfig):
    """``seed -> untrained ANIModel`` for the configured preset and overrides."""
    from potstill.models.ani import ANIModel

    def factory(seed: int):
        return ANIModel.from_preset(config.model.preset, config.species, **config.model.overrides, seed=seed)

    factory(0)  # fail early on bad model options
    return factory


def train(config: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False, progress=None) -> dict:
    """Select the training frames from the pool and train the committee."""
    from potstill.frames import check_elements
    from potstill.models import save_checkpoint
    from potstill.training.trainer import summarize, train_committee

    train_dir = out / "train"
    claim_output([train_dir], overwrite=overwrite, resume=resume, what="train")
    started = time.time()
    store = Store(pool_path(out), create=False)
    if len(store) == 0:
        raise PotstillError(f"the pool {pool_path(out)} is empty; run `potstill sample` first")
    ids, frames = select_training_frames(config, store)
    check_elements(frames, config.species)
    committee, results = train_committee(
        frames,
        config.reference.name,
        model_factory=make_model_factory(config),
        config=config.train,
        out_dir=train_dir,
        progress=progress,
    )
    save_checkpoint(committee, train_dir / "committee.pt", training_ids=ids)
    results = {"n_selected": len(ids), "n_pool": len(store), "members": summarize(results)}
    write_record(train_dir / "train.json", command="train",
                 inputs={"select": config.select.model_dump(), "model": config.model.model_dump(),
                         "train": config.train.model_dump()},
                 results=results, started=started)
    return results


# -- validate + report --------------------------------------------------------------
def validate(config: RunConfig, out: Path, *, overwrite: bool = False, progress=None) -> dict:
    """Validate the committee on the pool, on relaxed crystals and on elastic constants;
    write ``<out>/report`` (summary.json, PNGs, index.html)."""
    from potstill.models import load_checkpoint
    from potstill.models.calculator import PotstillCalculator
    from potstill.models import predict
    from potstill.references import make_calculator
    from potstill.report.html import write_html
    from potstill.report.plots import parity_panel
    from potstill.validation.crystals import compare_crystals, format_crystal_table
    from potstill.validation.elastic import compare_elastic, format_elastic_table
    from potstill.validation.metrics import pair_errors, pool_pairs

    committee_path = out / "train" / "committee.pt"
    if not committee_path.exists():
        raise PotstillError(f"no trained committee at {committee_path}; run `potstill train` first")
    report = out / "report"
    claim_output([report], overwrite=overwrite, resume=False, what="validate")
    report.mkdir(parents=True)
    started = time.time()
    committee = load_checkpoint(committee_path)
    v = config.validate_
    summary: dict[str, Any] = {"name": config.name, "species": config.species}
    figures, tables = [], []
    if v.pool:
        frames = Store(pool_path(out), create=False).get()
        predictions = predict(committee, frames, progress=progress)
        pairs = pool_pairs(frames, predictions, config.reference.name)
        errors = pair_errors(pairs)
        summary["pool"] = _pool_summary(errors)
        summary["pool"]["errors"] = errors
        figures.append(parity_panel(pairs, path=report / "parity.png",
                                    title=f"{config.name}: whole pool ({len(frames)} frames)"))
    model_calc = PotstillCalculator(committee)
    reference_calc = make_calculator(config.reference.kind, **config.reference.options)
    element = v.element or config.species[0]
    if v.crystals:
        crystals = compare_crystals(model_calc, reference_calc, element, structures=v.crystals)
        summary["crystals"] = crystals
        tables.append(("Relaxed crystals (seed 000 Table 2 layout)", format_crystal_table(crystals)))
    if v.elastic:
        elastic = compare_elastic(model_calc, reference_calc, element)
        summary["elastic_GPa"] = {k: elastic[k] for k in ("C11", "C12", "C44", "K", "G", "nu")}
        summary["elastic_lattice_A"] = elastic["a_A"]
        tables.append(("Elastic constants (seed 001 Table 4 layout)", format_elastic_table(elastic)))
    train_record = read_record(out / "train" / "train.json")
    if train_record:
        summary["training"] = train_record["results"]
        figures.append(_learning_curves(train_record, out / "train", report / "learning_curves.png"))
    summary["wall_time_s"] = _total_wall_time(out, time.time() - started)
    (report / "summary.json").write_text(json.dumps(summary, indent=2, default=jsonable))
    write_html(report / "index.html", title=f"potstill report: {config.name}", summary=summary,
               tables=tables, figures=[f for f in figures if f is not None])
    write_record(report / "validate.json", command="validate", inputs=v.model_dump(), results={"summary": "summary.json"}, started=started)
    return summary


def run(config: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False, progress=None) -> dict:
    """All stages in order; with ``resume`` finished stages and members are kept."""
    started = time.time()
    if overwrite and not resume:
        claim_output([pool_path(out), out / "sample.json", out / "train", out / "report"],
                     overwrite=True, resume=False, what="run")
    sample(config, out, overwrite=False, resume=resume, progress=progress)
    train(config, out, overwrite=False, resume=resume, progress=progress)
    summary = validate(config, out, overwrite=resume, progress=progress)
    write_record(out / "run.json", command="run", inputs=config.model_dump(by_alias=True),
                 results={"report": str(out / "report")}, started=started)
    return summary


def _pool_summary(errors: dict) -> dict:
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


def _learning_curves(train_record: dict, train_dir: Path, path: Path):
    from potstill.models import load_checkpoint
    from potstill.report.learning import learning_curves

    histories = []
    for k in range(len(train_record["results"]["members"])):
        member = train_dir / f"member_{k}.pt"
        if member.exists():
            histories.append(load_checkpoint(member).checkpoint_metadata.get("history", []))
    return learning_curves(histories, path=path) if any(histories) else None


def _total_wall_time(out: Path, validate_s: float) -> float:
    total = validate_s
    for name in ("sample.json", "train/train.json"):
        record = read_record(out / name)
        if record:
            total += record["wall_time_s"]
    return round(total, 1)
