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
  :func:`translate_frame`, labels each frame with the target reference (one calculator
  reused) and writes it to a new store ``chunk`` frames per transaction. With
  ``resume=True`` the rows already in the output (matched by ``source_id``) are kept and
  not relabeled; the factor is recomputed and must match the stored one.
- Frames holding any element other than the source element, and unknown references,
  raise :class:`~potstill.errors.PotstillError` with a one-line message.

This is not registered in :data:`potstill.sampling.SAMPLERS`: samplers start from one
structure, translation starts from a pool.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError

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


def reference_element(kind: str, options: dict[str, Any] | None = None) -> str | None:
    """The single element of a registered LAMMPS reference, or ``None`` if it has none
    (e.g. EMT) or several."""
    from potstill.references import _REGISTRY, available

    if kind not in _REGISTRY:
        raise PotstillError(f"unknown reference {kind!r}; available references are {available()}")
    merged = {**_REGISTRY[kind][1], **(options or {})}
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
    from potstill.references import make_calculator
    from potstill.crystals import relax_crystal

    if structure not in STRUCTURES:
        raise PotstillError(f"unknown structure {structure!r} for the lattice ratio; use one of {STRUCTURES}")
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
        if key == "store_id" or (key.endswith(_LABEL_INFO_SUFFIXES) and key.rsplit("_", 1)[0] in labels):
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


def translate_frames(frames: Iterable[Atoms], scale: LatticeScale, reference) -> Iterator[Atoms]:
    """Translate and label ``frames`` one by one with ``reference``
    (a :class:`potstill.references.Reference` of the target element)."""
    from potstill.frames import labels_from_calculator

    for atoms in frames:
        frame = translate_frame(atoms, scale)
        frame.calc = reference.calculator
        try:
            yield labels_from_calculator(frame, reference.name)
        except PotstillError:
            raise
        except Exception as error:  # noqa: BLE001 - a crashing reference is user-facing
            raise PotstillError(
                f"reference {scale.target_reference!r} failed on translated frame "
                f"{frame.info.get('source_id')}: {' '.join(str(error).split())}"
            ) from error


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
    progress=None,
) -> dict[str, Any]:
    """Translate the frames of store ``source`` into the new store ``out``.

    ``scale_factor``: use this factor instead of relaxing ``structure`` with both
    references. ``target_options``: options of the target reference factory. ``label``: name of the target labels (default as
    :func:`potstill.references.make_reference`). ``n``: translate a random subset of
    ``n`` frames (seeded by ``seed``, kept in source order), all frames by default.
    ``progress``: a ``rich.progress.Progress`` to show a bar in. Returns counts, the
    scale and the wall time.
    """
    from potstill.references import make_reference
    from potstill.store import Store

    started = time.time()
    if chunk < 1:
        raise PotstillError(f"chunk={chunk}; give at least 1 frame per transaction")
    if str(source) == str(out):
        raise PotstillError("the output store must differ from the source store")
    source_store = Store(source, create=False)
    reference = make_reference(target_reference, name=label, **(target_options or {}))
    scale = _scale(source_reference, target_reference, structure, scale_factor, source_element, target_element,
                   target_options)
    todo = _subset(source_store.ids(), n, seed)
    out_store = _open_output(out, resume=resume, overwrite=overwrite)
    done = _already_translated(out_store, scale)
    remaining = [i for i in todo if i not in done]
    task = progress.add_task(f"translating to {scale.target_element}", total=len(todo), completed=len(todo) - len(remaining)) if progress else None
    written = 0
    for start in range(0, len(remaining), chunk):
        ids = remaining[start : start + chunk]
        out_store.add(translate_frames(source_store.get(ids), scale, reference))
        written += len(ids)
        if progress is not None:
            progress.update(task, advance=len(ids))
    return {
        "source": str(source),
        "out": str(out),
        "n_source": len(source_store),
        "n_selected": len(todo),
        "n_translated": written,
        "n_resumed": len(todo) - len(remaining),
        "label": reference.name,
        "scale": scale.as_dict(),
        "wall_time_s": round(time.time() - started, 3),
    }


# -- helpers ---------------------------------------------------------------------------
def _element(kind: str, element: str | None, options: dict | None, role: str) -> str:
    from ase.data import atomic_numbers

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
        raise PotstillError(f"{role} element {element} is not the element {found} of reference {kind!r}")
    return element


def _ratio(structure: str, source: dict, target: dict) -> float:
    if structure == "hcp":
        volume = lambda r: r["atoms"].get_volume() / len(r["atoms"])  # noqa: E731
        return float((volume(target) / volume(source)) ** (1.0 / 3.0))
    return float(target["lattice_A"]["a"] / source["lattice_A"]["a"])


def _scale(source_reference, target_reference, structure, scale_factor, source_element, target_element,
           target_options=None) -> LatticeScale:
    if scale_factor is None:
        return lattice_scale(source_reference, target_reference, structure=structure,
                             source_element=source_element, target_element=target_element,
                             target_options=target_options)
    if not (math.isfinite(scale_factor) and 0.5 < scale_factor < 2.0):
        raise PotstillError(f"scale factor {scale_factor} is implausible; give a ratio of lattice constants, e.g. 1.15")
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


def _open_output(out: str | Path, *, resume: bool, overwrite: bool):
    from potstill.records import claim_output
    from potstill.store import Store

    if resume and overwrite:
        raise PotstillError("give either --resume or --overwrite, not both")
    if "://" not in str(out):
        path = Path(out)
        if path.exists() and path.stat().st_size == 0:
            path.unlink()
        claim_output([path], overwrite=overwrite, resume=resume, what="translate")
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
            raise PotstillError(f"{store.url} holds frames that are not translations; use a new output store")
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
    from potstill.frames import available_references

    return available_references(atoms)
