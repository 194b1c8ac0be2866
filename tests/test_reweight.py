"""Reweighting MOMT samples to canonical temperatures: exact two-state limits."""

import numpy as np
import pytest
from ase import units

from potstill.errors import PotstillError
from potstill.sampling.reweight import log_weights, phase_balance, reweighted_histogram


def test_unbiased_samples_at_t0_weigh_equally():
    h = np.random.default_rng(0).normal(-100, 2, 500)
    np.testing.assert_allclose(np.exp(log_weights(h, np.zeros_like(h), 1500.0, 1500.0)), 1 / 500)


def test_two_state_melting_point_is_recovered():
    # solid: H = -130 eV, liquid: H = -125 eV; a MOMT bias made both equally visited at T0.
    # With n_s, n_l samples and biases b_s, b_l the exact ratio is
    # P_l/P_s = n_l exp(-H_l/kT + (H_l + b_l)/kT0) / (n_s exp(-H_s/kT + (H_s + b_s)/kT0)).
    T0 = 1600.0
    h_s, h_l, b_s, b_l = -130.0, -125.0, 0.0, -0.3
    n_s, n_l = 300, 500
    h = np.r_[np.full(n_s, h_s), np.full(n_l, h_l)]
    o = np.r_[np.full(n_s, 25.0), np.full(n_l, 1.0)]
    bias = np.r_[np.full(n_s, b_s), np.full(n_l, b_l)]
    temps = np.linspace(1000, 2500, 61)
    balance = phase_balance(h, o, bias, T0_K=T0, temperatures_K=temps, o_split=10.0)
    kT = units.kB * temps
    log_ratio = np.log(n_l / n_s) - (h_l - h_s) / kT + (h_l + b_l - h_s - b_s) / (units.kB * T0)
    np.testing.assert_allclose(balance.dG_eV, -kT * log_ratio, rtol=1e-10)
    # dG = 0 where (h_l - h_s)/kT = ln(n_l/n_s) + (h_l + b_l - h_s - b_s)/kT0
    c = np.log(n_l / n_s) + (h_l + b_l - h_s - b_s) / (units.kB * T0)
    assert balance.melting_K == pytest.approx((h_l - h_s) / (units.kB * c), rel=2e-3)
    assert balance.p_solid[0] > 0.99 and balance.p_solid[-1] < 0.01


def test_histogram_is_normalised_and_all_one_phase_is_a_clear_error():
    h = np.linspace(-10, 0, 100)
    o = np.linspace(0, 30, 100)
    hist = reweighted_histogram(
        h,
        o,
        np.zeros(100),
        T0_K=1000,
        T_K=1200,
        h_edges=np.linspace(-10, 0, 11),
        o_edges=np.linspace(0, 30, 7),
    )
    assert hist.sum() == pytest.approx(1.0)
    with pytest.raises(PotstillError, match="never crossed"):
        phase_balance(
            h, np.full(100, 25.0), np.zeros(100), T0_K=1000, temperatures_K=[900, 1100], o_split=10
        )
