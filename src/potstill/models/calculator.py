"""ASE calculator wrapping an ANI model or a committee of them.

Contract: ``PotstillCalculator(model)`` fills ``self.results`` with ``energy`` and
``free_energy`` (eV), ``forces (n, 3)`` eV/A, ``energies (n,)`` eV per atom, and, for
cells periodic in all three directions, ``stress (6,)`` eV/A^3 (Voigt, ASE sign
convention) from the first call that asks for it on (MD asks only for forces and energy,
so it never pays for stress). For a :class:`~potstill.models.committee.Committee` the values are the
committee means and the uncertainties travel in ``results`` too (as in MACE's committee
calculator): ``energy_std`` (eV), ``energies_std (n,)`` eV per atom, ``forces_std (n, 3)``
eV/A, and ``stress_std (6,)`` when stress is computed; all population standard deviations.
With ``forces_std=False`` a committee's forces and stress are those of its mean energy, one
backward pass instead of one per member (see :mod:`potstill.models.committee`), and
``forces_std``/``stress_std`` are left out: MD watched by the atomic-energy spread needs
only that spread.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from potstill.aev.neighbors import FrameBatcher
from potstill.errors import PotstillError
from potstill.models.ani import ANIModel
from potstill.models.checkpoint import load_checkpoint
from potstill.models.committee import Committee

__all__ = ["PotstillCalculator"]


class PotstillCalculator(Calculator):
    """Energies, forces, stress (and committee spreads) of a potstill NNP for ASE.

    Args:
        model: an :class:`ANIModel`, a :class:`Committee`, or the path of a checkpoint.
            The calculator uses the object itself when it already has ``dtype`` and
            ``device`` (so weight updates show after ``calc.reset()``), else a converted
            copy.
        dtype: float dtype of the evaluation.
        device: torch device of the evaluation.
        forces_std: for a committee, also the members' own forces (and their spread).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model: ANIModel | Committee | str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        forces_std: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, (str, os.PathLike)):
            model = load_checkpoint(model, device=device)
        if not isinstance(model, (ANIModel, Committee)):
            raise PotstillError(
                f"model must be an ANIModel, a Committee or a checkpoint path, "
                f"got {type(model).__name__}"
            )
        if model.dtype != dtype or model.device != torch.device(device):
            model = copy.deepcopy(model).to(dtype=dtype, device=device)
        self.model = model.eval()
        self._batcher: FrameBatcher | None = None  # made at the first call
        self._stress_asked = False
        self.forces_std = bool(forces_std)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        """Energy, forces and atomic energies (and stress) of ``atoms``.

        Stress is computed once it has been asked for (``properties`` names it), and at
        every later call, so MD, which asks only for forces and energy, never pays for
        it, and a cell filter, which asks for forces then stress, recomputes only once.
        """
        super().calculate(atoms, properties, system_changes)
        self._stress_asked = self._stress_asked or "stress" in properties
        periodic = bool(np.all(self.atoms.pbc))
        stress = periodic and self._stress_asked
        batch = self._batch(self.atoms)
        options = {}
        if isinstance(self.model, Committee) and not self.forces_std:
            options["member_forces"] = False
        with torch.no_grad():
            out = self.model(batch, forces=True, stress=stress, **options)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].cpu().numpy(),
            "energies": out["atomic_energies"].cpu().numpy(),
        }
        if stress:
            self.results["stress"] = out["stress"][0].cpu().numpy()
        if isinstance(self.model, Committee):
            self.results["energy_std"] = float(out["energy_std"][0])
            self.results["energies_std"] = out["atomic_energies_std"].cpu().numpy()
            if self.forces_std:
                self.results["forces_std"] = out["forces_std"].cpu().numpy()
                if stress:
                    self.results["stress_std"] = out["stress_std"][0].cpu().numpy()

    def check_state(self, atoms, tol=1e-15):
        """What changed since the last calculation, as ASE's ``check_state`` but by exact
        comparison: ASE's ``np.allclose`` on every array cost about 5 % of a 108-atom MD
        step. A difference below ASE's ``tol`` counts as a change here (one more
        evaluation, never a stale result)."""
        previous = self.atoms
        if (
            previous is None
            or len(previous) != len(atoms)
            or previous.arrays.keys() != atoms.arrays.keys()
        ):
            return super().check_state(atoms, tol=tol)
        changes = [
            name
            for name, before, now in (
                ("cell", previous.cell[:], atoms.cell[:]),
                ("pbc", previous.pbc, atoms.pbc),
            )
            if not np.array_equal(before, now)
        ]
        changes += [
            name
            for name in all_changes
            if name in atoms.arrays
            and not np.array_equal(previous.arrays[name], atoms.arrays[name])
        ]
        return [name for name in changes if name not in self.ignored_changes]

    def _batch(self, atoms):
        """The Batch of ``atoms``, sharing unchanged tensors with the previous call's."""
        model, batcher = self.model, self._batcher
        if batcher is None or (batcher.dtype, batcher.device) != (model.dtype, model.device):
            batcher = FrameBatcher(
                model.species, model.cutoff, dtype=model.dtype, device=model.device
            )
            self._batcher = batcher
        return batcher(atoms)
