"""Executors and labeling over them: a real two-worker Dask LocalCluster labels a store,
each label is stored as its job returns, a reference that fails is retried and then
recorded on the frame, and a rerun recomputes nothing that was stored."""

import operator
import os
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT

from conftest import unlabeled_store
from counting_reference import calls
from potstill.errors import PotstillError
from potstill.executors import ExecutorConfig, fan_out, make_executor
from potstill.frames import get_labels, has_labels, strip
from potstill.labeling.label import attempts_key, error_key, label_store
from potstill.references import ReferenceConfig

COUNTING = "counting_reference:make_calculator"


def _outcomes(executor, jobs):
    seen = {}
    for job, future in fan_out(executor, _divide, jobs):
        try:
            seen[job] = future.result()
        except ZeroDivisionError:
            seen[job] = "failed"
    return seen


def test_fan_out_yields_each_job_as_it_finishes_with_its_own_outcome():
    jobs = [(1, 2), (1, 0), (3, 4), (5, 8)]
    expected = {(1, 2): 0.5, (1, 0): "failed", (3, 4): 0.75, (5, 8): 0.625}
    with make_executor("serial") as executor:
        assert _outcomes(executor, jobs) == expected
    with make_executor("process", workers=2) as executor:
        assert executor.workers == 2 and _outcomes(executor, jobs) == expected
    with pytest.raises(PotstillError, match="scheduler address needs"):
        make_executor("process", address="tcp://127.0.0.1:1")
    assert ExecutorConfig.model_validate("serial").kind == "serial"


def _divide(pair):
    return operator.truediv(*pair)


def test_labels_over_a_two_worker_dask_cluster_are_stored_failures_recorded_and_never_recomputed(
    tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    store = unlabeled_store(tmp_path / "pool.db", 8)
    log = tmp_path / "calls.log"
    broken = ReferenceConfig(
        kind=COUNTING, name="dft", options={"inner": "emt", "log": str(log), "fail_on": [5]}
    )
    with make_executor("dask", workers=2) as executor:
        assert executor.workers == 2
        pids = set(executor.client.run(os.getpid).values())
        results = label_store(store, broken, executor=executor, chunk=2, retries=2)
    assert len(pids) == 2 and os.getpid() not in pids  # two real worker processes
    ids = store.ids()
    assert (
        results["labeled"] == 7
        and results["failed"] == [ids[5]]
        and "node lost" in results["errors"][ids[5]]
    )
    assert sorted(calls(log)) == [
        0,
        1,
        2,
        3,
        4,
        5,
        5,
        5,
        6,
        7,
    ]  # frame 5: tried, retried twice, recorded
    frames = store.get()
    for atoms in frames:  # the labels are EMT's own numbers
        if atoms.info["step"] == 5:
            assert not has_labels(atoms, "dft") and atoms.info[attempts_key("dft")] == 3
            assert "RuntimeError: node lost on frame 5" in atoms.info[error_key("dft")]
            continue
        check = strip(atoms)
        check.calc = EMT()
        labels = get_labels(atoms, "dft", ("energy", "forces"))
        assert labels.energy == pytest.approx(check.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(labels.forces, check.get_forces(), atol=1e-12)
    # a rerun (resume) computes nothing: the seven labels are stored, the failure recorded
    log.unlink()
    with make_executor("dask", workers=2) as executor:
        again = label_store(store, broken, executor=executor, chunk=2)
    assert (
        again["labeled"] == 0
        and again["already_labeled"] == 7
        and again["skipped_failed"] == [ids[5]]
    )
    assert calls(log) == []
    # the fixed reference, asked to retry the failure, labels that frame alone
    fixed = broken.model_copy(update={"options": {**broken.options, "fail_on": []}})
    done = label_store(store, fixed, executor=make_executor("serial"), retry_failed=True)
    assert done["labeled"] == 1 and calls(log) == [5]
    assert error_key("dft") not in store.get([ids[5]])[0].info


def test_a_worker_that_dies_loses_only_its_job(tmp_path, monkeypatch):
    """A process pool whose worker is killed mid-job: the frames of that job are tried
    again elsewhere and every label ends up stored."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    store = unlabeled_store(tmp_path / "pool.db", 4)
    log = tmp_path / "calls.log"
    dying = ReferenceConfig(
        kind="counting_reference:make_dying",
        name="dft",
        options={"inner": "emt", "log": str(log), "die_on": 2, "marker": str(tmp_path / "died")},
    )
    with make_executor("dask", workers=2) as executor:
        results = label_store(store, dying, executor=executor, chunk=1, retries=2)
    assert (tmp_path / "died").exists()  # a worker process really died
    assert results["labeled"] == 4 and not results["failed"]
    assert all(has_labels(atoms, "dft") for atoms in store.get())


def test_ctrl_c_stops_a_worker_the_pool_has_not_registered_yet():
    """Ctrl-C while a worker is being spawned: the worker is a child of this process
    but not yet in the pool's table; the interrupted pool stops it too (else the exit
    waits for it forever: the flaky hang of the Ctrl-C test)."""
    import multiprocessing
    import time

    from potstill.executors import ProcessExecutor

    pool = ProcessExecutor(1)
    assert pool.submit(operator.add, 1, 2).result() == 3
    workers = [c for c in multiprocessing.active_children() if c.pid in pool._processes]
    assert len(workers) == 1
    pool._processes.clear()  # as between Process.start() and the pool's bookkeeping
    with pytest.raises(KeyboardInterrupt):
        with pool:
            raise KeyboardInterrupt
    deadline = time.monotonic() + 10
    while workers[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workers[0].is_alive()


def test_ctrl_c_reaches_fan_out_while_jobs_run():
    """A Ctrl-C that is handled while the main thread waits for running jobs (here
    simulated by ``_thread.interrupt_main``, which, like a signal caught by another
    thread, does not wake a blocked lock) is raised within seconds, not when a job ends."""
    import _thread
    import signal
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    # a suite started in the background (``cmd &``) inherits an ignored SIGINT
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    release = threading.Event()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                for _ in fan_out(pool, lambda job: release.wait(60), [1]):
                    pass
        finally:
            release.set()
            signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 10
