"""Canonical (NPT) averages at any temperature from MOMT samples (histogram reweighting).

MOMT production samples ``(H, O, dH)`` come from the weight ``exp(-(H + dH) / kT0)``;
the isothermal-isobaric weight at temperature ``T`` is ``exp(-H / kT)``, so each sample
counts with ``w = exp(-H / kT + (H + dH) / kT0)`` (normalised in log space). From these:
the reweighted joint distribution P_T(H, O), the phase probabilities of solid
(``O > o_split``) and liquid (``O <= o_split``), the solid -> liquid free-energy
difference ``dG(T) = -kT ln(P_liquid / P_solid)``, and the melting temperature of the
potential, where ``dG`` changes sign.

Units: H, dH, dG in eV; T in K. Temperatures far from T0 rely on few samples: each
result carries the effective sample size ``(sum w)^2 / sum w^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units

from potstill.errors import PotstillError


def log_weights(enthalpy: np.ndarray, bias: np.ndarray, T0_K: float, T_K: float) -> np.ndarray:
    """Normalised log weights (n_samples,) of MOMT samples at temperature ``T_K``."""
    enthalpy = np.asarray(enthalpy, dtype=float)
    log_w = -enthalpy / (units.kB * T_K) + (enthalpy + np.asarray(bias, dtype=float)) / (
        units.kB * T0_K
    )
    return log_w - _logsumexp(log_w)


@dataclass(frozen=True)
class PhaseBalance:
    """Solid/liquid balance at each temperature of ``temperatures_K`` (K, (n_T,)).

    ``dG_eV``: G_liquid - G_solid (eV per system, (n_T,)); ``p_solid``: probability of
    the solid; ``effective_samples``: Kish effective sample size per temperature;
    ``melting_K``: where dG = 0 (linear interpolation), or None if it does not cross.
    """

    temperatures_K: np.ndarray
    dG_eV: np.ndarray
    p_solid: np.ndarray
    effective_samples: np.ndarray
    melting_K: float | None


def phase_balance(
    enthalpy: np.ndarray,
    order: np.ndarray,
    bias: np.ndarray,
    *,
    T0_K: float,
    temperatures_K: np.ndarray,
    o_split: float,
) -> PhaseBalance:
    """Solid/liquid free-energy difference vs temperature from MOMT samples.

    ``enthalpy``, ``order``, ``bias``: (n_samples,) H (eV), O and dH (eV) of production
    samples; ``o_split``: O separating liquid (<=) from solid (>).
    """
    order = np.asarray(order, dtype=float)
    solid = order > o_split
    if solid.all() or not solid.any():
        phase = "solid" if solid.all() else "liquid"
        raise PotstillError(
            f"all MOMT samples are {phase} (O split at {o_split:.1f}); the walker never crossed, "
            "so no free-energy difference can be estimated: run Wang-Landau longer or widen the grid"
        )
    temps = np.asarray(temperatures_K, dtype=float)
    dG, p_solid, n_eff = [], [], []
    for T in temps:
        log_w = log_weights(enthalpy, bias, T0_K, T)
        log_s = _logsumexp(log_w[solid])
        log_l = _logsumexp(log_w[~solid])
        dG.append(-units.kB * T * (log_l - log_s))
        p_solid.append(float(np.exp(log_s)))
        n_eff.append(float(np.exp(-_logsumexp(2 * log_w))))
    dG = np.array(dG)
    melting = None
    crossing = np.nonzero(np.diff(np.sign(dG)) != 0)[0]
    if crossing.size:
        k = crossing[0]
        melting = float(temps[k] - dG[k] * (temps[k + 1] - temps[k]) / (dG[k + 1] - dG[k]))
    return PhaseBalance(temps, dG, np.array(p_solid), np.array(n_eff), melting)


def reweighted_histogram(
    enthalpy: np.ndarray,
    order: np.ndarray,
    bias: np.ndarray,
    *,
    T0_K: float,
    T_K: float,
    h_edges: np.ndarray,
    o_edges: np.ndarray,
) -> np.ndarray:
    """P_T(H, O) on the given bin edges, (len(h_edges) - 1, len(o_edges) - 1), sums to 1."""
    weights = np.exp(log_weights(enthalpy, bias, T0_K, T_K))
    hist, _, _ = np.histogram2d(enthalpy, order, bins=(h_edges, o_edges), weights=weights)
    total = hist.sum()
    return hist / total if total > 0 else hist


def _logsumexp(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))
