"""What a benchmark ran on: one comment line printed above its table.

The CPU model (``/proc/cpuinfo``), cores, torch version, torch's intra-op and inter-op
threads, the OpenMP and BLAS (MKL) thread counts torch reports, whether potstill's
allocator setting took effect (``potstill.models.allocator``; process-wide, so both sides
of a comparison run with it) and the load average: the things that moved the ratios
between machines (issue 17).
"""

from __future__ import annotations

import os
import platform
import re

import torch

from potstill.models.allocator import keep_freed_memory

__all__ = ["describe"]


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _parallel_value(info: str, name: str) -> str:
    match = re.search(rf"{re.escape(name)}\(\)\s*:\s*(\S+)", info)
    return match.group(1) if match else "?"


def describe() -> str:
    """``# cpu ..., cores, torch ..., threads ...; allocator ...; load ...``."""
    info = torch.__config__.parallel_info()
    blas = "MKL" if "Math Kernel Library" in info else "BLAS"
    return (
        f"# machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}: "
        f"{torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op "
        f"thread(s), OpenMP {_parallel_value(info, 'omp_get_max_threads')}, {blas} "
        f"{_parallel_value(info, 'mkl_get_max_threads')}; potstill keep_freed_memory "
        f"{'on' if keep_freed_memory() else 'off'}; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
