"""Launch geometry shared by the two GPU backends.

:mod:`tinymed.backends.cupy_cuda` launches the CUDA C kernels of ``kernels/cuda`` and
:mod:`tinymed.backends.numba_cuda` their Numba twins, and both follow the same plan: check
the element type, count the blocks that cover the work, decide whether to split a long
matrix product, refuse attention heads too large for the fused kernels; and both document
each primitive the same way. Those do not depend on the kernel language, so they are written
here once; each backend passes in its own sizes (in Numba's CUDA simulator the tiles and blocks are far smaller than on a GPU).
"""

from __future__ import annotations

import numpy

# The element types every kernel is written for.
FLOAT_DTYPES: tuple[numpy.dtype, ...] = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

# The largest head dimension (D and Dv) of the fused attention kernels. attention.cu sizes
# its shared-memory tiles and each lane's registers for it (its MAX_HEAD_DIM); the Numba
# kernels keep the same limit, so that both backends accept the same inputs.
MAX_HEAD_DIM = 128


def float_dtype(op: str, array) -> numpy.dtype:
    """The element type of ``array``, after checking that the kernels exist for it."""
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: the GPU kernels take float32 or float64 arrays, got {array.dtype}")
    return array.dtype


def ceil_div(count: int, per_group: int) -> int:
    """How many groups of ``per_group`` cover ``count`` items: ``ceil(count / per_group)``.

    As blocks of threads, the last block may be partly empty; its spare threads stop at the
    kernel's bounds check. (Integer arithmetic: ``math.ceil`` of a float division can round
    wrong for counts beyond 2**53.)
    """
    return -(-count // per_group)


def gemm_sizes(a, b, trans_a: bool, trans_b: bool) -> tuple[int, int, int]:
    """``(M, K, N)`` of the product ``op(a) @ op(b)``, after checking that the two K agree."""
    M, K = a.shape[::-1] if trans_a else a.shape
    K_b, N = b.shape[::-1] if trans_b else b.shape
    if K != K_b:
        raise ValueError(
            f"gemm: op(a) is {M}x{K} but op(b) is {K_b}x{N} (a {a.shape}, trans_a={trans_a}; "
            f"b {b.shape}, trans_b={trans_b})"
        )
    return M, K, N


def gemm_grid(M: int, N: int, splits: int, tile: int) -> tuple[int, int, int]:
    """The grid of the tiled GEMM: ``(ceil(M/tile) * ceil(N/tile), 1, splits)`` blocks.

    The output tiles are numbered along x alone: CUDA allows ``2**31 - 1`` blocks along x but
    only 65535 along y and z, which ``ceil(N/64)`` passes at N = 4,194,241.
    """
    return ceil_div(M, tile) * ceil_div(N, tile), 1, splits


def gemm_splits(
    M: int, N: int, K: int, tile: int, k_step: int, min_steps_per_split: int, multiprocessors: int
) -> tuple[int, int]:
    """``(splits, k_chunk)``: into how many chunks of ``k_chunk`` to cut K of a tiled product.

    The output has one block per ``tile x tile`` tile. When that gives the GPU fewer than two
    blocks per multiprocessor and K is long enough to share, K is cut into chunks, one block
    each, of at least ``min_steps_per_split`` steps of ``k_step`` (so that a block still does
    enough work to pay for writing its partial tile). The answer depends only on the shapes
    and the GPU, so a given product always adds in the same order on a given GPU.
    """
    tiles = ceil_div(M, tile) * ceil_div(N, tile)
    k_steps = ceil_div(K, k_step)
    wanted = ceil_div(2 * multiprocessors, tiles)
    splits = max(1, min(wanted, k_steps // min_steps_per_split))
    k_chunk = max(1, ceil_div(k_steps, splits)) * k_step
    # Rounding the chunks up to whole K steps can leave fewer chunks than asked for.
    return max(1, ceil_div(K, k_chunk)), k_chunk


def broadcast_mask(op: str, xp, mask, shape: tuple[int, int, int]):
    """``mask`` broadcast to ``shape = (B, Lq, Lk)`` as a view: a mask shared by the heads is
    read through a zero stride, never copied once per head. Raises when it does not broadcast."""
    try:
        return xp.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"{op}: mask {tuple(mask.shape)} does not broadcast to (B, Lq, Lk) = {shape}") from None


def attention_grid(op: str, rows: int, batch: int, D: int, Dv: int, rows_per_block: int, lanes: int) -> tuple[int, int]:
    """``(blocks, threads per block)`` of a fused attention kernel.

    Each of the ``rows`` rows (queries, or keys for dk and dv) of each of ``batch`` heads gets
    a team of ``lanes`` threads (a warp, on a GPU), ``rows_per_block`` teams to a block.
    Raises when a head dimension exceeds what the fused kernels hold.
    """
    if max(D, Dv) > MAX_HEAD_DIM:
        raise ValueError(
            f"{op}: head dimensions D={D}, Dv={Dv} exceed the fused kernels' limit of "
            f"{MAX_HEAD_DIM}; use attention_forward_naive, or the numpy backend"
        )
    return ceil_div(rows, rows_per_block) * batch, rows_per_block * lanes


# The docstrings of the primitives the two GPU backends launch alike (the same algorithm,
# thread layout and guarantees, in CUDA C and in Numba), written once.
DOCSTRINGS: dict[str, str] = {
    "conv2d_forward": """``y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``.

    x ``(N, C, H, W)``, weight ``(O, C, KH, KW)``, bias ``(O,)`` or ``None``; returns
    ``(N, O, OH, OW)``. Each thread computes 4 output channels of one output pixel.
    """,
    "conv2d_grad_input": """``gx[n,c,h,w]``: the sum of ``gy[n,o,i,j] * w[o,c,p,q]`` over the taps that reach ``(h, w)``.

    Returns ``(N, C, H, W)`` with ``(H, W) = input_size``; also the transposed convolution's
    forward. Each thread gathers 4 input channels of one input pixel (no atomics).
    """,
    "conv2d_grad_weight": """``gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``.

    Returns ``(O, C, KH, KW)``. One block per weight element, reducing in a fixed order.
    """,
    "max_pool2d_forward": """``y`` = the maximum of each window of the ``-inf``-padded input, ``indices = h*W + w`` of it.

    Returns ``(y, indices)``, both ``(N, C, OH, OW)``, indices int64. Ties go to the first
    maximum in row-major window order; a NaN counts as the maximum. One thread per output.
    """,
    "max_pool2d_backward": """``gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]``; returns ``(N, C, *input_size)``.

    One thread per input pixel, gathering from just the windows that cover it, in row-major
    output order (no atomics); the window geometry is the forward pass's.
    """,
    "gemm": """``c = op(a) @ op(b) + bias``, ``op(m) = m.T`` when its flag is set; bias ``(cols,)``.

    A shared-memory tiled kernel with the bias fused in; transposes are read in place, never
    copied. A thin product with a long K is split along K and the chunks added in order.
    """,
    "attention_forward": """Fused scaled dot-product attention: ``out = softmax(scale * q @ k^T + mask) @ v`` and ``lse``.

    q ``(B, Lq, D)``, k ``(B, Lk, D)``, v ``(B, Lk, Dv)``, mask ``None`` or additive
    ``(B, Lq, Lk)``; returns ``out (B, Lq, Dv)`` and ``lse (B, Lq)``. The ``Lq x Lk`` score
    matrix is never stored (an online softmax over key tiles); D, Dv <= 128.
    """,
    "attention_backward": """Fused attention backward from the saved ``out`` and ``lse``; returns ``(gq, gk, gv)``.

    ``P = exp(s - lse)``, ``D = rowsum(grad_out * out)``, ``dS = P * (grad_out @ v^T - D)``,
    ``gq = scale * dS @ k``, ``gk = scale * dS^T @ q``, ``gv = P^T @ grad_out``, recomputing
    P tile by tile. One kernel gives gk and gv (a team of lanes, a warp on a GPU, per key,
    walking the queries), another gq (a team per query, walking the keys): every sum has one
    owner, so no atomics.
    """,
}


def shared_docstring(function):
    """Give a GPU backend's launcher of a contract primitive its shared docstring (:data:`DOCSTRINGS`,
    by the function's name): both backends document the one algorithm they launch."""
    function.__doc__ = DOCSTRINGS[function.__name__]
    return function
