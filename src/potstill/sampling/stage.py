"""The sample stage: run the configured sampler into the run's pool, once.

Owns ``<out>/pool.db``, ``<out>/sample.json`` (the record), the sampler's own files and
``<out>/report/sample/``. A finished stage is kept on ``--resume``; an unfinished one is
continued by its sampler (MOMT from its saved state, translation from the frames
already translated, MD by replaying its seeded trajectory up to the frames already
stored, which are kept) with the same settings only.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from potstill.executors import ExecutorConfig
from potstill.references import ReferenceConfig
from potstill.rundir import RunDir
from potstill.sampling import get_sampler

__all__ = ["sample"]


def sample(
    config: Any,
    *,
    species: Sequence[str],
    reference: ReferenceConfig,
    run: RunDir,
    executor: ExecutorConfig | None = None,
    progress=None,
) -> dict:
    """Fill ``run.pool`` with the sampler ``config.sampler`` (see the module docstring);
    ``executor`` is where a sampler that fans work out (translate's labels) runs it.
    Returns the sampler's results."""
    sampler = get_sampler(config.sampler)
    stage = run.stage("sample", root=".", owns=["pool.db", *sampler.OWNS])
    finished = stage.finished()
    if finished is not None:
        return finished
    stage.claim()
    stage.check_settings(
        {
            "sample": config.model_dump(),
            "species": list(species),
            "reference": reference.model_dump(),
        },
        what="sample, species or reference",
    )
    started = time.time()
    results = sampler.run(
        config,
        species=species,
        reference=reference,
        stage=stage,
        executor=executor,
        progress=progress,
    )
    stage.write_record(inputs=config.model_dump(), results=results, started=started)
    figures = [stage.report / name for name in results.get("figures", [])]
    stage.publish(
        {k: v for k, v in results.items() if k != "figures"}
        | {"wall_time_s": round(time.time() - started, 1)},
        title=f"sample ({config.sampler}): {results.get('n_frames', results.get('n_selected'))} frames",
        figures=figures,
    )
    return results
