"""Pressure against volume of a model and its reference on one liquid frame: why a
short-range model's NPT run keeps expanding (issue 16, molten KCl).

The frame is scaled isotropically (positions with the cell) by volume factors 0.85 ...
1.6; at each, the virial pressure -trace(stress)/3 (GPa) of the reference and of each
model is printed, with the ideal-gas pressure N k T / V at ``--temperature``. A liquid
holds its density under NPT at 1 bar only where virial + kinetic pressure crosses zero
from above as the volume grows.

    python benchmarks/pressure_volume.py \
        --pool runs/kcl-pool-heldout/pool.db --frame 1005 \
        --models runs/compare-kcl/compare/models/rnd_b32_s0/committee.pt ...
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import units

from potstill.models import PotstillCalculator, load_checkpoint
from potstill.references import make_reference
from potstill.store import Store

FACTORS = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.45, 1.6)


def pressure_GPa(atoms, calculator) -> float:
    atoms = atoms.copy()
    atoms.calc = calculator
    return float(-atoms.get_stress()[:3].mean() / units.GPa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True)
    parser.add_argument("--frame", type=int, default=0, help="position in the store's ids")
    parser.add_argument("--reference", default="born-kcl")
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--temperature", type=float, default=1300.0)
    args = parser.parse_args()
    store = Store(args.pool, create=False)
    frame = store.get([store.ids()[args.frame]])[0]
    reference = make_reference(args.reference).calculator
    models = [PotstillCalculator(load_checkpoint(path)) for path in args.models]
    mass_g = frame.get_masses().sum() * 1.66053906660
    head = ["V/V0", "density g/cm3", "N kT/V", "reference"] + [
        f"model {i}" for i in range(len(models))
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for factor in FACTORS:
        scaled = frame.copy()
        scaled.set_cell(frame.cell * factor ** (1 / 3), scale_atoms=True)
        volume = scaled.get_volume()
        kinetic = len(scaled) * units.kB * args.temperature / volume / units.GPa
        values = [pressure_GPa(scaled, reference)] + [pressure_GPa(scaled, m) for m in models]
        cells = [f"{factor:.2f}", f"{mass_g / volume:.3f}", f"{kinetic:.3f}"]
        print("| " + " | ".join(cells + [f"{v:+.3f}" for v in values]) + " |")
    print(f"(virial pressures in GPa; frame {args.frame} of {args.pool})")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
