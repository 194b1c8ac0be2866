"""Elastic constants by finite strains of a relaxed cell (seed 001, section 2.3).

Contract
--------
- Strains: for each Voigt component j (xx, yy, zz, yz, xz, xy) the relaxed cell is
  deformed by ``+strain`` and ``-strain`` (default 1 %, as in seed 001) with the
  symmetric deformation ``F = I + eps``; shear components are engineering strains
  (``gamma_yz = 2 eps_yz``). Atoms move with the cell (fractional coordinates kept);
  with ``relax_ions`` their positions are then relaxed at fixed cell (FIRE), which gives
  the relaxed-ion constants (for FCC and BCC the internal relaxation is zero by symmetry).
- Constants: central differences of the stress, ``C_ij = (s_i(+e_j) - s_i(-e_j)) /
  (2 e)``, with ASE's stress sign (positive in tension, ``s = (1/V) dE/deps``); with
  LAMMPS' pressure tensor ``p = -s`` this is ``C_ij = -(p_i(+) - p_i(-)) / (2 e)``.
  Reported in GPa.
- Cubic summary: ``C11`` = mean(C11, C22, C33), ``C12`` = mean of the six off-diagonal
  normal terms, ``C44`` = mean(C44, C55, C66), ``K = (C11 + 2 C12) / 3``,
  ``G = (C11 - C12) / 2`` (the shear modulus of seed 001 Tables 2-5) and
  ``nu = C12 / (C11 + C12)``.
- :func:`compare_elastic` relaxes the 32-atom FCC cell of
  :mod:`potstill.crystals` (2.5 % expanded start) for model and reference and
  compares them as in seed 001 Table 4, errors in percent of the reference.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.units import GPa

from potstill.crystals import (
    build_crystal,
    lattice_constants_A,
    relax_atoms,
    relax_crystal,
    zero_pressure_cubic,
)
from potstill.errors import PotstillError

# Voigt index -> the (i, j) entries of the 3x3 strain it sets
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
SUMMARY_KEYS = ("C11", "C12", "C44", "K", "G", "nu")


def strained(atoms: Atoms, voigt_strain: Sequence[float]) -> Atoms:
    """Copy of ``atoms`` deformed by a Voigt strain (xx, yy, zz, yz, xz, xy).

    Shear entries are engineering strains; the deformation is ``F = I + eps`` with the
    symmetric ``eps``, and atoms keep their fractional coordinates.
    """
    voigt_strain = np.asarray(voigt_strain, dtype=float)
    if voigt_strain.shape != (6,):
        raise PotstillError(f"a Voigt strain has 6 components, got shape {voigt_strain.shape}")
    eps = np.zeros((3, 3))
    for value, (i, j) in zip(voigt_strain, _VOIGT_PAIRS):
        eps[i, j] = eps[j, i] = value if i == j else value / 2.0
    deformed = atoms.copy()
    deformed.set_cell(atoms.cell[:] @ (np.eye(3) + eps).T, scale_atoms=True)
    return deformed


def elastic_constants(
    atoms_relaxed: Atoms,
    calc: Calculator,
    *,
    strain: float = 0.01,
    relax_ions: bool = True,
    fmax_eV_per_A: float = 1e-4,
    steps: int = 1000,
    cubic: bool = False,
) -> dict:
    """Elastic constants (GPa) of a relaxed periodic cell from +/- ``strain``.

    ``cubic``: strain only xx and yz (4 calculations instead of 12) and fill the matrix
    by cubic symmetry (C11 = C[0,0], C12 = mean(C[1,0], C[2,0]), C44 = C[3,3]), for an
    expensive reference (DFT) on a cell known to be cubic.

    ``atoms_relaxed``: a cell at zero stress (e.g. ``relax_crystal(...)["atoms"]``); it
    is not modified. ``strain``: the magnitude of each finite strain (dimensionless).
    ``fmax_eV_per_A``/``steps``: the fixed-cell ion relaxation at each strain.

    Returns ``{"C11", "C12", "C44", "K", "G", "nu", "matrix_GPa" (6x6 nested list,
    Voigt order xx yy zz yz xz xy), "max_asymmetry_GPa" (max |C_ij - C_ji|),
    "residual_stress_GPa" (6,), "lattice_A" (dict, or None if the cell was not built by
    :func:`potstill.crystals.build_crystal`), "strain", "relax_ions",
    "ions_converged" (False if any fixed-cell relaxation stopped at ``steps`` before
    reaching ``fmax_eV_per_A``; the constants are then less certain)}``.
    """
    if not 0.0 < strain < 0.1:
        raise PotstillError(f"strain={strain} should be a small positive number, e.g. 0.01")
    if not atoms_relaxed.pbc.all():
        raise PotstillError("elastic constants need a cell periodic in all three directions")
    matrix = np.zeros((6, 6))
    ions_converged = True
    for j in (0, 3) if cubic else range(6):
        stresses = []
        for sign in (1.0, -1.0):
            step = np.zeros(6)
            step[j] = sign * strain
            stress, converged = _stress(
                strained(atoms_relaxed, step), calc, relax_ions, fmax_eV_per_A, steps
            )
            stresses.append(stress)
            ions_converged &= converged
        matrix[:, j] = (stresses[0] - stresses[1]) / (2.0 * strain) / GPa
    if cubic:
        matrix = cubic_matrix(matrix[0, 0], (matrix[1, 0] + matrix[2, 0]) / 2, matrix[3, 3])
    residual = _stress(atoms_relaxed.copy(), calc, False, fmax_eV_per_A, steps)[0] / GPa
    result = cubic_summary(matrix)
    result.update(
        matrix_GPa=matrix.tolist(),
        max_asymmetry_GPa=float(np.max(np.abs(matrix - matrix.T))),
        residual_stress_GPa=residual.tolist(),
        lattice_A=_lattice_or_none(atoms_relaxed),
        strain=strain,
        relax_ions=relax_ions,
        ions_converged=ions_converged,
    )
    return result


def percent_errors(values: dict, reference: dict, keys) -> dict[str, float]:
    """``100 (value - reference) / reference`` of each key: the error columns of seed
    001's tables."""
    return {k: 100.0 * (values[k] - reference[k]) / reference[k] for k in keys}


def cubic_matrix(c11: float, c12: float, c44: float) -> np.ndarray:
    """The 6x6 Voigt matrix of a cubic crystal (GPa)."""
    matrix = np.zeros((6, 6))
    matrix[:3, :3] = c12
    matrix[np.arange(3), np.arange(3)] = c11
    matrix[np.arange(3, 6), np.arange(3, 6)] = c44
    return matrix


def cubic_elastic(
    element: str, calc: Calculator, *, a_guess_A: float, strain: float = 0.01
) -> dict:
    """Lattice constant and elastic constants of the 4-atom conventional FCC cell with an
    expensive ``calc`` (DFT): the cell is scaled to zero pressure
    (:func:`potstill.crystals.zero_pressure_cubic`), then strained by +/- ``strain`` in
    xx and yz only (``cubic``; FCC is a Bravais lattice, so ions need no relaxation).
    Returns :func:`elastic_constants`' result plus ``a_A``, ``pressure_GPa``,
    ``n_calculations``."""
    atoms = build_crystal("fcc", element, lattice_A={"a": a_guess_A}, repeat=(1, 1, 1))
    magmoms = getattr(calc, "initial_magmoms", None)  # spin-polarised DFT (Ni); kept by copies
    if magmoms:
        atoms.set_initial_magnetic_moments([magmoms.get(s, 0.0) for s in atoms.symbols])
    lattice = zero_pressure_cubic(atoms, calc)
    constants = elastic_constants(atoms, calc, strain=strain, relax_ions=False, cubic=True)
    return constants | {
        "a_A": lattice["a_A"],
        "pressure_GPa": lattice["pressure_GPa"],
        "n_calculations": lattice["n_calculations"] + 5,
    }


def cubic_summary(matrix_GPa) -> dict[str, float]:
    """Cubic averages C11, C12, C44 and K, G = (C11 - C12)/2, nu of a 6x6 matrix (GPa)."""
    c = np.asarray(matrix_GPa, dtype=float)
    if c.shape != (6, 6):
        raise PotstillError(f"an elastic matrix is 6x6, got shape {c.shape}")
    c11 = float(np.mean(np.diag(c)[:3]))
    c12 = float(np.mean([c[i, j] for i in range(3) for j in range(3) if i != j]))
    c44 = float(np.mean(np.diag(c)[3:]))
    return {
        "C11": c11,
        "C12": c12,
        "C44": c44,
        "K": (c11 + 2.0 * c12) / 3.0,
        "G": (c11 - c12) / 2.0,
        "nu": c12 / (c11 + c12),
    }


def fcc_elastic(
    calc: Calculator,
    element: str,
    *,
    strain: float = 0.01,
    relax_ions: bool = True,
    **relax_options,
) -> dict:
    """The 32-atom FCC cell relaxed with ``calc`` (:func:`potstill.crystals.relax_crystal`,
    2.5 % expanded start, as seed 001 section 2.3), then :func:`elastic_constants`; adds
    ``a_A`` and ``converged`` (cell and ion relaxations)."""
    relaxed = relax_crystal("fcc", element, calc, **relax_options)
    constants = elastic_constants(relaxed["atoms"], calc, strain=strain, relax_ions=relax_ions)
    constants["a_A"] = relaxed["lattice_A"]["a"]
    constants["converged"] = relaxed["converged"] and constants["ions_converged"]
    return constants


def compare_elastic(
    model_calc: Calculator,
    reference_calc: Calculator,
    element: str,
    *,
    strain: float = 0.01,
    relax_ions: bool = True,
    done: Callable[[str], None] | None = None,
    **relax_options,
) -> dict:
    """FCC lattice constant and elastic constants of model vs reference (seed 001 Table 4).

    Both calculators relax the 32-atom FCC cell with
    :func:`potstill.crystals.relax_crystal` (``relax_options`` are passed on),
    then :func:`elastic_constants` is applied; ``done(label)`` is called after each
    (progress). Returns::

        {"element": str,
         "a_A": {"model", "reference", "error_percent"},
         "C11": {...}, "C12": {...}, "C44": {...}, "K": {...}, "G": {...}, "nu": {...},
         "matrix_GPa": {"model": 6x6, "reference": 6x6},
         "converged": {"model": bool, "reference": bool}}  # cell and ion relaxations

    ``error_percent = 100 (model - reference) / reference``.
    """
    results = {}
    for who, calc in (("model", model_calc), ("reference", reference_calc)):
        results[who] = fcc_elastic(
            calc, element, strain=strain, relax_ions=relax_ions, **relax_options
        )
        if done is not None:
            done(f"elastic constants ({who})")
    model, ref = results["model"], results["reference"]
    comparison: dict = {"element": element}
    errors = percent_errors(model, ref, ("a_A",) + SUMMARY_KEYS)
    for key, error in errors.items():
        comparison[key] = {"model": model[key], "reference": ref[key], "error_percent": error}
    for key in ("matrix_GPa", "converged"):
        comparison[key] = {"model": model[key], "reference": ref[key]}
    return comparison


def format_elastic_table(comparison: dict) -> str:
    """Markdown table of :func:`compare_elastic` in the layout of seed 001 Table 4."""
    columns = (
        [("a_A", "l_a (A)", "{:.3f}")]
        + [(k, f"{k} (GPa)", "{:.1f}") for k in ("C11", "C12", "C44", "K", "G")]
        + [("nu", "nu", "{:.3f}")]
    )
    header = [""] + [title for _, title, _ in columns]
    rows = [
        ["Reference"] + [fmt.format(comparison[k]["reference"]) for k, _, fmt in columns],
        ["Model"] + [fmt.format(comparison[k]["model"]) for k, _, fmt in columns],
        ["Error (%)"] + [f"{comparison[k]['error_percent']:+.2f}" for k, _, _ in columns],
    ]
    lines = [header, ["---"] * len(header)] + rows
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _stress(
    atoms: Atoms, calc: Calculator, relax_ions: bool, fmax_eV_per_A: float, steps: int
) -> tuple[np.ndarray, bool]:
    """Voigt stress (eV/A^3, ASE sign) after an optional fixed-cell ion relaxation, and
    whether that relaxation converged (True when not relaxing)."""
    atoms.calc = calc
    converged = True
    if relax_ions:
        run = relax_atoms(atoms, calc, fmax_eV_per_A=fmax_eV_per_A, steps=steps, relax_cell=False)
        converged = run["converged"]
    return np.asarray(atoms.get_stress(voigt=True), dtype=float), converged


def _lattice_or_none(atoms: Atoms) -> dict[str, float] | None:
    try:
        return lattice_constants_A(atoms)
    except PotstillError:
        return None
