"""UNet: a small U-Net (Ronneberger, Fischer and Brox, 2015) that gives every pixel a logit.

A classifier shrinks an image to one answer; a segmenter must answer at every pixel. The
U-Net's encoder shrinks the image as a CNN does (conv blocks, max pooling), so that its
deepest features see a wide context; its decoder grows it back with learned 2x2 transposed
convolutions, and before each of its conv blocks it concatenates the encoder's map of the same
size (the skip connection), which still knows exactly where the edges were. For
``UNet(in_channels=1, out_channels=1, base_channels=8, depth=2)`` on a 28x28 image::

    input                        1 x 28 x 28
    down[0]  conv block          8 x 28 x 28  ----------------- skip 0 ----------.
    max pool 2                   8 x 14 x 14                                      |
    down[1]  conv block         16 x 14 x 14  ---- skip 1 ----.                   |
    max pool 2                  16 x  7 x  7                   |                  |
    bottom   conv block         32 x  7 x  7                   |                  |
    up[0]    transposed 2x2/2   16 x 14 x 14  cat skip 1  ->  32 x 14 x 14         |
    decode[0] conv block        16 x 14 x 14                                      |
    up[1]    transposed 2x2/2    8 x 28 x 28  cat skip 0  ->  16 x 28 x 28  <------'
    decode[1] conv block         8 x 28 x 28
    head     conv 1x1            1 x 28 x 28   (logits: sigmoid for probabilities)

In general, level k (0 at the top) has ``base_channels * 2**k`` channels and the image's size
halved k times (rounded down by each pooling); the bottom has ``base_channels * 2**depth``.
A conv block is two (3x3 convolution with padding 1, BatchNorm, ReLU): it keeps the size.
Where a pooling rounded an odd size down (28 -> 14 -> 7 -> 3 at depth 3), the transposed
convolution gives back one row or column too few (3 -> 6, against a skip of 7), and the
upsampled map is zero-padded at its bottom and right to the skip's size before the
concatenation. (The original U-Net used unpadded convolutions and cropped the skip instead.)
"""

from __future__ import annotations

from typing import Any

import tinymed
import tinymed.functional as F
from tinymed import nn
from tinymed.tensor import Tensor

__all__ = ["UNet"]


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    # No bias in the convolutions: BatchNorm's shift takes its place.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """U-Net: ``(N, in_channels, H, W)`` images to ``(N, out_channels, H, W)`` logits.

    ``depth`` poolings (each image side must stay at least 1 pixel: ``H, W >= 2**depth``);
    level k has ``base_channels * 2**k`` channels. Layers: ``down`` (depth conv blocks),
    ``bottom``, ``up`` (depth transposed convolutions, deepest first), ``decode`` (depth conv
    blocks), ``head`` (1x1 convolution). The shapes at every level are in the module docstring.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 8, depth: int = 2) -> None:
        super().__init__()
        if min(in_channels, out_channels, base_channels, depth) < 1:
            raise ValueError(
                "UNet: in_channels, out_channels, base_channels and depth must be positive, got "
                f"{in_channels}, {out_channels}, {base_channels} and {depth}"
            )
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "base_channels": base_channels,
            "depth": depth,
        }
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.down = nn.ModuleList([_conv_block(c, w) for c, w in zip([in_channels, *widths], widths[:-1])])
        self.bottom = _conv_block(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[k + 1], widths[k], kernel_size=2, stride=2) for k in reversed(range(depth))]
        )
        self.decode = nn.ModuleList([_conv_block(2 * widths[k], widths[k]) for k in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """The logits ``(N, out_channels, H, W)`` of ``(N, in_channels, H, W)`` images."""
        depth = self.config["depth"]
        if x.ndim != 4 or min(x.shape[2:]) < 2**depth:
            raise ValueError(
                f"UNet: input must be (N, C, H, W) with H and W at least 2**depth = {2**depth}, got shape {x.shape}"
            )
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, block, skip in zip(self.up, self.decode, reversed(skips)):
            x = up(x)
            # An odd size was rounded down by the pooling: pad the bottom and right to the skip's size.
            short_h, short_w = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
            if short_h or short_w:
                x = F.pad(x, (0, short_w, 0, short_h))
            x = block(tinymed.cat([skip, x], dim=1))
        return self.head(x)
