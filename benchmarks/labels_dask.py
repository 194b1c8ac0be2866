"""DFT labels per hour over a Dask LocalCluster of 1 and of 2 workers, side by side.

The frames are 32-atom Al cells (2x2x2 conventional, seeded random strain of 1.5 % and
rattle of 0.1 A), labeled by GPAW with the settings of ``examples/low2high-al.yaml``
(PW 300 eV, 3x3x3 k-points, 0.1 eV Fermi-Dirac) through ``potstill.labeling.label_store``,
the path the low2high workflow takes. Each worker runs one thread. Prints a Markdown table.

    .venv/bin/python benchmarks/labels_dask.py               # 4 frames: ~12 min on 2 cores
    .venv/bin/python benchmarks/labels_dask.py --quick       # 4-atom cells, seconds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk

from potstill.executors import make_executor
from potstill.labeling import label_store
from potstill.references import ReferenceConfig
from potstill.store import Store


def frames(n: int, repeat: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = bulk("Al", "fcc", a=4.04, cubic=True).repeat(repeat)
        strain = np.eye(3) + 0.015 * rng.standard_normal((3, 3))
        atoms.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        atoms.info["step"] = i
        out.append(atoms)
    return out


def labels_per_hour(workers: int, reference: ReferenceConfig, batch, root: Path) -> dict:
    store = Store(root / f"pool_{workers}.db")
    store.add(batch)
    with make_executor("dask", workers) as executor:
        started = time.perf_counter()
        result = label_store(store, reference, executor=executor)
        seconds = time.perf_counter() - started
    assert result["labeled"] == len(batch), result
    return {"workers": workers, "seconds": seconds, "per_hour": 3600 * len(batch) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="4-atom cells, 2x2x2 k-points")
    args = parser.parse_args()
    repeat, kpts = (1, [2, 2, 2]) if args.quick else (2, [3, 3, 3])
    options = {"cutoff_eV": 300, "kpts": kpts, "smearing": "fermi-dirac", "smearing_eV": 0.1}
    reference = ReferenceConfig(kind="gpaw", name="dft", options=options)
    batch = frames(args.frames, repeat)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [labels_per_hour(w, reference, batch, Path(tmp)) for w in (1, 2)]
    print(f"GPAW labels of {args.frames} frames of {len(batch[0])} Al atoms, {options}\n")
    print("| Dask workers | wall (s) | labels per hour | speed-up |")
    print("|---|---|---|---|")
    for row in rows:
        speedup = row["per_hour"] / rows[0]["per_hour"]
        print(
            f"| {row['workers']} | {row['seconds']:.1f} | {row['per_hour']:.1f} | {speedup:.2f}x |"
        )


if __name__ == "__main__":
    main()
