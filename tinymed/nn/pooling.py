"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (no parameters; each holds its
settings and calls the functional op of the same name)."""

from __future__ import annotations

from typing import Any

from tinymed import functional as F
from tinymed.nn.module import Module
from tinymed.tensor import Tensor

IntOrPair = int | tuple[int, int]


class MaxPool2d(Module):
    """``y[n,c,i,j] = max over the window of x`` (padding counts as -inf); ``stride``
    defaults to ``kernel_size`` (non-overlapping windows). With ``return_indices`` the
    forward also returns where each maximum was (flat ``h * W + w``)."""

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        dilation: IntOrPair = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Any:
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """``y[n,c,i,j] = mean over the window of x``; ``count_include_pad`` decides whether
    padded zeros count in the mean's denominator, ``divisor_override`` replaces it."""

    def __init__(
        self,
        kernel_size: IntOrPair,
        stride: IntOrPair | None = None,
        padding: IntOrPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pools any ``(H, W)`` to ``output_size``: output cell ``i`` averages input
    rows ``floor(i H / OH)`` to ``ceil((i + 1) H / OH) - 1`` (likewise columns).
    ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
