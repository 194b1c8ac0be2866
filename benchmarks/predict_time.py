"""Pool predictions (validate, evaluate) with and without an autograd graph, side by side.

``potstill.models.predict`` evaluates frames in batches. It used to leave autograd on
whenever forces were asked for, so every batch recorded a graph of the AEV and walked it
back; it now runs under ``torch.no_grad()``, where the model takes its hand-written
inference path (the same numbers up to rounding). This benchmark times both on the same
frames and committee, alternating them, and prints the median of each and the ratio.

The frames are LAMMPS NPT MD of the default nickel reference (32 atoms, 300-2500 K); the
committees are untrained (the cost does not depend on the weights).

    .venv/bin/python benchmarks/predict_time.py                  # demo and paper, 32 and 108 atoms
    .venv/bin/python benchmarks/predict_time.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

from potstill.aev.neighbors import Batch  # noqa: E402
from potstill.models import Committee, predict  # noqa: E402
from potstill.references import lammps_options  # noqa: E402
from potstill.sampling.md import sample_md  # noqa: E402


def frames_of(repeat: int, n_frames: int):
    """``n_frames`` frames of Ni MD from 300 to 2500 K, ``4 repeat^3`` atoms each."""
    temperatures = [300.0, 1000.0, 1700.0, 2500.0]
    per_temperature = -(-n_frames // len(temperatures))
    frames = sample_md(
        bulk("Ni", "fcc", a=3.52, cubic=True).repeat(repeat),
        **lammps_options("eam-ni"),
        temperatures_K=temperatures,
        steps_per_temperature=per_temperature * 20,
        equilibration_steps=500,
        interval=20,
        seed=1,
    )
    return list(frames)[:n_frames]


def with_graph(model, frames, batch_size: int = 32) -> list[dict]:
    """What ``predict`` did before: forces and stress with autograd on."""
    results = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        batch = Batch.from_atoms(chunk, model.species, model.cutoff, dtype=torch.float64)
        out = model(batch, forces=True, stress=True)
        results.append({k: v.detach() for k, v in out.items()})
    return results


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="64 frames, 2 repeats, demo preset, 32 atoms"
    )
    args = parser.parse_args()
    if args.quick:
        args.frames, args.repeats = 64, 2
    torch.set_num_threads(1)
    rows = []
    for repeat in (2,) if args.quick else (2, 3):
        frames = frames_of(repeat, args.frames)
        for preset in ("demo",) if args.quick else ("demo", "paper"):
            model = Committee.from_preset(preset, ["Ni"], n_members=args.members).double()
            graph, no_graph = [], []
            with_graph(model, frames[:8]), predict(model, frames[:8])  # warm-up
            for _ in range(args.repeats):  # alternate: a, b, a, b, ...
                graph += timed(lambda: with_graph(model, frames), 1)
                no_graph += timed(lambda: predict(model, frames), 1)
            check_a = with_graph(model, frames[:32])[0]["forces"].numpy()
            check_b = np.concatenate([p["forces"] for p in predict(model, frames[:32])])
            rows.append(
                (
                    preset,
                    len(frames[0]),
                    len(frames),
                    statistics.median(graph),
                    statistics.median(no_graph),
                    float(np.abs(check_a - check_b).max()),
                )
            )
    print(
        f"# predict: committee of {args.members}, float64, batches of 32, one torch thread, "
        f"{args.repeats} alternating repeats (median)"
    )
    print("preset | atoms | frames | with graph (s) | no graph (s) | speed-up | max |dF| (eV/A)")
    print("--- | --- | --- | --- | --- | --- | ---")
    for preset, atoms, n, a, b, diff in rows:
        print(f"{preset} | {atoms} | {n} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {diff:.1e}")


if __name__ == "__main__":
    main()
