"""Executors: where independent jobs (committee members, labels, comparison runs) run.

An ``executor`` section of a workflow YAML (:class:`ExecutorConfig`) or
:func:`make_executor` gives a :class:`concurrent.futures.Executor`:

- ``auto`` (the default): ``process`` with one worker per core where the machine has
  more than one, else ``serial``;
- ``serial``: each job runs in the calling process when it is submitted (no pickling;
  exceptions surface from ``future.result()`` like the others);
- ``process``: a local ``ProcessPoolExecutor`` of ``workers`` processes started with
  ``spawn`` (forking a process that has already started torch threads can deadlock);
- ``dask``: a Dask distributed cluster: an in-process ``LocalCluster`` of ``workers``
  single-threaded worker processes on the loopback interface, or the running scheduler
  at ``address`` (e.g. ``tcp://10.0.0.5:8786``, one started by ``dask-jobqueue`` on
  SLURM or PBS; see ``docs/design.md``).

Every worker runs one BLAS/torch thread: parallel work comes from the workers.
Jobs must be picklable top-level functions with picklable arguments for ``process``
and ``dask``. Use the executor as a context manager so workers (and a LocalCluster)
stop. :func:`fan_out` submits jobs at most as many at a time as there are workers and
yields each as it finishes; what a failure means is the caller's choice.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import Field, model_validator

from potstill.errors import PotstillError
from potstill.settings import Section

__all__ = [
    "KINDS",
    "ExecutorConfig",
    "available_cores",
    "fan_out",
    "make_executor",
    "one_torch_thread",
]

KINDS = ("auto", "serial", "process", "dask")


class ExecutorConfig(Section):
    """Where a workflow's independent jobs run: ``kind`` (auto, serial, process, dask),
    ``workers`` (default: the machine's cores) and, for dask, the ``address`` of a
    running scheduler (default: start a LocalCluster on this machine). A bare string
    (``executor: serial``) names the kind."""

    kind: Literal["auto", "serial", "process", "dask"] = "auto"
    workers: int | None = Field(None, ge=1)
    address: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ExecutorConfig:
        if self.address is not None and self.kind != "dask":
            raise ValueError(f"a scheduler address needs kind: dask, not {self.kind!r}")
        return self


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SerialExecutor(Executor):
    """Runs every submitted job at once in the calling process."""

    workers = 1
    in_process = True

    def __init__(self):
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot submit to an executor that was shut down")
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - delivered through the future
            if isinstance(error, KeyboardInterrupt):
                raise
            future.set_exception(error)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class ProcessExecutor(ProcessPoolExecutor):
    """A spawn-based process pool of single-threaded workers."""

    in_process = False

    def __init__(self, workers: int):
        super().__init__(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_single_threaded,
        )
        self.workers = workers
        # children of this process that are not this pool's (see __exit__)
        self._children_before = {child.pid for child in multiprocessing.active_children()}

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return super().__exit__(exc_type, exc, tb)
        # interrupted (Ctrl-C) or failed: stop the workers now instead of waiting for
        # their jobs; what they finished is stored, the rest is redone on --resume. A
        # worker still being spawned when Ctrl-C came is not in the pool's table yet, but
        # is a child of this process: left running, the exit would wait for it forever
        spawning = [
            child
            for child in multiprocessing.active_children()
            if child.pid not in self._children_before
        ]
        for process in list((self._processes or {}).values()) + spawning:
            process.terminate()
        self.shutdown(wait=False, cancel_futures=True)
        return False


class DaskExecutor(Executor):
    """A Dask ``Client`` seen as a ``concurrent.futures.Executor``; shutting it down
    closes the client and the LocalCluster it started (never a remote scheduler)."""

    in_process = False

    def __init__(self, client, cluster=None):
        self.client, self.cluster = client, cluster
        self._executor = client.get_executor(pure=False)

    @property
    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        return self._executor.map(fn, *iterables, timeout=timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(
    kind: ExecutorConfig | str = "auto",
    workers: int | None = None,
    *,
    address: str | None = None,
    jobs: int | None = None,
) -> Executor:
    """An executor of ``kind`` (an :class:`ExecutorConfig` or a kind name) with
    ``workers`` parallel workers (default: the machine's cores). For ``auto`` with a
    known number of ``jobs``: ``serial`` for one job, else one worker per job up to twice
    the cores (3 committee members on 2 cores share them and finish together instead of
    leaving one member to train alone), else one per core."""
    if isinstance(kind, ExecutorConfig):
        kind, workers, address = kind.kind, kind.workers, kind.address
    if kind not in KINDS:
        raise PotstillError(f"unknown executor {kind!r}; accepted: {', '.join(KINDS)}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise PotstillError(f"workers must be a whole number >= 1, got {workers!r}")
    if address is not None and kind != "dask":
        raise PotstillError(f"a scheduler address needs executor 'dask', not {kind!r}")
    if kind == "auto" and jobs == 1:
        workers = 1
    elif kind == "auto" and workers is None and jobs:
        workers = jobs if jobs <= 2 * available_cores() else available_cores()
    workers = workers or available_cores()
    if kind == "auto":
        kind = "process" if workers > 1 else "serial"
    if kind == "serial":
        return SerialExecutor()
    if kind == "process":
        return ProcessExecutor(workers)
    return _dask_executor(workers, address)


def fan_out(
    executor: Executor,
    fn: Callable[..., Any],
    jobs: Iterable[Any],
    *,
    max_in_flight: int | None = None,
    **local_kwargs: Any,
) -> Iterator[tuple[Any, Future]]:
    """Run ``fn(job)`` for every job over ``executor``, at most ``max_in_flight`` at a
    time (default: the executor's workers), and yield ``(job, future)`` as each finishes;
    ``future.result()`` returns the result or raises the job's exception.

    ``local_kwargs`` (e.g. a progress display) are passed to ``fn`` only when the
    executor runs jobs in this process. A job that fails to be submitted because the
    executor's workers died raises :class:`PotstillError`.
    """
    in_process = getattr(executor, "in_process", False)
    limit = max_in_flight or getattr(executor, "workers", 1)
    pending = iter(jobs)
    running: dict[Future, Any] = {}
    exhausted = False
    while True:
        while not exhausted and len(running) < limit:
            job = next(pending, _END)
            if job is _END:
                exhausted = True
                break
            running[_submit(executor, fn, job, local_kwargs if in_process else {})] = job
        if not running:
            return
        # wake every second: a Ctrl-C whose handler ran while this thread slept on the
        # futures' lock is raised here within a second, not when a job next finishes
        done, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
        for future in [f for f in running if f in done]:  # in submission order
            yield running.pop(future), future


_END = object()


def _submit(executor: Executor, fn, job, kwargs: dict) -> Future:
    try:
        return executor.submit(fn, job, **kwargs)
    except BrokenExecutor as error:
        raise PotstillError(
            f"the executor's workers died ({error}); what finished is kept, rerun with --resume"
        ) from error


def _dask_executor(workers: int, address: str | None) -> DaskExecutor:
    from distributed import Client, LocalCluster  # heavy: only when Dask is asked for

    if address is not None:
        try:
            return DaskExecutor(Client(address, timeout="30s"))
        except OSError as error:
            raise PotstillError(f"cannot reach the Dask scheduler at {address}: {error}") from error
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return DaskExecutor(Client(cluster), cluster)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread, then restore the thread count: a job computes
    the same numbers in this process as in a worker, and parallel jobs share the cores."""
    import torch  # heavy: only where a job runs

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _single_threaded() -> None:
    """Worker start-up: one BLAS thread per worker process (workers share the cores),
    and a watch on the parent: a worker whose parent was killed (kill -9 leaves no
    chance to stop it) exits within a second instead of computing on as an orphan."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="potstill-parent-watch", daemon=True).start()
