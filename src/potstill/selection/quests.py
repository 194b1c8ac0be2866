"""QUESTS dataset compression as a selector (a peer: the published ``quests`` package).

Each frame is described by QUESTS' per-atom descriptors (``k`` nearest neighbours within
``cutoff`` A: ``(n_atoms, 2k - 1)``, or with ``multicomponent`` one such block per
species of the pool plus the all-species one) and scored by its own information entropy
(Gaussian kernel of ``bandwidth``, nats). ``quests.compression.compress.
DatasetCompressor`` then picks ``n`` frames with quests' own method:

- ``fps``: starts from the frame of highest entropy, then farthest point sampling on the
  mean distance between the frames' environments;
- ``msc`` (quests' default): starts from the frame of highest entropy, then the frame
  whose most novel environment (``dH = -log`` of its kernel sum over the picked
  environments) plus its entropy is largest.

Both are deterministic: ``rng`` is accepted and unused. ``exclude``: quests' ``fps`` has
no notion of it, so it runs on the other frames only and excluded frames do not count as
coverage; ``msc`` runs quests' ``msc_conditional`` with the excluded frames as the
reference set (as ``quests compress --reference`` does), so they count as coverage.

quests is an optional dependency (the ``test`` extra installs it), imported with this
module, which the registry loads only when a ``quests`` selector is built (importing
quests and numba takes seconds). Its numba kernels compile on their first call in a
fresh install (about 45 s on one core; cached on disk afterwards). They run on
``threads`` numba threads (default 1: its parallel loops run over cell bins and
20,000-environment batches, which small cells and pools do not fill), one selection at
a time per process.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np

from potstill.errors import PotstillError
from potstill.selection import prepare
from potstill.selection._features import Stopwatch, frames_of

# Imported with this module, which the registry loads only to build a 'quests' selector.
try:
    import numba
    from quests import descriptor, entropy
    from quests.compression import compress
except ModuleNotFoundError as error:  # optional: building the selector says how to get it
    _MISSING = (
        "selector 'quests' needs the quests package: pip install quests (make test installs it)"
        if (error.name or "").split(".")[0] in ("quests", "numba")
        else f"selector 'quests' could not import quests ({error}); pip install quests again"
    )
else:
    _MISSING = None

_METHODS = ("fps", "msc")
# numba's workqueue threading layer (used when neither OpenMP nor TBB loads) aborts the
# process when two threads launch parallel kernels at once: one selection at a time
_NUMBA_LOCK = threading.Lock()


class QuestsSelector:
    """quests' ``DatasetCompressor`` picking ``n`` frames.

    Args:
        method: ``"msc"`` (default, quests' own default) or ``"fps"``.
        k: neighbours per descriptor; default quests' ``DEFAULT_K`` (32).
        cutoff: cutoff radius of the descriptor's weight function, A; default quests'
            ``DEFAULT_CUTOFF`` (5.0).
        bandwidth: width of the Gaussian kernel in descriptor space; default quests'
            ``DEFAULT_BANDWIDTH`` (0.015).
        multicomponent: use ``get_descriptors_multicomponent`` with the pool's species
            (sorted symbols of all candidates) instead of the species-blind descriptor.
        threads: numba threads for quests' parallel loops (at most numba's
            ``NUMBA_NUM_THREADS``); restored afterwards.

    After ``select``: ``timings_`` wall seconds of ``descriptors`` (reading frames,
    quests' descriptors and per-frame entropies) and ``selection``; ``species_`` the
    species of a multicomponent descriptor (``None`` otherwise).
    """

    def __init__(
        self,
        *,
        method: str = "msc",
        k: int | None = None,
        cutoff: float | None = None,
        bandwidth: float | None = None,
        multicomponent: bool = False,
        threads: int = 1,
    ):
        if method not in _METHODS:
            raise PotstillError(f"method must be 'fps' or 'msc' (quests' methods), got {method!r}")
        if k is not None and k < 2:
            raise PotstillError(f"k must be >= 2 neighbours, got {k}")
        for name, value in (("cutoff", cutoff), ("bandwidth", bandwidth)):
            if value is not None and not value > 0:
                raise PotstillError(f"{name} must be > 0, got {value}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise PotstillError(f"threads must be a whole number >= 1, got {threads!r}")
        if _MISSING:
            raise PotstillError(_MISSING)
        self.method = method
        self.k = k
        self.cutoff = cutoff
        self.bandwidth = bandwidth
        self.multicomponent = multicomponent
        self.threads = threads

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        watch = Stopwatch()
        frames = list(frames_of(candidates))
        k = descriptor.DEFAULT_K if self.k is None else self.k
        cutoff = descriptor.DEFAULT_CUTOFF if self.cutoff is None else self.cutoff
        bandwidth = entropy.DEFAULT_BANDWIDTH if self.bandwidth is None else self.bandwidth
        if self.multicomponent:
            species = sorted({s for atoms in frames for s in atoms.get_chemical_symbols()})
            self.species_ = species

            def describe(atoms):
                return descriptor.get_descriptors_multicomponent(
                    [atoms], k=k, cutoff=cutoff, species=species
                )
        else:
            self.species_ = None

            def describe(atoms):
                return descriptor.get_descriptors([atoms], k=k, cutoff=cutoff)

        free = np.flatnonzero(~excluded)
        with _numba_threads(self.threads):
            compressor = compress.DatasetCompressor(
                [frames[i] for i in free], descriptor_fn=describe, bandwidth=bandwidth
            )
            method, options = self.method, {}
            if self.method == "msc" and excluded.any():
                method = "msc_conditional"
                options["reference"] = compressor.descriptors(
                    [frames[i] for i in np.flatnonzero(excluded)]
                )
            watch.lap("descriptors")
            if len(free) == 1:  # quests' msc cannot start from a single frame
                picked = [0]
            else:
                picked = compressor.get_indices(method, n, **options)
            watch.lap("selection")
        self.timings_ = watch.timings
        return free[np.asarray(picked, dtype=int)]


@contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    """Run quests' numba kernels on ``threads`` threads (capped at numba's pool), one
    caller at a time; quiet numba's compile-time type-safety warnings about quests' code
    and numpy's ``-log(0) = inf`` (an environment no picked one resembles: most novel)."""
    with _NUMBA_LOCK:
        previous = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with warnings.catch_warnings(), np.errstate(divide="ignore"):
                warnings.simplefilter("ignore", numba.NumbaTypeSafetyWarning)
                yield
        finally:
            numba.set_num_threads(previous)
