"""The affine map ``y = x W^T + b`` (linear), as one GEMM with the bias fused in.

Forward is the backend primitive ``gemm(x, W, b, trans_b=True)``; the backward products are
``gemm`` again (see :class:`tinymed.backends.Backend`).
"""

from __future__ import annotations

from tinymed.autograd import Function
from tinymed.ops.arguments import float_tensor, parameter
from tinymed.tensor import Tensor


class _Linear(Function):
    """y = x W^T + b over the last dim: x (..., in), W (out, in), b (out,) -> y (..., out).

    The leading dims are flattened into the rows of one GEMM with the bias fused in.
    dL/dx = dL/dy W, dL/dW = dL/dy^T x, dL/db = sum over rows of dL/dy.
    """

    def forward(self, x, weight, bias):
        self.shape = x.shape
        self.x, self.weight = x.reshape(-1, x.shape[-1]), weight
        y = self.backend.gemm(self.x, weight, bias, trans_b=True)
        return y.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        grad = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = self.backend.gemm(grad, self.weight).reshape(self.shape)
        if self.needs_input_grad[1]:
            gw = self.backend.gemm(grad, self.x, trans_a=True)
        if self.needs_input_grad[2]:
            gb = grad.sum(axis=0)
        return gx, gw, gb


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b. input (..., in_features), weight (out_features, in_features), bias (out_features,)."""
    op = "linear"
    float_tensor(op, "input", input)
    float_tensor(op, "weight", weight, input)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input shape {input.shape} does not end in in_features = {weight.shape[1]} of weight {weight.shape}"
        )
    parameter(op, "bias", bias, input, (weight.shape[0],))
    return _Linear.apply(input, weight, bias)
