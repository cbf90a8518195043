"""Shared test set-up.

Numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so it is set here, before
any test module imports tinymed (and through it numba): on a machine with no GPU the Numba
kernels then run in Numba's CUDA simulator on NumPy arrays. On a GPU machine the real GPU
is used; set NUMBA_ENABLE_CUDASIM=1 yourself to force the simulator there."""

import os
import shutil

import pytest

if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


@pytest.fixture(scope="session")  # hypothesis refuses function-scoped fixtures
def torch():
    """PyTorch, the test oracle; a test that asks for it is skipped, saying why, where it is absent."""
    return pytest.importorskip(
        "torch", reason="PyTorch is the test oracle; install its CPU build (see the README) to run this comparison"
    )
