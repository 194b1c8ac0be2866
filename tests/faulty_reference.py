"""A reference that breaks on purpose: EMT, but NaN forces or a crash on chosen frames."""

import numpy as np
from ase.calculators.emt import EMT


class FaultyEMT(EMT):
    def __init__(self, *, bad_steps=(), mode="nan"):
        super().__init__()
        self.bad_steps, self.mode = set(bad_steps), mode

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        if atoms.info.get("step") in self.bad_steps:
            if self.mode == "crash":
                raise RuntimeError("SCF did not converge")
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


def make_calculator(**options):
    return FaultyEMT(**options)
