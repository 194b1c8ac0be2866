"""A real reference that counts its calls and fails on chosen frames.

``make_calculator(inner=..., log=PATH, fail_on=[...], **options)`` wraps the registered
reference ``inner`` (EAM in LAMMPS, EMT, GPAW, ...): every calculation appends the frame's
key (``info["source_id"]``, else ``info["step"]``; ``<source>-<source_index>`` for
low2high's relabeled frames, ``<al_key>-<augment_copy>`` for rare_events' selected
frames) to ``log`` (a file, so calls made in
worker processes are counted too); frames whose key is in ``fail_on`` raise (an
unconverged SCF), in ``hang_on`` never return, in ``crash_on`` kill their process with a
segfault and in ``nan_on`` return NaN forces. Named by import path in tests:
``ReferenceConfig(kind="counting_reference:make_calculator", options={...})``.
"""

import os
import signal
import time

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from potstill.references import make_calculator as make_reference_calculator


class Counting(Calculator):
    def __init__(self, inner, log, fail_on=(), hang_on=(), crash_on=(), nan_on=(), delay_s=0.0):
        super().__init__()
        self.delay_s = delay_s
        self.inner, self.log, self.fail_on = inner, log, set(fail_on)
        self.hang_on, self.crash_on, self.nan_on = set(hang_on), set(crash_on), set(nan_on)
        self.implemented_properties = list(inner.implemented_properties)
        self.force_consistent = getattr(inner, "force_consistent", False)  # GPAW: free energy

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        key = atoms.info.get("source_id", atoms.info.get("step"))
        if "source_index" in atoms.info:  # low2high's relabeled frames (two pools, one store)
            key = f"{atoms.info['source']}-{atoms.info['source_index']}"
        if "al_key" in atoms.info:  # rare_events: a selected SMD frame and its noisy copies
            key = f"{atoms.info['al_key']}-{atoms.info.get('augment_copy', 0)}"
        with open(self.log, "a") as handle:
            handle.write(f"{key}\n")
            handle.flush()
        time.sleep(self.delay_s)  # an expensive reference: writers overlap in time
        if key in self.fail_on:
            raise RuntimeError(f"node lost on frame {key}")
        if key in self.hang_on:
            time.sleep(600)  # a calculation that never ends
        if key in self.crash_on:
            os.kill(os.getpid(), signal.SIGSEGV)  # a calculator that takes its process down
        # everything at once, so one call is one calculation (one SCF for DFT)
        wanted = {"energy", "free_energy", "forces", "stress"} & set(self.implemented_properties)
        if hasattr(self.inner, "reset"):  # as ASE's get_property does for a new frame
            self.inner.reset()  # (tblite would otherwise start from the last frame's SCF)
        self.inner.calculate(atoms, sorted(wanted | set(properties)), system_changes)
        self.results = dict(self.inner.results)
        if key in self.nan_on:
            self.results["forces"] = self.results["forces"] * np.nan


def make_calculator(
    *, inner, log, fail_on=(), hang_on=(), crash_on=(), nan_on=(), delay_s=0.0, **options
):
    inner_calc = make_reference_calculator(inner, **options)
    return Counting(inner_calc, log, fail_on, hang_on, crash_on, nan_on, delay_s)


class Dying(Counting):
    """Kills its own process the first time it computes frame ``die_on`` (a worker
    that crashes), leaving ``marker`` behind."""

    def __init__(self, inner, log, die_on, marker):
        super().__init__(inner, log)
        self.die_on, self.marker = die_on, marker

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms.info.get("step") == self.die_on and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        super().calculate(atoms, properties, system_changes)


def make_dying(*, inner, log, die_on, marker, **options):
    return Dying(make_reference_calculator(inner, **options), log, die_on, marker)


def calls(log) -> list:
    """The keys of the frames computed so far, in order (ints; ``"None"`` for a frame
    without one)."""
    try:
        return [int(key) if key.lstrip("-").isdigit() else key for key in open(log).read().split()]
    except FileNotFoundError:
        return []
