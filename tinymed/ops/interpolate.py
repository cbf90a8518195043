"""Resampling an image to another size: ``interpolate`` (nearest, linear/bilinear, area).

Each output pixel is a fixed weighted sum of input pixels, and the weights along the rows do
not depend on the column (the resampling is separable). So a resize is two matrix products::

    y[n, c] = R @ x[n, c] @ C^T        R (OH, H), C (OW, W)

where row i of R holds the weights output row i gives to the input rows (one 1 for nearest,
two weights summing to 1 for bilinear). The backward is that of the matrix products,
``dL/dx = R^T dL/dy C``: each input pixel collects the gradient of every output pixel that
read it, in the same proportions. A 3-D ``(N, C, L)`` input has only the column matrix.

Where output position i reads from, as PyTorch computes it, with ``scale = in / out`` (or
``1 / scale_factor`` when a scale factor was given and ``recompute_scale_factor`` is not True):

* ``nearest``: input ``floor(i * scale)``; ``nearest-exact``: ``floor((i + 0.5) * scale)``;
* ``linear``/``bilinear``: input coordinate ``(i + 0.5) * scale - 0.5`` (pixel centres, clamped
  at 0), or ``i * (in - 1) / (out - 1)`` with ``align_corners=True`` (corner pixels aligned),
  mixing its two neighbours by distance;
* ``area``: the mean of the adaptive pooling bin (:func:`tinymed.ops.pool.adaptive_avg_pool2d`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tinymed.ops.arguments import float_tensor
from tinymed.ops.operands import constant
from tinymed.ops.pool import adaptive_avg_pool2d
from tinymed.tensor import Tensor

_LINEAR_MODES = {3: "linear", 4: "bilinear"}
_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "area")


def _nearest_weights(out_size: int, in_size: int, scale: float, exact: bool) -> np.ndarray:
    """(out_size, in_size) with one 1 per row, at the input position output i copies.
    The positions are computed as PyTorch's kernels do, roundings included: the scale in
    float32, and legacy ``nearest`` copies outright when the size is kept or doubled."""
    scale = np.float32(scale)
    index = np.arange(out_size)
    if exact:
        source = np.floor((index + 0.5) * np.float64(scale))
    elif out_size == in_size:
        source = index
    elif out_size == 2 * in_size:
        source = index // 2
    else:
        source = np.floor(index.astype(np.float32) * scale)
    weights = np.zeros((out_size, in_size))
    weights[index, np.minimum(source.astype(np.int64), in_size - 1)] = 1.0
    return weights


def _linear_weights(out_size: int, in_size: int, scale: float, align_corners: bool, dtype: np.dtype) -> np.ndarray:
    """(out_size, in_size) whose row i mixes the two input positions around output i's
    source coordinate, each weighted by closeness (1 - distance). Coordinates are computed in
    the input's dtype, as PyTorch does."""
    index = np.arange(out_size, dtype=dtype)
    if align_corners:
        source = index * dtype.type((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        source = np.maximum((index + dtype.type(0.5)) * dtype.type(scale) - dtype.type(0.5), 0)
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    fraction = np.clip(source - low, 0, 1)
    weights = np.zeros((out_size, in_size), dtype=dtype)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low), 1 - fraction)
    np.add.at(weights, (rows, high), fraction)
    return weights


def _output_geometry(
    op: str,
    spatial: tuple[int, ...],
    size: int | Sequence[int] | None,
    scale_factor: float | Sequence[float] | None,
    recompute_scale_factor: bool | None,
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The output's spatial size, and for each axis the scale (input step per output step)
    that places the samples."""
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"{op}: give exactly one of size or scale_factor, got size={size!r}, scale_factor={scale_factor!r}"
        )
    given = size if size is not None else scale_factor
    values = tuple(given) if isinstance(given, (tuple, list)) else (given,) * len(spatial)
    if len(values) != len(spatial):
        name = "size" if size is not None else "scale_factor"
        raise ValueError(
            f"{op}: {name} {given!r} must have one entry per spatial dim of the input, which has {len(spatial)} "
            f"(spatial size {spatial})"
        )
    if size is not None:
        out = tuple(int(v) for v in values)
        if min(out) < 1:
            raise ValueError(f"{op}: size must be positive, got {size!r}")
        return out, tuple(n / o for n, o in zip(spatial, out))
    if min(values) <= 0:
        raise ValueError(f"{op}: scale_factor must be positive, got {scale_factor!r}")
    out = tuple(int(math.floor(n * float(f))) for n, f in zip(spatial, values))
    if min(out) < 1:
        raise ValueError(f"{op}: scale_factor {scale_factor!r} makes an empty output from spatial size {spatial}")
    if recompute_scale_factor:
        return out, tuple(n / o for n, o in zip(spatial, out))
    return out, tuple(1.0 / float(f) for f in values)


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize ``(N, C, L)`` or ``(N, C, H, W)`` to ``size``, or to ``floor(in * scale_factor)``.

    ``y[n, c] = R @ x[n, c] @ C^T`` with the sampling matrices of the module docstring;
    modes ``"nearest"``, ``"nearest-exact"``, ``"linear"`` (3-D), ``"bilinear"`` (4-D) and
    ``"area"`` (4-D), as PyTorch. ``align_corners`` (linear modes only, default False) maps the
    corner pixels of input and output onto each other. ``antialias`` is not implemented.
    """
    op = "interpolate"
    float_tensor(op, "input", input)
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input must be 3-D (N, C, L) or 4-D (N, C, H, W), got shape {input.shape}")
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    linear = mode in _LINEAR_MODES.values()
    if linear and mode != _LINEAR_MODES[input.ndim] or mode == "area" and input.ndim != 4:
        raise ValueError(f"{op}: mode {mode!r} does not apply to a {input.ndim}-D input (shape {input.shape})")
    if align_corners is not None and not linear:
        raise ValueError(f"{op}: align_corners can only be set with the modes linear and bilinear, got mode {mode!r}")
    if antialias:
        raise ValueError(f"{op}: only antialias=False is supported")
    spatial = input.shape[2:]
    out, scales = _output_geometry(op, spatial, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        return adaptive_avg_pool2d(input, out)

    def weights(axis: int) -> Tensor:
        if linear:
            matrix = _linear_weights(out[axis], spatial[axis], scales[axis], bool(align_corners), input.dtype)
        else:
            matrix = _nearest_weights(out[axis], spatial[axis], scales[axis], mode == "nearest-exact")
        return constant(matrix.astype(input.dtype), input)

    columns = input @ weights(-1).transpose(0, 1)
    return columns if input.ndim == 3 else weights(0) @ columns
