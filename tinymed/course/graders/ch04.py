"""Graders of chapter 4, Gradient checking.

4.1 ``numerical_gradient(f, x, eps)``: on a cubic, whose central difference is known exactly
    for any step (``((x+h)^3 - (x-h)^3) / 2h = 3x^2 + h^2``), so a forward difference, an
    ignored ``eps`` or a wrong divisor each give a different, recognisable number; then 0-d and
    3-d inputs, a transposed (non-contiguous) input, and ``x`` left as it was.
4.2 ``Hypot``, a tinymed ``Function`` of two tensors: values against ``np.hypot`` (at 1e200
    too), one gradient per input, :func:`tinymed.gradcheck`, a finite gradient at a = b = 0,
    and dtypes kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import tinymed as tm
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck

__all__ = ["EXERCISES"]

_RNG_SEED = 4


def _sum_of_cubes(x: np.ndarray) -> float:
    return float(np.sum(x**3))


def _gradient_of(numerical_gradient: Callable[..., Any], f: Callable[[np.ndarray], float], x: np.ndarray, **kw: Any):
    """The student's gradient as a float array of x's shape, failing politely when it is not one."""
    got = numerical_gradient(f, x, **kw)
    try:
        got = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"numerical_gradient must return an array of numbers, got {type(got).__name__}") from None
    expect(
        got.shape == x.shape,
        f"numerical_gradient returned shape {got.shape} for x of shape {x.shape}; one entry per element",
    )
    return got


def _grade_numerical_gradient(ns: Mapping[str, Any]) -> None:
    numerical_gradient = ns["numerical_gradient"]
    rng = np.random.default_rng(_RNG_SEED)
    x = rng.standard_normal((2, 3))
    before = x.copy()
    h = 0.5  # large on purpose: each wrong formula then gives a different number
    got = _gradient_of(numerical_gradient, _sum_of_cubes, x, eps=h)
    expect(
        np.array_equal(x, before),
        "x changed during numerical_gradient: after perturbing an element, put its original value back",
    )
    central, forward = 3 * before**2 + h**2, 3 * before**2 + 3 * before * h + h**2
    expect(
        not np.allclose(got, 3 * before**2, rtol=1e-6, atol=1e-5),
        "called with eps=0.5 your differences are those of a tiny step: use the eps you are given",
    )
    expect(
        not np.allclose(got, forward),
        "that is the forward difference (f(x+h) - f(x))/h, whose error is O(h); use the central difference "
        "(f(x+h) - f(x-h))/(2h), whose error is O(h^2)",
    )
    expect(
        not np.allclose(got, 2 * central),
        "divide the difference by 2*eps (the two points are 2*eps apart), not by eps",
    )
    expect_close(
        got,
        central,
        "central differences of sum(x**3) with eps=0.5",
        "(f(x + eps e_i) - f(x - eps e_i)) / (2 eps), element by element",
        rtol=1e-9,
    )
    for what, shape in [("a 0-d array", ()), ("a 3-d array", (2, 2, 3))]:
        x = rng.standard_normal(shape)
        got = _gradient_of(numerical_gradient, _sum_of_cubes, x)
        expect_close(
            got,
            3 * x**2,
            f"the gradient of sum(x**3) at {what}",
            "np.ndindex(x.shape) visits every index of any shape",
            rtol=1e-6,
            atol=1e-7,
        )
    base = rng.standard_normal((3, 4))
    x = base.T  # a view whose memory is in the other order
    weights = rng.standard_normal(x.shape)
    got = _gradient_of(numerical_gradient, lambda t: float(np.sum(weights * np.sin(t))), x)
    expect_close(
        got,
        weights * np.cos(x),
        "the gradient at a transposed (non-contiguous) x",
        "x.reshape(-1) or x.ravel() of a non-contiguous array is a copy, and perturbing the copy leaves x (and f) "
        "unchanged; index x itself, e.g. with np.ndindex(x.shape)",
        rtol=1e-6,
        atol=1e-7,
    )
    expect(np.array_equal(base.T, x), "x changed during numerical_gradient: put each perturbed element back")


def _grade_hypot(ns: Mapping[str, Any]) -> None:
    Hypot = ns["Hypot"]
    expect(
        isinstance(Hypot, type) and issubclass(Hypot, tm.Function), "Hypot must be a class deriving from tm.Function"
    )
    rng = np.random.default_rng(_RNG_SEED)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    r = Hypot.apply(tm.tensor(a), tm.tensor(b))
    expect(isinstance(r, tm.Tensor), f"Hypot.apply must return a Tensor, got {type(r).__name__}")
    expect_close(r.numpy(), np.hypot(a, b), "Hypot values", "r = sqrt(a^2 + b^2)")
    big = Hypot.apply(tm.tensor(np.array([1e200, 3.0])), tm.tensor(np.array([1e200, 4.0]))).numpy()
    expect(
        bool(np.all(np.isfinite(big))),
        f"Hypot(1e200, 1e200) gave {big[0]}: a*a overflows to inf although r is about 1.4e200; use xp.hypot(a, b)",
    )
    expect_close(big, [np.hypot(1e200, 1e200), 5.0], "Hypot at (1e200, 1e200) and (3, 4)", "r = sqrt(a^2 + b^2)")
    at, bt = (tm.tensor(v, requires_grad=True) for v in (a, b))
    try:
        Hypot.apply(at, bt).sum().backward()
    except RuntimeError as e:
        raise Fail(f"backward must return one gradient per input, as a tuple (grad_a, grad_b): {e}") from None
    expect(at.grad is not None and bt.grad is not None, "backward must return a gradient for a AND for b")
    expect_gradcheck(Hypot.apply, [at, bt], "Hypot", "dr/da = a / r and dr/db = b / r, each times grad_output")
    zero = [tm.tensor(np.zeros(2), requires_grad=True) for _ in range(2)]
    Hypot.apply(*zero).sum().backward()
    grads = [np.asarray(t.grad, dtype=np.float64) for t in zero]
    expect(
        all(np.all(np.isfinite(g)) for g in grads),
        f"at a = b = 0 your gradients are {[g.tolist() for g in grads]}: a / r is 0/0 = nan there; return 0 where "
        "r == 0 (for example divide by np.where(r > 0, r, 1))",
    )
    expect_close(np.concatenate(grads), np.zeros(4), "the gradient at a = b = 0", "return 0 where r == 0")
    a32, b32 = (tm.randn(2, 3, dtype=tm.float32) for _ in range(2))
    r32 = Hypot.apply(a32, b32)
    expect(
        r32.dtype == tm.float32 and r32.shape == a32.shape,
        f"float32 inputs of shape {a32.shape} gave {r32.dtype} of shape {r32.shape}; keep the inputs' shape and dtype",
    )


EXERCISES = (
    Exercise(
        "4.1",
        "numerical_gradient",
        "central differences of a scalar function, element by element, leaving x as it was",
        _grade_numerical_gradient,
    ),
    Exercise(
        "4.2",
        "Hypot",
        "r = sqrt(a^2 + b^2) as a tm.Function with its backward, safe at 1e200 and at 0",
        _grade_hypot,
    ),
)
