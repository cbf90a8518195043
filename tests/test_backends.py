"""Kind 4, the backends: every primitive of every available GPU backend against the NumPy reference.

Hypothesis draws the shapes, strides, paddings, dilations, masks and values; each backend's
result must match :mod:`tinymed.backends.numpy_ref` run in float64 on the same inputs (the
exact answer), forward and backward, within the tolerance table of ``tests/helpers.py``;
integer outputs (pooling's indices) must be equal. The float32 table alone is too tight: at
the GPU sizes (head size 70, scale 1.7) the float32 reference itself misses rtol 1e-4 /
atol 1e-5 on a third of random draws. So a float32 result that misses the table is judged
against what float32 delivers on that input (:mod:`tinymed.backends.accuracy`, the judge
``benchmarks/gpu_check.py`` uses). Attention is also swept over every Lq, Lk from 1 to 7, the edges of
its tiles that random draws reach rarely.

The Numba kernels run in Numba's CUDA simulator when there is no GPU (tests/conftest.py turns
it on); it runs every GPU thread as Python, so its shapes are tiny, with its tiles shrunk to
match so that the shapes still cross tile edges. On a GPU the shapes grow past the real tile
sizes (64 for the GEMM, 32 keys for attention). A backend that cannot run here is skipped
with the reason.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import assert_close, gpu_backend_params, run_on, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, dtypes, window_geometries

import tinymed.backends as backends
from tinymed.backends import accuracy, numpy_ref

SETTINGS = settings(max_examples=10, deadline=None)
CONTRACT_EXTRAS = ("name", "xp", "unavailable_reason", "asarray", "to_numpy")
BACKENDS = gpu_backend_params()


@dataclass(frozen=True)
class Sizes:
    """Upper bounds of the drawn sizes."""

    batch: int
    channels: int  # crosses the 4 channels a convolution thread computes when > 4
    image: int  # extra rows/columns beyond the smallest input the kernel fits
    matrix: int  # GEMM rows, columns and inner size
    sequence: int  # Lq and Lk
    head: int  # D and Dv


SIMULATOR_SIZES = Sizes(batch=2, channels=5, image=5, matrix=12, sequence=9, head=5)
GPU_SIZES = Sizes(batch=3, channels=9, image=16, matrix=150, sequence=80, head=70)


def _backend(name: str):
    """The backend module and the sizes its tests draw."""
    module = backends.get(name)
    return module, SIMULATOR_SIZES if getattr(module, "SIMULATOR", False) else GPU_SIZES


def _check(module, primitive: str, *args, reference: str | None = None):
    """The backend's ``primitive(*args)`` matches the reference's primitive ``reference`` (by
    default of the same name) run in float64, output by output. Returns that exact answer
    rounded to the inputs' float type (float32 values are exact in float64, so they do not
    move), as a tuple or a single array as the primitive returns it.

    Integer outputs must be equal, float ones within the tolerance table of
    ``tests/helpers.py``, element by element; a float32 output that misses it may instead have
    :func:`accuracy.allowed_error` relative to its largest value, what float32 delivers on this
    input. (Neither rule serves alone: the table is too tight for long float32 sums, and the
    relative rule has no absolute part for a result that is pure cancellation, such as gq
    with a single key, whose rounding noise need not match the reference's.)"""
    reference = reference or primitive
    dtype = next(a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    exact = accuracy.reference(reference, *args)
    rounded = accuracy.in_dtype(exact, dtype)
    actual = run_on(module, primitive, *args)
    outputs = actual if isinstance(actual, tuple) else (actual,)
    for i, (a, e, r) in enumerate(zip(outputs, exact, rounded, strict=True)):
        what = f"{module.name}.{primitive} output {i}"
        assert (a.shape, a.dtype) == (r.shape, r.dtype), f"{what}: {a.shape} {a.dtype}, expected {r.shape} {r.dtype}"
        if dtype == np.float32 and e.dtype.kind == "f" and not np.allclose(a, r, equal_nan=True, **tolerance(dtype)):
            limit, error = accuracy.allowed_error(reference, dtype, *args)[i], accuracy.relative_error(a, e)
            assert error <= limit, f"{what}: error {error:.3g} relative to its largest value, allowed {limit:.3g}"
        else:
            assert_close(a, r, what)
    return rounded if isinstance(actual, tuple) else rounded[0]


# ---------------------------------------------------------------------------------------
# One test per formula family: forward and backward primitives on the same draw
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data())
def test_conv2d_matches_reference(name, data):
    module, sizes = _backend(name)
    dtype = data.draw(dtypes, label="dtype")
    g = data.draw(window_geometries(max_extra=sizes.image), label="geometry")
    (H, W), kernel, stride, padding, dilation = g.size, g.kernel, g.stride, g.padding, g.dilation
    N = data.draw(st.integers(1, sizes.batch), label="N")
    C = data.draw(st.integers(1, sizes.channels), label="C")
    O = data.draw(st.integers(1, sizes.channels), label="O")
    x = data.draw(arrays(dtype, (N, C, H, W)), label="x")
    weight = data.draw(arrays(dtype, (O, C, *kernel)), label="weight")
    bias = data.draw(st.none() | arrays(dtype, (O,)), label="bias")
    geometry = (stride, padding, dilation)

    _check(module, "conv2d_forward", x, weight, bias, *geometry)
    OH, OW = numpy_ref.conv2d_forward(x, weight, None, *geometry).shape[2:]
    grad_output = data.draw(arrays(dtype, (N, O, OH, OW)), label="grad_output")
    _check(module, "conv2d_grad_input", grad_output, weight, (H, W), *geometry)
    _check(module, "conv2d_grad_weight", x, grad_output, kernel, *geometry)


@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data())
def test_max_pool2d_matches_reference(name, data):
    module, sizes = _backend(name)
    dtype = data.draw(dtypes, label="dtype")
    g = data.draw(window_geometries(max_extra=sizes.image, pooling=True), label="geometry")
    size, kernel, stride, padding, dilation = g.size, g.kernel, g.stride, g.padding, g.dilation
    N = data.draw(st.integers(1, sizes.batch), label="N")
    C = data.draw(st.integers(1, sizes.channels), label="C")
    x = data.draw(arrays(dtype, (N, C, *size)), label="x")
    # A few NaNs, which count as the maximum of their windows.
    for at in data.draw(st.lists(st.integers(0, x.size - 1), max_size=2), label="nan_at"):
        x.flat[at] = np.nan

    geometry = (kernel, stride, padding, dilation)
    y, indices = _check(module, "max_pool2d_forward", x, *geometry)

    grad_output = data.draw(arrays(dtype, y.shape), label="grad_output")
    _check(module, "max_pool2d_backward", grad_output, indices, size, *geometry)


@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data())
def test_gemm_matches_reference(name, data):
    module, sizes = _backend(name)
    dtype = data.draw(dtypes, label="dtype")
    M, K, N = (data.draw(st.integers(1, sizes.matrix), label=axis) for axis in "MKN")
    trans_a, trans_b = data.draw(st.booleans(), label="trans_a"), data.draw(st.booleans(), label="trans_b")
    a = data.draw(arrays(dtype, (K, M) if trans_a else (M, K)), label="a")
    b = data.draw(arrays(dtype, (N, K) if trans_b else (K, N)), label="b")
    bias = data.draw(st.none() | arrays(dtype, (N,)), label="bias")
    _check(module, "gemm", a, b, bias, trans_a, trans_b)


MASKS = ("none", "boolean", "additive", "causal")


@pytest.mark.parametrize("variant", ["fused", "naive"])
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data())
def test_attention_matches_reference(name, variant, data):
    module, sizes = _backend(name)
    suffix = "" if variant == "fused" else "_naive"
    if not hasattr(module, f"attention_forward{suffix}"):
        pytest.skip(f"backend {name!r} has no {variant} attention")
    dtype = data.draw(dtypes, label="dtype")
    B = data.draw(st.integers(1, sizes.batch), label="B")
    Lq, Lk = (data.draw(st.integers(1, sizes.sequence), label=axis) for axis in ("Lq", "Lk"))
    D, Dv = (data.draw(st.integers(1, sizes.head), label=axis) for axis in ("D", "Dv"))
    q = data.draw(arrays(dtype, (B, Lq, D)), label="q")
    k = data.draw(arrays(dtype, (B, Lk, D)), label="k")
    v = data.draw(arrays(dtype, (B, Lk, Dv)), label="v")
    scale = data.draw(st.sampled_from([1 / math.sqrt(D), 0.3, 1.7]), label="scale")
    kind = data.draw(st.sampled_from(MASKS), label="mask")
    mask = None
    if kind == "boolean":  # True keeps a key; rows with no True are fully removed
        keep = data.draw(hnp.arrays(bool, (B, Lq, Lk)), label="keep")
        mask = np.where(keep, 0, -np.inf).astype(dtype)
    elif kind == "additive":
        mask = data.draw(arrays(dtype, (B, Lq, Lk)), label="mask values")
    is_causal = kind == "causal"

    grad_out = data.draw(arrays(dtype, (B, Lq, Dv)), label="grad_out")
    _check_attention(module, suffix, q, k, v, grad_out, mask, scale, is_causal)


def _check_attention(module, suffix: str, q, k, v, grad_out, mask, scale: float, is_causal: bool) -> None:
    """The backend's attention forward and backward (``suffix`` "" fused, "_naive" naive)
    match the reference's; the backward gets the reference's ``out`` and ``lse``."""
    out, lse = _check(
        module, f"attention_forward{suffix}", q, k, v, mask, scale, is_causal, reference="attention_forward"
    )
    args = (grad_out, q, k, v, out, lse, mask, scale, is_causal)
    _check(module, f"attention_backward{suffix}", *args, reference="attention_backward")


@pytest.mark.parametrize("variant", ["fused", "naive"])
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_attention_matches_reference_at_every_length_up_to_7(name, variant, dtype, is_causal):
    """Every Lq and Lk from 1 to 7, not a random few: in the simulator a block holds 2 queries
    and a key tile 4 (float32) or 3 (float64) keys, so these lengths cross each edge a short
    sequence has, and an edge case lives at one length pair only. A causal loop stopping one
    key tile early, say, drops keys only where a block's last query is a multiple of the tile."""
    module, _ = _backend(name)
    suffix = "" if variant == "fused" else "_naive"
    if not hasattr(module, f"attention_forward{suffix}"):
        pytest.skip(f"backend {name!r} has no {variant} attention")
    rng = np.random.default_rng(0)
    for Lq, Lk in itertools.product(range(1, 8), repeat=2):
        q, k, v, grad_out = (rng.uniform(-2, 2, (1, n, 2)).astype(dtype) for n in (Lq, Lk, Lk, Lq))
        _check_attention(module, suffix, q, k, v, grad_out, None, 0.5, is_causal)


# ---------------------------------------------------------------------------------------
# Determinism and the contract itself
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_backward_primitives_are_bit_identical_from_run_to_run(name):
    """No atomics: each backward primitive, run twice on the same inputs, gives the same bits.

    The shapes make sums that could race: overlapping pooling windows, several threads per
    weight-gradient sum, more than one key and query tile, a GEMM split along K.
    """
    module, sizes = _backend(name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6), dtype=np.float32)
    weight = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    conv_grad = rng.standard_normal((2, 3, 4, 4), dtype=np.float32)
    pool_geometry = ((3, 3), (1, 1), (0, 0), (1, 1))
    _, indices = numpy_ref.max_pool2d_forward(x, *pool_geometry)
    L = sizes.sequence
    q, k, v, grad_out = (rng.standard_normal((1, L, 3), dtype=np.float32) for _ in range(4))
    out, lse = numpy_ref.attention_forward(q, k, v, None, 0.5, False)
    K = 2 * sizes.matrix  # long enough to be split along K
    calls = [
        ("conv2d_grad_input", (conv_grad, weight, (6, 6), (1, 1), (0, 0), (1, 1))),
        ("conv2d_grad_weight", (x, conv_grad, (3, 3), (1, 1), (0, 0), (1, 1))),
        ("max_pool2d_backward", (conv_grad[:, :2], indices, (6, 6), *pool_geometry)),
        (
            "gemm",
            (rng.standard_normal((K, 3), dtype=np.float32), rng.standard_normal((K, 5), dtype=np.float32), None, True),
        ),
        ("attention_backward", (grad_out, q, k, v, out, lse, None, 0.5, False)),
    ]
    if hasattr(module, "attention_backward_naive"):
        calls.append(("attention_backward_naive", calls[-1][1]))
    for primitive, args in calls:
        first, second = run_on(module, primitive, *args), run_on(module, primitive, *args)
        first, second = (r if isinstance(r, tuple) else (r,) for r in (first, second))
        for a, b in zip(first, second):
            assert a.tobytes() == b.tobytes(), f"{name}.{primitive} differs between runs"


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_module_implements_the_contract(name):
    """Each module defines every primitive and the contract's other names, even where it cannot run."""
    module = importlib.import_module(backends.MODULES[name])
    missing = [attr for attr in backends.PRIMITIVES + CONTRACT_EXTRAS if not hasattr(module, attr)]
    assert not missing, f"{module.__name__} lacks {missing}"
    assert module.name == name


# Run in a fresh interpreter with the simulator off: Numba then compiles for a real GPU.
# The backend's launcher is replaced by one that compiles each kernel to PTX (sm_90) for the
# argument types of the launch, so every kernel that a primitive launches is compiled with
# the GPU launch shapes and the exact types a GPU run would give it.
_COMPILE_EVERY_KERNEL = textwrap.dedent(
    """
    import types
    import numba, numba.cuda.dispatcher, numpy as np
    from numba import cuda
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        print("SKIP: NVVM (libnvvm, from the CUDA toolkit) was not found")
        raise SystemExit(0)
    # A device function asks the current GPU for its compute capability; there is none here.
    numba.cuda.dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    from tinymed.backends import numba_cuda as nb, numpy_ref
    assert not nb.SIMULATOR
    compiled = set()
    def compile_instead(kernel, blocks, threads, *args):
        cuda.compile_ptx(kernel.py_func, tuple(numba.typeof(a) for a in args), cc=(9, 0))
        compiled.add(kernel.py_func.__name__)
    nb._launch = compile_instead
    nb._multiprocessors = lambda: 132  # an H100's
    r = np.random.default_rng(0).standard_normal
    x, w, b, g = r((1, 2, 5, 5)), r((3, 2, 3, 3)), r(3), r((1, 3, 3, 3))
    q, k, v = r((1, 4, 3)), r((1, 5, 3)), r((1, 5, 2))
    x, w, b, g, q, k, v = (a.astype(np.float32) for a in (x, w, b, g, q, k, v))
    geometry = ((1, 1), (0, 0), (1, 1))
    nb.conv2d_forward(x, w, b, *geometry)
    nb.conv2d_grad_input(g, w, (5, 5), *geometry)
    nb.conv2d_grad_weight(x, g, (3, 3), *geometry)
    _, indices = numpy_ref.max_pool2d_forward(x, (3, 3), *geometry)
    nb.max_pool2d_forward(x, (3, 3), *geometry)
    nb.max_pool2d_backward(g[:, :2], indices, (5, 5), (3, 3), *geometry)
    nb.gemm(r((300, 1)).astype(np.float32), r((300, 1)).astype(np.float32), None, True)  # split along K
    out, lse = numpy_ref.attention_forward(q, k, v, None, 0.5, False)
    mask = np.zeros((1, 4, 5), np.float32)
    for forward, backward in ((nb.attention_forward, nb.attention_backward),
                              (nb.attention_forward_naive, nb.attention_backward_naive)):
        forward(q, k, v, mask, 0.5, True)
        backward(out, q, k, v, out, lse, mask, 0.5, True)
    print("COMPILED", " ".join(sorted(compiled)))
    """
)
EVERY_NUMBA_KERNEL = {
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "gemm_tiled",
    "gemm_sum_splits",
    "attention_scores",
    "attention_softmax_rows",
    "batched_matmul",
    "attention_forward",
    "attention_backward_dkdv",
    "attention_backward_dq",
}


def test_every_numba_kernel_compiles_for_a_gpu():
    """The simulator runs kernels as Python, so it cannot catch what only the GPU compiler
    rejects (a shared array whose shape is not a constant, a builtin the CUDA target lacks).
    Numba's compiler (NVVM) needs no GPU, so every kernel is compiled here as a GPU would."""
    pytest.importorskip("numba", reason="the Numba kernels need numba")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_EVERY_KERNEL], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-5000:]
    if result.stdout.startswith("SKIP: "):
        pytest.skip(result.stdout[len("SKIP: ") :].strip())
    compiled = set(result.stdout.split("COMPILED", 1)[1].split())
    assert compiled == EVERY_NUMBA_KERNEL
