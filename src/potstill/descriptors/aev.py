"""Per-atom TorchANI AEVs of frames, for selection and uncertainty (not for training).

Contract: ``AEVDescriptor(species, aev=...)(atoms) -> (n_atoms, n_features) float32`` and
``.per_atom(frames) -> list`` of such arrays, one per frame, in order. The numbers are
potstill's own ANI AEV (:func:`potstill.aev.kernel.batch_aev`, the same terms and
layout as TorchANI's ``AEVComputer``) in float32, so a descriptor and a model with the
same :class:`~potstill.aev.config.AEVConfig` see the same features.

:meth:`AEVDescriptor.with_gradient` gives one frame's AEVs in float64 with their
vector-Jacobian product with respect to the positions (autograd through the same
kernel), for objectives built on descriptors (the IDEAL embedding, seed 003).

Frames are read once, in order (a lazy :class:`~potstill.store.StoredFrames` view is
iterated chunk by chunk and never held whole), and computed in batches of ``chunk``
frames. Results are cached per frame, keyed by its content (numbers, positions, cell,
pbc), up to ``max_cache_bytes``, so several selectors sharing one descriptor compute a
pool once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from potstill.aev.config import AEV_PRESETS, AEVConfig
from potstill.aev.kernel import batch_aev
from potstill.aev.neighbors import Batch
from potstill.descriptors.chunks import per_atom_in_chunks
from potstill.errors import PotstillError

__all__ = ["AEVDescriptor"]


class AEVDescriptor:
    """Per-atom AEVs ``(n_atoms, n_features)`` float32 of frames.

    Args:
        species: element symbols fixing the AEV layout (``species[k]`` is species index
            ``k``). Default: the sorted elements of the first frames computed; later
            frames with another element raise :class:`PotstillError`.
        aev: AEV parameters, or the name of a model preset (``"paper"``, ``"demo"``)
            whose AEV to use. Default: :class:`AEVConfig` (ANI-2x-like, 5.1 A radial).
        chunk: frames per batch.
        max_cache_bytes: most bytes of cached AEVs kept (least recently used dropped
            first); 0 disables the cache.
    """

    def __init__(
        self,
        species: Sequence[str] | None = None,
        *,
        aev: AEVConfig | str | None = None,
        chunk: int = 64,
        max_cache_bytes: int = 1 << 30,
    ):
        if isinstance(aev, str):
            if aev not in AEV_PRESETS:
                raise PotstillError(
                    f"unknown AEV preset {aev!r}; accepted: {', '.join(AEV_PRESETS)} or an AEVConfig"
                )
            aev = AEV_PRESETS[aev]
        self.aev_config = aev if aev is not None else AEVConfig()
        if chunk < 1:
            raise PotstillError(f"chunk must be >= 1 frame, got {chunk}")
        self.chunk = int(chunk)
        self.max_cache_bytes = int(max_cache_bytes)
        self._species: list[str] | None = None
        self._computer = None  # the TorchANI AEVComputer, once the species are known
        self._computer64 = None  # its float64 twin, for with_gradient
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        if species is not None:
            self._build(list(species))

    @property
    def species(self) -> list[str] | None:
        """Element symbols of the AEV layout (None until known)."""
        return None if self._species is None else list(self._species)

    @property
    def n_features(self) -> int:
        """Length of one atom's AEV (needs the species)."""
        if self._computer is None:
            raise PotstillError("the AEV length depends on the species: pass species= first")
        return int(self._computer.out_dim)

    def __call__(self, atoms: Atoms) -> np.ndarray:
        """AEVs ``(n_atoms, n_features)`` float32 of one frame."""
        return self.per_atom([atoms])[0]

    def per_atom(self, frames: Iterable[Atoms]) -> list[np.ndarray]:
        """AEVs of every frame, one ``(n_atoms_i, n_features)`` float32 array each."""
        return per_atom_in_chunks(frames, self.chunk, self._chunk)

    def with_gradient(self, atoms: Atoms) -> tuple[np.ndarray, Callable]:
        """AEVs ``(n_atoms, n_features)`` float64 of one frame and their VJP.

        ``vjp(g)`` takes ``g = dL/dAEV (n_atoms, n_features)`` and returns ``dL/dpositions
        (n_atoms, 3)`` (1/A times the units of ``L``), the cell held fixed.
        """
        if self._computer is None:
            self._build(sorted(set(atoms.get_chemical_symbols()), key=atomic_numbers.get))
        self._compute([atoms])  # element checks
        if self._computer64 is None:
            self._computer64 = self.aev_config.build(len(self._species)).double()
        computer = self._computer64
        cutoff = self.aev_config.radial_cutoff
        batch = Batch.from_atoms([atoms], self._species, cutoff, dtype=torch.float64)
        positions = batch.positions.clone().requires_grad_(True)
        features = batch_aev(computer, batch, batch.pair_vectors(positions), cutoff)

        def vjp(gradient: np.ndarray) -> np.ndarray:
            (by_positions,) = torch.autograd.grad(
                features,
                positions,
                torch.from_numpy(np.asarray(gradient, dtype=np.float64)),
                retain_graph=True,
                allow_unused=True,
            )
            if by_positions is None:  # no neighbours: nothing depends on the positions
                return np.zeros((len(atoms), 3))
            return by_positions.numpy()

        return features.detach().numpy().copy(), vjp

    def __getstate__(self) -> dict:
        """Pickled (to a worker) without the cache of computed AEVs."""
        state = dict(self.__dict__)
        state["_cache"], state["_cache_bytes"] = OrderedDict(), 0
        return state

    # -- internals ------------------------------------------------------------------
    def _build(self, species: list[str]) -> None:
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown or not species:
            raise PotstillError(f"species must be element symbols like 'Ni', got {species}")
        self._species = species
        self._computer = self.aev_config.build(len(species)).float()

    def _chunk(self, frames: list[Atoms]) -> list[np.ndarray]:
        keys = [_frame_key(atoms) for atoms in frames]
        out: list[np.ndarray | None] = [self._cached(key) for key in keys]
        todo = [i for i, value in enumerate(out) if value is None]
        if todo:
            if self._computer is None:
                numbers = np.unique(np.concatenate([frames[i].numbers for i in todo]))
                self._build([chemical_symbols[z] for z in numbers])
            computed = self._compute([frames[i] for i in todo])
            for i, value in zip(todo, computed):
                out[i] = value
                self._remember(keys[i], value)
        return out  # type: ignore[return-value]

    def _compute(self, frames: list[Atoms]) -> list[np.ndarray]:
        species, cutoff = self._species, self.aev_config.radial_cutoff
        known = set(species)
        for atoms in frames:
            extra = set(atoms.get_chemical_symbols()) - known
            if extra:
                raise PotstillError(
                    f"a frame holds {sorted(extra)}, outside the descriptor's species "
                    f"{species}; build the descriptor with species= listing every element"
                )
        with torch.inference_mode():
            batch = Batch.from_atoms(frames, species, cutoff, dtype=torch.float32)
            features = batch_aev(self._computer, batch, batch.pair_vectors(), cutoff).numpy()
        counts = np.cumsum([len(atoms) for atoms in frames])[:-1]
        return [block.copy() for block in np.split(features, counts)]

    def _cached(self, key: bytes) -> np.ndarray | None:
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
        return hit

    def _remember(self, key: bytes, value: np.ndarray) -> None:
        if value.nbytes > self.max_cache_bytes:
            return
        if key in self._cache:
            return
        self._cache[key] = value
        self._cache_bytes += value.nbytes
        while self._cache_bytes > self.max_cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= dropped.nbytes


def _frame_key(atoms: Atoms) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(atoms.cell[:], dtype=np.float64).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    return digest.digest()
