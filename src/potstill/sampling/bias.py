"""The MOMT bias dH(H, O) on a 2D grid, built by Wang-Landau updates (seed 000 SI Note 1).

The grid holds bias values (eV) at the centres of ``n_h x n_o`` bins spanning
``h_range`` (eV, potential enthalpy H = E + P V) and ``o_range`` (the dimensionless FCC
order parameter). Between centres the bias is a Catmull-Rom bicubic interpolant, so it
and its first derivatives are continuous (MD forces are continuous); outside the grid
its slope bends smoothly (C1) to zero within one bin, so a walker leaving the grid is
plain NPT at T0 there and drifts back rather than running away.

Wang-Landau: each update adds ``kT0 ln f`` to the visited bin (spread to neighbours
with a Gaussian kernel of one bin so the bias stays smooth) and counts the visit. When
the visits of the current stage are flat (every bin visited this stage has at least
``flatness`` times the mean count, which is at least 20) or the stage is over ``max_stage_updates``
updates, ``ln f`` is halved and the counts reset. Updates stop (the bias is frozen)
once ``ln f`` drops below ``ln_f_final``.

With the bias, configurations are sampled with weight ``exp(-(H + dH(H, O)) / kT0)``;
a flat histogram in (H, O) means ``dH = kT0 ln g(H, O) - H + const``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from potstill.errors import PotstillError
from potstill.settings import Section

# Gaussian kernel (sigma = 1 bin, truncated at 2 bins) for the Wang-Landau deposit;
# its centre weight is 1, so the visited bin gets exactly kT0 ln f.
_OFFSETS = np.arange(-2, 3)
_KERNEL = np.exp(-0.5 * (_OFFSETS[:, None] ** 2 + _OFFSETS[None, :] ** 2))


class WangLandau(Section):
    """Wang-Landau schedule: start ``ln_f0``, halve when flat (the visits of every
    visited bin above ``flatness`` of their mean, at least ``min_mean_visits`` on average,
    checked every ``update_interval`` steps, or after ``max_stage_updates`` updates),
    stop below ``ln_f_final``; at most ``max_steps`` MD steps in all."""

    ln_f0: float = Field(1.0, gt=0)
    ln_f_final: float = Field(0.01, gt=0)
    flatness: float = Field(0.5, gt=0, lt=1)
    max_stage_updates: int = Field(20_000, ge=1)
    update_interval: int = Field(10, ge=1)
    min_mean_visits: float = Field(20.0, ge=0)
    max_steps: int = Field(2_000_000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> WangLandau:
        if not self.ln_f_final <= self.ln_f0:
            raise ValueError(
                f"Wang-Landau needs 0 < ln_f_final <= ln_f0, got {self.ln_f_final} and {self.ln_f0}"
            )
        return self


@dataclass
class BiasGrid:
    """Bias values (eV) on an (H, O) grid with the Wang-Landau state.

    ``values``: (n_h, n_o) eV at bin centres. ``histogram``: visits in the current stage.
    ``visits``: visits since the start. ``ln_f``: current modification factor;
    ``stage``: number of completed stages; ``frozen``: no more updates.
    """

    h_range: tuple[float, float]
    o_range: tuple[float, float]
    values: np.ndarray
    histogram: np.ndarray = field(default=None)  # type: ignore[assignment]
    visits: np.ndarray = field(default=None)  # type: ignore[assignment]
    ln_f: float = 1.0
    stage: int = 0
    stage_updates: int = 0
    frozen: bool = False

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        if self.values.ndim != 2 or min(self.values.shape) < 2:
            raise PotstillError(f"the bias grid needs at least 2 x 2 bins, got {self.values.shape}")
        for name, (lo, hi) in (("h_range", self.h_range), ("o_range", self.o_range)):
            if not hi > lo:
                raise PotstillError(f"{name} must be (low, high) with high > low, got {(lo, hi)}")
        self.h_range = (float(self.h_range[0]), float(self.h_range[1]))
        self.o_range = (float(self.o_range[0]), float(self.o_range[1]))
        if self.histogram is None:
            self.histogram = np.zeros(self.values.shape, dtype=np.int64)
        if self.visits is None:
            self.visits = np.zeros(self.values.shape, dtype=np.int64)
        self._pad()

    @classmethod
    def empty(
        cls, h_range, o_range, n_h: int = 60, n_o: int = 100, *, ln_f: float = 1.0
    ) -> "BiasGrid":
        """A zero bias (plain NPT at T0) on ``n_h x n_o`` bins."""
        return cls(h_range, o_range, np.zeros((int(n_h), int(n_o))), ln_f=ln_f)

    # -- geometry -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    @property
    def widths(self) -> tuple[float, float]:
        """Bin widths (eV, 1)."""
        n_h, n_o = self.shape
        return (
            (self.h_range[1] - self.h_range[0]) / n_h,
            (self.o_range[1] - self.o_range[0]) / n_o,
        )

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin centres in H (eV, (n_h,)) and O ((n_o,))."""
        (n_h, n_o), (wh, wo) = self.shape, self.widths
        return (
            self.h_range[0] + (np.arange(n_h) + 0.5) * wh,
            self.o_range[0] + (np.arange(n_o) + 0.5) * wo,
        )

    def bin_of(self, h: float, o: float) -> tuple[int, int] | None:
        """Indices of the bin holding (h, o), or None outside the grid."""
        wh, wo = self.widths
        i = int(np.floor((h - self.h_range[0]) / wh))
        j = int(np.floor((o - self.o_range[0]) / wo))
        if 0 <= i < self.shape[0] and 0 <= j < self.shape[1]:
            return i, j
        return None

    # -- evaluation -----------------------------------------------------------------
    def _pad(self) -> None:
        """Values with one ghost node on each side (linear extrapolation), for the stencil."""
        v = self.values
        v = np.vstack([2 * v[:1] - v[1:2], v, 2 * v[-1:] - v[-2:-1]])
        self._padded = np.hstack([2 * v[:, :1] - v[:, 1:2], v, 2 * v[:, -1:] - v[:, -2:-1]])

    def evaluate(self, h: float, o: float) -> tuple[float, float, float]:
        """dH and its derivatives at (h eV, o): ``(value eV, d/dH (1), d/dO eV)``."""
        (n_h, n_o), (wh, wo) = self.shape, self.widths
        uh, a = _clamped((h - self.h_range[0]) / wh - 0.5, n_h - 1)
        uo, b = _clamped((o - self.o_range[0]) / wo - 0.5, n_o - 1)
        i, th = _cell(uh, n_h)
        j, to = _cell(uo, n_o)
        # rows (weights, t-derivatives) in each direction; m = [[F, F_o], [F_h, F_ho]] in
        # grid units
        m = _catmull_rom(th) @ self._padded[i : i + 4, j : j + 4] @ _catmull_rom(to).T
        value, d_h, d_o = m[0, 0], m[1, 0] / wh, m[0, 1] / wo
        if a == 0.0 and b == 0.0:
            return float(value), float(d_h), float(d_o)
        # outside: f = F + F_h A + F_o B + F_ho A B with A = w r(a), B = w r(b); the ramp
        # r bends the edge slope smoothly to zero within one bin (canonical at T0 beyond)
        d_ho = m[1, 1] / (wh * wo)
        (ra, dra), (rb, drb) = _ramp(a), _ramp(b)
        big_a, big_b = wh * ra, wo * rb
        return (
            float(value + d_h * big_a + d_o * big_b + d_ho * big_a * big_b),
            float((d_h + d_ho * big_b) * dra),
            float((d_o + d_ho * big_a) * drb),
        )

    # -- Wang-Landau ----------------------------------------------------------------
    def deposit(self, h: float, o: float, kT: float) -> bool:
        """Add ``kT ln f`` at the bin of (h, o) (Gaussian-spread) and count the visit.

        Returns False (nothing done) when frozen or outside the grid.
        """
        if self.frozen:
            return False
        index = self.bin_of(h, o)
        if index is None:
            return False
        i, j = index
        n_h, n_o = self.shape
        rows = i + _OFFSETS
        cols = j + _OFFSETS
        keep_r = (rows >= 0) & (rows < n_h)
        keep_c = (cols >= 0) & (cols < n_o)
        self.values[np.ix_(rows[keep_r], cols[keep_c])] += (
            kT * self.ln_f * _KERNEL[np.ix_(keep_r, keep_c)]
        )
        self._pad()
        self.histogram[i, j] += 1
        self.visits[i, j] += 1
        self.stage_updates += 1
        return True

    def is_flat(self, flatness: float, min_mean_visits: float = 20.0) -> bool:
        """Every bin visited this stage has at least ``flatness`` x the mean visits, and
        the mean is at least ``min_mean_visits`` (a few visits are not a histogram)."""
        counts = self.histogram[self.histogram > 0]
        return (
            counts.size > 1
            and counts.mean() >= min_mean_visits
            and counts.min() >= flatness * counts.mean()
        )

    def advance(self, schedule: WangLandau) -> bool:
        """End the stage if flat (or too long): halve ln f, reset counts; freeze below
        ``ln_f_final``. Returns True when a stage ended."""
        if self.frozen:
            return False
        flat = self.is_flat(schedule.flatness, schedule.min_mean_visits)
        if not (flat or self.stage_updates >= schedule.max_stage_updates):
            return False
        self.ln_f *= 0.5
        self.stage += 1
        self.stage_updates = 0
        self.histogram[:] = 0
        if self.ln_f < schedule.ln_f_final:
            self.frozen = True
        return True

    def limit_slopes(self, min_force_scale: float, *, safety: float = 2.0) -> int:
        """Raise values so that no H step between neighbouring nodes falls faster than
        ``(1 - min_force_scale) / safety`` per eV; returns the number of nodes raised.

        Applied once to the frozen bias before production: rough Wang-Landau bins can
        make ``1 + d(dH)/dH`` drop below the force floor of the MD, where the dynamics
        would no longer follow H_momt and reweighting would be biased. Any frozen bias
        samples correctly, so flattening such cliffs only costs some sampling there.
        (``safety`` covers the cubic's overshoot of the secant slope between nodes.)
        """
        drop = (1.0 - min_force_scale) / safety * self.widths[0]
        raised = 0
        for i in range(1, self.shape[0]):
            floor = self.values[i - 1] - drop
            low = self.values[i] < floor
            raised += int(low.sum())
            self.values[i, low] = floor[low]
        self._pad()
        return raised

    # -- persistence ---------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "bias_h_range": np.array(self.h_range),
            "bias_o_range": np.array(self.o_range),
            "bias_values": self.values,
            "bias_histogram": self.histogram,
            "bias_visits": self.visits,
            "bias_state": np.array([self.ln_f, self.stage, self.stage_updates, float(self.frozen)]),
        }

    @classmethod
    def from_arrays(cls, data) -> "BiasGrid":
        ln_f, stage, stage_updates, frozen = (float(x) for x in data["bias_state"])
        return cls(
            tuple(data["bias_h_range"]),
            tuple(data["bias_o_range"]),
            np.array(data["bias_values"]),
            histogram=np.array(data["bias_histogram"]),
            visits=np.array(data["bias_visits"]),
            ln_f=ln_f,
            stage=int(stage),
            stage_updates=int(stage_updates),
            frozen=bool(frozen),
        )

    def save(self, path: str | Path) -> None:
        """Write the grid to ``path`` (.npz), atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **self.to_arrays())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "BiasGrid":
        try:
            with np.load(path) as data:
                return cls.from_arrays(data)
        except (OSError, KeyError, ValueError) as error:
            raise PotstillError(
                f"cannot read the MOMT bias {path}: {error}; delete it to start anew"
            ) from error


def _clamped(u: float, top: int) -> tuple[float, float]:
    """``u`` clamped to [0, top] and the (signed, in bins) distance it was moved."""
    if u < 0.0:
        return 0.0, u
    if u > top:
        return float(top), u - top
    return u, 0.0


def _ramp(a: float) -> tuple[float, float]:
    """Smooth saturation of a distance ``a`` (bins) beyond the grid edge and its slope:
    ``a - a|a|/2`` within one bin, ``+-1/2`` beyond (C1 at 0 and at +-1)."""
    if abs(a) >= 1.0:
        return 0.5 * np.sign(a), 0.0
    return a - 0.5 * a * abs(a), 1.0 - abs(a)


def _cell(u: float, n: int) -> tuple[int, float]:
    """Interval index (0..n-2) and fraction of node coordinate ``u`` in [0, n-1]."""
    i = min(int(u), n - 2)
    return i, u - i


def _catmull_rom(t: float) -> np.ndarray:
    """Catmull-Rom weights of nodes (-1, 0, 1, 2) at fraction ``t`` (row 0) and their
    t-derivatives (row 1), (2, 4)."""
    t2, t3 = t * t, t * t * t
    return np.array(
        [
            [
                0.5 * (-t3 + 2 * t2 - t),
                0.5 * (3 * t3 - 5 * t2 + 2),
                0.5 * (-3 * t3 + 4 * t2 + t),
                0.5 * (t3 - t2),
            ],
            [
                0.5 * (-3 * t2 + 4 * t - 1),
                0.5 * (9 * t2 - 10 * t),
                0.5 * (-9 * t2 + 8 * t + 1),
                0.5 * (3 * t2 - 2 * t),
            ],
        ]
    )
