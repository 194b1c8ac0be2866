"""The FCC order parameter (seed 000 SI eq. 2): limits, invariances, derivatives."""

import numpy as np
import pytest
from ase.build import bulk

from potstill.descriptors.order_parameter import fcc_order_parameter, order_parameter_of
from potstill.errors import PotstillError


def _fcc(n=3, a=3.52):
    return bulk("Ni", "fcc", a=a, cubic=True).repeat((n, n, n))


def test_perfect_crystal_gives_number_of_atoms_and_liquid_order_one():
    atoms = _fcc(3)
    assert order_parameter_of(atoms) == pytest.approx(108.0, rel=1e-12)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(50):
        atoms.positions = rng.uniform(0, 1, (108, 3)) @ atoms.cell.array
        values.append(order_parameter_of(atoms))
    assert 0.6 < np.mean(values) < 1.4  # E|S|^2 = N for random positions


def test_invariant_under_translation_and_affine_deformation():
    rng = np.random.default_rng(1)
    atoms = _fcc(2)
    atoms.rattle(0.15, seed=2)
    o = order_parameter_of(atoms)
    shifted = atoms.copy()
    shifted.translate([0.3, -1.1, 2.0])
    assert order_parameter_of(shifted) == pytest.approx(o, rel=1e-10)
    strained = atoms.copy()
    strained.set_cell(
        atoms.cell.array @ (np.eye(3) + 0.05 * rng.standard_normal((3, 3))), scale_atoms=True
    )
    assert order_parameter_of(strained) == pytest.approx(o, rel=1e-10)
    assert o < 32.0


def test_gradients_equal_finite_differences():
    atoms = _fcc(2)
    atoms.rattle(0.2, seed=3)
    cell = atoms.cell.array @ (
        np.eye(3) + np.array([[0.02, 0.01, 0], [0, -0.01, 0.03], [0.0, 0.0, 0.01]])
    )
    pos = atoms.positions
    op = fcc_order_parameter(pos, cell)
    h = 1e-6
    fd_pos = np.zeros_like(pos)
    for i in range(len(pos)):
        for k in range(3):
            p, m = pos.copy(), pos.copy()
            p[i, k] += h
            m[i, k] -= h
            fd_pos[i, k] = (
                fcc_order_parameter(p, cell).value - fcc_order_parameter(m, cell).value
            ) / (2 * h)
    np.testing.assert_allclose(op.grad_positions, fd_pos, atol=1e-6)
    fd_cell = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            p, m = cell.copy(), cell.copy()
            p[a, b] += h
            m[a, b] -= h
            fd_cell[a, b] = (
                fcc_order_parameter(pos, p).value - fcc_order_parameter(pos, m).value
            ) / (2 * h)
    np.testing.assert_allclose(op.grad_cell, fd_cell, atol=1e-6)
    # affine invariance: no virial from the order-parameter term
    np.testing.assert_allclose(pos.T @ op.grad_positions + cell.T @ op.grad_cell, 0.0, atol=1e-9)


def test_wrong_atom_count_is_a_clear_error():
    with pytest.raises(PotstillError, match="4 n\\^3 atoms"):
        order_parameter_of(_fcc(2)[:31])


def test_lower_triangular_cells_take_the_closed_form_inverse():
    from potstill.descriptors.order_parameter import _inverse

    cell = np.array([[7.1, 0.0, 0.0], [0.4, 6.9, 0.0], [-0.3, 0.2, 7.3]])
    np.testing.assert_allclose(_inverse(cell), np.linalg.inv(cell), rtol=1e-13)
