"""Mahalanobis distance of descriptors to a streamed distribution (seed 003, SI S10).

The uncertainty of a local environment with descriptor ``v`` against the environments
``x_1..x_M`` already seen is ``(v - mean)^T Sigma^-1 (v - mean)`` (seed 003 eq. in 4.2),
``Sigma`` the sample covariance (``1/(M-1)``). :class:`StreamingGaussian` keeps ``mean``,
``Sigma`` and ``Sigma^-1`` up to date one descriptor at a time at a cost independent of
``M`` (O(d^2) per descriptor of length ``d``):

- Welford's rank-one update of the mean and of the scatter matrix
  ``S = sum_k (x_k - mean)(x_k - mean)^T``: with ``delta = x - mean_M``,
  ``mean_{M+1} = mean_M + delta / (M+1)``, ``S_{M+1} = S_M + (M / (M+1)) delta delta^T``
  (the same numbers as SI S10's sums ``A = sum x x^T``, ``b = sum x``, without their
  cancellation);
- the Sherman-Morrison update of ``(S + ridge I)^-1`` for that rank-one change.

``ridge`` (a pseudo-scatter added to ``S``, in descriptor units squared) keeps the
inverse defined while ``M <= d`` or when descriptors span fewer than ``d`` directions;
with ``ridge=0`` the inverse is formed directly the first time ``S`` is full rank
(``M > d``) and updated by Sherman-Morrison from then on. ``precision`` is
``(M - 1) (S + ridge I)^-1``, i.e. ``Sigma^-1`` when ``ridge`` is 0.

:class:`MahalanobisUncertainty` is the per-atom uncertainty of frames: the squared
Mahalanobis distance of each atom's descriptor (AEV by default, standardised with the
training atoms' mean and spread) to the training atoms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from ase import Atoms

from potstill.descriptors import resolve_descriptor
from potstill.descriptors.features import AtomFeatures, per_atom_features
from potstill.errors import PotstillError

__all__ = ["MahalanobisUncertainty", "StreamingGaussian"]


class StreamingGaussian:
    """Running mean, covariance and inverse covariance of ``dim``-vectors.

    Args:
        dim: descriptor length ``d``.
        ridge: pseudo-scatter ``lambda >= 0`` added to the scatter matrix (see the module
            docstring).
    """

    def __init__(self, dim: int, *, ridge: float = 0.0):
        if dim < 1:
            raise PotstillError(f"dim must be >= 1, got {dim}")
        if not ridge >= 0:
            raise PotstillError(f"ridge must be >= 0, got {ridge}")
        self.dim = int(dim)
        self.ridge = float(ridge)
        self.count = 0
        self.mean = np.zeros(self.dim)
        self.scatter = np.zeros((self.dim, self.dim))
        # (S + ridge I)^-1 once defined, else None
        self._inverse: np.ndarray | None = np.eye(self.dim) / ridge if ridge > 0 else None

    @property
    def covariance(self) -> np.ndarray:
        """Sample covariance ``S / (M - 1)`` (needs M >= 2)."""
        self._need(2)
        return self.scatter / (self.count - 1)

    @property
    def precision(self) -> np.ndarray:
        """``(M - 1) (S + ridge I)^-1``: the inverse covariance when ``ridge`` is 0."""
        self._need(2)
        if self._inverse is None:
            raise PotstillError(
                f"the covariance of {self.count} descriptors of length {self.dim} is "
                "singular; add more descriptors or use ridge > 0"
            )
        return (self.count - 1) * self._inverse

    @property
    def ready(self) -> bool:
        """Whether :meth:`distances` can be evaluated."""
        return self.count >= 2 and self._inverse is not None

    def update(self, x: np.ndarray) -> None:
        """Add one descriptor ``(d,)``: O(d^2), independent of the count."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise PotstillError(f"descriptor has shape {x.shape}, expected ({self.dim},)")
        delta = x - self.mean
        self.count += 1
        self.mean += delta / self.count
        weight = (self.count - 1) / self.count
        self.scatter += weight * np.outer(delta, delta)
        if self._inverse is not None:
            # Sherman-Morrison: (B + w u u^T)^-1 = B^-1 - w B^-1 u u^T B^-1 / (1 + w u^T B^-1 u)
            solved = self._inverse @ delta
            self._inverse -= (weight / (1.0 + weight * delta @ solved)) * np.outer(solved, solved)
        elif self.count > self.dim:
            self._try_invert()

    def update_many(self, xs: np.ndarray) -> None:
        """Add descriptors ``(m, d)``: rank-one updates when ``m <= d``, else one batch
        merge (Chan et al.'s pairwise update of mean and scatter) and a fresh inverse,
        O(m d^2 + d^3) instead of O(m d^2) with a larger constant."""
        xs = np.asarray(xs, dtype=np.float64).reshape(-1, self.dim)
        if len(xs) <= self.dim:
            for x in xs:
                self.update(x)
            return
        count = self.count + len(xs)
        batch_mean = xs.mean(axis=0)
        centred = xs - batch_mean
        delta = batch_mean - self.mean
        merge = (self.count * len(xs) / count) * np.outer(delta, delta)
        self.scatter += centred.T @ centred + merge
        self.mean += delta * (len(xs) / count)
        self.count = count
        if self.ridge > 0:
            self._inverse = np.linalg.inv(self.scatter + self.ridge * np.eye(self.dim))
        else:
            self._inverse = None
            self._try_invert()

    def distances(self, vs: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """Squared Mahalanobis distances ``(m,)`` of descriptors ``vs (m, d)``.

        Evaluated as ``|(v - mean) L|^2`` with ``L L^T = precision`` (Cholesky), in the
        dtype of ``vs`` (float32 descriptors are scored in float32), ``chunk`` rows at a
        time to bound the memory.
        """
        precision = self.precision
        vs = np.asarray(vs)
        dtype = vs.dtype if vs.dtype in (np.float32, np.float64) else np.float64
        factor = _cholesky(precision).astype(dtype)
        mean = self.mean.astype(dtype)
        out = np.empty(len(vs), dtype=np.float64)
        for start in range(0, len(vs), chunk):
            whitened = (vs[start : start + chunk] - mean) @ factor
            out[start : start + chunk] = np.einsum("ij,ij->i", whitened, whitened)
        return out

    def _need(self, count: int) -> None:
        if self.count < count:
            raise PotstillError(
                f"need at least {count} descriptors for the covariance, have {self.count}"
            )

    def _try_invert(self) -> None:
        if np.linalg.matrix_rank(self.scatter) == self.dim:
            self._inverse = np.linalg.inv(self.scatter)


def _cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower factor of a symmetric positive definite matrix (symmetrised first)."""
    symmetric = 0.5 * (matrix + matrix.T)
    try:
        return np.linalg.cholesky(symmetric)
    except np.linalg.LinAlgError:  # rounding made it indefinite: clip the spectrum
        values, vectors = np.linalg.eigh(symmetric)
        return vectors * np.sqrt(np.clip(values, 0.0, None))


class MahalanobisUncertainty:
    """Per-atom squared Mahalanobis distance to the atoms of the training frames.

    Args:
        descriptor: per-atom descriptor (object, registry name or options); default the
            AEV with parameters ``aev``.
        aev: AEV parameters or preset name of the default descriptor.
        ridge: pseudo-scatter added to the scatter matrix (standardised units).
        standardize: scale each feature by the training atoms' mean and spread (floored
            as :meth:`AtomFeatures.standardization`).

    :meth:`fit` sets the statistics from training frames, :meth:`update` streams more
    atoms in (O(d^2) each), :meth:`per_atom` scores frames and :meth:`with_gradient`
    scores one frame with the gradient of its (weighted) total with respect to the
    positions (descriptors with a ``with_gradient``: the AEV, SOAP). Learned state: ``mean_``,
    ``scale_`` ``(d,)`` and ``gaussian_``.
    """

    name = "mahalanobis"

    def __init__(
        self,
        *,
        descriptor: Any = None,
        aev: Any = None,
        ridge: float = 1e-2,
        standardize: bool = True,
    ):
        if not ridge > 0:
            raise PotstillError(f"ridge must be > 0, got {ridge}")
        self.descriptor = resolve_descriptor(descriptor, aev)
        self.ridge = float(ridge)
        self.standardize = standardize
        self.gaussian_: StreamingGaussian | None = None

    def fit(self, frames: Iterable[Atoms]) -> MahalanobisUncertainty:
        """Statistics of the atoms of ``frames`` (the training data)."""
        features = per_atom_features(frames, self.descriptor)
        width = features.values.shape[1]
        if self.standardize:
            self.mean_, self.scale_ = features.standardization()
        else:
            self.mean_, self.scale_ = np.zeros(width), np.ones(width)
        self.gaussian_ = StreamingGaussian(width, ridge=self.ridge)
        self.gaussian_.update_many(self._scaled(features))
        return self

    def update(self, frames: Iterable[Atoms]) -> None:
        """Add the atoms of more training frames (standardisation kept)."""
        self.gaussian_.update_many(
            self._scaled(per_atom_features(frames, self._fitted().descriptor))
        )

    def per_atom(self, frames: Iterable[Atoms]) -> list[np.ndarray]:
        features = per_atom_features(frames, self._fitted().descriptor)
        distances = self.gaussian_.distances(self._scaled(features))
        return np.split(distances, features.offsets[1:-1])

    def with_gradient(
        self, atoms: Atoms, weights: np.ndarray | Callable | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-atom scores ``(n_atoms,)`` of one frame and the gradient ``(n_atoms, 3)``
        (1/A) of ``sum_i weights_i score_i`` (default weights 1: the total uncertainty)
        with respect to the positions, the cell held fixed. ``weights`` may be a
        function of the scores (the chain rule of an objective ``sum_i f(score_i)``:
        ``weights = f'``).

        ``score_i = u_i^T P u_i`` with ``u_i`` the standardised descriptor minus the
        mean and ``P`` the precision, so ``d score_i / d v_i = 2 P u_i / scale``; the
        descriptor's VJP carries that to the positions.
        """
        descriptor = self._fitted().descriptor
        if not callable(getattr(descriptor, "with_gradient", None)):
            raise PotstillError(
                f"{type(descriptor).__name__} has no position derivatives; use the aev or "
                "soap descriptor for a differentiable uncertainty"
            )
        values, vjp = descriptor.with_gradient(atoms)
        gaussian = self.gaussian_
        centred = (values - self.mean_) / self.scale_ - gaussian.mean
        precision = gaussian.precision
        projected = centred @ precision  # (n, d); P is symmetric
        scores = np.einsum("ij,ij->i", projected, centred)
        if callable(weights):
            weights = weights(scores)
        weights = np.ones(len(atoms)) if weights is None else np.asarray(weights, dtype=float)
        by_values = 2.0 * weights[:, None] * projected / self.scale_
        return scores, vjp(by_values)

    def save(self, path) -> None:
        """The learned state (standardisation and streamed statistics) as ``.npz``."""
        g = self._fitted().gaussian_
        inverse = g._inverse if g._inverse is not None else np.zeros((0, 0))
        np.savez(
            path,
            mean_=self.mean_,
            scale_=self.scale_,
            count=g.count,
            g_mean=g.mean,
            scatter=g.scatter,
            inverse=inverse,
            ridge=g.ridge,
        )

    def load(self, path) -> MahalanobisUncertainty:
        """Restore what :meth:`save` wrote (the descriptor is this object's)."""
        data = np.load(path)
        self.mean_, self.scale_ = data["mean_"], data["scale_"]
        g = StreamingGaussian(len(data["g_mean"]), ridge=float(data["ridge"]))
        g.count, g.mean, g.scatter = int(data["count"]), data["g_mean"], data["scatter"]
        g._inverse = data["inverse"] if data["inverse"].size else None
        self.gaussian_ = g
        return self

    def _scaled(self, features: AtomFeatures) -> np.ndarray:
        values = features.values
        values -= self.mean_.astype(np.float32)
        values /= self.scale_.astype(np.float32)
        return values

    def _fitted(self) -> MahalanobisUncertainty:
        if self.gaussian_ is None:
            raise PotstillError(
                "fit the Mahalanobis uncertainty on training frames first (fit(frames))"
            )
        return self
