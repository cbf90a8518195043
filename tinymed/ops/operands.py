"""Operands: what an op turns its arguments into before computing.

Python data becomes arrays by PyTorch's dtype rules (:func:`to_array`); a number or array met in
``x + 2`` becomes a tensor on ``x``'s device (:func:`operand`); two operands are promoted to one
dtype and their shapes checked to broadcast (:func:`binary_operands`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd import TensorBase
from tinymed.dtypes import CATEGORY, get_default_dtype, int64, is_floating, result_type

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


def to_array(data: Any, dtype: Any) -> np.ndarray:
    """A NumPy array from Python data with PyTorch's dtype rules: Python floats become the
    default dtype (float32), ints int64, bools bool; arrays and tensors keep their dtype (a GPU
    array is copied to the host). ``dtype``, when given, overrides, converting from the values
    as given (``0.8`` becomes float64 0.8, not float32 0.8 widened)."""
    if isinstance(data, TensorBase):
        array = data.device.backend.to_numpy(data.array)
    elif isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
    elif hasattr(data, "__cuda_array_interface__") or type(data).__module__.startswith("cupy"):
        array = data.get()
    else:
        try:
            array = np.asarray(data)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"tensor: cannot build a tensor from this {type(data).__name__}: {error}") from None
        # With a dtype given, the values are converted once, below, from Python's own float64.
        if dtype is None and array.dtype.kind == "f":
            array = array.astype(get_default_dtype())
        elif dtype is None and array.dtype.kind in "iu":
            array = array.astype(int64)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor: cannot build a tensor from data of dtype {array.dtype}")
    return array.astype(np.dtype(dtype), copy=False) if dtype is not None else array


def constant(array: Any, like: Tensor) -> Tensor:
    """A host array (or a number) as a gradient-free tensor on ``like``'s device."""
    return like.wrap(like.device.backend.asarray(np.asarray(array)), like.device)


def is_operand(value: Any) -> bool:
    """Whether ``value`` can meet a tensor in an element-wise op."""
    return isinstance(value, (TensorBase, int, float, np.ndarray, np.generic, list, tuple))


def operand(value: Any, like: Tensor, op: str) -> Tensor:
    """Turn a Python number or array met in ``like <op> value`` into a tensor on ``like``'s
    device. A number takes ``like``'s dtype when it fits its category (``x * 2`` keeps
    float32, ``int_x + 1`` stays int), else the default of its own (``int_x * 0.5`` is float32)."""
    if isinstance(value, TensorBase):
        return value
    if isinstance(value, (int, float)):
        fits = isinstance(value, bool) or CATEGORY[like.dtype.kind] >= (1 if isinstance(value, int) else 2)
        dtype = like.dtype if fits else (get_default_dtype() if isinstance(value, float) else int64)
        return constant(np.asarray(value, dtype=dtype), like)
    if not is_operand(value):
        raise TypeError(f"{op}: cannot combine a tensor with a {type(value).__name__}")
    return constant(to_array(value, None), like)


def broadcast_shape(op: str, *tensors: Any, names: Sequence[str] = ("input", "other")) -> tuple[int, ...]:
    """The shape ``tensors`` (or arrays) broadcast to, or a ValueError naming ``op`` and every shape."""
    try:
        return tuple(np.broadcast_shapes(*(t.shape for t in tensors)))
    except ValueError:
        shapes = ", ".join(f"{name} {t.shape}" for name, t in zip(names, tensors))
        raise ValueError(f"{op}: shapes do not broadcast: {shapes}") from None


def promoted_dtype(*tensors: Tensor) -> np.dtype:
    """The dtype of an op on ``tensors`` by PyTorch's rule (:func:`tinymed.dtypes.result_type`)."""
    return result_type([t.dtype for t in tensors if t.ndim > 0], [t.dtype for t in tensors if t.ndim == 0])


def binary_operands(op: str, a: Any, b: Any, floating: bool = False) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` as tensors of one dtype (PyTorch's promotion; ``floating`` makes integer
    results float, as true division does), after checking that their shapes broadcast."""
    like = a if isinstance(a, TensorBase) else b
    a, b = operand(a, like, op), operand(b, like, op)
    broadcast_shape(op, a, b)
    dtype = a.dtype if a.dtype == b.dtype else promoted_dtype(a, b)
    if floating and not is_floating(dtype):
        dtype = get_default_dtype()
    return a.type(dtype), b.type(dtype)
