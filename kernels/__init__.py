"""The hand-written GPU kernels, installed as the package ``tinymed.kernels``.

The four formula families of the course (convolution, max pooling, the affine map as a
tiled matrix product, attention), each written twice, one file per family:

``cuda/*.cu``
    CUDA C. :mod:`tinymed.backends.cupy_cuda` reads a file with :func:`cuda_source`,
    compiles it at run time with ``cupy.RawModule`` (which calls NVRTC, NVIDIA's run-time
    compiler) and launches its kernels on CuPy arrays. The tests compile every file with
    NVRTC too, which needs no GPU, so a kernel that does not compile fails CI.
``numba/*.py``
    The same kernels in Numba CUDA (Python compiled for the GPU), launched by
    :mod:`tinymed.backends.numba_cuda`; with no GPU they run in Numba's CUDA simulator.

Both are held to the NumPy reference, :mod:`tinymed.backends.numpy_ref`, by the tests.
"""

from importlib import resources


def cuda_source(name: str) -> str:
    """Return the CUDA C source of the family ``name``: the text of ``cuda/<name>.cu``.

    Read through :mod:`importlib.resources`, so it works wherever the package is installed.
    """
    source = resources.files(__name__).joinpath("cuda", f"{name}.cu")
    if not source.is_file():
        raise ValueError(f"cuda_source: no CUDA source named {name!r} in {__name__}")
    return source.read_text(encoding="utf-8")
