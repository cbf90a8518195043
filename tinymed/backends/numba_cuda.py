"""The Numba backend: the contract's primitives, launched as the ``@cuda.jit`` kernels of
``tinymed.kernels.numba`` (the package built from ``kernels/numba``).

Two ways to run, chosen when Numba is first imported:

* **on a GPU**, arrays are CuPy arrays (``xp`` is ``cupy``); a kernel receives them through
  ``__cuda_array_interface__``, the protocol by which CUDA libraries share device memory
  without copying;
* **in Numba's CUDA simulator** (``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported),
  arrays are NumPy arrays (``xp`` is ``numpy``) and every GPU thread runs as Python code.
  It is slow, but it runs, and lets a machine with no GPU test the very same kernel code.

Each primitive here only allocates the outputs, picks the launch shape (how many blocks of
how many threads) and launches; the arithmetic is all in the kernels.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType

import numpy

from tinymed.backends import output_size
from tinymed.backends.launch import (
    attention_grid,
    broadcast_mask,
    ceil_div,
    float_dtype,
    gemm_grid,
    gemm_sizes,
    gemm_splits,
    shared_docstring,
)

try:
    import numba
    from numba import cuda
except ImportError:  # Numba is optional: unavailable_reason() says what to install
    numba = None

name = "numba"
SIMULATOR: bool = numba is not None and bool(numba.config.ENABLE_CUDASIM)

cupy: ModuleType | None = None
if numba is not None and not SIMULATOR:
    try:
        import cupy
    except ImportError:
        pass  # unavailable_reason() says what to install

xp: ModuleType = cupy if cupy is not None else numpy

if numba is not None:
    from tinymed.kernels.numba import attention, conv, pool
    from tinymed.kernels.numba import gemm as gemm_kernels

# Launch shapes. On a GPU they are those of the CUDA C kernels (tinymed.backends.cupy_cuda),
# so the two backends can be compared kernel for kernel. The simulator starts a Python
# thread for every GPU thread (about a millisecond each), so there blocks and tiles are
# tiny, which also lets tiny test shapes cross several tile edges.
if SIMULATOR:
    THREADS_PER_BLOCK = 32  # kernels with one thread per output element
    GRAD_WEIGHT_THREADS = 4  # a power of two, for the tree reduction
    GEMM_TILE, GEMM_K_STEP, GEMM_THREADS_SIDE = 8, 4, 4
    GEMM_MIN_STEPS_PER_SPLIT = 1
    MULTIPROCESSORS = 2  # a pretend GPU, so that small products are split along K too
    ATTENTION_LANES = 4
    ATTENTION_ROWS = {numpy.dtype(numpy.float32): 2, numpy.dtype(numpy.float64): 2}
    ATTENTION_TILE = {numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 3}
else:
    THREADS_PER_BLOCK = 256
    GRAD_WEIGHT_THREADS = 256
    GEMM_TILE, GEMM_K_STEP, GEMM_THREADS_SIDE = 64, 16, 16
    GEMM_MIN_STEPS_PER_SPLIT = 8  # see tinymed.backends.launch.gemm_splits
    MULTIPROCESSORS = None  # asked of the GPU (see _multiprocessors)
    ATTENTION_LANES = 32  # a warp
    # Doubles take twice the bytes, so their tiles are halved to stay within the 48 KiB of
    # shared memory a block gets by default.
    ATTENTION_ROWS = {numpy.dtype(numpy.float32): 8, numpy.dtype(numpy.float64): 4}
    ATTENTION_TILE = {numpy.dtype(numpy.float32): 32, numpy.dtype(numpy.float64): 16}

_INSTALL_HINT = (
    "install a GPU build with pip install 'tinymed[cuda]', or set NUMBA_ENABLE_CUDASIM=1 "
    "before importing tinymed to run the Numba kernels in Numba's CUDA simulator (slow, no GPU needed)"
)


@functools.cache
def unavailable_reason() -> str | None:
    """``None`` when the Numba kernels can run here (GPU or simulator), else why not and what to do."""
    if numba is None:
        return f"Numba is not installed; {_INSTALL_HINT}"
    if SIMULATOR:
        return None
    if not cuda.is_available():
        return f"Numba finds no usable CUDA GPU (no NVIDIA GPU, or its driver is missing or too old); {_INSTALL_HINT}"
    if cupy is None:
        return f"CuPy is not installed (on a GPU this backend keeps its arrays in CuPy); {_INSTALL_HINT}"
    # A GPU is not enough: compiling needs NVVM from the CUDA toolkit, which plain numba-cuda
    # does not bring. Without this a wheel-only machine would say yes here and fail at its
    # first kernel. (NvvmError: NVVM refused the code or options; NvvmSupportError, an
    # ImportError: no NVVM at all.)
    try:
        cuda.compile_ptx(_probe, (), cc=cuda.get_current_device().compute_capability)
    except (cuda.cudadrv.error.NvvmError, numba.core.errors.NumbaError, ImportError, RuntimeError, OSError) as error:
        return f"Numba cannot compile a CUDA kernel here ({type(error).__name__}: {error}); {_INSTALL_HINT}"
    return None


def _probe() -> None:
    """The smallest kernel: compiling it tells whether Numba finds its compiler."""


def asarray(array):
    """Move a NumPy (or this backend's) array onto this backend."""
    return xp.asarray(array)


def to_numpy(array) -> numpy.ndarray:
    """Bring one of this backend's arrays back to the host as a NumPy array."""
    return cupy.asnumpy(array) if xp is cupy else numpy.asarray(array)


# ---------------------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------------------


def _contiguous(array, dtype):
    """``array`` as C-contiguous memory of ``dtype``: the layout the kernels read fastest."""
    array = xp.ascontiguousarray(array, dtype=dtype)
    if SIMULATOR and not array.flags.writeable:
        # The simulator copies every NumPy argument back after a launch, inputs included.
        array = array.copy()
    return array


def _launch(kernel, grid: int | tuple[int, ...], threads: int, *args) -> None:
    """Launch ``kernel`` on a grid of ``grid`` blocks (a tuple for a 2-D or 3-D grid) of
    ``threads`` threads each; skip an empty grid, which CUDA refuses."""
    if math.prod(grid if isinstance(grid, tuple) else (grid,)) > 0:
        kernel[grid, threads](*args)


def _launch_per_element(kernel, count: int, *args) -> None:
    """Launch ``kernel`` with one thread for each of ``count`` elements (a 1-D grid)."""
    _launch(kernel, ceil_div(count, THREADS_PER_BLOCK), THREADS_PER_BLOCK, *args)


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------


@shared_docstring
def conv2d_forward(x, weight, bias, stride, padding, dilation):
    dtype = float_dtype("conv2d_forward", x)
    x, weight = _contiguous(x, dtype), _contiguous(weight, dtype)
    N, _, H, W = x.shape
    O, _, KH, KW = weight.shape
    OH, OW = map(output_size, (H, W), (KH, KW), stride, padding, dilation)
    # No bias is a bias of zeros: adding 0 changes nothing, and one kernel serves both.
    bias = xp.zeros(O, dtype) if bias is None else _contiguous(bias, dtype)
    y = xp.empty((N, O, OH, OW), dtype)
    groups = ceil_div(O, conv.CHANNELS_PER_THREAD)
    _launch_per_element(
        conv.conv2d_forward_kernel(dtype),
        N * groups * OH * OW,
        x,
        weight,
        bias,
        y,
        *stride,
        *padding,
        *dilation,
    )
    return y


@shared_docstring
def conv2d_grad_input(grad_output, weight, input_size, stride, padding, dilation):
    dtype = float_dtype("conv2d_grad_input", grad_output)
    grad_output, weight = _contiguous(grad_output, dtype), _contiguous(weight, dtype)
    N, C, (H, W) = grad_output.shape[0], weight.shape[1], input_size
    gx = xp.empty((N, C, H, W), dtype)
    groups = ceil_div(C, conv.CHANNELS_PER_THREAD)
    _launch_per_element(
        conv.conv2d_grad_input_kernel(dtype),
        N * groups * H * W,
        grad_output,
        weight,
        gx,
        *stride,
        *padding,
        *dilation,
    )
    return gx


@shared_docstring
def conv2d_grad_weight(x, grad_output, kernel_size, stride, padding, dilation):
    dtype = float_dtype("conv2d_grad_weight", x)
    x, grad_output = _contiguous(x, dtype), _contiguous(grad_output, dtype)
    gw = xp.empty((grad_output.shape[1], x.shape[1], *kernel_size), dtype)
    _launch(
        conv.conv2d_grad_weight_kernel(dtype, GRAD_WEIGHT_THREADS),
        gw.size,
        GRAD_WEIGHT_THREADS,
        x,
        grad_output,
        gw,
        *stride,
        *padding,
        *dilation,
    )
    return gw


# ---------------------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------------------


@shared_docstring
def max_pool2d_forward(x, kernel_size, stride, padding, dilation):
    dtype = float_dtype("max_pool2d_forward", x)
    x = _contiguous(x, dtype)
    N, C, H, W = x.shape
    OH, OW = map(output_size, (H, W), kernel_size, stride, padding, dilation)
    y = xp.empty((N, C, OH, OW), dtype)
    indices = xp.empty((N, C, OH, OW), numpy.int64)
    _launch_per_element(
        pool.max_pool2d_forward_kernel(dtype),
        y.size,
        x,
        y,
        indices,
        *kernel_size,
        *stride,
        *padding,
        *dilation,
    )
    return y, indices


@shared_docstring
def max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride, padding, dilation):
    dtype = float_dtype("max_pool2d_backward", grad_output)
    grad_output, indices = _contiguous(grad_output, dtype), _contiguous(indices, numpy.int64)
    N, C = grad_output.shape[:2]
    gx = xp.empty((N, C, *input_size), dtype)
    _launch_per_element(
        pool.max_pool2d_backward_kernel(dtype),
        gx.size,
        grad_output,
        indices,
        gx,
        *kernel_size,
        *stride,
        *padding,
        *dilation,
    )
    return gx


# ---------------------------------------------------------------------------------------
# Affine
# ---------------------------------------------------------------------------------------


@functools.cache
def _multiprocessors() -> int:
    """How many streaming multiprocessors (each runs a few blocks at a time) the GPU has."""
    return MULTIPROCESSORS or cuda.get_current_device().MULTIPROCESSOR_COUNT


@shared_docstring
def gemm(a, b, bias=None, trans_a=False, trans_b=False):
    dtype = float_dtype("gemm", a)
    a, b = _contiguous(a, dtype), _contiguous(b, dtype)
    M, K, N = gemm_sizes(a, b, trans_a, trans_b)
    # No bias is a bias of zeros: adding 0 changes nothing, and one kernel serves both.
    bias = xp.zeros(N, dtype) if bias is None else _contiguous(bias, dtype)
    c = xp.empty((M, N), dtype)
    if c.size == 0:
        return c
    splits, k_chunk = gemm_splits(M, N, K, GEMM_TILE, GEMM_K_STEP, GEMM_MIN_STEPS_PER_SPLIT, _multiprocessors())
    partial = c.reshape(1, M, N) if splits == 1 else xp.empty((splits, M, N), dtype)
    _launch(
        gemm_kernels.gemm_kernel(dtype, GEMM_TILE, GEMM_K_STEP, GEMM_THREADS_SIDE),
        gemm_grid(M, N, splits, GEMM_TILE),
        GEMM_THREADS_SIDE**2,
        a,
        b,
        bias,
        partial,
        bool(trans_a),
        bool(trans_b),
        k_chunk,
    )
    if splits > 1:
        _launch_per_element(gemm_kernels.gemm_sum_splits, M * N, partial, bias, c)
    return c


# ---------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------


def _attention_inputs(op: str, q, k, v, mask):
    """q, k, v C-contiguous in q's dtype, the mask argument and its flag, and the sizes.

    Kernels take arrays, never ``None``: a missing mask is a 1-element placeholder that the
    kernel, told ``has_mask=False``, never reads.
    """
    dtype = float_dtype(op, q)
    q, k, v = (_contiguous(array, dtype) for array in (q, k, v))
    (B, Lq, D), (Lk, Dv) = q.shape, v.shape[1:]
    if mask is None:
        mask, has_mask = xp.zeros((1, 1, 1), dtype), False
    else:
        # The kernels index mask[b, i, j]: a mask of another shape would be read out of bounds.
        mask, has_mask = broadcast_mask(op, xp, xp.asarray(mask, dtype), (B, Lq, Lk)), True
        if SIMULATOR:  # the simulator writes every argument back, so a read-only view will not do
            mask = mask.copy()
    return dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv)


def _fused_launch(op: str, build, rows: int, batch: int, dtype: numpy.dtype, D: int, Dv: int, *args):
    """Build the fused kernel ``build(...)`` for these head sizes and launch it: a block of one
    team of lanes per row for each ``ATTENTION_ROWS`` of the ``rows`` rows of every head."""
    per_block = ATTENTION_ROWS[dtype]
    grid, threads = attention_grid(op, rows, batch, D, Dv, per_block, ATTENTION_LANES)
    _launch(build(dtype, D, Dv, per_block, ATTENTION_TILE[dtype], ATTENTION_LANES), grid, threads, *args)


@shared_docstring
def attention_forward(q, k, v, mask, scale, is_causal):
    dtype, q, k, v, mask, has_mask, (B, Lq, _, D, Dv) = _attention_inputs("attention_forward", q, k, v, mask)
    out = xp.empty((B, Lq, Dv), dtype)
    lse = xp.empty((B, Lq), dtype)
    _fused_launch(
        "attention_forward",
        attention.attention_forward_kernel,
        Lq,
        B,
        dtype,
        D,
        Dv,
        q,
        k,
        v,
        mask,
        has_mask,
        dtype.type(scale),
        bool(is_causal),
        out,
        lse,
    )
    return out, lse


@shared_docstring
def attention_backward(grad_out, q, k, v, out, lse, mask, scale, is_causal):
    dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv) = _attention_inputs("attention_backward", q, k, v, mask)
    grad_out, out, lse = (_contiguous(array, dtype) for array in (grad_out, out, lse))
    delta = (grad_out * out).sum(axis=-1)  # a reduction: the array module does it
    gq, gk, gv = xp.empty_like(q), xp.empty_like(k), xp.empty_like(v)
    shared = (grad_out, q, k, v, lse, delta, mask, has_mask, dtype.type(scale), bool(is_causal))
    op = "attention_backward"
    _fused_launch(op, attention.attention_backward_dkdv_kernel, Lk, B, dtype, D, Dv, *shared, gk, gv)
    _fused_launch(op, attention.attention_backward_dq_kernel, Lq, B, dtype, D, Dv, *shared, gq)
    return gq, gk, gv


def _batched_matmul(a, x, trans_a=False, trans_x=False):
    """``op(a[b]) @ op(x[b])`` for every head ``b``, with the naive kernel (a thread per output)."""
    rows = a.shape[2] if trans_a else a.shape[1]
    cols = x.shape[1] if trans_x else x.shape[2]
    c = xp.empty((a.shape[0], rows, cols), a.dtype)
    _launch_per_element(attention.batched_matmul_kernel(a.dtype), c.size, a, x, trans_a, trans_x, c)
    return c


def _scores(q, k, mask, has_mask, scale, is_causal):
    """The whole ``(B, Lq, Lk)`` score matrix ``scale * q @ k^T + mask`` (causal entries ``-inf``)."""
    s = xp.empty((q.shape[0], q.shape[1], k.shape[1]), q.dtype)
    _launch_per_element(
        attention.attention_scores, s.size, q, k, mask, has_mask, q.dtype.type(scale), bool(is_causal), s
    )
    return s


def attention_forward_naive(q, k, v, mask, scale, is_causal):
    """:func:`attention_forward` the naive way, storing the ``(B, Lq, Lk)`` matrix; same results.

    Three kernels: every score, a softmax per row (in place, also giving ``lse``), the
    weighted sum of v. For benchmarks and as an independent check of the fused kernel.
    """
    dtype, q, k, v, mask, has_mask, (B, Lq, *_) = _attention_inputs("attention_forward_naive", q, k, v, mask)
    p = _scores(q, k, mask, has_mask, scale, is_causal)
    lse = xp.empty((B, Lq), dtype)
    _launch_per_element(attention.attention_softmax_rows_kernel(dtype), B * Lq, p, lse)
    return _batched_matmul(p, v), lse


def attention_backward_naive(grad_out, q, k, v, out, lse, mask, scale, is_causal):
    """:func:`attention_backward` the naive way, through stored ``(B, Lq, Lk)`` matrices.

    Rebuilds ``P = exp(s - lse)`` whole, then the products of the formula with the naive
    batched matrix product. For benchmarks and as an independent check of the fused kernels.
    """
    dtype, q, k, v, mask, has_mask, _ = _attention_inputs("attention_backward_naive", q, k, v, mask)
    grad_out, out, lse = (_contiguous(array, dtype) for array in (grad_out, out, lse))
    s = _scores(q, k, mask, has_mask, scale, is_causal)
    # Elementwise, so the array module does it. A row with lse = -inf has every score -inf;
    # subtracting 0 there instead of -inf keeps exp(-inf - (-inf)) = NaN out and gives P = 0.
    p = xp.exp(s - xp.where(xp.isneginf(lse), dtype.type(0), lse)[..., None])
    delta = (grad_out * out).sum(axis=-1, keepdims=True)
    ds = p * (_batched_matmul(grad_out, v, trans_x=True) - delta)  # elementwise: the array module
    scale = dtype.type(scale)
    gq = scale * _batched_matmul(ds, k)
    gk = scale * _batched_matmul(ds, q, trans_a=True)
    return gq, gk, _batched_matmul(p, grad_out, trans_a=True)
