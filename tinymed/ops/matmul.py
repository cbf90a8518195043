"""The matrix product ``a @ b``, batched and broadcast over the leading dims (``matmul``, ``bmm``).

This is NumPy's/PyTorch's ``@`` on the backend's array module; the affine layer's own GEMM
kernel, with the bias fused in, is :func:`tinymed.ops.linear.linear`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinymed.autograd import Function

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class MatMul(Function):
    """z = a @ b (batched and broadcast over leading dims);
    dz/da = grad @ b^T, dz/db = a^T @ grad (the engine sums them over broadcast batch dims)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        xp, a, b = self.xp, self.a, self.b
        # 1-D operands are treated as a row (a) or a column (b), then squeezed away again.
        # The column's dim goes back into grad first: for vector @ vector grad is 0-d.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = ga[..., 0, :] if a.ndim == 1 else ga
        if self.needs_input_grad[1]:
            gb = xp.swapaxes(a2, -1, -2) @ g2
            gb = gb[..., 0] if b.ndim == 1 else gb
        return ga, gb


def _same_dtype(op: str, a: Tensor, b: Tensor) -> None:
    """PyTorch's rule: no silent promotion in a matrix product (NumPy would make int64 @ float32
    a float64 result, twice the memory, where ``+`` of the same two gives float32)."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{op}: both operands must have the same dtype, got {a.dtype} and {b.dtype}; convert one first, "
            "e.g. with .float()"
        )


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch broadcasting rules (``input @ other``)."""
    _same_dtype("matmul", input, other)
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {input.shape} and {other.shape}")
    k_in = input.shape[-1]
    k_other = other.shape[-2] if other.ndim > 1 else other.shape[0]
    if k_in != k_other:
        raise ValueError(f"matmul: shapes {input.shape} and {other.shape} cannot be multiplied ({k_in} != {k_other})")
    try:
        np.broadcast_shapes(input.shape[:-2], other.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of {input.shape} and {other.shape} do not broadcast") from None
    return MatMul.apply(input, other)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched matrix product: ``(B, n, m) @ (B, m, p) -> (B, n, p)``."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise ValueError(f"bmm: expects (B, n, m) and (B, m, p), got {input.shape} and {mat2.shape}")
    _same_dtype("bmm", input, mat2)
    return MatMul.apply(input, mat2)
