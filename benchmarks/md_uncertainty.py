"""Per-step cost of MD watched by a per-atom uncertainty, against plain MD with one model.

What the on-the-fly methods (rare events, IDEAL) run at every step: ASE velocity Verlet
(1 fs) through ``PotstillCalculator`` plus an ``UncertaintyObserver`` called every step.
Ni FCC at 108, 1,000 and 16,384 atoms (108 and 16,384: the cubic cell x 3 and x 16;
1,000: the primitive cell x 10), velocities drawn at 1000 K, paper preset, float32, one
torch thread. Variants, alternating in one process (each run from the same state;
medians over repeats):

- ``plain``: one model, no observer;
- ``committee-3``: a committee of 3 (seeds 0, 1, 2) drives the MD
  (``PotstillCalculator(committee, forces_std=False)``: forces of the mean energy, one
  shared AEV) and a ``committee`` uncertainty observer reads the atomic-energy spread the
  calculator computed for the step;
- ``committee-3 member forces``: the same with ``forces_std=True`` (every member's forces
  and their spread, one AEV derivative per member);
- ``mahalanobis``: one model drives the MD and a ``mahalanobis`` uncertainty observer
  (default AEV descriptor, fitted on 8 rattled copies of the start) scores every step.

    .venv/bin/python benchmarks/md_uncertainty.py            # the table in README.md
    .venv/bin/python benchmarks/md_uncertainty.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from machine import describe  # noqa: E402
from md_throughput import SYSTEMS, start_state  # noqa: E402
from potstill.models import ANIModel, Committee, PotstillCalculator  # noqa: E402
from potstill.uncertainty import UncertaintyObserver, make_uncertainty  # noqa: E402

ATOMS = (108, 1000, 16384)
DEFAULT_STEPS = {108: 100, 1000: 20, 16384: 3}


def seconds_per_step(make_calculator, make_uncertainty, start, steps: int) -> float:
    """Velocity Verlet ``steps`` steps from ``start``; an observer every step if any."""
    atoms = start.copy()
    atoms.calc = make_calculator()
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    if make_uncertainty is not None:
        observer = UncertaintyObserver(make_uncertainty(), atoms, dynamics)
        dynamics.attach(observer, interval=1)
    atoms.get_forces()  # the first evaluation is outside the timed steps
    begin = time.perf_counter()
    dynamics.run(steps)
    elapsed = (time.perf_counter() - begin) / steps
    if make_uncertainty is not None:
        assert len(observer.scores) == steps + 1 and observer.scores[-1].shape == (len(atoms),)
    return elapsed


def variants(model: ANIModel, committee: Committee, mahalanobis: Path):
    """name -> (calculator factory, uncertainty factory or None)."""
    return {
        "plain": (lambda: PotstillCalculator(model, dtype=model.dtype), None),
        "committee-3": (
            lambda: PotstillCalculator(committee, dtype=committee.dtype, forces_std=False),
            lambda: make_uncertainty("committee", committee),
        ),
        "committee-3 member forces": (
            lambda: PotstillCalculator(committee, dtype=committee.dtype),
            lambda: make_uncertainty("committee", committee),
        ),
        "mahalanobis": (
            lambda: PotstillCalculator(model, dtype=model.dtype),
            lambda: make_uncertainty("mahalanobis").load(mahalanobis),
        ),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs (median)")
    parser.add_argument(
        "--steps", type=int, default=0, help="MD steps per run (default 100 / 20 / 3)"
    )
    parser.add_argument("--atoms", nargs="+", type=int, default=list(ATOMS), choices=ATOMS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 108 atoms, 5 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.atoms, args.steps = 1, [108], 5
    torch.set_num_threads(args.threads)

    members = [
        ANIModel.from_preset("paper", ["Ni"], seed=seed, self_energies={"Ni": -4.45}).float()
        for seed in range(3)
    ]
    model, committee = members[0], Committee(members)
    training = []
    for k in range(8):
        frame = SYSTEMS[108]()
        frame.rattle(0.1, seed=k)
        training.append(frame)
    # fitted once; every run loads a fresh copy: the AEV descriptor caches AEVs by frame
    # content, and the repeats replay the same trajectory
    statistics_path = Path(tempfile.mkdtemp()) / "mahalanobis.npz"
    make_uncertainty("mahalanobis").fit(training).save(statistics_path)
    runs = variants(model, committee, statistics_path)

    print(describe())
    print(
        f"# md_uncertainty: paper preset, float32, ASE VelocityVerlet 1 fs, observer every "
        f"step, {args.repeats} alternating repeats (median); ms per step, ratio to plain"
    )
    header = [
        "atoms",
        "steps/run",
        *(f"{name} ms" for name in runs),
        *(f"{name} / plain" for name in list(runs)[1:]),
    ]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for n_atoms in args.atoms:
        start = start_state(n_atoms)
        steps = args.steps or DEFAULT_STEPS[n_atoms]
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (calculator, uncertainty) in runs.items():
                seconds[name].append(seconds_per_step(calculator, uncertainty, start, steps))
        ms = {name: 1e3 * statistics.median(values) for name, values in seconds.items()}
        row = [str(n_atoms), str(steps), *(f"{ms[name]:.1f}" for name in runs)]
        row += [f"{ms[name] / ms['plain']:.2f}x" for name in list(runs)[1:]]
        print(" | ".join(row), flush=True)
    print(f"# load average at end {describe().rsplit('load average ', 1)[1]}")


if __name__ == "__main__":
    main()
