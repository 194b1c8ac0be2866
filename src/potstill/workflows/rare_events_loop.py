"""One active-learning run of ``rare_events`` on :func:`potstill.learning.active_learning`.

Iteration ``i`` (``OUT/rare_events/<run>/iter_<i>/``):

1. **select**: iteration 0 takes the reference's equilibration frames (with their
   noisy copies when the run augments: 10 K frames alone leave the model blind to
   any displacement larger than their thermal amplitude); later ones the
   frames of iteration ``i - 1``'s SMD whose committee energy std is above
   ``mu + k sigma`` of the first ``uq_window`` frames, filtered and spread
   (:func:`select_frames`);
2. **add**: each selected frame and its noisy copies go into ``train.db`` and are
   labeled by the reference over the executor as they land; a frame the reference
   fails on is recorded on its row and left out;
3. **retrain** the committee (``random`` or ``inherited``, one key per selected frame,
   so a frame and its copies share a split); its best member (lowest force MAE on its
   own data) pulls the molecule from the stored start; the committee scores that SMD;
   the record holds E_a, its error, the MAE on the unseen reference frames after
   removing the mean offset, the frames added and the wall time;
4. **save**: the SMD and its scores, then ``iteration.json`` (written last).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from potstill.errors import PotstillError
from potstill.executors import make_executor
from potstill.faults import kill_point
from potstill.frames import get_labels, has_labels
from potstill.labeling import label_store, noisy_copies
from potstill.learning import CommitteeLearner, Iteration, Retrained, Selection, active_learning
from potstill.models import Committee, PotstillCalculator, load_checkpoint, predict
from potstill.rundir import write_json
from potstill.sampling.smd import Trajectory, pull, work_plateau
from potstill.store import Store
from potstill.training.strategies import Split
from potstill.uncertainty import mu_k_sigma
from potstill.workflows.rare_events_reference import KCAL, ReferenceRuns, smd_options

__all__ = ["LearnedRun", "learn", "select_frames"]

_KEY_STRIDE = 1_000_000  # key of SMD frame f selected in iteration i: i * stride + f


@dataclass
class LearnedRun:
    """A finished (or stopped) run: its iteration records and final best member."""

    name: str
    records: list[dict]
    best_member: Path


def learn(config, root: Path, spec, ref: ReferenceRuns, *, progress=None) -> LearnedRun:
    """Run (or resume) the active-learning run ``spec`` in ``root/<name>``."""
    root = root / spec.name
    root.mkdir(parents=True, exist_ok=True)
    train = config.train.model_copy(update={"committee": spec.committee})
    with make_executor(config.executor, jobs=spec.committee) as executor:
        learner = CommitteeLearner(
            config.reference.name,
            config.model.spec(config.species),
            train,
            strategy=spec.strategy,
            executor=executor,
            progress=progress,
        )
        steps = _Steps(config, spec, ref, root, Store(root / "train.db"), learner, executor)
        iterations = active_learning(
            spec.max_iterations or config.learning.max_iterations,
            select=steps.select,
            add=steps.add,
            retrain=steps.retrain,
            finished=steps.finished,
            save=steps.save,
            stop=steps.stop,
        )
    last = iterations[-1]
    return LearnedRun(
        spec.name,
        [it.record for it in iterations],
        root / f"iter_{last.index}" / f"member_{last.record['best_member']}.pt",
    )


def select_frames(
    uq: np.ndarray,
    distance: np.ndarray,
    energy: np.ndarray,
    bonded: np.ndarray,
    *,
    window: int,
    k_sigma: float,
    min_distance_change_A: float,
    min_energy_change_eV: float,
    max_new: int,
) -> tuple[np.ndarray, dict]:
    """Seed 004's pick on one SMD trajectory of ``n`` frames.

    Args:
        uq: ``(n,)`` committee std of the total energy, eV.
        distance: ``(n,)`` pulled distance, A; ``energy``: ``(n,)`` driving model's
            energy, eV; ``bonded``: ``(n,)`` every atom has a neighbour within reach.
        window: the first frames whose ``uq`` gives ``mu`` and ``sigma``.

    Candidates are above ``mu + k_sigma sigma``; walking forward in time, a candidate
    is kept when it is bonded and, since the last kept frame, the distance moved more
    than ``min_distance_change_A`` and the energy changed more than
    ``min_energy_change_eV``; of those, at most ``max_new`` evenly spread in time.
    Returns the frame indices and what the pick measured.
    """
    threshold = mu_k_sigma(uq[: min(window, len(uq))], k_sigma)
    candidates = np.flatnonzero(uq > threshold.value)
    kept: list[int] = []
    for f in candidates:
        if not bonded[f]:
            continue
        if kept and (
            abs(distance[f] - distance[kept[-1]]) <= min_distance_change_A
            or abs(energy[f] - energy[kept[-1]]) <= min_energy_change_eV
        ):
            continue
        kept.append(int(f))
    picked = np.asarray(kept, dtype=int)
    if len(picked) > max_new:
        picked = picked[np.unique(np.round(np.linspace(0, len(picked) - 1, max_new)).astype(int))]
    return picked, {
        "threshold_eV": threshold.value,
        "mu_eV": threshold.mu,
        "sigma_eV": threshold.sigma,
        "n_above_threshold": int(len(candidates)),
        "n_passing_filters": len(kept),
        "n_selected": int(len(picked)),
    }


def bonded(positions: np.ndarray, within_A: float) -> np.ndarray:
    """``(n,)``: in each frame of ``positions (n, n_atoms, 3)`` every atom has another
    atom within ``within_A``."""
    d = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1)
    n_atoms = positions.shape[1]
    d[:, np.arange(n_atoms), np.arange(n_atoms)] = np.inf
    return (d.min(axis=2) < within_A).all(axis=1)


class _Steps:
    """Select, add, retrain, save, load and stop for one run."""

    def __init__(
        self, config, spec, ref: ReferenceRuns, root: Path, store: Store, learner, executor
    ):
        self.config, self.spec, self.ref, self.root = config, spec, ref, root
        self.store, self.learner, self.executor = store, learner, executor
        self.train = learner.config  # the run's settings; warm retrainings change the epochs
        self.l = config.learning
        self.name = config.reference.name
        self.test = ref.test_frames(self.name, config.smd.test_every)
        self.ref_ea = ref.Ea_eV[0]
        self._pending: dict[int, list] = {}

    # -- select --------------------------------------------------------------------
    def select(self, i: int, previous: Iteration | None) -> Selection:
        if i == 0:
            eq = self.ref.equilibration[0]
            frames = eq.frames(self.name)
            self._pending[0] = frames
            return Selection(list(range(len(frames))), {"source": "equilibration"})
        learning = self.l
        smd: Trajectory = previous.state["smd"]
        picked, info = select_frames(
            previous.state["uq"],
            smd.distance,
            smd.energy,
            bonded(smd.positions, learning.neighbour_A),
            window=learning.uq_window,
            k_sigma=learning.k_sigma,
            min_distance_change_A=learning.min_distance_change_A,
            min_energy_change_eV=learning.min_energy_change_kcal_per_mol / KCAL,
            max_new=learning.max_new,
        )
        self._pending[i] = smd.frames(None, picked)
        info["selected_frames"] = picked.tolist()
        return Selection([i * _KEY_STRIDE + int(f) for f in picked], info)

    # -- add -------------------------------------------------------------------------
    def add(self, i: int, selection: Selection) -> None:
        frames = self._pending.pop(i, [])
        if selection.keys and not self.store.ids(f"al_iteration={i}"):
            for key, atoms in zip(selection.keys, frames):
                atoms.info.update(al_key=int(key), al_iteration=i)
            copies = self.l.augment_copies if self.spec.augment else 0
            if copies:
                frames = noisy_copies(
                    frames,
                    copies=copies + 1,
                    delta_A=self.l.augment_delta_A,
                    seed=np.random.default_rng([self.l.seed, i, 7]),
                )
            self.store.add(frames)
        if selection.keys:
            labels = label_store(
                self.store,
                self.config.reference,
                ids=self.store.ids(f"al_iteration={i}"),
                executor=self.executor,
                retries=self.l.label_retries,
                retry_failed=True,
            )
            selection.info["n_label_failures"] = len(labels["failed"])

    # -- retrain ---------------------------------------------------------------------
    def retrain(self, i: int, selection: Selection, previous: Iteration | None) -> Iteration:
        started = time.time()
        rows = self._rows()
        keys = sorted(rows)
        new = [k for k in selection.keys if k in rows]
        every_row = sorted(r for ids in rows.values() for r in ids)
        position = {row: p for p, row in enumerate(every_row)}
        frames = self.store.frames(every_row)
        n_members, seed = self.spec.committee, self.config.train.seed
        warm = previous is not None and self.spec.strategy == "inherited" and self.l.warm_epochs
        self.learner.config = self.train.model_copy(
            update={"max_epochs": self.l.warm_epochs} if warm else {}
        )
        before = None
        if previous is not None:
            before = Retrained.saved(
                previous.record["splits"], self.root / f"iter_{i - 1}", n_members
            )
        retrained = self.learner.retrain(
            frames,
            keys,
            new,
            previous=before,
            seeds=[seed + k + 1000 * i for k in range(n_members)],
            split_rngs=[np.random.default_rng([self.l.seed, i, k]) for k in range(n_members)],
            rows={key: [position[r] for r in ids] for key, ids in rows.items()},
            out_dir=self.root / f"iter_{i}",
            metadata={"al_iteration": i, "run": self.spec.name},
        )
        trained_at = time.time()
        members = [
            load_checkpoint(self.root / f"iter_{i}" / f"member_{k}.pt") for k in range(n_members)
        ]
        own = [
            _force_mae(m, frames, s, self.name, position, rows)
            for m, s in zip(members, retrained.splits)
        ]
        best = int(np.argmin(own))
        smd = pull(
            self.ref.starts[0],
            PotstillCalculator(members[best]),
            pulled=([self.ref.pulled[0]], [self.ref.pulled[1]]),
            **smd_options(self.config),
        )
        kill_point("smd-finished")
        committee = Committee(members)
        uq = np.array(
            [
                p["energy_std"]
                for p in predict(committee, smd.frames(), batch_size=256, forces=False)
            ]
        )
        ea = work_plateau(smd.work, self.config.smd.plateau_steps)
        record = {
            "iteration": i,
            "Ea_eV": ea,
            "Ea_kcal_per_mol": ea * KCAL,
            "abs_error_kcal_per_mol": abs(ea - self.ref_ea) * KCAL,
            "unseen_mae_kcal_per_mol": _offset_mae(members[best], self.test, self.name) * KCAL,
            "data_mae_kcal_per_mol": _offset_mae(members[best], frames, self.name) * KCAL,
            "n_new_frames": len(new),
            "n_training_frames": len(every_row),
            "n_keys": len(keys),
            "best_member": best,
            "own_force_mae_eV_per_A": own,
            **selection.info,
            "train_time_s": round(trained_at - started, 1),
            "wall_time_s": round(time.time() - started, 1),
            "splits": [s.to_dict() for s in retrained.splits],
            "members": retrained.trained.summaries,
        }
        return Iteration(i, record, state={"smd": smd, "uq": uq})

    def _rows(self) -> dict[int, list[int]]:
        """``{key: [store rows]}`` of every labeled frame so far."""
        rows: dict[int, list[int]] = {}
        for atoms in self.store.get():
            if has_labels(atoms, self.name, ("energy", "forces")):
                rows.setdefault(int(atoms.info["al_key"]), []).append(int(atoms.info["store_id"]))
        return rows

    # -- save / resume / stop ------------------------------------------------------------
    def save(self, iteration: Iteration) -> None:
        folder = self.root / f"iter_{iteration.index}"
        iteration.state["smd"].save(folder / "smd.npz")
        np.save(folder / "uq.npy", iteration.state["uq"])
        write_json(folder / "iteration.json", iteration.record)  # last: the iteration is done
        kill_point("iteration-saved")

    def finished(self, i: int) -> Iteration | None:
        folder = self.root / f"iter_{i}"
        if not (folder / "iteration.json").exists():
            return None
        record = json.loads((folder / "iteration.json").read_text())
        state = {"smd": Trajectory.load(folder / "smd.npz"), "uq": np.load(folder / "uq.npy")}
        return Iteration(i, record, state=state)

    def stop(self, iterations: list[Iteration]) -> bool:
        """Below the target for ``hold`` iterations in a row; or stuck: this iteration
        found no frame to add (its SMD's window was as uncertain as the rest), so the
        next one could only repeat it."""
        last = iterations[-self.l.hold :]
        reached = len(last) == self.l.hold and all(
            it.record["abs_error_kcal_per_mol"] < self.l.target_kcal_per_mol for it in last
        )
        return reached or (len(iterations) > 1 and iterations[-1].record["n_new_frames"] == 0)


def _force_mae(model, frames, split: Split, name: str, position: dict, rows: dict) -> float:
    """A member's force MAE (eV/A) on its own data (train and validation keys)."""
    own = [position[r] for key in split.train + split.validation for r in rows[key]]
    chosen = [frames[p] for p in own]
    if not chosen:
        raise PotstillError("a committee member has no data of its own")
    predicted = predict(model, chosen, batch_size=128)
    errors = [
        np.abs(p["forces"] - get_labels(a, name, ("energy", "forces")).forces).mean()
        for p, a in zip(predicted, chosen)
    ]
    return float(np.mean(errors))


def _offset_mae(model, frames, name: str) -> float:
    """Energy MAE (eV) of ``model`` on ``frames`` after removing the mean offset."""
    predicted = np.array(
        [p["energy"] for p in predict(model, list(frames), batch_size=256, forces=False)]
    )
    reference = np.array([get_labels(a, name).energy for a in frames])
    diff = predicted - reference
    return float(np.mean(np.abs(diff - diff.mean())))
