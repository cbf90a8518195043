"""Convolution: conv2d and its adjoint, conv_transpose2d (the DCGAN generator's upsampling).

The formula, cross-correlation as PyTorch computes it (no kernel flip)::

    y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

The forward and both backward products are backend primitives (``conv2d_forward``,
``conv2d_grad_input``, ``conv2d_grad_weight``; see :class:`tinymed.backends.Backend`). The
transposed convolution reuses the same three, with the roles of forward and backward swapped.

A grouped convolution (``groups=g``; depthwise when g is the channel count) is g independent
convolutions side by side: input channels, output channels, weights and bias split into g
equal blocks, block i of the output depending only on block i of the input. It is computed
here, above the backends, by calling the primitive once per block and joining the results
(:func:`_by_group`), so every backend runs it with the contract unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinymed.autograd import Function
from tinymed.ops.arguments import float_tensor, image, pair, parameter, window_fits
from tinymed.ops.pad import pad
from tinymed.tensor import Tensor


def _conv_operands(op: str, input: Tensor, weight: Tensor, bias: Tensor | None, groups: int, transposed: bool) -> None:
    """The checks conv2d and conv_transpose2d share. The weight is (C_out, C_in / groups, KH, KW),
    or (C_in, C_out / groups, KH, KW) when ``transposed``; both channel counts must divide into
    ``groups`` blocks, and the bias has C_out entries."""
    per_group = "" if groups == 1 else " / groups"
    layout = f"(C_in, C_out{per_group}, KH, KW)" if transposed else f"(C_out, C_in{per_group}, KH, KW)"
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    float_tensor(op, "input", input)
    float_tensor(op, "weight", weight, input)
    image(op, input)
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {layout}, got shape {weight.shape}")
    channels = input.shape[-3]
    expected = weight.shape[0] if transposed else weight.shape[1] * groups
    if channels != expected:
        raise ValueError(
            f"{op}: input has {channels} channels but weight {weight.shape} {layout}"
            f"{'' if groups == 1 else f' with groups={groups}'} expects {expected} (input shape {input.shape})"
        )
    if weight.shape[0] % groups:
        raise ValueError(f"{op}: weight {weight.shape} {layout}: dim 0 does not split into groups={groups} blocks")
    parameter(op, "bias", bias, input, (weight.shape[1] * groups if transposed else weight.shape[0],))


def _blocks(array: Any, groups: int, axis: int) -> list[Any]:
    """``array`` cut into ``groups`` equal blocks along ``axis`` (``None`` stays ``None``)."""
    if array is None:
        return [None] * groups
    size = array.shape[axis] // groups
    index = [slice(None)] * array.ndim
    blocks = []
    for g in range(groups):
        index[axis] = slice(g * size, (g + 1) * size)
        blocks.append(array[tuple(index)])
    return blocks


def _by_group(
    xp: Any, groups: int, primitive: Callable, operands: list[tuple[Any, int]], settings: tuple, out_axis: int
) -> Any:
    """Run ``primitive`` once per group on block g of each operand (an ``(array, axis)`` pair,
    cut along ``axis``), followed by ``settings``; join the results along ``out_axis``.
    One group is the primitive itself."""
    if groups == 1:
        return primitive(*(array for array, _ in operands), *settings)
    blocks = zip(*(_blocks(array, groups, axis) for array, axis in operands))
    return xp.concatenate([primitive(*block, *settings) for block in blocks], axis=out_axis)


class _Conv2d(Function):
    """Cross-correlation, as PyTorch (no kernel flip)::

        y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c_0(o) + c, i*sh + p*dh, j*sw + q*dw]

    x (N, C, H, W), w (O, C/g, KH, KW), b (O,) -> y (N, O, OH, OW) with
    OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1; c_0(o) is the first input channel of output
    channel o's group (0 when g = 1).

    Backward: dL/dx is the transposed convolution of dL/dy with w (``conv2d_grad_input``),
    dL/dw the correlation of x with dL/dy (``conv2d_grad_weight``), dL/db = sum_{n,i,j} dL/dy;
    each per group.
    """

    def forward(self, x, weight, bias, stride, padding, dilation, groups):
        self.x, self.weight, self.groups, self.geometry = x, weight, groups, (stride, padding, dilation)
        operands = [(x, 1), (weight, 0), (bias, 0)]
        return _by_group(self.xp, groups, self.backend.conv2d_forward, operands, self.geometry, 1)

    def backward(self, grad):
        gx = gw = gb = None
        xp, groups, backend = self.xp, self.groups, self.backend
        if self.needs_input_grad[0]:
            settings = (tuple(self.x.shape[2:]), *self.geometry)
            gx = _by_group(xp, groups, backend.conv2d_grad_input, [(grad, 1), (self.weight, 0)], settings, 1)
        if self.needs_input_grad[1]:
            settings = (tuple(self.weight.shape[2:]), *self.geometry)
            gw = _by_group(xp, groups, backend.conv2d_grad_weight, [(self.x, 1), (grad, 1)], settings, 0)
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

    weight (C_out, C / groups, KH, KW), bias (C_out,). ``padding`` may also be ``"valid"`` (none)
    or ``"same"`` (output as large as the input; stride 1 only, as PyTorch; an odd total
    padding puts the extra row/column at the bottom/right, as PyTorch). ``groups`` splits the
    channels into that many independent convolutions (``groups=C``: depthwise).
    """
    op = "conv2d"
    _conv_operands(op, input, weight, bias, groups, transposed=False)
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
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
    padding = pair(op, "padding", padding, 0)
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    window_fits(op, input.shape[2:], kernel, padding, dilation)
    return _Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


class _ConvTranspose2d(Function):
    """The transposed convolution: the adjoint of :class:`_Conv2d` in its input.

    x (N, C_in, H, W), w (C_in, C_out/g, KH, KW), b (C_out,) -> y (N, C_out, HO, WO) with
    HO = (H - 1)*sh - 2*ph + dh*(KH - 1) + output_padding_h + 1. Reading w as a convolution
    weight (O = C_in, C = C_out), y is what ``conv2d_grad_input`` computes for a
    "grad_output" x (per group, as the convolution)::

        y[n,c,h,w] = b[c] + sum over (o,i,j,p,q) with i*sh + p*dh = h + ph, j*sw + q*dw = w + pw
                            of x[n,o,i,j] * w[o,c,p,q]

    Backward swaps the roles: dL/dx = conv2d(dL/dy, w) and dL/dw = conv2d_grad_weight with
    dL/dy as the input and x as the output gradient.
    """

    def forward(self, x, weight, bias, output_size, stride, padding, dilation, groups):
        self.input_size, self.groups = x.shape[2:], groups
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
        settings = (tuple(output_size), stride, padding, dilation)
        y = _by_group(self.xp, groups, self.backend.conv2d_grad_input, [(x, 1), (weight, 0)], settings, 1)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    def backward(self, grad):
        gx = gw = gb = None
        xp, groups, backend = self.xp, self.groups, self.backend
        if self.needs_input_grad[0]:
            h, w = self.input_size
            operands = [(grad, 1), (self.weight, 0), (None, 0)]
            gx = _by_group(xp, groups, backend.conv2d_forward, operands, self.geometry, 1)[:, :, :h, :w]
        if self.needs_input_grad[1]:
            settings = (tuple(self.weight.shape[2:]), *self.geometry)
            gw = _by_group(xp, groups, backend.conv2d_grad_weight, [(grad, 1), (self.x, 1)], settings, 0)
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

    input (N, C_in, H, W) or (C_in, H, W), weight (C_in, C_out / groups, KH, KW) as PyTorch,
    bias (C_out,). ``output_padding`` adds rows/columns at the bottom/right of the output
    (it must be smaller than stride or dilation). ``groups`` as in :func:`conv2d`.
    """
    op = "conv_transpose2d"
    _conv_operands(op, input, weight, bias, groups, transposed=True)
    stride = pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, 0)
    output_padding = pair(op, "output_padding", output_padding, 0)
    dilation = pair(op, "dilation", dilation, 1)
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
    return _ConvTranspose2d.apply(
        input, weight, bias, output_size=output_size, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
