"""MOMT MD steps/s vs plain LAMMPS NPT MD steps/s, side by side in one process.

Both run the same system (Ni FCC n x n x n, default reference ``NiAlH_jea.eam.alloy``,
NPT at T0, 1 fs) in alternating blocks, so machine load affects both alike; the ratio
MOMT / plain is printed per size (issue 4 target: >= 0.5 at 108 atoms). The MOMT side
runs with a Wang-Landau-updated bias (the costlier phase).

    python benchmarks/momt_throughput.py [--steps 5000] [--repeats 3] [--sizes 2 3]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from ase.build import bulk

from potstill.lammps_runtime import load_lammps
from potstill.references.lammps import create_system, make_pair_potential, to_lammps_geometry
from potstill.sampling.bias import BiasGrid, WangLandau
from potstill.sampling.momt import MomtRun, MomtSettings

POTENTIAL = dict(pair_style="eam/alloy", potential="NiAlH_jea.eam.alloy", elements=["Ni"])


def plain(atoms, temperature_K):
    pair = make_pair_potential(**POTENTIAL)
    lmp = load_lammps()
    create_system(lmp, pair, to_lammps_geometry(atoms), pair.types_of(atoms))
    lmp.commands_list(
        [
            "timestep 0.001",
            f"velocity all create {temperature_K} 7 mom yes rot yes dist gaussian",
            f"fix 1 all npt temp {temperature_K} {temperature_K} 0.1 iso 1.0 1.0 1.0",
            "thermo 0",
        ]
    )
    return lmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--temperature", type=float, default=1500.0)
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((n, n, n))
        e0 = -4.45 * len(atoms)
        bias = BiasGrid.empty(
            (e0 - 0.5 * len(atoms), e0 + 0.5 * len(atoms)), (-5, 1.1 * len(atoms))
        )
        lmp = plain(atoms, args.temperature)
        momt = MomtRun.start(
            atoms, bias=bias, settings=MomtSettings(temperature_K=args.temperature), **POTENTIAL
        )
        momt.schedule = WangLandau(ln_f0=1e-3, ln_f_final=1e-6)
        momt._wl_active = True
        lmp.command("run 500")
        momt._run(500, chunk=500)
        t_plain, t_momt = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            lmp.command(f"run {args.steps} pre no post no")
            t_plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            momt._run(args.steps, chunk=args.steps)
            t_momt.append(time.perf_counter() - t)
        lmp.close()
        momt.close()
        plain_rate, momt_rate = args.steps / np.median(t_plain), args.steps / np.median(t_momt)
        rows.append((len(atoms), plain_rate, momt_rate, momt_rate / plain_rate))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'atoms':>6} {'plain steps/s':>14} {'MOMT steps/s':>13} {'MOMT/plain':>11}")
    for n_atoms, p, m, r in rows:
        print(f"{n_atoms:>6} {p:>14.0f} {m:>13.0f} {r:>11.2f}")
    print(
        f"peak RSS {peak:.0f} MiB; {args.steps} steps x {args.repeats} alternating blocks (median)"
    )


if __name__ == "__main__":
    main()
