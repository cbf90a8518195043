"""Graders of chapter 3, Pooling and the affine layer.

3.1 ``max_pool2d_forward(x, kernel_size, stride, padding)``: maxima and flat argmax indices
    against ``F.max_pool2d(..., return_indices=True)``, one feature per case (negative values,
    batches, sizes that do not tile, overlapping windows, -inf padding, ties), then dtypes.
3.2 ``max_pool2d_backward(grad_output, indices, input_shape)``: against tinymed's autograd
    through ``F.max_pool2d``, including a pixel that wins several overlapping windows.
3.3 ``linear_backward(x, weight, grad_output)``: the three gradients against tinymed's
    autograd through ``F.linear`` for 2-D, 3-D and 1-D inputs, then :func:`tinymed.gradcheck`
    on a Function whose backward is the student's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck

__all__ = ["EXERCISES"]

_RNG_SEED = 3


def pooling_input(rng: np.random.Generator, case: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random floats (no ties), all negative, or small integers (ties in most windows)."""
    if case == "negative":
        return -1.0 - rng.random(shape)
    if case == "ties":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


# (what, input kind, (N, C, H, W), kernel_size, stride, padding): each case adds one difficulty
_POOL_CASES = [
    ("one 4x4 plane, 2x2 windows", "random", (1, 1, 4, 4), 2, None, 0),
    ("all values negative", "negative", (1, 1, 4, 4), 2, None, 0),
    ("a batch of 2 images with 3 channels", "random", (2, 3, 4, 6), 2, None, 0),
    ("a 5x7 plane, 2x2 windows", "random", (1, 1, 5, 7), 2, None, 0),
    ("3x3 windows with stride 2 (overlapping)", "random", (1, 2, 7, 6), 3, 2, 0),
    ("padding 1 on negative values", "negative", (1, 1, 5, 5), 2, 2, 1),
    ("ties (values 0 and 1 only)", "ties", (2, 2, 6, 6), 3, 2, 1),
]
_POOL_HINTS = {
    "one 4x4 plane, 2x2 windows": "y[i, j] is the largest x in window (i, j)",
    "all values negative": "start each window's running maximum at -inf (or at its first pixel), not at 0",
    "a batch of 2 images with 3 channels": "pool every (n, c) plane on its own: the result is (N, C, OH, OW)",
    "a 5x7 plane, 2x2 windows": "windows that do not fit are dropped: OH = (H + 2P - K) // S + 1",
    "3x3 windows with stride 2 (overlapping)": "window (i, j) starts at (i*S, j*S); the stride is the kernel size "
    "only when stride is None",
    "padding 1 on negative values": "pad with -inf, never 0: a zero from the padding would beat every negative "
    "pixel; indices count positions in the unpadded (H, W) plane",
    "ties (values 0 and 1 only)": "on a tie keep the FIRST maximum in row-major order: replace the running maximum "
    "only when strictly greater",
}


def _grade_max_pool2d_forward(ns: Mapping[str, Any]) -> None:
    max_pool2d_forward = ns["max_pool2d_forward"]
    rng = np.random.default_rng(_RNG_SEED)
    for what, kind, shape, k, stride, padding in _POOL_CASES:
        hint = _POOL_HINTS[what]
        x = pooling_input(rng, kind, shape)
        want_y, want_i = F.max_pool2d(tm.tensor(x), k, stride, padding, return_indices=True)
        result = max_pool2d_forward(x.copy(), k, stride=stride, padding=padding)
        expect(
            isinstance(result, tuple) and len(result) == 2,
            f"return the pair (y, indices), got {type(result).__name__} ({what})",
        )
        y, indices = (np.asarray(r) for r in result)
        expect(
            y.shape == want_y.shape, f"y has shape {y.shape}, expected (N, C, OH, OW) = {want_y.shape} ({what}); {hint}"
        )
        expect_close(y, want_y.numpy(), f"the maxima ({what})", hint)
        expect(indices.shape == want_i.shape, f"indices have shape {indices.shape}, expected {want_i.shape} ({what})")
        expect_close(
            indices,
            want_i.numpy(),
            f"the indices ({what})",
            hint + "; an index is the flat position h*W + w of the maximum in its (H, W) input plane, not its place "
            "inside the window",
        )
    y, indices = max_pool2d_forward(rng.standard_normal((1, 1, 4, 4)).astype(np.float32), 2)
    expect(y.dtype == np.float32, f"a float32 input gave maxima of dtype {y.dtype}; keep the input's dtype")
    expect(indices.dtype == np.int64, f"indices have dtype {indices.dtype}; make them int64, as F.max_pool2d does")


def _grade_max_pool2d_backward(ns: Mapping[str, Any]) -> None:
    max_pool2d_backward = ns["max_pool2d_backward"]
    rng = np.random.default_rng(_RNG_SEED)
    overlapping = rng.standard_normal((1, 1, 7, 7))
    overlapping[0, 0, 2, 2] = 10.0  # inside four 3x3 windows of stride 2, the largest of each
    cases = [
        (
            "one 5x5 plane, 2x2 windows",
            rng.standard_normal((1, 1, 5, 5)),
            2,
            None,
            "dL/dx is zero except at each window's winner, which gets that output's gradient",
        ),
        (
            "a batch of 2 images with 3 channels",
            rng.standard_normal((2, 3, 4, 6)),
            2,
            None,
            "an index counts positions within its own (H, W) plane: route each gradient inside its own (n, c) plane",
        ),
        (
            "a pixel that wins four overlapping windows",
            overlapping,
            3,
            2,
            "a pixel that wins several windows must receive the SUM of their gradients; NumPy's a[idx] += v adds "
            "only once for a repeated index: use np.add.at, or a loop",
        ),
    ]
    for what, x, k, stride, hint in cases:
        xt = tm.tensor(x, requires_grad=True)
        y, indices = F.max_pool2d(xt, k, stride, return_indices=True)
        grad_y = rng.standard_normal(y.shape)
        y.backward(tm.tensor(grad_y))
        got = max_pool2d_backward(grad_y, indices.numpy(), x.shape)
        expect(isinstance(got, np.ndarray), f"return a NumPy array, got {type(got).__name__} ({what})")
        expect(got.shape == x.shape, f"dL/dx has shape {got.shape}, the input is {x.shape} ({what})")
        expect_close(got, np.asarray(xt.grad), f"dL/dx ({what})", hint)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    _, indices = F.max_pool2d(tm.tensor(x), 2, return_indices=True)
    got = max_pool2d_backward(np.ones((1, 1, 2, 2), dtype=np.float32), indices.numpy(), x.shape)
    expect(got.dtype == np.float32, f"a float32 grad_output gave dL/dx of dtype {got.dtype}; keep its dtype")


def _linear_with_backward(backward: Any) -> type[tm.Function]:
    """y = x W^T + b as a Function whose backward is ``backward(x, weight, grad_output)``."""

    class LinearWithYourBackward(tm.Function):
        def forward(self, x, weight, bias):
            self.x, self.weight = x, weight
            return x @ weight.T + bias

        def backward(self, grad):
            return backward(self.x, self.weight, grad)

    return LinearWithYourBackward


def _grade_linear_backward(ns: Mapping[str, Any]) -> None:
    linear_backward = ns["linear_backward"]
    rng = np.random.default_rng(_RNG_SEED)
    hints = (
        "dL/dx = dL/dy @ W, shape (..., in)",
        "dL/dW = dL/dy^T @ x (not x^T @ dL/dy), shape (out, in) like W",
        "dL/db sums dL/dy over every row (a sum, not a mean), shape (out,)",
    )
    for what, leading in [("a batch (N, in)", (4,)), ("a batch of sequences (N, T, in)", (2, 3)), ("one vector", ())]:
        x, w, b = rng.standard_normal((*leading, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
        tensors = [tm.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = F.linear(*tensors)
        grad_y = rng.standard_normal(y.shape)
        y.backward(tm.tensor(grad_y))
        tail = (
            "; every leading axis of x is a row: reshape x to (-1, in) and dL/dy to (-1, out)"
            if leading != (4,)
            else ""
        )
        try:
            result = linear_backward(x, w, grad_y)
        except ValueError as e:  # NumPy's shape errors, from products of arrays that are not matrices
            raise Fail(f"linear_backward raised ValueError on {what}: {e}{tail}") from None
        expect(
            isinstance(result, tuple) and len(result) == 3,
            f"return the tuple (grad_input, grad_weight, grad_bias), got {type(result).__name__}",
        )
        for name, got, t, hint in zip(("dL/dx", "dL/dW", "dL/db"), result, tensors, hints):
            got = np.asarray(got)
            expect(got.shape == t.shape, f"{name} has shape {got.shape}, expected {t.shape} ({what}); {hint}{tail}")
            expect_close(got, np.asarray(t.grad), f"{name} ({what})", hint + tail)
    x, w, b = (tm.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 4), (3, 4), (3,)))
    expect_gradcheck(
        _linear_with_backward(linear_backward).apply, [x, w, b], "a Function whose backward is your linear_backward"
    )


EXERCISES = (
    Exercise(
        "3.1",
        "max_pool2d_forward",
        "max pooling with stride and -inf padding: the maxima and the flat index of each",
        _grade_max_pool2d_forward,
    ),
    Exercise(
        "3.2",
        "max_pool2d_backward",
        "route each output gradient to the pixel its window picked, adding where windows share a winner",
        _grade_max_pool2d_backward,
    ),
    Exercise(
        "3.3",
        "linear_backward",
        "the three gradients of y = x W^T + b for inputs with any leading axes",
        _grade_linear_backward,
    ),
)
