"""Committee active-learning selection at a fixed budget (seed 000, SI Note 4).

The candidates, in sampling order, are cut into ``n_chunks`` sequential chunks and the
budget ``n`` into equal per-chunk quotas. Chunk 0 contributes a random quota. Before
each later chunk a committee of ``committee`` models is trained on everything picked so
far (and on the ``exclude``d frames, which count as already in the training set); the
chunk's frames are scored by the committee's largest per-atom std of atomic energies
(:func:`~potstill.training.strategies.committee_uncertainty`, eV) and its quota of
highest-scoring frames is kept.

``potstill distill`` runs the same loop with a threshold (``mu + k sigma``) that decides
how many frames are kept; this selector fixes the count instead, so that it can be
compared with the other selectors frame for frame (``potstill compare-selectors``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.selection import prepare
from potstill.selection._features import Stopwatch

# training of the selection committee unless ``train`` overrides it: short, early-stopped
_TRAIN = {"max_epochs": 60, "batch_size": 16, "lr": 1e-3, "scheduler_patience": 10,
          "early_stopping_patience": 20}


class CommitteeSelector:
    """Greedy committee-uncertainty selection, chunk by chunk.

    Args:
        reference: name of the labels to train on (e.g. ``"eam"``).
        n_chunks: sequential chunks (at most ``n // 2``, so chunk 0 gives 2 frames).
        committee: members per committee (2 or more; seed 000 uses 3, 5 or 7).
        preset, overrides: the members' network (:meth:`ANIModel.from_preset`).
        species: element symbols of the models (default: those of the candidates).
        train: :class:`~potstill.config.TrainConfig` fields for the members, over
            short early-stopped defaults (60 epochs, batch 16, lr 1e-3).

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
        from potstill.config import TrainConfig

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
            raise PotstillError(f"bad train options for the committee selector: {' '.join(first[:3])}") from None

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
        species = self.species or sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
        free = np.flatnonzero(~excluded)
        n_chunks = max(1, min(self.n_chunks, n // 2))
        chunks = np.array_split(free, n_chunks)
        quotas = [len(q) for q in np.array_split(np.arange(n), n_chunks)]
        watch = Stopwatch()
        picked = [np.sort(rng.choice(chunks[0], size=quotas[0], replace=False))]
        scores = [np.full(quotas[0], np.nan)]
        self.chunks_ = [{"chunk": 0, "size": len(chunks[0]), "picked": quotas[0], "score_max_eV": None,
                         "score_median_eV": None, "cut_eV": None}]
        for i in range(1, n_chunks):
            training = np.concatenate([np.flatnonzero(excluded), *picked])
            committee = self._train([frames[p] for p in training], species, seed=int(rng.integers(2**31)))
            watch.lap("training")
            chunk_scores = self._scores(committee, [frames[p] for p in chunks[i]])
            watch.lap("scoring")
            order = np.argsort(-chunk_scores, kind="stable")[: quotas[i]]
            picked.append(chunks[i][order])
            scores.append(chunk_scores[order])
            self.chunks_.append({
                "chunk": i, "size": len(chunks[i]), "picked": len(order),
                "score_max_eV": float(chunk_scores.max()), "score_median_eV": float(np.median(chunk_scores)),
                "cut_eV": float(chunk_scores[order[-1]]),
            })
        self.scores_ = np.concatenate(scores)
        self.timings_ = watch.timings
        return np.concatenate(picked).astype(int)

    # -- steps ------------------------------------------------------------------------
    def _frames(self, candidates: Sequence) -> list:
        frames = list(candidates)  # read once, in order
        if frames and not hasattr(frames[0], "positions"):
            raise PotstillError(
                f"the committee selector trains models, so candidates must be labeled frames (ase.Atoms), "
                f"got {type(frames[0]).__name__}"
            )
        from potstill.frames import get_labels

        for atoms in frames:  # a missing label fails here, not after minutes of training
            get_labels(atoms, self.reference)
        return frames

    def _train(self, frames: list, species: list[str], *, seed: int):
        from potstill.models.ani import ANIModel
        from potstill.training.trainer import train_committee

        config = self.train.model_copy(update={"seed": seed})

        def factory(member_seed: int):
            return ANIModel.from_preset(self.preset, species, seed=member_seed, **self.overrides)

        committee, _ = train_committee(frames, self.reference, model_factory=factory, config=config)
        return committee

    @staticmethod
    def _scores(committee: Any, frames: list) -> np.ndarray:
        from potstill.training.strategies import committee_uncertainty

        return committee_uncertainty(committee, frames).score
