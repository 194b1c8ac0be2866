"""One per-atom uncertainty interface: committee std, Mahalanobis and RND score frames from
a store and, as the same objects, watch an ASE MD run step by step (record, flag, stop)."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from conftest import emt_frames
from potstill.errors import PotstillError
from potstill.models import ANIModel, Committee, PotstillCalculator
from potstill.store import Store
from potstill.uncertainty import (
    UncertaintyObserver,
    UQStats,
    available,
    frame_scores,
    make_uncertainty,
    mu_k_sigma,
)
from potstill.uncertainty.committee import CommitteeUncertainty

STEPS, INTERVAL = 20, 5


def _committee():
    members = [ANIModel.from_preset("demo", ["Ni"], hidden=(8,), seed=k) for k in range(3)]
    for k, member in enumerate(members):
        member.set_self_energies({"Ni": -4.4 + 0.01 * k})
    return Committee(members).double()


def _uncertainties():
    training = emt_frames(4, seed=11)
    return {
        "committee": CommitteeUncertainty(_committee()),
        "mahalanobis": make_uncertainty("mahalanobis", aev="demo").fit(training),
        "rnd": make_uncertainty("rnd", aev="demo", seed=3, train_steps=20).fit(training),
    }


def _md(calculator, uncertainty, **observer):
    """A short NVE run of 32 Ni atoms at 600 K; the observer and the frames it saw."""
    atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2)
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, 2.0 * units.fs)
    watch = UncertaintyObserver(uncertainty, atoms, dynamics, **observer)
    seen = []
    dynamics.attach(lambda: seen.append(atoms.copy()), interval=INTERVAL)
    dynamics.attach(watch, interval=INTERVAL)
    dynamics.run(STEPS)
    return watch, seen, dynamics


def test_the_registry_has_the_three_uncertainties():
    assert available() == ["committee", "mahalanobis", "rnd"]
    with pytest.raises(PotstillError, match="unknown uncertainty 'ensemble'"):
        make_uncertainty("ensemble")
    with pytest.raises(PotstillError, match="fit the Mahalanobis uncertainty"):
        make_uncertainty("mahalanobis").per_atom(emt_frames(1))


@pytest.mark.parametrize("name", ["committee", "mahalanobis", "rnd"])
def test_an_md_observer_records_what_the_same_object_gives_for_stored_frames(name, tmp_path):
    uncertainty = _uncertainties()[name]
    watch, seen, dynamics = _md(EMT(), uncertainty)
    assert watch.steps == [0, 5, 10, 15, 20] and dynamics.nsteps == STEPS
    assert all(s.shape == (32,) and np.isfinite(s).all() and (s >= 0).all() for s in watch.scores)
    assert len({float(s.max()) for s in watch.scores}) > 1  # the atoms moved, the scores changed
    store = Store(tmp_path / "seen.db")
    ids = store.add([atoms.copy() for atoms in seen])
    from_store = uncertainty.per_atom(store.frames(ids))
    for recorded, stored in zip(watch.scores, from_store):
        np.testing.assert_allclose(recorded, stored, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(watch.frame_scores, frame_scores(from_store), rtol=1e-5)


@pytest.mark.parametrize("name", ["committee", "mahalanobis", "rnd"])
def test_the_observer_flags_steps_above_a_threshold_and_can_stop_the_run(name):
    uncertainty = _uncertainties()[name]
    watch, _, _ = _md(EMT(), uncertainty)
    scores = watch.frame_scores
    threshold = float(np.median(scores))
    flagged, _, dynamics = _md(EMT(), uncertainty, threshold=threshold)
    assert flagged.flagged == [step for step, s in zip(flagged.steps, scores) if s > threshold]
    assert dynamics.nsteps == STEPS  # flagging alone lets the run go on
    first = next(step for step, s in zip(watch.steps, scores) if s > threshold)
    stopped, _, dynamics = _md(EMT(), uncertainty, threshold=threshold, stop=True)
    assert stopped.flagged == [first] and dynamics.nsteps == first and stopped.steps[-1] == first


def test_a_committee_driving_the_md_is_not_evaluated_twice(monkeypatch):
    committee = _committee()
    uncertainty = CommitteeUncertainty(committee)
    calls = []
    real = uncertainty.evaluate
    monkeypatch.setattr(
        uncertainty, "evaluate", lambda frames: calls.append(len(frames)) or real(frames)
    )
    watch, seen, _ = _md(PotstillCalculator(committee, dtype=torch.float64), uncertainty)
    assert calls == []  # read from the calculator's results of the step
    np.testing.assert_allclose(watch.scores[-1], real(seen[-1:]).atom_std[0], rtol=1e-10)


def test_mu_k_sigma_is_one_rule_for_values_and_accumulated_statistics():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 0.01, size=200)
    direct = mu_k_sigma(values, 3.0)
    assert direct.value == pytest.approx(values.mean() + 3 * values.std())
    streamed = mu_k_sigma(UQStats.of(values[:80]) + UQStats.of([values[80:150], values[150:]]), 3.0)
    assert streamed.value == pytest.approx(direct.value, rel=1e-10)
    with pytest.raises(PotstillError, match="at least 2 finite"):
        mu_k_sigma([1.0], 3.0)
    with pytest.raises(PotstillError, match="no atoms"):
        mu_k_sigma(UQStats.of([]), 3.0)
