"""Graders of chapter 7, CUDA C kernels through CuPy.

7.1 ``leaky_relu_source()``: CUDA C source, compiled by NVRTC as CuPy compiles (``-ftz=true``
    last) with the chapter's ``nvrtc_compile``; the PTX is read for the entry point and its
    parameter types, the thread and grid indices of a grid-stride loop, a test of the index
    against ``n``, and no float comparison that flushing to zero can change. Where a GPU and
    CuPy are present the kernel is also run against NumPy, subnormal inputs included.
7.2 ``grid_size(n, threads_per_block)``: values, exact integers, and the ValueErrors for the
    block size, a negative ``n`` and a grid past ``2**31 - 1`` blocks.
7.3 ``blocks_per_multiprocessor(threads, registers, shared_bytes)``: against hand-computed
    H100 cases, each chosen so that one limit or one rounding rule decides it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
from tinymed.course.grading import Exercise, Fail, expect, expect_close, need
from tinymed.kernels import NVRTC_OPTIONS

__all__ = ["EXERCISES"]

_SIGNATURE = 'extern "C" __global__ void leaky_relu(const float* x, float* y, float negative_slope, int n)'


def _ptx_of(ns: Mapping[str, Any], source: str) -> str:
    """The PTX of ``source`` compiled as CuPy compiles it (its -ftz=true after tinymed's options)."""
    nvrtc_compile = need(ns, "nvrtc_compile")
    options = [*NVRTC_OPTIONS, "-ftz=true", "--gpu-architecture=compute_75"]
    compiled = nvrtc_compile(source, options, (), "leaky_relu.cu")
    if not compiled.ok:
        errors = [line for line in compiled.log.splitlines() if "error" in line] or compiled.log.splitlines()[:3]
        raise Fail(f"NVRTC does not compile your source: {' | '.join(errors[:3])}")
    expect("warning" not in compiled.log.lower(), f"NVRTC warns: {compiled.log.strip()[:300]}")
    return compiled.ptx


def _run_on_gpu(source: str) -> None:
    """Launch the kernel through CuPy on a few tricky inputs and compare with NumPy."""
    import cupy

    x = np.array([-2.0, -1e-45, -0.0, 0.0, 1e-45, 1e-40, 0.5, 3.0, np.inf, -np.inf] * 7, dtype=np.float32)
    slope = np.float32(0.1)
    y = cupy.full(x.size, np.nan, dtype=cupy.float32)
    cupy.RawKernel(source, "leaky_relu")((2,), (8,), (cupy.asarray(x), y, slope, np.int32(x.size)))
    got = cupy.asnumpy(y)
    expect(not np.isnan(got).any(), "some elements were never written on the GPU: loop i += gridDim.x * blockDim.x")
    # A negative subnormal times the slope is flushed to -0 under -ftz=true: a product, not a choice.
    expect_close(got, np.where(x > 0, x, slope * x), "y on the GPU", "y = x where x > 0, negative_slope * x elsewhere")


def _grade_leaky_relu_source(ns: Mapping[str, Any]) -> None:
    source = ns["leaky_relu_source"]()
    expect(isinstance(source, str), f"return the CUDA C source as a str, got {type(source).__name__}")
    ptx = _ptx_of(ns, source)
    entries = re.findall(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx)
    names = [name for name, _ in entries]
    if "leaky_relu" not in names:
        mangled = [name for name in names if "leaky_relu" in name]
        expect(
            not mangled,
            f"the kernel is named {mangled[0]} in the PTX: C++ mangled its name; declare it "
            'extern "C" so that CuPy can find it as leaky_relu',
        )
        raise Fail(f"no kernel leaky_relu in the PTX (kernels found: {names or 'none'}); write {_SIGNATURE}")
    params = re.findall(r"\.param\s+(\.\w+)", dict(entries)["leaky_relu"])
    expect(
        params == [".u64", ".u64", ".f32", ".u32"],
        f"leaky_relu's parameters compile to {params}; the signature is {_SIGNATURE} (two pointers, a float, an int)",
    )
    for register, what in [("%tid.x", "threadIdx.x"), ("%ctaid.x", "blockIdx.x"), ("%ntid.x", "blockDim.x")]:
        expect(
            register in ptx,
            f"the kernel never reads {what}: each thread starts at i = blockIdx.x * blockDim.x + threadIdx.x",
        )
    expect(
        "%nctaid.x" in ptx,
        "the kernel never reads gridDim.x: a grid-stride loop steps i by "
        "gridDim.x * blockDim.x, so that any grid covers all n elements",
    )
    expect(
        re.search(r"setp\.\w+\.[su]32", ptx) is not None,
        "the kernel never compares an index with n: loop while i < n, or the spare threads write past the end of y",
    )
    # Comparisons, and max/min (fmaxf(x, 0) is a comparison too): each flushes a subnormal operand to 0.
    flushing = sorted(set(re.findall(r"(?:setp\.\w+|max|min)\.ftz\.f32", ptx)))
    expect(
        not flushing,
        f"the PTX compares floats with {', '.join(flushing)}: under -ftz=true a subnormal x "
        "reads as 0 and is sent to the negative side; test the sign on the bits, e.g. __float_as_int(v) > 0, "
        "which is positive exactly for x > 0",
    )
    expect("st.global.f32" in ptx, "the kernel never stores a float to global memory: write y[i]")
    if tm.cuda.is_available():
        _run_on_gpu(source)


def _grade_grid_size(ns: Mapping[str, Any]) -> None:
    grid_size = ns["grid_size"]
    for n, threads, want, hint in [
        (1000, 256, 4, "round UP: 1000 elements need 4 blocks of 256, the last one partly idle"),
        (1024, 256, 4, "when n is a multiple of the block, no extra block: (n + T - 1) // T"),
        (1, 1024, 1, "a single element still needs one block"),
        (0, 256, 0, "n = 0 needs 0 blocks"),
        ((2**31 - 1) * 1024, 1024, 2**31 - 1, "the largest grid, 2**31 - 1 blocks, is allowed"),
        (10**12 + 1, 1000, 10**9 + 1, "(n + T - 1) // T"),
    ]:
        try:
            got = grid_size(n, threads)
        except ValueError as e:
            raise Fail(f"grid_size({n}, {threads}) raised ValueError({str(e)!r}), expected {want}: {hint}") from None
        expect(
            isinstance(got, int | np.integer),
            f"grid_size({n}, {threads}) returned {type(got).__name__}; return an int (a number of blocks)",
        )
        expect(got == want, f"grid_size({n}, {threads}) = {got}, expected {want}: {hint}")
    for args, word, hint in [
        ((100, 0), "threads_per_block", "a block has 1 to 1024 threads"),
        ((100, 2048), "threads_per_block", "a block has at most 1024 threads"),
        ((-1, 256), "n", "a negative number of elements is a mistake to report"),
        (((2**31 - 1) * 1024 + 1, 1024), "2**31", "a 1-D grid has at most 2**31 - 1 blocks"),
        ((10**400, 1024), "2**31", "a 1-D grid has at most 2**31 - 1 blocks"),
    ]:
        try:
            grid_size(*args)
        except OverflowError:  # only 10**400 is beyond a float
            raise Fail(
                "grid_size(10**400, 1024) raised OverflowError: a float cannot hold n / T there; use integer "
                "arithmetic, (n + T - 1) // T, which is exact for any n, and then compare with 2**31 - 1"
            ) from None
        except ValueError as e:
            expect(word in str(e), f"grid_size{args} raised ValueError({str(e)!r}); name {word!r} in the message")
        else:
            raise Fail(f"grid_size{args} returned instead of raising ValueError: {hint}")


# (threads, registers, shared bytes) -> blocks per SM, and what decides it (the hint on a wrong answer)
_OCCUPANCY_CASES = [
    ((256, 32, 0), 8, "256 threads are 8 warps; 64 warps per SM hold 8 such blocks"),
    ((256, 40, 8320), 6, "registers: 40 x 32 = 1280 per warp; 65536 // 1280 = 51 warps; 51 // 8 = 6 blocks"),
    ((256, 33, 0), 6, "registers go to a warp in multiples of 256: 33 x 32 = 1056 rounds up to 1280"),
    ((100, 32, 0), 16, "100 threads take 4 whole warps: count warps (rounded up), not threads"),
    (
        (128, 32, 58000),
        3,
        "each block's shared memory carries 1024 reserved bytes: 59024 (rounded to 59136) fits 3 times in 233472",
    ),
    ((128, 32, 45576), 4, "shared memory goes in multiples of 128 bytes: 45576 + 1024 = 46600 rounds up to 46720"),
    ((32, 16, 0), 32, "at most 32 blocks per SM, however small they are"),
    ((1024, 64, 0), 1, "one 1024-thread block of 64 registers fills the 65536 registers"),
    ((2048, 32, 0), 0, "a block has at most 1024 threads: it cannot run at all, return 0"),
    ((256, 256, 0), 0, "at most 255 registers per thread: the kernel cannot run, return 0"),
    ((256, 32, 240000), 0, "at most 232448 shared bytes per block: the kernel cannot run, return 0"),
]


def _grade_blocks_per_multiprocessor(ns: Mapping[str, Any]) -> None:
    blocks_per_multiprocessor = ns["blocks_per_multiprocessor"]
    for args, want, hint in _OCCUPANCY_CASES:
        try:
            got = blocks_per_multiprocessor(*args)
        except ZeroDivisionError:
            raise Fail(
                f"blocks_per_multiprocessor{args} divided by zero: a block with no shared memory of its own still "
                "takes the 1024 reserved bytes, so its share is never 0"
            ) from None
        expect(got == want, f"blocks_per_multiprocessor{args} = {got}, expected {want}: {hint}")


EXERCISES = (
    Exercise(
        "7.1",
        "leaky_relu_source",
        "the CUDA C source of leaky_relu(const float* x, float* y, float negative_slope, int n), immune to -ftz",
        _grade_leaky_relu_source,
    ),
    Exercise(
        "7.2",
        "grid_size",
        "the number of blocks for n elements, as an exact int, with ValueErrors for CUDA's limits",
        _grade_grid_size,
    ),
    Exercise(
        "7.3",
        "blocks_per_multiprocessor",
        "resident blocks per H100 SM: the smallest of the warp, register, shared-memory and block limits",
        _grade_blocks_per_multiprocessor,
    ),
)
