"""Where a training step and an MD step of the paper preset spend their time.

Two tables, each a breakdown by phase (wall time, median over repeats) followed by the
heaviest ATen operations of the same work under ``torch.profiler`` (self CPU time per
step):

- training: one step of ``train_throughput.py``'s potstill path on 64 frames of 32-atom
  Ni (building the batch, the forward pass with forces and stress and
  ``create_graph=True``, the loss, the backward pass, the optimiser step), plus, for
  scale, the AEV alone and the graph-free forward of the same batch;
- MD: one velocity Verlet step of 108-atom Ni at 1000 K through ``PotstillCalculator``,
  50 steps from the same start in every repeat (the neighbour search and Batch, the AEV
  with its hand-written derivative, the networks, the AEV's VJP and the forces, timed
  again on the run's last state; the rest of the step is ASE's and the calculator's).

    .venv/bin/python benchmarks/profile_steps.py              # both tables
    .venv/bin/python benchmarks/profile_steps.py --only md    # one of them

For a Python-level view of the same MD loop use py-spy (not a dependency:
``pip install py-spy``), e.g. ``py-spy record --format raw -o md.txt -- .venv/bin/python
benchmarks/profile_steps.py --only md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from ase import units  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from machine import describe  # noqa: E402
from md_throughput import start_state  # noqa: E402
from potstill.models.ani import ANIModel  # noqa: E402
from potstill.models.calculator import PotstillCalculator  # noqa: E402
from potstill.models.mlp import element_outputs  # noqa: E402
from potstill.models.pair_gradients import forces as pair_forces  # noqa: E402
from potstill.training.config import TrainConfig  # noqa: E402
from potstill.training.data import labeled_batch  # noqa: E402
from potstill.training.loss import energy_force_stress_loss  # noqa: E402
from potstill.training.self_energy import fit_self_energies  # noqa: E402
from train_throughput import PotstillStep, ni_md_frames  # noqa: E402


def phase_table(title: str, phases: dict[str, list[float]], total: str) -> None:
    print(f"\n# {title}: ms per step (median), share of {total!r}")
    print("phase | ms | share")
    print("--- | --- | ---")
    whole = statistics.median(phases[total])
    for name, values in phases.items():
        ms = statistics.median(values)
        print(f"{name} | {ms:.2f} | {100 * ms / whole:.0f} %")


def op_table(prof, steps: int, rows: int) -> None:
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print("\nATen op (self CPU) | ms per step | share | calls per step")
    print("--- | --- | --- | ---")
    for event in events[:rows]:
        print(
            f"{event.key} | {event.self_cpu_time_total / steps / 1e3:.2f} | "
            f"{100 * event.self_cpu_time_total / total:.0f} % | {event.count / steps:.0f}"
        )


def profile_training(repeats: int, rows: int) -> None:
    frames = ni_md_frames(2, 64)
    model = ANIModel.from_preset("paper", ["Ni"], seed=0)
    model.set_self_energies(fit_self_energies(frames, "eam", ["Ni"]))
    model = model.float()
    step = PotstillStep(model, frames, TrainConfig(dtype="float32", batch_size=64))
    for _ in range(2):
        step()
    names = ["batch", "forward (create_graph)", "loss", "backward", "optimiser", "step"]
    names += ["AEV alone, no graph", "forward without graph (forces, stress)"]
    phases: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        marks = [time.perf_counter()]
        batch = labeled_batch(
            frames,
            "eam",
            species=model.species,
            cutoff=model.cutoff,
            dtype=model.dtype,
            cache=step.cache,
        )
        marks.append(time.perf_counter())
        for optimizer in step.optimizers:
            optimizer.zero_grad(set_to_none=True)
        out = model(batch.inputs, forces=True, stress=True, create_graph=True)
        marks.append(time.perf_counter())
        loss = energy_force_stress_loss(out, batch.targets, step.weights)["loss"]
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        for optimizer in step.optimizers:
            optimizer.step()
        marks.append(time.perf_counter())
        with torch.no_grad():
            model.aev(batch.inputs)
            marks.append(time.perf_counter())
            model(batch.inputs, forces=True, stress=True)
            marks.append(time.perf_counter())
        durations = [1e3 * (b - a) for a, b in zip(marks, marks[1:])]
        for name, value in zip(names[:5], durations[:5]):
            phases[name].append(value)
        phases["step"].append(sum(durations[:5]))
        phases[names[6]].append(durations[5])
        phases[names[7]].append(durations[6])
    phase_table("training step, paper preset, 64 frames x 32 atoms, float32", phases, "step")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    op_table(prof, 3, rows)


def profile_md(repeats: int, rows: int) -> None:
    model = ANIModel.from_preset("paper", ["Ni"], seed=0, self_energies={"Ni": -4.45}).float()
    start = start_state(108)
    names = ["neighbours and Batch", "AEV + its VJP set up", "networks (+ dE/dAEV)"]
    names += ["AEV VJP", "forces", "rest: step minus the above (ASE, Verlet, sums)", "step"]
    phases: dict[str, list[float]] = {name: [] for name in names}
    steps = 50
    for _ in range(repeats):  # each from the same state (the model is untrained)
        atoms = start.copy()
        calculator = PotstillCalculator(model, dtype=torch.float32)
        atoms.calc = calculator
        dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
        atoms.get_forces()
        begin = time.perf_counter()
        dynamics.run(steps)
        step_ms = 1e3 * (time.perf_counter() - begin) / steps
        with torch.no_grad():
            marks = [time.perf_counter()]
            for _ in range(steps):
                batch = calculator._batch(atoms)
            marks.append(time.perf_counter())
            diff_vectors = batch.pair_vectors()
            for _ in range(steps):
                aev, vjp = model.aev_with_vjp(batch, diff_vectors)
            marks.append(time.perf_counter())
            for _ in range(steps):
                _, by_aev = element_outputs(model.networks, aev, batch.species, with_gradient=True)
            marks.append(time.perf_counter())
            for _ in range(steps):
                by_diffs = vjp(by_aev)
            marks.append(time.perf_counter())
            for _ in range(steps):
                pair_forces(batch, by_diffs)
            marks.append(time.perf_counter())
        parts = [1e3 * (b - a) / steps for a, b in zip(marks, marks[1:])]
        for name, value in zip(names, parts):
            phases[name].append(value)
        # the phases are timed again on the run's last state: the rest is approximate
        phases[names[5]].append(step_ms - sum(parts))
        phases["step"].append(step_ms)
    phase_table("MD step, paper preset, 108 atoms at 1000 K, float32", phases, "step")
    atoms = start.copy()
    atoms.calc = PotstillCalculator(model, dtype=torch.float32)
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    atoms.get_forces()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        dynamics.run(steps)
    op_table(prof, steps, rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["training", "md"], default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15, help="ATen ops listed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(describe())
    if args.only in (None, "training"):
        profile_training(args.repeats, args.rows)
    if args.only in (None, "md"):
        profile_md(args.repeats, args.rows)


if __name__ == "__main__":
    main()
