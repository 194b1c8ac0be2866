"""Time of the descriptor-based selectors on a 20,000-frame, 32-atom Ni pool (issue 5).

RND, FPS and Mahalanobis each select 32 frames out of the pool; the time of ``select``
includes computing the per-atom AEVs of all frames (a fresh selector per row, so nothing
is cached between rows). The frames are read from the store into memory first (timed
apart), or with ``--lazy`` read by the selector from the store view. Target: <= 60 s
each on this machine. The pool is built once with LAMMPS NPT MD of the default nickel
reference (FCC start, 300-2500 K, solid and liquid) and cached under ``--pool``.

    .venv/bin/python benchmarks/select_time.py                   # 20,000 frames, 32 picks
    .venv/bin/python benchmarks/select_time.py --frames 2000     # a quicker look
    .venv/bin/python benchmarks/select_time.py --build-only      # just make the pool

Each selector runs in its own child process so the peak RSS column is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from pathlib import Path

TEMPERATURES_K = [300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0, 2100.0, 2500.0]
SELECTORS = ("rnd", "fps", "mahalanobis")


def build_pool(path: Path, n_frames: int):
    """A pool of ``n_frames`` 32-atom Ni frames (reused when it already has them)."""
    from ase.build import bulk

    from potstill.references import lammps_options
    from potstill.sampling.md import sample_md
    from potstill.store import Store

    store = Store(path)
    if len(store) >= n_frames:
        return store
    if len(store):
        raise SystemExit(f"{path} holds {len(store)} < {n_frames} frames; delete it first")
    per_temperature = -(-n_frames // len(TEMPERATURES_K))
    frames = sample_md(
        bulk("Ni", "fcc", a=3.52, cubic=True).repeat(2),
        **lammps_options("eam-ni"),
        reference_name="eam",
        ensemble="npt",
        temperatures_K=TEMPERATURES_K,
        steps_per_temperature=per_temperature * 50,
        equilibration_steps=2000,
        interval=50,
        seed=1,
    )
    store.add_stream(frames, chunk=1000)
    return store


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_one(name: str, pool: str, n_frames: int, n: int, threads: int, lazy: bool, queue) -> None:
    import numpy as np
    import torch

    from potstill.selection import make_selector
    from potstill.store import Store

    torch.set_num_threads(threads)
    store = Store(pool, create=False)
    frames = store.frames(store.ids()[:n_frames])
    read_s = 0.0
    if not lazy:  # read the pool first, so reading and selecting are timed apart
        start = time.perf_counter()
        frames = list(frames)
        read_s = time.perf_counter() - start
    selector = make_selector(name)
    cpu, start = time.process_time(), time.perf_counter()
    chosen = selector.select(frames, n, rng=np.random.default_rng(0))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    queue.put(
        {
            "selector": name,
            "read": read_s,
            "seconds": seconds,
            "cpu": cpu,
            "descriptors": selector.timings_["descriptors"],
            "picking": selector.timings_["selection"],
            "rss": _peak_rss_mib(),
            "unique": len(set(chosen.tolist())),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--n", type=int, default=32, help="frames to select")
    parser.add_argument("--pool", type=Path, default=Path("runs/benchmarks/ni32-pool.db"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--selectors", nargs="+", default=list(SELECTORS))
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--lazy",
        action="store_true",
        help="select straight from the store view (reading counted as descriptors)",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    build_pool(args.pool, args.frames)
    print(f"# pool {args.pool}: ready in {time.perf_counter() - start:.0f} s")
    if args.build_only:
        return
    context = multiprocessing.get_context("spawn")
    rows = []
    for name in args.selectors:
        queue = context.Queue()
        child = context.Process(
            target=_time_one,
            args=(name, str(args.pool), args.frames, args.n, args.threads, args.lazy, queue),
        )
        load = os.getloadavg()[0]
        child.start()
        rows.append({**queue.get(), "load": load, "load_after": os.getloadavg()[0]})
        child.join()
    source = "the store view (lazy)" if args.lazy else "frames read into memory first"
    print(
        f"selects {args.n} of {args.frames} frames (32 atoms) from {source}, "
        f"torch threads {args.threads}"
    )
    print()
    print(
        "| selector | select s (wall) | of which descriptors | of which picking | CPU s | "
        "read pool s | peak RSS MiB | unique picks | load avg (1 min) before / after |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['selector']} | {row['seconds']:.1f} | {row['descriptors']:.1f} | "
            f"{row['picking']:.1f} | {row['cpu']:.1f} | {row['read']:.1f} | {row['rss']:.0f} | "
            f"{row['unique']} | {row['load']:.1f} / {row['load_after']:.1f} |"
        )
    print()
    print("# target: select s <= 60 each, descriptors included")


if __name__ == "__main__":
    main()
