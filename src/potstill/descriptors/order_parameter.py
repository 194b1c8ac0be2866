"""FCC order parameter from the shortest reciprocal vectors (seed 000, SI eq. 2).

    O = 1 / (N_g N_A) * sum_{g in fcc} | sum_i exp(i g . r_i) |^2

``g`` runs over the ``N_g = 8`` shortest reciprocal vectors of the FCC lattice that
fills the *current* cell: the cell is ``n x n x n`` conventional FCC cubes (``N_A =
4 n^3`` sites), so in the basis of the cell's reciprocal vectors ``b_k`` (``b_j . a_k =
2 pi delta_jk``) the FCC {111} vectors are ``g = n (+-1, +-1, +-1) . b``. Because ``g``
follows the cell, O is unchanged by any affine deformation of cell and positions
together, and by translations. O = N_A for a perfect crystal and O(1) for a liquid
(|S(g)|^2 ~ N_A for random positions); thermal vibrations lower the crystal's value by a
Debye-Waller factor (~0.7-0.9 N_A near melting for Ni).

Units: positions and cells in Angstrom; O is dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError

# integer coordinates of the FCC {111} vectors in units of the conventional reciprocal
# basis. S(-g) is the complex conjugate of S(g), so the 8 vectors of the paper contribute
# as 4 pairs: only one of each pair is evaluated (N_g = 8 still normalises O).
_FCC_111 = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=float)
_N_G = 8


@dataclass(frozen=True)
class OrderParameter:
    """O with its derivatives for one configuration.

    ``value``: O (dimensionless). ``grad_positions``: dO/dr, (n_atoms, 3), 1/A.
    ``grad_cell``: dO/dh at fixed Cartesian positions, (3, 3), 1/A, where ``h`` is the
    ASE cell (rows are lattice vectors). Since O is invariant under affine deformations,
    ``positions.T @ grad_positions + cell.T @ grad_cell`` vanishes: the order-parameter
    term adds nothing to the virial.
    """

    value: float
    grad_positions: np.ndarray
    grad_cell: np.ndarray


def cells_per_edge(n_atoms: int) -> int:
    """``n`` such that ``n_atoms = 4 n^3`` (an n x n x n FCC supercell).

    Raises :class:`PotstillError` when ``n_atoms`` is not of that form.
    """
    n = round((n_atoms / 4.0) ** (1.0 / 3.0))
    if n < 1 or 4 * n**3 != n_atoms:
        raise PotstillError(
            f"the FCC order parameter needs an n x n x n FCC supercell (4 n^3 atoms: 4, 32, "
            f"108, 256, ...); got {n_atoms} atoms; pass n_cells explicitly or resize the system"
        )
    return n


def reciprocal_vectors(cell: np.ndarray, n_cells: int) -> np.ndarray:
    """One of each +-g pair of the 8 shortest FCC reciprocal vectors of an
    ``n_cells``-cube cell, (4, 3), 1/A."""
    return (2.0 * np.pi * n_cells) * _FCC_111 @ _inverse(cell).T


def _inverse(cell: np.ndarray) -> np.ndarray:
    """Inverse of a 3 x 3 cell; closed form for LAMMPS's lower-triangular cells (fast path
    for the MD callback)."""
    (a, b, c), (xy, ly, d), (xz, yz, lz) = cell
    if b == 0.0 and c == 0.0 and d == 0.0:
        lx = a
        return np.array(
            [
                [1.0 / lx, 0.0, 0.0],
                [-xy / (lx * ly), 1.0 / ly, 0.0],
                [(xy * yz - ly * xz) / (lx * ly * lz), -yz / (ly * lz), 1.0 / lz],
            ]
        )
    return np.linalg.inv(cell)


def fcc_order_parameter(
    positions: np.ndarray,
    cell: np.ndarray,
    *,
    n_cells: int | None = None,
    cell_gradient: bool = True,
) -> OrderParameter:
    """O of ``positions`` (n_atoms, 3) in ``cell`` (3, 3), with analytic derivatives.

    ``n_cells`` defaults to :func:`cells_per_edge` of the number of atoms. With
    ``cell_gradient=False`` ``grad_cell`` is left as zeros (MD needs only dO/dr).
    """
    positions = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    n_atoms = len(positions)
    n = cells_per_edge(n_atoms) if n_cells is None else int(n_cells)
    g = reciprocal_vectors(cell, n)  # (4, 3)
    value, weight = _structure_factor(positions, g)
    grad_positions = weight @ g  # (n_atoms, 3)
    if not cell_gradient:
        return OrderParameter(
            value=value, grad_positions=grad_positions, grad_cell=np.zeros((3, 3))
        )
    # dO/dg_k = sum_j weight_jk r_j. As a column, g_k = 2 pi n h^-1 s_k with fixed integer
    # s_k, so dg_k = -h^-1 dh g_k and dO/dh = -h^-T (sum_k dO/dg_k g_k^T).
    dO_dg = weight.T @ positions  # (4, 3)
    grad_cell = -_inverse(cell).T @ dO_dg.T @ g  # (3, 3)
    return OrderParameter(value=value, grad_positions=grad_positions, grad_cell=grad_cell)


def _structure_factor(positions: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
    """O and ``w`` with dO/dr_j = sum_k w_jk g_k, for the 4 vectors ``g`` (4, 3).

    With e_jk = exp(i g_k . r_j) and S_k = sum_j e_jk, d|S_k|^2/dr_j = -2 g_k Im(e_jk S_k*).
    """
    e = np.exp(1j * (positions @ g.T))  # (n_atoms, 4)
    s = e.sum(axis=0)
    norm = 2.0 / (_N_G * len(positions))  # each g stands for the pair +-g
    value = norm * float(np.vdot(s, s).real)
    weight = (-2.0 * norm) * (e * s.conj()).imag
    return value, weight


def order_parameter_of(atoms: Atoms, *, n_cells: int | None = None) -> float:
    """O of an ``ase.Atoms`` (dimensionless)."""
    return fcc_order_parameter(
        atoms.positions, atoms.cell.array, n_cells=n_cells, cell_gradient=False
    ).value
