"""The pool: frames kept in an ASE database.

A :class:`Store` wraps ``ase.db.connect(url)``: a SQLite file by default, or any URL ASE
db accepts (``postgresql://user:pw@host:5432/db`` when several machines share a
campaign). Frames go in and come out as ``ase.Atoms`` with their labels and provenance
(see :mod:`potstill.frames`):

- scalar ``info`` entries (provenance, energies of every reference) are stored as ASE db
  key-value pairs, so they can be queried (``store.select("sampler=md,temperature_K>1000")``);
- array labels (forces, per-atom energies) and vector labels (stress) go into the row's
  ``data``.

Bulk writes are transactional: :meth:`Store.add` writes all frames of one call inside one
transaction, so a crash loses at most the frames of the call in flight, never earlier
ones. extxyz import/export interchanges pools with every other MLIP code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.db import connect
from ase.io import read, write

from potstill.errors import PotstillError
from potstill.faults import kill_point
from potstill.frames import check_geometry, check_labels

# ASE db reserves these names for its own columns; provenance must not use them.
_RESERVED = {
    "id",
    "unique_id",
    "ctime",
    "mtime",
    "user",
    "calculator",
    "energy",
    "forces",
    "stress",
    "magmom",
    "charge",
    "natoms",
    "formula",
    "age",
    "volume",
    "mass",
    "fmax",
    "smax",
    "pbc",
    "numbers",
    "positions",
    "cell",
}


class Store:
    """A pool of frames in an ASE database at ``url`` (path or database URL)."""

    def __init__(self, url: str | Path, *, create: bool = True):
        url = str(url)
        self.url = url
        if "://" not in url:
            path = Path(url)
            if not create and not path.exists():
                raise PotstillError(
                    f"store {url} does not exist; create it with `potstill sample` or "
                    "`potstill import`"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > 0 and not _is_sqlite(path):
                raise PotstillError(
                    f"{url} is not an SQLite ASE database (corrupt or another format); "
                    "point the store to a .db file or import frames with `potstill import`"
                )
        try:
            self._db = connect(url, type="db" if "://" not in url else "extract_from_name")
            self._db.count()  # creates an SQLite file now, and fails now on a bad URL
        except Exception as error:  # noqa: BLE001 - ASE raises many kinds here
            reason = " ".join(str(error).split())
            raise PotstillError(f"cannot open store {_redact(url)}: {reason}") from error

    # -- writing ---------------------------------------------------------------------
    def add(self, frames: Iterable[Atoms]) -> list[int]:
        """Write ``frames`` in one transaction; returns their new ids."""
        rows = [_to_row(atoms) for atoms in frames]
        ids = []
        with self._db as db:
            for atoms, kvp, data in rows:
                ids.append(db.write(atoms, key_value_pairs=kvp, data=data))
        kill_point("store-write")
        return ids

    def add_stream(self, frames: Iterable[Atoms], *, chunk: int = 200) -> int:
        """Write an iterator of frames ``chunk`` per transaction (a crash loses at most the
        chunk in flight); returns how many were written."""
        batch, n = [], 0
        for frame in frames:
            batch.append(frame)
            if len(batch) == chunk:
                n += len(self.add(batch))
                batch = []
        return n + len(self.add(batch))

    def update(
        self, ids: Sequence[int], frames: Sequence[Atoms], *, delete_keys: Sequence[str] = ()
    ) -> None:
        """Replace labels and provenance of rows ``ids`` by those on ``frames`` (in one
        transaction), and drop the ``info`` keys ``delete_keys`` where present.

        Positions and cell of a stored frame never change; a frame whose atoms differ
        from the stored row is rejected.
        """
        if len(ids) != len(frames):
            raise ValueError("update needs one frame per id")
        with self._db as db:
            for row_id, atoms in zip(ids, frames):
                row = db.get(id=row_id)
                if row.natoms != len(atoms) or not np.allclose(row.positions, atoms.positions):
                    raise PotstillError(
                        f"frame for row {row_id} has different atoms than the stored one; "
                        "add it as a new frame instead"
                    )
                _, kvp, data = _to_row(atoms)
                old = dict(row.get("data", {}))
                old.update(data)
                stale = [k for k in delete_keys if k in row.key_value_pairs and k not in kvp]
                db.update(row_id, data=old, delete_keys=stale, **kvp)

    def delete(self, ids: Sequence[int]) -> None:
        """Remove rows ``ids`` in one transaction (e.g. frames a resumed sampler rewrites)."""
        with self._db as db:
            db.delete([int(i) for i in ids])

    # -- reading ---------------------------------------------------------------------
    def __len__(self) -> int:
        return self._db.count()

    def ids(self, selection: str | None = None) -> list[int]:
        """Row ids matching an ASE db ``selection`` string, in insertion order."""
        if selection is None and hasattr(self._db, "managed_connection"):
            # all ids straight from SQL: ASE builds a full row object per id otherwise
            # (~1 ms per row, 20 s for a 20,000-frame pool on a busy machine)
            with self._db.managed_connection() as connection:
                cursor = connection.cursor()
                cursor.execute("SELECT id FROM systems ORDER BY id")
                return [int(i) for (i,) in cursor.fetchall()]
        return [row.id for row in self._db.select(selection, include_data=False, sort="id")]

    def get(self, ids: Sequence[int] | None = None, selection: str | None = None) -> list[Atoms]:
        """Frames by ``ids`` (in that order) or by ``selection`` (insertion order)."""
        if ids is None:  # in insertion order on every backend (PostgreSQL has none by itself)
            return [_from_row(row) for row in self._db.select(selection, sort="id")]
        return [_from_row(self._db.get(id=int(i))) for i in ids]

    def frames(self, ids: Sequence[int] | None = None, *, chunk: int = 1000) -> "StoredFrames":
        """A lazy sequence of the frames ``ids`` (all by default), read on access, so a
        20,000-frame pool can be trained on without holding it in memory."""
        return StoredFrames(self, self.ids() if ids is None else list(ids), chunk=chunk)

    # -- interchange -----------------------------------------------------------------
    def export_extxyz(self, path: str | Path, selection: str | None = None) -> int:
        """Write frames to an extended-XYZ file; returns the number written."""
        frames = self.get(selection=selection)
        write(str(path), frames, format="extxyz")
        return len(frames)

    def import_extxyz(self, path: str | Path) -> list[int]:
        """Add every frame of an extended-XYZ file (labels as written by potstill), after
        :func:`read_extxyz` checked them all: a bad file adds nothing."""
        return self.add(read_extxyz(path))


def read_extxyz(path: str | Path) -> list[Atoms]:
    """The frames of an extended-XYZ file with their geometry and labels checked
    (:func:`potstill.frames.check_geometry`, :func:`~potstill.frames.check_labels`); a
    file that cannot be read, or a bad frame, is one :class:`PotstillError` line naming it."""
    if not Path(path).exists():
        raise PotstillError(f"{path} not found")
    try:
        frames = read(str(path), index=":", format="extxyz")
    except Exception as error:  # noqa: BLE001 - ASE raises many kinds for a damaged file
        reason = " ".join(str(error).split())
        raise PotstillError(
            f"cannot read {path} as extended XYZ; it may be truncated or not extxyz ({reason}): "
            "write it again, e.g. with `potstill export`"
        ) from None
    for i, atoms in enumerate(frames):
        atoms.calc = None
        for key, value in list(atoms.info.items()):
            if key.endswith("_stress"):
                atoms.info[key] = np.asarray(value, dtype=float).reshape(-1)
        try:
            check_geometry(atoms)
            check_labels(atoms)
        except PotstillError as error:
            raise PotstillError(f"{path}, frame {i}: {error}; nothing was imported") from None
    return frames


class StoredFrames(Sequence):
    """Frames of a store read lazily: ``len``, ``frames[i]`` (one row), ``frames[a:b]``
    or ``frames.subset(indices)`` (another lazy view), and iteration in chunks."""

    def __init__(self, store: Store, ids: list[int], *, chunk: int = 1000):
        self.store, self.ids, self.chunk = store, ids, chunk

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return StoredFrames(self.store, self.ids[index], chunk=self.chunk)
        return self.store.get([self.ids[index]])[0]

    def subset(self, indices: Sequence[int]) -> "StoredFrames":
        """View of the frames at positions ``indices``."""
        return StoredFrames(self.store, [self.ids[int(i)] for i in indices], chunk=self.chunk)

    def __iter__(self) -> Iterator[Atoms]:
        for start in range(0, len(self.ids), self.chunk):
            yield from self.store.get(self.ids[start : start + self.chunk])


def _redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _to_row(atoms: Atoms) -> tuple[Atoms, dict, dict]:
    kvp, data = {}, {}
    for key, value in atoms.info.items():
        if key == "store_id":  # where the frame came from, not part of it
            continue
        if key in _RESERVED:
            raise PotstillError(
                f"info key {key!r} is reserved by ASE db; rename it (e.g. '{key}_value')"
            )
        if isinstance(value, (bool, np.bool_)):
            kvp[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            kvp[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            kvp[key] = float(value)
        elif isinstance(value, str):
            kvp[key] = value
        else:
            data[key] = np.asarray(value)
    for key, value in atoms.arrays.items():
        if key not in ("numbers", "positions"):
            data[f"arrays:{key}"] = np.asarray(value)
    bare = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return bare, kvp, data


def _from_row(row) -> Atoms:
    atoms = row.toatoms()
    atoms.info.update(row.key_value_pairs)
    for key, value in row.get("data", {}).items():
        if key.startswith("arrays:"):
            atoms.arrays[key[len("arrays:") :]] = np.asarray(value)
        else:
            atoms.info[key] = np.asarray(value)
    atoms.info["store_id"] = row.id
    return atoms
