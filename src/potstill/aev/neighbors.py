"""Batches of frames with per-frame neighbour lists, ready for an NNP forward pass.

Contract: :meth:`Batch.from_atoms` turns a list of ``ase.Atoms`` (any mix of sizes, cells
and periodicity) into ONE flat set of atoms with half neighbour lists built frame by frame
with ``vesin``. Pairs never cross frames, there is no padding, and cutoffs larger than
half the cell are handled (periodic images of the same atom appear as separate pairs).

Pair convention (TorchANI's): for pair ``p`` with atoms ``i, j = pairs[:, p]`` of frame
``f = pair_frame[p]``, the difference vector is::

    positions[i] - positions[j] + shifts[p] @ cells[f]        # (3,) Angstrom

and its norm is at most the cutoff. Each unordered pair (including an atom with its own
periodic image) appears once. TorchANI 2.9's own neighbour list is not used: for batches
of periodic frames it silently drops every neighbour after the first frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import vesin
from ase import Atoms

from potstill.errors import PotstillError

__all__ = ["Batch", "FrameBatcher", "NeighborCache", "frame_pairs"]


class NeighborCache:
    """Least-recently-used store of per-frame neighbour lists, bounded in frames and bytes.

    Keyed by the frame's content (positions, cell, pbc) and the cutoff, so a frame that
    is moved is recomputed and equal copies share one entry. Meant for training, where
    the same stored frames are batched again every epoch; frames that do not fit are
    simply searched again (vesin takes well under a millisecond per frame).

    Args:
        max_frames: most frames kept; the least recently used is dropped beyond that.
        max_bytes: most bytes of pair and shift arrays kept (default 1 GiB), so a
            20,000-frame pool with a 6.9 A cutoff does not fill the memory.
    """

    def __init__(self, *, max_frames: int = 4096, max_bytes: int = 1 << 30):
        if max_frames < 1 or max_bytes < 1:
            raise PotstillError(
                f"max_frames and max_bytes must be >= 1, got {max_frames} and {max_bytes}"
            )
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def pairs(self, atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
        """Half neighbour list of one frame: ``pairs (2, P) int64``, ``shifts (P, 3) int64``."""
        key = _frame_key(atoms, cutoff)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        result = frame_pairs(atoms, cutoff)
        self._entries[key] = result
        self.bytes += result[0].nbytes + result[1].nbytes
        while self._entries and (
            len(self._entries) > self.max_frames or self.bytes > self.max_bytes
        ):
            _, (pairs, shifts) = self._entries.popitem(last=False)
            self.bytes -= pairs.nbytes + shifts.nbytes
        return result


def _frame_key(atoms: Atoms, cutoff: float) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(atoms.cell[:], dtype=np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    digest.update(np.float64(cutoff).tobytes())
    return digest.digest()


def frame_pairs(
    atoms: Atoms, cutoff: float, *, check_cell: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Half neighbour list of one frame in TorchANI's convention.

    ``check_cell=False`` skips the degenerate-cell check (an SVD), for a caller that has
    already checked this cell.

    Returns:
        pairs: ``(2, P) int64`` atom indices within the frame.
        shifts: ``(P, 3) int64`` integer cell shifts ``S`` with
            ``|r_i - r_j + S @ cell| <= cutoff``.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if check_cell and pbc.any() and np.linalg.matrix_rank(atoms.cell[:][pbc], tol=1e-8) < pbc.sum():
        raise PotstillError(
            "a periodic frame has a degenerate cell; give it a cell with non-zero volume "
            "along its periodic directions or set pbc=False"
        )
    box = atoms.cell[:] if pbc.any() else np.zeros((3, 3))
    calculator = _vesin_calculator(float(cutoff), tuple(pbc.tolist()))
    i, j, shifts = calculator.compute(
        points=np.asarray(atoms.positions, dtype=np.float64),
        box=np.asarray(box, dtype=np.float64),
        periodic=pbc.tolist(),
        quantities="ijS",
    )
    # vesin gives r_j - r_i + S @ cell; TorchANI wants r_i - r_j + shift, so negate S.
    pairs = np.stack([i.astype(np.int64), j.astype(np.int64)])
    return pairs, -shifts.astype(np.int64)


# Verlet skin of the reused vesin calculators, Angstrom. vesin keeps the candidate pairs
# within cutoff + skin and, while no atom has moved more than skin/2 since they were
# found (same cell), only re-filters them to the cutoff: the pairs are exactly those of
# a fresh search. Consecutive MD steps (ASE calculators) skip most of the search; any
# other frame simply triggers a new one.
_VESIN_SKIN_A = 0.5
_VESIN = threading.local()


def _vesin_calculator(cutoff: float, periodic: tuple[bool, ...]) -> vesin.NeighborList:
    """This thread's vesin half neighbour list for ``cutoff`` and ``periodic``."""
    calculators = _VESIN.__dict__.setdefault("calculators", {})
    key = (cutoff, periodic)
    if key not in calculators:
        calculators[key] = vesin.NeighborList(cutoff=cutoff, full_list=False, skin=_VESIN_SKIN_A)
    return calculators[key]


@dataclass
class Batch:
    """Several frames flattened into one set of atoms, with their neighbour pairs.

    Attributes:
        species: ``(n_total,) long`` index of each atom's element in the model's species.
        positions: ``(n_total, 3) float`` Cartesian positions, Angstrom.
        cells: ``(B, 3, 3) float`` cell vectors as rows, Angstrom (zeros if non-periodic).
        pbc: ``(B, 3) bool`` periodicity of each frame.
        frame_index: ``(n_total,) long`` frame of each atom.
        n_atoms: ``(B,) long`` atoms per frame.
        pairs: ``(2, P) long`` global atom indices of each neighbour pair.
        shifts: ``(P, 3) float`` integer-valued cell shifts (see module docstring).
        pair_frame: ``(P,) long`` frame of each pair.
        cutoff: the neighbour cutoff the pairs were built with, Angstrom.
    """

    species: torch.Tensor
    positions: torch.Tensor
    cells: torch.Tensor
    pbc: torch.Tensor
    frame_index: torch.Tensor
    n_atoms: torch.Tensor
    pairs: torch.Tensor
    shifts: torch.Tensor
    pair_frame: torch.Tensor
    cutoff: float

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @classmethod
    def from_atoms(
        cls,
        frames: Sequence[Atoms],
        species: Sequence[str],
        cutoff: float,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        cache: NeighborCache | None = None,
    ) -> Batch:
        """Build a batch from frames.

        Args:
            frames: the frames; sizes, cells and periodicity may all differ.
            species: element symbols the model knows; ``species[k]`` gets index ``k``.
            cutoff: neighbour cutoff, Angstrom (the model's largest cutoff).
            dtype: float dtype of positions, cells and shifts (default: torch's default).
            device: where the tensors live.
            cache: reuse neighbour lists of frames seen before.
        """
        if len(frames) == 0:
            raise PotstillError("cannot build a batch from zero frames; pass at least one")
        dtype = dtype or torch.get_default_dtype()
        lookup = {symbol: k for k, symbol in enumerate(species)}
        species_idx, pair_blocks, shift_blocks, pair_counts = [], [], [], []
        offset = 0
        for atoms in frames:
            species_idx.append(_species_indices(atoms, lookup, species))
            pairs, shifts = (
                cache.pairs(atoms, cutoff) if cache is not None else frame_pairs(atoms, cutoff)
            )
            pair_blocks.append(pairs + offset)
            shift_blocks.append(shifts)
            pair_counts.append(pairs.shape[1])
            offset += len(atoms)
        n_atoms = torch.tensor([len(atoms) for atoms in frames], dtype=torch.long)
        batch = cls(
            species=torch.from_numpy(np.concatenate(species_idx)),
            positions=torch.from_numpy(np.concatenate([a.positions for a in frames])),
            cells=torch.from_numpy(np.stack([a.cell[:] for a in frames])),
            pbc=torch.from_numpy(np.stack([np.asarray(a.pbc, dtype=bool) for a in frames])),
            frame_index=torch.repeat_interleave(torch.arange(len(frames)), n_atoms),
            n_atoms=n_atoms,
            pairs=torch.from_numpy(np.concatenate(pair_blocks, axis=1)),
            shifts=torch.from_numpy(np.concatenate(shift_blocks)),
            pair_frame=torch.repeat_interleave(
                torch.arange(len(frames)), torch.tensor(pair_counts, dtype=torch.long)
            ),
            cutoff=float(cutoff),
        )
        return batch.to(dtype=dtype, device=device)

    def pair_counts(self) -> list[int]:
        """Pairs of each frame; a Batch keeps each frame's pairs together, in frame order."""
        return torch.bincount(self.pair_frame, minlength=self.n_frames).tolist()

    def pair_vectors(
        self, positions: torch.Tensor | None = None, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pair vectors ``(P, 3)`` ``r_i - r_j + shift @ cell`` of :attr:`pairs`, Angstrom.

        ``positions (n_total, 3)`` and ``cells (B, 3, 3)`` default to the batch's; pass
        strained or differentiable copies to take derivatives.
        """
        positions = self.positions if positions is None else positions
        cells = self.cells if cells is None else cells
        if self.n_frames == 1:
            shift_vectors = self.shifts @ cells[0]
        else:  # one small matmul per frame: much faster than a 3x3 product per pair
            blocks = self.shifts.split(self.pair_counts())
            shift_vectors = torch.cat([shifts @ cell for shifts, cell in zip(blocks, cells)])
        # index_select: a plain gather, several times faster than advanced indexing
        ends = positions.index_select(0, self.pairs.view(-1)).view(2, -1, 3)
        return (ends[0] - ends[1]).add_(shift_vectors)

    def to(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Batch:
        """Copy with float tensors cast to ``dtype`` and everything moved to ``device``."""
        moved = {}
        for field in fields(self):
            tensor = getattr(self, field.name)
            if not isinstance(tensor, torch.Tensor):
                moved[field.name] = tensor
                continue
            if dtype is not None and field.name in ("positions", "cells", "shifts"):
                tensor = tensor.to(dtype=dtype)
            if device is not None:
                tensor = tensor.to(device=device)
            moved[field.name] = tensor
        return Batch(**moved)


class FrameBatcher:
    """One-frame Batches for a run of calls on the same system (MD, relaxations).

    Each call builds the Batch of one frame; tensors that did not change since the
    previous call (species, the frame index, and the pairs and shifts whenever the
    neighbour list is the same, which vesin's skin makes the common case between MD
    steps) are the previous call's, so only the positions (and a changed cell) are
    converted again. The result equals ``Batch.from_atoms([atoms], species, cutoff)``.

    Args:
        species: element symbols the model knows; ``species[k]`` gets index ``k``.
        cutoff: neighbour cutoff, Angstrom.
        dtype: float dtype of positions, cells and shifts.
        device: where the tensors live.
    """

    def __init__(
        self,
        species: Sequence[str],
        cutoff: float,
        *,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ):
        self.species = list(species)
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self.device = torch.device(device)
        self._numbers: np.ndarray | None = None  # atomic numbers of the previous frame
        self._cell: np.ndarray | None = None
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None  # vesin's, as numpy
        self._previous: Batch | None = None

    def __call__(self, atoms: Atoms) -> Batch:
        previous = self._previous
        if previous is None or not np.array_equal(atoms.numbers, self._numbers):
            previous = Batch.from_atoms(
                [atoms], self.species, self.cutoff, dtype=self.dtype, device=self.device
            )
            self._numbers = atoms.numbers.copy()
            self._cell = atoms.cell[:].copy()
            # the batch's own pair list (one frame: no offsets), searched once
            self._pairs = (
                previous.pairs.cpu().numpy(),
                previous.shifts.cpu().numpy().round().astype(np.int64),
            )
            self._previous = previous
            return previous
        same_cell = np.array_equal(atoms.cell[:], self._cell)
        pairs, shifts = frame_pairs(atoms, self.cutoff, check_cell=not same_cell)
        batch = dataclasses.replace(
            previous,
            positions=torch.tensor(atoms.positions, dtype=self.dtype, device=self.device),
            pbc=torch.from_numpy(np.asarray(atoms.pbc, dtype=bool)[None]).to(self.device),
        )
        if not same_cell:
            self._cell = atoms.cell[:].copy()
            batch.cells = torch.tensor(self._cell[None], dtype=self.dtype, device=self.device)
        if not (np.array_equal(pairs, self._pairs[0]) and np.array_equal(shifts, self._pairs[1])):
            self._pairs = pairs, shifts
            batch.pairs = torch.from_numpy(pairs).to(self.device)
            batch.shifts = torch.from_numpy(shifts).to(self.device, self.dtype)
            batch.pair_frame = torch.zeros(pairs.shape[1], dtype=torch.long, device=self.device)
        self._previous = batch
        return batch


def _species_indices(atoms: Atoms, lookup: dict[str, int], species: Sequence[str]) -> np.ndarray:
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - lookup.keys())
    if unknown:
        raise PotstillError(
            f"element(s) {', '.join(unknown)} not in the model's species "
            f"{', '.join(species)}; use a model trained on them"
        )
    return np.array([lookup[s] for s in symbols], dtype=np.int64)
