"""The CuPy backend: the contract's primitives, launched as the CUDA C kernels of ``kernels/cuda``.

Arrays are ``cupy.ndarray`` (GPU memory); ``xp`` is ``cupy``. Each family's ``.cu`` file is
compiled at run time by ``cupy.RawModule`` (NVRTC, NVIDIA's run-time compiler), once per
process, for both element types: the kernels are C++ templates and are looked up by their
instantiated names, ``"conv2d_forward<float>"``, ``"conv2d_forward<double>"``. CuPy also
keeps the compiled code on disk (``~/.cupy/kernel_cache``), so later processes skip NVRTC.

Each primitive here only checks and allocates, makes its inputs C-contiguous (the kernels
index plain row-major memory), picks the launch shape (how many blocks of how many threads)
and launches; the arithmetic is all in the kernels. Importing this module never needs CuPy
or a GPU: :func:`unavailable_reason` says what is missing.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy

from tinymed.backends import output_size
from tinymed.backends.launch import (
    attention_grid,
    ceil_div,
    float_dtype,
    gemm_grid,
    gemm_sizes,
    gemm_splits,
    shared_docstring,
)
from tinymed.kernels import NVRTC_OPTIONS, cuda_source

try:
    import cupy
except ImportError as error:  # CuPy is optional: unavailable_reason() says what to install
    cupy = None
    _CUPY_IMPORT_ERROR: ImportError | None = error
else:
    _CUPY_IMPORT_ERROR = None

name = "cupy"
xp: ModuleType | None = cupy

# The kernels of each family (the file kernels/cuda/<family>.cu), and the C++ element type
# each NumPy dtype instantiates them with. The tests compile every name below with NVRTC.
KERNELS: dict[str, tuple[str, ...]] = {
    "conv": ("conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight"),
    "pool": ("max_pool2d_forward", "max_pool2d_backward"),
    "gemm": ("gemm_tiled", "gemm_sum_splits"),
    "attention": (
        "attention_scores",
        "attention_softmax_rows",
        "attention_weighted_sum",
        "attention_fused_forward",
        "attention_backward_delta",
        "attention_fused_backward_dkdv",
        "attention_fused_backward_dq",
    ),
}
C_TYPES: dict[numpy.dtype, str] = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}

# Launch constants that the kernels assume; each must equal the constant of the same name in
# its .cu file (tests/test_cuda_compile.py checks that they do; the fused attention kernels'
# MAX_HEAD_DIM is tinymed.backends.launch's).
THREADS_PER_BLOCK = 256  # for the kernels with one thread per output element
CHANNELS_PER_THREAD = 4  # conv.cu
GRAD_WEIGHT_THREADS = 256  # conv.cu
GEMM_TILE = 64  # gemm.cu
GEMM_K_STEP = 16  # gemm.cu
ATTENTION_ROWS = {numpy.dtype(numpy.float32): 8, numpy.dtype(numpy.float64): 4}  # AttentionTile<T>::ROWS
WARP = 32  # attention.cu
# The host's own choice, not the kernels': see tinymed.backends.launch.gemm_splits.
GEMM_MIN_STEPS_PER_SPLIT = 8

# CUDA runtime error codes that have a plainer explanation than CuPy's message.
_CUDA_ERRORS = {
    35: "the NVIDIA driver is too old for the CUDA version CuPy was built for; update the driver",
    100: "no CUDA GPU is visible on this machine",
}


@functools.cache
def unavailable_reason() -> str | None:
    """``None`` when CuPy can run kernels here, else why not and what to install."""
    if cupy is None:
        return f"CuPy is not installed ({_CUPY_IMPORT_ERROR}); pip install 'tinymed[cuda]' (cupy-cuda13x)"
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except (RuntimeError, OSError, ImportError) as error:  # CUDARuntimeError, or no CUDA library
        explanation = _CUDA_ERRORS.get(getattr(error, "status", None), "CuPy cannot use a CUDA GPU here")
        return f"{explanation} ({type(error).__name__}: {error})"
    if devices == 0:
        return _CUDA_ERRORS[100]
    # A GPU is not enough: compiling needs NVRTC and the CUDA headers, which plain
    # cupy-cuda13x does not bring. Without this a wheel-only machine would say yes here
    # and fail at its first kernel.
    try:
        cupy.RawKernel('extern "C" __global__ void tinymed_probe() {}', "tinymed_probe").compile()
    except (cupy.cuda.compiler.CompileException, RuntimeError, OSError, ImportError) as error:
        return (
            f"CuPy cannot compile a CUDA kernel here ({type(error).__name__}: {error}); "
            "pip install 'tinymed[cuda]' brings NVRTC and the CUDA headers (cupy-cuda13x[ctk])"
        )
    return None


def device_count() -> int:
    """How many CUDA GPUs CuPy sees (0 when it cannot run here)."""
    return 0 if unavailable_reason() is not None else cupy.cuda.runtime.getDeviceCount()


def asarray(array):
    """Move a NumPy (or CuPy) array onto the current GPU."""
    return cupy.asarray(array)


def to_numpy(array) -> numpy.ndarray:
    """Bring a CuPy array back to the host as a NumPy array."""
    return cupy.asnumpy(array)


# ---------------------------------------------------------------------------------------
# Compiling and launching
# ---------------------------------------------------------------------------------------


def name_expressions(family: str) -> list[str]:
    """Every kernel of ``family`` instantiated for every element type: ``["conv2d_forward<float>", ...]``."""
    return [f"{kernel}<{c_type}>" for kernel in KERNELS[family] for c_type in C_TYPES.values()]


@functools.cache
def _module(family: str):
    """``kernels/cuda/<family>.cu`` as a ``cupy.RawModule``, compiled on first use, once per process."""
    return cupy.RawModule(code=cuda_source(family), options=NVRTC_OPTIONS, name_expressions=name_expressions(family))


def _kernel(family: str, kernel: str, dtype: numpy.dtype):
    """The compiled kernel ``kernel<float>`` or ``kernel<double>`` of ``family``, on the current GPU."""
    return _function(family, kernel, dtype, cupy.cuda.runtime.getDevice())


@functools.cache
def _function(family: str, kernel: str, dtype: numpy.dtype, device: int):
    """:func:`_kernel` looked up once per GPU: ``RawModule.get_function`` builds a new
    ``RawKernel`` (and searches the compile cache for it) on every call, which every launch paid for."""
    return _module(family).get_function(f"{kernel}<{C_TYPES[dtype]}>")


@functools.cache
def _multiprocessors(device: int) -> int:
    """How many streaming multiprocessors (each runs a few blocks at a time) the GPU has."""
    return cupy.cuda.runtime.getDeviceProperties(device)["multiProcessorCount"]


def _ints(*values) -> tuple[numpy.int32, ...]:
    """Kernel ``int`` arguments. CuPy passes a value by its type, and a Python int would
    arrive as a 64-bit integer where the kernel reads 32 bits, so each is made an int32."""
    return tuple(numpy.int32(value) for value in values)


def _launch(op: str, kernel, grid: int, threads: int, args: tuple, indexed: int | None = None) -> None:
    """Launch ``grid`` blocks of ``threads`` threads in a 1-D grid; skip an empty launch.

    ``indexed`` is the largest count the kernel numbers with a 32-bit int; by default the
    threads of the grid, which most kernels number in one int (blockIdx.x * blockDim.x + ...).
    """
    indexed = grid * threads if indexed is None else indexed
    if indexed >= 2**31:
        raise ValueError(f"{op}: {indexed} exceeds the kernels' 32-bit indices (launching {grid} blocks of {threads})")
    if grid > 0:  # CUDA refuses a grid of zero blocks
        kernel((grid,), (threads,), args)


def _launch_per_element(op: str, kernel, count: int, args: tuple) -> None:
    """Launch ``kernel`` with one thread for each of ``count`` elements (a 1-D grid)."""
    _launch(op, kernel, ceil_div(count, THREADS_PER_BLOCK), THREADS_PER_BLOCK, args)


def _launch_warp_per_row(op: str, kernel, rows: int, args: tuple) -> None:
    """Launch ``kernel`` with one warp (32 threads) for each of ``rows`` rows (a 1-D grid)."""
    _launch(op, kernel, ceil_div(rows * WARP, THREADS_PER_BLOCK), THREADS_PER_BLOCK, args)


def _contiguous(array, dtype: numpy.dtype):
    """``array`` as C-contiguous GPU memory of ``dtype`` (copied only when it is not already)."""
    return cupy.ascontiguousarray(array, dtype=dtype)


def _optional(array, dtype: numpy.dtype, shape: tuple[int, ...] | None = None):
    """``(array, present)`` for an optional kernel argument such as a bias or a mask.

    CuPy passes ``None`` as a null pointer; the flag 0 tells the kernel never to read it.
    """
    if array is None:
        return None, numpy.int32(0)
    if shape is not None:
        array = cupy.broadcast_to(array, shape)
    return _contiguous(array, dtype), numpy.int32(1)


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------


@shared_docstring
def conv2d_forward(x, weight, bias, stride, padding, dilation):
    dtype = float_dtype("conv2d_forward", x)
    x, weight = _contiguous(x, dtype), _contiguous(weight, dtype)
    N, C, H, W = x.shape
    O, _, KH, KW = weight.shape
    OH, OW = map(output_size, (H, W), (KH, KW), stride, padding, dilation)
    bias, has_bias = _optional(bias, dtype)
    y = cupy.empty((N, O, OH, OW), dtype)
    groups = ceil_div(O, CHANNELS_PER_THREAD)
    _launch_per_element(
        "conv2d_forward",
        _kernel("conv", "conv2d_forward", dtype),
        N * groups * OH * OW,
        (x, weight, bias, has_bias, y, *_ints(N, C, H, W, O, KH, KW, OH, OW, *stride, *padding, *dilation)),
    )
    return y


@shared_docstring
def conv2d_grad_input(grad_output, weight, input_size, stride, padding, dilation):
    dtype = float_dtype("conv2d_grad_input", grad_output)
    grad_output, weight = _contiguous(grad_output, dtype), _contiguous(weight, dtype)
    N, O, OH, OW = grad_output.shape
    _, C, KH, KW = weight.shape
    H, W = input_size
    gx = cupy.empty((N, C, H, W), dtype)
    groups = ceil_div(C, CHANNELS_PER_THREAD)
    _launch_per_element(
        "conv2d_grad_input",
        _kernel("conv", "conv2d_grad_input", dtype),
        N * groups * H * W,
        (grad_output, weight, gx, *_ints(N, C, H, W, O, KH, KW, OH, OW, *stride, *padding, *dilation)),
    )
    return gx


@shared_docstring
def conv2d_grad_weight(x, grad_output, kernel_size, stride, padding, dilation):
    dtype = float_dtype("conv2d_grad_weight", x)
    x, grad_output = _contiguous(x, dtype), _contiguous(grad_output, dtype)
    N, C, H, W = x.shape
    _, O, OH, OW = grad_output.shape
    KH, KW = kernel_size
    gw = cupy.empty((O, C, KH, KW), dtype)
    _launch(
        "conv2d_grad_weight",
        _kernel("conv", "conv2d_grad_weight", dtype),
        gw.size,
        GRAD_WEIGHT_THREADS,
        (x, grad_output, gw, *_ints(N, C, H, W, O, KH, KW, OH, OW, *stride, *padding, *dilation)),
        # Its block number, and the terms of each sum, which a thread steps past by up to a block.
        indexed=max(gw.size, N * OH * OW + GRAD_WEIGHT_THREADS),
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
    y = cupy.empty((N, C, OH, OW), dtype)
    indices = cupy.empty((N, C, OH, OW), numpy.int64)
    _launch_per_element(
        "max_pool2d_forward",
        _kernel("pool", "max_pool2d_forward", dtype),
        y.size,
        (x, y, indices, *_ints(N * C, H, W, OH, OW, *kernel_size, *stride, *padding, *dilation)),
    )
    return y, indices


@shared_docstring
def max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride, padding, dilation):
    dtype = float_dtype("max_pool2d_backward", grad_output)
    grad_output = _contiguous(grad_output, dtype)
    indices = _contiguous(indices, numpy.int64)
    N, C, OH, OW = grad_output.shape
    H, W = input_size
    gx = cupy.empty((N, C, H, W), dtype)
    _launch_per_element(
        "max_pool2d_backward",
        _kernel("pool", "max_pool2d_backward", dtype),
        gx.size,
        (grad_output, indices, gx, *_ints(N * C, H, W, OH, OW, *kernel_size, *stride, *padding, *dilation)),
    )
    return gx


# ---------------------------------------------------------------------------------------
# Affine
# ---------------------------------------------------------------------------------------


@shared_docstring
def gemm(a, b, bias=None, trans_a=False, trans_b=False):
    dtype = float_dtype("gemm", a)
    a, b = _contiguous(a, dtype), _contiguous(b, dtype)
    M, K, N = gemm_sizes(a, b, trans_a, trans_b)
    bias, has_bias = _optional(bias, dtype)
    c = cupy.empty((M, N), dtype)
    if c.size == 0:
        return c
    multiprocessors = _multiprocessors(cupy.cuda.runtime.getDevice())
    splits, k_chunk = gemm_splits(M, N, K, GEMM_TILE, GEMM_K_STEP, GEMM_MIN_STEPS_PER_SPLIT, multiprocessors)
    partial = c if splits == 1 else cupy.empty((splits, M, N), dtype)
    _kernel("gemm", "gemm_tiled", dtype)(
        gemm_grid(M, N, splits, GEMM_TILE),
        (THREADS_PER_BLOCK,),
        (a, b, bias, has_bias, partial, *_ints(M, N, K, trans_a, trans_b, k_chunk)),
    )
    if splits > 1:
        _launch_per_element(
            "gemm",
            _kernel("gemm", "gemm_sum_splits", dtype),
            M * N,
            (partial, bias, has_bias, c, *_ints(splits, M, N)),
        )
    return c


# ---------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------


def _attention_inputs(op: str, q, k, v, mask):
    """q, k, v C-contiguous in q's dtype, the mask argument and its flag, and the sizes."""
    dtype = float_dtype(op, q)
    q, k, v = (_contiguous(array, dtype) for array in (q, k, v))
    (B, Lq, D), (Lk, Dv) = q.shape, v.shape[1:]
    mask, has_mask = _optional(mask, dtype, (B, Lq, Lk))
    return dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv)


def _fused_launch(op: str, kernel, rows: int, batch: int, dtype: numpy.dtype, D: int, Dv: int, args):
    """Launch a fused attention kernel: a block of one warp per row for each ``ROWS`` rows."""
    grid, threads = attention_grid(op, rows, batch, D, Dv, ATTENTION_ROWS[dtype], WARP)
    _launch(op, kernel, grid, threads, args)


@shared_docstring
def attention_forward(q, k, v, mask, scale, is_causal):
    dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv) = _attention_inputs("attention_forward", q, k, v, mask)
    out = cupy.empty((B, Lq, Dv), dtype)
    lse = cupy.empty((B, Lq), dtype)
    _fused_launch(
        "attention_forward",
        _kernel("attention", "attention_fused_forward", dtype),
        Lq,
        B,
        dtype,
        D,
        Dv,
        (q, k, v, mask, has_mask, numpy.int32(is_causal), dtype.type(scale), out, lse, *_ints(Lq, Lk, D, Dv)),
    )
    return out, lse


def _delta(grad_out, out):
    """``delta[b,i] = grad_out[b,i] . out[b,i]``, one warp per row."""
    B, Lq, Dv = out.shape
    delta = cupy.empty((B, Lq), out.dtype)
    _launch_warp_per_row(
        "attention_backward",
        _kernel("attention", "attention_backward_delta", out.dtype),
        B * Lq,
        (grad_out, out, delta, *_ints(B * Lq, Dv)),
    )
    return delta


@shared_docstring
def attention_backward(grad_out, q, k, v, out, lse, mask, scale, is_causal):
    dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv) = _attention_inputs("attention_backward", q, k, v, mask)
    grad_out, out, lse = (_contiguous(array, dtype) for array in (grad_out, out, lse))
    delta = _delta(grad_out, out)
    gq, gk, gv = cupy.empty_like(q), cupy.empty_like(k), cupy.empty_like(v)
    shared = (grad_out, q, k, v, lse, delta, mask, has_mask, numpy.int32(is_causal), dtype.type(scale))
    _fused_launch(
        "attention_backward",
        _kernel("attention", "attention_fused_backward_dkdv", dtype),
        Lk,
        B,
        dtype,
        D,
        Dv,
        (*shared, gk, gv, *_ints(Lq, Lk, D, Dv)),
    )
    _fused_launch(
        "attention_backward",
        _kernel("attention", "attention_fused_backward_dq", dtype),
        Lq,
        B,
        dtype,
        D,
        Dv,
        (*shared, gq, *_ints(Lq, Lk, D, Dv)),
    )
    return gq, gk, gv


def _scores(q, k, mask, has_mask, scale, is_causal):
    """The whole ``(B, Lq, Lk)`` score matrix ``scale * q @ k^T + mask`` (causal entries ``-inf``)."""
    (B, Lq, D), Lk = q.shape, k.shape[1]
    s = cupy.empty((B, Lq, Lk), q.dtype)
    _launch_per_element(
        "attention",
        _kernel("attention", "attention_scores", q.dtype),
        s.size,
        (q, k, mask, has_mask, numpy.int32(is_causal), q.dtype.type(scale), s, *_ints(B, Lq, Lk, D)),
    )
    return s


def _weighted_sum(p, v):
    """``p @ v`` for every head: ``(B, Lq, Lk) @ (B, Lk, Dv)``, one thread per output element."""
    (B, Lq, Lk), Dv = p.shape, v.shape[2]
    out = cupy.empty((B, Lq, Dv), p.dtype)
    _launch_per_element(
        "attention",
        _kernel("attention", "attention_weighted_sum", p.dtype),
        out.size,
        (p, v, out, *_ints(B, Lq, Lk, Dv)),
    )
    return out


def _transposed(array):
    """``array`` with its last two axes swapped, copied into C-contiguous memory."""
    return cupy.ascontiguousarray(array.transpose(0, 2, 1))


def attention_forward_naive(q, k, v, mask, scale, is_causal):
    """:func:`attention_forward` the naive way, storing the ``(B, Lq, Lk)`` matrix; same results.

    Three kernels: every score, a softmax per row (in place, also giving ``lse``), the
    weighted sum of v. For benchmarks and as an independent check of the fused kernel.
    """
    dtype, q, k, v, mask, has_mask, (B, Lq, Lk, D, Dv) = _attention_inputs("attention_forward_naive", q, k, v, mask)
    p = _scores(q, k, mask, has_mask, scale, is_causal)
    lse = cupy.empty((B, Lq), dtype)
    _launch_warp_per_row(
        "attention_forward_naive",
        _kernel("attention", "attention_softmax_rows", dtype),
        B * Lq,
        (p, lse, *_ints(B * Lq, Lk)),
    )
    return _weighted_sum(p, v), lse


def attention_backward_naive(grad_out, q, k, v, out, lse, mask, scale, is_causal):
    """:func:`attention_backward` the naive way, through stored ``(B, Lq, Lk)`` matrices.

    Rebuilds P = exp(s - lse) whole, then dP = grad_out @ v^T (the score kernel with scale 1
    and no mask) and the three products (the weighted-sum kernel). For benchmarks and as an
    independent check of the fused kernels.
    """
    dtype, q, k, v, mask, has_mask, _ = _attention_inputs("attention_backward_naive", q, k, v, mask)
    grad_out, out, lse = (_contiguous(array, dtype) for array in (grad_out, out, lse))
    s = _scores(q, k, mask, has_mask, scale, is_causal)
    # A row with lse = -inf has every score -inf; subtracting 0 there instead of -inf keeps
    # exp(-inf - (-inf)) = NaN out and gives P = 0.
    p = cupy.exp(s - cupy.where(cupy.isneginf(lse), dtype.type(0), lse)[..., None])
    dp = _scores(grad_out, v, *_optional(None, dtype), 1.0, False)
    ds = p * (dp - _delta(grad_out, out)[..., None])
    gq = dtype.type(scale) * _weighted_sum(ds, k)
    gk = dtype.type(scale) * _weighted_sum(_transposed(ds), q)
    gv = _weighted_sum(_transposed(p), grad_out)
    return gq, gk, gv
