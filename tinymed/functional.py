"""The ops users call, ``tinymed.functional`` (alias ``tinymed.nn.functional``).

Names, arguments, defaults and weight layouts are those of ``torch.nn.functional``, so code
written for PyTorch ports by changing its imports. Each op is one autograd
:class:`~tinymed.tensor.Function` with its backward right below its forward, or a short
composition of existing ops when that is as clear and as fast.

The four formula families of the course call the tensor's backend primitives
(``self.backend.conv2d_forward``, ``gemm``, ...; see :mod:`tinymed.backends`):

* convolution  ``y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x_pad[n,c,i*sh+p*dh,j*sw+q*dw]``
* max pooling  ``y[n,c,i,j] = max_{p,q} x_pad[n,c,i*sh+p*dh,j*sw+q*dw]``
* affine       ``y = x W^T + b``
* attention    ``softmax(Q K^T / sqrt(d_k)) V``

Everything else (activations, normalisation, losses) is element-wise maths and reductions
on the backend's array module ``self.xp``. Every op checks its arguments first and raises a
``TypeError``/``ValueError`` that names the op, the argument and the shapes involved.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinymed import random
from tinymed.tensor import (
    Function,
    Tensor,
    _axis,
    _common_backend,
    _is_float,
    _unbroadcast,
    int64,
    where,
)

# --------------------------------------------------------------------------- argument checks


def _float_tensor(op: str, name: str, value: Any, like: Tensor | None = None) -> Tensor:
    """Check that ``value`` is a floating-point Tensor (with ``like``'s dtype and backend)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(value).__name__}")
    if not _is_float(value.dtype):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {value.dtype}")
    if like is not None and value is not like:
        if value.dtype != like.dtype:
            raise TypeError(f"{op}: {name} has dtype {value.dtype} but input has dtype {like.dtype}")
        _common_backend(op, (like, value))
    return value


def _parameter(op: str, name: str, value: Any, like: Tensor, shape: tuple[int, ...]) -> Tensor | None:
    """``None``, or a float tensor of exactly ``shape`` matching ``like`` (weights, biases)."""
    if value is None:
        return None
    _float_tensor(op, name, value, like)
    if value.shape != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {value.shape} (input shape {like.shape})")
    return value


def _pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, as PyTorch accepts for stride/padding/kernel_size/dilation."""
    pair = (
        (value, value)
        if isinstance(value, (int, np.integer))
        else tuple(value)
        if isinstance(value, (tuple, list))
        else ()
    )
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {rule}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _image(op: str, input: Tensor) -> None:
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {input.shape}")


def _window_fits(
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


def _pool_padding(op: str, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    # PyTorch's rule: a window may overhang the input by at most half of itself.
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")


def _only_default(op: str, name: str, value: Any, default: Any) -> None:
    if value != default:
        raise ValueError(f"{op}: only {name}={default!r} is supported, got {name}={value!r}")


_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str, total: Any = None) -> Tensor:
    """Apply a loss's ``reduction``; ``total`` (an array) replaces the element count in the
    mean when the loss is weighted (PyTorch divides by the sum of the weights used)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if total is None:
        return loss.mean()
    return loss.sum() / Tensor._wrap(loss._backend.xp.asarray(total), loss._backend)


def _constant(array: Any, like: Tensor) -> Tensor:
    """A host array as a gradient-free tensor on ``like``'s backend."""
    return Tensor._wrap(like._backend.asarray(np.asarray(array)), like._backend)


# =========================================================================== convolution


def _conv_operands(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, groups: int, layout: str) -> None:
    """The checks conv2d and conv_transpose2d share; ``layout`` names the weight's axes, and
    the one called C_in must match the input's channels (C_out is the bias's length)."""
    _only_default(op, "groups", groups, 1)
    _float_tensor(op, "input", input)
    _float_tensor(op, "weight", weight, input)
    _image(op, input)
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {layout}, got shape {weight.shape}")
    in_axis = 0 if layout.startswith("(C_in") else 1
    if input.shape[-3] != weight.shape[in_axis]:
        raise ValueError(
            f"{op}: input has {input.shape[-3]} channels but weight {weight.shape} {layout} expects "
            f"{weight.shape[in_axis]} (input shape {input.shape})"
        )
    _parameter(op, "bias", bias, input, (weight.shape[1 - in_axis],))


class Conv2d(Function):
    """Cross-correlation, as PyTorch (no kernel flip)::

        y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

    x (N, C, H, W), w (O, C, KH, KW), b (O,) -> y (N, O, OH, OW) with
    OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1.

    Backward: dL/dx is the transposed convolution of dL/dy with w (``conv2d_grad_input``),
    dL/dw the correlation of x with dL/dy (``conv2d_grad_weight``), dL/db = sum_{n,i,j} dL/dy.
    """

    def forward(self, x, weight, bias, stride, padding, dilation):
        self.x, self.weight, self.geometry = x, weight, (stride, padding, dilation)
        return self.backend.conv2d_forward(x, weight, bias, stride, padding, dilation)

    def backward(self, grad):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = self.backend.conv2d_grad_input(grad, self.weight, tuple(self.x.shape[2:]), *self.geometry)
        if self.needs_input_grad[1]:
            gw = self.backend.conv2d_grad_weight(self.x, grad, tuple(self.weight.shape[2:]), *self.geometry)
        if self.needs_input_grad[2]:
            gb = grad.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation) over an (N, C, H, W) or unbatched (C, H, W) input.

    weight (C_out, C, KH, KW), bias (C_out,). ``padding`` may also be ``"valid"`` (none) or
    ``"same"`` (output as large as the input; stride 1 only, as PyTorch; an odd total
    padding puts the extra row/column at the bottom/right, as PyTorch). Only ``groups=1``.
    """
    op = "conv2d"
    _conv_operands(op, input, weight, bias, groups, "(C_out, C_in, KH, KW)")
    stride = _pair(op, "stride", stride, 1)
    dilation = _pair(op, "dilation", dilation, 1)
    kernel = weight.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            if totals[0] % 2 or totals[1] % 2:
                input = pad(input, (0, totals[1] % 2, 0, totals[0] % 2))
            padding = (totals[0] // 2, totals[1] // 2)
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
    padding = _pair(op, "padding", padding, 0)
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation).squeeze(0)
    _window_fits(op, input.shape[2:], kernel, padding, dilation)
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation)


class ConvTranspose2d(Function):
    """The transposed convolution: the adjoint of :class:`Conv2d` in its input.

    x (N, C_in, H, W), w (C_in, C_out, KH, KW), b (C_out,) -> y (N, C_out, HO, WO) with
    HO = (H - 1)*sh - 2*ph + dh*(KH - 1) + output_padding_h + 1. Reading w as a convolution
    weight (O = C_in, C = C_out), y is what ``conv2d_grad_input`` computes for a
    "grad_output" x::

        y[n,c,h,w] = b[c] + sum over (o,i,j,p,q) with i*sh + p*dh = h + ph, j*sw + q*dw = w + pw
                            of x[n,o,i,j] * w[o,c,p,q]

    Backward swaps the roles: dL/dx = conv2d(dL/dy, w) and dL/dw = conv2d_grad_weight with
    dL/dy as the input and x as the output gradient.
    """

    def forward(self, x, weight, bias, output_size, stride, padding, dilation):
        self.input_size = x.shape[2:]
        # A convolution over an HO-sized input yields H + output_padding // stride positions;
        # the extra ones (output_padding >= stride needs dilation > output_padding) touch
        # nothing in y, so they enter as zeros.
        extra = [
            (ho + 2 * p - d * (k - 1) - 1) // s + 1 - n
            for ho, p, d, k, s, n in zip(output_size, padding, dilation, weight.shape[2:], stride, x.shape[2:])
        ]
        if any(extra):
            x = self.xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
        self.x, self.weight, self.geometry = x, weight, (stride, padding, dilation)
        y = self.backend.conv2d_grad_input(x, weight, tuple(output_size), stride, padding, dilation)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    def backward(self, grad):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            h, w = self.input_size
            gx = self.backend.conv2d_forward(grad, self.weight, None, *self.geometry)[:, :, :h, :w]
        if self.needs_input_grad[1]:
            gw = self.backend.conv2d_grad_weight(grad, self.x, tuple(self.weight.shape[2:]), *self.geometry)
        if self.needs_input_grad[2]:
            gb = grad.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """2-D transposed convolution ("deconvolution", the DCGAN generator's upsampling).

    input (N, C_in, H, W) or (C_in, H, W), weight (C_in, C_out, KH, KW) as PyTorch,
    bias (C_out,). ``output_padding`` adds rows/columns at the bottom/right of the output
    (it must be smaller than stride or dilation). Only ``groups=1``.
    """
    op = "conv_transpose2d"
    _conv_operands(op, input, weight, bias, groups, "(C_in, C_out, KH, KW)")
    stride = _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    output_padding = _pair(op, "output_padding", output_padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    if input.ndim == 3:
        return conv_transpose2d(
            input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups, dilation
        ).squeeze(0)
    for a in range(2):
        if output_padding[a] >= stride[a] and output_padding[a] >= dilation[a]:
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than either stride {stride} or dilation {dilation}"
            )
    kernel = weight.shape[2:]
    output_size = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + op_ + 1
        for n, s, p, d, k, op_ in zip(input.shape[2:], stride, padding, dilation, kernel, output_padding)
    )
    if min(output_size) < 1:
        raise ValueError(
            f"{op}: output size {output_size} is not positive (input {input.shape}, kernel {kernel}, stride {stride}, "
            f"padding {padding}, dilation {dilation}, output_padding {output_padding})"
        )
    return ConvTranspose2d.apply(
        input, weight, bias, output_size=output_size, stride=stride, padding=padding, dilation=dilation
    )


# =========================================================================== pooling


class MaxPool2d(Function):
    """y[n,c,i,j] = max_{p,q} x_pad[n, c, i*sh + p*dh, j*sw + q*dw] (padding is -inf).

    x (N, C, H, W) -> y (N, C, OH, OW) and the flat index h*W + w of each maximum.
    dL/dx: each output's gradient goes to the one input its window picked (added when
    overlapping windows pick the same input).
    """

    def forward(self, x, kernel_size, stride, padding, dilation):
        self.input_size = tuple(x.shape[2:])
        self.geometry = (kernel_size, stride, padding, dilation)
        y, self.indices = self.backend.max_pool2d_forward(x, *self.geometry)
        return y, self.indices

    def backward(self, grad):
        return self.backend.max_pool2d_backward(grad, self.indices, self.input_size, *self.geometry)


def _windows_touch_input(
    op: str,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """Refuse a geometry in which some window sees only padding: its maximum would be the
    padding's -inf and its argmax no input pixel at all. (Only dilation can cause it, since
    padding is at most half the kernel.)"""
    for axis, name in enumerate(("height", "width")):
        n, k, s, p, d = size[axis], kernel[axis], stride[axis], padding[axis], dilation[axis]
        for i in range((n + 2 * p - d * (k - 1) - 1) // s + 1):
            if not any(0 <= i * s + t * d - p < n for t in range(k)):
                raise ValueError(
                    f"{op}: output {name} position {i} sees only padding (input {name} {n}, kernel_size {kernel}, "
                    f"stride {stride}, padding {padding}, dilation {dilation}); reduce padding or dilation"
                )


def max_pool2d(
    input: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """2-D max pooling; ``stride`` defaults to ``kernel_size``. With ``return_indices`` also
    returns the int64 flat index (h * W + w) of each maximum, as PyTorch. Only ``ceil_mode=False``."""
    op = "max_pool2d"
    _only_default(op, "ceil_mode", ceil_mode, False)
    _float_tensor(op, "input", input)
    _image(op, input)
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    if input.ndim == 3:
        out = max_pool2d(input.unsqueeze(0), kernel, stride, padding, dilation, ceil_mode, return_indices)
        return (out[0].squeeze(0), out[1].squeeze(0)) if return_indices else out.squeeze(0)
    _pool_padding(op, kernel, padding)
    _window_fits(op, input.shape[2:], kernel, padding, dilation)
    _windows_touch_input(op, input.shape[2:], kernel, stride, padding, dilation)
    y, indices = MaxPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    return (y, indices) if return_indices else y


def avg_pool2d(
    input: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling: y[n,c,i,j] = sum of the window / divisor.

    Written as a convolution of every channel (as an image of its own) with a kernel of
    ones, so it reuses :class:`Conv2d` forward and backward. The divisor is
    ``divisor_override``, else KH*KW (``count_include_pad``), else the number of real
    (unpadded) pixels in the window, which is that same convolution applied to ones.
    Only ``ceil_mode=False``.
    """
    op = "avg_pool2d"
    _only_default(op, "ceil_mode", ceil_mode, False)
    _float_tensor(op, "input", input)
    _image(op, input)
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override <= 0):
        raise ValueError(f"{op}: divisor_override must be a positive int, got {divisor_override!r}")
    if input.ndim == 3:
        return avg_pool2d(
            input.unsqueeze(0), kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
        ).squeeze(0)
    _pool_padding(op, kernel, padding)
    _window_fits(op, input.shape[2:], kernel, padding, (1, 1))
    n, c, h, w = input.shape
    ones = _constant(np.ones((1, 1, *kernel), dtype=input.dtype), input)
    sums = conv2d(input.reshape(n * c, 1, h, w), ones, None, stride, padding)
    if divisor_override is not None:
        divisor: Any = divisor_override
    elif count_include_pad:
        divisor = kernel[0] * kernel[1]
    else:
        divisor = conv2d(_constant(np.ones((1, 1, h, w), dtype=input.dtype), input), ones, None, stride, padding)
    return (sums / divisor).reshape(n, c, *sums.shape[2:])


def _bin_averages(size: int, bins: int, dtype: np.dtype) -> np.ndarray:
    """(bins, size) matrix whose row i averages input positions floor(i*size/bins) up to
    ceil((i+1)*size/bins), PyTorch's adaptive pooling bins."""
    matrix = np.zeros((bins, size), dtype=dtype)
    for i in range(bins):
        start, end = (i * size) // bins, -(-(i + 1) * size // bins)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool2d(input: Tensor, output_size: int | None | tuple[int | None, int | None]) -> Tensor:
    """Average pooling to a fixed (OH, OW) whatever the input size (``None`` keeps a size).

    An adaptive bin is a rectangle (a row range times a column range), so its mean is
    separable: y = A_H @ x @ A_W^T with A_H (OH, H) and A_W (OW, W) averaging matrices
    (:func:`_bin_averages`); both products are :func:`tinymed.matmul`, which carries the
    gradient. ``output_size=1`` is the global average pool.
    """
    op = "adaptive_avg_pool2d"
    _float_tensor(op, "input", input)
    _image(op, input)
    sizes = (
        (output_size, output_size)
        if output_size is None or isinstance(output_size, (int, np.integer))
        else tuple(output_size)
    )
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int, None or a pair, got {output_size!r}")
    h, w = input.shape[-2:]
    sizes = tuple(n if s is None else s for s, n in zip(sizes, (h, w)))
    _pair(op, "output_size", sizes, 1)
    rows = _constant(_bin_averages(h, sizes[0], input.dtype), input)
    cols = _constant(_bin_averages(w, sizes[1], input.dtype).T, input)
    return rows @ (input @ cols)


# =========================================================================== affine


class Linear(Function):
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
    _float_tensor(op, "input", input)
    _float_tensor(op, "weight", weight, input)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input shape {input.shape} does not end in in_features = {weight.shape[1]} of weight {weight.shape}"
        )
    _parameter(op, "bias", bias, input, (weight.shape[0],))
    return Linear.apply(input, weight, bias)


# =========================================================================== attention


class Attention(Function):
    """out = softmax(scale * q k^T + mask) v for B independent heads.

    q (B, Lq, E), k (B, Lk, E), v (B, Lk, Ev) -> out (B, Lq, Ev); mask None or additive
    (B, Lq, Lk). The backend keeps each row's log-sum-exp ``lse`` so that backward rebuilds
    P = exp(s - lse) instead of storing the (Lq, Lk) probabilities; with D = rowsum(dO * out),
    dS = P * (dO v^T - D): dq = scale dS k, dk = scale dS^T q, dv = P^T dO.
    """

    def forward(self, q, k, v, mask, scale, is_causal):
        out, lse = self.backend.attention_forward(q, k, v, mask, scale, is_causal)
        self.saved = q, k, v, out, lse, mask, scale, is_causal
        return out

    def backward(self, grad):
        return self.backend.attention_backward(grad, *self.saved)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """softmax(Q K^T * scale + mask) V, with scale = 1/sqrt(E) by default.

    query (..., Lq, E), key (..., Lk, E), value (..., Lk, Ev) -> (..., Lq, Ev); the leading
    (batch, head) dims broadcast. ``attn_mask`` broadcasts to (..., Lq, Lk): boolean (True
    takes part, as PyTorch) or an additive float mask. ``is_causal`` hides every key j > i.
    A query row with no key left gives 0 (PyTorch's safe softmax). ``enable_gqa`` repeats
    each key/value head for a group of query heads (dim -3).

    The leading dims are flattened into one batch for the backend's attention kernel. When
    ``dropout_p > 0``, or the float mask itself needs a gradient, the probabilities are
    materialised instead (scores, :func:`softmax`, :func:`dropout`, matmul), since the
    kernel neither draws dropout masks nor returns dL/dmask. Dropout is applied whenever
    ``dropout_p > 0``, as PyTorch: pass 0 when evaluating.
    """
    op = "scaled_dot_product_attention"
    _float_tensor(op, "query", query)
    _float_tensor(op, "key", key, query)
    _float_tensor(op, "value", value, query)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., L, E), got shape {t.shape}")
    if enable_gqa:
        key, value = _repeat_kv_heads(op, query, key), _repeat_kv_heads(op, query, value)
    (lq, e), (lk, ek), (lv, ev) = query.shape[-2:], key.shape[-2:], value.shape[-2:]
    if e != ek or lk != lv:
        raise ValueError(
            f"{op}: expects query (..., Lq, E), key (..., Lk, E), value (..., Lk, Ev), "
            f"got query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    leading = [query.shape[:-2], key.shape[:-2], value.shape[:-2]]
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{op}: give attn_mask or is_causal=True, not both")
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{op}: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype != np.bool_ and attn_mask.dtype != query.dtype:
            raise TypeError(f"{op}: attn_mask must be bool or have query's dtype {query.dtype}, got {attn_mask.dtype}")
        _common_backend(op, (query, attn_mask))
        mask_rows = attn_mask.shape[-2:] if attn_mask.ndim >= 2 else (1, *attn_mask.shape)
        if any(m not in (1, n) for m, n in zip(mask_rows, (lq, lk))):
            raise ValueError(
                f"{op}: attn_mask {attn_mask.shape} does not broadcast to (..., Lq, Lk) = (..., {lq}, {lk})"
            )
        leading.append(attn_mask.shape[:-2])
    try:
        batch = np.broadcast_shapes(*leading)
    except ValueError:
        shapes = f"query {query.shape}, key {key.shape}, value {value.shape}" + (
            f", attn_mask {attn_mask.shape}" if attn_mask is not None else ""
        )
        raise ValueError(f"{op}: the leading (batch, head) dims do not broadcast: {shapes}") from None
    scale = 1.0 / math.sqrt(e) if scale is None else float(scale)

    bias = attn_mask  # the mask as additive scores: 0 keeps a key, -inf removes it
    if attn_mask is not None and not _is_float(attn_mask.dtype):
        bias = Tensor._wrap(query._backend.xp.where(attn_mask.data, 0.0, -math.inf).astype(query.dtype), query._backend)
    if dropout_p > 0 or bias is not None and bias.requires_grad:
        if is_causal:
            bias = _constant(np.where(np.tri(lq, lk, dtype=bool), 0.0, -np.inf).astype(query.dtype), query)
        return _attention_materialised(query, key, value, bias, dropout_p, scale)

    def flat(t: Tensor, rows: int, cols: int) -> Tensor:
        full = (*batch, rows, cols)
        return (t if t.shape == full else t.expand(*full)).reshape(-1, rows, cols)

    mask = None if bias is None else flat(bias, lq, lk).data
    out = Attention.apply(
        flat(query, lq, e), flat(key, lk, e), flat(value, lk, ev), mask=mask, scale=scale, is_causal=is_causal
    )
    return out.reshape(*batch, lq, ev)


def _repeat_kv_heads(op: str, query: Tensor, kv: Tensor) -> Tensor:
    """Grouped-query attention: head h of key/value serves query heads h*g .. h*g + g - 1."""
    if query.ndim < 3 or kv.ndim < 3 or query.shape[-3] % kv.shape[-3]:
        raise ValueError(
            f"{op}: enable_gqa needs (..., heads, L, E) with query heads a multiple of key/value heads, got query {query.shape} and {kv.shape}"
        )
    group = query.shape[-3] // kv.shape[-3]
    *lead, heads, length, dim = kv.shape
    return kv.unsqueeze(-3).expand(*lead, heads, group, length, dim).reshape(*lead, heads * group, length, dim)


def _attention_materialised(
    query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None, dropout_p: float, scale: float
) -> Tensor:
    """The attention formula step by step, with the (..., Lq, Lk) probabilities in memory."""
    scores = (query @ key.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    # Rows with every key removed: softmax of all -inf is NaN; PyTorch's safe softmax gives 0.
    empty = Tensor._wrap(scores._backend.xp.all(scores.data == -math.inf, axis=-1, keepdims=True), scores._backend)
    probabilities = where(empty, 0.0, softmax(where(empty, 0.0, scores), -1))
    return dropout(probabilities, dropout_p) @ value


# =========================================================================== activations


class ReLU(Function):
    """y = max(x, 0);  dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        self.positive = x > 0
        return self.xp.maximum(x, 0)

    def backward(self, grad):
        return grad * self.positive


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0). ``inplace`` is accepted for PyTorch code; tinymed always returns a new tensor."""
    _float_tensor("relu", "input", input)
    return ReLU.apply(input)


class LeakyReLU(Function):
    """y = x if x > 0 else negative_slope * x;  dy/dx = 1 or negative_slope."""

    def forward(self, x, negative_slope):
        self.slope = self.xp.where(x > 0, 1, negative_slope).astype(x.dtype)
        return x * self.slope

    def backward(self, grad):
        return grad * self.slope


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise. ``inplace`` is accepted for PyTorch code;
    tinymed always returns a new tensor."""
    _float_tensor("leaky_relu", "input", input)
    return LeakyReLU.apply(input, negative_slope=float(negative_slope))


def _logistic(xp: Any, x: Any) -> Any:
    """1 / (1 + e^-x) without overflow: with e = e^-|x| <= 1 it is 1/(1+e) for x >= 0 and
    e/(1+e) for x < 0."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y)."""

    def forward(self, x):
        self.y = _logistic(self.xp, x)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


def sigmoid(input: Tensor) -> Tensor:
    """The logistic function 1 / (1 + e^-x), finite for any x."""
    _float_tensor("sigmoid", "input", input)
    return Sigmoid.apply(input)


class Tanh(Function):
    """y = tanh x;  dy/dx = 1 - y^2."""

    def forward(self, x):
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent."""
    _float_tensor("tanh", "input", input)
    return Tanh.apply(input)


# Chebyshev coefficients of Numerical Recipes (3rd ed., section 6.2.2) for erfc on z >= 0:
# erfc(z) = t exp(-z^2 + P(4t - 2)) with t = 2 / (2 + z); relative error below 1e-13.
_ERFC_COEFFICIENTS = (
    -1.3026537197817094,
    6.4196979235649026e-1,
    1.9476473204185836e-2,
    -9.561514786808631e-3,
    -9.46595344482036e-4,
    3.66839497852761e-4,
    4.2523324806907e-5,
    -2.0278578112534e-5,
    -1.624290004647e-6,
    1.303655835580e-6,
    1.5626441722e-8,
    -8.5238095915e-8,
    6.529054439e-9,
    5.059343495e-9,
    -9.91364156e-10,
    -2.27365122e-10,
    9.6467911e-11,
    2.394038e-12,
    -6.886027e-12,
    8.94487e-13,
    3.13092e-13,
    -1.12708e-13,
    3.81e-16,
    7.106e-15,
    -1.523e-15,
    -9.4e-17,
    1.21e-16,
    -2.8e-17,
)


def _erfc(xp: Any, z: Any) -> Any:
    """erfc(z) for z >= 0 (NumPy has no erf), the Chebyshev sum evaluated by Clenshaw's rule."""
    t = 2 / (2 + z)
    ty = 4 * t - 2
    d = dd = xp.zeros_like(z)
    for c in _ERFC_COEFFICIENTS[:0:-1]:
        d, dd = ty * d - dd + c, d
    return t * xp.exp(-z * z + 0.5 * (_ERFC_COEFFICIENTS[0] + ty * d) - dd)


class GELU(Function):
    """y = x Phi(x), Phi the standard normal CDF;  dy/dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).

    Phi(x) = erfc(-x/sqrt 2) / 2, written with erfc of |x| so both tails keep their digits.
    approximate='tanh': y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = (1 + tanh u)/2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2.
    """

    def forward(self, x, approximate):
        xp = self.xp
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
            return 0.5 * x * (1 + self.t)
        tail = 0.5 * _erfc(xp, xp.abs(x) / math.sqrt(2))
        self.cdf = xp.where(x >= 0, 1 - tail, tail)
        return x * self.cdf

    def backward(self, grad):
        x = self.x
        if self.approximate == "tanh":
            du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * du)
        pdf = self.xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return grad * (self.cdf + x * pdf)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit x * Phi(x); ``approximate='tanh'`` for the tanh form."""
    op = "gelu"
    _float_tensor(op, "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


class Softmax(Function):
    """y_i = e^(x_i - m) / sum_j e^(x_j - m) along one axis, m = max_j x_j (so no e^x
    overflows);  dL/dx_i = y_i (g_i - sum_j g_j y_j)."""

    def forward(self, x, axis):
        self.axis = axis
        e = self.xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y_i = x_i - m - log sum_j e^(x_j - m), m = max_j x_j (the log-sum-exp trick);
    dL/dx_i = g_i - e^(y_i) sum_j g_j."""

    def forward(self, x, axis):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.y = shifted - self.xp.log(self.xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.y

    def backward(self, grad):
        return grad - self.xp.exp(self.y) * grad.sum(axis=self.axis, keepdims=True)


def _along(fn: type[Function], op: str, input: Tensor, dim: int, dtype: Any) -> Tensor:
    _float_tensor(op, "input", input)
    if dtype is not None:
        input = input.type(dtype)
    if input.ndim == 0:
        return fn.apply(input.reshape(1), axis=0).reshape(())
    return fn.apply(input, axis=_axis(dim, input.ndim, op))


def softmax(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """e^x_i / sum_j e^x_j along ``dim`` (computed in ``dtype`` when given); finite for any finite x."""
    return _along(Softmax, "softmax", input, dim, dtype)


def log_softmax(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """log softmax along ``dim``, by the log-sum-exp trick; finite for any finite x."""
    return _along(LogSoftmax, "log_softmax", input, dim, dtype)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), so the
    expectation is unchanged (inverted dropout). The mask is drawn from tinymed's generator
    (:func:`tinymed.manual_seed`); the gradient passes through the same mask. Identity when
    not ``training``. ``inplace`` is accepted for PyTorch code; the result is a new tensor."""
    op = "dropout"
    _float_tensor(op, "input", input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    keep = random.generator().random(input.shape) >= p
    mask = keep * (0.0 if p == 1 else 1.0 / (1.0 - p))
    return input * _constant(mask.astype(input.dtype), input)


# =========================================================================== normalisation


class Normalize(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics over ``axes``.

    The shared core of batch_norm (axes N, H, W) and layer_norm (the trailing axes). weight
    and bias broadcast against x. With the statistics taken from x (biased variance), and
    x^ = (x - mean) / sqrt(var + eps), gx^ = g * weight::

        dL/dx = (gx^ - mean(gx^) - x^ mean(gx^ x^)) / sqrt(var + eps)

    With given statistics (batch_norm in eval mode) they are constants: dL/dx = gx^ / sqrt(var + eps).
    dL/dweight = sum g x^, dL/dbias = sum g (over the broadcast axes).
    Returns (y, mean, var); the statistics carry no gradient.
    """

    def forward(self, x, weight, bias, axes, eps, mean=None, var=None):
        self.axes, self.weight = axes, weight
        self.bias_shape = None if bias is None else bias.shape
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
            gw = _unbroadcast(grad * self.x_hat, self.weight.shape)
        if self.needs_input_grad[2]:
            gb = _unbroadcast(grad, self.bias_shape)
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
    _float_tensor(op, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, C), (N, C, L) or (N, C, H, W), got shape {input.shape}")
    channels = input.shape[1]
    _parameter(op, "weight", weight, input, (channels,))
    _parameter(op, "bias", bias, input, (channels,))
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is None:
            if not training:
                raise ValueError(f"{op}: {name} is needed when training=False")
            continue
        if not isinstance(stat, Tensor) or not _is_float(stat.dtype) or stat.shape != (channels,):
            got = stat.shape if isinstance(stat, Tensor) else type(stat).__name__
            raise ValueError(
                f"{op}: {name} must be a float tensor of shape ({channels},), got {got} (input shape {input.shape})"
            )
        _common_backend(op, (input, stat))
    count = input.numel() // channels
    if training and count <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input shape {input.shape}")
    axes = (0, *range(2, input.ndim))
    shape = (channels,) + (1,) * (input.ndim - 2)
    weight = None if weight is None else weight.reshape(shape)
    bias = None if bias is None else bias.reshape(shape)
    if not training:
        mean, var = (s.data.reshape(shape).astype(input.dtype, copy=False) for s in (running_mean, running_var))
        return Normalize.apply(input, weight, bias, axes=axes, eps=eps, mean=mean, var=var)[0]
    y, mean, var = Normalize.apply(input, weight, bias, axes=axes, eps=eps)
    if running_mean is not None:
        running_mean.data[...] = (1 - momentum) * running_mean.data + momentum * mean.data.reshape(channels)
    if running_var is not None:
        running_var.data[...] = (1 - momentum) * running_var.data + momentum * var.data.reshape(channels) * (
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
    _float_tensor(op, "input", input)
    shape = (
        (int(normalized_shape),)
        if isinstance(normalized_shape, (int, np.integer))
        else tuple(int(n) for n in normalized_shape)
    )
    if not shape or len(shape) > input.ndim or input.shape[input.ndim - len(shape) :] != shape:
        raise ValueError(f"{op}: input shape {input.shape} does not end in normalized_shape {shape}")
    _parameter(op, "weight", weight, input, shape)
    _parameter(op, "bias", bias, input, shape)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    return Normalize.apply(input, weight, bias, axes=axes, eps=eps)[0]


# =========================================================================== losses


def _class_indices(op: str, input: Tensor, target: Tensor, ignore_index: int) -> Any:
    """Check integer class targets (N, d1, ...) against input (N, C, d1, ...); return the array."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices (an integer tensor), got dtype {target.dtype}")
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"{op}: target shape {target.shape} does not match input shape {input.shape}; class indices need shape {expected}"
        )
    classes, t = input.shape[1], target.data
    outside = (t != ignore_index) & ((t < 0) | (t >= classes))
    if bool(outside.any()):
        bad = int(t[outside].reshape(-1)[0])
        raise ValueError(
            f"{op}: target holds class {bad}, outside [0, {classes}) for input shape {input.shape} (ignore_index={ignore_index})"
        )
    return t


class NLLLoss(Function):
    """loss[n, d...] = -w_t x[n, t, d...] with t = target[n, d...] and w_t its class weight;
    dloss/dx[n, c, d...] = -w_t where c == t, else 0.

    x (N, C, d...); ``target``, ``weights`` and ``used`` (N, d...) are constant arrays. An
    ignored target (``used`` False) has weight 0 and gets exactly 0 gradient, even when every
    target is ignored and the mean's 1/sum(w) is infinite (PyTorch's loss is then NaN and its
    gradient 0)."""

    def forward(self, x, target, weights, used):
        xp = self.xp
        self.shape, self.index = x.shape, xp.expand_dims(target, 1)
        self.weights, self.used = xp.expand_dims(weights, 1), xp.expand_dims(used, 1)
        return -(xp.take_along_axis(x, self.index, axis=1) * self.weights).squeeze(1)

    def backward(self, grad):
        xp = self.xp
        gx = xp.zeros(self.shape, dtype=grad.dtype)
        with np.errstate(invalid="ignore"):
            picked = xp.where(self.used, -self.weights * xp.expand_dims(grad, 1), 0)
        xp.put_along_axis(gx, self.index, picked, axis=1)
        return gx


def _nll_loss(
    op: str, input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str
) -> Tensor:
    """nll_loss for input (N, C, d...) and integer target (N, d...), checked under ``op``'s name."""
    _common_backend(op, (input, target))
    _parameter(op, "weight", weight, input, (input.shape[1],))
    t = _class_indices(op, input, target, ignore_index)
    xp = input._backend.xp
    used = t != ignore_index
    safe = xp.where(used, t, 0)
    w = (used if weight is None else weight.data[safe] * used).astype(input.dtype)
    return _reduce(NLLLoss.apply(input, target=safe, weights=w, used=used), reduction, w.sum())


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices: loss_n = -weight[t_n] * input[n, t_n].

    input (N, C, d1, ...) of log-probabilities or unbatched (C,); target (N, d1, ...) or ().
    Targets equal to ``ignore_index`` contribute 0; 'mean' divides by the summed weights of
    the targets used, as PyTorch. The options after ``weight`` are keyword-only here
    (PyTorch's deprecated ``size_average``/``reduce`` sit between them).
    """
    op = "nll_loss"
    _float_tensor(op, "input", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    _check_reduction(op, reduction)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, C, ...) or (C,), got a 0-d tensor")
    if input.ndim == 1:
        loss = nll_loss(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index=ignore_index, reduction=reduction)
        return loss.squeeze(0) if reduction == "none" else loss
    return _nll_loss(op, input, target, weight, ignore_index, reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits: nll_loss(log_softmax(input, 1), target), finite for any logits.

    input (N, C, d1, ...) or unbatched (C,). target either class indices (N, d1, ...)
    (integer; ``ignore_index`` skipped) or class probabilities of input's shape (float).
    ``label_smoothing`` eps mixes the target with the uniform distribution: for indices,
    (1 - eps) * nll + eps/C * sum_c -weight_c log p_c (PyTorch's weighting and mean);
    for probabilities, target * (1 - eps) + eps / C. The options after ``weight`` are
    keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` sit between them).
    """
    op = "cross_entropy"
    _float_tensor(op, "input", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, C, ...) or (C,), got a 0-d tensor")
    if input.ndim == 1:
        loss = cross_entropy(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        return loss.squeeze(0) if reduction == "none" else loss
    _common_backend(op, (input, target))
    classes = input.shape[1]
    _parameter(op, "weight", weight, input, (classes,))
    class_weight = None if weight is None else weight.reshape(classes, *(1,) * (input.ndim - 2))
    log_p = log_softmax(input, 1)

    if _is_float(target.dtype):
        if target.shape != input.shape:
            raise ValueError(
                f"{op}: class-probability target shape {target.shape} must equal input shape {input.shape}"
            )
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        scores = log_p * target if class_weight is None else log_p * target * class_weight
        return _reduce(-scores.sum(1), reduction)

    nll = _nll_loss(op, log_p, target, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return nll
    xp = input._backend.xp
    used = target.data != ignore_index
    # where, not a product with 0/1: an infinite gradient (all ignored, mean 0/0) must give 0
    smooth = where(
        Tensor._wrap(used, input._backend), -(log_p if class_weight is None else log_p * class_weight).sum(1), 0.0
    )
    total = used.sum() if weight is None else weight.data[xp.where(used, target.data, 0)][used].sum()
    return nll * (1 - label_smoothing) + _reduce(smooth, reduction, total.astype(input.dtype)) * (
        label_smoothing / classes
    )


def _same_shape(op: str, input: Tensor, target: Any) -> None:
    _float_tensor(op, "target", target, input)
    if target.shape != input.shape:
        raise ValueError(f"{op}: target shape {target.shape} must equal input shape {input.shape}")


def _broadcast_weight(op: str, name: str, weight: Any, input: Tensor) -> Tensor | None:
    if weight is None:
        return None
    _float_tensor(op, name, weight, input)
    try:
        fits = np.broadcast_shapes(weight.shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} shape {weight.shape} does not broadcast to input shape {input.shape}")
    return weight


# PyTorch's floor on x (1 - x) in the gradient: the float32 constant 1e-12f, kept bit-exact.
_BCE_EPSILON = float(np.float32(1e-12))


class BinaryCrossEntropy(Function):
    """loss = -(y log x + (1 - y) log(1 - x)), each log clamped at -100 as PyTorch (so x = 0
    or 1 gives 100, not inf);  dloss/dx = (x - y) / max(x (1 - x), 1e-12),
    dloss/dy = log(1 - x) - log x with the clamped logs (the derivative of the loss as
    computed; PyTorch leaves these logs unclamped and gives inf at x = 0 or 1)."""

    def forward(self, x, y):
        xp = self.xp
        with np.errstate(divide="ignore"):
            self.log_x = xp.maximum(xp.log(x), -100)
            self.log_1mx = xp.maximum(xp.log1p(-x), -100)
        self.x, self.y = x, y
        return -(y * self.log_x + (1 - y) * self.log_1mx)

    def backward(self, grad):
        gx = gy = None
        if self.needs_input_grad[0]:
            gx = grad * (self.x - self.y) / self.xp.maximum(self.x * (1 - self.x), _BCE_EPSILON)
        if self.needs_input_grad[1]:
            gy = grad * (self.log_1mx - self.log_x)
        return gx, gy


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    """-weight * (y log x + (1 - y) log(1 - x)) for probabilities x in [0, 1] (a sigmoid's
    output); logs clamped at -100 as PyTorch. ``weight`` broadcasts to input. ``reduction``
    is keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` precede it)."""
    op = "binary_cross_entropy"
    _float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _broadcast_weight(op, "weight", weight, input)
    _check_reduction(op, reduction)
    x = input.data
    if bool(((x < 0) | (x > 1)).any()):
        raise ValueError(
            f"{op}: all elements of input must be between 0 and 1 (probabilities); use binary_cross_entropy_with_logits for logits"
        )
    loss = BinaryCrossEntropy.apply(input, target)
    return _reduce(loss if weight is None else loss * weight, reduction)


class BinaryCrossEntropyWithLogits(Function):
    """BCE of sigmoid(x), written on the logit x so it never overflows. With l = 1 + (pos_weight - 1) y
    and softplus(-x) = log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|)::

        loss = (1 - y) x + l softplus(-x)      (= max(x, 0) - x y + log1p(e^-|x|) when l = 1)

    dloss/dx = (1 - y) - l sigmoid(-x), dloss/dy = -x + (pos_weight - 1) softplus(-x),
    dloss/dpos_weight = y softplus(-x).
    """

    def forward(self, x, y, pos_weight):
        xp = self.xp
        self.x, self.y, self.pos_weight = x, y, pos_weight
        self.softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        self.l = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        return (1 - y) * x + self.l * self.softplus

    def backward(self, grad):
        gx = gy = gp = None
        if self.needs_input_grad[0]:
            gx = grad * ((1 - self.y) - self.l * _logistic(self.xp, -self.x))
        if self.needs_input_grad[1]:
            gy = grad * (-self.x if self.pos_weight is None else -self.x + (self.pos_weight - 1) * self.softplus)
        if self.needs_input_grad[2]:
            gp = _unbroadcast(grad * self.y * self.softplus, self.pos_weight.shape)
        return gx, gy, gp


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """binary_cross_entropy(sigmoid(input), target), computed stably from the logits.

    ``weight`` scales each element; ``pos_weight`` (broadcast along the last dims, e.g. one
    per class) scales the positive term y log sigmoid(x). ``reduction`` and ``pos_weight``
    are keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` precede them)."""
    op = "binary_cross_entropy_with_logits"
    _float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _broadcast_weight(op, "weight", weight, input)
    _broadcast_weight(op, "pos_weight", pos_weight, input)
    _check_reduction(op, reduction)
    loss = BinaryCrossEntropyWithLogits.apply(input, target, pos_weight)
    return _reduce(loss if weight is None else loss * weight, reduction)


def _regression_loss(
    op: str, error: Any, input: Tensor, target: Tensor, reduction: str, weight: Tensor | None
) -> Tensor:
    """Shared checks and reduction of mse_loss and l1_loss; ``error`` maps input - target to the loss."""
    _float_tensor(op, "input", input)
    _float_tensor(op, "target", target, input)
    _check_reduction(op, reduction)
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(
            f"{op}: target shape {target.shape} does not broadcast with input shape {input.shape}"
        ) from None
    if target.shape != input.shape:
        warnings.warn(
            f"{op}: using a target size ({target.shape}) that is different to the input size ({input.shape}); "
            "it is broadcast, which is likely not what you want",
            stacklevel=3,
        )
    loss = error(input - target)
    if weight is None:
        return _reduce(loss, reduction)
    _float_tensor(op, "weight", weight, input)
    if weight.shape != input.shape:
        raise ValueError(f"{op}: weight shape {weight.shape} must equal input shape {input.shape}")
    return _reduce(loss * weight, reduction, weight.data.sum())


def mse_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean squared error (x - y)^2; with ``weight``, 'mean' is sum(w (x - y)^2) / sum(w), as PyTorch."""
    return _regression_loss("mse_loss", lambda d: d * d, input, target, reduction, weight)


def l1_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean absolute error |x - y| (gradient sign(x - y), 0 at 0 as PyTorch); ``weight`` as mse_loss."""
    return _regression_loss("l1_loss", lambda d: d.abs(), input, target, reduction, weight)


def dice_loss(input: Tensor, target: Tensor, *, eps: float = 1.0, reduction: str = "mean") -> Tensor:
    """Soft Dice loss of probabilities against a mask, one value per sample (MONAI's DiceLoss;
    PyTorch has none)::

        loss[n] = 1 - (2 sum_i p_i g_i + eps) / (sum_i p_i + sum_i g_i + eps)

    the sums running over every element of sample n (all dims but the first). input ``(N, ...)``:
    probabilities in [0, 1] (a sigmoid's output); target: the same shape and dtype, the mask
    (0/1, or soft). ``eps > 0`` scores an empty prediction of an empty mask 0, not 0/0, and
    makes a false positive on an empty mask cost ``S / (S + eps)`` for a predicted mass
    ``S = sum p``: a cost that grows with S, where a tiny eps would jump to 1. ``reduction``: the mean over samples (default), their sum, or ``"none"``,
    the ``(N,)`` losses. A composition of existing ops, so autograd gives the gradient.
    """
    op = "dice_loss"
    _float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _check_reduction(op, reduction)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, ...), a batch of at least 1-D samples, got shape {input.shape}")
    if not eps > 0:
        raise ValueError(f"{op}: eps must be positive (it defines the loss of an empty mask), got {eps}")
    if bool(((input.data < 0) | (input.data > 1)).any()):
        raise ValueError(
            f"{op}: all elements of input must be between 0 and 1 (probabilities); apply sigmoid to logits"
        )
    dims = tuple(range(1, input.ndim))
    overlap = (input * target).sum(dims)
    sizes = input.sum(dims) + target.sum(dims)
    return _reduce(1 - (2 * overlap + eps) / (sizes + eps), reduction)


# =========================================================================== shapes


class ConstantPad(Function):
    """y = x inside a block filled with ``value``; a negative width crops instead.
    dL/dx is the part of dL/dy that lies over x (zero over a cropped part)."""

    def forward(self, x, widths, value):
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, widths))
        kept = [(max(-before, 0), n - max(-after, 0)) for n, (before, after) in zip(x.shape, widths)]
        self.shape = x.shape
        self.source = tuple(slice(lo, hi) for lo, hi in kept)
        self.target = tuple(
            slice(max(before, 0), max(before, 0) + hi - lo) for (before, _), (lo, hi) in zip(widths, kept)
        )
        y = self.xp.full(shape, value, dtype=x.dtype)
        y[self.target] = x[self.source]
        return y

    def backward(self, grad):
        gx = self.xp.zeros(self.shape, dtype=grad.dtype)
        gx[self.source] = grad[self.target]
        return gx


_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` dims; ``pad`` lists (before, after) pairs starting from
    the LAST dim, as PyTorch: ``(left, right, top, bottom)`` for an image.

    'constant' fills with ``value`` (default 0) and crops for negative widths. 'reflect'
    (mirror without repeating the edge), 'replicate' (repeat the edge) and 'circular' (wrap
    around) pad 1 to 3 trailing dims of a batched or unbatched input, as PyTorch; they pick
    input elements by index, so the gradient adds up wherever an element was copied.
    """
    op = "pad"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    widths_flat = tuple(pad)
    if (
        len(widths_flat) % 2
        or len(widths_flat) // 2 > input.ndim
        or not all(isinstance(w, (int, np.integer)) for w in widths_flat)
    ):
        raise ValueError(
            f"{op}: pad must be an even number of ints, at most 2 per dim of input shape {input.shape}, got {pad!r}"
        )
    pairs = [(int(widths_flat[i]), int(widths_flat[i + 1])) for i in range(0, len(widths_flat), 2)][::-1]
    first = input.ndim - len(pairs)
    if mode == "constant":
        widths = [(0, 0)] * first + pairs
        if any(n + b + a < 0 for n, (b, a) in zip(input.shape, widths)):
            raise ValueError(f"{op}: pad {pad!r} crops more than input shape {input.shape} holds")
        return ConstantPad.apply(input, widths=widths, value=0 if value is None else value)
    if mode not in _NUMPY_PAD_MODES:
        raise ValueError(f"{op}: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if value not in (None, 0):
        raise ValueError(f"{op}: mode {mode!r} takes no value, got value={value!r}")
    if not 1 <= len(pairs) <= 3 or input.ndim not in (len(pairs) + 1, len(pairs) + 2):
        raise ValueError(
            f"{op}: mode {mode!r} pads the last 1-3 dims of a (N, C, ...) or (C, ...) input; got pad {pad!r} for input shape {input.shape}"
        )
    out = input
    for axis, (before, after) in enumerate(pairs, start=first):
        size = input.shape[axis]
        limit = size - 1 if mode == "reflect" else size
        if min(before, after) < 0 or max(before, after) > limit or size == 0:
            raise ValueError(
                f"{op}: mode {mode!r} needs padding in [0, {limit}] for dim {axis} of size {size} (input shape {input.shape}), got {(before, after)}"
            )
        index = np.pad(np.arange(size), (before, after), mode=_NUMPY_PAD_MODES[mode])
        out = out[(slice(None),) * axis + (index.tolist(),)]
    return out


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each index;
    ``num_classes=-1`` uses max(tensor) + 1."""
    op = "one_hot"
    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        got = f"dtype {tensor.dtype}" if isinstance(tensor, Tensor) else type(tensor).__name__
        raise TypeError(f"{op}: tensor must be an integer tensor of class indices, got {got}")
    xp, t = tensor._backend.xp, tensor.data
    if num_classes == -1:
        num_classes = int(t.max()) + 1 if t.size else 0
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"{op}: class values must be in [0, {num_classes}), got values in [{int(t.min())}, {int(t.max())}]"
        )
    return Tensor._wrap((t[..., None] == xp.arange(num_classes)).astype(int64), tensor._backend)
