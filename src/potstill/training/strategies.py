"""Committee uncertainty and the two data strategies of active learning (seeds 000, 004).

- :func:`committee_uncertainty`: per-atom uncertainty = population std across the K
  members of their atomic energies (eV); the frame score is its max over atoms (seed 000
  SI Note 4: a frame is new when any atom is uncertain).
- :class:`UQStats` and :func:`uq_threshold`: ``mu + k sigma`` of the atomic
  uncertainties of a reference set of frames.
- :func:`next_splits`: each member's train/validation split after new frames arrive:
  ``random`` (a fresh split of all data, retrain from scratch) or ``inherited`` (old
  assignments kept, only the new frames split, warm start from the previous weights);
  definitions in ``seeds/INDEX.md``.
- :class:`MemberTask` / :func:`train_member`: one member's training as a picklable job
  for an executor (:mod:`potstill.executors`); frames are read from a store by id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from potstill.errors import PotstillError

STRATEGIES = ("random", "inherited")


# -- uncertainty --------------------------------------------------------------------
@dataclass
class FrameUncertainty:
    """Committee predictions on ``n`` frames.

    ``energy (n,)`` eV, committee mean; ``atom_std``: list of ``(n_atoms,)`` arrays,
    eV, the population std of atomic energies across members; ``score (n,)`` eV, the
    max of ``atom_std`` over each frame's atoms.
    """

    energy: np.ndarray
    atom_std: list[np.ndarray]

    @property
    def score(self) -> np.ndarray:
        return np.array([s.max() if s.size else 0.0 for s in self.atom_std])


def committee_uncertainty(committee, frames: Sequence[Atoms], *, batch_size: int = 64) -> FrameUncertainty:
    """Committee-mean energies and per-atom std of atomic energies of ``frames``
    (energies only: no forces or stress are computed)."""
    from potstill.models import predict

    predictions = predict(committee, frames, batch_size=batch_size, dtype=None, forces=False)
    return FrameUncertainty(energy=np.array([p["energy"] for p in predictions]),
                            atom_std=[p["energies_std"] for p in predictions])


@dataclass(frozen=True)
class UQStats:
    """Sufficient statistics of atomic uncertainties (eV): count, sum, sum of squares."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def of(cls, atom_std: Sequence[np.ndarray]) -> UQStats:
        values = np.concatenate([np.ravel(s) for s in atom_std]) if len(atom_std) else np.zeros(0)
        return cls(int(values.size), float(values.sum()), float((values**2).sum()))

    def __add__(self, other: UQStats) -> UQStats:
        return UQStats(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mu(self) -> float:
        return self.total / self.n

    @property
    def sigma(self) -> float:
        return float(np.sqrt(max(self.total_sq / self.n - self.mu**2, 0.0)))


def uq_threshold(stats: UQStats, k: float) -> tuple[float, float, float]:
    """``(threshold, mu, sigma)`` with threshold ``mu + k sigma`` (eV)."""
    if stats.n == 0:
        raise PotstillError("no atoms in the reference set of the uncertainty threshold")
    return stats.mu + k * stats.sigma, stats.mu, stats.sigma


# -- splits -------------------------------------------------------------------------
@dataclass
class Split:
    """One member's data: ``train`` and ``validation`` keys (e.g. pool ids)."""

    train: list[int] = field(default_factory=list)
    validation: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"train": list(self.train), "validation": list(self.validation)}


def split_keys(keys: Sequence[int], validation_fraction: float, rng: np.random.Generator) -> Split:
    """Random split of ``keys``: ``round(fraction * n)`` to validation (at least one when
    there are two or more keys, none for a single key)."""
    from potstill.training.trainer import validation_count

    keys = np.asarray(list(keys), dtype=int)
    order = rng.permutation(len(keys))
    n_val = validation_count(len(keys), validation_fraction)
    return Split(train=sorted(keys[order[n_val:]].tolist()), validation=sorted(keys[order[:n_val]].tolist()))


def next_splits(
    strategy: str,
    previous: Sequence[Split] | None,
    all_keys: Sequence[int],
    new_keys: Sequence[int],
    *,
    n_members: int,
    validation_fraction: float,
    rngs: Sequence[np.random.Generator],
) -> list[Split]:
    """Every member's split after ``new_keys`` joined the data (``all_keys`` includes
    them). ``random``, or no previous splits: a fresh split of ``all_keys`` per member;
    ``inherited``: the previous split plus a split of ``new_keys`` only."""
    if strategy not in STRATEGIES:
        raise PotstillError(f"unknown strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
    if strategy == "random" or previous is None:
        return [split_keys(all_keys, validation_fraction, rngs[k]) for k in range(n_members)]
    splits = []
    for k, old in enumerate(previous):
        new = split_keys(new_keys, validation_fraction, rngs[k]) if len(new_keys) else Split()
        splits.append(Split(train=sorted(old.train + new.train), validation=sorted(old.validation + new.validation)))
    return splits


# -- one member as an executor job ----------------------------------------------------
@dataclass(frozen=True)
class MemberTask:
    """Everything needed to train member ``index`` in any process.

    Frames are rows ``train_ids``/``validation_ids`` of the store at ``store_url``.
    With ``warm_start`` (a checkpoint path) the member continues from those weights and
    their self energies; otherwise a fresh ``model`` (``preset``, ``species``,
    ``overrides``) is initialised from ``seed`` with ``self_energies``.
    """

    index: int
    store_url: str
    train_ids: tuple[int, ...]
    validation_ids: tuple[int, ...]
    reference: str
    train_config: dict
    model: dict
    seed: int
    out_path: str
    self_energies: dict | None = None
    warm_start: str | None = None
    threads: int | None = None
    metadata: dict = field(default_factory=dict)

    def key(self) -> str:
        """Hash of the task: a saved member with the same key is reused on a rerun."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("threads", "out_path", "metadata")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def parameter_checksum(model: torch.nn.Module) -> str:
    """Hash of a model's parameters and buffers (to check where a warm start began)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().to(torch.float64).cpu().numpy().tobytes())
    return digest.hexdigest()


def train_member(task: MemberTask, progress=None) -> dict:
    """Train (or reuse, when already saved with the same task) one member; save it at
    ``task.out_path`` and return its summary."""
    from potstill.config import TrainConfig
    from potstill.models import ANIModel, load_checkpoint, save_checkpoint
    from potstill.store import Store
    from potstill.training.trainer import TrainResult, summarize, train_model

    if task.threads is not None:
        torch.set_num_threads(task.threads)
    key = task.key()
    out = Path(task.out_path)
    if out.exists():
        try:
            saved = load_checkpoint(out).checkpoint_metadata
        except Exception:  # noqa: BLE001 - an unreadable member is trained again
            saved = {}
        if saved.get("task_key") == key:
            return saved["summary"]
    config = TrainConfig(**task.train_config)
    torch.manual_seed(task.seed)
    if task.warm_start is not None:
        model = load_checkpoint(task.warm_start)
    else:
        model = ANIModel.from_preset(task.model["preset"], task.model["species"], **task.model["overrides"], seed=task.seed)
        model.set_self_energies(task.self_energies or {})
    initial = parameter_checksum(model)
    store = Store(task.store_url, create=False)
    result: TrainResult = train_model(
        model, store.frames(list(task.train_ids)), store.frames(list(task.validation_ids)), task.reference, config,
        seed=task.seed, progress=progress, description=f"member {task.index + 1}",
    )
    result.train_indices, result.validation_indices = list(task.train_ids), list(task.validation_ids)
    summary = summarize([result])[0] | {"warm_start_from": task.warm_start, "initial_checksum": initial}
    save_checkpoint(result.model, out, task_key=key, summary=summary, history=result.history, **task.metadata)
    return summary
