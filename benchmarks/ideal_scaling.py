"""IDEAL's reference cost per uncertain event against the system size (seed 003, Fig. 1g,
Table 4, SI S8), next to what labeling whole frames would cost.

For each size N (BCC Li supercells of 256, 1,024, 4,096 and 16,384 atoms) the same
protocol runs as ``potstill ideal`` (``examples/ideal-lithium.yaml``, the Li SNAP as
reference) with only the on-the-fly run (no ablation, baseline or test set), a short
schedule and a cap of ``--events`` model updates. From each run's ``summary.json``:

- ``events``: model updates (frames with an atom above the threshold);
- ``substructures_per_event``, ``atoms_per_event`` (atoms labeled per event),
  ``atoms_per_substructure``;
- ``reference_s_per_event``: seconds the reference (SNAP) took per event, measured;
- ``whole_frame_reference_s``: one SNAP call on the whole N-atom frame, measured here;
- DFT seconds from GPAW times measured on this machine at growing cell sizes
  (``benchmarks/dft_cost.py``, a fitted power law ``t = a N^b``; run it first):
  ``dft_s_per_event`` (the sum over the event's substructures of ``t(m)``) and
  ``dft_whole_frame_s`` (``t(N)``); ``saving_vs_whole_frame`` is their ratio, i.e.
  whole-frame active learning's DFT time over IDEAL's per uncertain event.

Targets (issue 15): atoms labeled per event constant within 2x from 256 to 16,384 atoms;
at least 1,000x less DFT time than whole-frame active learning at 4,096 atoms (seed
003's Li512: 4,463x). Prints a Markdown table and writes ``runs/benchmarks/ideal_scaling.json``
(per size: ``atoms_per_event``, ``events``, ``reference_s_per_event``,
``saving_vs_whole_frame``, ...). Units: seconds (wall), atoms.

    .venv/bin/python benchmarks/dft_cost.py         # the DFT cost fit (about 9 minutes)
    .venv/bin/python benchmarks/ideal_scaling.py    # about 30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from dft_cost import cpu_model, load_fit, predicted_seconds, thread_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ideal-lithium.yaml"
OUT = ROOT / "runs" / "benchmarks" / "ideal_scaling"
SIZES = {256: (4, 4, 8), 1024: (8, 8, 8), 4096: (8, 16, 16), 16384: (16, 16, 32)}


def config_for(repeat, args) -> dict:
    """The example's protocol on the ``repeat`` supercell, on-the-fly run only."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["system"]["repeat"] = list(repeat)
    config["md"]["schedule"] = [[args.cold_steps, 200.0], [args.hot_steps, 800.0]]
    config["update"]["max_events"] = args.events
    config["evaluation"] = {"frames": 0, "ablation": [], "baseline": False}
    return config


def run_size(n_atoms: int, repeat, args) -> dict:
    folder = OUT / f"N{n_atoms}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config_for(repeat, args)))
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from potstill.cli import main; main()",
            "ideal",
            str(path),
            "--out",
            str(folder / "run"),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"N = {n_atoms}: potstill ideal failed: {done.stderr.strip()[-800:]}")
    wall = time.perf_counter() - started
    summary = json.loads((folder / "run" / "report" / "summary.json").read_text())
    ides = summary["ideal"]["runs"]["ides"]
    records = [
        json.loads(p.read_text())
        for p in sorted((folder / "run" / "ideal" / "ides").glob("iter_*/iteration.json"))
    ]
    subs = [
        s["n_atoms"] for r in records for s in r.get("substructures", []) if r.get("n_new_frames")
    ]
    return {"n_atoms": n_atoms, "wall_s": round(wall, 1), **ides, "substructure_atoms": subs}


def whole_frame_seconds(repeat) -> float:
    """One SNAP call (energy, forces, stress) on the whole frame, seconds."""
    from ase.build import bulk

    from potstill.references import make_reference

    atoms = bulk("Li", "bcc", a=3.506, cubic=True).repeat(tuple(repeat))
    atoms.rattle(0.05, seed=0)
    atoms.calc = make_reference("snap-li").calculator
    atoms.get_potential_energy()  # LAMMPS set up once
    atoms.positions += 0.01
    started = time.perf_counter()
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--events", type=int, default=6, help="model updates per size")
    parser.add_argument("--cold-steps", type=int, default=20)
    parser.add_argument("--hot-steps", type=int, default=180)
    args = parser.parse_args()
    fit = load_fit()
    rows = []
    for n in args.sizes:
        row = run_size(n, SIZES[n], args)
        row["whole_frame_reference_s"] = whole_frame_seconds(SIZES[n])
        per_event = [
            sum(predicted_seconds(fit, m) for m in atoms)
            for atoms in _per_event(OUT / f"N{n}" / "run" / "ideal" / "ides")
        ]
        row["dft_s_per_event"] = float(np.mean(per_event)) if per_event else None
        row["dft_whole_frame_s"] = predicted_seconds(fit, n)
        row["saving_vs_whole_frame"] = (
            row["dft_whole_frame_s"] / row["dft_s_per_event"] if per_event else None
        )
        rows.append(row)
        print(f"N = {n}: {row['events']} events, {row['atoms_per_event']} atoms/event", flush=True)
    result = {
        "cpu": cpu_model(),
        "threads": thread_settings(),
        "dft_fit": fit,
        "sizes": {str(r["n_atoms"]): r for r in rows},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT.parent / "ideal_scaling.json").write_text(json.dumps(result, indent=2, default=float))
    print(_table(rows, fit))


def _per_event(folder: Path) -> list[list[int]]:
    """Atoms of each substructure, per event, of one run."""
    out = []
    for path in sorted(folder.glob("iter_*/iteration.json"), key=lambda p: int(p.parent.name[5:])):
        record = json.loads(path.read_text())
        if record.get("n_new_frames") and record["iteration"] > 0:
            out.append([s["n_atoms"] for s in record.get("substructures", [])])
    return out


def _table(rows, fit) -> str:
    lines = [
        f"CPU: {cpu_model()}; DFT fit t = {fit['prefactor_s']:.4g} s x N^{fit['exponent']:.3f}",
        "",
        "| N | events | substructures/event | atoms/event | atoms/substructure | SNAP s/event "
        "| SNAP s whole frame | DFT s/event (fit) | DFT s whole frame (fit) | saving |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["n_atoms"],
            r["events"],
            _g(r["substructures_per_event"]),
            _g(r["atoms_per_event"]),
            _g(r["atoms_per_substructure"]),
            _g(r["reference_s_per_event"]),
            _g(r["whole_frame_reference_s"]),
            _g(r["dft_s_per_event"]),
            _g(r["dft_whole_frame_s"]),
            _g(r["saving_vs_whole_frame"]),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _g(value) -> str:
    return "" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
