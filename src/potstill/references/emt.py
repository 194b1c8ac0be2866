"""ASE's EMT (effective medium theory) as a tiny, dependency-free test reference.

Jacobsen, Stoltze & Norskov, Surf. Sci. 366, 394 (1996); implemented by ASE.
Elements: Al, Cu, Ag, Au, Ni, Pd, Pt (plus H, C, N, O for tests).
"""

from __future__ import annotations

from ase.calculators.emt import EMT


def make_calculator() -> EMT:
    """ASE EMT calculator (energy, forces, stress, per-atom energies)."""
    return EMT()
