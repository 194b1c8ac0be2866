"""Resumable Langevin MD watched by a per-atom uncertainty (IDEAL's driver, seed 003 S9):
a run cut at any step and continued from its saved state is the uninterrupted run, the
thermostat holds the schedule's temperature, and an uncertain step stops the run."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from potstill.sampling.langevin import MDState, run_langevin, temperature_at


def _state(seed=0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    return MDState.start(atoms, 300.0, seed)


def _options(**extra):
    options = dict(
        schedule=[[40, 300.0], [400, 600.0]],
        timestep_fs=2.0,
        friction_per_fs=0.02,
        check_every=5,
        score=lambda atoms: np.linalg.norm(atoms.get_momenta(), axis=1),
    )
    return options | extra


def test_schedule_blocks_follow_each_other():
    schedule = [[10, 200.0], [30, 800.0]]
    assert [temperature_at(schedule, s) for s in (0, 9, 10, 39, 40, 99)] == [
        200.0,
        200.0,
        800.0,
        800.0,
        800.0,
        800.0,
    ]


def test_a_run_continued_from_its_saved_state_is_the_uninterrupted_run(tmp_path):
    whole, segment = run_langevin(_state(), EMT(), end_step=60, frame_every=10, **_options())
    first, part = run_langevin(_state(), EMT(), end_step=25, frame_every=10, **_options())
    first.save(tmp_path / "md.npz")
    resumed = MDState.load(tmp_path / "md.npz")
    assert resumed.step == 25
    last, rest = run_langevin(resumed, EMT(), end_step=60, frame_every=10, **_options())
    # the same steps, to rounding (the forces of the first step are recomputed)
    np.testing.assert_allclose(last.atoms.positions, whole.atoms.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(last.atoms.get_momenta(), whole.atoms.get_momenta(), atol=1e-10)
    np.testing.assert_array_equal(
        np.concatenate([part.trace["step"], rest.trace["step"]]), segment.trace["step"]
    )
    assert list(part.frame_steps) + list(rest.frame_steps) == [10, 20, 30, 40, 50, 60]
    assert segment.outcome == "finished"


def test_the_thermostat_reaches_the_scheduled_temperature():
    state, segment = run_langevin(_state(), EMT(), end_step=440, **_options())
    hot = segment.trace["temperature_K"][segment.trace["step"] > 200]
    assert np.mean(hot) == pytest.approx(600.0, rel=0.15)


def test_an_uncertain_step_stops_the_run_and_returns_its_scores():
    threshold = 0.0  # every atom moves: the first check is uncertain
    state, segment = run_langevin(_state(), EMT(), end_step=100, threshold=threshold, **_options())
    assert segment.outcome == "flagged" and state.step == 5
    assert segment.scores.shape == (len(state.atoms),) and segment.scores.max() > threshold


def test_an_unphysical_run_stops():
    state = _state()
    state.atoms.positions[1] = state.atoms.positions[0] + [0.3, 0.0, 0.0]  # atoms overlap
    _, segment = run_langevin(state, EMT(), end_step=100, min_distance_A=1.0, **_options())
    assert segment.outcome == "unstable"
