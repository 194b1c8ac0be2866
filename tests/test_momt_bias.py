"""The MOMT bias grid: smooth (C1) interpolation, extrapolation and Wang-Landau updates."""

import numpy as np
import pytest

from potstill.errors import PotstillError
from potstill.sampling.bias import BiasGrid, WangLandau


def _grid(seed=0):
    rng = np.random.default_rng(seed)
    return BiasGrid((-10.0, 10.0), (0.0, 30.0), rng.normal(size=(12, 15)))


@pytest.mark.parametrize(
    "h, o", [(0.3, 7.1), (-9.9, 0.2), (9.95, 29.9), (14.0, 12.0), (3.0, -4.0), (-13.0, 35.0)]
)
def test_derivatives_equal_finite_differences(h, o):
    grid = _grid()
    value, d_h, d_o = grid.evaluate(h, o)
    eps = 1e-6
    fd_h = (grid.evaluate(h + eps, o)[0] - grid.evaluate(h - eps, o)[0]) / (2 * eps)
    fd_o = (grid.evaluate(h, o + eps)[0] - grid.evaluate(h, o - eps)[0]) / (2 * eps)
    assert d_h == pytest.approx(fd_h, abs=1e-6)
    assert d_o == pytest.approx(fd_o, abs=1e-6)


def test_interpolation_passes_through_nodes_and_is_c1_everywhere():
    grid = _grid(1)
    hc, oc = grid.centres()
    assert grid.evaluate(hc[4], oc[7])[0] == pytest.approx(grid.values[4, 7], abs=1e-12)
    # derivatives continuous across node lines and across the grid edges
    for h in (hc[3], hc[0], hc[-1]):
        left, right = grid.evaluate(h - 1e-9, 11.0), grid.evaluate(h + 1e-9, 11.0)
        np.testing.assert_allclose(left, right, atol=1e-6)
    for o in (oc[5], oc[0], oc[-1]):
        left, right = grid.evaluate(2.0, o - 1e-9), grid.evaluate(2.0, o + 1e-9)
        np.testing.assert_allclose(left, right, atol=1e-6)


def test_wang_landau_deposits_kT_lnf_flattens_and_freezes():
    grid = BiasGrid.empty((0.0, 4.0), (0.0, 4.0), 4, 4, ln_f=1.0)
    schedule = WangLandau(
        ln_f0=1.0, ln_f_final=0.2, flatness=0.8, max_stage_updates=10**6, min_mean_visits=1
    )
    assert grid.deposit(1.5, 2.5, kT=0.1)
    assert not grid.deposit(99.0, 0.5, kT=0.1)  # outside the grid
    assert grid.values[1, 2] == pytest.approx(0.1)
    assert grid.values[0, 2] == pytest.approx(0.1 * np.exp(-0.5))
    assert not grid.advance(schedule)  # one bin visited: not yet flat
    for h in (0.5, 0.5, 0.5, 1.5, 2.5, 3.5):
        grid.deposit(h, 0.5, kT=0.1)
    assert not grid.advance(schedule)  # counts 3, 1, 1, 1, 1: min 1 < 0.8 x mean 1.4
    for h in (1.5, 2.5, 3.5):
        grid.deposit(h, 0.5, kT=0.1)
    grid.deposit(1.5, 2.5, kT=0.1)  # counts 3, 2, 2, 2, 2: flat
    assert grid.is_flat(0.8, min_mean_visits=1) and not grid.is_flat(0.8, min_mean_visits=20)
    assert grid.advance(schedule) and grid.ln_f == 0.5 and grid.histogram.sum() == 0
    for _ in range(2):
        grid.deposit(0.5, 0.5, kT=0.1)
        grid.deposit(0.5, 1.5, kT=0.1)
        assert grid.advance(schedule) or grid.frozen
    assert grid.frozen and grid.ln_f < 0.2
    before = grid.values.copy()
    assert not grid.deposit(0.5, 0.5, kT=0.1)
    np.testing.assert_array_equal(grid.values, before)


def test_save_and_load_round_trip(tmp_path):
    grid = _grid(2)
    grid.deposit(0.0, 5.0, kT=0.2)
    grid.save(tmp_path / "bias.npz")
    again = BiasGrid.load(tmp_path / "bias.npz")
    np.testing.assert_array_equal(again.values, grid.values)
    np.testing.assert_array_equal(again.visits, grid.visits)
    assert again.evaluate(1.0, 2.0) == grid.evaluate(1.0, 2.0)
    (tmp_path / "bad.npz").write_bytes(b"not a bias")
    with pytest.raises(PotstillError, match="cannot read the MOMT bias"):
        BiasGrid.load(tmp_path / "bad.npz")


def test_bad_grid_is_a_clear_error():
    with pytest.raises(PotstillError, match="high > low"):
        BiasGrid.empty((1.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="ln_f_final"):
        WangLandau(ln_f0=0.1, ln_f_final=1.0)


def test_slope_limit_removes_cliffs_that_would_reverse_the_forces():
    grid = _grid(3)
    grid.values[6:, :] -= 20.0  # a cliff: d(dH)/dH far below -1
    raised = grid.limit_slopes(0.2)
    assert raised > 0
    h = np.linspace(-9.9, 9.9, 400)
    slopes = [grid.evaluate(x, o)[1] for x in h for o in (1.0, 15.0, 29.0)]
    assert min(slopes) > 0.2 - 1.0
    assert grid.limit_slopes(0.2) == 0  # idempotent
