"""A real reference that counts its calls and fails on chosen frames.

``make_calculator(inner=..., log=PATH, fail_on=[...], **options)`` wraps the registered
reference ``inner`` (EAM in LAMMPS, EMT, ...): every calculation appends the frame's key
(``info["source_id"]``, else ``info["step"]``) to ``log`` (a file, so calls made in
worker processes are counted too), and frames whose key is in ``fail_on`` raise, as a
crashed or unconverged reference would. Named by import path in tests:
``ReferenceConfig(kind="counting_reference:make_calculator", options={...})``.
"""

import os

from ase.calculators.calculator import Calculator, all_changes

from potstill.references import make_calculator as make_reference_calculator


class Counting(Calculator):
    def __init__(self, inner, log, fail_on=()):
        super().__init__()
        self.inner, self.log, self.fail_on = inner, log, set(fail_on)
        self.implemented_properties = list(inner.implemented_properties)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        key = atoms.info.get("source_id", atoms.info.get("step"))
        with open(self.log, "a") as handle:
            handle.write(f"{key}\n")
        if key in self.fail_on:
            raise RuntimeError(f"node lost on frame {key}")
        self.inner.calculate(atoms, properties, system_changes)
        self.results = dict(self.inner.results)


def make_calculator(*, inner, log, fail_on=(), **options):
    return Counting(make_reference_calculator(inner, **options), log, fail_on)


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
