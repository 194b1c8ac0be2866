"""The ``deform`` sampler: uniaxial and shear deformation MD (seed 001, section 2.1.2).

Seed 001 found that MOMT data leave the stress near zero strain poorly learned (its
shear modulus is off by 30-70 %) and added configurations "related to uniaxial and
shear deformations": the crystal is relaxed (positions and cell, zero stress), then run
at 300 K where only the ``lx`` (uniaxial) and ``xy`` (shear) components of the cell may
change, 200 ps with a 1 fs step, a frame every 100 steps: 2,000 frames.

Here the relaxation is FIRE with ASE's cell filter on the reference calculator
(:func:`potstill.crystals.relax_atoms`), and the MD is the ``md`` sampler's LAMMPS run
with a Nose-Hoover barostat on ``x`` (at ``pressure_bar``) and ``xy`` (at zero shear
stress) only (:func:`potstill.sampling.md.sample_md`, ``barostat="deform"``). An
interrupted run replays its seeded trajectory up to the frames it stored, as ``md`` does.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from potstill.crystals import StructureConfig, relax_atoms
from potstill.errors import PotstillError
from potstill.references import ReferenceConfig
from potstill.rundir import Stage
from potstill.sampling.md import MDConfig, sample_into_pool
from potstill.settings import Section

__all__ = ["Config", "DeformConfig", "OWNS", "run"]

OWNS: tuple[str, ...] = ()


class DeformConfig(Section):
    """``structure`` (relaxed first), ``temperature_K``, ``steps`` of ``timestep_fs``
    after ``equilibration_steps``, a frame every ``interval`` steps; ``pressure_bar``
    acts on ``lx``; ``seed`` of the velocities."""

    sampler: Literal["deform"] = "deform"
    structure: StructureConfig = Field(default_factory=StructureConfig)
    temperature_K: float = Field(300.0, gt=0)
    pressure_bar: float = 1.0
    timestep_fs: float = Field(1.0, gt=0)
    equilibration_steps: int = Field(10000, ge=0)
    steps: int = Field(200000, gt=0)
    interval: int = Field(100, gt=0)
    seed: int = 1

    def md(self) -> MDConfig:
        """The NPT run as the ``md`` sampler's section."""
        return MDConfig(
            ensemble="npt",
            temperatures_K=[self.temperature_K],
            pressure_bar=self.pressure_bar,
            timestep_fs=self.timestep_fs,
            equilibration_steps=self.equilibration_steps,
            steps_per_temperature=self.steps,
            interval=self.interval,
            seed=self.seed,
        )


Config = DeformConfig


def run(
    config: DeformConfig,
    *,
    species: Sequence[str],
    reference: ReferenceConfig,
    stage: Stage,
    executor=None,
    progress=None,
) -> dict:
    """Relax ``config.structure`` with the reference, then sample the deformation MD
    into the run's pool."""
    config.structure.check_species(species, "deform")
    atoms = config.structure.build()
    relaxed = relax_atoms(atoms, reference.build().calculator, fmax_eV_per_A=1e-4)
    if not relaxed["converged"]:
        raise PotstillError(
            f"the {config.structure.lattice} start did not relax with {reference.kind} "
            f"({relaxed['stopped']}); check the structure and the reference"
        )
    atoms.calc = None
    results = sample_into_pool(
        [(atoms, config.structure.lattice)],
        config.md(),
        reference=reference,
        stage=stage,
        progress=progress,
        barostat="deform",
    )
    cell = atoms.cell.cellpar()
    return results | {"relaxed_cell_A_deg": [round(float(v), 6) for v in cell]}
