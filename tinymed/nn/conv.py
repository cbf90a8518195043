"""Convolution layers: Conv2d and its transpose, ConvTranspose2d.

Both hold a weight and a bias and call :func:`tinymed.functional.conv2d` /
:func:`~tinymed.functional.conv_transpose2d`; see there for the formulas and output sizes.
Weight layouts are PyTorch's: ``(out_channels, in_channels / groups, KH, KW)`` for Conv2d
and ``(in_channels, out_channels / groups, KH, KW)`` for ConvTranspose2d (a transposed
convolution is the backward pass of the convolution that maps its output back to its
input, so it keeps that convolution's weight). ``groups=g`` makes g independent convolutions
over blocks of the channels (``groups=in_channels``: depthwise).
"""

from __future__ import annotations

from typing import Any

from tinymed import functional as F
from tinymed.creation import zeros
from tinymed.nn import init
from tinymed.nn.module import Module
from tinymed.nn.parameter import Parameter
from tinymed.ops.arguments import pair
from tinymed.tensor import Tensor

IntOrPair = int | tuple[int, int]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: settings, parameters, initialisation, repr."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair,
        padding: IntOrPair | str,
        dilation: IntOrPair,
        transposed: bool,
        output_padding: IntOrPair,
        groups: int,
        bias: bool,
        padding_mode: str,
        device: Any,
        dtype: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for what, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(name, "kernel_size", kernel_size, 1)
        self.stride = pair(name, "stride", stride, 1)
        self.padding = padding if isinstance(padding, str) else pair(name, "padding", padding, 0)
        self.dilation = pair(name, "dilation", dilation, 1)
        self.transposed = transposed
        self.output_padding = pair(name, "output_padding", output_padding, 0)
        self.groups = groups
        self.padding_mode = padding_mode
        if transposed:
            shape = (in_channels, out_channels // groups)
        else:
            shape = (out_channels, in_channels // groups)
        self.weight = Parameter(zeros(*shape, *self.kernel_size, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(zeros(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_affine_init(self.weight, self.bias)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as in PyTorch) over ``(N, C_in, H, W)`` images:

    ``y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``,
    giving ``(N, C_out, H_out, W_out)`` with ``H_out = (H + 2 ph - dh (KH - 1) - 1) // sh + 1``.
    ``padding`` may be ``"same"`` or ``"valid"``; ``padding_mode`` other than ``"zeros"``
    pads the image by reflection, replication or wrapping around before convolving."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair | str = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            False,
            0,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        if self.padding_mode == "zeros":
            return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        padded = F.pad(input, self._pad_widths(), mode=self.padding_mode)
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def _pad_widths(self) -> tuple[int, int, int, int]:
        """``(left, right, top, bottom)`` for F.pad; for "same", an odd total padding puts
        the extra pixel at the right/bottom, as PyTorch."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            (top, left) = (t // 2 for t in totals)
            return (left, totals[1] - left, top, totals[0] - top)
        return (self.padding[1], self.padding[1], self.padding[0], self.padding[0])


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution ("deconvolution"), the upsampling layer of a DCGAN
    generator: every input pixel stamps a weighted copy of the kernel into the output.
    ``H_out = (H - 1) sh - 2 ph + dh (KH - 1) + output_padding + 1``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        output_padding: IntOrPair = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrPair = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair of ints, got {padding!r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            True,
            output_padding,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        return F.conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )
