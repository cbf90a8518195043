"""CPU threads: ``tm.set_num_threads`` and ``tm.get_num_threads``, with PyTorch's names.

What they control: tinymed's CPU work is NumPy, whose matrix products (and so convolutions, done
as one large matrix product) run in a BLAS library (OpenBLAS in NumPy's wheels) with a thread
pool of its own; NumPy's element-wise code runs on one thread whatever is set. A BLAS pool can be
resized after import only through ``threadpoolctl``. When it is installed these functions use it;
when it is not, ``set_num_threads`` warns and changes nothing (start Python with
``OMP_NUM_THREADS=n`` instead), and ``get_num_threads`` reports what the environment asked for:
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS``, else the CPUs this process
may use (OpenBLAS's default).
"""

from __future__ import annotations

import os
import warnings

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def set_num_threads(num: int) -> None:
    """Let the BLAS library use ``num`` threads (see the module docstring for what that covers)."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"set_num_threads: expects a positive integer, got {num!r}")
    if threadpoolctl is None:
        warnings.warn(
            "set_num_threads: threadpoolctl is not installed, so NumPy's BLAS thread pool cannot be resized "
            f"after import; start Python with OMP_NUM_THREADS={num} instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    threadpoolctl.threadpool_limits(limits=num, user_api="blas")


def get_num_threads() -> int:
    """The number of threads the BLAS library uses (see the module docstring for how it is known)."""
    if threadpoolctl is not None:
        pools = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
        if pools:
            return max(pools)
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
