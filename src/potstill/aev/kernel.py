"""TorchANI's AEV of a flat batch of atoms, with first derivatives for forces and stress.

:func:`ani_aev` gives the same terms and layout as ``AEVComputer.compute_from_neighbors``
(the computer's radial and angular parameters, cutoff function and TorchANI's triples),
with all frames of a :class:`~potstill.aev.neighbors.Batch` as one "molecule" (pairs
never cross frames), computed faster on CPU:

- each atom's angular AEV is the product ``R_i^T A_i`` of its triples' radial factors
  (``(t_i, shifts)``, cutoff functions included) and angle factors (``(t_i, sections)``),
  one batched matmul over atoms padded to the largest triple count, instead of
  materialising and scattering ``(triples, shifts x sections)`` products;
- the Gaussians and the angle factor carry their derivatives from the forward pass
  (:class:`WeightedGaussians`, :class:`AngleTerms`).

Derivatives are first order in the geometry (forces, stress, and their gradients with
respect to the weights); second derivatives with respect to positions are not available
through it. :mod:`potstill.aev.inference` computes the same AEV with its derivative
written out by hand, for evaluation without autograd.

Shapes: ``species (n_total,)`` species indices; neighbours ``indices (2, P)``,
``distances (P,)`` A, ``diff_vectors (P, 3)`` A; the AEV is ``(n_total, aev_dim)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchani.aev import AEVComputer
from torchani.neighbors import Neighbors, discard_outside_cutoff

from potstill.aev.neighbors import Batch

__all__ = [
    "AngleTerms",
    "AngularTriples",
    "WeightedGaussians",
    "ani_aev",
    "batch_aev",
    "angular_triples",
    "padded_products",
]


def batch_aev(computer: AEVComputer, batch: Batch, diff_vectors: Tensor, cutoff: float) -> Tensor:
    """AEVs ``(n_total, aev_dim)`` of ``batch`` from its pair vectors ``(P, 3)``.

    ``cutoff``: the AEV's radial cutoff (A); pairs of a batch built with a larger one
    (e.g. for a committee whose members differ in cutoff) are dropped first.
    """
    n_total = batch.species.shape[0]
    if diff_vectors.shape[0] == 0:
        return diff_vectors.new_zeros((n_total, computer.out_dim))
    neighbors = Neighbors(batch.pairs, diff_vectors.norm(dim=-1), diff_vectors)
    if batch.cutoff > cutoff:
        neighbors = discard_outside_cutoff(neighbors, cutoff)
        if neighbors.indices.shape[1] == 0:
            return diff_vectors.new_zeros((n_total, computer.out_dim))
    return ani_aev(computer, batch.species, neighbors)


def ani_aev(computer: AEVComputer, species: Tensor, neighbors: Neighbors) -> Tensor:
    """TorchANI's AEV ``(n_total, aev_dim)`` of all atoms from their neighbour pairs.

    The same terms and layout as ``AEVComputer.compute_from_neighbors`` (the computer's
    radial and angular parameters and cutoff function, TorchANI's triples), with all
    frames as one "molecule" (pairs never cross frames), computed faster on CPU:

    - each atom's angular AEV is the product ``R_i^T A_i`` of its triples' radial factors
      (``(t_i, shifts)``, cutoff functions included) and angle factors (``(t_i,
      sections)``), one batched matmul over atoms padded to the largest triple count,
      instead of materialising and scattering ``(triples, shifts x sections)`` products;
    - the Gaussians and the angle factor carry their derivatives from the forward pass
      (:class:`WeightedGaussians`, :class:`AngleTerms`).

    Derivatives are first order in the geometry (forces, stress, and their gradients with
    respect to the weights); second derivatives with respect to positions are not
    available through it.
    """
    n_total = species.shape[0]
    term = computer.radial
    distances = neighbors.distances
    # as ANIRadial: 0.25 exp(-eta (d - shift)^2) fc(d), (P, radial shifts)
    weight = 0.25 * term.cutoff_fn(distances, term.cutoff)
    radial_terms = _gaussians(distances, weight, term.shifts, term.eta)
    # as AEVComputer._collect_radial: row (atom, element of the other atom)
    n_species = computer.num_species
    rows = neighbors.indices * n_species + species[neighbors.indices].flip(0)
    radial = radial_terms.new_zeros((n_total * n_species, radial_terms.shape[1]))
    radial = radial.index_add_(0, rows[0], radial_terms).index_add_(0, rows[1], radial_terms)
    angular_neighbors = discard_outside_cutoff(neighbors, computer.angular.cutoff)
    angular = _collect_angular(computer, species, angular_neighbors)
    return torch.cat([radial.view(n_total, computer.radial_len), angular], dim=-1)


def _collect_angular(computer: AEVComputer, species: Tensor, neighbors: Neighbors) -> Tensor:
    """Angular AEV ``(n_total, species_pairs * shifts * sections)``; see :func:`ani_aev`."""
    term = computer.angular
    n_total, n_pairs = species.shape[0], computer.num_species_pairs
    if neighbors.indices.shape[1] < 2:
        return neighbors.diff_vectors.new_zeros((n_total, computer.angular_len))
    triples = angular_triples(computer, species, neighbors.indices)
    if triples.flat.shape[0] == 0:  # no atom with two angular neighbours
        return neighbors.diff_vectors.new_zeros((n_total, computer.angular_len))
    distances, vectors = triples.side_geometry(neighbors)  # (2, T), (2, T, 3)
    # as TorchANI's _BaseAngular.forward, split into its two factors
    cos_angles = (vectors[0] * vectors[1]).sum(-1, keepdim=True) / torch.clamp(
        distances[0] * distances[1], min=1e-10
    ).unsqueeze(-1)
    angle_factor = _angle_terms(cos_angles.squeeze(-1), term.sections, term.zeta)
    cutoff = term.cutoff_fn(distances, term.cutoff)
    # as ANIAngular.compute_radial, times both cutoff functions: (T, shifts)
    mean_distances = (distances[0] + distances[1]) / 2
    radial_factor = _gaussians(mean_distances, cutoff[0] * cutoff[1], term.shifts, term.eta)
    _, _, angular = padded_products(
        radial_factor, angle_factor, triples.flat, n_total * n_pairs, triples.width
    )
    return angular.reshape(n_total, computer.angular_len)


def padded_products(
    radial_factor: Tensor, angle_factor: Tensor, flat: Tensor, n_rows: int, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Scatter the per-triple factors ``radial_factor (T, shifts)`` and ``angle_factor
    (T, sections)`` to their slots ``flat`` of ``n_rows`` rows padded to ``width``; return
    both padded factors ``(rows, width, channels)`` and their per-row product, the
    angular AEV blocks ``(rows, shifts, sections)``."""
    padded_radial = radial_factor.new_zeros((n_rows * width, radial_factor.shape[1]))
    padded_radial = padded_radial.index_copy_(0, flat, radial_factor).view(n_rows, width, -1)
    padded_angle = angle_factor.new_zeros((n_rows * width, angle_factor.shape[1]))
    padded_angle = padded_angle.index_copy_(0, flat, angle_factor).view(n_rows, width, -1)
    # (rows, sections, shifts) -> (rows, shifts, sections); transposing the narrower
    # angle factor is cheaper than transposing the radial one
    angular = torch.bmm(padded_angle.transpose(1, 2), padded_radial).transpose(1, 2)
    return padded_radial, padded_angle, angular


@dataclass
class AngularTriples:
    """The triples of an angular AEV: a central atom and two of its neighbour pairs.

    ``sides (2, T)``: the angular pair of each side; ``signs (2, T)``: +1 where the
    central atom is the pair's first atom (the side vector is the pair vector), -1 where
    it is the second (its negative); ``flat (T,)``: the triple's slot ``row * width +
    slot`` in the padded per-row layout of :func:`padded_products`, a row being
    (central atom, element pair of the two side atoms) as in TorchANI's angular AEV.
    """

    sides: Tensor
    signs: Tensor
    flat: Tensor
    width: int

    def side_geometry(self, neighbors: Neighbors) -> tuple[Tensor, Tensor]:
        """Side distances ``(2, T)`` and vectors ``(2, T, 3)`` from the central atom."""
        flat_sides = self.sides.view(-1)
        distances = neighbors.distances.index_select(0, flat_sides).view(2, -1)
        vectors = neighbors.diff_vectors.index_select(0, flat_sides).view(2, -1, 3)
        return distances, vectors * self.signs.unsqueeze(-1).to(vectors.dtype)


def angular_triples(computer: AEVComputer, species: Tensor, pair_indices: Tensor) -> AngularTriples:
    """Every triple of the angular pairs ``pair_indices (2, P)`` and its padded slot.

    The same triples as TorchANI's ``neighbors_to_triples`` (each unordered pair of an
    atom's neighbours once; the order of the two sides and of the triples may differ,
    which the symmetric angular terms do not see), found from a table of each atom's
    neighbours padded to the largest count ``m``: an atom's triples are the slot pairs
    ``a < b`` of its row, so with one element the padded layout is that table's, width
    ``m (m - 1) / 2``, with no sorting of triples. With several elements the rows are
    split by the element pair of the sides and slots are counted within them.
    """
    n_total, n_pairs = species.shape[0], computer.num_species_pairs
    n_neighbor_pairs = pair_indices.shape[1]
    # entry e < P: pair e seen from its first atom; e >= P: from its second
    centres = pair_indices.reshape(-1)
    order = torch.sort(centres, stable=True).indices
    sorted_centres = centres.index_select(0, order)
    counts = torch.bincount(centres, minlength=n_total)
    most = int(counts.max())
    local = _slots_within_sorted_rows(sorted_centres, n_total, counts)
    table = torch.full((n_total * most,), -1, dtype=torch.long, device=centres.device)
    table = table.index_copy_(0, sorted_centres * most + local, order).view(n_total, most)
    first, second = torch.triu_indices(most, most, 1, device=centres.device)
    width = first.shape[0]  # the slot pairs a < b of one atom
    entries_b = table.index_select(1, second)  # (n_total, width); -1: no such neighbour
    # slots fill from 0, so b < count implies a < count: valid triples are where b is
    valid = (entries_b >= 0).view(-1).nonzero().squeeze(1)
    entries = torch.stack(
        [table.index_select(1, first).view(-1).index_select(0, valid), entries_b.view(-1)[valid]]
    )  # (2, T)
    signs = torch.where(entries < n_neighbor_pairs, 1, -1).to(torch.int8)
    sides = torch.remainder(entries, n_neighbor_pairs)
    if n_pairs == 1 or valid.shape[0] == 0:  # one element: rows are the atoms, slots the table's
        return AngularTriples(sides, signs, valid, width)
    central = torch.div(valid, width, rounding_mode="floor")
    other_atoms = (
        pair_indices.reshape(-1)
        .index_select(0, torch.remainder(entries.view(-1) + n_neighbor_pairs, 2 * n_neighbor_pairs))
        .view(2, -1)
    )  # each side's other atom
    side_species = species.index_select(0, other_atoms.view(-1)).view(2, -1)
    rows = central * n_pairs + computer.triu_index[side_species[0], side_species[1]]
    order = torch.sort(rows, stable=True).indices
    slots = torch.empty_like(rows).index_copy_(
        0, order, _slots_within_sorted_rows(rows.index_select(0, order), n_total * n_pairs)
    )
    width = int(slots.max()) + 1
    return AngularTriples(sides, signs, rows * width + slots, width)


def _angle_terms(cos_angles: Tensor, sections: Tensor, zeta: Tensor) -> Tensor:
    """ANI's angle factor ``2 ((1 + cos(acos(0.95 cos_angle) - section)) / 2)^zeta``,
    ``(T,) -> (T, sections)``, as TorchANI's ``ANIAngular.compute_cos_angles``."""
    return AngleTerms.apply(cos_angles, sections, zeta)[0]


class AngleTerms(torch.autograd.Function):
    """:func:`_angle_terms` with its derivative kept from the forward pass (see
    :class:`WeightedGaussians` for why).

    With ``x = 0.95 cos_angle`` and ``root = sqrt(1 - x^2) = sin(acos(x))`` the angle
    differences come from the addition theorems, ``cos(acos(x) - s) = x cos(s) + root
    sin(s)`` and ``sin(acos(x) - s) = root cos(s) - x sin(s)``, instead of ``acos``,
    ``cos`` and ``sin`` of every (triple, section); and ``h^zeta = h^(zeta-1) h`` shares
    one ``pow`` between the value and its slope. The same numbers as TorchANI's up to
    rounding; about 3x faster on CPU.
    """

    @staticmethod
    def forward(cos_angles, sections, zeta):
        scaled = 0.95 * cos_angles  # (T,)
        root = torch.sqrt(1 - scaled * scaled)
        cos_sections, sin_sections = (
            torch.cos(sections).view(1, -1),
            torch.sin(sections).view(1, -1),
        )
        scaled, root = scaled.unsqueeze(-1), root.unsqueeze(-1)
        # (1 + cos(deviation)) / 2 and sin(deviation): (T, sections)
        halves = (scaled * cos_sections).addcmul_(root, sin_sections).add_(1).mul_(0.5)
        sines = (root * cos_sections).sub_(scaled * sin_sections)
        powers = halves.pow(zeta - 1)
        value = (powers * halves).mul_(2)
        # d/dc: zeta h^(zeta-1) sin(dev) * 0.95 / sqrt(1 - (0.95 c)^2)
        slope = powers.mul_(sines).mul_((0.95 * zeta) / root)
        return value, slope

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_value, _grad_slope):
        if grad_value is None:
            return None, None, None
        (slope,) = ctx.saved_tensors
        return (grad_value * slope).sum(-1), None, None


def _gaussians(x: Tensor, weight: Tensor, shifts: Tensor, eta: Tensor) -> Tensor:
    """``weight * exp(-eta (x - shift)^2)``: ``(n,), (n,) -> (n, shifts)``."""
    return WeightedGaussians.apply(x, weight, shifts, eta)[0]


class WeightedGaussians(torch.autograd.Function):
    """``weight * exp(-eta (x - shift)^2)`` with a hand-written backward.

    The forward pass keeps ``dvalue/dx`` and ``dvalue/dweight`` per element, so the
    backward is one multiply-and-sum per input instead of autograd's chain through every
    intermediate; it is linear in the incoming gradient and made of plain ops, so it is
    itself differentiable (training backpropagates force and stress losses through it).

    The exponent is floored where ``exp`` would leave the normal float range (below
    ~1e-38 in float32, ~1e-308 in float64): ``exp`` is 15-40x slower there (its
    denormal/underflow path), and the change (< 1e-38 resp. 1e-307 per term) is far below
    the rounding of any sum of these terms.
    """

    @staticmethod
    def forward(x, weight, shifts, eta):
        # in place where possible: fewer large allocations (and page faults) per call
        offsets = x.unsqueeze(-1) - shifts.view(1, -1)
        gaussians = offsets.square().mul_(-eta)
        floor = math.ceil(math.log(torch.finfo(gaussians.dtype).tiny))
        gaussians.clamp_(min=floor).exp_()
        value = gaussians * weight.unsqueeze(-1)
        slope = offsets.mul_(-2 * eta).mul_(value)
        return value, gaussians, slope

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, gaussians, slope = output
        ctx.save_for_backward(gaussians, slope)
        ctx.mark_non_differentiable(gaussians, slope)
        ctx.set_materialize_grads(False)  # no zero gradients for the two helper outputs

    @staticmethod
    def backward(ctx, grad_value, _grad_gaussians, _grad_slope):
        gaussians, slope = ctx.saved_tensors
        if grad_value is None:
            return None, None, None, None
        grad_x = (grad_value * slope).sum(-1)
        grad_weight = (grad_value * gaussians).sum(-1)
        return grad_x, grad_weight, None, None


def _slots_within_sorted_rows(rows: Tensor, n_rows: int, counts: Tensor | None = None) -> Tensor:
    """Position of each entry among the entries of its row (0, 1, 2, ...); ``rows``
    sorted; ``counts`` (entries per row) if already known."""
    if counts is None:
        counts = torch.bincount(rows, minlength=n_rows)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(rows.shape[0], device=rows.device) - starts.index_select(0, rows)
