"""Hypothesis strategies the test modules share: dtypes, shapes, arrays and window geometries.

A window geometry is what convolution and pooling slide over an image: per axis (height,
width) the input size, kernel size, stride, padding and dilation. :func:`window_geometries`
draws one whose output has at least one position; with ``pooling=True`` it also keeps every
window on the input (see :func:`every_window_touches_input`), which max pooling requires.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from helpers import FLOAT_DTYPES, output_size
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Pair = tuple[int, int]

dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**32 - 1)
rngs = st.integers(0, 2**16).map(np.random.default_rng)


def pairs(low: int, high: int) -> st.SearchStrategy[Pair]:
    """``(along H, along W)``, each in ``[low, high]``."""
    return st.tuples(st.integers(low, high), st.integers(low, high))


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 3) -> st.SearchStrategy:
    """Array shapes of ``min_dims`` to ``max_dims`` dimensions, each of ``min_side`` to ``max_side``."""
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def arrays(dtype: np.dtype, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Arrays of values in [-2, 2], exactly representable in ``dtype``."""
    return hnp.arrays(dtype, shape, elements=st.floats(-2, 2, width=np.dtype(dtype).itemsize * 8))


def every_window_touches_input(size: int, kernel: int, stride: int, padding: int, dilation: int) -> bool:
    """Along one axis: whether each window has a tap on the unpadded input, not only on padding.

    Padding at most half the kernel does not ensure it once the kernel is dilated: a 1-pixel
    input with padding 1 and dilation 2 puts both taps of a 2-wide window in the padding. Such
    a window has no maximum to record, and tinymed's max_pool2d refuses the geometry."""
    return all(
        any(0 <= i * stride - padding + q * dilation < size for q in range(kernel))
        for i in range(output_size(size, kernel, stride, padding, dilation))
    )


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A window geometry, each field ``(along H, along W)``. ``stride`` is None where the
    op's default (the kernel size) is meant; ``output_padding`` is the transposed convolution's."""

    size: Pair
    kernel: Pair
    stride: Pair | None
    padding: Pair
    dilation: Pair
    output_padding: Pair = (0, 0)


@st.composite
def window_geometries(
    draw,
    max_kernel: int = 3,
    max_stride: int = 3,
    max_padding: int = 2,
    max_dilation: int = 2,
    max_extra: int = 4,
    pooling: bool = False,
    default_stride: bool = False,
) -> Geometry:
    """A :class:`Geometry` whose (dilated) kernel fits the padded input, with up to
    ``max_extra`` more rows and columns than the smallest such input.

    ``pooling`` keeps ``padding <= kernel_size // 2`` (as PyTorch requires) and grows the input
    until every window touches it (an input as wide as the dilation always does);
    ``default_stride`` lets the stride be None."""
    kernel = draw(pairs(1, max_kernel))
    stride = draw(st.none() | pairs(1, max_stride)) if default_stride else draw(pairs(1, max_stride))
    dilation = draw(pairs(1, max_dilation))
    padding = tuple(draw(st.integers(0, k // 2 if pooling else max_padding)) for k in kernel)
    smallest = [max(1, d * (k - 1) + 1 - 2 * p) for k, p, d in zip(kernel, padding, dilation)]
    size = [draw(st.integers(s, s + max_extra)) for s in smallest]
    moves = kernel if stride is None else stride
    for axis in range(2) if pooling else ():
        while not every_window_touches_input(size[axis], kernel[axis], moves[axis], padding[axis], dilation[axis]):
            size[axis] += 1
    return Geometry(tuple(size), kernel, stride, padding, dilation)


@st.composite
def conv_transpose_geometries(draw) -> Geometry:
    """A :func:`window_geometries` draw for conv_transpose2d: ``output_padding`` below
    ``max(stride, dilation)`` as PyTorch requires, and an input large enough that the output
    ``(H - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1`` is positive."""
    geometry = draw(window_geometries())
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(geometry.stride, geometry.dilation))
    size = tuple(max(n, -(-(2 * p + 1) // s) + 1) for n, p, s in zip(geometry.size, geometry.padding, geometry.stride))
    return dataclasses.replace(geometry, size=size, output_padding=output_padding)
