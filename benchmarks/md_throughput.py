"""MD throughput: ASE velocity Verlet through potstill's calculator and TorchANI's.

Both calculators wrap the same model (potstill's ``ANIModel``; TorchANI's ``ANI`` built
from it by ``baseline.py``, same weights, same dtype): ``PotstillCalculator(model)`` and
``torchani.ase.Calculator(baseline)`` (TorchANI's own ASE calculator, ``stress_kind=
"scaling"``, the model's own neighbour list, ``"all_pairs"`` by default, ``--neighborlist``
to change it). Ni FCC at 32, 108 and 1,000 atoms (1,000 = the primitive cell repeated
10 times), velocities drawn at 1000 K, 1 fs steps. The runs alternate in one process
(potstill, TorchANI, potstill, ...; each run starts from the same state) and each row
reports medians. Velocity Verlet asks only for forces (and energies): both calculators
then skip the stress. Both sides run in this process with the same torch thread count
(``--threads``).

    .venv/bin/python benchmarks/md_throughput.py              # the table in README.md
    .venv/bin/python benchmarks/md_throughput.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from torchani.ase import Calculator as TorchANICalculator  # noqa: E402

from baseline import build_baseline  # noqa: E402
from machine import describe  # noqa: E402
from potstill.models.ani import ANIModel  # noqa: E402
from potstill.models.calculator import PotstillCalculator  # noqa: E402

SYSTEMS = {
    32: lambda: bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2),
    108: lambda: bulk("Ni", "fcc", a=3.52, cubic=True).repeat(3),
    1000: lambda: bulk("Ni", "fcc", a=3.52).repeat(10),
    16384: lambda: bulk("Ni", "fcc", a=3.52, cubic=True).repeat(16),
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def start_state(n_atoms: int, *, temperature_K: float = 1000.0, seed: int = 0):
    atoms = SYSTEMS[n_atoms]()
    assert len(atoms) == n_atoms
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return atoms


def md_seconds_per_step(calculator, start, steps: int) -> float:
    atoms = start.copy()
    atoms.calc = calculator
    calculator.reset()
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    atoms.get_forces()  # the first evaluation is outside the timed steps, as in any run
    begin = time.perf_counter()
    dynamics.run(steps)
    return (time.perf_counter() - begin) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs (median)")
    parser.add_argument(
        "--steps",
        type=int,
        default=0,
        help="MD steps per run (default: 100 / 50 / 10 for 32 / 108 / 1000 atoms)",
    )
    parser.add_argument(
        "--atoms", nargs="+", type=int, default=[32, 108, 1000], choices=sorted(SYSTEMS)
    )
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--neighborlist",
        default="all_pairs",
        help="TorchANI's neighbour list: all_pairs (its default), cell_list, adaptive",
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, 32 and 108 atoms")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.atoms = 1, [a for a in args.atoms if a <= 108]
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    model = ANIModel.from_preset(args.preset, ["Ni"], seed=0, self_energies={"Ni": -4.45})
    model = model.to(dtype=dtype)
    calculators = {
        "potstill": PotstillCalculator(model, dtype=dtype),
        "torchani": TorchANICalculator(build_baseline(model, neighborlist=args.neighborlist)),
    }
    print(describe())
    print(
        f"# md_throughput: preset {args.preset}, {args.dtype}, ASE VelocityVerlet 1 fs, "
        f"{args.repeats} alternating repeats (median), TorchANI neighbour list "
        f"{args.neighborlist}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} cores {platform.processor() or platform.machine()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    header = ("atoms", "steps/run", "potstill steps/s", "TorchANI steps/s", "ratio", "peak RSS MiB")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    # long enough that two runs of the script agree on the ratio within 10 % (issue 17)
    default_steps = {32: 100, 108: 50, 1000: 10, 16384: 2}
    for n_atoms in args.atoms:
        start = start_state(n_atoms)
        steps = args.steps or default_steps[n_atoms]
        seconds: dict[str, list[float]] = {name: [] for name in calculators}
        for _ in range(args.repeats):
            for name, calculator in calculators.items():
                seconds[name].append(md_seconds_per_step(calculator, start, steps))
        rate = {name: 1.0 / statistics.median(s) for name, s in seconds.items()}
        print(
            " | ".join(
                [
                    str(n_atoms),
                    str(steps),
                    f"{rate['potstill']:.2f}",
                    f"{rate['torchani']:.2f}",
                    f"{rate['potstill'] / rate['torchani']:.2f}x",
                    f"{peak_rss_mib():.0f}",
                ]
            ),
            flush=True,
        )
    print(
        f"# peak RSS of the process (both calculators, all rows): {peak_rss_mib():.0f} MiB;"
        f" load average at end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
