"""Normalisation: batch_norm, layer_norm, group_norm and instance_norm, one Function for all.

All compute ``y = (x - mean) / sqrt(var + eps) * weight + bias``; they differ only in which
elements share a mean and variance, and in the running statistics batch and instance norm may
keep. For an (N, C, H, W) input:

* batch norm: per channel, over N, H, W;
* layer norm: per sample, over the trailing ``normalized_shape`` dims;
* group norm: per sample and group of C / G channels, over those channels and H, W;
* instance norm: per sample and channel, over H, W (group norm with one channel per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        centered = x - mean
        if self.batch_statistics:
            var = (centered * centered).mean(axis=axes, keepdims=True)
        self.inv_std = 1 / self.xp.sqrt(var + eps)
        # In place: each pass over x costs as much as the arithmetic, so no temporaries.
        self.x_hat = centered
        self.x_hat *= self.inv_std
        y = self.x_hat.copy() if weight is None else self.x_hat * weight
        if bias is not None:
            y += bias
        return y, mean, var

    def backward(self, grad):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            g_hat = grad if self.weight is None else grad * self.weight
            if self.batch_statistics:
                axes = self.axes
                # In place, for the reason the forward pass gives.
                gx = self.x_hat * -(g_hat * self.x_hat).mean(axis=axes, keepdims=True)
                gx += g_hat
                gx -= g_hat.mean(axis=axes, keepdims=True)
                gx *= self.inv_std
            else:
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
    weight, bias = _channel_operands(op, input, weight, bias, running_mean, running_var, not training, "training")
    channels = input.shape[1]
    count = input.numel() // channels
    if training and count <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input shape {input.shape}")
    axes = (0, *range(2, input.ndim))
    shape = (channels,) + (1,) * (input.ndim - 2)
    if not training:
        mean, var = (s.array.reshape(shape).astype(input.dtype, copy=False) for s in (running_mean, running_var))
        return _Normalization.apply(input, weight, bias, axes=axes, eps=eps, mean=mean, var=var)[0]
    y, mean, var = _Normalization.apply(input, weight, bias, axes=axes, eps=eps)
    _update_running(
        running_mean, running_var, mean.array.reshape(channels), var.array.reshape(channels), momentum, count
    )
    return y


def _channel_operands(
    op: str,
    input: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    statistics_needed: bool,
    flag: str,
) -> tuple[Tensor | None, Tensor | None]:
    """Check batch and instance norm's per-channel operands: weight and bias None or of shape
    (C,) like the input; each running statistic None (refused when ``statistics_needed``,
    naming ``flag``) or a float tensor of shape (C,) on the input's device. Returns weight and
    bias shaped (C, 1, ...) to broadcast against the input."""
    channels = input.shape[1]
    parameter(op, "weight", weight, input, (channels,))
    parameter(op, "bias", bias, input, (channels,))
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is None:
            if statistics_needed:
                raise ValueError(f"{op}: {name} is needed when {flag}=False")
            continue
        if not isinstance(stat, Tensor) or not is_floating(stat.dtype) or stat.shape != (channels,):
            got = stat.shape if isinstance(stat, Tensor) else type(stat).__name__
            raise ValueError(
                f"{op}: {name} must be a float tensor of shape ({channels},), got {got} (input shape {input.shape})"
            )
        same_device(op, (input, stat))
    shape = (channels,) + (1,) * (input.ndim - 2)
    return (None if weight is None else weight.reshape(shape)), (None if bias is None else bias.reshape(shape))


def _update_running(
    running_mean: Tensor | None, running_var: Tensor | None, mean: Any, var: Any, momentum: float, count: int
) -> None:
    """running = (1 - momentum) * running + momentum * batch, in place, with the batch's biased
    variance over ``count`` values made unbiased (times count / (count - 1)), as PyTorch."""
    if running_mean is not None:
        running_mean.array[...] = (1 - momentum) * running_mean.array + momentum * mean
    if running_var is not None:
        running_var.array[...] = (1 - momentum) * running_var.array + momentum * var * (count / (count - 1))


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


def group_norm(
    input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Group normalisation of (N, C, *): the C channels form ``num_groups`` groups of C / G, and
    each sample's group is normalised over its channels and positions,
    y = (x - mean_{n,g}) / sqrt(var_{n,g} + eps) * weight_c + bias_c (weight, bias (C,)).

    Independent of the batch size, so it suits the small batches of medical images."""
    op = "group_norm"
    float_tensor(op, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C, *), got shape {input.shape}")
    n, channels, *spatial = input.shape
    if not isinstance(num_groups, (int, np.integer)) or num_groups < 1 or channels % num_groups:
        raise ValueError(f"{op}: num_groups ({num_groups!r}) must be a positive divisor of the {channels} channels")
    parameter(op, "weight", weight, input, (channels,))
    parameter(op, "bias", bias, input, (channels,))
    if input.numel() // (n * num_groups) <= 1:
        raise ValueError(f"{op}: expected more than 1 value per group, got input shape {input.shape}")
    # (N, G, C/G, *spatial): the statistics over every axis after G; the per-channel weight
    # becomes (G, C/G, 1, ...), which broadcasts against it.
    grouped = input.reshape(n, num_groups, channels // num_groups, *spatial)
    shape = (num_groups, channels // num_groups) + (1,) * len(spatial)
    weight = None if weight is None else weight.reshape(shape)
    bias = None if bias is None else bias.reshape(shape)
    axes = tuple(range(2, grouped.ndim))
    return _Normalization.apply(grouped, weight, bias, axes=axes, eps=eps)[0].reshape(input.shape)


def instance_norm(
    input: Tensor,
    running_mean: Tensor | None = None,
    running_var: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Instance normalisation of (N, C, *): each sample's channel is normalised over its own
    positions, y = (x - mean_{n,c}) / sqrt(var_{n,c} + eps) * weight_c + bias_c.

    With ``use_input_stats`` (the default) those statistics are used, and given running ones
    move towards their mean over the batch (variance unbiased, as batch_norm); without, the
    running statistics stand in for every sample's (they must then be given)."""
    op = "instance_norm"
    float_tensor(op, "input", input)
    if input.ndim < 3:
        raise ValueError(f"{op}: input must be (N, C, *) with at least one spatial dim, got shape {input.shape}")
    weight, bias = _channel_operands(
        op, input, weight, bias, running_mean, running_var, not use_input_stats, "use_input_stats"
    )
    channels = input.shape[1]
    count = input.numel() // (input.shape[0] * channels)
    if use_input_stats and count <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial element per channel, got input shape {input.shape}")
    axes = tuple(range(2, input.ndim))
    shape = (channels,) + (1,) * len(axes)
    if not use_input_stats:
        mean, var = (s.array.reshape(shape).astype(input.dtype, copy=False) for s in (running_mean, running_var))
        return _Normalization.apply(input, weight, bias, axes=axes, eps=eps, mean=mean, var=var)[0]
    y, mean, var = _Normalization.apply(input, weight, bias, axes=axes, eps=eps)
    batch_mean, batch_var = (s.array.reshape(-1, channels).mean(axis=0) for s in (mean, var))
    _update_running(running_mean, running_var, batch_mean, batch_var, momentum, count)
    return y
