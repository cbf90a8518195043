"""Functions that create tensors: ``zeros``, ``ones``, ``full``, ``arange``, ``randn``, ...

Same names and arguments as PyTorch, ``dtype=`` and ``device=`` included (any spelling
:class:`tinymed.device` accepts: ``"cpu"``, ``"cuda"``, ``"numba"``, ...); ``backend=``, the
kernel family's name, is the older spelling of ``device=``, which wins when both are given. Random
tensors are drawn from :mod:`tinymed.random` on the host, so ``tm.manual_seed`` makes them
reproducible on every backend."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinymed import random
from tinymed.dtypes import get_default_dtype
from tinymed.ops.arguments import size_args
from tinymed.ops.operands import to_array
from tinymed.tensor import Tensor


def _make(array: np.ndarray, dtype: Any, requires_grad: bool, backend: Any, device: Any = None) -> Tensor:
    dtype = get_default_dtype() if dtype is None else np.dtype(dtype)
    return Tensor(array.astype(dtype, copy=False), requires_grad=requires_grad, backend=backend, device=device)


def _float_dtype(op: str, dtype: Any) -> Any:
    """``dtype``, checked to be floating: samples of N(0, 1) or U[0, 1) are not integers."""
    if dtype is not None and np.dtype(dtype).kind != "f":
        raise TypeError(f"{op}: dtype must be floating, got {np.dtype(dtype)}")
    return dtype


def zeros(
    *size: Any, dtype: Any = None, requires_grad: bool = False, backend: str = "numpy", device: Any = None
) -> Tensor:
    """A tensor of zeros of shape ``size``."""
    return _make(np.zeros(size_args(size, "zeros")), dtype, requires_grad, backend, device)


def ones(
    *size: Any, dtype: Any = None, requires_grad: bool = False, backend: str = "numpy", device: Any = None
) -> Tensor:
    """A tensor of ones of shape ``size``."""
    return _make(np.ones(size_args(size, "ones")), dtype, requires_grad, backend, device)


def full(
    size: Any,
    fill_value: float,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value`` (dtype inferred from it)."""
    dtype = to_array(fill_value, None).dtype if dtype is None else dtype
    return _make(np.full(size_args((size,), "full"), fill_value), dtype, requires_grad, backend, device)


def arange(
    start: float,
    end: float | None = None,
    step: float = 1,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``; ints give int64."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        dtype = np.int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else get_default_dtype()
    return _make(np.arange(start, end, step), dtype, requires_grad, backend, device)


def linspace(
    start: float,
    end: float,
    steps: int,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    (steps,) = size_args((steps,), "linspace")
    return _make(np.linspace(start, end, steps), dtype, requires_grad, backend, device)


def eye(
    n: int,
    m: int | None = None,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """The identity matrix (n x m)."""
    n, m = size_args((n, n if m is None else m), "eye")
    return _make(np.eye(n, m), dtype, requires_grad, backend, device)


def randn(
    *size: Any,
    generator: random.Generator | None = None,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """Samples from N(0, 1), drawn from ``generator`` (the global one when None)."""
    dtype = _float_dtype("randn", dtype)
    draw = random.generator(generator, "randn").standard_normal(size_args(size, "randn"))
    return _make(draw, dtype, requires_grad, backend, device)


def rand(
    *size: Any,
    generator: random.Generator | None = None,
    dtype: Any = None,
    requires_grad: bool = False,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """Samples from U[0, 1), drawn from ``generator`` (the global one when None)."""
    dtype = _float_dtype("rand", dtype)
    return _make(
        random.generator(generator, "rand").random(size_args(size, "rand")), dtype, requires_grad, backend, device
    )


def randint(
    low: int,
    high: int,
    size: Any = None,
    *,
    generator: random.Generator | None = None,
    dtype: Any = np.int64,
    backend: str = "numpy",
    device: Any = None,
) -> Tensor:
    """Integers drawn uniformly from [low, high) by ``generator`` (the global one when None);
    ``randint(high, size)`` means low = 0."""
    if size is None:
        low, high, size = 0, low, high
    if high <= low:
        raise ValueError(f"randint: high ({high}) must exceed low ({low})")
    draw = random.generator(generator, "randint").integers(low, high, size_args((size,), "randint"))
    return _make(draw, dtype, False, backend, device)


def randperm(
    n: int, *, generator: random.Generator | None = None, backend: str = "numpy", device: Any = None
) -> Tensor:
    """A random permutation of 0..n-1, drawn from ``generator`` (the global one when None)."""
    (n,) = size_args((n,), "randperm")
    return _make(random.generator(generator, "randperm").permutation(n), np.int64, False, backend, device)


def _like(fill: Any, input: Tensor, dtype: Any, requires_grad: bool, device: Any) -> Tensor:
    dtype = input.dtype if dtype is None else dtype
    return _make(fill(input.shape), dtype, requires_grad, input.device, device)


def zeros_like(input: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Zeros with ``input``'s shape, dtype and device."""
    return _like(np.zeros, input, dtype, requires_grad, device)


def ones_like(input: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """Ones with ``input``'s shape, dtype and device."""
    return _like(np.ones, input, dtype, requires_grad, device)


def full_like(
    input: Tensor, fill_value: float, dtype: Any = None, requires_grad: bool = False, device: Any = None
) -> Tensor:
    """``fill_value`` with ``input``'s shape, dtype and device."""
    return _like(lambda shape: np.full(shape, fill_value), input, dtype, requires_grad, device)


def randn_like(input: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """N(0, 1) samples with ``input``'s shape, dtype and device."""
    return _like(
        random.generator().standard_normal,
        input,
        _float_dtype("randn_like", input.dtype if dtype is None else dtype),
        requires_grad,
        device,
    )


def rand_like(input: Tensor, dtype: Any = None, requires_grad: bool = False, device: Any = None) -> Tensor:
    """U[0, 1) samples with ``input``'s shape, dtype and device."""
    return _like(
        random.generator().random,
        input,
        _float_dtype("rand_like", input.dtype if dtype is None else dtype),
        requires_grad,
        device,
    )
