"""How close a GPU backend's result is to the NumPy reference, and how close it must be.

A fixed tolerance cannot judge float32 kernels: how much error float32 arithmetic leaves
depends on the problem. An attention score is a sum of D products times ``scale``, and
its rounding error is then multiplied through ``exp``; at head size 70 and scale 1.7 the
NumPy reference itself, run in float32, misses rtol 1e-4 on a third of random draws. So a
backend is judged against what float32 can deliver *on that input*:

* the exact answer is the reference run in float64 on the same (float32-exact) inputs;
* the error of a result is the largest difference from it, relative to its largest value
  (:func:`relative_error`), so that tiny values near cancelling sums do not dominate;
* the reference run in float32 has an error of its own on this input; a backend may have
  :data:`FACTOR` times that much (it adds in another order, and kernels add long sums one
  term at a time where BLAS adds in blocks), and never less than :data:`FACTOR` units in
  the last place of the largest value (:func:`allowed_error`).

A float64 backend has no wider reference to be compared with; the problem's conditioning,
measured the same way in float32, is scaled down by the ratio of the two epsilons.
"""

from __future__ import annotations

import numpy as np

from tinymed.backends import numpy_ref

FACTOR = 8.0  # how many times the float32 reference's own error a backend may have
_EPS32 = float(np.finfo(np.float32).eps)


def in_dtype(args: tuple, dtype: np.dtype) -> tuple:
    """``args`` with every float array in ``dtype``; the rest (indices, sizes, flags) as they are."""
    return tuple(a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args)


def _run_reference(primitive: str, args: tuple) -> tuple[np.ndarray, ...]:
    """The reference's ``primitive(*args)``, always as a tuple of outputs."""
    result = getattr(numpy_ref, primitive)(*args)
    return result if isinstance(result, tuple) else (result,)


def reference(primitive: str, *args) -> tuple[np.ndarray, ...]:
    """The reference's ``primitive(*args)`` computed with every float array widened to float64:
    the exact answer, as nearly as float64 holds it. Always a tuple of outputs."""
    return _run_reference(primitive, in_dtype(args, np.dtype(np.float64)))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max|expected|`` over the finite values of ``expected``.

    NaN and infinite values must sit in the same places with the same values, else the error
    is ``inf``; an integer result (pooling's indices) must be equal. An all-zero ``expected``
    is compared absolutely.
    """
    if actual.shape != expected.shape:
        return float("inf")
    if expected.dtype.kind != "f":
        return 0.0 if np.array_equal(actual, expected) else float("inf")
    actual, expected = actual.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(expected)
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    largest = float(np.abs(expected[finite]).max())
    difference = np.abs(actual[finite] - expected[finite]).max()
    return float(difference / largest) if largest > 0 else float(difference)


def allowed_error(primitive: str, dtype: np.dtype, *args) -> tuple[float, ...]:
    """For each output of ``primitive(*args)``: the :func:`relative_error` a backend computing
    in ``dtype`` may have, ``FACTOR * max(e32, eps32) * eps(dtype) / eps32`` with ``e32`` the
    error of the reference itself run in float32 on the same inputs."""
    exact = reference(primitive, *args)
    float32 = _run_reference(primitive, in_dtype(args, np.dtype(np.float32)))
    scale = float(np.finfo(dtype).eps) / _EPS32
    return tuple(FACTOR * max(relative_error(r, e), _EPS32) * scale for r, e in zip(float32, exact))
