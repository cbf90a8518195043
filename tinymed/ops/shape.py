"""Shape and selection: reshape, permute, expand, repeat, indexing, ``where``, ``triu``/``tril``,
``cat``, ``stack``.

These move elements without computing new values, so each backward puts the gradient back
where its elements came from: reshaped or permuted back, summed over an expansion (by the
engine) or over the copies of a repeat, scattered into the indexed positions, masked like the
kept triangle, split among the joined inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd import Function, TensorBase
from tinymed.dtypes import bool_
from tinymed.ops.arguments import dim_to_axis, shape_args
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


class Repeat(Function):
    """z = a tiled ``repeats[i]`` times along dim i (new leading dims when ``repeats`` is longer
    than a's shape);  each element of a appears in every copy, so its gradient is the sum over
    the copies."""

    def forward(self, a, repeats):
        self.shape = a.shape
        self.full = (1,) * (len(repeats) - a.ndim) + a.shape
        self.repeats = repeats
        return self.xp.tile(a.reshape(self.full), repeats)

    def backward(self, grad):
        # Dim i of z is (copy, position) = (repeats[i], full[i]); sum over the copies.
        split = [n for pair in zip(self.repeats, self.full) for n in pair]
        return grad.reshape(split).sum(axis=tuple(range(0, len(split), 2))).reshape(self.shape)


def repeat(input: Tensor, *sizes: Any) -> Tensor:
    """``input`` tiled ``sizes[i]`` times along dim i (``x.repeat(2, 1)``); ``sizes`` may have
    more entries than ``input`` has dims, which adds leading dims, never fewer (PyTorch's rule)."""
    sizes = shape_args(sizes, "repeat")
    if len(sizes) < input.ndim:
        raise ValueError(
            f"repeat: number of repeat dims ({len(sizes)}) can not be smaller than the number of dims of "
            f"the tensor (shape {input.shape})"
        )
    if any(n < 0 for n in sizes):
        raise ValueError(f"repeat: repeats can not be negative, got {sizes}")
    return Repeat.apply(input, repeats=sizes)


class Triangle(Function):
    """z = the upper (``upper``) or lower triangle of a's last two dims from diagonal ``diagonal``
    on, zero elsewhere;  the gradient keeps the same triangle."""

    def forward(self, a, diagonal, upper):
        self.diagonal, self.upper = diagonal, upper
        return self.keep(a)

    def keep(self, a):
        return self.xp.triu(a, self.diagonal) if self.upper else self.xp.tril(a, self.diagonal)

    def backward(self, grad):
        return self.keep(grad)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dims (``j - i >= diagonal``), zero below."""
    if input.ndim < 2:
        raise ValueError(f"triu: input tensor must have at least 2 dimensions, got shape {input.shape}")
    return Triangle.apply(input, diagonal=int(diagonal), upper=True)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dims (``j - i <= diagonal``), zero above."""
    if input.ndim < 2:
        raise ValueError(f"tril: input tensor must have at least 2 dimensions, got shape {input.shape}")
    return Triangle.apply(input, diagonal=int(diagonal), upper=False)


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
        return index.array
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
        self.bounds = tuple(int(b) for b in np.cumsum([0] + [a.shape[axis] for a in arrays]))
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        index = [slice(None)] * grad.ndim
        parts = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            index[self.axis] = slice(lo, hi)
            parts.append(grad[tuple(index)])
        return tuple(parts)


def _tensor_list(op: str, tensors: Any) -> list[Tensor]:
    """``tensors`` as a non-empty list of tensors, or an error naming the first that is not
    one (a lone tensor is refused, as in PyTorch: iterating it would split its first dim)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}: tensors must be a list or tuple of Tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError(f"{op}: expects a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, TensorBase):
            raise TypeError(f"{op}: tensors[{i}] must be a Tensor, got {type(t).__name__}")
    return list(tensors)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (dtypes promoted as in PyTorch)."""
    tensors = _tensor_list("cat", tensors)
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
    tensors = _tensor_list("stack", tensors)
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors must have the same shape, got {', '.join(str(t.shape) for t in tensors)}")
    axis = dim_to_axis(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], axis)
