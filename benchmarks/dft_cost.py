"""Wall time of one GPAW DFT single point against the number of atoms, and its power law.

One single point is energy, forces and stress of a rattled BCC lithium supercell
(conventional cubic cell, a = 3.43 A, 2 atoms; n x n x n of it has N = 2 n^3 atoms),
computed by potstill's ``gpaw`` reference (plane waves, PBE) on a fresh calculator per
cell: ``time.perf_counter`` around ``get_potential_energy``, ``get_forces`` and
``get_stress``. The k-point mesh comes from a k-point density (``--kpt-density``, k-points
per reciprocal Angstrom), so cells of every size get a comparable sampling (the mesh
shrinks as the cell grows). The fit is least squares of log t against log N over the
cells with N >= ``--fit-from`` (the 2-atom cell is dominated by k-points and overhead):

    t(N) = prefactor_s * N ** exponent        (t in seconds of wall time, N atoms)

Units: seconds (wall), Angstrom, eV. Run on one core (OMP/OpenBLAS/MKL threads are set
to 1 unless already set). Writes a JSON (default ``runs/benchmarks/dft_cost.json`` under
the repository root) with ``settings``, ``cpu``, ``sizes`` (``n_atoms``, ``kpts``,
``seconds``, ...) and ``fit`` (``prefactor_s``, ``exponent``, ``fit_from``).

    .venv/bin/python benchmarks/dft_cost.py                     # n = 1, 2, 3, 4: N = 2..128
    .venv/bin/python benchmarks/dft_cost.py --sizes 1 2 3 3x3x4 # n, or a x b x c of the cell

Other benchmarks use the fit without importing GPAW::

    sys.path.insert(0, str(Path(__file__).parent))
    from dft_cost import load_fit, predicted_seconds
    seconds = predicted_seconds(load_fit(), n_atoms)   # load_fit(path) for another JSON

The mesh changes in steps (density 2.0 at a = 3.43 A: 4x4x4 for the 2-atom cell, 2x2x2
for n = 2 and 3, 1x1x1 for n = 4), so the fitted exponent mixes the cost per k-point
with the number of k-points: read it as the cost at this density, not as DFT's O(N^3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any, Sequence

if __name__ == "__main__":  # one core, set before numpy loads OpenBLAS; imports leave it be
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "runs" / "benchmarks" / "dft_cost.json"
LATTICE_A = 3.43  # BCC Li, conventional cubic cell (Angstrom)
RATTLE_A = 0.05  # standard deviation of the position noise (Angstrom)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --- the fit (importable without GPAW) ------------------------------------------------


def fit_power_law(n_atoms: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """``(prefactor_s, exponent)`` of ``t = prefactor_s * N ** exponent``: least squares of
    log t against log N (at least two distinct N)."""
    x = np.log(np.asarray(n_atoms, dtype=float))
    y = np.log(np.asarray(seconds, dtype=float))
    if x.shape != y.shape or len(np.unique(x)) < 2:
        raise ValueError(f"need >= 2 distinct sizes to fit, got N = {list(n_atoms)}")
    exponent, intercept = np.polyfit(x, y, 1)
    return float(np.exp(intercept)), float(exponent)


def predicted_seconds(fit: dict, n_atoms: float) -> float:
    """Seconds of one single point of ``n_atoms`` atoms by the fit (``prefactor_s``,
    ``exponent``; e.g. :func:`load_fit`'s)."""
    return float(fit["prefactor_s"]) * float(n_atoms) ** float(fit["exponent"])


def load_fit(path: str | Path = DEFAULT_OUT) -> dict:
    """The ``fit`` of a JSON this script wrote: ``prefactor_s``, ``exponent``, ``fit_from``."""
    with open(path) as handle:
        return json.load(handle)["fit"]


# --- the measurement ------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int, int]:
    """``"3"`` -> (3, 3, 3); ``"3x3x4"`` -> (3, 3, 4): repeats of the 2-atom cubic cell."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 3
    try:
        repeat = tuple(int(p) for p in parts)
    except ValueError:
        repeat = ()
    if len(repeat) != 3 or min(repeat) < 1:
        raise argparse.ArgumentTypeError(f"a size is n or a x b x c (positive), got {text!r}")
    return repeat  # type: ignore[return-value]


def lithium_cell(repeat: tuple[int, int, int], rng: np.random.Generator):
    """BCC Li, conventional cell repeated ``repeat``, positions rattled by ``RATTLE_A``."""
    from ase.build import bulk

    atoms = bulk("Li", "bcc", a=LATTICE_A, cubic=True).repeat(repeat)
    atoms.positions += rng.normal(scale=RATTLE_A, size=atoms.positions.shape)
    return atoms


def gpaw_options(args: argparse.Namespace, txt: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "cutoff_eV": args.cutoff_eV,
        "smearing": args.smearing,
        "smearing_eV": args.smearing_eV,
        "maxiter": args.maxiter,
        "txt": txt,
    }
    if args.kpts is not None:
        options["kpts"] = list(args.kpts)
    else:
        options["kpt_density"] = args.kpt_density
    return options


def kpoint_mesh(calc) -> list[int] | None:
    """The Monkhorst-Pack mesh GPAW used (new GPAW's ``dft.ibzwfs.ibz.bz``, the old one's
    ``wfs.kd``), or None."""
    for path in ("dft.ibzwfs.ibz.bz.size_c", "wfs.kd.N_c"):
        value = calc
        try:
            for attribute in path.split("."):
                value = getattr(value, attribute)
        except AttributeError:
            continue
        return [int(k) for k in value]
    return None


def ibz_kpoints(calc) -> int | None:
    """Irreducible k-points GPAW computed (the rattle leaves time reversal only)."""
    for path in ("dft.ibzwfs.ibz", "wfs.kd.ibzk_kc"):
        value = calc
        try:
            for attribute in path.split("."):
                value = getattr(value, attribute)
        except AttributeError:
            continue
        return len(value)
    return None


def scf_iterations(calc) -> int | None:
    """SCF iterations of the ground state, when GPAW tells."""
    try:
        return int(calc.get_number_of_iterations())
    except (AttributeError, TypeError, ValueError):
        return None


def single_point(atoms, options: dict[str, Any]) -> dict[str, Any]:
    """Time energy + forces + stress of ``atoms`` on a fresh GPAW calculator."""
    from potstill.references import make_reference

    calc = make_reference("gpaw", name="dft", **options).calculator
    atoms.calc = calc
    start = time.perf_counter()
    energy = atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    seconds = time.perf_counter() - start
    atoms.calc = None
    return {
        "n_atoms": len(atoms),
        "kpts": kpoint_mesh(calc),
        "ibz_kpoints": ibz_kpoints(calc),
        "seconds": seconds,
        "scf_iterations": scf_iterations(calc),
        "energy_eV_per_atom": float(energy) / len(atoms),
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- the machine ----------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:
        import torch
    except ImportError:
        settings["torch_threads"] = None
    else:
        settings["torch_threads"] = torch.get_num_threads()
    return settings


# --- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[parse_size(n) for n in ("1", "2", "3", "4")],
        help="supercells of the 2-atom cubic cell: n (n x n x n) or a x b x c (default 1 2 3 4)",
    )
    parser.add_argument("--fit-from", type=int, default=16, help="fit cells with N >= this")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rattle")
    parser.add_argument("--cutoff-eV", dest="cutoff_eV", type=float, default=300.0)
    parser.add_argument(
        "--kpt-density", type=float, default=2.0, help="k-points per reciprocal Angstrom"
    )
    parser.add_argument(
        "--kpts", type=int, nargs=3, default=None, help="a fixed mesh instead of the density"
    )
    parser.add_argument("--smearing", default="fermi-dirac")
    parser.add_argument("--smearing-eV", dest="smearing_eV", type=float, default=0.1)
    parser.add_argument("--maxiter", type=int, default=333, help="SCF iteration limit")
    parser.add_argument(
        "--log-dir", type=Path, default=None, help="keep GPAW's logs here (default: none)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    cells = [lithium_cell(repeat, rng) for repeat in args.sizes]
    settings = {
        **gpaw_options(args, None),
        "xc": "PBE",
        "lattice_A": LATTICE_A,
        "rattle_A": RATTLE_A,
        "seed": args.seed,
        "repeats": [list(r) for r in args.sizes],
        "threads": thread_settings(),
    }
    del settings["txt"]
    cpu = {"model": cpu_model(), "logical_cpus": os.cpu_count()}
    started = time.perf_counter()
    rows = []
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    for repeat, atoms in zip(args.sizes, cells):
        name = "x".join(map(str, repeat))
        txt = str(args.log_dir / f"gpaw-{name}.txt") if args.log_dir is not None else None
        row = {"repeat": list(repeat), **single_point(atoms, gpaw_options(args, txt))}
        rows.append(row)
        print(
            f"# {name}: N = {row['n_atoms']}, {row['seconds']:.1f} s, kpts {row['kpts']} "
            f"({row['ibz_kpoints']} irreducible), "
            f"{row['scf_iterations']} SCF iterations, peak RSS {row['peak_rss_MiB']:.0f} MiB",
            flush=True,
        )
    total = time.perf_counter() - started

    fitted = [r for r in rows if r["n_atoms"] >= args.fit_from]
    prefactor, exponent = fit_power_law(
        [r["n_atoms"] for r in fitted], [r["seconds"] for r in fitted]
    )
    fit = {
        "prefactor_s": prefactor,
        "exponent": exponent,
        "fit_from": args.fit_from,
        "fitted_n_atoms": [r["n_atoms"] for r in fitted],
    }
    result = {
        "settings": settings,
        "cpu": cpu,
        "sizes": rows,
        "fit": fit,
        "total_seconds": total,
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    options = {k: v for k, v in settings.items() if k in ("cutoff_eV", "kpt_density", "kpts")}
    print(f"\n# GPAW single point (energy, forces, stress) of rattled BCC Li, {options}")
    print("| N | cell | k-point mesh | IBZ k-points | seconds | SCF iterations | fitted seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        mesh = "x".join(map(str, row["kpts"])) if row["kpts"] else "?"
        print(
            f"| {row['n_atoms']} | {'x'.join(map(str, row['repeat']))} | {mesh} | "
            f"{row['ibz_kpoints'] or '?'} | "
            f"{row['seconds']:.1f} | {row['scf_iterations'] or '-'} | "
            f"{predicted_seconds(fit, row['n_atoms']):.1f} |"
        )
    print(
        f"\nfit over N >= {args.fit_from}: t = {prefactor:.4g} s * N^{exponent:.3f}"
        f"\nCPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs); threads: "
        f"{settings['threads']}; load average {result['load_average']}"
        f"\npeak RSS {rows[-1]['peak_rss_MiB']:.0f} MiB; whole run {total:.0f} s; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
