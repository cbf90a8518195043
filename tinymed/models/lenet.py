"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998), the classic listing, for 28x28 images.

The original network reads 32x32 images; MedMNIST's are 28x28. Padding the first convolution
by 2 pixels shows it a 32x32 field, so every later size is the original's (this is the usual
fix, used for MNIST as well)::

    input        C x 28 x 28
    conv1 5x5    6 x 28 x 28    (padding 2)   ReLU
    max pool 2   6 x 14 x 14
    conv2 5x5   16 x 10 x 10                  ReLU
    max pool 2  16 x  5 x  5    -> flatten 400
    fc1                120                    ReLU
    fc2                 84                    ReLU    (the features)
    fc3        num_classes                            (the logits)

As in today's textbook listing (and PyTorch's tutorial), ReLU and max pooling stand in for the
original's scaled tanh and trainable average-pooling "subsampling" layers.
"""

from __future__ import annotations

from typing import Any

import tinymed.functional as F
from tinymed import nn
from tinymed.tensor import Tensor


class LeNet(nn.Module):
    """LeNet-5 for ``(N, in_channels, image_size, image_size)`` images (28x28 by default)."""

    # Grad-CAM's default target: the last convolution's feature map.
    gradcam_layer = "conv2"

    def __init__(self, in_channels: int = 1, num_classes: int = 2, image_size: int = 28) -> None:
        super().__init__()
        flat_side = (image_size // 2 - 4) // 2
        if flat_side < 1:
            raise ValueError(f"LeNet: image_size must be at least 12, got {image_size}")
        self.config: dict[str, Any] = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * flat_side * flat_side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The 84 penultimate features ``(N, 84)``."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.relu(self.fc2(x))

    def forward(self, x: Tensor) -> Tensor:
        """The logits ``(N, num_classes)``."""
        return self.fc3(self.forward_features(x))
