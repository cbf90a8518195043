"""Pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d.

Max pooling is a formula of its own, ``y[n,c,i,j] = max_{p,q} x_pad[n,c,i*sh+p*dh,j*sw+q*dw]``,
with backend primitives for its forward (which also returns where each maximum was) and its
backward. The averages are linear, so they are written with existing ops: a convolution with a
kernel of ones, and two matrix products for the adaptive bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinymed.autograd import Function
from tinymed.ops.arguments import float_tensor, image, only_default, pair, window_fits
from tinymed.ops.conv import conv2d
from tinymed.ops.operands import constant
from tinymed.tensor import Tensor


def _window_arguments(
    op: str, input: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """The checks max and average pooling share; returns (kernel, stride, padding) as pairs,
    the stride defaulting to the kernel size as in PyTorch."""
    only_default(op, "ceil_mode", ceil_mode, False)
    float_tensor(op, "input", input)
    image(op, input)
    kernel = pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else pair(op, "stride", stride, 1)
    return kernel, stride, pair(op, "padding", padding, 0)


def _pool_padding(op: str, kernel: tuple[int, int], padding: tuple[int, int]) -> None:
    """A pooling window may overhang the input by at most half of itself (PyTorch's rule)."""
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} must be at most half of kernel_size {kernel}")


class _MaxPool2d(Function):
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
    kernel, stride, padding = _window_arguments(op, input, kernel_size, stride, padding, ceil_mode)
    dilation = pair(op, "dilation", dilation, 1)
    if input.ndim == 3:
        out = max_pool2d(input.unsqueeze(0), kernel, stride, padding, dilation, ceil_mode, return_indices)
        return (out[0].squeeze(0), out[1].squeeze(0)) if return_indices else out.squeeze(0)
    _pool_padding(op, kernel, padding)
    window_fits(op, input.shape[2:], kernel, padding, dilation)
    _windows_touch_input(op, input.shape[2:], kernel, stride, padding, dilation)
    y, indices = _MaxPool2d.apply(input, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
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
    ones, so it reuses :func:`tinymed.ops.conv.conv2d`, forward and backward. The divisor is
    ``divisor_override``, else KH*KW (``count_include_pad``), else the number of real
    (unpadded) pixels in the window, which is that same convolution applied to ones.
    Only ``ceil_mode=False``.
    """
    op = "avg_pool2d"
    kernel, stride, padding = _window_arguments(op, input, kernel_size, stride, padding, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, int) or divisor_override <= 0):
        raise ValueError(f"{op}: divisor_override must be a positive int, got {divisor_override!r}")
    if input.ndim == 3:
        return avg_pool2d(
            input.unsqueeze(0), kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
        ).squeeze(0)
    _pool_padding(op, kernel, padding)
    window_fits(op, input.shape[2:], kernel, padding, (1, 1))
    n, c, h, w = input.shape
    ones = constant(np.ones((1, 1, *kernel), dtype=input.dtype), input)
    sums = conv2d(input.reshape(n * c, 1, h, w), ones, None, stride, padding)
    if divisor_override is not None:
        divisor: Any = divisor_override
    elif count_include_pad:
        divisor = kernel[0] * kernel[1]
    else:
        divisor = conv2d(constant(np.ones((1, 1, h, w), dtype=input.dtype), input), ones, None, stride, padding)
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
    float_tensor(op, "input", input)
    image(op, input)
    sizes = (
        (output_size, output_size)
        if output_size is None or isinstance(output_size, (int, np.integer))
        else tuple(output_size)
    )
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int, None or a pair, got {output_size!r}")
    h, w = input.shape[-2:]
    sizes = tuple(n if s is None else s for s, n in zip(sizes, (h, w)))
    pair(op, "output_size", sizes, 1)
    rows = constant(_bin_averages(h, sizes[0], input.dtype), input)
    cols = constant(_bin_averages(w, sizes[1], input.dtype).T, input)
    return rows @ (input @ cols)
