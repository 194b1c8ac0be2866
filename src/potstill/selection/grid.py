"""Order-parameter / enthalpy grid distillation, coarse to fine (seed 000, SI Note 4.2,
Table S3).

Each frame is a point ``(O, H)``: its FCC order parameter (``info["order_parameter"]``,
else computed with :func:`potstill.descriptors.order_parameter.order_parameter_of`) and its
enthalpy ``H = E + P V`` in eV (``info["enthalpy"]``, else the ``reference`` energy plus
``pressure_bar`` times the volume). ``H`` is put on ``O``'s scale by dividing it by
``enthalpy_scale`` (eV per unit of O; default the ratio of the pool's H and O ranges).

Levels run from the finest ``delta_O`` to the coarsest; each thins the frames kept by
the previous one with a neighbour list: frames are visited in a random order (from
``rng``) and a frame is kept unless an already-kept frame lies within ``delta_O`` of it in
both O and scaled H (a Chebyshev ball), in which case it is deleted. So at every level
``selected + deleted = total`` and the next level's total is this level's selected, as
in Table S3 (``levels_`` after ``select``). Already-selected ``exclude`` frames are kept
at every level (and delete their neighbours) but are not counted.

The ranking: frames kept at the coarsest level first, then those deleted at the
coarsest level, and so on down to those deleted at the finest (seed 000 trains on the
coarse selection first, then adds deleted data from sparse to fine grids); random order
within a group. ``select`` returns the first ``n`` of that ranking.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import units
from scipy.spatial import cKDTree

from potstill.descriptors.order_parameter import order_parameter_of
from potstill.errors import PotstillError
from potstill.frames import get_labels
from potstill.selection import prepare
from potstill.selection._features import per_frame

# seed 000 Table S3 (108-atom Ni, O from -5 to 108)
DELTA_O_LEVELS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 3.0)
ORDER_KEY = "order_parameter"
ENTHALPY_KEY = "enthalpy"


class GridSelector:
    """Coarse-to-fine neighbour-list thinning over (order parameter, enthalpy).

    Args:
        levels: ``delta_O`` spacings (any order; applied finest first).
        reference: labels whose energy gives H when ``info["enthalpy"]`` is missing.
        pressure_bar: pressure of ``H = E + P V`` when computed here.
        enthalpy_scale: eV of H per unit of O (default: pool H range / O range).

    Candidates may also be an ``(n_frames, 2)`` array of ``(O, H)``. After ``select``:
    ``levels_`` (one dict per level: ``delta_O``, ``total``, ``selected``, ``deleted``),
    ``points_`` (``(n_frames, 2)`` O and H) and ``enthalpy_scale_``.
    """

    def __init__(
        self,
        *,
        levels: Sequence[float] = DELTA_O_LEVELS,
        reference: str = "eam",
        pressure_bar: float = 1.0,
        enthalpy_scale: float | None = None,
    ):
        levels = sorted(float(level) for level in levels)
        if not levels or levels[0] <= 0:
            raise PotstillError(f"levels must be positive delta_O spacings, got {levels}")
        if enthalpy_scale is not None and not enthalpy_scale > 0:
            raise PotstillError(
                f"enthalpy_scale must be > 0 eV per unit of O, got {enthalpy_scale}"
            )
        self.levels = tuple(levels)
        self.reference = reference
        self.pressure_bar = float(pressure_bar)
        self.enthalpy_scale = enthalpy_scale

    def points(self, candidates: Sequence) -> np.ndarray:
        """``(n_frames, 2)``: order parameter (dimensionless) and enthalpy (eV)."""
        if isinstance(candidates, np.ndarray):
            if candidates.ndim != 2 or candidates.shape[1] != 2:
                raise PotstillError("grid candidates as an array must be (n_frames, 2): O and H")
            return candidates.astype(float)
        return per_frame(candidates, self._point, "order parameter and enthalpy").reshape(-1, 2)

    def select(
        self,
        candidates: Sequence,
        n: int,
        *,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> np.ndarray:
        excluded = prepare(candidates, n, exclude)
        self.points_ = self.points(candidates)
        self.enthalpy_scale_ = self.enthalpy_scale or _range_ratio(self.points_)
        scaled = self.points_ / np.array([1.0, self.enthalpy_scale_])
        order = rng.permutation(len(scaled))
        visit = np.concatenate([order[excluded[order]], order[~excluded[order]]])
        deleted_at = np.full(len(scaled), len(self.levels))  # level index, or survivor
        alive = visit  # frames of the current level, in visiting order
        self.levels_ = []
        for level, delta in enumerate(self.levels):
            kept = _thin(scaled[alive], delta, keep=excluded[alive])
            deleted = alive[~kept]
            deleted_at[deleted] = level
            total = int((~excluded[alive]).sum())
            self.levels_.append(
                {
                    "delta_O": delta,
                    "total": total,
                    "selected": total - len(deleted),
                    "deleted": len(deleted),
                }
            )
            alive = alive[kept]
        # coarse first: survivors, then deleted at the coarsest level ... finest
        position = np.empty(len(scaled), dtype=int)
        position[visit] = np.arange(len(visit))
        ranking = np.lexsort((position, -deleted_at))
        ranking = ranking[~excluded[ranking]]
        return ranking[:n].astype(int)

    def _point(self, atoms) -> tuple[float, float]:
        order = atoms.info.get(ORDER_KEY)
        if order is None:
            order = order_parameter_of(atoms)
        enthalpy = atoms.info.get(ENTHALPY_KEY)
        if enthalpy is None:
            energy = get_labels(atoms, self.reference).energy
            enthalpy = energy + self.pressure_bar * units.bar * atoms.get_volume()
        return float(order), float(enthalpy)


def _thin(points: np.ndarray, delta: float, *, keep: np.ndarray) -> np.ndarray:
    """Keep mask of the greedy neighbour-list thinning of ``points`` in the given order:
    a point is kept unless a kept point lies within ``delta`` (Chebyshev); points with
    ``keep`` set are always kept."""
    neighbors = cKDTree(points).query_ball_point(points, r=delta, p=np.inf)
    deleted = np.zeros(len(points), dtype=bool)
    kept = np.zeros(len(points), dtype=bool)
    for i in range(len(points)):
        if deleted[i] and not keep[i]:
            continue
        kept[i] = True
        deleted[neighbors[i]] = True
    return kept


def _range_ratio(points: np.ndarray) -> float:
    """H range / O range of the pool (1 when either is degenerate)."""
    spans = points.max(axis=0) - points.min(axis=0)
    return float(spans[1] / spans[0]) if spans[0] > 0 and spans[1] > 0 else 1.0
