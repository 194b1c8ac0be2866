"""The distillation loop's section and steps: cut the pool into sequential chunks, and
for each iteration of :func:`potstill.learning.active_learning` select the frames above
``mu + k sigma`` within the budget, add them (and their labeled noisy copies) to the
training store, retrain the committee with the learner and evaluate it on the pool;
each finished iteration is saved (``iter_<i>/``) so a resumed run skips it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from potstill.errors import PotstillError
from potstill.faults import kill_point
from potstill.frames import get_labels
from potstill.labeling import label_store, noisy_copies
from potstill.learning import CommitteeLearner, Iteration, Retrained, Selection, budget_frames
from potstill.learning.pick import pick_highest
from potstill.models import Committee, load_checkpoint
from potstill.rundir import write_json
from potstill.settings import Section
from potstill.store import Store
from potstill.training.strategies import Split
from potstill.uncertainty import UQStats, mu_k_sigma
from potstill.uncertainty.committee import CommitteeUncertainty

__all__ = [
    "DistillConfig",
    "DistillSteps",
    "Pool",
    "check",
    "load_committee",
    "open_pool",
    "pool_budget",
]

_EVAL_CHUNK = 256  # frames read from the store and evaluated at a time


class DistillConfig(Section):
    """The ``distill`` section. The committee is ``train.committee`` models (3, 5 or 7)
    trained with the ``train`` settings.

    ``pool``: the store to distil (default: the run's ``pool.db``), read in sampling
    (id) order, every ``stride``-th frame, at most ``max_frames``; cut into ``n_chunks``
    sequential chunks. ``initial``: train iteration 0 on a random subset of chunk 0 of
    this size (default: all of it). A frame of the next chunk is kept when any atom's
    committee std of atomic energies exceeds ``mu + k_sigma * sigma`` of the atomic stds
    of the frames kept so far, or of the pool frames ``reference_window`` (start, stop).
    ``augment_copies``/``augment_delta_A``: copies per kept frame with uniform coordinate
    noise, labeled by the run's reference (copy 0 is the frame itself). ``budget``: at
    most this many pool frames kept (or this fraction of the pool, if a float); a chunk
    whose frames above the threshold would exceed it keeps its highest-scoring ones.
    ``final_pass``: after the last chunk, train the committee once more on the distilled
    set (recorded as iteration ``n_chunks``). ``baseline_run``: output directory of a
    distill run of the same pool with ``n_chunks: 1`` (the committee trained on all
    frames); its pool MAE and the ratio to it go into the summary and the curve.
    """

    pool: str | None = None
    stride: int = Field(1, ge=1)
    max_frames: int | None = Field(None, gt=0)
    n_chunks: int = Field(10, ge=1)
    initial: int | None = Field(None, ge=2)
    k_sigma: float = Field(4.0, gt=0)
    reference_window: tuple[int, int] | None = None
    strategy: Literal["random", "inherited"] = "random"
    augment_copies: int = Field(1, ge=1)
    augment_delta_A: float = Field(0.05, ge=0)
    evaluate_pool: bool = True
    budget: int | float | None = Field(None, gt=0)
    final_pass: bool = False
    baseline_run: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if (
            self.reference_window is not None
            and not 0 <= self.reference_window[0] < self.reference_window[1]
        ):
            raise ValueError(
                "reference_window must be (start, stop) pool positions with 0 <= start < stop"
            )
        if isinstance(self.budget, float) and self.budget > 1:
            raise ValueError(
                f"budget {self.budget!r}: give a frame count (int) or a pool fraction 0 < f <= 1"
            )
        return self


@dataclass
class Pool:
    """The frames to distil: store ``ids`` in sampling order, cut into ``chunks`` of
    positions (into ``ids``)."""

    store: Store
    ids: np.ndarray
    chunks: list[np.ndarray]

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(pid): p for p, pid in enumerate(self.ids)}

    def positions_of(self, pool_ids: list[int]) -> np.ndarray:
        """Positions (into ``ids``) of the store ids ``pool_ids``."""
        return np.array([self._position[pid] for pid in pool_ids], dtype=int)


def open_pool(d: DistillConfig, out: Path) -> Pool:
    url = d.pool or str(out / "pool.db")
    store = Store(url, create=False)
    ids = np.asarray(store.ids(), dtype=int)[:: d.stride]
    if d.max_frames is not None:
        ids = ids[: d.max_frames]
    if d.n_chunks > len(ids):
        raise PotstillError(
            f"distill.n_chunks = {d.n_chunks} exceeds the {len(ids)} pool frames of {url}; "
            f"use n_chunks <= {len(ids)}"
        )
    return Pool(store=store, ids=ids, chunks=np.array_split(np.arange(len(ids)), d.n_chunks))


def check(d: DistillConfig, n_members: int, pool: Pool) -> None:
    """One-line errors for a committee, chunks, budget or window that cannot work."""
    k = n_members
    if k < 2:
        raise PotstillError(
            f"distillation needs a committee of at least 2 models (3, 5 or 7), got train.committee = {k}"
        )
    first = len(pool.chunks[0])
    if first < 2:
        raise PotstillError(
            f"chunk 0 holds {first} frame(s); need at least 2 to train: use fewer n_chunks"
        )
    if d.initial is not None and d.initial > first:
        raise PotstillError(
            f"distill.initial = {d.initial} exceeds chunk 0 ({first} frames); use initial <= {first}"
        )
    limit = pool_budget(d, pool)
    if limit is not None and (d.initial or first) > limit:
        raise PotstillError(
            f"distill.budget allows {limit} frames but iteration 0 keeps {d.initial or first}; "
            "lower distill.initial or raise the budget"
        )
    if d.reference_window is not None and d.reference_window[1] > len(pool.ids):
        raise PotstillError(
            f"distill.reference_window {list(d.reference_window)} ends beyond the {len(pool.ids)} "
            "pool frames"
        )


def pool_budget(d: DistillConfig, pool: Pool) -> int | None:
    """The most pool frames the run may keep (``distill.budget``), or None."""
    return None if d.budget is None else budget_frames(d.budget, len(pool.ids))


class DistillSteps:
    """Select, add, retrain, save and load one iteration of the distillation loop."""

    def __init__(
        self,
        config,
        pool: Pool,
        training: Store,
        root: Path,
        learner: CommitteeLearner,
        executor,
        progress,
    ):
        self.config, self.d, self.pool, self.training, self.root = (
            config,
            config.distill,
            pool,
            training,
            root,
        )
        self.learner, self.executor, self.progress = learner, executor, progress

    def select(self, i: int, previous: Iteration | None) -> Selection:
        """The new pool ids of iteration ``i`` and the threshold used."""
        d, pool = self.d, self.pool
        if i == d.n_chunks:  # the final pass: no chunk left
            return Selection([], {})
        chunk = pool.chunks[i]
        if i == 0:
            picked = (
                chunk
                if d.initial is None
                else np.sort(
                    np.random.default_rng(d.seed).choice(chunk, size=d.initial, replace=False)
                )
            )
            return Selection(
                pool.ids[picked].tolist(), {"threshold_eV": None, "mu_eV": None, "sigma_eV": None}
            )
        uq = previous.state
        reference = (
            np.arange(*d.reference_window)
            if d.reference_window
            else pool.positions_of(previous.record["selected_ids"])
        )
        threshold = mu_k_sigma(
            UQStats(
                int(uq["n_atoms"][reference].sum()),
                float(uq["uq_sum"][reference].sum()),
                float(uq["uq_sq"][reference].sum()),
            ),
            d.k_sigma,
        )
        scores = uq["score"][chunk]
        limit = pool_budget(d, pool)
        room = None if limit is None else max(limit - len(previous.record["selected_ids"]), 0)
        above = pick_highest(scores, threshold=threshold.value)
        keep = np.sort(pick_highest(scores, threshold=threshold.value, limit=room))
        return Selection(
            pool.ids[chunk[keep]].tolist(),
            {
                "threshold_eV": threshold.value,
                "mu_eV": threshold.mu,
                "sigma_eV": threshold.sigma,
                "chunk_score_max_eV": float(np.max(scores)),
                "chunk_score_median_eV": float(np.median(scores)),
                "n_above_threshold": int(len(above)),
                "n_cut_by_budget": int(len(above) - len(keep)),
            },
        )

    def add(self, i: int, selection: Selection) -> None:
        """The new frames (and their noisy copies) of iteration ``i`` into the training
        store in one transaction, the copies labeled over the executor. Rows an
        interrupted run already added are kept; labels it stored are not recomputed; a
        copy the reference fails on is recorded on its row, counted in the iteration's
        record (``n_label_failures``) and left out of training."""
        d = self.d
        if selection.keys and not self.training.ids(f"distill_iteration={i}"):
            frames = self.pool.store.get(selection.keys)
            for atoms in frames:
                atoms.info.update(pool_id=int(atoms.info["store_id"]), distill_iteration=i)
            if d.augment_copies > 1:
                frames = noisy_copies(
                    frames,
                    copies=d.augment_copies,
                    delta_A=d.augment_delta_A,
                    seed=np.random.default_rng([d.seed, i, 7]),
                )
            self.training.add(frames)
        if d.augment_copies > 1 and selection.keys:
            labels = label_store(
                self.training,
                self.config.reference,
                ids=self.training.ids(f"distill_iteration={i}"),
                executor=self.executor,
                retry_failed=True,
            )
            selection.info["n_label_failures"] = len(labels["failed"])

    def retrain(self, i: int, selection: Selection, previous: Iteration | None) -> Iteration:
        config, d, pool = self.config, self.d, self.pool
        started = time.time()
        final = i == d.n_chunks
        kept = (previous.record["selected_ids"] if previous else []) + selection.keys
        rows = {**(_rows(previous.record) if previous else {}), **self._iteration_rows(i)}
        iter_dir = self.root / f"iter_{i}"
        iter_dir.mkdir(parents=True, exist_ok=True)
        if (
            previous is not None and not selection.keys and not final
        ):  # nothing new: the data did not change
            splits, members = (
                [Split(**s) for s in previous.record["splits"]],
                previous.record["members"],
            )
            for k in range(config.train.committee):
                shutil.copyfile(
                    self.root / f"iter_{i - 1}" / f"member_{k}.pt", iter_dir / f"member_{k}.pt"
                )
        else:
            splits, members = self._train(i, kept, selection.keys, rows, previous)
        uq, errors = self._evaluate(i, kept)
        record = {
            "iteration": i,
            "final_pass": final,
            "chunk": None if final else [int(pool.chunks[i][0]), int(pool.chunks[i][-1]) + 1],
            "n_chunk": 0 if final else len(pool.chunks[i]),
            "n_new": len(selection.keys),
            "n_selected": len(kept),
            "n_training_frames": sum(len(v) for v in rows.values()),
            "fraction_new_of_chunk": None if final else len(selection.keys) / len(pool.chunks[i]),
            "fraction_kept": len(kept) / len(pool.ids),
            "fraction_kept_of_seen": len(kept)
            / (len(pool.ids) if final else int(pool.chunks[i][-1] + 1)),
            **selection.info,
            **errors,
            "retrained": previous is None or bool(selection.keys) or final,
            "wall_time_s": round(time.time() - started, 1),
            "new_ids": selection.keys,
            "selected_ids": kept,
            "all_rows": {str(k): v for k, v in rows.items()},
            "splits": [s.to_dict() for s in splits],
            "members": members,
        }
        return Iteration(i, record, state=uq)

    def _train(
        self,
        i: int,
        kept: list[int],
        new: list[int],
        rows: dict[int, list[int]],
        previous: Iteration | None,
    ):
        """Retrain the committee on every row so far (sorted, as stored)."""
        every_row = sorted(r for ids in rows.values() for r in ids)
        position = {row: p for p, row in enumerate(every_row)}
        k_members, t = self.config.train.committee, self.config.train
        before = None
        if previous is not None:
            before = Retrained.saved(
                previous.record["splits"], self.root / f"iter_{i - 1}", k_members
            )
        retrained = self.learner.retrain(
            self.training.frames(every_row),
            kept,
            new,
            previous=before,
            seeds=[t.seed + k + 1000 * i for k in range(k_members)],
            split_rngs=[np.random.default_rng([self.d.seed, i, k]) for k in range(k_members)],
            rows={pid: [position[r] for r in ids] for pid, ids in rows.items()},
            out_dir=self.root / f"iter_{i}",
            metadata={"distill_iteration": i},
        )
        return retrained.splits, retrained.trained.summaries

    def _iteration_rows(self, i: int) -> dict[int, list[int]]:
        """``{pool id: [training rows]}`` added in iteration ``i`` (unlabeled ones left out)."""
        rows: dict[int, list[int]] = {}
        for atoms in self.training.get(selection=f"distill_iteration={i}"):
            if f"{self.config.reference.name}_energy" in atoms.info:
                rows.setdefault(int(atoms.info["pool_id"]), []).append(int(atoms.info["store_id"]))
        return rows

    def _evaluate(self, i: int, kept: list[int]) -> tuple[dict, dict]:
        """Evaluate the committee of iteration ``i`` on the pool (or on what the next
        selection needs): per-frame energy error per atom, score and atomic-std sums."""
        d, pool, progress = self.d, self.pool, self.progress
        n = len(pool.ids)
        if d.evaluate_pool:
            positions = np.arange(n)
        else:
            need = pool.positions_of(kept).tolist()
            if i + 1 < d.n_chunks:
                need.extend(pool.chunks[i + 1].tolist())
            if d.reference_window is not None:
                need.extend(range(*d.reference_window))
            positions = np.unique(np.asarray(need, dtype=int))
        uncertainty = CommitteeUncertainty(
            load_committee(self.root, i, self.config.train.committee)
        )
        uq = {key: np.full(n, np.nan) for key in ("error_eV_per_atom", "score", "uq_sum", "uq_sq")}
        uq["n_atoms"] = np.zeros(n, dtype=int)
        bar = (
            progress.add_task(
                f"iteration {i}: scoring {len(positions)} frames", total=len(positions)
            )
            if progress
            else None
        )
        for start in range(0, len(positions), _EVAL_CHUNK):
            where = positions[start : start + _EVAL_CHUNK]
            frames = pool.store.get(pool.ids[where].tolist())
            result = uncertainty.evaluate(frames)
            n_atoms = np.array([len(a) for a in frames])
            reference = np.array([get_labels(a, self.config.reference.name).energy for a in frames])
            uq["error_eV_per_atom"][where] = (result.energy - reference) / n_atoms
            uq["score"][where] = result.score
            uq["uq_sum"][where] = [s.sum() for s in result.atom_std]
            uq["uq_sq"][where] = [(s**2).sum() for s in result.atom_std]
            uq["n_atoms"][where] = n_atoms
            if progress is not None:
                progress.update(bar, advance=len(where))
        errors = {}
        if d.evaluate_pool:
            e = uq["error_eV_per_atom"] * 1000
            errors = {
                "pool_energy_mae_meV_per_atom": float(np.mean(np.abs(e))),
                "pool_energy_rmse_meV_per_atom": float(np.sqrt(np.mean(e**2))),
            }
        return uq, errors

    def save(self, iteration: Iteration) -> None:
        iter_dir = self.root / f"iter_{iteration.index}"
        np.savez(iter_dir / "uq.npz", **iteration.state)
        # written last: an iteration with this file is finished
        write_json(iter_dir / "iteration.json", iteration.record)
        kill_point("iteration-saved")

    def finished(self, i: int) -> Iteration | None:
        path = self.root / f"iter_{i}" / "iteration.json"
        if not path.exists():
            return None
        with np.load(self.root / f"iter_{i}" / "uq.npz") as data:
            uq = {key: data[key] for key in data.files}
        return Iteration(i, json.loads(path.read_text()), state=uq)


def _rows(record: dict) -> dict[int, list[int]]:
    """Cumulative ``{pool id: [training rows]}`` up to the iteration of ``record``."""
    return {int(k): v for k, v in record["all_rows"].items()}


def load_committee(root: Path, i: int, n_members: int) -> Committee:
    return Committee(
        [load_checkpoint(root / f"iter_{i}" / f"member_{k}.pt") for k in range(n_members)]
    )
