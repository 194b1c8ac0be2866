"""Molecules built from bond lengths and angles: the n-alkanes of seed 004.

:func:`alkane` builds all-trans CnH(2n+2) in vacuum (no cell, ``pbc=False``): carbons on
a planar zigzag (C-C ``cc_A``, C-C-C angle ``angle_deg``), hydrogens tetrahedral at
``ch_A``. Carbons come first (index 0 and ``n - 1`` are the terminal carbons, the pair
seed 004 pulls apart), then the hydrogens of each carbon in order. The geometry is a
start for a relaxation with the reference, not a minimum of any particular one; for
n-hexane the terminal C-C distance is about 6.3-6.4 A.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from potstill.errors import PotstillError

__all__ = ["alkane"]

TETRAHEDRAL_COS = -1.0 / 3.0  # cos(109.47 deg)


def alkane(
    n_carbons: int, *, cc_A: float = 1.53, ch_A: float = 1.09, angle_deg: float = 112.0
) -> Atoms:
    """All-trans CnH(2n+2) (``n_carbons >= 2``), centred at the origin, ``pbc=False``."""
    if isinstance(n_carbons, bool) or not isinstance(n_carbons, (int, np.integer)):
        raise PotstillError(f"n_carbons must be a whole number >= 2, got {n_carbons!r}")
    if n_carbons < 2:
        raise PotstillError(f"an alkane chain needs n_carbons >= 2, got {n_carbons}")
    half = np.radians(angle_deg) / 2
    carbons = np.array(
        [[i * cc_A * np.sin(half), (i % 2) * cc_A * np.cos(half), 0.0] for i in range(n_carbons)]
    )
    hydrogens = []
    normal = np.array([0.0, 0.0, 1.0])
    for i, c in enumerate(carbons):
        bonded = [carbons[j] - c for j in (i - 1, i + 1) if 0 <= j < n_carbons]
        units = [b / np.linalg.norm(b) for b in bonded]
        if len(units) == 2:  # CH2: two H in the plane through the bisector, out of the chain
            away = -(units[0] + units[1])
            away /= np.linalg.norm(away)
            tilt = np.arccos(TETRAHEDRAL_COS) / 2
            for sign in (1.0, -1.0):
                hydrogens.append(c + ch_A * (np.cos(tilt) * away + sign * np.sin(tilt) * normal))
        else:  # CH3: three H at the tetrahedral angle to the C-C bond, one in the plane
            u = units[0]
            in_plane = np.cross(normal, u)
            if np.dot(in_plane, c - carbons.mean(axis=0)) < 0:  # staggered: point outwards
                in_plane = -in_plane
            side = np.cross(u, in_plane)
            radial = np.sqrt(1 - TETRAHEDRAL_COS**2)
            for phi in (0.0, 2 * np.pi / 3, 4 * np.pi / 3):
                direction = TETRAHEDRAL_COS * u + radial * (
                    np.cos(phi) * in_plane + np.sin(phi) * side
                )
                hydrogens.append(c + ch_A * direction)
    positions = np.vstack([carbons, np.array(hydrogens)])
    atoms = Atoms(
        f"C{n_carbons}H{len(hydrogens)}", positions=positions - positions.mean(axis=0), pbc=False
    )
    return atoms
