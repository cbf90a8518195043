"""Flatten: the bridge from convolutional feature maps to fully connected layers."""

from __future__ import annotations

from tinymed.nn.module import Module
from tinymed.tensor import Tensor


class Flatten(Module):
    """Merges dims ``start_dim..end_dim`` into one: ``(N, C, H, W) -> (N, C*H*W)`` by default
    (dim 0, the batch, is kept)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
