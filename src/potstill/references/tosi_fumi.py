"""Born-Mayer-Huggins / Tosi-Fumi potentials of the molten alkali chlorides (seed 002's
KCl and NaCl references) as LAMMPS ``born/coul/long`` with PPPM electrostatics.

Pair energy between ions i and j (charges +-1 e) at distance r (A), in eV::

    phi_ij(r) = q_i q_j / r  +  beta_ij b exp((sigma_i + sigma_j - r) / rho)
                - C_ij / r^6  -  D_ij / r^8

LAMMPS ``born`` writes the short-range part as ``A exp((sigma - r)/rho) - C/r^6 + D/r^8``,
so ``A = beta_ij b``, ``sigma = sigma_i + sigma_j`` and its ``D`` is **minus** D_ij.

Parameters (the tables used by Pan et al., Int. J. Heat Mass Transfer 103, 417 (2016),
seed 002's ref. 30):

- repulsion: M. P. Tosi and F. G. Fumi, J. Phys. Chem. Solids 25, 45 (1964):
  b = 0.338e-19 J, Pauling factors beta_{+-} = 1, beta_{++} = 1.25, beta_{--} = 0.75;
  rho = 0.337 A (KCl), 0.317 A (NaCl); ionic radii sigma_K = 1.463, sigma_Na = 1.170,
  sigma_Cl = 1.585 A.
- dispersion: J. E. Mayer, J. Chem. Phys. 1, 270 (1933), C in 1e-79 J m^6 and D in
  1e-99 J m^8: KCl C_{++,+-,--} = 24.3, 48, 124.5, D = 24, 73, 250; NaCl C = 1.68, 11.2,
  116, D = 0.8, 13.9, 233.

Short-range and real-space Coulomb cutoff 9 A; PPPM relative force accuracy 1e-5.
"""

from __future__ import annotations

from typing import Any

from ase import units

_J = 1.0 / units._e  # eV per joule
_B_EV = 0.338e-19 * _J
_C_UNIT = 1e-79 * 1e60 * _J  # 1e-79 J m^6 in eV A^6
_D_UNIT = 1e-99 * 1e80 * _J  # 1e-99 J m^8 in eV A^8
_PAULING = {"++": 1.25, "+-": 1.0, "--": 0.75}

CUTOFF_A = 9.0
PPPM_ACCURACY = 1.0e-5

# salt -> (cation, rho (A), sigma_cation (A), sigma_Cl (A), C and D by pair kind)
SALTS: dict[str, dict[str, Any]] = {
    "KCl": {
        "cation": "K",
        "rho": 0.337,
        "sigma": {"K": 1.463, "Cl": 1.585},
        "C": {"++": 24.3, "+-": 48.0, "--": 124.5},
        "D": {"++": 24.0, "+-": 73.0, "--": 250.0},
    },
    "NaCl": {
        "cation": "Na",
        "rho": 0.317,
        "sigma": {"Na": 1.170, "Cl": 1.585},
        "C": {"++": 1.68, "+-": 11.2, "--": 116.0},
        "D": {"++": 0.8, "+-": 13.9, "--": 233.0},
    },
}


def born_options(salt: str) -> dict[str, Any]:
    """The options of :func:`potstill.references.lammps.make_calculator` for ``salt``
    (``"KCl"`` or ``"NaCl"``): pair style, no potential file, elements (cation, Cl),
    charges (+1, -1 e) and the ``pair_coeff`` and ``kspace_style`` commands."""
    table = SALTS[salt]
    cation = table["cation"]
    elements = [cation, "Cl"]
    kinds = {(1, 1): "++", (1, 2): "+-", (2, 2): "--"}
    lines = []
    for (i, j), kind in kinds.items():
        a = _PAULING[kind] * _B_EV
        sigma = table["sigma"][elements[i - 1]] + table["sigma"][elements[j - 1]]
        c = table["C"][kind] * _C_UNIT
        d = -table["D"][kind] * _D_UNIT
        lines.append(f"pair_coeff {i} {j} {a:.8g} {table['rho']} {sigma:.6g} {c:.8g} {d:.8g}")
    return {
        "pair_style": f"born/coul/long {CUTOFF_A}",
        "potential": None,
        "elements": elements,
        "charges": {cation: 1.0, "Cl": -1.0},
        "pair_coeff_extra": [*lines, f"kspace_style pppm {PPPM_ACCURACY}"],
    }
