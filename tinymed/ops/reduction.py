"""Reductions: sum, max/min (with their indices), argmax/argmin, the p-norm.

A reduction's backward spreads the gradient back over the elements that were reduced: all of
them for a sum, the winners for a max, each in proportion to its share for a norm. Mean, variance and standard deviation are compositions
of these on the Tensor (:meth:`tinymed.tensor.Tensor.mean`, ``var``, ``std``).
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd import Function
from tinymed.dtypes import int64, is_floating
from tinymed.ops.arguments import dim_to_axis, dims_to_axes

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class Sum(Function):
    """z = (sum of a over ``axis``) / ``divisor`` (1 for a sum, the count for a mean);
    dz/da = 1 / divisor everywhere, so grad is spread back out."""

    def forward(self, a, axis, keepdims, divisor=1):
        self.shape, self.axis, self.keepdims, self.divisor = a.shape, axis, keepdims, divisor
        # PyTorch sums bools and integers into int64. NumPy sums uint8 pixels into uint64, where
        # the next subtraction would wrap around (sum - 500 = 18446744073709551506).
        z = a.sum(axis=axis, keepdims=keepdims, dtype=self.xp.int64 if a.dtype.kind in "biu" else None)
        return z if divisor == 1 else z / self.xp.asarray(divisor, dtype=z.dtype)

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axis else n for i, n in enumerate(self.shape)])
        if self.divisor != 1:
            grad = grad / self.xp.asarray(self.divisor, dtype=grad.dtype)
        return self.xp.broadcast_to(grad, self.shape)


class Extreme(Function):
    """z = max (or min) of a over ``axis``. The gradient is shared evenly among the
    elements that reach the extreme (PyTorch's amax/amin rule for ties)."""

    def forward(self, a, axis, keepdims, kind):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        z = a.max(axis=axis, keepdims=True) if kind == "max" else a.min(axis=axis, keepdims=True)
        self.winners = a == z
        return z if keepdims else z.reshape([n for i, n in enumerate(a.shape) if i not in axis])

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axis else n for i, n in enumerate(self.shape)])
        return grad * self.winners / self.winners.sum(axis=self.axis, keepdims=True)


class Norm(Function):
    """z = (sum over ``axis`` of |a|^p)^(1/p);  dz/da = sign(a) |a|^(p-1) / z^(p-1) (a / z for
    p = 2), taken as 0 where z = 0, as PyTorch does (the norm has no derivative there)."""

    def forward(self, a, p, axis, keepdims):
        self.a, self.p, self.axis, self.keepdims = a, p, axis, keepdims
        self.z = (self.xp.abs(a) ** p).sum(axis=axis, keepdims=True) ** (1 / p)
        return self.z if keepdims else self.z.reshape([n for i, n in enumerate(a.shape) if i not in axis])

    def backward(self, grad):
        xp, a, z, p = self.xp, self.a, self.z, self.p
        if not self.keepdims:
            grad = grad.reshape(z.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            local = xp.sign(a) * xp.abs(a) ** (p - 1) / z ** (p - 1)
        return grad * xp.where(z == 0, 0, local)


def norm(
    input: Tensor,
    p: float | str = "fro",
    dim: int | Sequence[int] | None = None,
    keepdim: bool = False,
    dtype: np.dtype | None = None,
) -> Tensor:
    """The vector p-norm ``(sum |x|^p)^(1/p)`` over ``dim`` (all dims when None): ``p`` a number,
    ``inf`` (max |x|), ``-inf`` (min |x|), 0 (the count of non-zeros) or ``"fro"`` (the 2-norm of
    all the elements reduced, which is the Frobenius norm of a matrix). ``dtype`` casts first."""
    if dtype is not None:
        input = input.type(dtype)
    if not is_floating(input.dtype):
        raise TypeError(f"norm: expected a floating point tensor as input, got dtype {input.dtype}")
    if p == "fro":
        p = 2
    if isinstance(p, str) or isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"norm: p must be a number, inf, -inf or 'fro' (tinymed has no nuclear norm), got {p!r}")
    axes = dims_to_axes(dim, input.ndim, "norm")
    if math.isinf(p):
        magnitude = input.abs()
        return magnitude.amax(axes, keepdim) if p > 0 else magnitude.amin(axes, keepdim)
    if p == 0:
        return (input != 0).sum(axes, keepdim).type(input.dtype)
    return Norm.apply(input, p=float(p), axis=axes, keepdims=keepdim)


class TakeAlongDim(Function):
    """z = a[..., index, ...] along ``axis`` (one picked element per slice);
    the gradient goes back to the picked element only."""

    def forward(self, a, index, axis):
        self.shape, self.index, self.axis = a.shape, index, axis
        return self.xp.take_along_axis(a, index, axis=axis)

    def backward(self, grad):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=grad.dtype)
        xp.put_along_axis(out, self.index, grad, axis=self.axis)
        return out


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def extreme(input: Tensor, dim: int | None, keepdim: bool, kind: str) -> Any:
    """``input.max(dim)`` or ``.min(dim)`` (``kind``): the value over everything when ``dim`` is
    None, else the named tuple ``(values, indices)`` along ``dim``, as PyTorch."""
    if dim is None:
        return Extreme.apply(input, axis=tuple(range(input.ndim)), keepdims=False, kind=kind)
    if input.ndim == 0:
        dim_to_axis(dim, 0, kind)
        return MaxResult(input, input.wrap(input.device.backend.xp.zeros((), dtype=int64), input.device))
    axis = dim_to_axis(dim, input.ndim, kind)
    indices = arg_extreme(input, axis, True, "arg" + kind)
    values = TakeAlongDim.apply(input, index=indices.array, axis=axis)
    if not keepdim:
        values, indices = values.squeeze(axis), indices.squeeze(axis)
    return MaxResult(values, indices)


def arg_extreme(input: Tensor, dim: int | None, keepdim: bool, kind: str) -> Tensor:
    """``input.argmax(dim)`` or ``.argmin(dim)`` (``kind``): int64 indices, no gradient; of the
    flattened tensor when ``dim`` is None."""
    xp, device = input.device.backend.xp, input.device
    fn = xp.argmax if kind == "argmax" else xp.argmin
    if dim is None:
        return input.wrap(xp.asarray(fn(input.array.reshape(-1)).astype(int64)), device)
    axis = dim_to_axis(dim, input.ndim, kind)
    if input.ndim == 0:
        return input.wrap(xp.zeros((), dtype=int64), device)
    index = fn(input.array, axis=axis)
    if keepdim:
        index = xp.expand_dims(index, axis)
    return input.wrap(xp.asarray(index.astype(int64)), device)
