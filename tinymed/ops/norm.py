"""Normalisation: batch_norm and layer_norm, one Function for both.

Both compute ``y = (x - mean) / sqrt(var + eps) * weight + bias``; they differ only in the axes
the statistics are taken over (N, H, W per channel for batch norm; the trailing dims for layer
norm) and in batch norm's running statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinymed.autograd import Function, same_device
from tinymed.dtypes import is_floating
from tinymed.ops.arguments import float_tensor, parameter
from tinymed.tensor import Tensor


class _Normalization(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over ``axes``.

    The shared core of batch_norm (axes N, H, W) and layer_norm (the trailing axes). weight
    and bias broadcast against x. With the statistics taken from x (biased variance), and
    x^ = (x - mean) / sqrt(var + eps), gx^ = g * weight::

        dL/dx = (gx^ - mean(gx^) - x^ mean(gx^ x^)) / sqrt(var + eps)

    With given statistics (batch_norm in eval mode) they are constants: dL/dx = gx^ / sqrt(var + eps).
    dL/dweight = g x^ and dL/dbias = g, summed over the broadcast axes by the engine.
    Returns (y, mean, var); the statistics carry no gradient.
    """

    def forward(self, x, weight, bias, axes, eps, mean=None, var=None):
        self.axes, self.weight = axes, weight
        self.batch_statistics = mean is None
        if self.batch_statistics:
            mean = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
        self.inv_std = 1 / self.xp.sqrt(var + eps)
        self.x_hat = (x - mean) * self.inv_std
        y = self.x_hat if weight is None else self.x_hat * weight
        return (y if bias is None else y + bias), mean, var

    def backward(self, grad):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            g_hat = grad if self.weight is None else grad * self.weight
            if self.batch_statistics:
                axes = self.axes
                g_hat = (
                    g_hat
                    - g_hat.mean(axis=axes, keepdims=True)
                    - self.x_hat * (g_hat * self.x_hat).mean(axis=axes, keepdims=True)
                )
            gx = g_hat * self.inv_std
        if self.needs_input_grad[1]:
            gw = grad * self.x_hat
        if self.needs_input_grad[2]:
            gb = grad
        return gx, gw, gb


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalisation over (N, C), (N, C, L) or (N, C, H, W): per channel c,
    y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.

    Training uses the batch's statistics (biased variance) and updates the running ones in
    place, as PyTorch: running = (1 - momentum) * running + momentum * batch, with the
    unbiased variance n/(n-1) var for ``running_var``. Evaluation uses the running statistics.
    """
    op = "batch_norm"
    float_tensor(op, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C), (N, C, L) or (N, C, H, W), got shape {input.shape}")
    channels = input.shape[1]
    parameter(op, "weight", weight, input, (channels,))
    parameter(op, "bias", bias, input, (channels,))
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is None:
            if not training:
                raise ValueError(f"{op}: {name} is needed when training=False")
            continue
        if not isinstance(stat, Tensor) or not is_floating(stat.dtype) or stat.shape != (channels,):
            got = stat.shape if isinstance(stat, Tensor) else type(stat).__name__
            raise ValueError(
                f"{op}: {name} must be a float tensor of shape ({channels},), got {got} (input shape {input.shape})"
            )
        same_device(op, (input, stat))
    count = input.numel() // channels
    if training and count <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input shape {input.shape}")
    axes = (0, *range(2, input.ndim))
    shape = (channels,) + (1,) * (input.ndim - 2)
    weight = None if weight is None else weight.reshape(shape)
    bias = None if bias is None else bias.reshape(shape)
    if not training:
        mean, var = (s.array.reshape(shape).astype(input.dtype, copy=False) for s in (running_mean, running_var))
        return _Normalization.apply(input, weight, bias, axes=axes, eps=eps, mean=mean, var=var)[0]
    y, mean, var = _Normalization.apply(input, weight, bias, axes=axes, eps=eps)
    if running_mean is not None:
        running_mean.array[...] = (1 - momentum) * running_mean.array + momentum * mean.array.reshape(channels)
    if running_var is not None:
        running_var.array[...] = (1 - momentum) * running_var.array + momentum * var.array.reshape(channels) * (
            count / (count - 1)
        )
    return y


def layer_norm(
    input: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalisation over the trailing dims ``normalized_shape``:
    y = (x - mean) / sqrt(var + eps) * weight + bias, weight and bias of ``normalized_shape``."""
    op = "layer_norm"
    float_tensor(op, "input", input)
    shape = (
        (int(normalized_shape),)
        if isinstance(normalized_shape, (int, np.integer))
        else tuple(int(n) for n in normalized_shape)
    )
    if not shape or len(shape) > input.ndim or input.shape[input.ndim - len(shape) :] != shape:
        raise ValueError(f"{op}: input shape {input.shape} does not end in normalized_shape {shape}")
    parameter(op, "weight", weight, input, shape)
    parameter(op, "bias", bias, input, shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    return _Normalization.apply(input, weight, bias, axes=axes, eps=eps)[0]
