"""Fast access to a running LAMMPS instance from Python, for per-step callbacks.

:class:`LammpsLink` builds the ctypes prototypes once and keeps numpy views of LAMMPS's
own arrays, so a ``fix external`` callback that runs every MD step (the MOMT bias of
:mod:`potstill.sampling.momt`) costs microseconds instead of the ``lammps`` module's
~10 us per wrapper call; :func:`box_cell` reads the current cell.
"""

from __future__ import annotations

import ctypes as ct
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import lammps

__all__ = ["LammpsLink", "box_cell"]


class LammpsLink:
    """Low-overhead access to one LAMMPS instance for the per-step bias callback.

    The Python wrappers of the ``lammps`` module re-create ctypes prototypes and numpy
    views on every call (~10 us each); here prototypes are built once, the box is read
    through views of ``domain->boxlo``/``boxhi``/tilts (stable addresses), and views of
    per-atom arrays are cached by address (LAMMPS reallocates them only when they grow).
    """

    def __init__(
        self, lmp: "lammps.lammps", callback: Callable, *, energy: str, pressure: str, external: str
    ) -> None:
        """``callback`` is set on the ``fix external`` with ID ``external``; ``energy``
        and ``pressure`` are the IDs of the computes of the potential energy and the
        pressure tensor."""
        self.lmp, self._ct = lmp, ct
        lib, handle = lmp.lib, lmp.lmp
        proto = lambda name, res, *args: ct.CFUNCTYPE(res, *args)((name, lib))  # noqa: E731
        extract_compute = proto(
            "lammps_extract_compute",
            ct.POINTER(ct.c_double),
            ct.c_void_p,
            ct.c_char_p,
            ct.c_int,
            ct.c_int,
        )
        extract_global = proto("lammps_extract_global", ct.c_void_p, ct.c_void_p, ct.c_char_p)
        self._extract_atom = proto("lammps_extract_atom", ct.c_void_p, ct.c_void_p, ct.c_char_p)
        set_virial = proto(
            "lammps_fix_external_set_virial_global",
            None,
            ct.c_void_p,
            ct.c_char_p,
            ct.POINTER(ct.c_double),
        )
        set_energy = proto(
            "lammps_fix_external_set_energy_global", None, ct.c_void_p, ct.c_char_p, ct.c_double
        )
        pe, press, ext = energy.encode(), pressure.encode(), external.encode()
        self.energy = lambda: extract_compute(handle, pe, 0, 0)[0]  # global scalar
        self._press = lambda: extract_compute(handle, press, 0, 1)  # global vector
        self._virial = (ct.c_double * 6)()
        self._virial_view = np.ctypeslib.as_array(self._virial)
        self.set_virial = lambda values: self._set(set_virial, handle, ext, values)
        self.set_energy = lambda value: set_energy(handle, ext, float(value))
        view = lambda name, n: np.ctypeslib.as_array(  # noqa: E731
            (ct.c_double * n).from_address(extract_global(handle, name.encode()))
        )
        self._lo, self._hi = view("boxlo", 3), view("boxhi", 3)
        self._xy, self._xz, self._yz = view("xy", 1), view("xz", 1), view("yz", 1)
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self._c_callback = lmp.FIX_EXTERNAL_CALLBACK_FUNC(callback)  # keep a reference
        lib.lammps_set_fix_external_callback(handle, ext, self._c_callback, None)

    def _set(self, function, handle, ext, values: np.ndarray) -> None:
        self._virial_view[:] = values
        function(handle, ext, self._virial)

    def pressure(self) -> np.ndarray:
        """Pair virial pressure (bar), (6,): xx yy zz xy xz yz."""
        ptr = self._press()
        return np.array([ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[5]])

    def cell(self) -> np.ndarray:
        """The box as an ASE cell (rows), A."""
        lx, ly, lz = self._hi - self._lo
        return np.array([[lx, 0.0, 0.0], [self._xy[0], ly, 0.0], [self._xz[0], self._yz[0], lz]])

    def array(self, ptr, n: int) -> np.ndarray:
        """(n, 3) view of a LAMMPS ``double **`` per-atom array."""
        address = self._ct.cast(ptr[0], self._ct.c_void_p).value
        key = (address, n)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 64:
                self._views.clear()
            view = np.ctypeslib.as_array(
                (self._ct.c_double * (3 * n)).from_address(address)
            ).reshape(n, 3)
            self._views[key] = view
        return view

    def forces(self, n: int) -> np.ndarray:
        """(n, 3) view of the current LAMMPS forces (the pair forces inside the callback)."""
        rows = self._ct.cast(
            self._extract_atom(self.lmp.lmp, b"f"),
            self._ct.POINTER(self._ct.POINTER(self._ct.c_double)),
        )
        return self.array(rows, n)


def box_cell(lmp: "lammps.lammps") -> np.ndarray:
    """The LAMMPS box as an ASE cell (rows a, b, c), A."""
    boxlo, boxhi, xy, yz, xz, _, _ = lmp.extract_box()
    lx, ly, lz = (hi - lo for hi, lo in zip(boxhi, boxlo))
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
