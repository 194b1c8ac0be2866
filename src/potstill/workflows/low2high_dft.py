"""The DFT side of ``low2high``: the reference lattice and elastic constants, converged
in the k-point mesh (seed 001 section 2.3 used an 8-atom cell with 6x6x6 k-points).

:func:`dft_elastic` computes, for each mesh of ``DFTElasticConfig.meshes`` in turn, the
zero-pressure lattice constant and C11, C12, C44 of the 4-atom FCC cell with the
high-fidelity reference (:func:`potstill.validation.elastic.cubic_elastic`, +-1 %
strains). Each mesh's result is saved as it finishes (``mesh_<n>x<n>x<n>.json``), so an
interrupted scan resumes at the next mesh; the densest mesh is the DFT reference, and the
change from the one before it is the stated convergence.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from potstill.references import ReferenceConfig
from potstill.rundir import read_record, write_json
from potstill.settings import Section
from potstill.validation.elastic import SUMMARY_KEYS, cubic_elastic, percent_errors

__all__ = ["DFTElasticConfig", "dft_elastic"]


class DFTElasticConfig(Section):
    """``element`` and ``a_guess_A`` of the FCC cell; ``meshes`` (k-points per
    direction, ascending; the last is the reference); ``options``: the high-fidelity
    reference's options for these cells (replacing its ``kpts``); ``strain``."""

    element: str = "Al"
    a_guess_A: float = Field(4.04, gt=0)
    meshes: list[int] = Field(default_factory=lambda: [8, 12, 16])
    options: dict = Field(default_factory=dict)
    strain: float = Field(0.01, gt=0, lt=0.1)


def dft_elastic(config: DFTElasticConfig, reference: ReferenceConfig, out: Path) -> dict:
    """Every mesh's constants (see the module docstring); returns ``{"meshes": [...],
    "reference": <densest mesh's result>, "change_percent": {key: change from the
    previous mesh}}``."""
    out.mkdir(parents=True, exist_ok=True)
    options = {**reference.options, **config.options}
    options.pop("kpt_density", None)
    scan = []
    for n in config.meshes:
        path = out / f"mesh_{n}x{n}x{n}.json"
        settings = {"options": options, "n": n, "strain": config.strain, "a0": config.a_guess_A}
        saved = read_record(path)
        if saved is not None and saved.get("settings") == settings:
            scan.append(saved["results"])
            continue
        started = time.time()
        calc = ReferenceConfig(
            kind=reference.kind, name=reference.name, options={**options, "kpts": [n, n, n]}
        ).build()
        result = cubic_elastic(
            config.element, calc.calculator, a_guess_A=config.a_guess_A, strain=config.strain
        )
        result = {k: v for k, v in result.items() if k != "lattice_A"}
        result |= {"mesh": n, "wall_time_s": round(time.time() - started, 1)}
        write_json(path, {"settings": settings, "results": result})
        scan.append(result)
    last, before = scan[-1], scan[-2] if len(scan) > 1 else None
    change = percent_errors(last, before, ("a_A",) + SUMMARY_KEYS) if before else {}
    return {"meshes": scan, "reference": last, "change_percent": change}
