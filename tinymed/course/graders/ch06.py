"""Graders of chapter 6, GPU kernels in Numba CUDA.

6.1 ``relu_backward(x, grad_output, grad_input)``: a ``@cuda.jit`` kernel, launched with more
    threads than elements (the guard) and with fewer (the grid-stride loop), against tinymed's
    autograd through ``F.relu``; zeros in ``x``, float32 and float64.
6.2 ``max_pool2d_kernel(x, y, indices, kernel_size, stride)``: one thread per output in a 1-D
    grid with spare threads, maxima and flat argmax indices against
    ``F.max_pool2d(..., return_indices=True)``, one difficulty per case (negative values,
    batches, sizes that do not tile, overlapping windows, ties).

The kernels run in Numba's CUDA simulator, on tiny arrays: it runs the student's indexing
exactly as written and checks every index against the array's bounds, so a missing guard is
named instead of silently writing past an array as it might on a GPU. The simulator is chosen
when this module is imported, before the student's cells import Numba (``tinymed course check``
imports the graders first); where Numba was already imported for a GPU the kernels run there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.graders.ch03 import pooling_input  # the inputs of chapter 3's pooling exercise
from tinymed.course.grading import Exercise, Fail, expect, expect_close

__all__ = ["EXERCISES"]

# Nothing above imports Numba; the student's cells will, after this line.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

_RNG_SEED = 6
# The simulator prefixes an error raised in a kernel with the thread that raised it.
_THREAD_PREFIX = re.compile(r"^tid=\[[^\]]*\] ctaid=\[[^\]]*\]: ")


def _launch(kernel: Any, blocks: int, threads: int, args: tuple, out_of_bounds_hint: str) -> None:
    """``kernel[blocks, threads](*args)``; an index past an array becomes a Fail with the hint,
    and a stub's NotImplementedError keeps its own message (so check.py says "not attempted")."""
    if not hasattr(kernel, "__getitem__"):
        raise Fail(f"{getattr(kernel, '__name__', kernel)} is not a kernel: decorate it with @cuda.jit")
    try:
        kernel[blocks, threads](*args)
    except NotImplementedError as e:
        raise NotImplementedError(_THREAD_PREFIX.sub("", str(e))) from None
    except IndexError as e:
        raise Fail(
            f"a thread indexed past the end of an array ({_THREAD_PREFIX.sub('', str(e))}); {out_of_bounds_hint}"
        ) from None


def _grade_relu_backward(ns: Mapping[str, Any]) -> None:
    relu_backward = ns["relu_backward"]
    rng = np.random.default_rng(_RNG_SEED)
    cases = [
        (
            "37 elements, 8 blocks of 8 threads",
            37,
            8,
            8,
            np.float64,
            "threads past the last element must do nothing: test the index against x.size",
        ),
        (
            "37 elements, 2 blocks of 4 threads (8 threads for 37 elements)",
            37,
            2,
            4,
            np.float64,
            "with fewer threads than elements each thread handles i, i + G, i + 2G, ... where G = cuda.gridsize(1)",
        ),
        ("5 elements, 1 block of 32 threads, float32", 5, 1, 32, np.float32, "keep going while i < x.size"),
    ]
    for what, n, blocks, threads, dtype, hint in cases:
        x = rng.standard_normal(n).astype(dtype)
        x[::4] = 0.0  # ReLU has no derivative at 0; tinymed and PyTorch use 0 there
        grad_output = rng.standard_normal(n).astype(dtype)
        grad_input = np.full(n, np.nan, dtype)  # an element nobody writes stays NaN
        _launch(relu_backward, blocks, threads, (x, grad_output, grad_input), hint)
        xt = tm.tensor(x, requires_grad=True)
        F.relu(xt).backward(tm.tensor(grad_output))
        want = np.asarray(xt.grad)
        unwritten = np.isnan(grad_input)
        expect(not unwritten.any(), f"{int(unwritten.sum())} of {n} elements were never written ({what}); {hint}")
        at_zero = (x == 0) & (grad_input != 0)
        expect(
            not at_zero.any(),
            f"where x == 0 the gradient must be 0, as in tinymed and PyTorch ({what}); test x[i] > 0, not x[i] >= 0",
        )
        expect_close(
            grad_input,
            want,
            f"dL/dx ({what})",
            "dL/dx[i] is dL/dy[i] where x[i] > 0 and 0 elsewhere: the gradient passes through or is cut",
        )


# (what, input kind, (N, C, H, W), kernel_size, stride): each case adds one difficulty
_POOL_CASES = [
    ("one 4x4 plane, 2x2 windows", "random", (1, 1, 4, 4), 2, 2),
    ("all values negative", "negative", (1, 1, 4, 4), 2, 2),
    ("a batch of 2 images with 3 channels", "random", (2, 3, 4, 6), 2, 2),
    ("a 5x7 plane, 2x2 windows", "random", (1, 1, 5, 7), 2, 2),
    ("3x3 windows with stride 2 (overlapping)", "random", (1, 2, 7, 6), 3, 2),
    ("ties (values 0 and 1 only)", "ties", (2, 1, 6, 6), 3, 2),
]
_POOL_HINTS = {
    "one 4x4 plane, 2x2 windows": "y[n, c, i, j] is the largest x[n, c, i*stride + p, j*stride + q] over the window",
    "all values negative": "start each window's running maximum at -inf (or at its first pixel), not at 0",
    "a batch of 2 images with 3 channels": "unflatten the thread's number as j = idx % OW, i = (idx // OW) % OH, "
    "c = (idx // (OW*OH)) % C, n = idx // (OW*OH*C)",
    "a 5x7 plane, 2x2 windows": "the output sizes are y.shape[2:], not H // k: read them from y",
    "3x3 windows with stride 2 (overlapping)": "window (i, j) starts at (i*stride, j*stride) and is kernel_size wide",
    "ties (values 0 and 1 only)": "on a tie keep the FIRST maximum in row-major order: replace the running maximum "
    "only when strictly greater",
}


def _grade_max_pool2d_kernel(ns: Mapping[str, Any]) -> None:
    max_pool2d_kernel = ns["max_pool2d_kernel"]
    rng = np.random.default_rng(_RNG_SEED)
    threads = 8
    for what, kind, shape, k, stride in _POOL_CASES:
        hint = _POOL_HINTS[what]
        x = pooling_input(rng, kind, shape)
        want_y, want_i = (t.numpy() for t in F.max_pool2d(tm.tensor(x), k, stride, return_indices=True))
        y, indices = np.full(want_y.shape, np.nan), np.full(want_i.shape, -7, np.int64)
        blocks = y.size // threads + 1  # at least one spare thread
        _launch(
            max_pool2d_kernel,
            blocks,
            threads,
            (x, y, indices, k, stride),
            "the grid has more threads than outputs: return at once when idx >= y.size",
        )
        expect(
            not np.isnan(y).any(),
            f"{int(np.isnan(y).sum())} of {y.size} outputs were never written ({what}); "
            "one thread per output: thread idx writes y[n, c, i, j] unflattened from idx",
        )
        expect_close(y, want_y, f"the maxima ({what})", hint)
        expect_close(
            indices,
            want_i,
            f"the indices ({what})",
            hint + "; an index is the flat position h*W + w of "
            "the maximum in its (H, W) input plane, not its place inside the window",
        )
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    y, indices = np.zeros((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 2), np.int64)
    _launch(max_pool2d_kernel, 1, threads, (x, y, indices, 2, 2), "return at once when idx >= y.size")
    expect_close(
        y, F.max_pool2d(tm.tensor(x), 2).numpy(), "the maxima of a float32 input", _POOL_HINTS[_POOL_CASES[0][0]]
    )


EXERCISES = (
    Exercise(
        "6.1",
        "relu_backward",
        "a @cuda.jit kernel: grad_input[i] = grad_output[i] where x[i] > 0, else 0, with a grid-stride loop",
        _grade_relu_backward,
    ),
    Exercise(
        "6.2",
        "max_pool2d_kernel",
        "a @cuda.jit kernel, one thread per output: the maximum of each window and its flat index h*W + w",
        _grade_max_pool2d_kernel,
    ),
)
