"""MedCNN: tinymed's default classifier, a small CNN with a self-attention block.

::

    input          C x 28 x 28
    block1          32 x 14 x 14   conv 3x3 - BatchNorm - ReLU - max pool 2
    block2          64 x  7 x  7   conv 3x3 - BatchNorm - ReLU - max pool 2
    block3         128 x  7 x  7   conv 3x3 - BatchNorm - ReLU
    attention      128 x  7 x  7   x + gamma * MultiheadAttention(the 49 positions as tokens)
    global pool    128             mean over the 7 x 7 positions (the features)
    dropout, linear num_classes    (the logits)

The convolutions see a few pixels each; the attention block lets every position of the last
feature map look at every other (the two lungs, say) before pooling. Its output is added to
the input scaled by ``gamma``, a learned scalar that starts at 0 (Zhang et al., "Self-Attention
Generative Adversarial Networks", 2019): the network starts as a plain CNN and takes as much
attention as the loss asks for. The convolutions have no bias because BatchNorm's shift
replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tinymed
from tinymed import nn
from tinymed.tensor import Tensor


def _conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


class SpatialSelfAttention(nn.Module):
    """Self-attention over the positions of a feature map, added back to it.

    ``(N, C, H, W)``: the H*W positions become a sequence of C-dimensional tokens,
    ``out = softmax(Q K^T / sqrt(d)) V`` mixes them (``num_heads`` heads of C / num_heads
    dimensions), and the result is ``x + gamma * out`` with the same shape as x.
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.gamma = nn.Parameter(tinymed.zeros(1))

    @staticmethod
    def tokens(x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, H*W, C)``: one token per position, in row-major order."""
        return x.flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        tokens = self.tokens(x)
        out, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return x + self.gamma * out.transpose(1, 2).reshape(n, c, h, w)

    def attention_weights(self, x: Tensor) -> Tensor:
        """The attention probabilities for input x, averaged over the heads: ``(N, H*W, H*W)``,
        row i the weights position i gives to every position."""
        tokens = self.tokens(x)
        _, weights = self.attention(tokens, tokens, tokens, need_weights=True, average_attn_weights=True)
        return weights


class MedCNN(nn.Module):
    """Conv-BatchNorm-ReLU blocks (each but the last halves the image), a self-attention block
    over the last feature map, global average pooling, dropout and a linear head."""

    # Grad-CAM's default target: the last convolution block, before attention mixes positions.
    gradcam_layer = "block3"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (32, 64, 128),
        num_heads: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 3:
            raise ValueError(f"MedCNN: channels must list the widths of the 3 blocks, got {channels}")
        if channels[-1] % num_heads:
            raise ValueError(f"MedCNN: the last block's {channels[-1]} channels must divide into num_heads={num_heads}")
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": channels,
            "num_heads": num_heads,
            "dropout": dropout,
        }
        self.block1 = _conv_block(in_channels, channels[0], pool=True)
        self.block2 = _conv_block(channels[0], channels[1], pool=True)
        self.block3 = _conv_block(channels[1], channels[2], pool=False)
        self.attention = SpatialSelfAttention(channels[2], num_heads)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels[2], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled features ``(N, channels[-1])`` the head classifies."""
        x = self.attention(self.block3(self.block2(self.block1(x))))
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """The logits ``(N, num_classes)``."""
        return self.fc(self.dropout(self.forward_features(x)))
