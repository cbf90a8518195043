"""Scaled dot-product attention as Numba CUDA kernels: a naive path and a fused (FlashAttention) path.

For a batch of B independent heads, q ``(B, Lq, D)``, k ``(B, Lk, D)``, v ``(B, Lk, Dv)``::

    s[b,i,j] = scale * q[b,i] . k[b,j] + mask[b,i,j]     (-inf where is_causal and j > i)
    lse[b,i] = log(sum_j exp(s[b,i,j]))
    out[b,i] = sum_j exp(s[b,i,j] - lse[b,i]) * v[b,j]

A row whose every key is removed (all -inf) gives ``out = 0`` and ``lse = -inf``. The
backward pass, from the saved out and lse, with ``P = exp(s - lse)`` and ``dO`` the
gradient of out::

    delta[b,i] = dO[b,i] . out[b,i]
    dS[b,i,j]  = P[b,i,j] * (dO[b,i] . v[b,j] - delta[b,i])
    dq[b,i] = scale * sum_j dS[b,i,j] k[b,j]     dk[b,j] = scale * sum_i dS[b,i,j] q[b,i]
    dv[b,j] = sum_i P[b,i,j] dO[b,i]

The naive path runs the formula as written: one kernel writes every score ``s`` (an
``Lq x Lk`` matrix per head), one turns each row into probabilities, one takes the
weighted sum of ``v``. The ``Lq x Lk`` matrix costs memory and, worse, trips to memory: it
is written once and read twice. The fused path never builds it: it streams ``k`` and ``v``
through shared memory in tiles and keeps a running ("online") softmax.

Teams. The fused kernels give each row (a query, or in dk/dv a key) a *team* of ``lanes``
threads; on a GPU ``lanes`` is 32, a warp, the threads that execute together. Each lane
takes one element of the tile streamed past its row (the score of one key, say), writes it
to a small shared array, and after ``cuda.syncthreads()`` every lane of the team reads all
of them; then lane ``l`` handles the output dimensions ``l, l + lanes, ...``. (CUDA C
trades these values between lanes with ``__shfl_sync``; Numba's simulator has no shuffles,
so the same exchange goes through shared memory here.)

Every array is C-contiguous; ``mask`` is ``(B, Lq, Lk)``, additive, and ignored when
``has_mask`` is false (kernels take arrays, never ``None``: a missing mask is a 1-element
placeholder). No kernel uses atomics: every sum runs in a fixed order, so results are
bit-identical from run to run.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda

# ---------------------------------------------------------------------------------------
# Device functions: helpers that kernels call (they cannot be launched on their own).
# ---------------------------------------------------------------------------------------


@cuda.jit(device=True)
def dot(a, b, n):
    """``a[:n] . b[:n]``, always added in the order 0, 1, ..., n-1.

    The fixed order means the backward kernels recompute exactly the scores that the
    forward kernel computed.
    """
    total = a.dtype.type(0)  # a zero of the rows' own type: float32 sums stay float32
    for e in range(n):
        total += a[e] * b[e]
    return total


@cuda.jit(device=True)
def score(q_row, k_row, n, scale, mask, has_mask, is_causal, b, i, j):
    """``s[b,i,j] = scale * q_row[:n] . k_row[:n] + mask[b, i, j]``, ``-inf`` where ``is_causal`` and ``j > i``.

    A causally removed entry is a score of ``-inf`` like any other removed one, not a skipped
    term: its ``P = 0`` then meets ``dO . v`` as in the reference (``0 * NaN`` is NaN).
    """
    if is_causal and j > i:
        return q_row.dtype.type(-math.inf)
    s = scale * dot(q_row, k_row, n)
    if has_mask:
        s += mask[b, i, j]
    return s


@cuda.jit(device=True)
def team_of_thread(length, rows, lanes):
    """``(b, first_row, team, lane)`` of this thread in a fused kernel's grid.

    The grid has ``ceil(length / rows)`` blocks per head ``b``; block ``t`` of head ``b``
    owns rows ``first_row = t * rows`` onwards, one team of ``lanes`` threads per row.
    """
    tiles = (length + rows - 1) // rows
    return (
        cuda.blockIdx.x // tiles,
        cuda.blockIdx.x % tiles * rows,
        cuda.threadIdx.x // lanes,
        cuda.threadIdx.x % lanes,
    )


@cuda.jit(device=True)
def keys_seen(Lk, last_query, is_causal):
    """How many keys (from key 0) the queries up to ``last_query`` see: with ``is_causal``
    query ``i`` sees keys ``j <= i`` only, so walking stops after key ``last_query``."""
    if is_causal and last_query + 1 < Lk:
        return last_query + 1
    return Lk


@cuda.jit(device=True)
def load_rows(src, b, first, tile):
    """Copy rows ``first, first+1, ...`` of ``src[b]`` into the shared ``tile``; rows past the end become 0.

    The whole block shares the copy: element ``e`` of the tile goes to thread
    ``e mod blockDim``, so neighbouring threads copy neighbouring addresses (one memory
    transaction per warp). ``tile`` may have more columns than ``src`` (see ``odd_stride``).
    The caller must ``cuda.syncthreads()`` before reading it.
    """
    rows, width = src.shape[1], src.shape[2]
    for e in range(cuda.threadIdx.x, tile.shape[0] * width, cuda.blockDim.x):
        r = e // width
        col = e % width
        if first + r < rows:
            tile[r, col] = src[b, first + r, col]
        else:
            tile[r, col] = 0


@cuda.jit(device=True)
def clear(acc):
    """``acc = 0``: a lane's share of a row that a fused kernel is summing.

    A fused kernel keeps such a row (of ``out``, ``dq``, ``dk`` or ``dv``) spread over the
    lanes of its team: lane ``l`` holds elements ``l, l + lanes, l + 2*lanes, ...`` in
    ``acc[0], acc[1], ...``. This and the two functions below work on one lane's share.
    """
    for r in range(acc.shape[0]):
        acc[r] = 0


@cuda.jit(device=True)
def add_scaled(acc, weight, row, n, lane, lanes):
    """``acc += weight * row[:n]`` on this lane's share, ``row`` a row of a shared tile."""
    for r in range(acc.shape[0]):
        e = lane + lanes * r
        if e < n:
            acc[r] += weight * row[e]


@cuda.jit(device=True)
def store_scaled(row, acc, factor, n, lane, lanes):
    """``row[:n] = factor * acc`` from this lane's share, ``row`` a row of a gradient."""
    for r in range(acc.shape[0]):
        e = lane + lanes * r
        if e < n:
            row[e] = factor * acc[r]


def allocated(n: int) -> int:
    """The length to allocate for ``n`` values in a shared or local array: Numba cannot
    compile an empty one, so a head of size 0 gets one column that is never read."""
    return max(n, 1)


def odd_stride(n: int) -> int:
    """The row length of a shared tile that a team reads row-wise (lane ``l`` reads row ``l``).

    Shared memory is split into 32 banks of consecutive words; 32 lanes reading one column
    of a tile whose rows are a multiple of 32 words long all hit the same bank and queue up.
    An odd row length puts consecutive rows in different banks. ``n | 1`` is the smallest
    odd number ``>= n``.
    """
    return n | 1


# ---------------------------------------------------------------------------------------
# The naive path
# ---------------------------------------------------------------------------------------


@cuda.jit
def attention_scores(q, k, mask, has_mask, scale, is_causal, s):
    """``s[b,i,j]`` for every ``(b, i, j)``: one thread each, ``j`` fastest.

    Launch with at least ``B * Lq * Lk`` threads in a 1-D grid.
    """
    B, Lq, Lk = s.shape
    idx = cuda.grid(1)
    if idx >= B * Lq * Lk:
        return
    j = idx % Lk
    i = (idx // Lk) % Lq
    b = idx // (Lk * Lq)
    s[b, i, j] = score(q[b, i], k[b, j], q.shape[2], scale, mask, has_mask, is_causal, b, i, j)


@functools.cache
def attention_softmax_rows_kernel(dtype: np.dtype):
    """Build the row softmax, in place, with each row's log-sum-exp: one thread per row.

    Softmax is shift-invariant, so the row maximum ``m`` is subtracted before ``exp`` (exp
    of a large score would overflow): ``p_j = exp(s_j - m) / l`` with
    ``l = sum_j exp(s_j - m)``, and ``lse = m + log(l)``. A row of only ``-inf`` becomes
    zeros with ``lse = -inf``. Launch with at least ``B * Lq`` threads in a 1-D grid.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def attention_softmax_rows(s, lse):
        B, Lq, Lk = s.shape
        row = cuda.grid(1)
        if row >= B * Lq:
            return
        b = row // Lq
        i = row % Lq
        m = scalar(-math.inf)
        for j in range(Lk):
            if s[b, i, j] > m:
                m = s[b, i, j]
        if m == -math.inf:  # every key removed: "safe softmax" gives zeros
            for j in range(Lk):
                s[b, i, j] = 0
            lse[b, i] = m
            return
        l = scalar(0)
        for j in range(Lk):
            l += math.exp(s[b, i, j] - m)
        for j in range(Lk):
            s[b, i, j] = math.exp(s[b, i, j] - m) / l
        lse[b, i] = m + math.log(l)

    return attention_softmax_rows


@functools.cache
def batched_matmul_kernel(dtype: np.dtype):
    """Build ``c[b] = op(a[b]) @ op(x[b])``, untiled: one thread per ``c[b,r,n]``, ``n`` fastest.

    The weighted sum ``out = p @ v`` and the naive backward products (``op`` transposes
    when its flag is set). Each thread reads its whole row and column from global memory:
    this is what the tiled GEMM and the fused kernels improve on. Launch with at least
    ``c.size`` threads in a 1-D grid.
    """
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def batched_matmul(a, x, trans_a, trans_x, c):
        B, R, N = c.shape
        inner = a.shape[1] if trans_a else a.shape[2]
        idx = cuda.grid(1)
        if idx >= B * R * N:
            return
        n = idx % N
        r = (idx // N) % R
        b = idx // (N * R)
        acc = scalar(0)
        for m in range(inner):
            a_rm = a[b, m, r] if trans_a else a[b, r, m]
            x_mn = x[b, n, m] if trans_x else x[b, m, n]
            acc += a_rm * x_mn
        c[b, r, n] = acc

    return batched_matmul


# ---------------------------------------------------------------------------------------
# The fused path
# ---------------------------------------------------------------------------------------


@functools.cache
def attention_forward_kernel(dtype: np.dtype, d: int, dv: int, rows: int, tile: int, lanes: int):
    """Build the fused forward: ``out`` and ``lse`` with an online softmax, no row of scores stored.

    Block ``(b, query tile)`` owns the ``rows`` queries ``row0 .. row0+rows-1`` of head
    ``b``, one team of ``lanes`` threads each. It walks the keys in tiles of ``tile``: the
    block copies the tile's keys and values into shared memory (each is read from global
    memory once per block, then used by all its queries), lane ``l`` of each team scores
    key ``k0 + l`` against the team's query, and the team folds the tile into its running
    softmax. For its query the team keeps

    * ``m``: the largest score seen so far,
    * ``l``: ``sum_j exp(s_j - m)`` over the keys seen so far,
    * ``acc``: ``sum_j exp(s_j - m) v_j`` (lane ``l`` holds dimensions ``l, l+lanes, ...``).

    When a tile raises the maximum from ``m`` to ``m'``, everything summed so far is
    rescaled by ``exp(m - m')``: that is the online softmax. At the end ``out = acc / l``
    and ``lse = m + log(l)``. With ``is_causal`` the keys after the block's last query are
    removed for all its queries, so the walk stops there.

    ``d``, ``dv`` (head sizes) and the tile sizes are fixed at compile time, so the tiles can
    live in shared memory and ``acc`` in registers; ``tile <= lanes``. Launch with
    ``ceil(Lq / rows) * B`` blocks of ``rows * lanes`` threads.
    """
    scalar = numba.from_dtype(dtype)
    dims_per_lane = allocated((dv + lanes - 1) // lanes)
    k_stride = odd_stride(d)
    d_columns, dv_columns = allocated(d), allocated(dv)  # shared rows of q or k, and of v or dO

    @cuda.jit
    def attention_forward(q, k, v, mask, has_mask, scale, is_causal, out, lse):
        Lq = q.shape[1]
        Lk = k.shape[1]
        b, row0, team, lane = team_of_thread(Lq, rows, lanes)
        i = row0 + team  # this team's query
        row_valid = i < Lq  # rows past Lq still help copy the tiles

        q_rows = cuda.shared.array((rows, d_columns), scalar)
        k_tile = cuda.shared.array((tile, k_stride), scalar)
        v_tile = cuda.shared.array((tile, dv_columns), scalar)
        s_tile = cuda.shared.array((rows, tile), scalar)  # each team's scores of the tile
        load_rows(q, b, row0, q_rows)

        m = scalar(-math.inf)
        l = scalar(0)
        acc = cuda.local.array(dims_per_lane, scalar)
        clear(acc)

        for k0 in range(0, keys_seen(Lk, row0 + rows - 1, is_causal), tile):
            cuda.syncthreads()  # the previous tile is used up (and q_rows written) before the copy
            load_rows(k, b, k0, k_tile)
            load_rows(v, b, k0, v_tile)
            cuda.syncthreads()  # the tile is complete before anyone reads it

            # 1. Lane l scores key j = k0 + l (-inf when there is no such key or it is removed).
            if lane < tile:
                j = k0 + lane
                s = scalar(-math.inf)
                if row_valid and j < Lk:
                    s = score(q_rows[team], k_tile[lane], d, scale, mask, has_mask, is_causal, b, i, j)
                s_tile[team, lane] = s
            cuda.syncthreads()  # the team's scores are all written before its lanes read them

            # 2. Fold the tile into the running softmax (every lane of the team computes the
            #    same m and l, in the same order).
            m_new = m
            for jj in range(tile):
                if s_tile[team, jj] > m_new:
                    m_new = s_tile[team, jj]
            if m_new == -math.inf:
                continue  # nothing kept so far
            rescale = math.exp(m - m_new)  # exp(-inf) = 0 the first time anything is kept
            l *= rescale
            for r in range(dims_per_lane):
                acc[r] *= rescale
            for jj in range(tile):
                p = math.exp(s_tile[team, jj] - m_new)  # key jj's weight; 0 for a removed key
                l += p
                add_scaled(acc, p, v_tile[jj], dv, lane, lanes)
            m = m_new

        if not row_valid:
            return
        # l >= 1 once any key is kept (the largest key contributes exp(0)); l == 0 means none.
        for r in range(dims_per_lane):
            e = lane + lanes * r
            if e < dv:
                out[b, i, e] = acc[r] / l if l > 0 else scalar(0)
        if lane == 0:
            lse[b, i] = m + math.log(l) if l > 0 else scalar(-math.inf)

    return attention_forward


@functools.cache
def attention_backward_dkdv_kernel(dtype: np.dtype, d: int, dv: int, rows: int, tile: int, lanes: int):
    """Build the fused ``dk`` and ``dv``: a team per key, walking the queries tile by tile.

    The forward pass turned on its side: block ``(b, key tile)`` owns the ``rows`` keys
    ``key0 .. key0+rows-1``, one team each, and walks the queries in tiles of ``tile``.
    For each tile lane ``l`` recomputes, for query ``i = i0 + l`` and the team's key ``j``,
    the probability ``P = exp(s - lse_i)`` (from the saved ``lse``; the score matrix is
    never stored) and ``dS = P (dO_i . v_j - delta_i)``; the team then adds
    ``dv_j += P dO_i`` and ``dk_j += dS q_i`` over the tile's queries in order. A key's sums
    are owned by one team, so no two threads ever add into the same ``dk`` or ``dv``: no
    atomics. With ``is_causal``, queries before the block's first key see none of its keys,
    so the walk starts at the tile holding ``key0``. Launch with ``ceil(Lk / rows) * B``
    blocks of ``rows * lanes`` threads.
    """
    scalar = numba.from_dtype(dtype)
    dims_per_lane = allocated((max(d, dv) + lanes - 1) // lanes)
    d_columns, dv_columns = allocated(d), allocated(dv)  # shared rows of q or k, and of v or dO
    q_stride, go_stride = odd_stride(d), odd_stride(dv)

    @cuda.jit
    def attention_backward_dkdv(grad_out, q, k, v, lse, delta, mask, has_mask, scale, is_causal, grad_k, grad_v):
        Lq = q.shape[1]
        Lk = k.shape[1]
        b, key0, team, lane = team_of_thread(Lk, rows, lanes)
        j = key0 + team  # this team's key
        key_valid = j < Lk

        k_rows = cuda.shared.array((rows, d_columns), scalar)
        v_rows = cuda.shared.array((rows, dv_columns), scalar)
        q_tile = cuda.shared.array((tile, q_stride), scalar)
        go_tile = cuda.shared.array((tile, go_stride), scalar)
        p_tile = cuda.shared.array((rows, tile), scalar)
        ds_tile = cuda.shared.array((rows, tile), scalar)
        load_rows(k, b, key0, k_rows)
        load_rows(v, b, key0, v_rows)

        dk = cuda.local.array(dims_per_lane, scalar)
        dv_acc = cuda.local.array(dims_per_lane, scalar)
        clear(dk)
        clear(dv_acc)

        query_begin = key0 // tile * tile if is_causal else 0
        for i0 in range(query_begin, Lq, tile):
            cuda.syncthreads()  # the previous tile is used up (and k_rows, v_rows written)
            load_rows(q, b, i0, q_tile)
            load_rows(grad_out, b, i0, go_tile)
            cuda.syncthreads()

            # Lane l: P and dS for query i = i0 + l and the team's key (0 when i does not
            # exist, the key is removed, or every key of row i is removed: lse = -inf).
            if lane < tile:
                i = i0 + lane
                p = scalar(0)
                ds = scalar(0)
                if key_valid and i < Lq and lse[b, i] != -math.inf:
                    s = score(k_rows[team], q_tile[lane], d, scale, mask, has_mask, is_causal, b, i, j)
                    p = math.exp(s - lse[b, i])
                    ds = p * (dot(v_rows[team], go_tile[lane], dv) - delta[b, i])
                p_tile[team, lane] = p
                ds_tile[team, lane] = ds
            cuda.syncthreads()

            for ii in range(tile):
                add_scaled(dv_acc, p_tile[team, ii], go_tile[ii], dv, lane, lanes)  # dv_j += P dO_i
                add_scaled(dk, ds_tile[team, ii], q_tile[ii], d, lane, lanes)  # dk_j += dS q_i

        if not key_valid:
            return
        store_scaled(grad_k[b, j], dk, scale, d, lane, lanes)
        store_scaled(grad_v[b, j], dv_acc, scalar(1), dv, lane, lanes)

    return attention_backward_dkdv


@functools.cache
def attention_backward_dq_kernel(dtype: np.dtype, d: int, dv: int, rows: int, tile: int, lanes: int):
    """Build the fused ``dq``: a team per query, walking the keys tile by tile like the forward.

    Block ``(b, query tile)`` owns ``rows`` queries, one team each. Lane ``l`` recomputes
    ``P`` and ``dS`` for the team's query and key ``k0 + l``, and the team adds
    ``dq_i += dS k_j`` over the tile's keys in order. Each query's sum is owned by one
    team: no atomics. Launch with ``ceil(Lq / rows) * B`` blocks of ``rows * lanes`` threads.
    """
    scalar = numba.from_dtype(dtype)
    dims_per_lane = allocated((d + lanes - 1) // lanes)
    d_columns, dv_columns = allocated(d), allocated(dv)  # shared rows of q or k, and of v or dO
    k_stride, v_stride = odd_stride(d), odd_stride(dv)

    @cuda.jit
    def attention_backward_dq(grad_out, q, k, v, lse, delta, mask, has_mask, scale, is_causal, grad_q):
        Lq = q.shape[1]
        Lk = k.shape[1]
        b, row0, team, lane = team_of_thread(Lq, rows, lanes)
        i = row0 + team  # this team's query
        # A row with every key removed (lse = -inf) has no gradient: dq stays 0.
        row_live = i < Lq and lse[b, i] != -math.inf
        lse_i = lse[b, i] if row_live else scalar(0)
        delta_i = delta[b, i] if row_live else scalar(0)

        q_rows = cuda.shared.array((rows, d_columns), scalar)
        go_rows = cuda.shared.array((rows, dv_columns), scalar)
        k_tile = cuda.shared.array((tile, k_stride), scalar)
        v_tile = cuda.shared.array((tile, v_stride), scalar)
        ds_tile = cuda.shared.array((rows, tile), scalar)
        load_rows(q, b, row0, q_rows)
        load_rows(grad_out, b, row0, go_rows)

        dq = cuda.local.array(dims_per_lane, scalar)
        clear(dq)

        for k0 in range(0, keys_seen(Lk, row0 + rows - 1, is_causal), tile):
            cuda.syncthreads()
            load_rows(k, b, k0, k_tile)
            load_rows(v, b, k0, v_tile)
            cuda.syncthreads()

            if lane < tile:
                j = k0 + lane
                ds = scalar(0)
                if row_live and j < Lk:
                    p = math.exp(
                        score(q_rows[team], k_tile[lane], d, scale, mask, has_mask, is_causal, b, i, j) - lse_i
                    )
                    ds = p * (dot(go_rows[team], v_tile[lane], dv) - delta_i)
                ds_tile[team, lane] = ds
            cuda.syncthreads()

            for jj in range(tile):
                add_scaled(dq, ds_tile[team, jj], k_tile[jj], d, lane, lanes)  # dq_i += dS k_j

        if i >= Lq:
            return
        store_scaled(grad_q[b, i], dq, scale, d, lane, lanes)

    return attention_backward_dq
