"""Translate a pool to another element: scale to its lattice, relabel (seed 000, SI Note 6).

Configurations sampled for one metal are reused for another by scaling every cell and
position by the ratio of the two references' relaxed lattice constants and relabeling
with the target reference (Ni -> Al: FCC, ~1.15; Ni -> Nb: BCC, ~1.19 in the paper).

Contract
--------
- :func:`lattice_scale`: relaxes the ``structure`` (fcc, bcc or hcp) validation cell of
  :mod:`potstill.crystals` with both references and returns the factor
  ``target / source``: the ratio of the cubic lattice constants ``a`` (fcc, bcc), or of
  the cube roots of the atomic volumes (hcp, whose c/a may differ).
- :func:`translate_frame`: a copy of a one-element frame with cell and Cartesian
  positions multiplied by the factor (fractional positions unchanged), every atom turned
  into the target element, all labels and momenta dropped, and the source's provenance
  kept under ``source_<key>`` next to ``sampler="translate"``, ``source_id`` (row in the
  source store), ``scale_factor``, ``source_element``, ``source_reference`` and
  ``target_reference``.
- :func:`translate_store`: streams (a seeded random subset of) a source store through
  :func:`translate_frame` into a new store, ``chunk`` frames per transaction, then labels
  them with the target reference over an executor (:mod:`potstill.labeling`). With
  ``resume=True`` the rows already in the output (matched by ``source_id``) are kept and
  their labels not recomputed; the factor is recomputed and must match the stored one.
- As the ``translate`` sampler of the sample stage (:class:`TranslateSamplerConfig`,
  :func:`run`) it builds the run's pool from another element's pool.
- Frames holding any element other than the source element, and unknown references,
  raise :class:`~potstill.errors.PotstillError` with a one-line message.

"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from pydantic import Field

from potstill.crystals import relax_crystal
from potstill.errors import PotstillError
from potstill.executors import ExecutorConfig, make_executor
from potstill.frames import available_references
from potstill.labeling.label import check_failures, label_store
from potstill.references import ReferenceConfig, default_name, make_calculator, registered_options
from potstill.rundir import Stage, claim_paths
from potstill.settings import Section, build
from potstill.store import Store

STRUCTURES = ("fcc", "bcc", "hcp")
_LABEL_INFO_SUFFIXES = ("_energy", "_stress")
_LABEL_ARRAY_SUFFIXES = ("_forces", "_energies")
_DROPPED_ARRAYS = {"momenta", "velocities"}


@dataclass(frozen=True)
class LatticeScale:
    """The scale factor between two references and where it came from.

    ``source_lattice_A`` / ``target_lattice_A``: relaxed lattice constants (A) of
    ``structure`` (``{"a"}``, plus ``"c"`` for hcp); ``factor``: target / source.
    """

    structure: str
    source_reference: str
    target_reference: str
    source_element: str
    target_element: str
    source_lattice_A: dict[str, float] = field(default_factory=dict)
    target_lattice_A: dict[str, float] = field(default_factory=dict)
    factor: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TranslateConfig(Section):
    """Build the pool by translating another element's pool (seed 000, SI Note 6): scale
    by the ratio of relaxed ``structure`` lattice constants of ``from_reference`` and the
    run's ``reference`` (or by ``scale``), then relabel with the run's reference."""

    source: str
    from_reference: str = "eam-ni"
    structure: Literal["fcc", "bcc", "hcp"] = "fcc"
    scale: float | None = None
    n: int | None = Field(None, gt=0)
    seed: int = 0


class TranslateSamplerConfig(Section):
    """The ``translate`` sampler: the run's pool is ``translate.source`` translated."""

    sampler: Literal["translate"] = "translate"
    translate: TranslateConfig


Config = TranslateSamplerConfig
OWNS: tuple[str, ...] = ()


def run(
    config: TranslateSamplerConfig,
    *,
    species: Sequence[str],
    reference: ReferenceConfig,
    stage: Stage,
    executor: ExecutorConfig | None = None,
    progress=None,
) -> dict:
    """Translate ``config.translate.source`` into the run's pool, labeled by the run's
    reference over ``executor``; an interrupted translation resumes without relabeling
    finished frames."""
    t = config.translate
    element = reference_element(reference.kind, reference.options)
    if element is not None and element not in species:
        raise PotstillError(
            f"translation target {element} (reference {reference.kind}) not in species {list(species)}"
        )
    with make_executor(executor or ExecutorConfig()) as pool:
        return translate_store(
            t.source,
            stage.run.pool,
            source_reference=t.from_reference,
            target_reference=reference.kind,
            target_options=reference.options,
            structure=t.structure,
            scale_factor=t.scale,
            label=reference.name,
            n=t.n,
            seed=t.seed,
            resume=True,
            executor=pool,
            progress=progress,
        )


def reference_element(kind: str, options: dict[str, Any] | None = None) -> str | None:
    """The single element of a registered LAMMPS reference, or ``None`` if it has none
    (e.g. EMT) or several."""
    merged = {**registered_options(kind), **(options or {})}
    elements = merged.get("elements")
    if isinstance(elements, str):
        return elements
    if elements and len(elements) == 1:
        return str(elements[0])
    return None


def lattice_scale(
    source_reference: str,
    target_reference: str,
    *,
    structure: str = "fcc",
    source_element: str | None = None,
    target_element: str | None = None,
    source_options: dict[str, Any] | None = None,
    target_options: dict[str, Any] | None = None,
) -> LatticeScale:
    """Relax ``structure`` with both references and return the :class:`LatticeScale`.

    Elements default to the single element of each reference (see
    :func:`reference_element`); references with several elements or none need them.
    """
    if structure not in STRUCTURES:
        raise PotstillError(
            f"unknown structure {structure!r} for the lattice ratio; use one of {STRUCTURES}"
        )
    source_element = _element(source_reference, source_element, source_options, "source")
    target_element = _element(target_reference, target_element, target_options, "target")
    relaxed = {}
    for role, kind, element, options in (
        ("source", source_reference, source_element, source_options),
        ("target", target_reference, target_element, target_options),
    ):
        calc = make_calculator(kind, **(options or {}))
        result = relax_crystal(structure, element, calc)
        if not result["converged"]:
            raise PotstillError(
                f"{structure} {element} did not relax with reference {kind!r}; pass the "
                "scale factor explicitly (--scale)"
            )
        relaxed[role] = result
    return LatticeScale(
        structure=structure,
        source_reference=source_reference,
        target_reference=target_reference,
        source_element=source_element,
        target_element=target_element,
        source_lattice_A=relaxed["source"]["lattice_A"],
        target_lattice_A=relaxed["target"]["lattice_A"],
        factor=_ratio(structure, relaxed["source"], relaxed["target"]),
    )


def translate_frame(atoms: Atoms, scale: LatticeScale, *, source_id: int | None = None) -> Atoms:
    """Unlabeled copy of ``atoms`` scaled by ``scale.factor`` and made of
    ``scale.target_element`` (see the module docstring for the provenance kept)."""
    if source_id is None:
        source_id = atoms.info.get("store_id")
    symbols = set(atoms.get_chemical_symbols())
    if symbols != {scale.source_element}:
        where = f"frame {source_id}" if source_id is not None else "frame"
        raise PotstillError(
            f"{where} holds {sorted(symbols)} but the source reference {scale.source_reference!r} "
            f"is {scale.source_element}; translation needs one-element {scale.source_element} frames"
        )
    out = Atoms(
        symbols=[scale.target_element] * len(atoms),
        positions=atoms.positions * scale.factor,
        cell=np.asarray(atoms.cell) * scale.factor,
        pbc=atoms.pbc,
    )
    labels = _label_names(atoms)
    for key, value in atoms.arrays.items():
        is_label = key.endswith(_LABEL_ARRAY_SUFFIXES) and key.rsplit("_", 1)[0] in labels
        if key in ("numbers", "positions") or key in _DROPPED_ARRAYS or is_label:
            continue
        out.arrays[key] = np.array(value)
    for key, value in atoms.info.items():
        if key == "store_id" or (
            key.endswith(_LABEL_INFO_SUFFIXES) and key.rsplit("_", 1)[0] in labels
        ):
            continue
        out.info[f"source_{key}"] = value
    out.info.update(
        sampler="translate",
        scale_factor=float(scale.factor),
        source_element=scale.source_element,
        source_reference=scale.source_reference,
        target_reference=scale.target_reference,
    )
    if source_id is not None:
        out.info["source_id"] = int(source_id)
    return out


def translate_store(
    source: str | Path,
    out: str | Path,
    *,
    source_reference: str,
    target_reference: str,
    structure: str = "fcc",
    scale_factor: float | None = None,
    source_element: str | None = None,
    target_element: str | None = None,
    target_options: dict[str, Any] | None = None,
    label: str | None = None,
    n: int | None = None,
    seed: int = 0,
    chunk: int = 50,
    resume: bool = False,
    overwrite: bool = False,
    executor: Executor | None = None,
    progress=None,
) -> dict[str, Any]:
    """Translate the frames of store ``source`` into the new store ``out``.

    ``scale_factor``: use this factor instead of relaxing ``structure`` with both
    references. ``target_options``: options of the target reference factory. ``label``:
    name of the target labels (default as :func:`potstill.references.make_reference`).
    ``n``: translate a random subset of ``n`` frames (seeded by ``seed``, kept in source
    order), all frames by default. ``chunk``: frames per transaction and per labeling
    job. ``progress``: a ``rich.progress.Progress`` to show a bar in. Returns counts, the
    scale and the wall time; a frame the target reference fails on is recorded on it and
    raises one :class:`PotstillError` line once every other frame is labeled.
    """
    started = time.time()
    if chunk < 1:
        raise PotstillError(f"chunk={chunk}; give at least 1 frame per transaction")
    if str(source) == str(out):
        raise PotstillError("the output store must differ from the source store")
    source_store = Store(source, create=False)
    target = build(
        ReferenceConfig,
        kind=target_reference,
        name=label or default_name(target_reference),
        options=dict(target_options or {}),
    )
    scale = _scale(
        source_reference,
        target_reference,
        structure,
        scale_factor,
        source_element,
        target_element,
        target_options,
    )
    todo = _subset(source_store.ids(), n, seed)
    out_store = _open_output(out, resume=resume, overwrite=overwrite)
    done = _already_translated(out_store, scale)
    remaining = [i for i in todo if i not in done]
    for start in range(0, len(remaining), chunk):
        ids = remaining[start : start + chunk]
        out_store.add([translate_frame(atoms, scale) for atoms in source_store.get(ids)])
    labels = label_store(
        out_store, target, executor=executor, chunk=chunk, retry_failed=resume, progress=progress
    )
    check_failures(
        labels, f"potstill translate --resume (or `potstill label {out} --retry-failed`)"
    )
    return {
        "source": str(source),
        "out": str(out),
        "n_source": len(source_store),
        "n_selected": len(todo),
        "n_translated": len(remaining),
        "n_resumed": len(todo) - len(remaining),
        "n_labeled": labels["labeled"],
        "label": target.name,
        "scale": scale.as_dict(),
        "wall_time_s": round(time.time() - started, 3),
    }


# -- helpers ---------------------------------------------------------------------------
def _element(kind: str, element: str | None, options: dict | None, role: str) -> str:
    found = reference_element(kind, options)
    if element is None:
        if found is None:
            raise PotstillError(
                f"{role} reference {kind!r} has no single element; give the {role} element explicitly"
            )
        return found
    if element not in atomic_numbers:
        raise PotstillError(f"unknown element {element!r}; use a chemical symbol like 'Al'")
    if found is not None and element != found:
        raise PotstillError(
            f"{role} element {element} is not the element {found} of reference {kind!r}"
        )
    return element


def _ratio(structure: str, source: dict, target: dict) -> float:
    if structure == "hcp":
        volume = lambda r: r["atoms"].get_volume() / len(r["atoms"])  # noqa: E731
        return float((volume(target) / volume(source)) ** (1.0 / 3.0))
    return float(target["lattice_A"]["a"] / source["lattice_A"]["a"])


def _scale(
    source_reference,
    target_reference,
    structure,
    scale_factor,
    source_element,
    target_element,
    target_options=None,
) -> LatticeScale:
    if scale_factor is None:
        return lattice_scale(
            source_reference,
            target_reference,
            structure=structure,
            source_element=source_element,
            target_element=target_element,
            target_options=target_options,
        )
    if not (math.isfinite(scale_factor) and 0.5 < scale_factor < 2.0):
        raise PotstillError(
            f"scale factor {scale_factor} is implausible; give a ratio of lattice constants, e.g. 1.15"
        )
    return LatticeScale(
        structure="given",
        source_reference=source_reference,
        target_reference=target_reference,
        source_element=_element(source_reference, source_element, None, "source"),
        target_element=_element(target_reference, target_element, target_options, "target"),
        factor=float(scale_factor),
    )


def _subset(ids: list[int], n: int | None, seed: int) -> list[int]:
    if n is None or n >= len(ids):
        return list(ids)
    if n < 1:
        raise PotstillError(f"n={n}; translate at least one frame (or omit n for all)")
    chosen = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(chosen)]


def _open_output(out: str | Path, *, resume: bool, overwrite: bool) -> Store:
    if resume and overwrite:
        raise PotstillError("give either --resume or --overwrite, not both")
    if "://" not in str(out):
        path = Path(out)
        if path.exists() and path.stat().st_size == 0:
            path.unlink()
        claim_paths([path], overwrite=overwrite, resume=resume, what="translate")
        return Store(path)
    store = Store(out)
    if len(store) and not resume:
        raise PotstillError(
            f"{out} already holds {len(store)} frames; pass --resume to continue, or use a new database"
        )
    return store


def _already_translated(store, scale: LatticeScale) -> set[int]:
    """``source_id`` of rows already in the output; their scale must match ``scale``."""
    done: set[int] = set()
    for atoms in store.frames():
        info = atoms.info
        if info.get("sampler") != "translate" or "source_id" not in info:
            raise PotstillError(
                f"{store.url} holds frames that are not translations; use a new output store"
            )
        same = (
            info.get("source_reference") == scale.source_reference
            and info.get("target_reference") == scale.target_reference
            and abs(float(info.get("scale_factor", math.nan)) - scale.factor) < 1e-6
        )
        if not same:
            raise PotstillError(
                f"{store.url} was translated {info.get('source_reference')} -> {info.get('target_reference')} "
                f"with scale {info.get('scale_factor')}, not {scale.source_reference} -> "
                f"{scale.target_reference} with {scale.factor:.6f}; use --overwrite or another output"
            )
        done.add(int(info["source_id"]))
    return done


def _label_names(atoms: Atoms) -> set[str]:
    return available_references(atoms)
