"""Dropout: in training, zero each element with probability ``p`` and scale the survivors
by ``1 / (1 - p)`` so the expected value is unchanged; in evaluation, the identity."""

from __future__ import annotations

from tinymed import functional as F
from tinymed.nn.module import Module
from tinymed.tensor import Tensor


class Dropout(Module):
    """Randomly zeroes elements while ``self.training`` (masks drawn from tinymed's
    generator). ``inplace`` is accepted for PyTorch code and returns a new tensor."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be between 0 and 1, got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
