"""Every registered selector passes one shared suite (unique indices, n respected, same
seed -> same indices, excluded frames never picked, clear one-line errors), then the
physics of each: FPS and Mahalanobis find the outlier, RND finds the liquid frame among
solids, uniform-energy spans the energy range, grid's counts add up level by level, the
streaming covariance equals numpy's batch result."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from conftest import emt_frames
from potstill.errors import PotstillError
from potstill.frames import labels_from_calculator, set_labels
from potstill.selection import available, make_selector
from potstill.selection.bins import equal_width_bins
from potstill.store import Store
from potstill.uncertainty.mahalanobis import StreamingGaussian
from potstill.uncertainty.rnd import RNDScorer

# options each selector needs on the EMT-labeled test pool (reference "emt")
OPTIONS = {
    "uniform-energy": {"reference": "emt"},
    "local-energy": {"reference": "emt"},
    "force": {"reference": "emt"},
    "grid": {"reference": "emt"},
    "threshold": {"score": "score", "k": 0.5},
    "rnd": {"train_steps": 20, "batch_size": 4},  # the greedy default is tested below
    "committee": {
        "reference": "emt",
        "n_chunks": 2,
        "committee": 2,
        "overrides": {"hidden": [8]},
        "train": {"max_epochs": 2, "batch_size": 8},
    },
}
# selectors that read labels or info entries (a bare frame is an error for them)
NEEDS_LABELS = {"uniform-energy", "local-energy", "force", "grid", "threshold", "committee"}
SELECTORS = available()


def _emt(atoms):
    atoms.calc = EMT()
    return labels_from_calculator(atoms, "emt")


def _pool():
    """40 EMT-labeled 32-atom frames: rattled FCC Ni, some with Cu, hot and compressed ones."""
    frames = emt_frames(28, seed=3)
    rng = np.random.default_rng(7)
    for k in range(12):
        atoms = bulk("Ni", "fcc", a=3.52 - 0.02 * (k % 4), cubic=True).repeat(2)
        if k % 3 == 0:
            atoms.symbols[rng.choice(32, size=6, replace=False)] = "Cu"
        atoms.rattle(0.05 + 0.02 * k, seed=100 + k)
        frames.append(_emt(atoms))
    for i, atoms in enumerate(frames):
        atoms.info["score"] = float(atoms.info["emt_energy"]) / len(atoms)
    return frames


POOL = _pool()


def _select(name, candidates, n, seed=0, **kwargs):
    selector = make_selector(name, **OPTIONS.get(name, {}))
    return selector.select(candidates, n, rng=np.random.default_rng(seed), **kwargs)


def _one_line_error(call):
    with pytest.raises(PotstillError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    return message


# -- the shared suite -------------------------------------------------------------------
@pytest.mark.parametrize("name", SELECTORS)
def test_unique_indices_within_budget(name):
    indices = _select(name, POOL, 7)
    assert isinstance(indices, np.ndarray) and np.issubdtype(indices.dtype, np.integer)
    assert len(set(indices.tolist())) == len(indices)
    assert ((indices >= 0) & (indices < len(POOL))).all()
    if name == "threshold":  # only frames above the threshold, at most n
        assert 1 <= len(indices) <= 7
    else:
        assert len(indices) == 7


@pytest.mark.parametrize("name", SELECTORS)
def test_same_seed_same_indices(name):
    first = _select(name, POOL, 6, seed=11)
    again = _select(name, POOL, 6, seed=11)
    assert first.tolist() == again.tolist()


@pytest.mark.parametrize("name", SELECTORS)
def test_excluded_frames_are_never_picked(name):
    exclude = [0, 3, 4, 17, 29, 35]
    indices = _select(name, POOL, 8, exclude=exclude)
    assert not set(indices.tolist()) & set(exclude)
    if name != "threshold":
        rest = len(POOL) - len(exclude)  # the whole remainder: exactly the complement
        everything = _select(name, POOL, rest, exclude=np.array(exclude))
        assert sorted(everything.tolist()) == sorted(set(range(len(POOL))) - set(exclude))


@pytest.fixture(scope="module")
def stored_pool(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("pool") / "pool.db")
    return store.frames(store.add(POOL), chunk=16)


@pytest.mark.parametrize("name", SELECTORS)
def test_a_lazy_store_view_gives_the_same_picks(name, stored_pool):
    assert (
        _select(name, stored_pool, 5, exclude=[2]).tolist()
        == _select(name, POOL, 5, exclude=[2]).tolist()
    )


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("n", [0, -1, len(POOL) + 1, 2.5])
def test_impossible_budget_is_a_clear_error(name, n):
    _one_line_error(lambda: _select(name, POOL, n))


@pytest.mark.parametrize("name", SELECTORS)
def test_budget_counts_excluded_frames(name):
    message = _one_line_error(lambda: _select(name, POOL, len(POOL) - 1, exclude=[1, 2]))
    assert "already selected" in message


@pytest.mark.parametrize("name", SELECTORS)
def test_empty_pool_and_bad_exclude_are_clear_errors(name):
    assert "empty" in _one_line_error(lambda: _select(name, [], 1))
    _one_line_error(lambda: _select(name, POOL, 2, exclude=[len(POOL)]))


@pytest.mark.parametrize("name", sorted(NEEDS_LABELS & set(SELECTORS)))
def test_missing_label_is_a_clear_error(name):
    bare = [bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2) for _ in range(5)]
    for k, atoms in enumerate(bare):
        atoms.rattle(0.05, seed=k)
    _one_line_error(lambda: _select(name, bare, 2))


@pytest.mark.parametrize("name", SELECTORS)
def test_unknown_option_is_a_clear_error(name):
    message = _one_line_error(lambda: make_selector(name, no_such_option=1))
    assert name in message


# -- fps --------------------------------------------------------------------------------
def _solids_with(outliers, n_solid=20, seed=5):
    frames = emt_frames(n_solid, seed=seed)
    return frames + outliers, list(range(n_solid, n_solid + len(outliers)))


def _liquid(seed=0):
    """A disordered 32-atom Ni frame (rattled far beyond any solid)."""
    atoms = bulk("Ni", "fcc", a=3.60, cubic=True).repeat(2)
    atoms.rattle(0.45, seed=seed)
    return _emt(atoms)


def _compressed():
    atoms = bulk("Ni", "fcc", a=3.25, cubic=True).repeat(2)
    atoms.rattle(0.03, seed=9)
    return _emt(atoms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fps_picks_the_outlier_first_or_second(seed):
    frames, (outlier,) = _solids_with([_compressed()])
    assert outlier in _select("fps", frames, 2, seed=seed).tolist()


def test_fps_starts_from_excluded_frames():
    frames, (outlier,) = _solids_with([_compressed()])
    assert _select("fps", frames, 1, exclude=[0]).tolist() == [outlier]


# -- mahalanobis ------------------------------------------------------------------------
def test_streaming_statistics_equal_numpy_batch_results():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6) * 3
    gaussian = StreamingGaussian(6)
    for x in data:
        gaussian.update(x)
    covariance = np.cov(data, rowvar=False)
    assert gaussian.count == 60
    np.testing.assert_allclose(gaussian.mean, data.mean(axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(gaussian.covariance, covariance, rtol=1e-10, atol=1e-12)
    precision = np.linalg.inv(covariance)
    scale = np.abs(precision).max()
    np.testing.assert_allclose(gaussian.precision, precision, rtol=0, atol=1e-8 * scale)
    probe = rng.normal(size=(5, 6))
    centred = probe - data.mean(axis=0)
    expected = np.einsum("ij,jk,ik->i", centred, precision, centred)
    np.testing.assert_allclose(gaussian.distances(probe), expected, rtol=1e-8)


def test_batch_merge_then_rank_one_updates_equal_numpy():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(40, 5)) * [1.0, 2.0, 0.5, 3.0, 1.0] + 10.0
    for ridge in (0.0, 0.3):
        gaussian = StreamingGaussian(5, ridge=ridge)
        gaussian.update_many(data[:3])  # rank-one
        gaussian.update_many(data[3:30])  # batch merge
        gaussian.update_many(data[30:])  # rank-one again
        centred = data - data.mean(axis=0)
        expected = 39 * np.linalg.inv(centred.T @ centred + ridge * np.eye(5))
        np.testing.assert_allclose(gaussian.mean, data.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(gaussian.covariance, np.cov(data, rowvar=False), rtol=1e-10)
        atol = 1e-8 * np.abs(expected).max()
        np.testing.assert_allclose(gaussian.precision, expected, rtol=0, atol=atol)


def test_streaming_inverse_with_ridge_is_exact_from_the_first_vector():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(4, 6))  # fewer vectors than dimensions: singular without ridge
    gaussian = StreamingGaussian(6, ridge=0.5)
    gaussian.update_many(data)
    scatter = (data - data.mean(axis=0)).T @ (data - data.mean(axis=0))
    expected = 3 * np.linalg.inv(scatter + 0.5 * np.eye(6))
    atol = 1e-8 * np.abs(expected).max()
    np.testing.assert_allclose(gaussian.precision, expected, rtol=0, atol=atol)
    with pytest.raises(PotstillError, match="singular"):
        unregularised = StreamingGaussian(6)
        unregularised.update_many(data)
        unregularised.precision


@pytest.mark.parametrize("seed", [0, 1])
def test_mahalanobis_picks_the_outlier_early(seed):
    frames, (outlier,) = _solids_with([_compressed()])
    assert outlier in _select("mahalanobis", frames, 2, seed=seed).tolist()


# -- rnd --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnd_picks_the_liquid_frame_early(seed):
    frames, (liquid,) = _solids_with([_liquid(seed)], n_solid=30, seed=seed)
    picks = make_selector("rnd").select(frames, 3, rng=np.random.default_rng(seed))
    assert liquid in picks.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnd_retrained_predictor_skips_the_twin_of_a_picked_frame(seed):
    # without retraining after the first pick, the liquid's near-copy is the next pick
    liquid = _liquid(seed)
    twin = liquid.copy()
    twin.rattle(0.01, seed=99)
    frames, twins = _solids_with([liquid, _emt(twin)], n_solid=30, seed=seed)
    picks = make_selector("rnd").select(frames, 4, rng=np.random.default_rng(seed))
    assert len(set(picks.tolist()) & set(twins)) == 1


def test_rnd_training_lowers_the_distance_of_trained_descriptors():
    rng = np.random.default_rng(0)
    seen, unseen = rng.normal(size=(200, 8)), rng.normal(loc=3.0, size=(200, 8))
    scorer = RNDScorer(8, seed=0, train_steps=300, lr=3e-3)
    before = scorer.distances(seen).mean()
    scorer.train(seen)
    assert scorer.distances(seen).mean() < 0.2 * before
    assert scorer.distances(unseen).mean() > 3 * scorer.distances(seen).mean()


def test_rnd_batch_mode_picks_batches():
    selector = make_selector("rnd", batch_size=4, train_steps=10)
    picks = selector.select(POOL, 8, rng=np.random.default_rng(0))
    assert len(set(picks.tolist())) == 8 and len(selector.scores_) == 8


# -- uniform-energy ---------------------------------------------------------------------
def test_uniform_energy_spans_the_energy_range():
    energies = np.array([a.info["emt_energy"] / len(a) for a in POOL])
    selector = make_selector("uniform-energy", reference="emt")
    picks = selector.select(POOL, 8, rng=np.random.default_rng(0))
    chosen = energies[picks]
    assert chosen.min() < selector.edges_[1] and chosen.max() >= selector.edges_[-2]

    # each bin holding frames gets one before any bin gets a second
    def bin_of(values):
        return np.minimum(np.searchsorted(selector.edges_, values, side="right") - 1, 7)

    counts = np.bincount(bin_of(chosen), minlength=8)[np.unique(bin_of(energies))]
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(
    "seed, n, bins, exclude, expected",
    [  # picked by uniform-energy's own loop, before it moved to selection.bins
        (0, 7, None, (), [39, 37, 33, 38, 31, 36, 15]),
        (0, 8, None, (0, 3, 4, 17, 29, 35), [39, 38, 33, 37, 36, 34, 31, 15]),
        (5, 10, 3, (), [37, 38, 39, 0, 10, 15, 5, 4, 14, 16]),
        (3, 12, 20, (1, 2), [31, 33, 35, 38, 39, 36, 37, 32, 34, 19, 5, 7]),
    ],
)
def test_uniform_energy_picks_survive_the_shared_bin_picker(seed, n, bins, exclude, expected):
    selector = make_selector("uniform-energy", reference="emt", bins=bins)
    picks = selector.select(POOL, n, rng=np.random.default_rng(seed), exclude=list(exclude))
    assert picks.tolist() == expected


# -- local-energy -----------------------------------------------------------------------
def _flatness(frames, picks, bins):
    """Entropy of the picked atoms' energy histogram over the pool's non-empty bins of
    ``bins`` equal-width bins, over its maximum log(number of such bins): 1 is flat."""
    energies = [atoms.arrays["emt_energies"] for atoms in frames]
    everything = np.concatenate(energies)
    edges = np.linspace(everything.min(), everything.max(), bins + 1)
    occupied = np.histogram(everything, edges)[0] > 0
    counts = np.histogram(np.concatenate([energies[i] for i in picks]), edges)[0][occupied]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(occupied.sum()))


def _local_energy(n, seed=0, bins=None, exclude=()):
    selector = make_selector("local-energy", reference="emt", bins=bins)
    return selector.select(POOL, n, rng=np.random.default_rng(seed), exclude=exclude)


def test_local_energy_flattens_the_skewed_atomic_energy_histogram():
    # POOL's 1,280 atomic energies: 94 % in one of 8 bins, a few hot atoms up to 20 eV
    flat = [_flatness(POOL, _local_energy(8, seed=seed, bins=8), 8) for seed in range(3)]
    random = [_flatness(POOL, _select("random", POOL, 8, seed=seed), 8) for seed in range(50)]
    assert min(flat) > 0.5  # random: 0.16 on average, 0.44 at best over 200 seeds
    assert np.mean(random) < 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_local_energy_fills_the_emptiest_bin_counting_excluded_atoms(seed):
    # restate the rule step by step: the frame picked has an atom in a bin with the
    # fewest atoms of the frames taken so far (the excluded ones included), among the
    # bins that still hold atoms of frames not taken
    exclude = list(range(10))  # near-equilibrium frames: their atoms fill the bulk bins
    picks = _local_energy(12, seed=seed, bins=8, exclude=exclude)
    energies = [atoms.arrays["emt_energies"] for atoms in POOL]
    atom_bin = equal_width_bins(np.concatenate(energies), 8)[0]
    bins_of = np.split(atom_bin, np.cumsum([len(e) for e in energies])[:-1])
    taken = set(exclude)
    for frame in picks.tolist():
        counts = np.bincount(np.concatenate([bins_of[i] for i in taken]), minlength=8)
        rest = [bins_of[i] for i in range(len(POOL)) if i not in taken]
        open_bins = np.unique(np.concatenate(rest))
        fewest = open_bins[counts[open_bins] == counts[open_bins].min()]
        assert set(bins_of[frame].tolist()) & set(fewest.tolist()), (frame, counts, fewest)
        taken.add(frame)


def test_local_energy_counts_excluded_atoms_as_selected():
    # two bins: atomic energy 0 eV or 1 eV; the excluded frames 1 and 3 put 8 atoms in
    # the 1 eV bin, so the first two picks come from the empty 0 eV bin: frames 0, 2, 4
    per_atom = [[0] * 4, [1] * 4, [0, 0, 0, 1], [1] * 4, [0] * 4, [1] * 4, [1] * 4, [1] * 4]
    frames = []
    for energies in per_atom:
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
        frames.append(set_labels(atoms, "emt", energy=sum(energies), energies=np.array(energies)))
    selector = make_selector("local-energy", reference="emt", bins=2)
    for seed in range(10):  # ignoring the excluded atoms, a seed picks 5, 6 or 7 w.p. 3/8
        picks = selector.select(frames, 2, rng=np.random.default_rng(seed), exclude=[1, 3])
        assert set(picks.tolist()) <= {0, 2, 4}


def test_a_frame_without_atomic_energies_is_a_one_line_error():
    frames = [atoms.copy() for atoms in POOL[:6]]
    del frames[3].arrays["emt_energies"]
    message = _one_line_error(lambda: _select("local-energy", frames, 2))
    assert (
        message.startswith("frame 3 has no emt per-atom energies") and "uniform-energy" in message
    )


# -- force ------------------------------------------------------------------------------
def test_force_spans_the_force_range_and_takes_the_violent_frame():
    largest = np.array([np.linalg.norm(a.arrays["emt_forces"], axis=1).max() for a in POOL])
    for seed in range(3):  # random picks the top frame with chance 6/40 per seed
        selector = make_selector("force", reference="emt")
        picks = selector.select(POOL, 6, rng=np.random.default_rng(seed))
        np.testing.assert_allclose(selector.values_, largest, rtol=1e-12)
        assert int(np.argmax(largest)) in picks.tolist()
        assert np.ptp(largest[picks]) > 0.8 * np.ptp(largest)  # random: 0.27 on average
        # each bin holding frames gets one before any bin gets a second
        bin_of = np.minimum(np.searchsorted(selector.edges_, largest, side="right") - 1, 5)
        counts = np.bincount(bin_of[picks], minlength=6)[np.unique(bin_of)]
        assert counts.max() - counts.min() <= 1


def test_force_reduces_by_the_mean_norm_on_request():
    selector = make_selector("force", reference="emt", reduce="mean", bins=3)
    selector.select(POOL, 4, rng=np.random.default_rng(0))
    mean = [np.linalg.norm(a.arrays["emt_forces"], axis=1).mean() for a in POOL]
    np.testing.assert_allclose(selector.values_, mean, rtol=1e-12)
    assert "reduce" in _one_line_error(lambda: make_selector("force", reduce="median"))


# -- grid -------------------------------------------------------------------------------
def _with_points(order_parameters, enthalpies):
    frames = []
    for o, h in zip(order_parameters, enthalpies):
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True)
        atoms.info.update(order_parameter=float(o), enthalpy=float(h))
        frames.append(atoms)
    return frames


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_counts_add_up_level_by_level(seed):
    rng = np.random.default_rng(42)
    frames = _with_points(rng.uniform(0, 32, 400), rng.uniform(-140, -120, 400))
    selector = make_selector("grid", levels=(0.2, 0.5, 1.0, 3.0))
    picks = selector.select(frames, 100, rng=np.random.default_rng(seed))
    levels = selector.levels_
    assert [level["delta_O"] for level in levels] == [0.2, 0.5, 1.0, 3.0]
    assert levels[0]["total"] == 400
    for level, following in zip(levels, levels[1:] + [None]):
        assert level["selected"] + level["deleted"] == level["total"]
        if following:
            assert following["total"] == level["selected"]
    # the coarsest survivors come first, pairwise more than delta_O apart (O, scaled H)
    survivors = picks[: levels[-1]["selected"]]
    scaled = selector.points_[survivors] / [1.0, selector.enthalpy_scale_]
    gaps = np.abs(scaled[:, None] - scaled[None]).max(-1) + np.eye(len(scaled)) * 1e9
    assert gaps.min() > 3.0
    assert len(picks) == 100 and levels[-1]["selected"] < 100


def test_grid_thins_known_clusters_and_keeps_excluded_frames():
    frames = _with_points([0.0, 0.015, 0.1, 1.0, 5.0, 5.01], [0.0] * 6)
    selector = make_selector("grid", levels=(0.02,), enthalpy_scale=1.0)
    picks = selector.select(frames, 4, rng=np.random.default_rng(0))
    assert selector.levels_ == [{"delta_O": 0.02, "total": 6, "selected": 4, "deleted": 2}]
    assert {2, 3} <= set(picks.tolist())
    assert len({0, 1} & set(picks.tolist())) == 1 and len({4, 5} & set(picks.tolist())) == 1
    # an excluded frame is kept and deletes its neighbour: 1 and 5 can no longer be first
    picks = selector.select(frames, 3, rng=np.random.default_rng(0), exclude=[0, 4])
    assert sorted(picks[:2].tolist()) == [2, 3]
    assert selector.levels_[0]["total"] == 4 and selector.levels_[0]["deleted"] == 2


def test_grid_computes_order_parameter_and_enthalpy_when_missing():
    perfect = _emt(bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2))
    frames = [perfect] + POOL[:5]
    selector = make_selector("grid", reference="emt", pressure_bar=1e4)
    selector.select(frames, 2, rng=np.random.default_rng(0))
    order, enthalpy = selector.points_[0]
    assert order == pytest.approx(32.0, rel=1e-9)  # O = N_atoms for a perfect crystal
    pv = 1e4 * 1e5 * 1e-30 * perfect.get_volume() / 1.602176634e-19  # bar * A^3 -> eV
    assert enthalpy == pytest.approx(perfect.info["emt_energy"] + pv, rel=1e-6)
    assert (selector.points_[1:, 0] < 32.0).all()  # rattled frames are less ordered


# -- threshold --------------------------------------------------------------------------
def test_threshold_returns_frames_above_mu_plus_k_sigma_highest_first():
    scores = np.r_[np.linspace(-1, 1, 11), [0.5, 9.0, 4.0, 0.8]]
    frames = _with_points(np.zeros(len(scores)), np.zeros(len(scores)))
    for atoms, score in zip(frames, scores):
        atoms.info["uq"] = score
    selector = make_selector("threshold", score="uq", k=3.0, window=11)
    picks = selector.select(frames, 5, rng=np.random.default_rng(0))
    reference = scores[:11]
    assert selector.threshold_ == pytest.approx(reference.mean() + 3 * reference.std())
    assert picks.tolist() == [12, 13]  # 9.0 then 4.0; 0.5 and 0.8 are below 1.9
    assert make_selector("threshold", score="uq", window=11).select(
        frames, 1, rng=np.random.default_rng(0)
    ).tolist() == [12]
    by_callable = make_selector(
        "threshold", score=lambda a: a.info["uq"], reference_scores=reference
    )
    assert by_callable.select(frames, 5, rng=np.random.default_rng(0)).tolist() == [12, 13]
    # the already-selected frames are the default reference window
    assert (
        make_selector("threshold", score="uq", k=1.0)
        .select(frames, 5, rng=np.random.default_rng(0), exclude=[12, 13])
        .tolist()
        == []
    )


# -- committee ------------------------------------------------------------------------
_SMALL_COMMITTEE = {
    "reference": "emt",
    "n_chunks": 2,
    "committee": 3,
    "overrides": {"hidden": [16, 16]},
    "train": {"max_epochs": 40, "batch_size": 4, "lr": 3e-3},
}


@pytest.mark.parametrize("seed", [0, 1])
def test_committee_picks_the_compressed_and_liquid_frames_of_the_second_chunk(seed):
    # chunk 0: 10 near-equilibrium solids; chunk 1: 8 more solids and two frames unlike
    # anything trained on, which the members disagree about most
    frames = emt_frames(18, seed=seed)
    frames.insert(13, _compressed())
    frames.insert(17, _liquid(seed))
    selector = make_selector("committee", **_SMALL_COMMITTEE)
    picks = selector.select(frames, 6, rng=np.random.default_rng(seed))
    second = picks[3:].tolist()  # chunk 1's quota of 3, highest score first
    assert set(second[:2]) == {13, 17}
    assert set(picks[:3].tolist()) <= set(range(10))  # chunk 0: random among its own frames
    chunk = selector.chunks_[1]
    assert chunk["picked"] == 3 and chunk["score_max_eV"] > 3 * chunk["score_median_eV"]
    assert np.isnan(selector.scores_[:3]).all() and (np.diff(selector.scores_[3:]) <= 0).all()


def test_committee_trains_first_on_the_excluded_frames(monkeypatch):
    # excluded frames count as already in the training set: every committee trains on them
    from potstill.learning import CommitteeLearner

    frames = emt_frames(16, seed=4)
    selector = make_selector("committee", **{**_SMALL_COMMITTEE, "n_chunks": 3})
    trained_on = []
    real_retrain = CommitteeLearner.retrain

    def spy(self, training, *args, **kwargs):
        trained_on.append(
            [next(i for i, f in enumerate(frames) if f is atoms) for atoms in training]
        )
        return real_retrain(self, training, *args, **kwargs)

    monkeypatch.setattr(CommitteeLearner, "retrain", spy)
    picks = selector.select(frames, 6, rng=np.random.default_rng(0), exclude=[0, 5])
    assert len(trained_on) == 2  # before chunks 1 and 2
    assert trained_on[0] == [0, 5, *picks[:2].tolist()]
    assert trained_on[1] == [0, 5, *picks[:4].tolist()]


# -- quests -----------------------------------------------------------------------------
def _quests_frames():
    """Eight 4-atom Ni cells (two with Cu): quests' numba kernels are fast on them."""
    frames = emt_frames(8, seed=6, size=1)
    frames[2].symbols[0] = "Cu"
    frames[5].symbols[[1, 3]] = "Cu"
    return frames


QUESTS_FRAMES = _quests_frames()


@pytest.mark.parametrize("method", ["fps", "msc"])
def test_quests_picks_what_quests_own_compressor_picks(method):
    import numba
    from quests.compression.compress import DatasetCompressor

    expected = DatasetCompressor(QUESTS_FRAMES).get_indices(method, 4)
    threads = numba.get_num_threads()
    selector = make_selector("quests", method=method)
    for seed in (0, 1):  # deterministic: the rng is unused
        picks = selector.select(QUESTS_FRAMES, 4, rng=np.random.default_rng(seed))
        assert picks.tolist() == [int(i) for i in expected]
    assert numba.get_num_threads() == threads  # one thread inside, restored after
    assert set(selector.timings_) == {"descriptors", "selection"}
    random = _select("random", QUESTS_FRAMES, 4)
    assert set(picks.tolist()) != set(random.tolist())


@pytest.mark.parametrize("method", ["fps", "msc"])
def test_quests_runs_without_the_excluded_frames_or_conditioned_on_them(method):
    from quests.compression.compress import DatasetCompressor
    from quests.descriptor import get_descriptors

    exclude, free = [1, 4], np.array([0, 2, 3, 5, 6, 7])
    compressor = DatasetCompressor([QUESTS_FRAMES[i] for i in free])
    if method == "fps":  # no notion of coverage: the other frames only
        expected = compressor.get_indices("fps", 3)
    else:  # msc_conditional with the excluded frames as its reference set
        reference = [get_descriptors([QUESTS_FRAMES[i]]) for i in exclude]
        expected = compressor.get_indices("msc_conditional", 3, reference=reference)
    selector = make_selector("quests", method=method)
    picks = selector.select(QUESTS_FRAMES, 3, rng=np.random.default_rng(0), exclude=exclude)
    assert picks.tolist() == free[np.asarray(expected, dtype=int)].tolist()


def test_quests_multicomponent_uses_the_pools_species():
    from quests.compression.compress import DatasetCompressor
    from quests.descriptor import get_descriptors_multicomponent

    def describe(atoms):
        return get_descriptors_multicomponent([atoms], species=["Cu", "Ni"])

    expected = DatasetCompressor(QUESTS_FRAMES, describe).get_indices("fps", 4)
    selector = make_selector("quests", method="fps", multicomponent=True, threads=2)
    picks = selector.select(QUESTS_FRAMES, 4, rng=np.random.default_rng(0))
    assert selector.species_ == ["Cu", "Ni"]
    assert picks.tolist() == [int(i) for i in expected]


def test_quests_missing_is_a_one_line_error(monkeypatch):
    import importlib
    import sys

    import potstill.selection.quests as module

    monkeypatch.setitem(sys.modules, "quests", None)  # as if not installed
    try:
        importlib.reload(module)
        message = _one_line_error(lambda: make_selector("quests"))
    finally:
        monkeypatch.undo()
        importlib.reload(module)
    assert message.startswith("selector 'quests' needs the quests package: pip install quests")
    assert "method" in _one_line_error(lambda: make_selector("quests", method="kmeans"))
