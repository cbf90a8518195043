"""one_hot: class indices as rows of zeros with a one at each index."""

from __future__ import annotations

from tinymed.dtypes import int64
from tinymed.tensor import Tensor


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 tensor of shape (*tensor.shape, num_classes) with a 1 at each index;
    ``num_classes=-1`` uses max(tensor) + 1."""
    op = "one_hot"
    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        got = f"dtype {tensor.dtype}" if isinstance(tensor, Tensor) else type(tensor).__name__
        raise TypeError(f"{op}: tensor must be an integer tensor of class indices, got {got}")
    xp, t = tensor.device.backend.xp, tensor.array
    if num_classes == -1:
        num_classes = int(t.max()) + 1 if t.size else 0
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"{op}: class values must be in [0, {num_classes}), got values in [{int(t.min())}, {int(t.max())}]"
        )
    return Tensor.wrap((t[..., None] == xp.arange(num_classes)).astype(int64), tensor.device)
