"""Padding: pad, PyTorch's constant, reflect, replicate and circular modes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinymed.autograd import Function
from tinymed.tensor import Tensor


class _ConstantPad(Function):
    """y = x inside a block filled with ``value``; a negative width crops instead.
    dL/dx is the part of dL/dy that lies over x (zero over a cropped part)."""

    def forward(self, x, widths, value):
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, widths))
        kept = [(max(-before, 0), n - max(-after, 0)) for n, (before, after) in zip(x.shape, widths)]
        self.shape = x.shape
        self.source = tuple(slice(lo, hi) for lo, hi in kept)
        self.target = tuple(
            slice(max(before, 0), max(before, 0) + hi - lo) for (before, _), (lo, hi) in zip(widths, kept)
        )
        y = self.xp.full(shape, value, dtype=x.dtype)
        y[self.target] = x[self.source]
        return y

    def backward(self, grad):
        gx = self.xp.zeros(self.shape, dtype=grad.dtype)
        gx[self.source] = grad[self.target]
        return gx


_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` dims; ``pad`` lists (before, after) pairs starting from
    the LAST dim, as PyTorch: ``(left, right, top, bottom)`` for an image.

    'constant' fills with ``value`` (default 0) and crops for negative widths. 'reflect'
    (mirror without repeating the edge), 'replicate' (repeat the edge) and 'circular' (wrap
    around) pad 1 to 3 trailing dims of a batched or unbatched input, as PyTorch; they pick
    input elements by index, so the gradient adds up wherever an element was copied.
    """
    op = "pad"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    widths_flat = tuple(pad)
    if (
        len(widths_flat) % 2
        or len(widths_flat) // 2 > input.ndim
        or not all(isinstance(w, (int, np.integer)) for w in widths_flat)
    ):
        raise ValueError(
            f"{op}: pad must be an even number of ints, at most 2 per dim of input shape {input.shape}, got {pad!r}"
        )
    pairs = [(int(widths_flat[i]), int(widths_flat[i + 1])) for i in range(0, len(widths_flat), 2)][::-1]
    first = input.ndim - len(pairs)
    if mode == "constant":
        widths = [(0, 0)] * first + pairs
        if any(n + b + a < 0 for n, (b, a) in zip(input.shape, widths)):
            raise ValueError(f"{op}: pad {pad!r} crops more than input shape {input.shape} holds")
        return _ConstantPad.apply(input, widths=widths, value=0 if value is None else value)
    if mode not in _NUMPY_PAD_MODES:
        raise ValueError(f"{op}: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if value not in (None, 0):
        raise ValueError(f"{op}: mode {mode!r} takes no value, got value={value!r}")
    if not 1 <= len(pairs) <= 3 or input.ndim not in (len(pairs) + 1, len(pairs) + 2):
        raise ValueError(
            f"{op}: mode {mode!r} pads the last 1-3 dims of a (N, C, ...) or (C, ...) input; got pad {pad!r} for input shape {input.shape}"
        )
    out = input
    for axis, (before, after) in enumerate(pairs, start=first):
        size = input.shape[axis]
        limit = size - 1 if mode == "reflect" else size
        if min(before, after) < 0 or max(before, after) > limit or size == 0:
            raise ValueError(
                f"{op}: mode {mode!r} needs padding in [0, {limit}] for dim {axis} of size {size} (input shape {input.shape}), got {(before, after)}"
            )
        index = np.pad(np.arange(size), (before, after), mode=_NUMPY_PAD_MODES[mode])
        out = out[(slice(None),) * axis + (index.tolist(),)]
    return out
