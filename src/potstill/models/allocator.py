"""Keep glibc's malloc from handing PyTorch's large temporaries back to the kernel.

A training or MD step of an ANI model allocates and frees tensors of a few to tens of
MB: the pair terms ``(P, radial shifts)``, the padded triples, the MLP activations. With
glibc's default settings a freed block of that size goes back to the kernel (blocks
above the mmap threshold are unmapped; the heap top is trimmed beyond twice that), so
the next step faults the same memory in again, one zeroed 4 KiB page at a time. On this
project's 2-core VM that was about 40 % of a paper-preset training step on 32-atom
frames (0.37 -> 0.25 s per 64-frame step; ``benchmarks/README.md``, issue 17).

:func:`keep_freed_memory` raises both thresholds with ``mallopt`` so freed blocks stay in
the process and are reused. It is process-wide (it also speeds up any other PyTorch code
in the process, e.g. the TorchANI baseline of the benchmarks), idempotent, a no-op where
glibc is not the C library, and off when ``POTSTILL_KEEP_FREED_MEMORY=0``. The cost is
resident memory: up to ``trim_threshold`` bytes freed at the top of the heap are kept
instead of returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def keep_freed_memory(*, mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Serve blocks below ``mmap_threshold`` bytes from the heap and trim it only when
    more than ``trim_threshold`` bytes are free at its top; returns whether glibc took
    the settings (the first call decides; later calls return that answer)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("POTSTILL_KEEP_FREED_MEMORY", "1") == "0":
        return _applied
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: setting either fixes both (no more dynamic adjustment)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
    return _applied
