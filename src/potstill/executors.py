"""Executors: where independent jobs (committee members, labeling chunks, walkers) run.

``make_executor(kind, workers=...)`` returns a :class:`concurrent.futures.Executor`:

- ``"serial"``: runs each job in the calling process when it is submitted (no pickling,
  exceptions surface from ``future.result()`` like the others); the default on small
  machines, and what tests use.
- ``"process"``: a local ``ProcessPoolExecutor`` of ``workers`` processes started with
  ``spawn`` (forking a process that has already started torch threads can deadlock).
- ``"dask"``: a Dask distributed cluster, optional (``pip install 'potstill[dask]'``):
  an in-process ``LocalCluster`` of ``workers`` single-threaded worker processes, or the
  scheduler at ``address`` (e.g. one started by dask-jobqueue on SLURM/PBS).

Jobs must be picklable top-level functions with picklable arguments for ``process`` and
``dask``. Use the executor as a context manager so workers (and a LocalCluster) stop.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

from potstill.errors import PotstillError

KINDS = ("serial", "process", "dask")
DASK_HINT = "pip install 'potstill[dask]'"


class SerialExecutor(Executor):
    """Runs every submitted job at once in the calling process."""

    def __init__(self):
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor that was shut down")
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - delivered through the future
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class DaskExecutor(Executor):
    """A Dask ``Client`` seen as a ``concurrent.futures.Executor``; shutting it down
    closes the client and the LocalCluster it started (never a remote scheduler)."""

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster
        self._executor = client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return self._executor.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str = "serial", workers: int = 1, *, address: str | None = None) -> Executor:
    """An executor of ``kind`` (``serial``, ``process``, ``dask``) with ``workers``
    parallel workers; ``address`` is a Dask scheduler to connect to instead of
    starting a LocalCluster."""
    if kind not in KINDS:
        raise PotstillError(f"unknown executor {kind!r}; accepted: {', '.join(KINDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PotstillError(f"workers must be a whole number >= 1, got {workers!r}")
    if address is not None and kind != "dask":
        raise PotstillError(f"a scheduler address needs executor 'dask', not {kind!r}")
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded
        )
    return _dask_executor(workers, address)


def _dask_executor(workers: int, address: str | None) -> DaskExecutor:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PotstillError(f"the dask executor needs Dask distributed, which is not installed: {DASK_HINT}") from None
    if address is not None:
        try:
            return DaskExecutor(Client(address, timeout="30s"))
        except OSError as error:
            raise PotstillError(f"cannot reach the Dask scheduler at {address}: {error}") from error
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return DaskExecutor(Client(cluster), cluster)


def _single_threaded() -> None:
    """Worker start-up: one BLAS thread per worker process (workers share the cores)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
