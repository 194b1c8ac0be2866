"""Relaxed FCC, BCC and HCP crystals of a model against its reference: bond length,
energy per atom and energy ranking (seed 000, Tables 1-3, S6, S7).

A model that never saw perfect crystals should still relax FCC (32 atoms), BCC (54) and
HCP (48) to the reference's bond lengths and cohesive-energy ranking. Cells, start and
relaxation are those of :mod:`potstill.crystals`; energies are totals per atom, eV/atom,
exactly as each calculator reports them (for an NNP this includes its self-energies, so
compare like with like).
"""

from __future__ import annotations

from typing import Callable, Sequence

from ase.calculators.calculator import Calculator

from potstill.crystals import STRUCTURES, relax_crystal


def compare_crystals(
    model_calc: Calculator,
    reference_calc: Calculator,
    element: str,
    *,
    structures: Sequence[str] = STRUCTURES,
    done: Callable[[str], None] | None = None,
    **relax_options,
) -> dict:
    """Relax each structure with the model and the reference; compare them (seed 000
    Table 2).

    ``relax_options`` go to :func:`relax_crystal` for both calculators; ``done(label)`` is
    called after each relaxation (progress). A relaxation that does not converge within
    its step limit, or that collapses, is reported as not converged with the reason
    (``stopped``). Returns::

        {"element": str,
         "<structure>": {"n_atoms": int,
                         "bond_length_A":      {"model", "reference", "error"},
                         "energy_eV_per_atom": {"model", "reference", "error"},
                         "lattice_A": {"model": {...}, "reference": {...}},
                         "converged": {"model": bool, "reference": bool},
                         "stopped": {"model": str, "reference": str}},
         ...,
         "ranking": {"model": [structures, lowest energy first],
                     "reference": [...], "same": bool}}

    Errors are model minus reference (A, eV/atom).
    """
    result: dict = {"element": element}
    energies: dict[str, dict[str, float]] = {"model": {}, "reference": {}}
    for structure in structures:
        model = relax_crystal(structure, element, model_calc, **relax_options)
        if done is not None:
            done(f"{structure} (model)")
        ref = relax_crystal(structure, element, reference_calc, **relax_options)
        if done is not None:
            done(f"{structure} (reference)")
        result[structure] = {
            "n_atoms": ref["n_atoms"],
            "bond_length_A": _pair(model["bond_length_A"], ref["bond_length_A"]),
            "energy_eV_per_atom": _pair(model["energy_eV_per_atom"], ref["energy_eV_per_atom"]),
            "lattice_A": {"model": model["lattice_A"], "reference": ref["lattice_A"]},
            "converged": {"model": model["converged"], "reference": ref["converged"]},
            "stopped": {"model": model["stopped"], "reference": ref["stopped"]},
        }
        energies["model"][structure] = model["energy_eV_per_atom"]
        energies["reference"][structure] = ref["energy_eV_per_atom"]
    ranking = {who: sorted(e, key=e.get) for who, e in energies.items()}
    ranking["same"] = ranking["model"] == ranking["reference"]
    result["ranking"] = ranking
    return result


def format_crystal_table(result: dict) -> str:
    """Markdown table of :func:`compare_crystals` in the layout of seed 000 Table 2.

    Cells read ``l_b / E`` (A / eV per atom), the model row adds ``(error_l_b/error_E)``.
    """
    element = result["element"]
    structures = [s for s in STRUCTURES if s in result]
    header = ["Structure (# atoms)"] + [
        f"{element}-{s.upper()} ({result[s]['n_atoms']}) l_b (A) / E/atom (eV)" for s in structures
    ]
    ref_row, model_row = ["Reference"], ["Model (errors)"]
    for s in structures:
        bond, energy = result[s]["bond_length_A"], result[s]["energy_eV_per_atom"]
        ref_row.append(f"{bond['reference']:.3f} / {energy['reference']:.4f}")
        model_row.append(
            f"{bond['model']:.3f} / {energy['model']:.4f} "
            f"({bond['error']:+.3f} / {energy['error']:+.4f})"
        )
    lines = [_row(header), _row(["---"] * len(header)), _row(ref_row), _row(model_row)]
    ranking = result["ranking"]
    lines.append("")
    lines.append(
        f"Energy ranking (lowest first): reference {' < '.join(ranking['reference'])}; "
        f"model {' < '.join(ranking['model'])} "
        f"({'same' if ranking['same'] else 'DIFFERENT'})"
    )
    for s in structures:
        for who, reason in result[s].get("stopped", {}).items():
            if reason:
                lines.append(f"NOT CONVERGED: {s} ({who}): {reason}")
    return "\n".join(lines)


def _pair(model: float, reference: float) -> dict[str, float]:
    return {"model": model, "reference": reference, "error": model - reference}


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
