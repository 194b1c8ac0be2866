"""The committee trainer: K members trained serially or over an executor, resumable.

:func:`train_committee` is the one way potstill trains a committee (the standard train
stage, distillation, the committee selector, the selector comparison):

- member ``k`` trains on its own split of the frames (``splits``; default a seeded random
  80/20 split per member, seed ``config.seed + k``) from its own seeded initialisation
  (``seeds``), or continues from a checkpoint (``warm_start``: the ``inherited``
  strategy of :mod:`potstill.training.strategies`);
- self energies are fitted once on all frames and shared (a warm start keeps its own);
- every member is a picklable :class:`MemberJob`; with an ``executor`` the members train
  in parallel, one torch thread each, and serially they also train on one thread, so
  the same seeds give the same weights either way;
- with ``out_dir`` each finished member is saved as ``member_<k>.pt`` under a key that
  hashes everything its weights depend on (data, split, seed, settings, self energies,
  warm start); a rerun reuses a member whose key matches, so an interrupted committee
  resumes where it stopped and a changed one is retrained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from potstill.errors import InvalidLabelError, PotstillError
from potstill.executors import fan_out, one_torch_thread
from potstill.faults import kill_point
from potstill.frames import check_labels, get_labels
from potstill.models import (
    ANIModel,
    Committee,
    ModelSpec,
    build_model,
    load_checkpoint,
    parameter_checksum,
    save_checkpoint,
)
from potstill.store import Store, StoredFrames
from potstill.training.config import TrainConfig
from potstill.training.self_energy import composition, solve_self_energies
from potstill.training.strategies import Split, split_keys
from potstill.training.trainer import TrainResult, required_labels, summarize, train_model

__all__ = ["FrameRows", "MemberJob", "TrainedCommittee", "train_committee", "train_member"]


@dataclass(frozen=True)
class FrameRows:
    """Rows ``ids`` of the store at ``url``: frames a job reads where it runs."""

    url: str
    ids: tuple[int, ...]

    def frames(self) -> StoredFrames:
        return Store(self.url, create=False).frames(list(self.ids))


@dataclass(frozen=True)
class MemberJob:
    """Everything member ``index`` needs, picklable for any executor.

    ``train``/``validation``: its frames (:class:`FrameRows` or a tuple of frames).
    With ``warm_start`` (a checkpoint path) the member continues from those weights and
    their self energies; otherwise a fresh ``model`` is built from ``seed`` with
    ``self_energies``. ``key`` identifies the result (see the module docstring).
    """

    index: int
    n_members: int
    train: FrameRows | tuple[Atoms, ...]
    validation: FrameRows | tuple[Atoms, ...]
    reference: str
    config: TrainConfig
    model: ModelSpec
    seed: int
    key: str
    self_energies: dict | None = None
    warm_start: str | None = None
    out_path: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class TrainedCommittee:
    """The trained committee (a bare model when K = 1), each member's summary, split
    (positions into the frames trained on) and history (one dict of validation RMSEs
    per epoch)."""

    model: Committee | ANIModel
    summaries: list[dict]
    splits: list[Split]
    histories: list[list[dict]]


def train_committee(
    frames: Sequence[Atoms],
    reference: str,
    *,
    model: ModelSpec,
    config: TrainConfig,
    splits: Sequence[Split] | None = None,
    seeds: Sequence[int] | None = None,
    warm_start: Sequence[str | Path] | None = None,
    out_dir: str | Path | None = None,
    executor: Executor | None = None,
    progress=None,
    metadata: dict | None = None,
) -> TrainedCommittee:
    """Train ``config.committee`` members on ``frames`` labeled by ``reference``.

    Args:
        frames: the training data (a list, or a lazy store view whose rows the members
            read where they run).
        model: the members' network (preset, species, overrides).
        config: loss weights, optimiser, epochs, ``committee`` (K) and ``seed``.
        splits: per member, positions into ``frames`` to train and validate on.
        seeds: per member, the seed of its initial weights and minibatch order.
        warm_start: per member, a checkpoint to continue from (no fresh weights, no
            self-energy fit).
        out_dir: where finished members are saved and, on a rerun, reused.
        executor: where members train (default: one after another in this process).
        progress: a ``rich.progress.Progress`` (epochs per member when in process).
        metadata: JSON-able extras stored in every member checkpoint.
    """
    n_members = config.committee
    if len(frames) == 0:
        raise PotstillError("no frames to train on: the training set is empty")
    seeds = list(seeds) if seeds is not None else [config.seed + k for k in range(n_members)]
    if splits is None:
        splits = [
            split_keys(range(len(frames)), config.validation_fraction, np.random.default_rng(s))
            for s in seeds
        ]
    if len(frames) < 2 or any(not s.train for s in splits):
        raise PotstillError(f"need at least 2 labeled frames to train, got {len(frames)}")
    digests, fitted = _scan(frames, reference, config, model.species, fit=warm_start is None)
    jobs = []
    for k in range(n_members):
        start = None if warm_start is None else str(warm_start[k])
        job = dict(
            index=k,
            n_members=n_members,
            reference=reference,
            config=config,
            model=model,
            seed=int(seeds[k]),
            self_energies=fitted,
            warm_start=start,
            out_path=None if out_dir is None else str(Path(out_dir) / f"member_{k}.pt"),
            metadata=dict(metadata or {}),
        )
        key = _key(job, digests, splits[k])
        jobs.append(
            MemberJob(
                **job,
                key=key,
                train=_source(frames, splits[k].train),
                validation=_source(frames, splits[k].validation),
            )
        )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    members = _run(jobs, executor, progress)
    trained = Committee([m for m, _, _ in members]) if n_members > 1 else members[0][0]
    return TrainedCommittee(
        model=trained,
        summaries=[s for _, s, _ in members],
        splits=list(splits),
        histories=[h for _, _, h in members],
    )


def train_member(job: MemberJob, progress=None) -> tuple[ANIModel, dict, list[dict]]:
    """Train (or reuse, when already saved under the same key) one member, on one torch
    thread; save it at ``job.out_path``; return the model, its summary and history."""
    saved = _saved_member(job)
    if saved is not None:
        return (
            saved,
            saved.checkpoint_metadata["summary"],
            saved.checkpoint_metadata.get("history", []),
        )
    with one_torch_thread():
        torch.manual_seed(job.seed)
        if job.warm_start is not None:
            model = load_checkpoint(job.warm_start)
        else:
            model = build_model(job.model, seed=job.seed)
            model.set_self_energies(job.self_energies or {})
        initial = parameter_checksum(model)
        train, validation = (_frames(job.train), _frames(job.validation))
        result: TrainResult = train_model(
            model,
            train,
            validation,
            job.reference,
            job.config,
            seed=job.seed,
            progress=progress,
            description=f"member {job.index + 1}/{job.n_members}",
        )
    result.train_indices = list(range(len(train)))
    result.validation_indices = list(range(len(validation)))
    summary = summarize([result])[0] | {
        "warm_start_from": job.warm_start,
        "initial_checksum": initial,
    }
    if job.out_path is not None:
        save_checkpoint(
            result.model,
            job.out_path,
            task_key=job.key,
            summary=summary,
            history=result.history,
            **job.metadata,
        )
    return result.model, summary, result.history


# -- steps ------------------------------------------------------------------------------
def _run(
    jobs: list[MemberJob], executor: Executor | None, progress
) -> list[tuple[ANIModel, dict, list]]:
    """Each job's (model, summary, history), in member order; a failure names its member."""
    if executor is None:
        return [_trained(train_member(job, progress=progress)) for job in jobs]
    bar = progress.add_task(f"training {len(jobs)} members", total=len(jobs)) if progress else None
    results: dict[int, tuple[ANIModel, dict, list]] = {}
    for job, future in fan_out(executor, train_member, jobs, progress=progress):
        try:
            results[job.index] = _trained(future.result())
        except PotstillError:
            raise
        except Exception as error:  # noqa: BLE001 - say which member failed
            raise PotstillError(f"training member {job.index} failed: {error}") from error
        if progress is not None:
            progress.update(bar, advance=1)
    return [results[job.index] for job in jobs]


def _trained(result):
    kill_point("member-trained")
    return result


def _scan(
    frames, reference: str, config: TrainConfig, species, *, fit: bool
) -> tuple[list[bytes], dict | None]:
    """One pass over ``frames``: check their labels, fit the self energies (when
    ``fit``) and hash each frame (positions, cell, energy) for the members' keys."""
    require = required_labels(config)
    digests, counts, energies = [], [], []
    for position, atoms in enumerate(frames):
        try:
            energy = get_labels(atoms, reference, require=require).energy
            check_labels(atoms)
        except InvalidLabelError as error:
            row = f" (store row {atoms.info['store_id']})" if "store_id" in atoms.info else ""
            raise InvalidLabelError(f"training frame {position}{row}: {error}") from None
        counts.append(composition(atoms, species))
        energies.append(energy)
        digest = hashlib.sha256(np.ascontiguousarray(atoms.positions).tobytes())
        digest.update(np.ascontiguousarray(atoms.cell[:]).tobytes())
        digest.update(np.float64(energy).tobytes())
        digests.append(digest.digest())
    fitted = solve_self_energies(counts, energies, species) if fit else None
    return digests, fitted


def _key(job: dict, digests: list[bytes], split: Split) -> str:
    """Hash of everything a member's weights depend on."""
    digest = hashlib.sha256()
    fields = {
        "config": job["config"].model_dump(),
        "model": job["model"].as_dict(),
        "reference": job["reference"],
        "seed": job["seed"],
        "self_energies": job["self_energies"],
        "warm_start": _warm_key(job["warm_start"]),
    }
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for part in (split.train, split.validation):
        digest.update(b"|")
        for position in part:
            digest.update(digests[position])
    return digest.hexdigest()


def _warm_key(path: str | None) -> str | None:
    """What a warm start begins from: the key of the member saved there."""
    if path is None:
        return None
    try:
        return load_checkpoint(path).checkpoint_metadata.get("task_key") or path
    except Exception as error:  # noqa: BLE001 - say which file
        raise PotstillError(f"cannot read the warm-start checkpoint {path}: {error}") from error


def _source(frames: Sequence[Atoms], positions: Sequence[int]) -> FrameRows | tuple[Atoms, ...]:
    """The frames at ``positions``: store rows where ``frames`` is a store view."""
    if isinstance(frames, StoredFrames):
        return FrameRows(frames.store.url, tuple(frames.ids[int(p)] for p in positions))
    return tuple(frames[int(p)] for p in positions)


def _frames(source: FrameRows | tuple[Atoms, ...]) -> Sequence[Atoms]:
    return source.frames() if isinstance(source, FrameRows) else list(source)


def _saved_member(job: MemberJob) -> ANIModel | None:
    """The member saved at ``job.out_path`` under the same key, else None (also when
    the file cannot be read: it is trained again)."""
    if job.out_path is None or not Path(job.out_path).exists():
        return None
    try:
        model = load_checkpoint(job.out_path)
    except Exception:  # noqa: BLE001 - an unreadable member is retrained, not fatal
        return None
    return model if model.checkpoint_metadata.get("task_key") == job.key else None
