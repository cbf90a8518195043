"""The machine a benchmark ran on, and its roofline: peak arithmetic and memory bandwidth.

Every figure is meaningless without the machine it came from, so the JSON starts with it: the
CPU model and its cores and threads, the BLAS NumPy calls for its matrix products, the thread
counts each library uses, the versions of everything timed, the GPU if there is one, and the
load average (a shared machine makes every time longer).

The roofline (Williams, Waterman and Patterson, 2009) bounds what a kernel can reach: one that
does I floating-point operations per byte it moves runs at most at ``min(peak, I * bandwidth)``.
Both roofs are measured, not read from a data sheet: the peak with a large float32 matrix
product (what BLAS does best), the bandwidth with a large array copy (one read and one write
of every byte).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.timing import median_ms

LIBRARIES = ("numpy", "torch", "tinygrad", "cupy", "numba", "matplotlib")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (socket, core) pairs in /proc/cpuinfo; None where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, socket_id = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket_id = value.strip()
        elif key.strip() == "core id":
            cores.add((socket_id, value.strip()))
    return len(cores) or None


def openblas_threads() -> int | None:
    """Threads of the OpenBLAS NumPy loaded (None where that cannot be asked)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(library, symbol):
                return int(getattr(library, symbol)())
    return None


def blas_info() -> dict[str, Any]:
    """What BLAS NumPy uses and with how many threads: threadpoolctl's report where it is
    installed, else NumPy's build configuration and OpenBLAS's own thread count."""
    try:
        import threadpoolctl
    except ImportError:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return {
            "name": blas.get("name"),
            "version": blas.get("version"),
            "configuration": blas.get("openblas configuration"),
            "threads": openblas_threads(),
        }
    return {"threadpoolctl": threadpoolctl.threadpool_info()}


def versions() -> dict[str, str | None]:
    """Python's version and that of every library a benchmark may time (None: not installed),
    and tinymed's git commit (with ``+dirty`` when the work tree has changes)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
        found["tinymed"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        found["tinymed"] = None
    return found


def describe(torch: ModuleType | None, gpu: str | None) -> dict[str, Any]:
    """The machine, as the JSON's first entry."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "blas": blas_info(),
        "gpu": gpu,
        "versions": versions(),
        "load_average_before": os.getloadavg()[0],
    }


def roofline(xp: ModuleType, synchronize: Callable[[], None], gemm_size: int, copy_floats: int) -> dict[str, float]:
    """The two roofs on arrays of module ``xp`` (numpy or cupy): ``peak_gflops`` from an
    ``n x n`` float32 matrix product (``2 n^3`` operations) and ``bandwidth_gbs`` from copying
    ``copy_floats`` float32 values (8 bytes moved per value: a read and a write); the best of
    5 runs each, as a roof is what the machine reaches at best."""
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((gemm_size, gemm_size), dtype=np.float32))
    b = xp.asarray(rng.standard_normal((gemm_size, gemm_size), dtype=np.float32))
    out = xp.empty_like(a)
    src = xp.ones(copy_floats, dtype=np.float32)
    dst = xp.empty_like(src)
    runs = {"gemm": lambda: xp.matmul(a, b, out=out), "copy": lambda: xp.copyto(dst, src)}
    ms = median_ms(runs, synchronize, repeat=5, statistic=min)
    return {
        "peak_gflops": 2 * gemm_size**3 / ms["gemm"] / 1e6,
        "bandwidth_gbs": 8 * copy_floats / ms["copy"] / 1e6,
        "gemm_size": gemm_size,
        "copy_floats": copy_floats,
    }
