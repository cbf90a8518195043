"""Shape and selection: reshape, permute, expand, indexing, ``where``, ``cat``, ``stack``.

These move elements without computing new values, so each backward puts the gradient back
where its elements came from: reshaped or permuted back, summed over an expansion (by the
engine), scattered into the indexed positions, split among the joined inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd import Function, TensorBase
from tinymed.dtypes import bool_
from tinymed.ops.arguments import dim_to_axis
from tinymed.ops.operands import binary_operands, broadcast_shape, operand, promoted_dtype

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class Reshape(Function):
    """z = a viewed with another shape;  the gradient is reshaped back."""

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    """z = a with its axes reordered;  the gradient takes the inverse order."""

    def forward(self, a, axes):
        self.inverse = tuple(int(i) for i in np.argsort(axes))
        return a.transpose(axes)

    def backward(self, grad):
        return grad.transpose(self.inverse)


class Expand(Function):
    """z = a broadcast to ``shape`` (no copy);  the gradient, of z's shape, is summed back to
    a's shape by the engine."""

    def forward(self, a, shape):
        return self.xp.broadcast_to(a, shape)

    def backward(self, grad):
        return grad


class GetItem(Function):
    """z = a[index];  the gradient lands where the elements were taken from. Integer-array
    indexing may pick one element twice, so those gradients are added, not overwritten."""

    def forward(self, a, index):
        self.shape, self.index = a.shape, index
        return a[index]

    def backward(self, grad):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=grad.dtype)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if any(hasattr(p, "dtype") and p.dtype.kind in "iu" for p in parts):
            xp.add.at(out, self.index, grad)
        else:
            out[self.index] = grad
        return out


def index_arrays(index: Any, like: Tensor) -> Any:
    """``index`` with the tensors and lists inside it replaced by arrays on ``like``'s device
    (integer and boolean indexing)."""
    if isinstance(index, tuple):
        return tuple(index_arrays(i, like) for i in index)
    if isinstance(index, TensorBase):
        return index.data
    if isinstance(index, list):
        return like.device.backend.asarray(np.asarray(index))
    return index


class Where(Function):
    """z = a where cond else b;  the gradient flows to whichever side was chosen."""

    def forward(self, cond, a, b):
        self.cond = cond
        return self.xp.where(cond, a, b)

    def backward(self, grad):
        zero = self.xp.zeros((), dtype=grad.dtype)
        return None, self.xp.where(self.cond, grad, zero), self.xp.where(self.cond, zero, grad)


def where(condition: Tensor, input: Any, other: Any) -> Tensor:
    """Element-wise choice: ``input`` where ``condition`` is True, ``other`` elsewhere.
    ``input`` and ``other`` may be tensors or numbers; the result dtype is promoted as in
    PyTorch (``where(c, x_float32, 0)`` is float32)."""
    like = next((t for t in (input, other, condition) if isinstance(t, TensorBase)), None)
    if like is None:
        raise TypeError("where: at least one of condition, input and other must be a tensor")
    cond = operand(condition, like, "where")
    if cond.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    if like is cond:  # two numbers: each becomes a 0-d tensor of its own kind
        input = operand(input, cond, "where")
    a, b = binary_operands("where", input, other)
    broadcast_shape("where", cond, a, b, names=("condition", "input", "other"))
    return Where.apply(cond, a, b)


class Concatenate(Function):
    """z = the inputs joined along ``axis``;  each input gets its slice of the gradient."""

    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = np.cumsum([0] + [a.shape[axis] for a in arrays])
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        index = [slice(None)] * grad.ndim
        parts = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            index[self.axis] = slice(int(lo), int(hi))
            parts.append(grad[tuple(index)])
        return tuple(parts)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (dtypes promoted as in PyTorch)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expects a non-empty list of tensors")
    ndim = tensors[0].ndim
    axis = dim_to_axis(dim, ndim, "cat")
    for t in tensors:
        if (
            t.ndim != ndim
            or t.shape[:axis] + t.shape[axis + 1 :] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1 :]
        ):
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"cat: tensors must match in every dim but {dim}, got {shapes}")
    dtype = promoted_dtype(*tensors)
    return Concatenate.apply(*[t.type(dtype) for t in tensors], axis=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expects a non-empty list of tensors")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors must have the same shape, got {', '.join(str(t.shape) for t in tensors)}")
    axis = dim_to_axis(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], axis)
