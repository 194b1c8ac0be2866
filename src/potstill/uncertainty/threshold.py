"""``mu + k sigma``: the one threshold of uncertainty selection (seeds 000, 001, 004).

``mu`` and ``sigma`` are the mean and (population) standard deviation of a reference set
of uncertainties: frame scores given as an array (two-pass), or atomic uncertainties
accumulated over many frames as :class:`UQStats` (count, sum, sum of squares), so the
reference of a distillation can grow chunk by chunk without keeping every atom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from potstill.errors import PotstillError

__all__ = ["Threshold", "UQStats", "mu_k_sigma"]


@dataclass(frozen=True)
class UQStats:
    """Sufficient statistics of uncertainties (eV): count, sum, sum of squares."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def of(cls, values: Sequence[np.ndarray] | np.ndarray) -> UQStats:
        """Statistics of ``values``: one array, or a list of per-frame arrays."""
        if isinstance(values, np.ndarray):
            flat = values.ravel()
        else:
            flat = np.concatenate([np.ravel(v) for v in values]) if len(values) else np.zeros(0)
        return cls(int(flat.size), float(flat.sum()), float((flat**2).sum()))

    def __add__(self, other: UQStats) -> UQStats:
        return UQStats(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mu(self) -> float:
        return self.total / self.n

    @property
    def sigma(self) -> float:
        return float(np.sqrt(max(self.total_sq / self.n - self.mu**2, 0.0)))


@dataclass(frozen=True)
class Threshold:
    """``value = mu + k sigma`` and its parts (in the unit of the uncertainties)."""

    value: float
    mu: float
    sigma: float
    k: float

    def as_dict(self) -> dict[str, float]:
        return {"threshold": self.value, "mu": self.mu, "sigma": self.sigma, "k": self.k}


def mu_k_sigma(reference: UQStats | Sequence[float] | np.ndarray, k: float) -> Threshold:
    """``mu + k sigma`` of ``reference``: accumulated :class:`UQStats`, or the values
    themselves (at least two, all finite)."""
    if not np.isfinite(k):
        raise PotstillError(f"k must be a finite number of standard deviations, got {k}")
    if isinstance(reference, UQStats):
        if reference.n == 0:
            raise PotstillError("no atoms in the reference set of the uncertainty threshold")
        mu, sigma = reference.mu, reference.sigma
    else:
        values = np.asarray(reference, dtype=float).ravel()
        if len(values) < 2 or not np.isfinite(values).all():
            raise PotstillError(
                "the reference window needs at least 2 finite scores to give mu and sigma"
            )
        mu, sigma = float(np.mean(values)), float(np.std(values))
    return Threshold(value=mu + k * sigma, mu=mu, sigma=sigma, k=float(k))
