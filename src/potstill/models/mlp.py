"""The per-element networks of an ANI model: MLPs ``AEV -> hidden... -> 1``.

:func:`make_mlp` builds one (Kaiming-normal weights, zero biases, seeded through a
``torch.Generator``); :func:`element_outputs` applies each element's network to the
atoms of that element and, when asked, also returns ``d(sum of outputs)/d(AEV)``
computed by hand (:func:`mlp_with_vjp`), for evaluation without autograd.

Shapes: ``aev (n_total, aev_dim)``, ``species (n_total,)`` element indices; outputs
``(n_total,)`` eV and gradients ``(n_total, aev_dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ACTIVATIONS = {
    "gelu": torch.nn.GELU,
    "celu": lambda: torch.nn.CELU(alpha=0.1),
    "silu": torch.nn.SiLU,
}


def make_mlp(
    widths: Sequence[int], activation: str, generator: torch.Generator
) -> torch.nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ``activation`` between them."""
    layers: list[torch.nn.Module] = []
    n_layers = len(widths) - 1
    for k, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = torch.nn.Linear(width_in, width_out)
        torch.nn.init.kaiming_normal_(linear.weight, generator=generator)
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if k < n_layers - 1:
            layers.append(ACTIVATIONS[activation]())
    return torch.nn.Sequential(*layers)


def element_outputs(
    networks: torch.nn.ModuleDict, aev: Tensor, species: Tensor, *, with_gradient: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Each atom's network output ``(n_total,)`` and, with ``with_gradient``, its
    gradient with respect to the atom's AEV ``(n_total, aev_dim)`` (by hand: call under
    ``torch.no_grad()``); network ``k`` of ``networks`` serves species index ``k``."""

    def apply(network, inputs):
        if with_gradient:
            return mlp_with_vjp(network, inputs)
        return network(inputs).squeeze(-1), None

    if len(networks) == 1:  # one element: no gathering and scattering by species
        (network,) = networks.values()
        return apply(network, aev)
    indices, outputs = [], []
    gradient = torch.zeros_like(aev) if with_gradient else None
    for k, network in enumerate(networks.values()):
        selected = torch.nonzero(species == k).squeeze(-1)
        if selected.numel():
            output, selected_gradient = apply(network, aev.index_select(0, selected))
            indices.append(selected)
            outputs.append(output)
            if gradient is not None:
                gradient.index_copy_(0, selected, selected_gradient)
    energies = aev.new_zeros(aev.shape[0])
    if indices:
        energies = energies.index_add(0, torch.cat(indices), torch.cat(outputs))
    return energies, gradient


def mlp_with_vjp(network: torch.nn.Sequential, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Output ``(n,)`` of an MLP of Linear and activation layers and its input gradient
    ``d(sum of outputs)/d(inputs) (n, d)``, by hand (call under ``torch.no_grad()``)."""
    x, saved = inputs, []
    for layer in network:
        saved.append(x)
        if isinstance(layer, torch.nn.Linear):  # the functional form: no module dispatch
            x = torch.addmm(layer.bias, x, layer.weight.T)
        elif isinstance(layer, torch.nn.GELU):
            x = torch.nn.functional.gelu(x, approximate=layer.approximate)
        else:
            x = layer(x)
    # the last layer maps to one output: d(sum)/d(its input) is its weight on every row
    last = network[-1]
    if isinstance(last, torch.nn.Linear) and last.out_features == 1:
        gradient = last.weight.expand(x.shape[0], -1)
        layers = zip(reversed(network[:-1]), reversed(saved[:-1]))
    else:
        gradient = x.new_ones(x.shape)
        layers = zip(reversed(network), reversed(saved))
    for layer, layer_input in layers:
        if isinstance(layer, torch.nn.Linear):
            gradient = gradient @ layer.weight
        elif isinstance(layer, torch.nn.GELU):
            gradient = torch.ops.aten.gelu_backward(
                gradient, layer_input, approximate=layer.approximate
            )
        else:  # another elementwise activation: its derivative by autograd
            with torch.enable_grad():
                layer_input = layer_input.detach().requires_grad_(True)
                (gradient,) = torch.autograd.grad(layer(layer_input), layer_input, gradient)
    return x.squeeze(-1), gradient
