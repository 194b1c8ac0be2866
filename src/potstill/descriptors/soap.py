"""Per-atom SOAP power spectra of frames (DScribe, as in seed 002's IDEAL), an
alternative to the default AEV for selection and uncertainty.

Contract as :class:`~potstill.descriptors.AEVDescriptor`: ``SOAPDescriptor(...)(atoms)
-> (n_atoms, n_features) float32`` and ``.per_atom(frames) -> list`` of such arrays, one
per frame, in order; frames are read once. Needs the optional dependency DScribe
(``pip install 'potstill[soap]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from potstill.descriptors.chunks import per_atom_in_chunks
from potstill.errors import PotstillError

__all__ = ["SOAPDescriptor"]


class SOAPDescriptor:
    """Per-atom SOAP vectors ``(n_atoms, n_features)`` float32 of frames.

    Args:
        species: element symbols of the SOAP layout. Default: the sorted elements of the
            first frames computed; a later frame with another element raises.
        r_cut: cutoff radius, Angstrom.
        n_max, l_max: radial and angular basis sizes.
        sigma: width of the atomic Gaussians, Angstrom.
        chunk: frames per DScribe call.

    Periodic frames are treated as periodic; the vectors are not normalised.
    """

    def __init__(
        self,
        species: Sequence[str] | None = None,
        *,
        r_cut: float = 5.0,
        n_max: int = 6,
        l_max: int = 4,
        sigma: float = 0.5,
        chunk: int = 64,
    ):
        try:
            import dscribe  # noqa: F401
        except ImportError:
            raise PotstillError(
                "SOAP descriptors need DScribe: pip install 'potstill[soap]'"
            ) from None
        if r_cut <= 0 or sigma <= 0 or n_max < 1 or l_max < 0 or chunk < 1:
            raise PotstillError(
                f"SOAP needs r_cut > 0, sigma > 0, n_max >= 1, l_max >= 0 and chunk >= 1; got r_cut={r_cut}, "
                f"sigma={sigma}, n_max={n_max}, l_max={l_max}, chunk={chunk}"
            )
        self.options = {
            "r_cut": float(r_cut),
            "n_max": int(n_max),
            "l_max": int(l_max),
            "sigma": float(sigma),
        }
        self.chunk = int(chunk)
        self._soap = {}  # periodic -> dscribe SOAP
        self._species: list[str] | None = None
        if species is not None:
            self._set_species(list(species))

    @property
    def species(self) -> list[str] | None:
        return None if self._species is None else list(self._species)

    def __call__(self, atoms: Atoms) -> np.ndarray:
        """SOAP vectors ``(n_atoms, n_features)`` float32 of one frame."""
        return self.per_atom([atoms])[0]

    def per_atom(self, frames: Iterable[Atoms]) -> list[np.ndarray]:
        """SOAP vectors of every frame, one ``(n_atoms_i, n_features)`` float32 array each."""
        return per_atom_in_chunks(frames, self.chunk, self._compute)

    def _set_species(self, species: list[str]) -> None:
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown or not species:
            raise PotstillError(f"species must be element symbols like 'Ni', got {species}")
        self._species = sorted(set(species), key=lambda s: atomic_numbers[s])

    def _compute(self, frames: list[Atoms]) -> list[np.ndarray]:
        if self._species is None:
            numbers = np.unique(np.concatenate([atoms.numbers for atoms in frames]))
            self._set_species([chemical_symbols[z] for z in numbers])
        known = set(self._species)
        out = []
        for atoms in frames:
            extra = set(atoms.get_chemical_symbols()) - known
            if extra:
                raise PotstillError(
                    f"a frame holds {sorted(extra)}, outside the descriptor's species {self._species}; "
                    "build the descriptor with species= listing every element"
                )
            out.append(self._calculator(bool(atoms.pbc.any())).create(atoms).astype(np.float32))
        return out

    def _calculator(self, periodic: bool):
        if periodic not in self._soap:
            from dscribe.descriptors import SOAP

            self._soap[periodic] = SOAP(
                species=self._species, periodic=periodic, sparse=False, **self.options
            )
        return self._soap[periodic]
