"""Shared test setup: one torch thread (tests use small batches; on 2 cores a second
thread only adds contention), small labeled Ni frames from ASE's EMT."""

import os

# BLAS threads only slow the many 3x3 solves of cell relaxations on a loaded 2-core box.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk
from ase.calculators.emt import EMT

from potstill.frames import labels_from_calculator
from potstill.store import Store

torch.set_num_threads(1)


def write_config(path, data: dict, changes: dict):
    """Write the workflow YAML ``data`` to ``path`` with ``changes`` merged section by
    section (a dict updates a section's keys, anything else replaces it)."""
    import yaml

    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(data))
    return path


def emt_frames(n: int, *, seed: int = 0, size: int = 2, reference: str = "emt"):
    """``n`` rattled, strained FCC Ni frames (4 size^3 atoms) labeled by EMT."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(size)
        strain = np.eye(3) + 0.015 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        frame = labels_from_calculator(atoms, reference)
        frame.info.update(sampler="test", step=i, temperature_K=300.0)
        frames.append(frame)
    return frames


def unlabeled_store(url, n: int, *, seed: int = 8):
    """A store at ``url`` of ``n`` EMT Ni frames with their EMT labels removed (keys:
    ``info["step"]`` = 0..n-1; the energy they had is kept as ``emt_reference_energy``)."""
    frames = []
    for atoms in emt_frames(n, seed=seed):
        bare = atoms.copy()
        bare.info["emt_reference_energy"] = bare.info.pop("emt_energy")
        del bare.arrays["emt_forces"]
        bare.info.pop("emt_stress", None)
        frames.append(bare)
    store = Store(url)
    store.add(frames)
    return store


@pytest.fixture
def ni_frames():
    return emt_frames(12)


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database on the server of ``POTSTILL_TEST_POSTGRES_URL``
    (a role that may create databases; `.ci/run` starts one), dropped afterwards."""
    import uuid

    base = os.environ.get("POTSTILL_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("POTSTILL_REQUIRE_POSTGRES") == "1":
            pytest.fail(
                "POTSTILL_REQUIRE_POSTGRES=1 but no POTSTILL_TEST_POSTGRES_URL: the server did not start"
            )
        pytest.skip("set POTSTILL_TEST_POSTGRES_URL to a PostgreSQL server (.ci/run starts one)")
    import psycopg2

    name = f"potstill_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
