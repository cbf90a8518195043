"""Finite-difference gradient checking: is backward the derivative of forward?

For a function f of some tensors, pick a fixed random vector v of f's shape and look at the
scalar L = <v, f(inputs)>. Autograd gives dL/dx for every input element in one backward
pass; the central difference (L(x + eps) - L(x - eps)) / (2 eps) gives the same number
from forward passes alone, with an error of order eps^2. In float64 with eps = 1e-6 the two
agree to about 1e-8 unless backward is wrong. Projecting on a random v checks every
element of the gradient without building the whole Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinymed import autograd
from tinymed.autograd import enable_grad, no_grad
from tinymed.dtypes import float64
from tinymed.tensor import Tensor


class GradcheckError(AssertionError):
    """Autograd and finite differences disagree; the message names the worst element."""


def _outputs(result: Any) -> tuple[Tensor, ...]:
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    return tuple(o for o in outputs if isinstance(o, Tensor) and o.dtype.kind == "f")


def _central_differences(t: Tensor, objective: Callable[[], float], eps: float) -> np.ndarray:
    """d objective / d t, element by element: (L(t + eps e_k) - L(t - eps e_k)) / (2 eps).

    The perturbations go into a contiguous copy of ``t.array`` (so a flat view writes
    through, even for a 0-d or transposed tensor); the caller's array is put back after."""
    original_data = t.array
    t.array = original_data.copy()
    flat = t.array.reshape(-1)
    numeric = np.empty(flat.size)
    try:
        for k in range(flat.size):
            value = flat[k].copy()
            flat[k] = value + eps
            plus = objective()
            flat[k] = value - eps
            minus = objective()
            flat[k] = value
            numeric[k] = (plus - minus) / (2 * eps)
    finally:
        t.array = original_data
    return numeric.reshape(t.shape)


def gradcheck(
    fn: Callable[..., Any],
    inputs: Tensor | Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s gradients against central differences, in float64.

    ``inputs`` are passed to ``fn`` as positional arguments; every tensor among them with
    ``requires_grad=True`` is checked (they must be float64). Element ``i`` passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``. Returns True, or raises
    :class:`GradcheckError` naming the input, the worst element's index and both values.
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [(i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input tensor has requires_grad=True")
    for i, t in checked:
        if t.dtype != float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {t.dtype}; finite differences need float64 (use .double())"
            )

    rng = np.random.default_rng(seed)
    with enable_grad():  # gradcheck may be called inside a no_grad block
        outputs = _outputs(fn(*inputs))
        if not outputs:
            raise ValueError("gradcheck: fn returned no floating-point tensor")
        projections = [Tensor.wrap(o.device.backend.asarray(rng.standard_normal(o.shape)), o.device) for o in outputs]
        projected = sum((o * v).sum() for o, v in zip(outputs, projections))
    grads = [None] * len(checked)
    if projected.requires_grad:  # else no output depends on the inputs: every gradient is 0
        grads = autograd.grad(projected, [t for _, t in checked], allow_unused=True)
    analytic = [np.zeros(t.shape) if g is None else g.numpy() for (_, t), g in zip(checked, grads)]

    def objective() -> float:
        with no_grad():
            return float(
                sum(
                    (o.numpy().astype(np.float64) * v.numpy()).sum() for o, v in zip(_outputs(fn(*inputs)), projections)
                )
            )

    for (position, t), exact in zip(checked, analytic):
        numeric = _central_differences(t, objective, eps)
        excess = np.abs(exact - numeric) - (atol + rtol * np.abs(numeric))
        if np.any(excess > 0) or not np.all(np.isfinite(exact)):
            worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf))), t.shape)
            raise GradcheckError(
                f"gradcheck: gradient of input {position} (shape {t.shape}) is wrong at index "
                f"{tuple(int(i) for i in worst)}: autograd {exact[worst]:.10g}, finite difference "
                f"{numeric[worst]:.10g} (atol {atol}, rtol {rtol}, eps {eps})"
            )
    return True
