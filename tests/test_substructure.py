"""IDEAL's building blocks (seed 003): the differentiable Mahalanobis uncertainty, and
substructures cut around uncertain atoms (crop, embed) that keep the uncertain atoms'
environments exactly and move only their surroundings toward the training data."""

import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list

from potstill.descriptors import AEVDescriptor, make_descriptor
from potstill.models import Committee
from potstill.models.ani import ANIModel
from potstill.sampling.substructure import (
    SubstructureConfig,
    build_substructures,
    crop,
    embed,
    group_uncertain,
)
from potstill.uncertainty.committee import CommitteeUncertainty
from potstill.uncertainty.mahalanobis import MahalanobisUncertainty

A = 3.506  # Li SNAP lattice constant, A
CUTOFF = 4.5


def _crystals(n=8, rattle=0.06):
    frames = []
    for k in range(n):
        atoms = bulk("Li", "bcc", a=A, cubic=True).repeat(3)
        atoms.rattle(rattle, seed=k)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def uncertainty():
    descriptor = AEVDescriptor(["Li"], aev="demo")
    descriptor.aev_config = type(descriptor.aev_config)(
        **{**descriptor.aev_config.__dict__, "radial_cutoff": CUTOFF}
    )
    descriptor._build(["Li"])
    return MahalanobisUncertainty(descriptor=descriptor).fit(_crystals())


def _hot_frame(seed=5, moved=(7, 60)):
    atoms = bulk("Li", "bcc", a=A, cubic=True).repeat((5, 5, 5))
    atoms.rattle(0.06, seed=seed)
    for i in moved:
        atoms.positions[i] += [0.7, -0.4, 0.3]
    return atoms


def _finite_difference(u, atoms, index, axis, h=1e-4):
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[index, axis] += h
    minus.positions[index, axis] -= h
    # float64 scores (with_gradient's): per_atom scores float32 descriptors
    return (u.with_gradient(plus)[0].sum() - u.with_gradient(minus)[0].sum()) / (2 * h)


def test_mahalanobis_gradient_is_the_finite_difference_of_the_total(uncertainty):
    atoms = _crystals(1, rattle=0.15)[0]
    scores, gradient = uncertainty.with_gradient(atoms)
    np.testing.assert_allclose(scores, uncertainty.per_atom([atoms])[0], rtol=1e-4)
    for index, axis in [(0, 0), (13, 1), (40, 2)]:
        fd = _finite_difference(uncertainty, atoms, index, axis)
        assert gradient[index, axis] == pytest.approx(fd, rel=2e-3, abs=1e-3 * abs(gradient).max())


def test_mahalanobis_gradient_with_soap_matches_finite_differences():
    soap = make_descriptor("soap", species=["Li"], r_cut=4.0, n_max=3, l_max=2)
    u = MahalanobisUncertainty(descriptor=soap, ridge=1.0).fit(_crystals(4))
    atoms = _crystals(1, rattle=0.15)[0]
    _, gradient = u.with_gradient(atoms)
    for index, axis in [(2, 0), (30, 2)]:
        fd = _finite_difference(u, atoms, index, axis, h=1e-5)
        assert gradient[index, axis] == pytest.approx(fd, rel=1e-2, abs=1e-3 * abs(gradient).max())


def test_committee_spread_gradient_is_the_finite_difference_of_the_total():
    """The committee std of atomic energies, IDEAL's second uncertainty, has the same
    interface: its gradient is the derivative of the summed stds, and it can embed."""
    members = [ANIModel.from_preset("demo", ["Li"], seed=k).double() for k in range(3)]
    u = CommitteeUncertainty(Committee(members))
    atoms = _crystals(1, rattle=0.15)[0]
    scores, gradient = u.with_gradient(atoms)
    np.testing.assert_allclose(scores, u.per_atom([atoms])[0], rtol=1e-6)
    for index, axis in [(1, 0), (33, 2)]:
        fd = _finite_difference(u, atoms, index, axis, h=1e-5)
        assert gradient[index, axis] == pytest.approx(fd, rel=1e-4, abs=1e-8)
    frame = _hot_frame()
    config = SubstructureConfig(mode="ides", embed_steps=10)
    cropped = crop(
        frame, np.array([7]), u, config, core_radius_A=CUTOFF, rng=np.random.default_rng(1)
    )
    ides = embed(cropped, u, config)
    assert ides.info["embed_objective"] < ides.info["crop_objective"]


def test_saved_statistics_score_the_same(uncertainty, tmp_path):
    uncertainty.save(tmp_path / "u.npz")
    again = MahalanobisUncertainty(descriptor=uncertainty.descriptor).load(tmp_path / "u.npz")
    frame = _hot_frame()
    np.testing.assert_array_equal(again.per_atom([frame])[0], uncertainty.per_atom([frame])[0])


def test_uncertain_atoms_group_by_distance():
    atoms = _hot_frame()
    scores = np.zeros(len(atoms))
    near = int(np.argsort(atoms.get_distances(7, range(len(atoms)), mic=True))[1])
    scores[[7, near, 60]] = [10.0, 9.0, 8.0]
    groups = group_uncertain(atoms, scores, 1.0, merge_A=3.2, max_groups=4)
    assert [g.tolist() for g in groups] == [[7, near], [60]]
    assert len(group_uncertain(atoms, scores, 1.0, merge_A=3.2, max_groups=1)) == 1


@pytest.mark.parametrize("mode", ["periodic", "vacuum"])
def test_crop_keeps_the_uncertain_atoms_environment_exactly(uncertainty, mode):
    """The core (every atom within the cutoff of the uncertain atom) is cut out as is,
    so the uncertain atom's descriptor in the substructure is the one in the frame."""
    frame = _hot_frame()
    config = SubstructureConfig(mode=mode, min_distance_A=2.0)
    sub = crop(
        frame,
        np.array([7]),
        uncertainty,
        config,
        core_radius_A=CUTOFF,
        rng=np.random.default_rng(0),
    )
    assert 20 < len(sub.atoms) < len(frame)
    centre = int(np.flatnonzero(sub.source == 7)[0])
    descriptor = uncertainty.descriptor
    np.testing.assert_allclose(
        descriptor(sub.atoms)[centre], descriptor(frame)[7], rtol=1e-5, atol=1e-6
    )
    assert sub.core[centre]
    expected_core = np.flatnonzero(frame.get_distances(7, range(len(frame)), mic=True) <= CUTOFF)
    assert sorted(sub.source[sub.core]) == sorted(expected_core)
    if mode == "periodic":  # no pair closer than the limit across the new boundary
        assert neighbor_list("d", sub.atoms, config.min_distance_A).size == 0
        assert sub.info["candidates"] == config.candidates


def test_crop_search_takes_the_least_uncertain_box(uncertainty):
    frame = _hot_frame()
    one = SubstructureConfig(mode="periodic", candidates=1)
    many = SubstructureConfig(mode="periodic", candidates=40)
    rng = np.random.default_rng(3)
    single = [
        crop(frame, np.array([60]), uncertainty, one, core_radius_A=CUTOFF, rng=rng)
        for _ in range(5)
    ]
    best = crop(frame, np.array([60]), uncertainty, many, core_radius_A=CUTOFF, rng=rng)
    mean = np.mean(uncertainty.per_atom([best.atoms])[0])
    assert mean == pytest.approx(best.info["crop_mean_uncertainty"], rel=1e-5)
    assert mean <= best.info["crop_mean_uncertainty_worst"]
    assert mean <= np.median([s.info["crop_mean_uncertainty"] for s in single])


def test_embedding_lowers_the_uncertainty_and_leaves_the_core_alone(uncertainty):
    frame = _hot_frame()
    config = SubstructureConfig(mode="ides", embed_steps=30, max_displacement_A=0.4)
    cropped = crop(
        frame,
        np.array([7]),
        uncertainty,
        config,
        core_radius_A=CUTOFF,
        rng=np.random.default_rng(1),
    )
    ides = embed(cropped, uncertainty, config)
    before = uncertainty.per_atom([cropped.atoms])[0]
    after = uncertainty.per_atom([ides.atoms])[0]
    surrounding = ~cropped.core  # the atoms the descent moves toward the training data
    assert np.mean(after) < np.mean(before)
    assert np.mean(after[surrounding]) < 0.8 * np.mean(before[surrounding])
    assert ides.info["embed_mean_uncertainty"] == pytest.approx(np.mean(after), rel=1e-5)
    assert ides.info["embed_surrounding_uncertainty"] == pytest.approx(
        np.mean(after[surrounding]), rel=1e-5
    )
    moved = np.linalg.norm(ides.atoms.positions - cropped.atoms.positions, axis=1)
    assert np.all(moved[cropped.core] == 0.0)
    assert moved.max() <= config.max_displacement_A + 1e-9 and moved.max() > 0
    assert neighbor_list("d", ides.atoms, config.min_distance_A).size == 0


def test_a_frame_smaller_than_the_box_is_tiled(uncertainty):
    """A 10.5 A frame cannot hold a box around a 4.5 A core: its images fill the box, and
    the substructure is as large as one cut from a large frame."""
    small = _crystals(1)[0]
    config = SubstructureConfig(mode="periodic")
    sub = crop(
        small,
        np.array([3]),
        uncertainty,
        config,
        core_radius_A=CUTOFF,
        rng=np.random.default_rng(0),
    )
    big = crop(
        _hot_frame(),
        np.array([60]),
        uncertainty,
        config,
        core_radius_A=CUTOFF,
        rng=np.random.default_rng(0),
    )
    assert len(sub.atoms) > len(small) and abs(len(sub.atoms) - len(big.atoms)) < 25
    assert sub.source.max() < len(small)
    centre = int(np.flatnonzero(sub.source == 3)[0])
    descriptor = uncertainty.descriptor
    np.testing.assert_allclose(
        descriptor(sub.atoms)[centre], descriptor(small)[3], rtol=1e-5, atol=1e-6
    )


def test_build_substructures_caps_the_groups(uncertainty):
    frame = _hot_frame(moved=(7, 60, 200))
    scores = uncertainty.per_atom([frame])[0]
    threshold = np.sort(scores)[-4]
    config = SubstructureConfig(mode="periodic", max_groups=2)
    subs = build_substructures(
        frame,
        scores,
        threshold,
        uncertainty,
        config,
        core_radius_A=CUTOFF,
        seed=(0,),
    )
    assert len(subs) == 2
    assert subs[0].info["group_scores"][0] == scores.max()
