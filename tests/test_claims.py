"""Two writers on one store never label a frame twice and never corrupt it: claims in the
store's own database (SQLite and a real PostgreSQL server), taken over from a writer
that died or whose claim expired."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import unlabeled_store
from counting_reference import calls
from potstill.claims import Claims
from potstill.frames import get_labels, has_labels

HERE = Path(__file__).parent
POTSTILL = [sys.executable, "-c", "from potstill.cli import main; main()"]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "pool.db")
    return request.getfixturevalue("postgres_url")


def test_claims_are_exclusive_released_and_taken_over(url):
    unlabeled_store(url, 6, seed=12)
    first, second = Claims(url), Claims(url)
    second.owner = "elsewhere:1"  # a writer on another machine
    assert first.claim([1, 2, 3], "dft") == [1, 2, 3]
    assert second.claim([2, 3, 4, 5], "dft") == [4, 5]
    assert first.claim([1, 2, 3, 4], "dft") == [1, 2, 3]  # its own, not the other's
    first.release([2], "dft")
    assert second.claim([2], "dft") == [2]
    other = Claims(url, ttl_s=0.01)
    other.owner = "elsewhere:2"
    assert other.claim([6], "dft") == [6]
    time.sleep(0.05)
    assert first.claim([6], "dft") == [6]  # expired: taken over
    dead = Claims(url)
    dead.owner = f"{first.owner.rsplit(':', 1)[0]}:999999999"  # this machine, no such process
    assert dead.claim([6], "emt") == [6] and first.claim([6], "emt") == [
        6
    ]  # its writer died: taken
    assert first.claim([1], "emt") == [1] and second.claim([1], "emt") == []  # per label name


def test_two_writers_label_each_frame_once(url, tmp_path):
    """Two `potstill label` processes on one store at once, with a slow (real, counted)
    reference: each frame is computed once, every frame ends labeled, nothing is torn."""
    store = unlabeled_store(url, 12, seed=12)
    log = tmp_path / "calls.log"
    reference = "counting_reference:make_calculator"
    options = f"{{inner: emt, log: {log}, delay_s: 0.3}}"
    config = tmp_path / "options.yaml"
    config.write_text(options)
    env = {"PYTHONPATH": str(HERE), **__import__("os").environ}
    command = [
        *POTSTILL,
        "label",
        url,
        "--reference",
        reference,
        "--name",
        "emt",
        "--chunk",
        "1",
        "--executor",
        "serial",
        "--options",
        str(config),
    ]
    writers = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, outputs):
        assert writer.returncode == 0, err[-2000:]
    assert sorted(calls(log)) == list(range(12))  # no frame computed twice
    frames = store.get()
    assert all(has_labels(a, "emt", ("energy", "forces")) for a in frames)
    for atoms in frames:
        assert get_labels(atoms, "emt").energy == pytest.approx(
            atoms.info["emt_reference_energy"], abs=1e-12
        )
    import json

    counts = [json.loads(out)["labeled"] for out, _ in outputs]
    assert sum(counts) == 12 and min(counts) > 0  # both did some of the work
