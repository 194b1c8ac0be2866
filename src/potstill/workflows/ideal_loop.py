"""One on-the-fly run of ``ideal`` on :func:`potstill.learning.active_learning`.

Iteration ``i`` of run ``<mode>`` (``OUT/ideal/<mode>/iter_<i>/``):

1. **select**: iteration 0 takes the initial data; later ones continue the Langevin
   MD of iteration ``i - 1`` with its model until an atom's Mahalanobis uncertainty
   passes the threshold, and cut that frame's substructures (``mode``: ``ides``,
   ``periodic`` or ``vacuum``);
2. **add**: the substructures go into ``train.db`` and are labeled by the reference
   over the executor as they land;
3. **retrain**: iteration 0 trains the initial model and fits the uncertainty's
   statistics; later ones stream the new atoms into the statistics and continue the
   model (warm start) on the new frames plus a replay of earlier ones drawn with
   probability proportional to ``MAE_E + MAE_F + 0.1 MAE_S`` (eV/atom, eV/A, GPa) of
   the current model on each (seed 003, SI S12);
4. **save**: the uncertainty's statistics, the MD state and the trajectory segment,
   then ``iteration.json`` (written last). A resumed run continues the same
   trajectory: the MD state carries the thermostat's generator.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk

from potstill.descriptors import AEVDescriptor, make_descriptor
from potstill.executors import make_executor
from potstill.faults import kill_point
from potstill.frames import has_labels
from potstill.labeling import label_store, seconds_key
from potstill.learning import Iteration, Selection, active_learning
from potstill.models import Committee, PotstillCalculator, load_checkpoint, predict
from potstill.rundir import write_json
from potstill.sampling.langevin import TRACE_KEYS, MDState, run_langevin
from potstill.sampling.substructure import MODES, build_substructures
from potstill.store import Store
from potstill.training.committee import train_committee
from potstill.training.strategies import Split, split_keys
from potstill.uncertainty import mu_k_sigma
from potstill.uncertainty.committee import CommitteeUncertainty
from potstill.uncertainty.mahalanobis import MahalanobisUncertainty
from potstill.validation.metrics import pool_errors

__all__ = ["LearnedRun", "baseline", "initial_data", "learn", "test_frames"]

# key of substructure j of event i of run <mode>: (m + 1) * 10^6 + i * 1000 + j, m the
# mode's position in MODES (keys are unique across the runs of one workflow)
_KEY_STRIDE = 1000


@dataclass
class LearnedRun:
    """A finished run: its iteration records and folders."""

    mode: str
    records: list[dict]
    root: Path

    def model_dir(self, index: int = -1) -> Path:
        return Path(self.records[index]["model_dir"])


def crystal(config, repeat) -> Atoms:
    """The cubic crystal of ``config.system`` repeated ``repeat`` times."""
    system = config.system
    unit = bulk(config.species[0], system.structure, a=system.lattice_A, cubic=True)
    return unit.repeat(tuple(repeat))


def initial_data(config, root: Path, *, progress=None) -> list[Atoms]:
    """The initial frames (see :class:`InitialConfig`), labeled whole, in
    ``root/initial.db``."""
    store = Store(root / "initial.db")
    init = config.initial
    if len(store) == 0:
        rng = np.random.default_rng([init.seed, 11])
        frames = []
        for k in range(init.frames):
            atoms = crystal(config, init.repeat)
            scale = 1.0 + rng.uniform(-init.strain, init.strain)
            atoms.set_cell(atoms.cell[:] * scale, scale_atoms=True)
            atoms.positions += rng.normal(0.0, init.rattle_A, atoms.positions.shape)
            atoms.info.update(al_key=k, source="initial")
            frames.append(atoms)
        store.add(frames)
    _label(config, store, None, progress=progress)
    return [a for a in store.get() if has_labels(a, config.reference.name, ("energy", "forces"))]


def learn(config, root: Path, mode: str, initial: list[Atoms], *, progress=None) -> LearnedRun:
    """Run (or resume) the on-the-fly run of substructure ``mode`` in ``root/<mode>``."""
    folder = root / mode
    folder.mkdir(parents=True, exist_ok=True)
    with make_executor(config.executor, jobs=config.substructure.max_groups) as executor:
        steps = _Steps(config, folder, mode, Store(folder / "train.db"), initial, executor)
        steps.progress = progress
        iterations = active_learning(
            config.update.max_events + 2,  # the last runs the MD to its end
            select=steps.select,
            add=steps.add,
            retrain=steps.retrain,
            finished=steps.finished,
            save=steps.save,
            stop=steps.stop,
        )
    return LearnedRun(mode, [it.record for it in iterations], folder)


def load_model(folder: Path):
    """The model saved in ``folder`` (one member, or the committee of all)."""
    members = sorted(Path(folder).glob("member_*.pt"))
    models = [load_checkpoint(p) for p in members]
    return models[0] if len(models) == 1 else Committee(models)


def make_uncertainty(config, model) -> MahalanobisUncertainty | CommitteeUncertainty:
    """The run's uncertainty: Mahalanobis distance of the model's AEV (or SOAP), or the
    committee's spread."""
    u = config.uncertainty
    if u.kind == "committee":
        return CommitteeUncertainty(model)
    if u.descriptor == "aev":
        descriptor = AEVDescriptor(config.species, aev=_aev_of(model))
    else:
        descriptor = make_descriptor("soap", species=config.species, **u.soap)
    return MahalanobisUncertainty(descriptor=descriptor, ridge=u.ridge)


def md_options(config) -> dict:
    md = config.md
    return dict(
        schedule=md.schedule,
        end_step=md.steps,
        timestep_fs=md.timestep_fs,
        friction_per_fs=md.friction_per_fs,
        check_every=md.check_every,
        frame_every=md.frame_every,
        blowup_K=md.blowup_K,
        min_distance_A=md.min_distance_A,
    )


def core_radius(config, model) -> float:
    return config.substructure.core_radius_A or float(model.cutoff)


class _Steps:
    """Select, add, retrain, save, load and stop for one run."""

    def __init__(self, config, root: Path, mode: str, store: Store, initial, executor):
        self.config, self.root, self.mode = config, root, mode
        self.store, self.initial, self.executor = store, initial, executor
        self.sub = config.substructure.model_copy(update={"mode": mode})
        self.name = config.reference.name
        self.progress = None
        self._pending: dict[int, list[Atoms]] = {}
        self._segments: dict[int, object] = {}

    # -- select --------------------------------------------------------------------
    def select(self, i: int, previous: Iteration | None) -> Selection:
        if i == 0:
            self._pending[0] = [a.copy() for a in self.initial]
            return Selection(list(range(len(self.initial))), {"source": "initial"})
        state = previous.state
        started = time.perf_counter()
        learning = i <= self.config.update.max_events  # then the model is final
        md, segment = run_langevin(
            state["md"],
            PotstillCalculator(state["model"], forces_std=False),
            score=lambda atoms: state["uncertainty"].per_atom([atoms])[0],
            threshold=state["threshold"] if learning else None,
            **md_options(self.config),
        )
        kill_point("md-segment")
        self._segments[i] = (md, segment)
        info = {
            "outcome": segment.outcome,
            "step": md.step,
            "md_s": round(time.perf_counter() - started, 2),
        }
        if segment.outcome != "flagged":
            return Selection([], info)
        subs = build_substructures(
            md.atoms,
            segment.scores,
            state["threshold"],
            state["uncertainty"],
            self.sub,
            core_radius_A=core_radius(self.config, state["model"]),
            seed=(self.config.update.seed, i, 3),
            map=self.executor.map,
        )
        info["substructure_s"] = round(time.perf_counter() - started - info["md_s"], 2)
        frames = []
        for j, s in enumerate(subs):
            key = (MODES.index(self.mode) + 1) * 1_000_000 + i * _KEY_STRIDE + j
            s.atoms.info.update(al_key=key, n_core=int(s.core.sum()))
            frames.append(s.atoms)
        self._pending[i] = frames
        info.update(
            max_score=float(segment.scores.max()),
            n_uncertain=int((segment.scores > state["threshold"]).sum()),
            substructures=[_jsonable(s.info) for s in subs],
        )
        return Selection([f.info["al_key"] for f in frames], info)

    # -- add -------------------------------------------------------------------------
    def add(self, i: int, selection: Selection) -> None:
        frames = self._pending.pop(i, [])
        if selection.keys and not self.store.ids(f"al_iteration={i}"):
            for atoms in frames:
                atoms.info.update(al_iteration=i)
            self.store.add(frames)
        if selection.keys:
            started = time.perf_counter()
            result = _label(
                self.config, self.store, self.store.ids(f"al_iteration={i}"), self.executor
            )
            selection.info["n_label_failures"] = len(result["failed"])
            selection.info["label_s"] = round(time.perf_counter() - started, 2)

    # -- retrain ---------------------------------------------------------------------
    def retrain(self, i: int, selection: Selection, previous: Iteration | None) -> Iteration:
        started = time.time()
        folder = self.root / f"iter_{i}"
        new = [a for a in self.store.get(self.store.ids(f"al_iteration={i}")) if self._labeled(a)]
        record = {"iteration": i, "mode": self.mode, **selection.info}
        if i == 0:
            state = self._initial_state(new, folder)
        elif not new:
            state = dict(previous.state)
            record["model_dir"] = previous.record["model_dir"]
        else:
            state = self._update(i, new, previous, folder)
        record.setdefault("model_dir", str(folder))
        record.update(
            threshold=state["threshold"],
            n_new_frames=len(new),
            n_atoms_labeled=int(sum(len(a) for a in new)),
            reference_seconds=float(sum(a.info.get(seconds_key(self.name), 0.0) for a in new)),
            n_training_frames=len(self.store.ids()),
            wall_time_s=round(time.time() - started, 2),
        )
        if i > 0:
            record["md_step"] = self._segments[i][0].step
        return Iteration(i, record, state=state)

    def _initial_state(self, frames: list[Atoms], folder: Path) -> dict:
        train = self.config.train
        splits = [
            split_keys(range(len(frames)), train.validation_fraction, np.random.default_rng(s))
            for s in range(train.seed, train.seed + train.committee)
        ]
        train_committee(
            frames,
            self.name,
            model=self.config.model.spec(self.config.species),
            config=train,
            splits=splits,
            out_dir=folder,
            executor=self.executor,
            progress=self.progress,
            metadata={"al_iteration": 0, "mode": self.mode},
        )
        model = load_model(folder)
        uncertainty = make_uncertainty(self.config, model).fit(frames)
        scores = np.concatenate(uncertainty.per_atom(frames))
        threshold = mu_k_sigma(scores, self.config.uncertainty.k_sigma).value
        start = crystal(self.config, self.config.system.repeat)
        md = self.config.md
        first = md.schedule[0][1]
        return {
            "model": model,
            "uncertainty": uncertainty,
            "threshold": float(threshold),
            "md": MDState.start(start, first, md.seed),
        }

    def _update(self, i: int, new: list[Atoms], previous: Iteration, folder: Path) -> dict:
        state = dict(previous.state)
        old_dir = Path(previous.record["model_dir"])
        frames = [a for a in self.store.get() if self._labeled(a)]
        earlier = [a for a in frames if a.info.get("al_iteration") != i]
        replay = self._replay(i, state["model"], earlier)
        data = new + replay
        n = self.config.train.committee
        update = self.config.update
        train = self.config.train.model_copy(update={"max_epochs": update.epochs, "lr": update.lr})
        rows = list(range(len(data)))
        train_committee(
            data,
            self.name,
            model=self.config.model.spec(self.config.species),
            config=train,
            splits=[Split(train=rows, validation=rows) for _ in range(n)],
            seeds=[train.seed + k + 1000 * i for k in range(n)],
            warm_start=[old_dir / f"member_{k}.pt" for k in range(n)],
            out_dir=folder,
            executor=self.executor,
            metadata={"al_iteration": i, "mode": self.mode},
        )
        state["model"] = load_model(folder)
        if self.config.uncertainty.kind == "committee":  # its statistics are the weights
            state["uncertainty"] = make_uncertainty(self.config, state["model"])
        state["uncertainty"].update(new)  # O(1) per atom (seed 003, SI S10)
        state["md"] = self._segments[i][0]
        return state

    def _replay(self, i: int, model, frames: list[Atoms]) -> list[Atoms]:
        """``update.replay`` earlier frames drawn with probability proportional to the
        model's ``MAE_E + MAE_F + 0.1 MAE_S`` on each (eV/atom, eV/A, GPa)."""
        count = min(self.config.update.replay, len(frames))
        if count == 0:
            return []
        errors = replay_errors(model, frames, self.name)
        rng = np.random.default_rng([self.config.update.seed, i, 5])
        p = errors / errors.sum() if errors.sum() > 0 else None
        return [frames[k] for k in rng.choice(len(frames), count, replace=False, p=p)]

    def _labeled(self, atoms: Atoms) -> bool:
        return has_labels(atoms, self.name, ("energy", "forces"))

    # -- save / resume / stop ------------------------------------------------------------
    def save(self, iteration: Iteration) -> None:
        folder = self.root / f"iter_{iteration.index}"
        folder.mkdir(parents=True, exist_ok=True)
        iteration.state["uncertainty"].save(folder / "uncertainty.npz")
        iteration.state["md"].save(folder / "md.npz")
        if iteration.index in self._segments:
            _save_segment(folder / "segment.npz", self._segments.pop(iteration.index)[1])
        write_json(folder / "iteration.json", iteration.record)  # last: the iteration is done
        kill_point("iteration-saved")

    def finished(self, i: int) -> Iteration | None:
        folder = self.root / f"iter_{i}"
        if not (folder / "iteration.json").exists():
            return None
        record = json.loads((folder / "iteration.json").read_text())
        model = load_model(Path(record["model_dir"]))
        state = {
            "model": model,
            "uncertainty": make_uncertainty(self.config, model).load(folder / "uncertainty.npz"),
            "threshold": record["threshold"],
            "md": MDState.load(folder / "md.npz"),
        }
        return Iteration(i, record, state=state)

    def stop(self, iterations: list[Iteration]) -> bool:
        return iterations[-1].record.get("outcome") in ("finished", "unstable")


def replay_errors(model, frames: list[Atoms], name: str) -> np.ndarray:
    """``(n,)`` ``MAE_E + MAE_F + 0.1 MAE_S`` of ``model`` on each frame (eV/atom, eV/A,
    GPa; the stress term only where the frame has a stress label)."""
    predictions = predict(model, frames, batch_size=64)
    out = []
    for atoms, p in zip(frames, predictions):
        e = pool_errors([atoms], [p], name)
        stress = e.get("stress_GPa", {}).get("mae", 0.0)
        out.append(e["energy_eV_per_atom"]["mae"] + e["forces_eV_per_A"]["mae"] + 0.1 * stress)
    return np.array(out)


def baseline(config, root: Path, run: LearnedRun) -> dict:
    """MD with the initial model alone (no learning), the same start and thermostat
    seed; its segment in ``root/baseline/segment.npz``."""
    folder = root / "baseline"
    done = folder / "baseline.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    first = run.root / "iter_0"
    model = load_model(first)
    uncertainty = make_uncertainty(config, model).load(first / "uncertainty.npz")
    md, segment = run_langevin(
        MDState.load(first / "md.npz"),
        PotstillCalculator(model, forces_std=False),
        score=lambda atoms: uncertainty.per_atom([atoms])[0],
        **md_options(config),
    )
    _save_segment(folder / "segment.npz", segment)
    record = {"outcome": segment.outcome, "last_step": md.step}
    write_json(done, record)
    return record


def test_frames(config, root: Path, run: LearnedRun, *, progress=None) -> list[Atoms]:
    """``evaluation.frames`` whole frames evenly spread over the ``ides`` trajectory,
    labeled by the reference into ``root/test.db``."""
    store = Store(root / "test.db")
    wanted = config.evaluation.frames
    if wanted and len(store) == 0:
        steps, positions = trajectory_frames(run.root)
        start = crystal(config, config.system.repeat)
        picked = np.unique(np.linspace(0, len(steps) - 1, min(wanted, len(steps))).astype(int))
        frames = []
        for k in picked:
            atoms = start.copy()
            atoms.positions = positions[k]
            atoms.info.update(step=int(steps[k]))
            frames.append(atoms)
        store.add(frames)
    if wanted:
        with make_executor(config.executor, jobs=wanted) as executor:
            _label(config, store, None, executor, progress=progress)
    return [a for a in store.get() if has_labels(a, config.reference.name, ("energy", "forces"))]


def trajectory_frames(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``(k,)`` and positions ``(k, n_atoms, 3)`` kept along a run's segments."""
    steps, positions = [], []
    for path in sorted(Path(folder).glob("iter_*/segment.npz"), key=_iteration_of):
        data = np.load(path)
        steps.append(data["frame_steps"])
        positions.append(data["frames"])
    return np.concatenate(steps), np.concatenate(positions)


def load_trace(folder: Path) -> dict[str, np.ndarray]:
    """The MD trace of a run (its segments in order) or of the baseline."""
    paths = sorted(Path(folder).glob("iter_*/segment.npz"), key=_iteration_of) or [
        Path(folder) / "segment.npz"
    ]
    parts = [np.load(p) for p in paths if p.exists()]
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in TRACE_KEYS}


def _iteration_of(path: Path) -> int:
    return int(path.parent.name.split("_")[1])


def _save_segment(path: Path, segment) -> None:
    np.savez(path, frame_steps=segment.frame_steps, frames=segment.frames, **segment.trace)


def _label(config, store: Store, ids, executor=None, *, progress=None) -> dict:
    if executor is None:
        with make_executor(config.executor, jobs=len(store)) as pool:
            return _label(config, store, ids, pool, progress=progress)
    return label_store(
        store,
        config.reference,
        ids=ids,
        executor=executor,
        retries=config.update.label_retries,
        retry_failed=True,
        progress=progress,
    )


def _aev_of(model):
    first = model.members[0] if isinstance(model, Committee) else model
    return first.aev_config


def _jsonable(info: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in info.items()}
