"""The hand-written GPU kernels, installed as the package ``tinymed.kernels``.

The four formula families of the course (convolution, max pooling, the affine map as a
tiled matrix product, attention), each written twice, one file per family:

``cuda/*.cu``
    CUDA C. :mod:`tinymed.backends.cupy_cuda` reads a file with :func:`cuda_source`,
    compiles it at run time with ``cupy.RawModule`` (which calls NVRTC, NVIDIA's run-time
    compiler) and launches its kernels on CuPy arrays. The tests compile every file with
    NVRTC too, which needs no GPU, so a kernel that does not compile fails CI. Device
    functions that two families share (the window geometry of ``windows.cuh``) live in a
    ``cuda/*.cuh`` header that those files include.
``numba/*.py``
    The same kernels in Numba CUDA (Python compiled for the GPU), launched by
    :mod:`tinymed.backends.numba_cuda`; with no GPU they run in Numba's CUDA simulator.

Both are held to the NumPy reference, :mod:`tinymed.backends.numpy_ref`, by the tests.
"""

import re
from importlib import resources

# The options the CUDA C is compiled with (CuPy adds its own after them, -ftz=true among them):
# C++17 for the templates. Here, beside the sources, so that every compiler of them (the CuPy
# backend, the tests, the course's graders) uses the same flags.
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++17",)

# A line that includes one of the shared headers next to the .cu files.
_INCLUDE = re.compile(r'^#include "(\w+\.cuh)".*$', re.MULTILINE)


def _read_cuda_file(file_name: str) -> str:
    """The text of ``cuda/<file_name>``, read through :mod:`importlib.resources` so that it
    works wherever the package is installed."""
    path = resources.files(__name__).joinpath("cuda", file_name)
    if not path.is_file():
        raise ValueError(f"cuda_source: no CUDA source named {file_name!r} in {__name__}")
    return path.read_text(encoding="utf-8")


def cuda_source(name: str) -> str:
    """Return the CUDA C source of the family ``name``: the text of ``cuda/<name>.cu``, with
    each ``#include "<header>.cuh"`` line replaced by the text of that header.

    Why paste the headers in rather than give NVRTC an include path: CuPy keys its on-disk
    cache of compiled kernels on the source text it is handed and never looks inside included
    files, so an edited header would go unnoticed. The ``#line`` markers keep the compiler's
    messages pointing at the right file and line.
    """
    text = _read_cuda_file(f"{name}.cu")

    def paste(include: re.Match) -> str:
        next_line = text.count("\n", 0, include.start()) + 2
        header = include.group(1)
        return f'#line 1 "{header}"\n{_read_cuda_file(header).rstrip()}\n#line {next_line} "{name}.cu"'

    return _INCLUDE.sub(paste, text)
