"""``tinymed.cuda``: whether a CUDA GPU can run tinymed's kernels here (mirrors ``torch.cuda``).

A GPU counts when the CUDA C kernels can run on it, i.e. when ``tinymed.device("cuda")`` works:
CuPy is installed and finds a GPU (``pip install "tinymed[cuda]"``). The Numba kernels also run
without a GPU, in Numba's simulator, but that is not a GPU, so it does not count here.
"""

from __future__ import annotations

from tinymed.device import DeviceUnavailableError, device


def device_count() -> int:
    """The number of CUDA GPUs tinymed's CUDA C kernels can use (0 without one)."""
    try:
        backend = device("cuda").backend
    except DeviceUnavailableError:
        return 0
    return backend.device_count()


def is_available() -> bool:
    """Whether ``tinymed.device("cuda")`` can run here."""
    return device_count() > 0
