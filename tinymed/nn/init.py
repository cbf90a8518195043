"""Weight initialisation (mirrors ``torch.nn.init``).

Each function fills a tensor in place, outside autograd (as PyTorch's do, under ``no_grad``),
with numbers drawn from ``generator=`` or tinymed's global generator (:mod:`tinymed.random`), so
``tm.manual_seed`` makes a model's initial weights reproducible. PyTorch code such as
``nn.init.normal_(m.weight.data, 0.0, 0.02)`` ports unchanged; a NumPy array is filled too.

Why the scales: a layer computes ``y = sum_i w_i x_i`` over ``fan_in`` inputs, so with
independent zero-mean weights ``Var(y) = fan_in * Var(w) * E[x^2]``. Keeping the signal's
size from layer to layer asks for ``Var(w) = gain^2 / fan_in`` (He / Kaiming, with the
``gain`` making up for what the non-linearity removes), or ``2 / (fan_in + fan_out)`` to
balance the forward and backward passes (Glorot / Xavier). A uniform ``U(-b, b)`` has
variance ``b^2 / 3``, hence the ``sqrt(3)`` in the uniform versions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinymed import random
from tinymed.autograd import no_grad
from tinymed.tensor import Tensor


def _shape(tensor: Any) -> tuple[int, ...]:
    if not isinstance(tensor, (Tensor, np.ndarray)):
        raise TypeError(f"nn.init: expects a tinymed Tensor or a NumPy array, got {type(tensor).__name__}")
    return tuple(tensor.shape)


def _write(tensor: Any, values: np.ndarray) -> Any:
    """Copy host ``values`` into ``tensor`` in place (a Tensor of any backend, or an array)."""
    if isinstance(tensor, Tensor):
        with no_grad():
            tensor.copy_(values)
    else:
        tensor[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which a non-linearity's output standard deviation should be scaled
    back up: 1 for linear layers and sigmoid, 5/3 for tanh, sqrt(2) for ReLU,
    sqrt(2 / (1 + slope^2)) for leaky ReLU (slope ``param``, default 0.01), 3/4 for SELU."""
    if nonlinearity in (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    ):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: Any) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight laid out as PyTorch does: ``(out, in, *kernel)``,
    so ``fan_in = in * prod(kernel)`` and ``fan_out = out * prod(kernel)``. (A transposed
    convolution's weight is ``(in, out, *kernel)``; PyTorch reads it the same way.)"""
    shape = _shape(tensor)
    if len(shape) < 2:
        raise ValueError(
            f"nn.init: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions, got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _calculate_correct_fan(tensor: Any, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"nn.init: mode {mode!r} not supported, please use one of 'fan_in', 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator: random.Generator | None = None) -> Any:
    """Fill with samples of U(a, b)."""
    return _write(tensor, random.generator(generator, "nn.init").uniform(a, b, _shape(tensor)))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator: random.Generator | None = None) -> Any:
    """Fill with samples of N(mean, std^2)."""
    return _write(tensor, random.generator(generator, "nn.init").normal(mean, std, _shape(tensor)))


def constant_(tensor: Any, val: float) -> Any:
    """Fill with ``val``."""
    return _write(tensor, np.full(_shape(tensor), val))


def ones_(tensor: Any) -> Any:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Any) -> Any:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator: random.Generator | None = None) -> Any:
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator: random.Generator | None = None) -> Any:
    """Glorot normal: N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(
    tensor: Any,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: random.Generator | None = None,
) -> Any:
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``, ``gain = calculate_gain(nonlinearity, a)``."""
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor: Any,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: random.Generator | None = None,
) -> Any:
    """He normal: N(0, std^2) with ``std = gain / sqrt(fan)``."""
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def default_affine_init(weight: Tensor, bias: Tensor | None) -> None:
    """PyTorch's default for Linear and convolution layers: ``kaiming_uniform_(a=sqrt(5))``
    on the weight, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias drawn from
    the same interval."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
