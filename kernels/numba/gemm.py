"""The affine formula ``y = W x + b`` as one tiled matrix product (GEMM) with the bias fused in.

    c[m, n] = sum_k op(a)[m, k] * op(b)[k, n] + bias[n]

``op(a)`` is ``a`` (M x K, stored row-major) or, with ``trans_a``, ``a.T`` (``a`` stored
K x M); likewise ``op(b)`` is ``b`` (K x N) or ``b.T`` (``b`` stored N x K). A linear
layer's forward is ``gemm(x, W, bias, trans_b)`` and its two backward products are
``gemm(gy, W)`` and ``gemm(gy, x, trans_a)``: one kernel, and no transposed copy is made.

Why tiles. Computed naively, each ``c[m, n]`` reads a whole row of ``a`` and a whole column
of ``b`` from global memory: ``2K`` loads for ``K`` multiply-adds, and memory is far slower
than the arithmetic units. But neighbouring outputs share those rows and columns. So a
block computes a ``tile x tile`` square of ``c`` and walks along ``K`` in steps of
``k_step``: at each step the block copies a ``tile x k_step`` slice of ``op(a)`` and a
``k_step x tile`` slice of ``op(b)`` into shared memory (each element is loaded from global
memory once and then read ``tile`` times), and every thread computes a small patch of the
tile from there, holding its running sums in registers. Rows, columns and ``K`` indices
past the end are read as zeros and never written, so no size needs to be a multiple of the
tile. On a GPU: 64 x 64 tiles, steps of 16, 16 x 16 = 256 threads each owning 4 x 4 outputs.

Split-K. A thin product (few tiles of ``c``, long ``K``; e.g. a 64 x 1 output with
K = 6272) would give the GPU only a block or two to run, each walking all of ``K`` alone.
The launcher can then cut ``K`` into ``gridDim.z`` chunks: block ``z`` writes its partial
tile to ``c[z]`` (no bias), and ``gemm_sum_splits`` adds the chunks in the fixed order
``z = 0, 1, ...`` plus the bias. Every sum still runs in a fixed order, so results stay
bit-identical from run to run.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda


@cuda.jit(device=True)
def load_slice(tile_slice, x, k_contiguous, r0, k0, k_end):
    """Copy a ``tile x k_step`` slice of a matrix ``X`` (R x K) into shared memory, transposed:
    ``tile_slice[k, r] = X[r0 + r, k0 + k]``, with zeros past row R or past column ``k_end``.

    Both operands are read this way: ``op(a)`` is M x K, and ``op(b)`` read column by column
    is the N x K matrix ``op(b).T``. ``X`` is ``x`` itself when ``k_contiguous`` (stored row
    by row), else ``x.T`` (``x`` stored K x R). Element ``e`` of the slice goes to thread
    ``e mod blockDim``, and ``e`` is unflattened so that neighbouring threads read
    neighbouring addresses of ``x`` whichever way it is stored, which a warp then fetches in
    one memory transaction.
    """
    k_step, tile = tile_slice.shape[0], tile_slice.shape[1] - 1  # minus the padding column
    R = x.shape[0] if k_contiguous else x.shape[1]
    for e in range(cuda.threadIdx.x, tile * k_step, cuda.blockDim.x):
        r = e // k_step if k_contiguous else e % tile
        k = e % k_step if k_contiguous else e // tile
        if r0 + r < R and k0 + k < k_end:
            tile_slice[k, r] = x[r0 + r, k0 + k] if k_contiguous else x[k0 + k, r0 + r]
        else:
            tile_slice[k, r] = 0


@functools.cache
def gemm_kernel(dtype: np.dtype, tile: int, k_step: int, threads_side: int):
    """Build the tiled GEMM: one ``tile x tile`` square of ``c`` per block.

    Block ``blockIdx.x`` owns tile ``(blockIdx.x // column_tiles, blockIdx.x % column_tiles)``
    of ``c``: rows ``m0 ..`` and columns ``n0 ..``. (The tiles are numbered along x alone
    because a grid may have ``2**31 - 1`` blocks along x but only 65535 along y and z.)
    It has ``threads_side**2`` threads; thread ``(tx, ty)`` computes rows
    ``m0 + ty + threads_side*r`` and columns ``n0 + tx + threads_side*s`` of the tile for
    ``r, s < tile / threads_side``. Spreading its patch out (rather than taking adjacent
    rows and columns) makes threads with the same ``ty`` read adjacent shared-memory words,
    which the hardware serves at once, and write adjacent words of ``c``.

    ``c`` is ``(splits, M, N)``: block ``z = blockIdx.z`` sums ``k`` over
    ``[z*k_chunk, (z+1)*k_chunk)`` into ``c[z]``, and adds the bias only when there is a
    single chunk. Launch with a grid of ``(ceil(M/tile) * ceil(N/tile), 1, splits)`` blocks of
    ``threads_side**2`` threads.
    """
    scalar = numba.from_dtype(dtype)
    per_thread = tile // threads_side
    # The slices' rows are one longer than the tile: the padding shifts each row to another
    # memory bank, so the column-wise writes of load_slice do not queue up on one bank.
    padded = tile + 1

    @cuda.jit
    def gemm_tiled(a, b, bias, c, trans_a, trans_b, k_chunk):
        _, M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        # a_slice[k, m] = op(a)[m0 + m, k0 + k]; b_slice[k, n] = op(b)[k0 + k, n0 + n].
        a_slice = cuda.shared.array((k_step, padded), scalar)
        b_slice = cuda.shared.array((k_step, padded), scalar)
        tx = cuda.threadIdx.x % threads_side
        ty = cuda.threadIdx.x // threads_side
        column_tiles = (N + tile - 1) // tile
        m0 = cuda.blockIdx.x // column_tiles * tile
        n0 = cuda.blockIdx.x % column_tiles * tile
        z = cuda.blockIdx.z
        k_end = (z + 1) * k_chunk  # this block's chunk of K ends here, or at K
        if k_end > K:
            k_end = K

        acc = cuda.local.array((per_thread, per_thread), scalar)
        a_reg = cuda.local.array(per_thread, scalar)
        b_reg = cuda.local.array(per_thread, scalar)
        for r in range(per_thread):
            for s in range(per_thread):
                acc[r, s] = scalar(0)

        for k0 in range(z * k_chunk, k_end, k_step):
            load_slice(a_slice, a, not trans_a, m0, k0, k_end)
            load_slice(b_slice, b, trans_b, n0, k0, k_end)
            cuda.syncthreads()  # the slices are complete before anyone reads them

            for k in range(k_step):
                for r in range(per_thread):
                    a_reg[r] = a_slice[k, ty + threads_side * r]
                    b_reg[r] = b_slice[k, tx + threads_side * r]
                for r in range(per_thread):
                    for s in range(per_thread):
                        acc[r, s] += a_reg[r] * b_reg[s]
            cuda.syncthreads()  # everyone is done with the slices before the next copy

        add_bias = cuda.gridDim.z == 1
        for r in range(per_thread):
            m = m0 + ty + threads_side * r
            for s in range(per_thread):
                n = n0 + tx + threads_side * s
                if m < M and n < N:
                    c[z, m, n] = acc[r, s] + bias[n] if add_bias else acc[r, s]

    return gemm_tiled


@cuda.jit
def gemm_sum_splits(partial, bias, c):
    """``c[m, n] = sum_z partial[z, m, n] + bias[n]``, adding ``z`` in order.

    One thread per element of ``c``. Launch with at least ``M * N`` threads in a 1-D grid.
    """
    splits, M, N = partial.shape
    idx = cuda.grid(1)
    if idx >= M * N:
        return
    m = idx // N
    n = idx % N
    total = partial[0, m, n]
    for z in range(1, splits):
        total += partial[z, m, n]
    c[m, n] = total + bias[n]
