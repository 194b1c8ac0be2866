"""Peak memory of training on a 20,000-frame, 108-atom Ni pool streamed from the store.

Builds (or reuses) the pool with LAMMPS NPT MD of the default nickel reference
(300-2500 K), then trains one model of the papers' preset (224-192-160-1, radial 6.9 A)
for ``--epochs`` epochs straight from the store (``Store.frames``: frames are read per
batch, never all at once) and prints the process's peak resident memory next to the
size the pool would take fully in memory. Target (issue 3): under 8 GiB.

    .venv/bin/python benchmarks/train_memory.py                  # 20,000 frames, 1 epoch
    .venv/bin/python benchmarks/train_memory.py --frames 2000    # a quicker look
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from ase.build import bulk

from potstill.models.presets import ModelSpec
from potstill.references import lammps_options
from potstill.sampling.md import sample_md
from potstill.store import Store
from potstill.training.committee import train_committee
from potstill.training.config import TrainConfig

TEMPERATURES_K = [300.0, 1000.0, 1700.0, 2500.0]


def build_pool(path: Path, n_frames: int) -> Store:
    """A pool of ``n_frames`` 108-atom Ni frames (reused when it already has them)."""
    store = Store(path)
    if len(store) >= n_frames:
        return store
    per_temperature = -(-n_frames // len(TEMPERATURES_K))
    frames = sample_md(
        bulk("Ni", "fcc", a=3.52, cubic=True).repeat(3),
        **lammps_options("eam-ni"),
        reference_name="eam",
        ensemble="npt",
        temperatures_K=TEMPERATURES_K,
        steps_per_temperature=per_temperature * 10,
        equilibration_steps=2000,
        interval=10,
        seed=1,
    )
    store.add_stream(frames, chunk=1000)
    return store


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--pool", type=Path, default=Path("runs/benchmarks/ni108-pool.db"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    store = build_pool(args.pool, args.frames)
    ids = store.ids()[: args.frames]
    pool_s = time.perf_counter() - start
    rss_after_pool = peak_rss_mib()

    config = TrainConfig(committee=1, max_epochs=args.epochs, batch_size=64, lr=1e-3)
    start = time.perf_counter()
    train_committee(
        store.frames(ids),
        "eam",
        model=ModelSpec("paper", ("Ni",)),
        config=config,
    )
    train_s = time.perf_counter() - start
    atoms = store.frames(ids[:1])[0]
    in_memory_mib = len(ids) * sum(a.nbytes for a in atoms.arrays.values()) / 2**20

    print(
        "frames | atoms | epochs | pool build s | training s | frames/s | peak RSS MiB | "
        "RSS before training MiB | label+position arrays in memory MiB"
    )
    print("--- | --- | --- | --- | --- | --- | --- | --- | ---")
    print(
        f"{len(ids)} | {len(atoms)} | {args.epochs} | {pool_s:.0f} | {train_s:.0f} | "
        f"{args.epochs * len(ids) / train_s:.1f} | {peak_rss_mib():.0f} | {rss_after_pool:.0f} | "
        f"{in_memory_mib:.0f}"
    )
    print(f"# target: peak RSS < 8192 MiB; threads {args.threads}")


if __name__ == "__main__":
    main()
