"""Committee active-learning selection at a fixed budget (seed 000, SI Note 4).

The candidates, in sampling order, are cut into ``n_chunks`` sequential chunks and the
budget ``n`` into equal per-chunk quotas. Chunk 0 contributes a random quota. Before
each later chunk a committee of ``committee`` models is trained on everything picked so
far (and on the ``exclude``d frames, which count as already in the training set); the
chunk's frames are scored by the committee's largest per-atom std of atomic energies
(:class:`~potstill.uncertainty.committee.CommitteeUncertainty`, eV) and its quota of
highest-scoring frames is kept.

It is the active-learning loop of :mod:`potstill.learning` (the same one ``potstill
distill`` runs with a ``mu + k sigma`` threshold that decides how many frames are kept)
with a quota instead, so that it can be compared with the other selectors frame for
frame (``potstill compare-selectors``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.learning import CommitteeLearner, Iteration, Selection, active_learning, pick_highest
from potstill.models import ModelSpec
from potstill.selection import prepare
from potstill.selection._features import Stopwatch
from potstill.training.config import TrainConfig
from potstill.uncertainty.committee import CommitteeUncertainty

# training of the selection committee unless ``train`` overrides it: short, early-stopped
_TRAIN = {
    "max_epochs": 60,
    "batch_size": 16,
    "lr": 1e-3,
    "scheduler_patience": 10,
    "early_stopping_patience": 20,
}


class CommitteeSelector:
    """Greedy committee-uncertainty selection, chunk by chunk.

    Args:
        reference: name of the labels to train on (e.g. ``"eam"``).
        n_chunks: sequential chunks (at most ``n // 2``, so chunk 0 gives 2 frames).
        committee: members per committee (2 or more; seed 000 uses 3, 5 or 7).
        preset, overrides: the members' network (:meth:`ANIModel.from_preset`).
        species: element symbols of the models (default: those of the candidates).
        train: :class:`~potstill.training.config.TrainConfig` fields for the members,
            over short early-stopped defaults (60 epochs, batch 16, lr 1e-3).

    Members are seeded from ``rng``. After ``select``: ``scores_`` ``(n,)`` eV, each
    pick's committee score (NaN for chunk 0's random picks); ``chunks_`` per chunk
    ``{"chunk", "size", "picked", "score_max_eV", "score_median_eV", "cut_eV"}``;
    ``timings_`` wall seconds of ``training`` and ``scoring``.
    """

    def __init__(
        self,
        *,
        reference: str = "eam",
        n_chunks: int = 5,
        committee: int = 3,
        preset: str = "demo",
        overrides: dict | None = None,
        species: Sequence[str] | None = None,
        train: dict | None = None,
    ):
        if n_chunks < 1:
            raise PotstillError(f"n_chunks must be >= 1, got {n_chunks}")
        if committee < 2:
            raise PotstillError(f"a committee needs at least 2 models, got committee = {committee}")
        self.reference = reference
        self.n_chunks = int(n_chunks)
        self.preset = preset
        self.overrides = dict(overrides or {})
        self.species = list(species) if species is not None else None
        try:
            self.train = TrainConfig(**{**_TRAIN, **(train or {}), "committee": int(committee)})
        except ValueError as error:
            first = str(error).splitlines()
            raise PotstillError(
                f"bad train options for the committee selector: {' '.join(first[:3])}"
            ) from None

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        frames = self._frames(candidates)
        species = self.species or sorted(
            {s for atoms in frames for s in atoms.get_chemical_symbols()}
        )
        learner = CommitteeLearner(
            self.reference, ModelSpec(self.preset, tuple(species), self.overrides), self.train
        )
        n_chunks = max(1, min(self.n_chunks, n // 2))
        chunks = np.array_split(np.flatnonzero(~excluded), n_chunks)
        quotas = [len(q) for q in np.array_split(np.arange(n), n_chunks)]
        watch = Stopwatch()

        def select_chunk(i: int, previous: Iteration | None) -> Selection:
            if i == 0:  # nothing to score with yet: a random quota
                picks = np.sort(rng.choice(chunks[0], size=quotas[0], replace=False))
                return Selection(
                    picks.tolist(),
                    {
                        "scores": np.full(quotas[0], np.nan),
                        "chunk": _chunk_info(0, chunks[0], quotas[0]),
                    },
                )
            scores = (
                CommitteeUncertainty(previous.state).evaluate([frames[p] for p in chunks[i]]).score
            )
            watch.lap("scoring")
            order = pick_highest(scores, limit=quotas[i])
            info = _chunk_info(i, chunks[i], len(order), scores, scores[order[-1]])
            return Selection(chunks[i][order].tolist(), {"scores": scores[order], "chunk": info})

        def retrain(i: int, selection: Selection, previous: Iteration | None) -> Iteration:
            picked = (previous.record["picked"] if previous else []) + selection.keys
            record = {
                "picked": picked,
                "scores": [
                    *(previous.record["scores"] if previous else []),
                    *selection.info["scores"],
                ],
                "chunks": [
                    *(previous.record["chunks"] if previous else []),
                    selection.info["chunk"],
                ],
            }
            if i == n_chunks - 1:  # the last chunk is picked: no committee needed after it
                return Iteration(i, record)
            training = np.concatenate([np.flatnonzero(excluded), picked]).astype(int)
            seed = int(rng.integers(2**31))
            committee = learner.retrain(
                [frames[p] for p in training],
                range(len(training)),
                range(len(training)),
                previous=None,
                seeds=[seed + k for k in range(self.train.committee)],
                split_rngs=[np.random.default_rng(seed + k) for k in range(self.train.committee)],
            ).trained.model
            watch.lap("training")
            return Iteration(i, record, state=committee)

        last = active_learning(n_chunks, select=select_chunk, retrain=retrain)[-1].record
        self.scores_ = np.asarray(last["scores"], dtype=float)
        self.chunks_ = last["chunks"]
        self.timings_ = watch.timings
        return np.asarray(last["picked"], dtype=int)

    def _frames(self, candidates: Sequence) -> list:
        frames = list(candidates)  # read once, in order
        if frames and not hasattr(frames[0], "positions"):
            raise PotstillError(
                f"the committee selector trains models, so candidates must be labeled frames (ase.Atoms), "
                f"got {type(frames[0]).__name__}"
            )
        for atoms in frames:  # a missing label fails here, not after minutes of training
            get_labels(atoms, self.reference)
        return frames


def _chunk_info(i: int, chunk: np.ndarray, picked: int, scores=None, cut=None) -> dict:
    return {
        "chunk": i,
        "size": len(chunk),
        "picked": picked,
        "score_max_eV": None if scores is None else float(scores.max()),
        "score_median_eV": None if scores is None else float(np.median(scores)),
        "cut_eV": None if cut is None else float(cut),
    }
