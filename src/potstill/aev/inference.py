"""The AEV with its derivative written out, for evaluation without autograd.

Forces and stress without ``create_graph`` need only ``dE/d(pair vectors)``. Autograd
gets it by recording a graph of a few hundred small ops and walking it back; at ~100
atoms that bookkeeping is a sizeable part of the time. :func:`ani_aev_with_vjp` computes
the same terms as :func:`potstill.aev.kernel.ani_aev` in the same order, keeps what the
derivative needs and applies the chain rule by hand: the same numbers up to the rounding
of a few sums. Call it under ``torch.no_grad()``.

These are hand-written kernels: their long functions keep the forward pass and its
vector-Jacobian product side by side, term for term, so they can be checked against each
other (``tests/test_calculator_inference.py`` compares them with autograd).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchani.aev import AEVComputer
from torchani.cutoffs import CutoffCosine
from torchani.neighbors import Neighbors

from potstill.aev.kernel import AngleTerms, WeightedGaussians, angular_triples, padded_products

__all__ = ["ani_aev_with_vjp", "cutoff_and_slope"]


def ani_aev_with_vjp(
    computer: AEVComputer, species: Tensor, neighbors: Neighbors
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """The AEV of :func:`potstill.aev.kernel.ani_aev` and its vector-Jacobian product, without autograd.

    Args:
        computer: the TorchANI AEV computer (parameters and cutoff functions).
        species: ``(n_total,)`` species index of each atom.
        neighbors: ``indices (2, P)``, ``distances (P,)`` A, ``diff_vectors (P, 3)`` A;
            every pair within the radial cutoff.

    Returns:
        ``aev (n_total, aev_dim)`` and ``vjp``, which maps ``dE/dAEV (n_total, aev_dim)``
        to ``dE/d(diff_vectors) (P, 3)``. Call under ``torch.no_grad()``.
    """
    n_total, n_species = species.shape[0], computer.num_species
    term = computer.radial
    vectors, distances = neighbors.diff_vectors, neighbors.distances
    cutoff, cutoff_slope = cutoff_and_slope(term.cutoff_fn, distances, term.cutoff)
    # as ani_aev: 0.25 exp(-eta (d - shift)^2) fc(d), (P, radial shifts)
    radial_terms, gaussians, gaussians_slope = WeightedGaussians.forward(
        distances, 0.25 * cutoff, term.shifts, term.eta
    )
    if n_species == 1:  # rows are the atoms
        rows = neighbors.indices
    else:  # as ani_aev: row (atom, element of the other atom)
        rows = neighbors.indices * n_species + species[neighbors.indices].flip(0)
    radial = radial_terms.new_zeros((n_total * n_species, radial_terms.shape[1]))
    radial = radial.index_add_(0, rows[0], radial_terms).index_add_(0, rows[1], radial_terms)
    angular, angular_vjp = _angular_with_vjp(computer, species, neighbors)
    aev = torch.cat([radial.view(n_total, computer.radial_len), angular], dim=-1)

    def vjp(energy_by_aev: Tensor) -> Tensor:
        by_radial = energy_by_aev[:, : computer.radial_len].reshape(radial.shape)
        by_terms = by_radial.index_select(0, rows[0]) + by_radial.index_select(0, rows[1])
        by_distances = (by_terms * gaussians_slope).sum(-1)
        by_distances += (by_terms * gaussians).sum(-1) * (0.25 * cutoff_slope)
        by_vectors = torch.zeros_like(vectors)
        angular_vjp(energy_by_aev[:, computer.radial_len :], by_distances, by_vectors)
        # d|v|/dv = v / |v| (0 for coincident atoms, as autograd's norm)
        by_distances = (by_distances / distances).masked_fill_(distances == 0, 0.0)
        return by_vectors.addcmul_(by_distances.unsqueeze(-1), vectors)

    return aev, vjp


def _angular_with_vjp(computer: AEVComputer, species: Tensor, neighbors: Neighbors):
    """Angular AEV ``(n_total, angular_len)`` of ``ani_aev`` and its VJP.

    Returns the AEV and ``vjp(energy_by_angular, by_distances, by_vectors)``, which adds
    the angular terms' ``dE/d(distances) (P,)`` and ``dE/d(diff_vectors) (P, 3)`` (all
    radial pairs) in place.
    """
    term = computer.angular
    n_total, n_pairs = species.shape[0], computer.num_species_pairs
    n_shifts, n_sections = term.shifts.numel(), term.sections.numel()

    def no_triples():  # zero AEV, nothing to add to the gradients
        return neighbors.diff_vectors.new_zeros((n_total, computer.angular_len)), (
            lambda *gradients: None
        )

    closer = (neighbors.distances <= term.cutoff).nonzero().flatten()
    if closer.shape[0] < 2:
        return no_triples()
    angular_neighbors = Neighbors(
        neighbors.indices.index_select(1, closer),
        neighbors.distances.index_select(0, closer),
        neighbors.diff_vectors.index_select(0, closer),
    )
    triples = angular_triples(computer, species, angular_neighbors.indices)
    if triples.flat.shape[0] == 0:
        return no_triples()
    distances, vectors = triples.side_geometry(angular_neighbors)  # (2, T), (2, T, 3)
    sides, flat = triples.sides, triples.flat  # (2, T) angular pair of each side
    # as the kernel's _collect_angular
    products = distances[0] * distances[1]
    clamped = torch.clamp(products, min=1e-10)
    cos_angles = (vectors[0] * vectors[1]).sum(-1) / clamped
    angle_factor, angle_slope = AngleTerms.forward(cos_angles, term.sections, term.zeta)
    pair_cutoff, pair_cutoff_slope = cutoff_and_slope(
        term.cutoff_fn, angular_neighbors.distances, term.cutoff
    )
    cutoff = pair_cutoff.index_select(0, sides.view(-1)).view(2, -1)  # (2, T)
    mean_distances = (distances[0] + distances[1]) / 2
    radial_factor, gaussians, gaussians_slope = WeightedGaussians.forward(
        mean_distances, cutoff[0] * cutoff[1], term.shifts, term.eta
    )
    n_rows = n_total * n_pairs
    padded_radial, padded_angle, angular = padded_products(
        radial_factor, angle_factor, flat, n_rows, triples.width
    )

    def vjp(energy_by_angular: Tensor, by_distances: Tensor, by_vectors: Tensor) -> None:
        by_rows = energy_by_angular.reshape(n_rows, n_shifts, n_sections)
        # products with the width last: several times faster on CPU than width-major ones
        by_radial = torch.bmm(by_rows, padded_angle.transpose(1, 2))  # (rows, shifts, width)
        by_angle = torch.bmm(by_rows.transpose(1, 2), padded_radial.transpose(1, 2))
        # per triple, channels first: (shifts, T) and (sections, T)
        by_radial = by_radial.transpose(0, 1).reshape(n_shifts, -1).index_select(1, flat)
        by_angle = by_angle.transpose(0, 1).reshape(n_sections, -1).index_select(1, flat)
        by_mean = (by_radial * gaussians_slope.T).sum(0)
        by_weight = (by_radial * gaussians.T).sum(0)  # weight = fc(d_0) fc(d_1)
        by_cos = (by_angle * angle_slope.T).sum(0)
        # cos = (v_0 . v_1) / clamp(d_0 d_1)
        by_dot = by_cos / clamped
        by_product = torch.where(products >= 1e-10, -by_cos * cos_angles / clamped, 0.0)
        # (2, T): each side's distance and vector
        side_cutoff_slope = pair_cutoff_slope.index_select(0, sides.view(-1)).view(2, -1)
        by_side_distances = (by_mean / 2).expand(2, -1) + by_weight * cutoff.flip(0) * (
            side_cutoff_slope
        )
        by_side_distances += by_product * distances.flip(0)
        by_side_vectors = by_dot.unsqueeze(-1) * vectors.flip(0)  # (2, T, 3)
        # side vector k is signs_k * (vector of angular pair sides_k)
        by_side_vectors *= triples.signs.unsqueeze(-1).to(by_side_vectors.dtype)
        by_pair_distances = by_distances.new_zeros(closer.shape[0])
        by_pair_distances.index_add_(0, sides.view(-1), by_side_distances.reshape(-1))
        by_pair_vectors = by_vectors.new_zeros((closer.shape[0], 3))
        by_pair_vectors.index_add_(0, sides.view(-1), by_side_vectors.view(-1, 3))
        by_distances.index_add_(0, closer, by_pair_distances)
        by_vectors.index_add_(0, closer, by_pair_vectors)

    return angular.reshape(n_total, computer.angular_len), vjp


def cutoff_and_slope(cutoff_fn: torch.nn.Module, distances: Tensor, cutoff: float):
    """TorchANI cutoff function ``fc(d)`` and its derivative ``fc'(d)``, ``(n,)`` each."""
    if isinstance(cutoff_fn, CutoffCosine):  # 0.5 cos(pi d / rc) + 0.5, as TorchANI's
        scaled = distances * (math.pi / cutoff)
        return 0.5 * torch.cos(scaled) + 0.5, (-0.5 * math.pi / cutoff) * torch.sin(scaled)
    with torch.enable_grad():  # any other elementwise cutoff: its slope by autograd
        inputs = distances.detach().requires_grad_(True)
        value = cutoff_fn(inputs, cutoff)
        (slope,) = torch.autograd.grad(value.sum(), inputs)
    return value.detach(), slope
