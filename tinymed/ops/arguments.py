"""The argument checks the ops share: tensors, parameters, dims, pairs, image geometry.

Each check raises a ``TypeError``/``ValueError`` that names the op, the argument and the shapes
involved, and returns the argument in the form the op computes with (a dim as a non-negative
axis, ``2`` as ``(2, 2)``, ...).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd import TensorBase, same_device
from tinymed.dtypes import is_floating

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


def float_tensor(op: str, name: str, value: Any, like: Tensor | None = None) -> Tensor:
    """Check that ``value`` is a floating-point Tensor (with ``like``'s dtype and device)."""
    if not isinstance(value, TensorBase):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(value).__name__}")
    if not is_floating(value.dtype):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {value.dtype}")
    if like is not None and value is not like:
        if value.dtype != like.dtype:
            raise TypeError(f"{op}: {name} has dtype {value.dtype} but input has dtype {like.dtype}")
        same_device(op, (like, value))
    return value


def parameter(op: str, name: str, value: Any, like: Tensor, shape: tuple[int, ...]) -> Tensor | None:
    """``None``, or a float tensor of exactly ``shape`` matching ``like`` (weights, biases)."""
    if value is None:
        return None
    float_tensor(op, name, value, like)
    if value.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {value.shape} (input shape {like.shape})")
    return value


def pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, as PyTorch accepts for stride/padding/kernel_size/dilation."""
    both = (
        (value, value)
        if isinstance(value, (int, np.integer))
        else tuple(value)
        if isinstance(value, (tuple, list))
        else ()
    )
    if len(both) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in both):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(both) < minimum:
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {rule}, got {value!r}")
    return int(both[0]), int(both[1])


def only_default(op: str, name: str, value: Any, default: Any) -> None:
    """Refuse a PyTorch option tinymed does not implement, unless it has its default value."""
    if value != default:
        raise ValueError(f"{op}: only {name}={default!r} is supported, got {name}={value!r}")


def image(op: str, input: Tensor) -> None:
    """Check for a batched (N, C, H, W) or unbatched (C, H, W) image."""
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {input.shape}")


def window_fits(
    op: str, size: Sequence[int], kernel: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> None:
    """A window of ``dilation * (kernel - 1) + 1`` pixels must fit in the padded input."""
    for axis, n, k, p, d in zip("HW", size, kernel, padding, dilation):
        span = d * (k - 1) + 1
        if span > n + 2 * p:
            raise ValueError(
                f"{op}: kernel {tuple(kernel)} with dilation {tuple(dilation)} spans {span} pixels along {axis}, "
                f"more than the padded input ({n} + 2*{p} = {n + 2 * p}; input size {tuple(size)}, padding {tuple(padding)})"
            )


def dim_to_axis(dim: int, ndim: int, op: str) -> int:
    """``dim`` (negative counts from the end) as a non-negative axis of an ``ndim``-dim tensor.
    A 0-d tensor accepts dim 0 or -1, as in PyTorch."""
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims")
    return int(dim) % max(ndim, 1)


def dims_to_axes(dim: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    """``dim`` (None for all, one int, or several) as sorted non-negative axes. A 0-d tensor
    accepts dim 0 or -1, as in PyTorch, and has no axis to reduce."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = tuple(sorted({dim_to_axis(d, ndim, op) for d in dims}))
    return axes if ndim > 0 else ()


def shape_args(shape: tuple, op: str, what: str = "size") -> tuple[int, ...]:
    """Accept both ``reshape(2, 3)`` and ``reshape((2, 3))``, as PyTorch does. Every entry
    must be an integer (anything with ``__index__``): a float such as 3.5 is refused, where
    ``int()`` would quietly truncate it to 3."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    for i, s in enumerate(shape):
        if not hasattr(type(s), "__index__"):
            raise TypeError(f"{op}: {what}[{i}] must be an int, got {type(s).__name__} {s!r} (in {tuple(shape)})")
    return tuple(operator.index(s) for s in shape)


def size_args(size: tuple, op: str) -> tuple[int, ...]:
    """The sizes of a tensor to create (as :func:`shape_args`), each >= 0."""
    shape = shape_args(size, op)
    if any(n < 0 for n in shape):
        raise ValueError(f"{op}: sizes must be >= 0, got {shape}")
    return shape


def resolve_shape(shape: tuple[int, ...], source: tuple[int, ...], op: str) -> tuple[int, ...]:
    """``shape`` with its one -1 replaced by what makes the element count match ``source``."""
    numel = math.prod(source)
    known = math.prod(n for n in shape if n != -1)
    unknown = [i for i, n in enumerate(shape) if n == -1]
    if len(unknown) > 1:
        raise ValueError(f"{op}: only one dim can be -1 (inferred), got {shape}")
    if any(n < -1 for n in shape) or (unknown and (known == 0 or numel % known)) or (not unknown and known != numel):
        raise ValueError(f"{op}: a tensor of shape {source} ({numel} elements) does not fit shape {shape}")
    if unknown:
        shape = shape[: unknown[0]] + (numel // known,) + shape[unknown[0] + 1 :]
    return shape
