"""Training throughput: potstill's trainer step against a plain TorchANI baseline.

One training step = forward, energy + force + stress loss (seed 001 eq. 3, forces and
stress with ``create_graph=True``), backward, AdamW + SGD step, on a batch of 64 frames.

(a) potstill: ``labeled_batch`` (neighbour lists from a ``NeighborCache``, as the trainer
    keeps one across epochs) -> ``model(batch, create_graph=True)`` -> loss -> backward
    -> ``make_optimizers`` steps.
(b) baseline (``baseline.py``): TorchANI's ``ANI`` with the same weights, one frame at a
    time with TorchANI's own neighbour list, autograd forces, strain-derivative stress,
    the same loss on the stacked outputs, backward, the same optimisers.

(a) and (b) alternate in one process (a, b, a, b, ...); each row reports medians.
Frames: Ni 32 and 108 atoms from LAMMPS EAM NPT MD at 300, 1000, 1700 and 2500 K.

    .venv/bin/python benchmarks/train_throughput.py            # the table in README.md
    .venv/bin/python benchmarks/train_throughput.py --quick    # a smoke run
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

import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

from baseline import baseline_optimizers, batch_properties, build_baseline  # noqa: E402
from machine import describe  # noqa: E402
from potstill.aev.neighbors import NeighborCache  # noqa: E402
from potstill.models.ani import ANIModel  # noqa: E402
from potstill.sampling.md import sample_md  # noqa: E402
from potstill.training.config import TrainConfig  # noqa: E402
from potstill.training.data import labeled_batch  # noqa: E402
from potstill.training.loss import LossWeights, energy_force_stress_loss  # noqa: E402
from potstill.training.self_energy import fit_self_energies  # noqa: E402
from potstill.training.trainer import make_optimizers  # noqa: E402

TEMPERATURES_K = (300, 1000, 1700, 2500)
EPOCH_FRAMES = 3500  # the papers' training set size


def ni_md_frames(repeat: int, n_frames: int, *, seed: int = 1):
    """``n_frames`` EAM-labeled Ni frames of ``4 * repeat**3`` atoms, temperatures mixed."""
    per_temperature = -(-n_frames // len(TEMPERATURES_K))
    interval = 20
    frames = list(
        sample_md(
            bulk("Ni", "fcc", a=3.52, cubic=True).repeat(repeat),
            pair_style="eam/alloy",
            potential="NiAlH_jea.eam.alloy",
            elements=["Ni"],
            reference_name="eam",
            ensemble="npt",
            temperatures_K=list(TEMPERATURES_K),
            steps_per_temperature=per_temperature * interval,
            equilibration_steps=500,
            interval=interval,
            seed=seed,
        )
    )
    groups = [[f for f in frames if f.info["temperature_K"] == t] for t in TEMPERATURES_K]
    return [f for group in zip(*groups) for f in group][:n_frames]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class PotstillStep:
    """potstill's trainer path (see the module docstring, (a))."""

    def __init__(self, model: ANIModel, frames, config: TrainConfig):
        self.model, self.frames, self.config = model, frames, config
        self.weights = LossWeights(config.alpha, config.beta, config.gamma)
        self.optimizers = make_optimizers(model, config)
        self.cache = NeighborCache()

    def __call__(self) -> float:
        model = self.model
        batch = labeled_batch(
            self.frames,
            "eam",
            species=model.species,
            cutoff=model.cutoff,
            dtype=model.dtype,
            cache=self.cache,
        )
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        out = model(batch.inputs, forces=True, stress=True, create_graph=True)
        loss = energy_force_stress_loss(out, batch.targets, self.weights)["loss"]
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return float(loss.detach())


class BaselineStep:
    """TorchANI frame by frame (see the module docstring, (b))."""

    def __init__(self, model: ANIModel, frames, config: TrainConfig):
        self.ani = build_baseline(model)
        self.frames = frames
        self.weights = LossWeights(config.alpha, config.beta, config.gamma)
        self.optimizers = baseline_optimizers(
            self.ani, lr=config.lr, weight_decay=config.weight_decay
        )
        # labels as tensors once: the baseline is timed on the model, not on our loader
        self.targets = labeled_batch(
            frames, "eam", species=model.species, cutoff=model.cutoff, dtype=model.dtype
        ).targets

    def __call__(self) -> float:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        out = batch_properties(self.ani, self.frames, create_graph=True)
        loss = energy_force_stress_loss(out, self.targets, self.weights)["loss"]
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return float(loss.detach())


def time_alternately(steps: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each step, calling them in turn ``repeats`` times."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed steps of each (median)")
    parser.add_argument("--batch", type=int, default=64, help="frames per training step")
    parser.add_argument("--presets", nargs="+", default=["paper", "demo"])
    parser.add_argument("--atoms", nargs="+", type=int, default=[32, 108], choices=[32, 108])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats, 16-frame batches, 32 atoms only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.batch, args.atoms = 2, 16, [32]
    torch.set_num_threads(args.threads)
    config = TrainConfig(dtype=args.dtype, batch_size=args.batch)
    dtype = getattr(torch, args.dtype)

    load = os.getloadavg()[0]
    print(describe())
    print(
        f"# train_throughput: {args.dtype}, batch {args.batch} frames, {args.repeats} "
        f"alternating repeats (median), torch {torch.__version__}, {args.threads} thread(s), "
        f"{os.cpu_count()} cores {platform.processor() or platform.machine()}, "
        f"load average {load:.2f} at start"
    )
    header = (
        "preset",
        "atoms",
        "potstill frames/s",
        "baseline frames/s",
        "ratio",
        "potstill s/epoch (3500)",
        "baseline s/epoch (3500)",
        "peak RSS MiB",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    frames_by_size = {n: ni_md_frames({32: 2, 108: 3}[n], args.batch) for n in args.atoms}
    for preset in args.presets:
        for n_atoms in args.atoms:
            frames = frames_by_size[n_atoms]
            model = ANIModel.from_preset(preset, ["Ni"], seed=0)
            model.set_self_energies(fit_self_energies(frames, "eam", ["Ni"]))
            model = model.to(dtype=dtype)
            steps = {
                "potstill": PotstillStep(model, frames, config),
                "baseline": BaselineStep(model, frames, config),
            }
            seconds = time_alternately(steps, args.repeats)
            rate = {name: len(frames) / s for name, s in seconds.items()}
            print(
                " | ".join(
                    [
                        preset,
                        str(n_atoms),
                        f"{rate['potstill']:.1f}",
                        f"{rate['baseline']:.1f}",
                        f"{rate['potstill'] / rate['baseline']:.2f}x",
                        f"{EPOCH_FRAMES / rate['potstill']:.1f}",
                        f"{EPOCH_FRAMES / rate['baseline']:.1f}",
                        f"{peak_rss_mib():.0f}",
                    ]
                ),
                flush=True,
            )
    print(
        f"# peak RSS of the process (both paths, all rows): {peak_rss_mib():.0f} MiB; "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
