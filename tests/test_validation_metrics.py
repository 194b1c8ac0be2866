"""Error metrics on hand-made numbers, pool errors on labeled frames, parity plots."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.units import GPa

from potstill.errors import MissingLabelError, PotstillError
from potstill.frames import set_labels
from potstill.report.plots import parity_panel, parity_plot
from potstill.validation.metrics import error_metrics, pool_errors, pool_pairs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_error_metrics_known_values():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    pred = ref + np.array([0.0, 1.0, -2.0, 3.0])
    m = error_metrics(pred, ref)
    assert m["mae"] == pytest.approx(1.5)
    assert m["rmse"] == pytest.approx(np.sqrt(3.5))
    assert m["l4"] == pytest.approx(24.5**0.25)
    assert m["max"] == pytest.approx(3.0)
    assert m["n"] == 4


def test_l4_punishes_outliers_more_than_rmse():
    # same RMSE (0.1): one error of 1.0 among 100 versus 100 errors of 0.1
    ref = np.zeros(100)
    spread = np.full(100, 0.1)
    outlier = np.zeros(100)
    outlier[0] = 1.0
    m_spread, m_out = error_metrics(spread, ref), error_metrics(outlier, ref)
    assert m_out["rmse"] == pytest.approx(m_spread["rmse"]) == pytest.approx(0.1)
    assert m_out["l4"] == pytest.approx(0.01**0.25)
    assert m_out["l4"] > 3 * m_spread["l4"]


def test_error_metrics_rejects_bad_input():
    with pytest.raises(PotstillError, match="shape"):
        error_metrics([1.0, 2.0], [1.0])
    with pytest.raises(PotstillError, match="empty"):
        error_metrics([], [])


def _pool(n_frames=3, stress=True, seed=0):
    """Labeled Cu frames and predictions with known offsets."""
    rng = np.random.default_rng(seed)
    frames, predictions = [], []
    for i in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 1 + i))  # 4, 8, 12 atoms
        n = len(atoms)
        forces = rng.normal(size=(n, 3))
        labels = dict(energy=-3.5 * n, forces=forces)
        if stress:
            labels["stress"] = rng.normal(scale=0.01, size=6)
        set_labels(atoms, "eam", **labels)
        frames.append(atoms)
        predictions.append(
            {
                # energy off by 2 meV/atom, every force component by 0.05 eV/A
                "energy": labels["energy"] + 0.002 * n * (-1) ** i,
                "forces": forces + 0.05,
                "stress": (labels["stress"] - 0.1 * GPa) if stress else None,
            }
        )
    return frames, predictions


def test_pool_errors_recovers_known_offsets():
    frames, predictions = _pool()
    result = pool_errors(frames, predictions, "eam")
    assert result["n_frames"] == 3
    assert result["n_atoms"] == 4 + 8 + 12
    assert result["n_stress_frames"] == 3
    assert result["energy_eV_per_atom"]["mae"] == pytest.approx(0.002)
    assert result["energy_meV_per_atom"]["rmse"] == pytest.approx(2.0)
    assert result["energy_meV_per_atom"]["n"] == 3
    assert result["forces_eV_per_A"]["l4"] == pytest.approx(0.05)
    assert result["forces_eV_per_A"]["n"] == 3 * 24
    assert result["stress_GPa"]["max"] == pytest.approx(0.1)
    assert result["stress_eV_per_A3"]["mae"] == pytest.approx(0.1 * GPa)


def test_pool_errors_skips_stress_when_frames_have_none():
    frames, predictions = _pool(stress=False)
    result = pool_errors(frames, predictions, "eam")
    assert "stress_GPa" not in result and "stress_eV_per_A3" not in result
    assert result["n_stress_frames"] == 0


def test_pool_errors_clear_errors():
    frames, predictions = _pool()
    with pytest.raises(MissingLabelError, match="dft"):
        pool_errors(frames, predictions, "dft")
    with pytest.raises(PotstillError, match="empty"):
        pool_errors([], [], "eam")
    with pytest.raises(PotstillError, match="2 predictions for 3 frames"):
        pool_errors(frames, predictions[:2], "eam")
    predictions[1] = {**predictions[1], "stress": None}
    with pytest.raises(PotstillError, match="prediction 1 has no 'stress'"):
        pool_errors(frames, predictions, "eam")


def test_parity_plot_and_panel_write_pngs(tmp_path):
    frames, predictions = _pool()
    pairs = pool_pairs(frames, predictions, "eam")
    single = parity_plot(
        *pairs["forces_eV_per_A"], quantity="force", unit="eV/A", path=tmp_path / "f.png"
    )
    panel = parity_panel(pairs, path=tmp_path / "sub" / "panel.png", title="test")
    for path in (single, panel):
        assert path.read_bytes()[:8] == PNG_MAGIC
    # many points switch to a hexbin; still a PNG
    rng = np.random.default_rng(1)
    ref = rng.normal(size=6000)
    big = parity_plot(ref, ref + 0.1, quantity="x", unit="u", path=tmp_path / "big.png")
    assert big.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(PotstillError, match="PNG"):
        parity_plot(ref, ref, quantity="x", unit="u", path=tmp_path / "x.pdf")
