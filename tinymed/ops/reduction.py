"""Reductions: sum, max/min (with their indices), argmax/argmin.

A reduction's backward spreads the gradient back over the elements that were reduced: all of
them for a sum, the winners for a max. Mean, variance and standard deviation are compositions
of these on the Tensor (:meth:`tinymed.tensor.Tensor.mean`, ``var``, ``std``).
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any

from tinymed.autograd import Function
from tinymed.dtypes import int64
from tinymed.ops.arguments import dim_to_axis

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class Sum(Function):
    """z = sum of a over ``axis``;  dz/da = 1 everywhere, so grad is spread back out."""

    def forward(self, a, axis, keepdims):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axis else n for i, n in enumerate(self.shape)])
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
    values = TakeAlongDim.apply(input, index=indices.data, axis=axis)
    if not keepdim:
        values, indices = values.squeeze(axis), indices.squeeze(axis)
    return MaxResult(values, indices)


def arg_extreme(input: Tensor, dim: int | None, keepdim: bool, kind: str) -> Tensor:
    """``input.argmax(dim)`` or ``.argmin(dim)`` (``kind``): int64 indices, no gradient; of the
    flattened tensor when ``dim`` is None."""
    xp, device = input.device.backend.xp, input.device
    fn = xp.argmax if kind == "argmax" else xp.argmin
    if dim is None:
        return input.wrap(xp.asarray(fn(input.data.reshape(-1)).astype(int64)), device)
    axis = dim_to_axis(dim, input.ndim, kind)
    if input.ndim == 0:
        return input.wrap(xp.zeros((), dtype=int64), device)
    index = fn(input.data, axis=axis)
    if keepdim:
        index = xp.expand_dims(index, axis)
    return input.wrap(xp.asarray(index.astype(int64)), device)
