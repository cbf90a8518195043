"""Max pooling as Numba CUDA kernels.

Forward, with ``x_pad`` the input padded by ``-inf``::

    y[n,c,i,j] = max_{p,q} x_pad[n, c, i*sh + p*dh, j*sw + q*dw]
    indices[n,c,i,j] = h * W + w   of that maximum in the unpadded plane

Backward routes each output gradient to the pixel its window picked::

    gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

from tinymed.kernels.numba.windows import outputs_reaching


@cuda.jit(device=True)
def first_tap_past_padding(start, dilation):
    """The first tap of a window that is not in the top (or left) padding, along one axis:
    the window starts at row ``start`` (negative inside the padding), taps ``dilation`` apart."""
    if start >= 0:
        return start
    return start + (-start + dilation - 1) // dilation * dilation


@functools.cache
def max_pool2d_forward_kernel(dtype: np.dtype):
    """Build the forward pass: one thread per output element ``y[n,c,i,j]``.

    The thread walks its window in row-major order and keeps the first strict maximum, so
    ties go to the first one; a NaN beats any number (and the first NaN beats later ones),
    as ``numpy.argmax`` and PyTorch treat NaN. Padding is ``-inf``, which can never win, so
    padded positions are skipped instead of read. As in the reference and PyTorch, the
    thread starts from ``-inf`` at the window's first tap past the top and left padding:
    the first real pixel, so a window of ``-inf`` values still points at one, and a window
    with no real pixel (possible with dilation) gives ``y = -inf`` at that position.

    Numba compiles without fast-math by default, so ``value > best`` compares subnormal
    numbers exactly; the CUDA C twin compares the bits instead, because CuPy compiles with
    ``-ftz=true`` (see ``kernels/cuda/float_bits.cuh``). Launch with at least ``y.size`` threads.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def max_pool2d_forward(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
        N, C, H, W = x.shape
        _, _, OH, OW = y.shape
        idx = cuda.grid(1)
        if idx >= N * C * OH * OW:
            return
        j = idx % OW
        i = (idx // OW) % OH
        nc = idx // (OW * OH)  # the (n, c) plane, flattened: pooling never mixes planes
        n = nc // C
        c = nc % C
        best = scalar(-math.inf)
        best_index = first_tap_past_padding(i * sh - ph, dh) * W + first_tap_past_padding(j * sw - pw, dw)
        for p in range(kh):
            h = i * sh + p * dh - ph
            if h < 0 or h >= H:
                continue
            for q in range(kw):
                v = j * sw + q * dw - pw
                if v < 0 or v >= W:
                    continue
                value = x[n, c, h, v]
                if not math.isnan(best) and (value > best or math.isnan(value)):
                    best = value
                    best_index = h * W + v
        y[n, c, i, j] = best
        indices[n, c, i, j] = best_index

    return max_pool2d_forward


@functools.cache
def max_pool2d_backward_kernel(dtype: np.dtype):
    """Build the backward pass: one thread per input pixel ``gx[n,c,h,w]``, gathering in a fixed order.

    Where windows overlap (stride smaller than the window) one input pixel can be the
    maximum of several windows, so their gradients must be added together. One thread per
    output adding into ``gx`` would collide with its neighbours and need atomics, which add
    in whatever order the threads happen to arrive: not bit-reproducible. Instead thread
    ``(n, c, h, w)`` owns one input pixel. It walks only the outputs ``(i, j)`` whose windows
    cover the pixel (``outputs_reaching``, the same geometry as the convolution's input
    gradient), in row-major order, and adds ``gy[n,c,i,j]`` where that window picked this
    pixel. Only this thread writes ``gx[n,c,h,w]`` and the order is fixed, so the sums are the
    same bit for bit on every run; and each output is read only by the threads of the pixels
    its window covers. With dilation a window can span the pixel without a tap on it; its
    index then names another pixel, so the index test alone decides. Launch with at least
    ``gx.size`` threads in a 1-D grid.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def max_pool2d_backward(gy, indices, gx, kh, kw, sh, sw, ph, pw, dh, dw):
        N, C, H, W = gx.shape
        _, _, OH, OW = gy.shape
        idx = cuda.grid(1)
        if idx >= N * C * H * W:
            return
        v = idx % W
        h = (idx // W) % H
        c = (idx // (W * H)) % C
        n = idx // (W * H * C)
        here = h * W + v  # this pixel's flat position, as the forward pass records it
        first_i, last_i = outputs_reaching(h, ph, kh, sh, dh, OH)
        first_j, last_j = outputs_reaching(v, pw, kw, sw, dw, OW)
        total = scalar(0)
        for i in range(first_i, last_i + 1):
            for j in range(first_j, last_j + 1):
                if indices[n, c, i, j] == here:
                    total += gy[n, c, i, j]
        gx[n, c, h, v] = total

    return max_pool2d_backward
