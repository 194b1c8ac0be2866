"""Per-atom SOAP power spectra of frames (DScribe, as in seed 002's IDEAL), an
alternative to the default AEV for selection and uncertainty.

Contract as :class:`~potstill.descriptors.AEVDescriptor`: ``SOAPDescriptor(...)(atoms)
-> (n_atoms, n_features) float32`` and ``.per_atom(frames) -> list`` of such arrays, one
per frame, in order; frames are read once. Needs the optional dependency DScribe
(``pip install 'potstill[soap]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

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

    def with_gradient(self, atoms: Atoms) -> tuple[np.ndarray, Callable]:
        """SOAP vectors ``(n_atoms, n_features)`` float64 of one frame and their VJP
        ``vjp(dL/dSOAP (n_atoms, n_features)) -> dL/dpositions (n_atoms, 3)`` from
        DScribe's analytic derivatives (seed 003, SI S10).

        DScribe has no analytic derivatives for periodic systems (and its numerical ones
        move an atom without its periodic images), so a periodic frame is unfolded: its
        3 x 3 x 3 images form one cluster whose central copy are the centres, and the
        derivatives with respect to every image of an atom are summed into it. Needs
        cell heights of at least ``r_cut``.
        """
        self._compute([atoms])  # species and element checks
        n = len(atoms)
        if atoms.pbc.any():
            cluster, owner, centres = _unfolded(atoms, self.options["r_cut"])
        else:
            cluster, owner, centres = atoms, np.arange(n), np.arange(n)
        derivatives, values = self._calculator(False).derivatives(
            cluster,
            centers=centres.tolist(),
            attach=True,  # a centre moves with its atom
            method="analytical",
            return_descriptor=True,
        )  # derivatives (n_centres, n_cluster_atoms, 3, n_features)

        def vjp(gradient: np.ndarray) -> np.ndarray:
            by_cluster = np.einsum("ijkf,if->jk", derivatives, np.asarray(gradient, float))
            out = np.zeros((n, 3))
            np.add.at(out, owner, by_cluster)
            return out

        return np.asarray(values, dtype=np.float64), vjp

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


def _unfolded(atoms: Atoms, r_cut: float) -> tuple[Atoms, np.ndarray, np.ndarray]:
    """The 3 x 3 x 3 images of a periodic frame as one non-periodic cluster, the frame
    atom each cluster atom is an image of ``(27 n,)``, and the central copy's indices."""
    cell = atoms.cell[:]
    heights = atoms.cell.volume / atoms.cell.areas()  # distances between opposite faces
    if np.any(heights[atoms.pbc] < r_cut):
        raise PotstillError(
            f"SOAP derivatives of a periodic cell need cell heights >= r_cut = {r_cut} A, "
            f"got {np.round(heights, 2).tolist()}"
        )
    shifts = [np.array(s) for s in np.ndindex(3, 3, 3)]
    positions = np.concatenate([atoms.positions + (s - 1) @ cell for s in shifts])
    cluster = Atoms(np.tile(atoms.numbers, len(shifts)), positions=positions)
    owner = np.tile(np.arange(len(atoms)), len(shifts))
    middle = 13  # (1, 1, 1) in np.ndindex(3, 3, 3) order: the frame itself
    return cluster, owner, np.arange(len(atoms)) + middle * len(atoms)
