"""ASE calculator wrapping an ANI model or a committee of them.

Contract: ``PotstillCalculator(model)`` fills ``self.results`` with ``energy`` and
``free_energy`` (eV), ``forces (n, 3)`` eV/A, ``energies (n,)`` eV per atom, and, for
cells periodic in all three directions, ``stress (6,)`` eV/A^3 (Voigt, ASE sign
convention). For a :class:`~potstill.models.committee.Committee` the values are the
committee means and the uncertainties travel in ``results`` too (as in MACE's committee
calculator): ``energy_std`` (eV), ``energies_std (n,)`` eV per atom, ``forces_std (n, 3)``
eV/A, and ``stress_std (6,)`` when stress is computed; all population standard deviations.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from potstill.errors import PotstillError
from potstill.models.ani import ANIModel, load_checkpoint
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
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model: ANIModel | Committee | str | os.PathLike,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
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

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(np.all(self.atoms.pbc))
        batch = self.model.batch([self.atoms])
        with torch.no_grad():
            out = self.model(batch, forces=True, stress=periodic)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out["forces"].cpu().numpy(),
            "energies": out["atomic_energies"].cpu().numpy(),
        }
        if periodic:
            self.results["stress"] = out["stress"][0].cpu().numpy()
        if isinstance(self.model, Committee):
            self.results["energy_std"] = float(out["energy_std"][0])
            self.results["energies_std"] = out["atomic_energies_std"].cpu().numpy()
            self.results["forces_std"] = out["forces_std"].cpu().numpy()
            if periodic:
                self.results["stress_std"] = out["stress_std"][0].cpu().numpy()
