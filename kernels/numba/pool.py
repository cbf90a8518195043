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


@functools.cache
def max_pool2d_forward_kernel(dtype: np.dtype):
    """Build the forward pass: one thread per output element ``y[n,c,i,j]``.

    The thread walks its window in row-major order and keeps the first strict maximum, so
    ties go to the first one; a NaN beats any number (and the first NaN beats later ones),
    as ``numpy.argmax`` and PyTorch treat NaN. Padding is ``-inf``, which can never win, so
    padded positions are skipped instead of read. Launch with at least ``y.size`` threads.
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
        best_index = -1
        for p in range(kh):
            h = i * sh + p * dh - ph
            if h < 0 or h >= H:
                continue
            for q in range(kw):
                v = j * sw + q * dw - pw
                if v < 0 or v >= W:
                    continue
                value = x[n, c, h, v]
                # best_index < 0: the first real pixel is kept even if it is -inf.
                if best_index < 0 or value > best or (math.isnan(value) and not math.isnan(best)):
                    best = value
                    best_index = h * W + v
        y[n, c, i, j] = best
        indices[n, c, i, j] = best_index

    return max_pool2d_forward


@cuda.jit
def max_pool2d_backward(gy, indices, gx):
    """The backward pass: one thread per input row ``(n, c, h)``, adding in a fixed order.

    Where windows overlap (stride smaller than the window) one input pixel can be the
    maximum of several windows, so their gradients must be added together. One thread per
    output adding into ``gx`` would collide with its neighbours and need atomics, which add
    in whatever order the threads happen to arrive: not bit-reproducible. Instead thread
    ``(n, c, h)`` owns the whole input row ``h`` of its plane: it clears the row, then walks
    every output of the plane in row-major order and adds ``gy`` wherever the recorded
    maximum lies in its row. Only this thread writes the row and the walk order is fixed,
    so the sums are the same bit for bit on every run. Neighbouring threads own
    neighbouring rows and read the same output at the same time, which memory serves as one
    broadcast. The price is that each output is read ``H`` times: the primitive is given the
    indices but not the window geometry, so a thread cannot tell which outputs could reach
    its row without looking. Launch with at least ``N*C*H`` threads in a 1-D grid.
    """
    N, C, H, W = gx.shape
    _, _, OH, OW = gy.shape
    idx = cuda.grid(1)
    if idx >= N * C * H:
        return
    h = idx % H
    c = (idx // H) % C
    n = idx // (H * C)
    row_begin = h * W  # the flat positions h*W .. h*W + W-1 are this thread's row
    for v in range(W):
        gx[n, c, h, v] = 0
    for i in range(OH):
        for j in range(OW):
            at = indices[n, c, i, j]
            if row_begin <= at < row_begin + W:
                gx[n, c, h, at - row_begin] += gy[n, c, i, j]
