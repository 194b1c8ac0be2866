"""The steps of the ``low2high`` workflow (:mod:`potstill.workflows.low2high`).

Each step owns a stage folder of the run and is resumable: samplers continue their
pools, committee members and fine-tuned models are reused by key
(:func:`potstill.training.committee.train_committee`), DFT labels already stored are
never computed again (:func:`potstill.labeling.label_store`), and the frames chosen
for DFT are fixed in ``relabel/selection.json`` once chosen.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError
from potstill.executors import make_executor
from potstill.frames import has_labels
from potstill.labeling import label_store
from potstill.models import load_checkpoint, parameter_checksum, predict, save_checkpoint
from potstill.rundir import RunDir, read_record, write_json
from potstill.sampling.stage import sample as sample_stage
from potstill.selection import select_frames
from potstill.store import Store
from potstill.training.committee import train_committee
from potstill.training.self_energy import composition, solve_self_energies
from potstill.training.strategies import Split
from potstill.uncertainty.committee import CommitteeUncertainty
from potstill.uncertainty.threshold import mu_k_sigma
from potstill.workflows.low2high_report import evaluate_models, write_report

__all__ = ["EAMData", "NNP", "deform_frames", "eam_data", "nnp_dft", "nnp_eam", "relabel"]


@dataclass
class EAMData:
    """The EAM frames: ``train`` (the last ``train_last`` of the pool), ``tests`` (name
    -> frames: the rest of the pool as ``eam_rest``, each test pool as ``test_<k>``)."""

    train: list[Atoms]
    tests: dict[str, list[Atoms]]


@dataclass
class NNP:
    """Checkpoints of one NNP stage: the committee, its best member, that member
    fine-tuned, and the ablation without stress (None when not run)."""

    committee: Path
    best: Path
    tuned: Path
    nostress: Path | None
    summaries: dict


def _sampled(config, rundir: RunDir, name: str, sampler, progress) -> list[Atoms]:
    """The frames of ``sampler`` (low-fidelity labels) in the run's folder ``name``,
    sampled there first (or continued, on ``--resume``)."""
    run = RunDir(rundir.path / name, overwrite=rundir.overwrite, resume=rundir.resume)
    sample_stage(
        sampler,
        species=config.species,
        reference=config.reference,
        run=run,
        executor=config.executor,
        progress=progress,
    )
    return Store(run.pool, create=False).get()


def eam_data(config, rundir: RunDir, *, progress=None) -> EAMData:
    """Sample the EAM pool and the test pools (MOMT with the low-fidelity reference)."""
    pools = [("eam", config.eam_data.pool)] + [
        (f"test_{k}", pool) for k, pool in enumerate(config.eam_data.test_pools)
    ]
    frames = {name: _sampled(config, rundir, name, sampler, progress) for name, sampler in pools}
    pool = frames.pop("eam")
    n = config.eam_data.train_last
    if len(pool) <= n:
        raise PotstillError(
            f"the EAM pool has {len(pool)} frames, not more than train_last = {n}; "
            "sample more frames (n_frames) or lower train_last"
        )
    return EAMData(train=pool[-n:], tests={"eam_rest": pool[:-n], **frames})


def nnp_eam(config, rundir: RunDir, frames: list[Atoms], name: str, *, progress=None) -> NNP:
    """Train the committee on ``frames``; fine-tune its best member (by validation force
    RMSE) on all of them, and for the ``initial`` stage also the gamma = 0 ablation
    (beta 0.8, best epoch by forces), side by side."""
    stage = rundir.stage(name)
    stage.claim()
    started = time.time()
    reference = config.reference.name
    spec = config.model.spec(config.species)
    with make_executor(config.executor, jobs=config.initial.committee) as executor:
        trained = train_committee(
            frames,
            reference,
            model=spec,
            config=config.initial,
            out_dir=stage.root,
            executor=executor,
            progress=progress,
        )
        committee = stage.root / "committee.pt"
        save_checkpoint(trained.model, committee)
        forces = [s["validation"]["forces_rmse"] for s in trained.summaries]
        best = stage.root / f"member_{int(np.argmin(forces))}.pt"
        tunes = {"finetune": config.fine_tune}
        if config.ablation and name == "initial":  # Tables S3, S4: the initial models
            # without a stress term the best epoch is chosen by forces, not stress
            tunes["finetune_nostress"] = config.fine_tune.model_copy(
                update={"gamma": 0.0, "beta": 0.8, "best_by": "forces"}
            )
        tuned = fine_tune_all(frames, reference, spec, best, tunes, stage.root, executor)
    summaries = {
        "n_frames": len(frames),
        "members": trained.summaries,
        "best_member": best.name,
        "best_forces_rmse_eV_per_A": float(min(forces)),
        **{key: value[1] for key, value in tuned.items()},
    }
    stage.write_record(
        inputs={"initial": config.initial.model_dump(), "fine_tune": config.fine_tune.model_dump()},
        results=summaries,
        started=started,
    )
    stage.publish(summaries, title=f"{name}: {len(frames)} frames, best {best.name} fine-tuned")
    nostress = tuned.get("finetune_nostress")
    return NNP(committee, best, tuned["finetune"][0], nostress and nostress[0], summaries)


def fine_tune_all(frames, reference, spec, start, configs, root, executor):
    """Fine-tune checkpoint ``start`` on all ``frames`` (train = validation, seed 001
    2.2.3) once per ``configs`` entry (name -> TrainConfig), concurrently over
    ``executor``; returns name -> (checkpoint path, summary)."""
    everything = list(range(len(frames)))

    def one(item):
        name, tune = item
        result = train_committee(
            frames,
            reference,
            model=spec,
            config=tune.model_copy(update={"committee": 1}),
            splits=[Split(train=everything, validation=everything)],
            warm_start=[start],
            out_dir=root / name,
            executor=executor,
        )
        return name, (root / name / "member_0.pt", result.summaries[0])

    with ThreadPoolExecutor(max_workers=max(len(configs), 1)) as threads:
        return dict(threads.map(one, configs.items()))


def deform_frames(config, rundir: RunDir, initial: NNP, data: EAMData, *, progress=None):
    """Sample the deformation MD; keep the frames with an atom whose committee UQ
    exceeds mu + k sigma of the atomic UQs (seed 001 2.1.3) of the deformation frames
    themselves (``uq_window: deform``, the paper's "process applied only to the 2,000
    configurations") or of the EAM training data (``uq_window: train``)."""
    frames = _sampled(config, rundir, "deform", config.deform, progress)
    stage = rundir.stage("uq")
    stage.claim()
    started = time.time()
    uncertainty = CommitteeUncertainty(initial.committee)
    atom_std = uncertainty.evaluate(frames).atom_std
    train_std = np.concatenate(uncertainty.evaluate(data.train).atom_std)
    window = np.concatenate(atom_std) if config.uq_window == "deform" else train_std
    threshold = mu_k_sigma(window, config.uq_k)
    scores = np.array([std.max() for std in atom_std])
    kept = [i for i, score in enumerate(scores) if score > threshold.value]
    train_cut = mu_k_sigma(train_std, config.uq_k).value
    results = threshold.as_dict() | {
        "window": config.uq_window,
        "n_deform": len(frames),
        "n_kept": len(kept),
        "kept": kept,
        "score_median_eV": float(np.median(scores)),
        "n_above_train_window": int((scores > train_cut).sum()),
        "train_window_threshold_eV": float(train_cut),
    }
    inputs = {"k": config.uq_k, "window": config.uq_window}
    stage.write_record(inputs=inputs, results=results, started=started)
    stage.publish(
        {k: v for k, v in results.items() if k != "kept"},
        title=f"deformation frames above mu + {config.uq_k:g} sigma: {len(kept)} of {len(frames)}",
    )
    return [frames[i] for i in kept]


@dataclass
class Relabeled:
    """Frames with high-fidelity labels: ``train`` and held-out ``test``."""

    train: list[Atoms]
    test: list[Atoms]
    results: dict


def relabel(config, rundir: RunDir, data: EAMData, deform, final: NNP, *, progress=None):
    """Choose the frames to relabel (fixed once chosen) and label them over the
    executor; frames whose calculation failed are left out (and recorded)."""
    stage = rundir.stage("relabel")
    stage.claim()
    started = time.time()
    path = stage.root / "dft.db"
    chosen_path = stage.root / "selection.json"
    checksum = parameter_checksum(load_checkpoint(final.committee))
    chosen = read_record(chosen_path)
    if chosen is None or chosen.get("committee_checksum") != checksum or not path.exists():
        path.unlink(missing_ok=True)
        chosen = _choose(config, data, deform, final.committee) | {"committee_checksum": checksum}
        Store(path).add(chosen.pop("frames"))
        write_json(chosen_path, chosen)
    store = Store(path, create=False)
    workers = min(config.relabel.n_train + config.relabel.n_test, 64)
    with make_executor(config.executor, jobs=workers) as executor:
        labeled = label_store(
            store,
            config.high_fidelity,
            executor=executor,
            retries=config.relabel.retries,
            progress=progress,
        )
    name = config.high_fidelity.name
    frames = [f for f in store.get() if has_labels(f, name, ("energy", "forces"))]
    sets = {s: [f for f in frames if f.info["relabel_set"] == s] for s in ("train", "test")}
    if len(sets["train"]) < 2 or not sets["test"]:
        raise PotstillError(
            f"only {len(sets['train'])} training and {len(sets['test'])} test frames have "
            f"{name} labels ({len(labeled['failed'])} failed: see {path}); "
            "check the high_fidelity reference and rerun with --resume"
        )
    results = {k: v for k, v in chosen.items() if k != "committee_checksum"} | {
        "labeling": labeled,
        "n_train_labeled": len(sets["train"]),
        "n_test_labeled": len(sets["test"]),
    }
    stage.write_record(inputs=config.relabel.model_dump(), results=results, started=started)
    stage.publish(results, title=f"relabeled with {config.high_fidelity.kind}")
    return Relabeled(sets["train"], sets["test"], results)


def _choose(config, data: EAMData, deform: list[Atoms], committee: Path) -> dict:
    """Per source (EAM data, deformation frames): the selector's picks and random
    held-out frames among the rest, tagged with where they came from."""
    settings = config.relabel
    n_deform = min(round(settings.n_train * settings.deform_share), len(deform))
    t_deform = min(round(settings.n_test * settings.deform_share), len(deform) - n_deform)
    quotas = {
        "eam": (data.train, settings.n_train - n_deform, settings.n_test - t_deform),
        "deform": (deform, n_deform, t_deform),
    }
    uncertainty = CommitteeUncertainty(committee)
    rng = np.random.default_rng(settings.seed)
    frames, picked = [], {}
    for source, (pool, n_train, n_test) in quotas.items():
        if not pool or n_train + n_test == 0:
            continue
        candidates = [atoms.copy() for atoms in pool]
        for i, (atoms, score) in enumerate(zip(candidates, uncertainty.evaluate(pool).score)):
            atoms.info.update(uq_eV=float(score), source=source, source_index=i)
        select = settings.select.model_copy(update={"n": max(n_train, 1)})
        if len(pool) <= n_train:  # nothing to choose between
            train = list(range(len(pool)))
        else:
            train = [
                int(i) for i in select_frames(select, candidates, reference=config.reference.name)
            ]
        rest = sorted(set(range(len(pool))) - set(train))
        test = sorted(int(i) for i in rng.choice(rest, size=min(n_test, len(rest)), replace=False))
        for subset, positions in (("train", train[:n_train]), ("test", test)):
            for i in positions:
                candidates[i].info["relabel_set"] = subset
                frames.append(candidates[i])
        picked[source] = {"train": train[:n_train], "test": test}
    return {"frames": frames, "picked": picked, "n_frames": len(frames)}


def nnp_dft(config, rundir: RunDir, relabeled: Relabeled, final: NNP, *, progress=None) -> dict:
    """NNP_DFT from scratch (initial recipe on one model, then the same fine-tune) and by
    transfer (the final NNP_EAM, self energies shifted to the DFT zero, fine-tuned with
    its input and output layers frozen); their errors on the held-out DFT frames."""
    stage = rundir.stage("dft")
    stage.claim()
    started = time.time()
    name = config.high_fidelity.name
    spec = config.model.spec(config.species)
    train = relabeled.train
    start = stage.root / "transfer_start.pt"
    _shift_self_energies(final.tuned, train, name, config.species, start)
    with make_executor(config.executor, jobs=2) as executor:

        def scratch():
            train_committee(
                train,
                name,
                model=spec,
                config=config.initial.model_copy(update={"committee": 1}),
                out_dir=stage.root / "scratch_initial",
                executor=executor,
            )
            return fine_tune_all(
                train,
                name,
                spec,
                stage.root / "scratch_initial" / "member_0.pt",
                {"scratch": config.fine_tune},
                stage.root,
                executor,
            )

        def transfer():
            return fine_tune_all(
                train, name, spec, start, {"transfer": config.fine_tune}, stage.root, executor
            )

        with ThreadPoolExecutor(max_workers=2) as threads:
            done = [f.result() for f in [threads.submit(scratch), threads.submit(transfer)]]
    models = {
        "nnp_dft_scratch_initial": stage.root / "scratch_initial" / "member_0.pt",
        "nnp_dft_scratch": done[0]["scratch"][0],
        "nnp_dft_transfer": done[1]["transfer"][0],
    }
    errors = evaluate_models(models, {"dft_heldout": relabeled.test}, name, config.executor)
    results = {"n_train": len(train), "n_test": len(relabeled.test), "heldout": errors}
    stage.write_record(inputs=config.fine_tune.model_dump(), results=results, started=started)
    stage.publish(results, title=f"NNP_DFT on {len(train)} frames, tested on {len(relabeled.test)}")
    return {"models": models, "heldout": errors}


def _shift_self_energies(checkpoint: Path, frames, reference: str, species, out: Path) -> None:
    """Save ``checkpoint`` with its self energies moved by the least-squares per-element
    offset between ``reference`` energies and its predictions (the DFT zero of energy
    differs from EAM's by eV per atom, which a frozen output layer cannot absorb)."""
    model = load_checkpoint(checkpoint)
    predicted = [p["energy"] for p in predict(model, frames, forces=False)]
    residual = [a.info[f"{reference}_energy"] - e for a, e in zip(frames, predicted)]
    counts = [composition(a, species) for a in frames]
    offset = solve_self_energies(counts, residual, species)
    energies = model.self_energies_dict()
    model.set_self_energies({s: energies[s] + offset[s] for s in energies})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, out, shifted_by=offset)


def report(config, rundir, data, initial: NNP, final: NNP, dft: dict, reference: dict, started):
    """The tables and summary (:mod:`potstill.workflows.low2high_report`)."""
    models = {
        "nnp_eam_initial": initial.best,
        "nnp_eam_finetuned": initial.tuned,
        "nnp_eam_finetuned_nostress": initial.nostress,
        "nnp_eam_final": final.tuned,
        **dft["models"],
    }
    models = {k: v for k, v in models.items() if v is not None}
    pool_models = {k: v for k, v in models.items() if k.startswith("nnp_eam")}
    return write_report(
        config,
        rundir,
        models=models,
        pool_errors=evaluate_models(
            pool_models, {"train": data.train, **data.tests}, config.reference.name, config.executor
        ),
        dft_heldout=dft["heldout"],
        dft_reference=reference,
        started=started,
    )
