"""Convolution (cross-correlation, as PyTorch) as Numba CUDA kernels.

The formula, with ``x_pad`` the input padded by ``(ph, pw)`` zeros::

    y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

and its two gradients::

    gx[n,c,h,w] = sum of gy[n,o,i,j] * w[o,c,p,q] over the (o,i,j,p,q) with
                  i*sh + p*dh = h + ph  and  j*sw + q*dw = w + pw
    gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

Padding is never built: a thread that would read ``x_pad`` outside the real input skips the
term, since a padded zero adds nothing. All arrays are C-contiguous NCHW (weights OCKK).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from tinymed.kernels.numba.windows import outputs_reaching

# Output (or input) channels per thread in the forward and input-gradient kernels.
CHANNELS_PER_THREAD = 4


@functools.cache
def conv2d_forward_kernel(dtype: np.dtype):
    """Build ``y = conv2d(x, w) + b``: one thread per output pixel, for ``CHANNELS_PER_THREAD`` channels.

    Every output element is an independent dot product of length ``C*KH*KW``, so the
    simplest plan is a thread per element. Loading an input value costs far more than the
    multiply-add that uses it, so each thread takes one pixel ``(n, i, j)`` in the output
    channels ``o0 .. o0+3``: it loads each input value once and uses it for all four, from
    registers. The thread number is unflattened with ``j`` fastest, so neighbouring threads
    read neighbouring input pixels (served in one memory transaction) and the same weight.
    Launch with at least ``N * ceil(O/4) * OH * OW`` threads in a 1-D grid.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def conv2d_forward(x, w, b, y, sh, sw, ph, pw, dh, dw):
        N, C, H, W = x.shape
        O, _, KH, KW = w.shape
        _, _, OH, OW = y.shape
        groups = (O + CHANNELS_PER_THREAD - 1) // CHANNELS_PER_THREAD
        idx = cuda.grid(1)  # this thread's position among all threads of the grid
        if idx >= N * groups * OH * OW:
            return  # the grid is rounded up to whole blocks; the spare threads stop here
        # Unflatten idx into (n, channel group, i, j), row-major like y itself.
        j = idx % OW
        i = (idx // OW) % OH
        o0 = (idx // (OW * OH)) % groups * CHANNELS_PER_THREAD
        n = idx // (OW * OH * groups)
        acc = cuda.local.array(CHANNELS_PER_THREAD, scalar)  # in registers
        for u in range(CHANNELS_PER_THREAD):
            acc[u] = b[o0 + u] if o0 + u < O else scalar(0)
        for c in range(C):
            for p in range(KH):
                h = i * sh + p * dh - ph  # row in the unpadded input
                if h < 0 or h >= H:
                    continue  # a padded zero
                for q in range(KW):
                    v = j * sw + q * dw - pw
                    if v < 0 or v >= W:
                        continue
                    xv = x[n, c, h, v]
                    for u in range(CHANNELS_PER_THREAD):
                        if o0 + u < O:
                            acc[u] += xv * w[o0 + u, c, p, q]
        for u in range(CHANNELS_PER_THREAD):
            if o0 + u < O:
                y[n, o0 + u, i, j] = acc[u]

    return conv2d_forward


@functools.cache
def conv2d_grad_input_kernel(dtype: np.dtype):
    """Build ``gx`` (also the transposed convolution): one thread per input pixel, 4 channels.

    The forward pass *scatters* each input pixel into every output it touches, so the
    obvious backward would have each output thread add into several input pixels at once,
    which needs atomics and then sums in a random order. Instead each thread *gathers*: it
    owns one input pixel ``(n, h, w)`` in the input channels ``c0 .. c0+3`` and walks the
    output pixels ``(i, j)`` whose windows reach it; the tap that does is
    ``p = (h + ph - i*sh) / dh`` (and likewise ``q``). The thread is the only writer of its
    pixels: no atomics, and the sum always runs in the same order.

    Why walk the outputs rather than the taps: with a stride of 2, only every other tap of a
    row reaches ``h``, and which ones depends on whether ``h`` is even or odd. Walking the
    taps, the even and odd threads of a warp would skip different iterations, and a warp
    runs both sets one after the other; walking the outputs, every thread has about
    ``KH/sh`` of them. Launch with at least ``N * ceil(C/4) * H * W`` threads in a 1-D grid.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def conv2d_grad_input(gy, w, gx, sh, sw, ph, pw, dh, dw):
        N, C, H, W = gx.shape
        O, _, KH, KW = w.shape
        _, _, OH, OW = gy.shape
        groups = (C + CHANNELS_PER_THREAD - 1) // CHANNELS_PER_THREAD
        idx = cuda.grid(1)
        if idx >= N * groups * H * W:
            return
        v = idx % W
        h = (idx // W) % H
        c0 = (idx // (W * H)) % groups * CHANNELS_PER_THREAD
        n = idx // (W * H * groups)
        acc = cuda.local.array(CHANNELS_PER_THREAD, scalar)
        for u in range(CHANNELS_PER_THREAD):
            acc[u] = scalar(0)
        first_i, last_i = outputs_reaching(h, ph, KH, sh, dh, OH)
        first_j, last_j = outputs_reaching(v, pw, KW, sw, dw, OW)
        for i in range(first_i, last_i + 1):
            p_dilated = h + ph - i * sh  # = p * dh
            if p_dilated % dh != 0:
                continue  # (dilation only) output row i reaches h between two taps
            p = p_dilated // dh
            for j in range(first_j, last_j + 1):
                q_dilated = v + pw - j * sw
                if q_dilated % dw != 0:
                    continue
                q = q_dilated // dw
                for o in range(O):
                    g = gy[n, o, i, j]
                    for u in range(CHANNELS_PER_THREAD):
                        if c0 + u < C:
                            acc[u] += g * w[o, c0 + u, p, q]
        for u in range(CHANNELS_PER_THREAD):
            if c0 + u < C:
                gx[n, c0 + u, h, v] = acc[u]

    return conv2d_grad_input


@functools.cache
def conv2d_grad_weight_kernel(dtype: np.dtype, threads: int):
    """Build ``gw``: one block of ``threads`` threads per weight element ``gw[o,c,p,q]``.

    Each weight element is a sum of ``N*OH*OW`` products, usually far more terms than there
    are weights (a 5x5 kernel sees every output pixel of every image), so one thread per
    weight would leave most of the GPU idle. A block of threads shares the sum instead:

    1. thread ``t`` adds the terms ``t, t + threads, t + 2*threads, ...`` (neighbouring
       threads read neighbouring output pixels, which is what memory likes);
    2. the ``threads`` partial sums go to shared memory and are halved in a tree: in each
       round thread ``t < s`` adds the partial sum of thread ``t + s``, then all threads
       wait (``cuda.syncthreads``) before the next round reads what was written.

    Which thread adds which term, and the tree, never change, so the result is the same bit
    for bit on every run, unlike ``atomicAdd`` from many blocks. ``threads`` must be a power
    of two. Launch with ``gw.size`` blocks of ``threads`` threads.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def conv2d_grad_weight(x, gy, gw, sh, sw, ph, pw, dh, dw):
        N, C, H, W = x.shape
        _, _, KH, KW = gw.shape
        _, _, OH, OW = gy.shape
        # This block's weight element (o, c, p, q), unflattened from the block number.
        blk = cuda.blockIdx.x
        q = blk % KW
        p = (blk // KW) % KH
        c = (blk // (KW * KH)) % C
        o = blk // (KW * KH * C)
        t = cuda.threadIdx.x

        # 1. Strided partial sum over the terms (n, i, j), flattened.
        acc = scalar(0)
        for term in range(t, N * OH * OW, threads):
            j = term % OW
            i = (term // OW) % OH
            n = term // (OW * OH)
            h = i * sh + p * dh - ph
            v = j * sw + q * dw - pw
            if 0 <= h < H and 0 <= v < W:
                acc += gy[n, o, i, j] * x[n, c, h, v]

        # 2. Tree reduction of the block's partial sums in shared memory.
        partial = cuda.shared.array(threads, scalar)
        partial[t] = acc
        cuda.syncthreads()
        s = threads // 2
        while s > 0:
            if t < s:
                partial[t] += partial[t + s]
            cuda.syncthreads()  # every thread must finish round s before round s/2 reads
            s //= 2
        if t == 0:
            gw[o, c, p, q] = partial[0]

    return conv2d_grad_weight
