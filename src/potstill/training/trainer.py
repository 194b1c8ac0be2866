"""Train one ANI model (seed 001, section 2.2); committees: :mod:`potstill.training.committee`.

Recipe: AdamW on the weights (per-layer weight decay), SGD on the biases, both at
``lr``; ReduceLROnPlateau on the validation metric (factor 0.5, patience 100, threshold
0 in the paper); early stopping; the best parameters by validation RMSE are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from ase import Atoms

from potstill.aev.neighbors import NeighborCache
from potstill.errors import PotstillError
from potstill.models import ANIModel
from potstill.training.config import TrainConfig
from potstill.training.data import LabeledBatch, iterate_batches
from potstill.training.loss import LossWeights, energy_force_stress_loss

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainResult:
    """Outcome of training one model."""

    model: ANIModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = float("inf")
    train_indices: list[int] = field(default_factory=list)
    validation_indices: list[int] = field(default_factory=list)
    wall_time_s: float = 0.0


def _networks(model: ANIModel) -> list[list[torch.nn.Linear]]:
    """The Linear layers of each element's network, input layer first (the layers of
    one network are the direct Linear children of one module)."""
    networks = []
    for module in model.modules():
        linears = [m for m in module.children() if isinstance(m, torch.nn.Linear)]
        if linears:
            networks.append(linears)
    return networks


def freeze_layers(model: ANIModel, freeze: Sequence[str]) -> int:
    """Fix the ``input`` and/or ``output`` layer (weights and biases) of every element's
    network (``requires_grad = False``); returns the number of parameters frozen."""
    frozen = 0
    for linears in _networks(model):
        if len(linears) < 2 and freeze:
            raise PotstillError("freezing layers needs networks with at least one hidden layer")
        chosen = [linears[0]] * ("input" in freeze) + [linears[-1]] * ("output" in freeze)
        for layer in chosen:
            for parameter in layer.parameters():
                parameter.requires_grad_(False)
                frozen += parameter.numel()
    return frozen


def make_optimizers(model: ANIModel, config: TrainConfig):
    """AdamW on weights (weight decay per layer position), SGD on biases (at
    ``config.bias_lr`` when set); the ``config.freeze`` layers are frozen first and left
    out."""
    freeze_layers(model, config.freeze)
    weight_groups: dict[int, list[torch.nn.Parameter]] = {}
    biases = []
    for linears in _networks(model):
        for position, layer in enumerate(linears):
            if layer.weight.requires_grad:
                weight_groups.setdefault(position, []).append(layer.weight)
            if layer.bias is not None and layer.bias.requires_grad:
                biases.append(layer.bias)
    if not weight_groups:
        raise RuntimeError("model has no linear layers to train")
    decays = config.weight_decay or [0.0]
    adamw = torch.optim.AdamW(
        [
            {"params": params, "weight_decay": decays[min(position, len(decays) - 1)]}
            for position, params in sorted(weight_groups.items())
        ],
        lr=config.lr,
    )
    sgd = torch.optim.SGD(biases, lr=config.bias_lr or config.lr)
    return adamw, sgd


def train_model(
    model: ANIModel,
    train_frames: Sequence[Atoms],
    validation_frames: Sequence[Atoms],
    reference: str,
    config: TrainConfig,
    *,
    seed: int,
    progress=None,
    description: str = "training",
) -> TrainResult:
    """Train ``model`` in place on ``train_frames``; keep the best state by validation.

    ``progress`` is an optional ``rich.progress.Progress``; a task shows the epochs.
    """
    start = time.perf_counter()
    dtype = _DTYPES[config.dtype]
    device = torch.device(config.device)
    model.to(device=device, dtype=dtype)
    require = required_labels(config)
    batch_options = dict(
        species=model.species,
        cutoff=model.cutoff,
        dtype=dtype,
        device=device,
        require=require,
        cache=NeighborCache(max_frames=len(train_frames) + len(validation_frames) + 1),
    )
    weights = LossWeights(config.alpha, config.beta, config.gamma)
    adamw, sgd = make_optimizers(model, config)
    schedulers = [_plateau(optimizer, config) for optimizer in (adamw, sgd)]
    rng = np.random.default_rng(seed)
    result = TrainResult(model=model)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    task = progress.add_task(description, total=config.max_epochs) if progress else None
    for epoch in range(config.max_epochs):
        train_loss = _train_epoch(
            model, train_frames, reference, config, weights, (adamw, sgd), rng, batch_options
        )
        validation = iterate_batches(
            validation_frames, reference, batch_size=config.batch_size, rng=None, **batch_options
        )
        metrics = evaluate_batches(model, validation)
        metric = (
            metrics[f"{config.best_by}_rmse"]
            if config.best_by != "loss"
            else _weighted(metrics, weights)
        )
        for scheduler in schedulers:
            scheduler.step(metric)
        result.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "lr": adamw.param_groups[0]["lr"],
                **metrics,
            }
        )
        if metric < result.best_metric:
            result.best_metric, result.best_epoch = metric, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress is not None:
            progress.update(
                task,
                advance=1,
                description=f"{description} E_rmse={metrics['energy_rmse'] * 1000:.2f} meV/at",
            )
        if epoch - result.best_epoch >= config.early_stopping_patience:
            break
    if progress is not None:
        progress.update(task, completed=config.max_epochs)
    if result.best_epoch < 0:
        raise PotstillError(
            f"{description}: the validation {config.best_by} error was never finite (NaN or inf) in "
            f"{len(result.history)} epochs; check the labels and the learning rate (lr = {config.lr})"
        )
    model.load_state_dict(best_state)
    model.eval()
    result.wall_time_s = time.perf_counter() - start
    return result


def _plateau(optimizer, config: TrainConfig):
    """ReduceLROnPlateau of seed 001 (threshold 0) on the validation metric."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.scheduler_factor, patience=config.scheduler_patience, threshold=0
    )


def _train_epoch(
    model, frames, reference, config, weights, optimizers, rng, batch_options
) -> float:
    """One pass over ``frames`` in shuffled batches; the mean batch loss."""
    model.train()
    total, n_batches = 0.0, 0
    for batch in iterate_batches(
        frames, reference, batch_size=config.batch_size, rng=rng, **batch_options
    ):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        terms = _loss(model, batch, weights, create_graph=True)
        terms["loss"].backward()
        for optimizer in optimizers:
            optimizer.step()
        total += float(terms["loss"].detach())
        n_batches += 1
    return total / max(n_batches, 1)


def evaluate_batches(model: ANIModel, batches: Iterable[LabeledBatch]) -> dict[str, float]:
    """Validation RMSEs: energy (eV/atom), forces (eV/A per component), stress (eV/A^3)."""
    sums = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    counts = {"energy": 0, "forces": 0, "stress": 0}
    model.eval()
    for batch in batches:
        out = model(batch.inputs, forces=True, stress=True)
        t = batch.targets
        de = (out["energy"].detach() - t["energy"]) / t["n_atoms"]
        sums["energy"] += float((de**2).sum())
        counts["energy"] += de.numel()
        df = out["forces"].detach() - t["forces"]
        sums["forces"] += float((df**2).sum())
        counts["forces"] += df.numel()
        mask = t["has_stress"]
        if bool(mask.any()):
            ds = out["stress"].detach()[mask] - t["stress"][mask]
            sums["stress"] += float((ds**2).sum())
            counts["stress"] += ds.numel()
    return {f"{k}_rmse": (sums[k] / counts[k]) ** 0.5 if counts[k] else 0.0 for k in sums}


def _summary(result: TrainResult) -> dict:
    last = result.history[result.best_epoch] if result.history else {}
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_metric": result.best_metric,
        "validation": {k: v for k, v in last.items() if k.endswith("_rmse")},
        "wall_time_s": result.wall_time_s,
        "n_train": len(result.train_indices),
        "n_validation": len(result.validation_indices),
    }


def summarize(results: Sequence[TrainResult | dict]) -> list[dict]:
    """JSON-able summaries of trained (or reloaded) members."""
    return [r if isinstance(r, dict) else _summary(r) for r in results]


def _loss(model, batch: LabeledBatch, weights: LossWeights, *, create_graph: bool):
    out = model(
        batch.inputs, forces=weights.beta > 0, stress=weights.gamma > 0, create_graph=create_graph
    )
    return energy_force_stress_loss(out, batch.targets, weights)


def _weighted(metrics: dict[str, float], weights: LossWeights) -> float:
    return (
        weights.alpha * metrics["energy_rmse"]
        + weights.beta * metrics["forces_rmse"]
        + weights.gamma * metrics["stress_rmse"]
    )


def required_labels(config: TrainConfig) -> tuple[str, ...]:
    require = ["energy"]
    if config.beta > 0:
        require.append("forces")
    return tuple(require)
