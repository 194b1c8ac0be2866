"""Committee active-learning distillation of a pool (seed 000, SI Note 4; seed 004).

The pool, in sampling (store id) order, is cut into ``n_chunks`` sequential chunks.
Iteration 0 trains K members on chunk 0 (or a random ``initial`` subset of it). Each
later iteration scores the next chunk with the committee of the previous one (per-atom
std of atomic energies across members, :mod:`potstill.training.strategies`), keeps the
frames with any atom above ``mu + k sigma`` (of the atomic stds of the frames kept so
far, or of a reference window of the pool), and retrains with the ``random`` or
``inherited`` strategy. After each iteration the committee's energy MAE on the whole pool
is recorded: the curve of seed 000 Fig. 2 (pool MAE vs iteration and fraction kept).
With ``final_pass``, iteration ``n_chunks`` trains the committee once more on the
distilled set, without new frames.

Run directory (``<out>/distill``)::

    iter_<i>/member_<k>.pt   the members after iteration i
    iter_<i>/uq.npz          their pool evaluation (energy errors, atomic-std sums, scores)
    iter_<i>/iteration.json  written last: iteration i is finished
    train.db                 the distilled training set (kept frames + noisy copies)
    selected_ids.json        kept pool ids and the iteration that kept each
    committee.pt             the final committee;  distill.json: the record

and ``<out>/report/distill_curve.png``, ``distill_table.md``, ``distill.html`` plus a
``distill`` entry in ``<out>/report/summary.json``. A rerun with ``resume=True`` skips finished iterations
and reuses finished members of an interrupted one.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from potstill.config import DistillConfig, RunConfig
from potstill.errors import PotstillError
from potstill.records import claim_output, claim_settings, jsonable, write_record
from potstill.store import Store
from potstill.training import strategies
from potstill.training.strategies import MemberTask, Split, UQStats

_EVAL_CHUNK = 256  # frames read from the store and evaluated at a time


@dataclass
class _Pool:
    """The frames to distil: store ``ids`` in sampling order, cut into ``chunks`` of
    positions (into ``ids``)."""

    store: Store
    ids: np.ndarray
    chunks: list[np.ndarray]

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(pid): p for p, pid in enumerate(self.ids)}

    def positions_of(self, pool_ids: list[int]) -> np.ndarray:
        """Positions (into ``ids``) of the store ids ``pool_ids``."""
        return np.array([self._position[pid] for pid in pool_ids], dtype=int)


@dataclass
class _Iteration:
    """A finished iteration: its record (iteration.json) and pool evaluation (uq.npz)."""

    record: dict
    uq: dict[str, np.ndarray]

    @property
    def splits(self) -> list[Split]:
        return [Split(**s) for s in self.record["splits"]]


def distill(config: RunConfig, out: Path, *, overwrite: bool = False, resume: bool = False, progress=None) -> dict:
    """Run the distillation loop configured by ``config.distill``; returns the summary."""
    d = config.distill
    if d is None:
        raise PotstillError("the config has no `distill` section; see examples/distill-ni.yaml")
    out = Path(out)
    root = out / "distill"
    claim_output([root], overwrite=overwrite, resume=resume, what="distill")
    started = time.time()
    pool = _open_pool(d, out)
    _check(config, pool)
    claim_settings(root, _settings(config),
                   refusal=f"{root} was distilled with other settings; pass --overwrite to start over")
    training = Store(root / "train.db")
    iterations: list[_Iteration] = []
    with _executor(d) as executor:
        for i in range(d.n_chunks + int(d.final_pass)):
            finished = _load_iteration(root, i)
            if finished is None:
                finished = _run_iteration(config, pool, training, root, i, iterations[-1] if iterations else None,
                                          executor=executor, progress=progress)
            iterations.append(finished)
    return _finish(config, out, pool, iterations, started)


# -- setup ----------------------------------------------------------------------------
def _open_pool(d: DistillConfig, out: Path) -> _Pool:
    url = d.pool or str(out / "pool.db")
    store = Store(url, create=False)
    ids = np.asarray(store.ids(), dtype=int)[:: d.stride]
    if d.max_frames is not None:
        ids = ids[: d.max_frames]
    if d.n_chunks > len(ids):
        raise PotstillError(f"distill.n_chunks = {d.n_chunks} exceeds the {len(ids)} pool frames of {url}; "
                            f"use n_chunks <= {len(ids)}")
    return _Pool(store=store, ids=ids, chunks=np.array_split(np.arange(len(ids)), d.n_chunks))


def _check(config: RunConfig, pool: _Pool) -> None:
    d, k = config.distill, config.train.committee
    if k < 2:
        raise PotstillError(f"distillation needs a committee of at least 2 models (3, 5 or 7), got train.committee = {k}")
    first = len(pool.chunks[0])
    if first < 2:
        raise PotstillError(f"chunk 0 holds {first} frame(s); need at least 2 to train: use fewer n_chunks")
    if d.initial is not None and d.initial > first:
        raise PotstillError(f"distill.initial = {d.initial} exceeds chunk 0 ({first} frames); use initial <= {first}")
    limit = _budget_frames(d, pool)
    if limit is not None and (d.initial or first) > limit:
        raise PotstillError(f"distill.budget allows {limit} frames but iteration 0 keeps {d.initial or first}; "
                            "lower distill.initial or raise the budget")
    if d.reference_window is not None and d.reference_window[1] > len(pool.ids):
        raise PotstillError(f"distill.reference_window {list(d.reference_window)} ends beyond the {len(pool.ids)} "
                            "pool frames")


def _budget_frames(d: DistillConfig, pool: _Pool) -> int | None:
    """The most pool frames the run may keep (``distill.budget``), or None."""
    if d.budget is None:
        return None
    return int(d.budget) if isinstance(d.budget, int) else int(np.floor(d.budget * len(pool.ids) + 1e-9))


def _settings(config: RunConfig) -> dict:
    return json.loads(json.dumps({
        "distill": config.distill.model_dump(exclude={"executor", "workers", "scheduler_address", "baseline_run",
                                                      "final_pass"}),
        "train": config.train.model_dump(), "model": config.model.model_dump(), "species": config.species,
        "reference": config.reference.model_dump(),
    }, default=jsonable))


def _executor(d: DistillConfig):
    """The executor of member training, or None to train in-process with progress bars."""
    if d.executor == "serial" or (d.workers == 1 and d.executor == "process"):
        return nullcontext(None)
    from potstill.executors import make_executor

    return make_executor(d.executor, d.workers, address=d.scheduler_address)


# -- one iteration --------------------------------------------------------------------
def _run_iteration(config: RunConfig, pool: _Pool, training: Store, root: Path, i: int,
                   previous: _Iteration | None, *, executor, progress) -> _Iteration:
    d = config.distill
    started = time.time()
    final = i == d.n_chunks  # the final pass: no chunk left, retrain on the distilled set
    new, threshold = (np.zeros(0, dtype=int), {}) if final else _select(d, pool, i, previous)
    new_ids = pool.ids[new].tolist()
    kept = (previous.record["selected_ids"] if previous else []) + new_ids
    rows = _training_rows(config, pool, training, i, new_ids)
    all_rows = {**(_rows(previous.record) if previous else {}), **rows}
    iter_dir = root / f"iter_{i}"
    iter_dir.mkdir(parents=True, exist_ok=True)
    if previous is not None and not new_ids and not final:  # nothing new: the data did not change
        splits, members = previous.splits, previous.record["members"]
        for k in range(config.train.committee):
            shutil.copyfile(root / f"iter_{i - 1}" / f"member_{k}.pt", iter_dir / f"member_{k}.pt")
    else:
        splits = strategies.next_splits(
            d.strategy, previous.splits if previous else None, kept, new_ids, n_members=config.train.committee,
            validation_fraction=config.train.validation_fraction,
            rngs=[np.random.default_rng([d.seed, i, k]) for k in range(config.train.committee)],
        )
        tasks = _member_tasks(config, training, root, i, splits, all_rows)
        members = _train_members(tasks, executor, progress)
    uq, errors = _evaluate(config, pool, root, i, kept, progress)
    np.savez(iter_dir / "uq.npz", **uq)
    record = {
        "iteration": i,
        "final_pass": final,
        "chunk": None if final else [int(pool.chunks[i][0]), int(pool.chunks[i][-1]) + 1],
        "n_chunk": 0 if final else len(pool.chunks[i]),
        "n_new": len(new_ids),
        "n_selected": len(kept),
        "n_training_frames": sum(len(v) for v in all_rows.values()),
        "fraction_new_of_chunk": None if final else len(new_ids) / len(pool.chunks[i]),
        "fraction_kept": len(kept) / len(pool.ids),
        "fraction_kept_of_seen": len(kept) / (len(pool.ids) if final else int(pool.chunks[i][-1] + 1)),
        **threshold,
        **errors,
        "retrained": previous is None or bool(new_ids) or final,
        "wall_time_s": round(time.time() - started, 1),
        "new_ids": new_ids,
        "selected_ids": kept,
        "all_rows": {str(k): v for k, v in all_rows.items()},
        "splits": [s.to_dict() for s in splits],
        "members": members,
    }
    (iter_dir / "iteration.json").write_text(json.dumps(record, default=jsonable))
    return _Iteration(record=record, uq=uq)


def _select(d: DistillConfig, pool: _Pool, i: int, previous: _Iteration | None) -> tuple[np.ndarray, dict]:
    """Positions of the new frames of iteration ``i`` and the threshold used."""
    chunk = pool.chunks[i]
    if i == 0:
        if d.initial is None:
            return chunk, {"threshold_eV": None, "mu_eV": None, "sigma_eV": None}
        picked = np.random.default_rng(d.seed).choice(chunk, size=d.initial, replace=False)
        return np.sort(picked), {"threshold_eV": None, "mu_eV": None, "sigma_eV": None}
    uq = previous.uq
    if d.reference_window is not None:
        reference = np.arange(*d.reference_window)
    else:
        reference = pool.positions_of(previous.record["selected_ids"])
    stats = UQStats(int(uq["n_atoms"][reference].sum()), float(uq["uq_sum"][reference].sum()),
                    float(uq["uq_sq"][reference].sum()))
    threshold, mu, sigma = strategies.uq_threshold(stats, d.k_sigma)
    scores = uq["score"][chunk]
    above = np.flatnonzero(scores > threshold)
    keep = above
    limit = _budget_frames(d, pool)
    if limit is not None:  # the labeling budget: the highest scores first
        room = max(limit - len(previous.record["selected_ids"]), 0)
        keep = np.sort(above[np.argsort(-scores[above], kind="stable")[:room]])
    return chunk[keep], {
        "threshold_eV": threshold, "mu_eV": mu, "sigma_eV": sigma,
        "chunk_score_max_eV": float(np.max(scores)), "chunk_score_median_eV": float(np.median(scores)),
        "n_above_threshold": int(len(above)), "n_cut_by_budget": int(len(above) - len(keep)),
    }


def _training_rows(config: RunConfig, pool: _Pool, training: Store, i: int, new_ids: list[int]) -> dict[int, list[int]]:
    """Add the new frames (and their noisy copies) of iteration ``i`` to the training
    store in one transaction; ``{pool id: [training rows]}``. Rows an interrupted run
    already added are reused."""
    d = config.distill
    existing = training.get(selection=f"distill_iteration={i}")
    if not existing and new_ids:
        frames = pool.store.get(new_ids)
        for atoms in frames:
            atoms.info.update(pool_id=int(atoms.info["store_id"]), distill_iteration=i)
        if d.augment_copies > 1:
            from potstill.references import make_reference
            from potstill.training.augment import augment_with_noise

            reference = make_reference(config.reference.kind, name=config.reference.name, **config.reference.options)
            frames = augment_with_noise(frames, copies=d.augment_copies, delta_A=d.augment_delta_A,
                                        reference=reference, seed=np.random.default_rng([d.seed, i, 7]))
        training.add(frames)
        existing = training.get(selection=f"distill_iteration={i}")
    rows: dict[int, list[int]] = {}
    for atoms in existing:
        rows.setdefault(int(atoms.info["pool_id"]), []).append(int(atoms.info["store_id"]))
    return rows


def _rows(record: dict) -> dict[int, list[int]]:
    """Cumulative ``{pool id: [training rows]}`` up to the iteration of ``record``."""
    return {int(k): v for k, v in record["all_rows"].items()}


def _member_tasks(config: RunConfig, training: Store, root: Path, i: int, splits: list[Split],
                  rows: dict[int, list[int]]) -> list[MemberTask]:
    from potstill.training.self_energy import fit_self_energies

    d, t = config.distill, config.train
    warm = d.strategy == "inherited" and i > 0
    self_energies = None
    if not warm:
        every_row = sorted(r for ids in rows.values() for r in ids)
        self_energies = fit_self_energies(training.frames(every_row), config.reference.name, config.species)
    model = {"preset": config.model.preset, "species": list(config.species), "overrides": dict(config.model.overrides)}
    tasks = []
    for k, split in enumerate(splits):
        tasks.append(MemberTask(
            index=k, store_url=training.url,
            train_ids=tuple(r for pid in split.train for r in rows[pid]),
            validation_ids=tuple(r for pid in split.validation for r in rows[pid]),
            reference=config.reference.name, train_config=t.model_dump(), model=model,
            seed=t.seed + k + 1000 * i, out_path=str(root / f"iter_{i}" / f"member_{k}.pt"),
            self_energies=self_energies, warm_start=str(root / f"iter_{i - 1}" / f"member_{k}.pt") if warm else None,
            threads=1 if d.workers > 1 else None, metadata={"distill_iteration": i, "strategy": d.strategy},
        ))
    return tasks


def _train_members(tasks: list[MemberTask], executor, progress) -> list[dict]:
    """Train the members in this process (with progress bars) or over ``executor``."""
    if executor is None:
        return [strategies.train_member(task, progress=progress) for task in tasks]
    futures = [executor.submit(strategies.train_member, task) for task in tasks]
    bar = progress.add_task(f"training {len(tasks)} members", total=len(tasks)) if progress else None
    summaries = []
    for future in futures:  # in member order; a failure names its member
        try:
            summaries.append(future.result())
        except PotstillError:
            raise
        except Exception as error:  # noqa: BLE001 - report which member failed
            raise PotstillError(f"training member {len(summaries)} failed: {error}") from error
        if progress is not None:
            progress.update(bar, advance=1)
    return summaries


def _load_committee(root: Path, i: int, n_members: int):
    from potstill.models import load_checkpoint
    from potstill.models.committee import Committee

    return Committee([load_checkpoint(root / f"iter_{i}" / f"member_{k}.pt") for k in range(n_members)])


def _evaluate(config: RunConfig, pool: _Pool, root: Path, i: int, kept: list[int], progress) -> tuple[dict, dict]:
    """Evaluate the committee of iteration ``i`` on the pool (or on what the next
    selection needs): per-frame energy error per atom, score and atomic-std sums."""
    from potstill.frames import get_labels

    d = config.distill
    n = len(pool.ids)
    if d.evaluate_pool:
        positions = np.arange(n)
    else:
        need = pool.positions_of(kept).tolist()
        if i + 1 < d.n_chunks:
            need.extend(pool.chunks[i + 1].tolist())
        if d.reference_window is not None:
            need.extend(range(*d.reference_window))
        positions = np.unique(np.asarray(need, dtype=int))
    committee = _load_committee(root, i, config.train.committee)
    uq = {key: np.full(n, np.nan) for key in ("error_eV_per_atom", "score", "uq_sum", "uq_sq")}
    uq["n_atoms"] = np.zeros(n, dtype=int)
    bar = progress.add_task(f"iteration {i}: scoring {len(positions)} frames", total=len(positions)) if progress else None
    for start in range(0, len(positions), _EVAL_CHUNK):
        where = positions[start : start + _EVAL_CHUNK]
        frames = pool.store.get(pool.ids[where].tolist())
        result = strategies.committee_uncertainty(committee, frames)
        n_atoms = np.array([len(a) for a in frames])
        reference = np.array([get_labels(a, config.reference.name).energy for a in frames])
        uq["error_eV_per_atom"][where] = (result.energy - reference) / n_atoms
        uq["score"][where] = result.score
        uq["uq_sum"][where] = [s.sum() for s in result.atom_std]
        uq["uq_sq"][where] = [(s**2).sum() for s in result.atom_std]
        uq["n_atoms"][where] = n_atoms
        if progress is not None:
            progress.update(bar, advance=len(where))
    errors = {}
    if d.evaluate_pool:
        e = uq["error_eV_per_atom"] * 1000
        errors = {"pool_energy_mae_meV_per_atom": float(np.mean(np.abs(e))),
                  "pool_energy_rmse_meV_per_atom": float(np.sqrt(np.mean(e**2)))}
    return uq, errors


def _load_iteration(root: Path, i: int) -> _Iteration | None:
    path = root / f"iter_{i}" / "iteration.json"
    if not path.exists():
        return None
    with np.load(root / f"iter_{i}" / "uq.npz") as data:
        uq = {key: data[key] for key in data.files}
    return _Iteration(record=json.loads(path.read_text()), uq=uq)


# -- outputs --------------------------------------------------------------------------
def _baseline(run: Path, pool: _Pool, mae: float | None) -> dict:
    """The all-frames committee of ``run`` (a finished ``n_chunks: 1`` distill run of the
    same pool): its pool MAE and ``ratio`` = this run's MAE / it. A baseline that is not
    (yet) there is noted in the summary, not an error: rerun with --resume once it is."""
    path = run / "report" / "summary.json"
    if not path.exists():
        return {"run": str(run), "missing": f"{path} not found; run the baseline, then `potstill distill --resume`"}
    other = json.loads(path.read_text()).get("distill") or {}
    if other.get("pool") != pool.store.url or other.get("n_pool") != len(pool.ids) or other.get("n_chunks") != 1:
        raise PotstillError(f"distill.baseline_run {run} is not an n_chunks: 1 run of the same {len(pool.ids)} pool "
                            f"frames of {pool.store.url}; point it to one")
    reference = other.get("pool_energy_mae_meV_per_atom")
    return {"run": str(run), "n_selected": other.get("n_selected"), "pool_energy_mae_meV_per_atom": reference,
            "mae_ratio": None if mae is None or not reference else mae / reference}



_CURVE_KEYS = ("iteration", "final_pass", "chunk", "n_chunk", "n_new", "n_selected", "n_training_frames",
               "fraction_new_of_chunk", "fraction_kept", "fraction_kept_of_seen", "threshold_eV", "mu_eV", "sigma_eV",
               "chunk_score_max_eV", "n_above_threshold", "n_cut_by_budget", "pool_energy_mae_meV_per_atom",
               "pool_energy_rmse_meV_per_atom", "retrained", "wall_time_s")


def _finish(config: RunConfig, out: Path, pool: _Pool, iterations: list[_Iteration], started: float) -> dict:
    from potstill.models import save_checkpoint
    from potstill.report.distill import distill_curve, distill_markdown
    from potstill.report.html import write_html

    root, d = out / "distill", config.distill
    last = iterations[-1].record
    curve = [{k: it.record[k] for k in _CURVE_KEYS if k in it.record} for it in iterations]
    kept_in = {pid: it.record["iteration"] for it in iterations for pid in it.record["new_ids"]}
    (root / "selected_ids.json").write_text(json.dumps(
        {"pool": pool.store.url, "n_pool": len(pool.ids), "ids": last["selected_ids"],
         "iteration": [kept_in[pid] for pid in last["selected_ids"]]}))
    committee = _load_committee(root, len(iterations) - 1, config.train.committee)
    save_checkpoint(committee, root / "committee.pt", training_ids=last["selected_ids"])
    summary = {
        "pool": pool.store.url, "n_pool": len(pool.ids), "strategy": d.strategy, "k_sigma": d.k_sigma,
        "budget_frames": _budget_frames(d, pool), "n_cut_by_budget": sum(it.record.get("n_cut_by_budget", 0)
                                                                       for it in iterations),
        "committee": config.train.committee, "n_chunks": d.n_chunks, "final_pass": bool(last.get("final_pass")),
        "n_selected": last["n_selected"],
        "fraction_kept": last["fraction_kept"], "n_training_frames": last["n_training_frames"],
        "pool_energy_mae_meV_per_atom": last.get("pool_energy_mae_meV_per_atom"),
        "curve": curve, "wall_time_s": round(sum(it.record["wall_time_s"] for it in iterations), 1),
    }
    if d.baseline_run is not None:
        summary["baseline"] = _baseline(Path(d.baseline_run), pool, summary["pool_energy_mae_meV_per_atom"])
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    if d.evaluate_pool:
        baseline = summary.get("baseline") or {}
        distill_curve(curve, path=report / "distill_curve.png", baseline=baseline.get("pool_energy_mae_meV_per_atom"),
                      title=f"{config.name}: {d.strategy}, K={config.train.committee}, mu+{d.k_sigma:g} sigma")
        summary["figure"] = "distill_curve.png"
    markdown = distill_markdown(curve, summary.get("baseline"))
    (report / "distill_table.md").write_text(markdown)
    write_html(report / "distill.html", title=f"{config.name}: committee distillation",
               summary={k: v for k, v in summary.items() if k != "curve"},
               tables=[(f"{d.n_chunks} chunks of {len(pool.ids)} pool frames, K = {config.train.committee}, "
                        f"mu + {d.k_sigma:g} sigma, {d.strategy} strategy", markdown)],
               figures=[report / "distill_curve.png"] if d.evaluate_pool else [])
    summary_path = report / "summary.json"
    merged = json.loads(summary_path.read_text()) if summary_path.exists() else {"name": config.name}
    merged["distill"] = summary
    summary_path.write_text(json.dumps(merged, indent=2, default=jsonable))
    write_record(root / "distill.json", command="distill", inputs=_settings(config), results=summary, started=started)
    return summary
