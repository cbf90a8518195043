"""The affine layer ``y = x W^T + b`` (Linear) and the layer that does nothing (Identity)."""

from __future__ import annotations

from typing import Any

from tinymed import functional as F
from tinymed.creation import zeros
from tinymed.nn import init
from tinymed.nn.module import Module
from tinymed.nn.parameter import Parameter
from tinymed.tensor import Tensor


class Identity(Module):
    """Returns its input; a placeholder where a layer is switched off (any arguments are
    accepted and ignored, as in PyTorch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """``y = x W^T + b`` on the last dim: input ``(*, in_features)`` -> ``(*, out_features)``.

    ``weight`` is ``(out_features, in_features)``, ``bias`` ``(out_features,)``; both start
    as U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        for what, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Linear: {what} must be an int >= 0, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(zeros(out_features, in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(zeros(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_affine_init(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
