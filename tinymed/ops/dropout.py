"""Dropout: zero random elements while training, scale the rest so the expectation is kept."""

from __future__ import annotations

from tinymed import random
from tinymed.ops.arguments import float_tensor
from tinymed.ops.operands import constant
from tinymed.tensor import Tensor


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), so the
    expectation is unchanged (inverted dropout). The mask is drawn from tinymed's generator
    (:func:`tinymed.manual_seed`); the gradient passes through the same mask. Identity when
    not ``training``. ``inplace`` is accepted for PyTorch code; the result is a new tensor."""
    op = "dropout"
    float_tensor(op, "input", input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    keep = random.generator().random(input.shape) >= p
    mask = keep * (0.0 if p == 1 else 1.0 / (1.0 - p))
    return input * constant(mask.astype(input.dtype), input)
