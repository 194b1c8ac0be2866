"""Error metrics of a model against a reference's labels on a pool of frames.

Contract
--------
- :func:`error_metrics` reduces paired arrays (any shape, flattened) to MAE, RMSE, L4
  (``(mean |e|^4)^(1/4)``, the outlier-sensitive norm of seed 002) and max |e|, in the
  unit of the inputs.
- :func:`pool_pairs` lines up reference labels (``<reference>_energy`` etc., see
  :mod:`potstill.frames`) with model predictions, frame by frame, in report units:
  energy per atom (eV/atom), force components (eV/A), stress components (eV/A^3 and GPa).
- :func:`pool_errors` turns those pairs into metrics, one entry per quantity and unit.

Stress is compared on the frames whose reference labels include stress; when no frame
has a stress label, stress is left out. Missing labels or an empty pool raise
:class:`potstill.errors.PotstillError`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.units import GPa

from potstill.errors import PotstillError
from potstill.frames import get_labels, has_labels

METRICS = ("mae", "rmse", "l4", "max")


def error_metrics(pred, ref) -> dict[str, float]:
    """MAE, RMSE, L4 and max absolute error of ``pred - ref``.

    ``pred`` and ``ref`` are array-likes of the same shape (flattened; any unit).
    Returns ``{"mae", "rmse", "l4", "max", "n"}``: floats in the unit of the inputs, and
    ``n`` the number of compared values.
    """
    pred = np.asarray(pred, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if pred.shape != ref.shape:
        raise PotstillError(
            f"predictions have shape {pred.shape} but references have shape {ref.shape}; "
            "they must match value for value"
        )
    if pred.size == 0:
        raise PotstillError("no values to compare: predictions and references are empty")
    err = np.abs(pred - ref).ravel()
    return {
        "mae": float(np.mean(err)),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "l4": float(np.mean(err**4) ** 0.25),
        "max": float(np.max(err)),
        "n": int(err.size),
    }


def pool_pairs(
    frames: Sequence[Atoms], predictions: Sequence[Mapping], reference: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and predicted values of a pool, paired, in report units.

    ``frames``: labeled ``ase.Atoms`` carrying ``reference`` energy and forces labels.
    ``predictions``: one mapping per frame with ``energy`` (float, eV), ``forces``
    ((n_atoms, 3), eV/A) and, when the frames carry stress labels, ``stress`` ((6,)
    Voigt or (3, 3), eV/A^3, ASE sign).

    Returns ``{name: (reference_values, predicted_values)}`` with flat float arrays for
    ``energy_eV_per_atom`` (n_frames,), ``forces_eV_per_A`` (3 * total atoms,) and, when
    any frame has a stress label, ``stress_eV_per_A3`` and ``stress_GPa``
    (6 * frames with stress,).
    """
    frames = list(frames)
    predictions = list(predictions)
    if not frames:
        raise PotstillError("the pool is empty: there are no frames to validate on")
    if len(predictions) != len(frames):
        raise PotstillError(
            f"got {len(predictions)} predictions for {len(frames)} frames; "
            "give one prediction per frame"
        )
    energy_ref, energy_pred, force_ref, force_pred, stress_ref, stress_pred = (
        [],
        [],
        [],
        [],
        [],
        [],
    )
    for i, (atoms, pred) in enumerate(zip(frames, predictions)):
        labels = get_labels(atoms, reference, require=("energy", "forces"))
        n = len(atoms)
        energy_ref.append(labels.energy / n)
        energy_pred.append(float(_prediction(pred, "energy", i, ())) / n)
        force_ref.append(labels.forces.ravel())
        force_pred.append(_prediction(pred, "forces", i, (n, 3)).ravel())
        if has_labels(atoms, reference, require=("stress",)):
            stress_ref.append(labels.stress)
            stress_pred.append(_voigt(_prediction(pred, "stress", i, None), i))
    pairs = {
        "energy_eV_per_atom": (np.array(energy_ref), np.array(energy_pred)),
        "forces_eV_per_A": (np.concatenate(force_ref), np.concatenate(force_pred)),
    }
    if stress_ref:
        ref_s, pred_s = np.concatenate(stress_ref), np.concatenate(stress_pred)
        pairs["stress_eV_per_A3"] = (ref_s, pred_s)
        pairs["stress_GPa"] = (ref_s / GPa, pred_s / GPa)
    return pairs


def pool_errors(frames: Sequence[Atoms], predictions: Sequence[Mapping], reference: str) -> dict:
    """Energy, force and stress errors of ``predictions`` against ``reference`` labels.

    Arguments as in :func:`pool_pairs`. Returns::

        {"n_frames": int, "n_atoms": int, "n_stress_frames": int,
         "energy_eV_per_atom":  {"mae", "rmse", "l4", "max", "n"},
         "energy_meV_per_atom": {...},          # same errors in meV/atom
         "forces_eV_per_A":     {...},          # per Cartesian component
         "stress_eV_per_A3":    {...},          # per Voigt component; only with stress
         "stress_GPa":          {...}}
    """
    return pair_errors(pool_pairs(frames, predictions, reference))


def pair_errors(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The errors of :func:`pool_errors` from already paired values (:func:`pool_pairs`),
    for callers that also plot the pairs."""
    result: dict = {
        "n_frames": len(pairs["energy_eV_per_atom"][0]),
        "n_atoms": len(pairs["forces_eV_per_A"][0]) // 3,
        "n_stress_frames": len(pairs.get("stress_GPa", ((),))[0]) // 6,
    }
    for name, (ref, pred) in pairs.items():
        result[name] = error_metrics(pred, ref)
    result["energy_meV_per_atom"] = {
        k: (v * 1000.0 if k in METRICS else v) for k, v in result["energy_eV_per_atom"].items()
    }
    return result


def _prediction(pred: Mapping, key: str, index: int, shape: tuple | None) -> np.ndarray:
    if key not in pred or pred[key] is None:
        raise PotstillError(
            f"prediction {index} has no {key!r}; the model must return energy, forces "
            "and (for frames with stress labels) stress"
        )
    value = np.asarray(pred[key], dtype=float)
    if shape is not None and value.shape != shape:
        raise PotstillError(f"prediction {index} {key!r} has shape {value.shape}, expected {shape}")
    return value


def _voigt(stress: np.ndarray, index: int) -> np.ndarray:
    if stress.shape == (3, 3):
        return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    if stress.shape != (6,):
        raise PotstillError(
            f"prediction {index} 'stress' has shape {stress.shape}; expected Voigt (6,) or (3, 3)"
        )
    return stress
