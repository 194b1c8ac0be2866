"""The GPAW reference, run for real on 2-atom Al cells (about a second per calculation).

- forces and stress are derivatives of the stored (force-consistent) energy;
- an SCF that does not converge is retried, then recorded on the frame, not fatal;
- labeling killed with SIGKILL resumes without computing a stored DFT label again
  (GPAW calls counted by the counting wrapper around the real calculator).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from counting_reference import calls
from potstill.frames import get_labels
from potstill.labeling import label_store
from potstill.references import ReferenceConfig, make_calculator
from potstill.store import Store

pytest.importorskip("gpaw")

HERE = Path(__file__).parent
CHEAP = {"cutoff_eV": 200.0, "kpts": [1, 1, 1]}


def _al_pair(seed: int = 0):
    """A 2-atom orthorhombic Al cell with the first atom displaced (Angstrom)."""
    atoms = bulk("Al", "fcc", a=4.05, orthorhombic=True)
    rng = np.random.default_rng(seed)
    atoms.positions[0] += [0.05, -0.03, 0.02] + 0.02 * rng.standard_normal(3)
    atoms.info["step"] = seed
    return atoms


def _free_energy(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(force_consistent=True)


def test_stored_forces_and_stress_are_derivatives_of_the_stored_energy(tmp_path):
    options = {"cutoff_eV": 350.0, "kpts": [2, 2, 2]}
    store = Store(tmp_path / "pool.db")
    store.add([_al_pair()])
    result = label_store(store, ReferenceConfig(kind="gpaw", name="dft", options=options))
    assert result["labeled"] == 1
    frame = store.get()[0]
    labels = get_labels(frame, "dft", require=("energy", "forces", "stress"))
    calc = make_calculator("gpaw", **options)
    assert labels.energy == pytest.approx(_free_energy(frame, calc), abs=1e-6)
    step = 0.005  # Angstrom, and strain
    moved = [frame.copy(), frame.copy()]
    moved[0].positions[0, 0] += step
    moved[1].positions[0, 0] -= step
    force = -(_free_energy(moved[0], calc) - _free_energy(moved[1], calc)) / (2 * step)
    assert labels.forces[0, 0] == pytest.approx(force, abs=2e-4)
    assert abs(force) > 0.05  # a displaced atom feels a force worth checking
    strained = []
    for sign in (1, -1):
        atoms = frame.copy()
        cell = atoms.cell[:].copy()
        cell[0] *= 1 + sign * step
        atoms.set_cell(cell, scale_atoms=True)
        strained.append(_free_energy(atoms, calc))
    stress_xx = (strained[0] - strained[1]) / (2 * step) / frame.get_volume()
    # a fixed cutoff adds a small Pulay stress (1-2 % at 350 eV)
    assert labels.stress[0] == pytest.approx(stress_xx, rel=0.03)


def test_an_unconverged_scf_is_retried_then_recorded_on_the_frame(tmp_path):
    store = Store(tmp_path / "pool.db")
    store.add([_al_pair(0), _al_pair(1)])
    reference = ReferenceConfig(kind="gpaw", name="dft", options={**CHEAP, "maxiter": 2})
    result = label_store(store, reference, retries=1)
    assert result["labeled"] == 0 and len(result["failed"]) == 2
    frame = store.get()[0]
    assert frame.info["dft_label_attempts"] == 2
    assert "converge" in frame.info["dft_label_error"].lower()
    assert "dft_energy" not in frame.info


def test_bad_gpaw_options_are_one_line():
    from potstill.errors import PotstillError

    with pytest.raises(PotstillError, match="exactly one of kpts"):
        make_calculator("gpaw", cutoff_eV=300)
    with pytest.raises(PotstillError, match="unknown smearing"):
        make_calculator("gpaw", kpts=[1, 1, 1], smearing="cold")


def test_dft_labeling_killed_resumes_without_computing_a_stored_label_again(tmp_path):
    store = Store(tmp_path / "pool.db")
    store.add([_al_pair(seed) for seed in range(6)])
    log = tmp_path / "calls.log"
    options = json.dumps({"inner": "gpaw", "log": str(log), **CHEAP})
    args = [
        *(sys.executable, "-c", "from potstill.cli import main; main()"),
        *("label", str(tmp_path / "pool.db"), "--reference", "counting_reference:make_calculator"),
        *("--name", "dft", "--chunk", "1", "--executor", "serial", "--options", options),
    ]
    env = {**os.environ, "PYTHONPATH": str(HERE), "POTSTILL_KILL_AT": "label-write:3"}
    killed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    assert sorted(calls(log)) == [0, 1, 2]  # three labels stored, then killed
    env.pop("POTSTILL_KILL_AT")
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert sorted(calls(log)) == list(range(6))  # each frame computed exactly once
    assert json.loads(resumed.stdout)["already_labeled"] == 3
    energies = [f.info["dft_energy"] for f in Store(tmp_path / "pool.db", create=False).get()]
    assert len(energies) == 6 and np.all(np.isfinite(energies))
