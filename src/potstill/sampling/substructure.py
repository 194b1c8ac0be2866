"""Substructures around uncertain atoms: group, crop, embed (seed 003, IDEAL).

For a frame whose per-atom uncertainty exceeds a threshold, seed 003 labels small cells
built around the uncertain atoms instead of the frame:

1. :func:`group_uncertain`: uncertain atoms, most uncertain first, each taking the
   uncertain atoms within ``merge_A`` of it into its group (overlapping environments
   share one substructure); at most ``max_groups`` groups.
2. :func:`crop`: for a group with centre ``c``, the *core* is every atom within
   ``core_radius_A`` of a group atom (their environments, kept exactly). A random search
   over ``candidates`` hexahedral boxes (half-edges ``R + min_distance_A / 2 + m_a``,
   ``R`` the core's extent and ``m_a`` drawn from ``margin_A``, offset by up to
   ``m_a / 2`` per axis) cuts the frame's atoms inside each box into a periodic cell; of
   two atoms the new boundary brings closer than ``min_distance_A``, the non-core one
   farther out is left out; the box of lowest total uncertainty (:func:`objective`)
   wins (seed 003, SI S1). ``mode="vacuum"`` instead cuts the sphere of radius
   ``R + margin`` into a cell padded with ``vacuum_A`` of empty space (the naive
   cluster of seed 003 Fig. 1c).
3. :func:`embed`: with the core fixed, the other atoms move by gradient descent on the
   total uncertainty (:func:`objective`) (largest step ``step_A``, each atom at most ``max_displacement_A``
   from where it was cropped, no pair closer than ``min_distance_A``): the in-distribution
   embedded substructure (IDES, seed 003 eq. 1).

Positions in Angstrom; uncertainties are the scores of the uncertainty object (any
``per_atom(frames)``; :func:`embed` needs ``with_gradient(atoms)``, e.g. the Mahalanobis
distance of AEV or SOAP descriptors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.neighborlist import neighbor_list
from pydantic import Field, model_validator

from potstill.settings import Section

__all__ = ["Substructure", "SubstructureConfig", "build_substructures", "crop", "embed"]

MODES = ("ides", "periodic", "vacuum")


class SubstructureConfig(Section):
    """How substructures are cut and embedded (lengths in A).

    ``mode``: ``ides`` (crop into a periodic cell, then the uncertainty descent: seed
    003's method), ``periodic`` (the crop alone) or ``vacuum`` (a sphere in vacuum): the
    three datasets of seed 003's ablation (Table 2). ``core_radius_A``: the environment
    kept around each uncertain atom, the model's radial cutoff by default.
    """

    mode: Literal["ides", "periodic", "vacuum"] = "ides"
    core_radius_A: float | None = Field(None, gt=0)
    margin_A: tuple[float, float] = (0.5, 1.5)
    candidates: int = Field(40, ge=1)
    merge_A: float | None = Field(None, ge=0)  # default: half the core radius
    max_groups: int = Field(4, ge=1)
    min_distance_A: float = Field(2.0, gt=0)
    vacuum_A: float = Field(6.0, gt=0)
    embed_steps: int = Field(40, ge=0)
    step_A: float = Field(0.05, gt=0)
    max_displacement_A: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SubstructureConfig:
        low, high = self.margin_A
        if not 0 <= low <= high:
            raise ValueError(
                f"margin_A must be [low, high] with 0 <= low <= high, got {self.margin_A}"
            )
        return self


@dataclass
class Substructure:
    """A substructure to label: ``atoms`` (a periodic cell), which of them are the
    fixed ``core``, the frame atoms it came from (``source``, -1 for none) and how it
    was found (``info``: group, candidates, the mean uncertainty of all atoms and of the
    surrounding, non-core atoms before and after embedding)."""

    atoms: Atoms
    core: np.ndarray
    source: np.ndarray
    info: dict = field(default_factory=dict)


def group_uncertain(
    atoms: Atoms, scores: np.ndarray, threshold: float, *, merge_A: float, max_groups: int
) -> list[np.ndarray]:
    """Groups of uncertain atoms (scores above ``threshold``), most uncertain first: each
    group is an uncertain atom and the still ungrouped uncertain atoms within
    ``merge_A`` of it (minimum image); at most ``max_groups``."""
    scores = np.asarray(scores, dtype=float)
    uncertain = [int(i) for i in np.argsort(-scores) if scores[i] > threshold]
    groups: list[np.ndarray] = []
    left = set(uncertain)
    for i in uncertain:
        if i not in left or len(groups) == max_groups:
            continue
        others = np.array(sorted(left - {i}), dtype=int)
        members = [i]
        if len(others):
            distances = atoms.get_distances(i, others, mic=True)
            members += others[distances <= merge_A].tolist()
        left -= set(members)
        groups.append(np.array(members, dtype=int))
    return groups


def build_substructures(
    atoms: Atoms,
    scores: np.ndarray,
    threshold: float,
    uncertainty,
    config: SubstructureConfig,
    *,
    core_radius_A: float,
    seed: Sequence[int],
    map: Callable = map,
) -> list[Substructure]:
    """Every substructure of one uncertain frame (seed 003 steps 1 and 2), one group per
    job of ``map`` (an executor's ``map`` cuts and embeds them in parallel, seed 003 SI
    S11); group ``g`` draws its boxes from ``default_rng([*seed, g])``."""
    merge = core_radius_A / 2 if config.merge_A is None else config.merge_A
    groups = group_uncertain(atoms, scores, threshold, merge_A=merge, max_groups=config.max_groups)
    jobs = [
        _Job(atoms, group, uncertainty, config, core_radius_A, (*seed, g))
        for g, group in enumerate(groups)
    ]
    out = list(map(_substructure, jobs))
    for sub, group in zip(out, groups):
        sub.info["group"] = group.tolist()
        sub.info["group_scores"] = [float(scores[i]) for i in group]
    return out


@dataclass(frozen=True)
class _Job:
    atoms: Atoms
    group: np.ndarray
    uncertainty: object
    config: SubstructureConfig
    core_radius_A: float
    seed: tuple


def _substructure(job: _Job) -> Substructure:
    """Crop (and, for ``ides``, embed) one group: runs where the executor puts it."""
    rng = np.random.default_rng(list(job.seed))
    sub = crop(
        job.atoms, job.group, job.uncertainty, job.config, core_radius_A=job.core_radius_A, rng=rng
    )
    return embed(sub, job.uncertainty, job.config) if job.config.mode == "ides" else sub


def crop(
    atoms: Atoms,
    group: np.ndarray,
    uncertainty,
    config: SubstructureConfig,
    *,
    core_radius_A: float,
    rng: np.random.Generator,
) -> Substructure:
    """The best of ``config.candidates`` crops around ``group`` (see the module
    docstring). A periodic frame smaller than the largest box is tiled first, so the
    substructure's size does not depend on the frame's."""
    low, high = config.margin_A
    buffer = 0.0 if config.mode == "vacuum" else config.min_distance_A / 2
    centre, offsets = _centre(atoms, group)
    extent = core_radius_A + float(np.linalg.norm(offsets, axis=1).max())
    frame, owner = _tiled(atoms, 2 * (extent + buffer + high))
    displacement, _ = find_mic(frame.positions - centre, frame.cell, frame.pbc)
    core = np.flatnonzero(
        np.min(np.linalg.norm(displacement[:, None, :] - offsets[None], axis=2), axis=1)
        <= core_radius_A
    )
    if config.mode == "vacuum":
        sub = _vacuum(frame, displacement, core, extent, config, rng)
        sub.source = owner[sub.source]
        return sub
    candidates = []
    for _ in range(config.candidates):
        margin = rng.uniform(low, high, 3)
        half = extent + buffer + margin  # core atoms never meet each other's images
        shift = rng.uniform(-0.5, 0.5, 3) * margin
        inside = np.flatnonzero(np.all(np.abs(displacement - shift) < half, axis=1))
        inside = _without_overlaps(
            displacement[inside] - shift, np.diag(2 * half), inside, core, config.min_distance_A
        )
        sub = Atoms(
            frame.numbers[inside],
            positions=displacement[inside] - shift + half,
            cell=np.diag(2 * half),
            pbc=True,
        )
        candidates.append((sub, inside))
    scored = uncertainty.per_atom([s for s, _ in candidates])
    best = int(np.argmin([objective(s) for s in scored]))
    means = [float(np.mean(s)) for s in scored]
    sub, inside = candidates[best]
    return Substructure(
        sub,
        core=np.isin(inside, core),
        source=owner[inside],
        info={
            "candidates": len(candidates),
            "crop_mean_uncertainty": means[best],
            "crop_mean_uncertainty_worst": max(means),
            "n_atoms": len(sub),
            "n_core": int(np.isin(inside, core).sum()),
        },
    )


def embed(sub: Substructure, uncertainty, config: SubstructureConfig) -> Substructure:
    """Move the non-core atoms of ``sub`` down the gradient of the total uncertainty
    (see the module docstring); returns a new :class:`Substructure` whose ``info`` has
    the mean uncertainty before and after and the steps taken."""
    atoms = sub.atoms.copy()
    start = atoms.positions.copy()
    free = ~sub.core
    scores, gradient = uncertainty.with_gradient(atoms, _objective_slope)
    history = [objective(scores)]
    step, accepted = config.step_A, 0
    for _ in range(config.embed_steps):
        gradient[~free] = 0.0
        largest = float(np.linalg.norm(gradient, axis=1).max())
        if largest == 0.0 or not free.any():
            break
        trial = atoms.positions - step * gradient / largest
        moved = trial - start
        length = np.linalg.norm(moved, axis=1, keepdims=True)
        cap = config.max_displacement_A
        trial = np.where(length > cap, start + moved * cap / np.maximum(length, 1e-12), trial)
        candidate = atoms.copy()
        candidate.positions = trial
        if _too_close(candidate, config.min_distance_A, free):
            step /= 2
            continue
        new_scores, new_gradient = uncertainty.with_gradient(candidate, _objective_slope)
        if objective(new_scores) >= history[-1]:
            step /= 2
            if step < 1e-4:
                break
            continue
        atoms, scores, gradient = candidate, new_scores, new_gradient
        history.append(objective(scores))
        accepted += 1
    first = uncertainty.per_atom([sub.atoms])[0]
    info = {
        **sub.info,
        "crop_surrounding_uncertainty": float(np.mean(first[free])) if free.any() else None,
        "embed_surrounding_uncertainty": float(np.mean(scores[free])) if free.any() else None,
        "embed_steps": accepted,
        "embed_mean_uncertainty": float(np.mean(scores)),
        "crop_objective": history[0],
        "embed_objective": history[-1],
        "max_displacement_A": float(np.linalg.norm(atoms.positions - start, axis=1).max()),
    }
    return Substructure(atoms, sub.core.copy(), sub.source.copy(), info)


def objective(scores: np.ndarray) -> float:
    """What the crop search and the embedding minimise: the mean of ``log(1 + score)``
    over the substructure's atoms (the total uncertainty on a log scale, so that the
    few atoms far out of distribution, whose scores span orders of magnitude, do not
    drown the rest)."""
    return float(np.mean(np.log1p(np.asarray(scores, dtype=float))))


def _objective_slope(scores: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + scores) / len(scores)


def _centre(atoms: Atoms, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The group's centre (A) and each group atom's minimum-image offset from it."""
    first = atoms.positions[group[0]]
    offsets, _ = find_mic(atoms.positions[group] - first, atoms.cell, atoms.pbc)
    centre = first + offsets.mean(axis=0)
    return centre, offsets - offsets.mean(axis=0)


def _vacuum(atoms, displacement, core, extent, config, rng) -> Substructure:
    margin = rng.uniform(*config.margin_A)
    inside = np.flatnonzero(np.linalg.norm(displacement, axis=1) <= extent + margin)
    size = 2 * (extent + margin) + config.vacuum_A
    sub = Atoms(
        atoms.numbers[inside],
        positions=displacement[inside] + size / 2,
        cell=np.eye(3) * size,
        pbc=True,
    )
    return Substructure(
        sub,
        core=np.isin(inside, core),
        source=inside,
        info={"candidates": 1, "n_atoms": len(sub), "n_core": len(core)},
    )


def _tiled(atoms: Atoms, width_A: float) -> tuple[Atoms, np.ndarray]:
    """``atoms`` repeated along each periodic axis until its height exceeds ``width_A``
    (the original atoms first), and the original index of every atom."""
    if not atoms.pbc.any():
        return atoms, np.arange(len(atoms))
    heights = atoms.cell.volume / atoms.cell.areas()  # distances between opposite faces
    repeat = [int(np.ceil(width_A / h)) if p else 1 for h, p in zip(heights, atoms.pbc)]
    repeat = [max(r, 1) for r in repeat]
    if repeat == [1, 1, 1]:
        return atoms, np.arange(len(atoms))
    return atoms.repeat(repeat), np.tile(np.arange(len(atoms)), int(np.prod(repeat)))


def _without_overlaps(
    relative: np.ndarray, cell: np.ndarray, inside: np.ndarray, core: np.ndarray, limit_A: float
) -> np.ndarray:
    """``inside`` without the atoms that the new periodic boundary brings closer than
    ``limit_A`` to another (of each such pair the non-core atom farther from the centre
    goes). Two core atoms never meet that way (the box leaves ``limit_A / 2`` beyond the
    core): a close core pair is the frame's own and stays."""
    keep = np.ones(len(inside), dtype=bool)
    is_core = np.isin(inside, core)
    radius = np.linalg.norm(relative, axis=1)
    probe = Atoms(numbers=np.ones(len(inside)), positions=relative, cell=cell, pbc=True)
    first, second = neighbor_list("ij", probe, limit_A)
    for i, j in sorted(zip(first, second), key=lambda p: -max(radius[p[0]], radius[p[1]])):
        if i >= j or not (keep[i] and keep[j]):
            continue
        if is_core[i] and is_core[j]:
            continue
        drop = j if (is_core[i] or (not is_core[j] and radius[j] >= radius[i])) else i
        keep[drop] = False
    return inside[keep]


def _too_close(atoms: Atoms, limit_A: float, movable: np.ndarray) -> bool:
    """Whether a pair with a ``movable`` atom (periodic images included) is closer than
    ``limit_A`` (the fixed core keeps its own distances)."""
    first, second = neighbor_list("ij", atoms, limit_A)
    return bool(np.any(movable[first] | movable[second]))
