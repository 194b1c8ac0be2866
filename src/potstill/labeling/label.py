"""Labeling: frames labeled by a reference over an executor, each label kept as it lands.

:func:`label_frames` sends frames to the executor in jobs of ``chunk`` frames; a worker
builds the reference once (:class:`~potstill.references.ReferenceConfig` is picklable)
and labels each frame of the job, so one bad frame fails alone. Results come back as
they complete. A frame whose reference call raised is tried again, up to ``retries``
more times, then reported as failed with the error text and the number of attempts.

:func:`label_store` labels the frames of a store that lack the reference's labels:
each finished job is written in one transaction, a failure is recorded on the frame
(``info["<name>_label_error"]``, ``info["<name>_label_attempts"]``), each label keeps
the seconds its reference call took (``info["<name>_seconds"]``), and a rerun labels
only what is still missing, so an interrupted run recomputes nothing that was stored.
Frames that failed before are skipped unless ``retry_failed``.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from ase import Atoms

from potstill.claims import Claims
from potstill.errors import PotstillError
from potstill.executors import SerialExecutor, fan_out
from potstill.faults import kill_point
from potstill.frames import has_labels, labels_from_calculator, strip
from potstill.references import Reference, ReferenceConfig
from potstill.store import Store

__all__ = [
    "Labeled",
    "attempts_key",
    "check_failures",
    "error_key",
    "label_frames",
    "label_store",
    "seconds_key",
]

_REFERENCES: dict[str, Reference] = {}  # per process: a reference is built once
# dropped at exit while modules still exist (GPAW's finalisers need theirs)
atexit.register(_REFERENCES.clear)


def error_key(name: str) -> str:
    """``info`` key of the last error of reference ``name`` on a frame."""
    return f"{name}_label_error"


def seconds_key(name: str) -> str:
    """``info`` key of the wall seconds the reference ``name`` took to label a frame."""
    return f"{name}_seconds"


def attempts_key(name: str) -> str:
    """``info`` key of how often reference ``name`` was tried on a frame and failed."""
    return f"{name}_label_attempts"


@dataclass(frozen=True)
class Labeled:
    """The outcome for frame ``index``: the labeled frame, or the error after
    ``attempts`` tries."""

    index: int
    frame: Atoms | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class _Job:
    reference: ReferenceConfig
    frames: tuple[tuple[int, Atoms], ...]  # (index, frame)


def label_frames(
    frames: Sequence[Atoms],
    reference: ReferenceConfig,
    *,
    executor: Executor | None = None,
    chunk: int = 1,
    retries: int = 2,
    previous_attempts: Sequence[int] | None = None,
    claim: Callable[[list[int]], list[int]] | None = None,
) -> Iterator[list[Labeled]]:
    """Label ``frames`` with ``reference``; yield each finished job's outcomes.

    A frame that fails is resubmitted alone until it has been tried ``retries + 1``
    times in all (counting ``previous_attempts``), then yielded with its error.
    ``claim(indices)``, called as each job is about to be submitted, returns the
    indices this writer may label (the others are left to whoever claimed them).
    """
    if chunk < 1 or retries < 0:
        raise PotstillError(f"need chunk >= 1 and retries >= 0, got {chunk} and {retries}")
    attempts = list(previous_attempts) if previous_attempts is not None else [0] * len(frames)
    executor = executor or SerialExecutor()
    todo = list(range(len(frames)))
    while todo:
        jobs = _jobs(frames, todo, reference, chunk, claim)
        todo = []
        for job, future in fan_out(executor, label_job, jobs):
            try:
                outcomes = future.result()
            except Exception as error:  # noqa: BLE001 - the worker died: every frame of the job failed
                outcomes = [(i, None, _one_line(error)) for i, _ in job.frames]
            finished = []
            for index, frame, error in outcomes:
                attempts[index] += frame is None
                if frame is None and attempts[index] <= retries:
                    todo.append(index)  # tried again, alone
                    continue
                finished.append(Labeled(index, frame, error, attempts[index]))
            if finished:
                yield finished
        chunk = 1


def _jobs(
    frames, indices: list[int], reference: ReferenceConfig, chunk: int, claim
) -> Iterator[_Job]:
    """Jobs of ``chunk`` frames, made as the executor has room (claiming them then)."""
    for start in range(0, len(indices), chunk):
        mine = indices[start : start + chunk]
        mine = claim(mine) if claim is not None else mine
        if mine:
            yield _Job(reference, tuple((i, frames[i]) for i in mine))


def label_job(job: _Job) -> list[tuple[int, Atoms | None, str | None]]:
    """Label the frames of one job where it runs: (index, labeled frame or None, error)."""
    reference = _reference(job.reference)
    timeout = job.reference.timeout_s
    outcomes = []
    for index, atoms in job.frames:
        if timeout is None:
            frame, error = _label(reference, atoms)
        else:
            frame, error = _label_isolated(reference, atoms, timeout)
        outcomes.append((index, frame, error))
    return outcomes


def _label(reference: Reference, atoms: Atoms) -> tuple[Atoms | None, str | None]:
    """One frame labeled here: (labeled frame, None) or (None, the error)."""
    frame = strip(atoms)
    reset = getattr(reference.calculator, "reset", None)  # GPAW's new calculator has none
    if callable(reset):
        reset()  # a retry computes again: no results cached from the failed attempt
    frame.calc = reference.calculator
    try:
        started = time.perf_counter()
        labeled = labels_from_calculator(frame, reference.name)
        labeled.info[seconds_key(reference.name)] = time.perf_counter() - started
        return labeled, None
    except Exception as error:  # noqa: BLE001 - a reference that raises is recorded, not fatal
        return None, _one_line(error)


def _label_isolated(
    reference: Reference, atoms: Atoms, timeout_s: float
) -> tuple[Atoms | None, str | None]:
    """One frame labeled in a forked child process that is killed after ``timeout_s``: a
    call that hangs, or crashes its process (a segfault, an abort), fails alone."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_label_into, args=(reference, atoms, sender), daemon=True)
    child.start()
    sender.close()
    try:
        if receiver.poll(timeout_s):
            return receiver.recv()
        child.kill()
        return None, f"TimeoutError: the reference took longer than {timeout_s:g} s (timeout_s)"
    except EOFError:  # the child died before it could answer
        child.join()
        return None, f"the reference's process died (exit code {child.exitcode})"
    finally:
        child.join(timeout=5)
        receiver.close()


def _label_into(reference: Reference, atoms: Atoms, sender) -> None:
    faulthandler.disable()  # a crash here is the reference's, reported by the parent
    sender.send(_label(reference, atoms))
    sender.close()


def label_store(
    store: Store,
    reference: ReferenceConfig,
    *,
    ids: Sequence[int] | None = None,
    executor: Executor | None = None,
    chunk: int = 1,
    retries: int = 2,
    retry_failed: bool = False,
    progress=None,
) -> dict:
    """Label the frames of ``store`` (rows ``ids``, default all) that lack
    ``reference.name`` labels; see the module docstring. Returns counts and the ids of
    the frames that failed."""
    name = reference.name
    claims = Claims(store.url)
    rows = store.frames(ids)
    todo, skipped, attempts = [], [], []
    for row_id, atoms in zip(rows.ids, rows):
        if has_labels(atoms, name):
            continue
        tried = int(atoms.info.get(attempts_key(name), 0))
        if tried and not retry_failed:
            skipped.append(row_id)
            continue
        todo.append((row_id, atoms))
        attempts.append(0 if retry_failed else tried)
    task = (
        progress.add_task(f"labeling with {reference.kind}", total=len(todo)) if progress else None
    )
    labeled, failed, errors = 0, [], {}
    frames = [atoms for _, atoms in todo]
    for outcomes in label_frames(
        frames,
        reference,
        executor=executor,
        chunk=chunk,
        retries=retries,
        previous_attempts=attempts,
        claim=lambda indices: _claim(claims, store, todo, indices, name),
    ):
        done = [
            (todo[o.index][0], _without_failure(o.frame, name))
            for o in outcomes
            if o.frame is not None
        ]
        if done:
            store.update(
                [i for i, _ in done],
                [f for _, f in done],
                delete_keys=(error_key(name), attempts_key(name)),
            )
            labeled += len(done)
            kill_point("label-write")
        for o in outcomes:
            if o.frame is None:
                row_id, atoms = todo[o.index]
                atoms.info.update({error_key(name): o.error, attempts_key(name): o.attempts})
                store.update([row_id], [atoms])
                failed.append(row_id)
                errors[row_id] = o.error
        claims.release([todo[o.index][0] for o in outcomes], name)
        if progress is not None:
            progress.update(task, advance=len(outcomes))
    by_others = len(todo) - labeled - len(failed)
    return {
        "reference": name,
        "labeled": labeled,
        "already_labeled": len(rows) - len(todo) - len(skipped),
        "failed": failed,
        "skipped_failed": skipped,
        "labeled_by_others": by_others,
        "errors": errors,
    }


def _claim(claims: Claims, store: Store, todo: list, indices: list[int], name: str) -> list[int]:
    """The positions of ``indices`` (into ``todo``) whose rows this writer claimed and
    that are still unlabeled (another writer may have labeled them since ``todo`` was
    read, and released them)."""
    granted = claims.claim([todo[i][0] for i in indices], name)
    done = [row for row, atoms in zip(granted, store.get(granted)) if has_labels(atoms, name)]
    if done:
        claims.release(done, name)
    mine = set(granted) - set(done)
    return [i for i in indices if todo[i][0] in mine]


def check_failures(results: dict, retry: str) -> None:
    """Raise one :class:`PotstillError` line when :func:`label_store` left frames
    unlabeled (``results["failed"]`` or ``results["skipped_failed"]``); ``retry`` says
    how to try them again."""
    failed = list(results["failed"]) + list(results["skipped_failed"])
    if not failed:
        return
    first = results.get("errors", {}).get(failed[0], "failed in an earlier run")
    raise PotstillError(
        f"reference {results['reference']!r} failed on {len(failed)} frame(s) (row {failed[0]}: {first}); "
        f"{results['labeled']} frames labeled and stored, the failures are recorded on the frames: "
        f"fix the reference, then {retry}"
    )


def _without_failure(frame: Atoms, name: str) -> Atoms:
    for key in (error_key(name), attempts_key(name)):
        frame.info.pop(key, None)
    return frame


def _reference(config: ReferenceConfig) -> Reference:
    key = json.dumps(config.model_dump(), sort_keys=True, default=str)
    if key not in _REFERENCES:
        _REFERENCES[key] = config.build()
    return _REFERENCES[key]


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
