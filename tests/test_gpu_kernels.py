"""The GPU kernels on the inputs where the two kernel languages used to disagree, and the
launchers' limits.

Each test pins one behaviour to the NumPy reference (:mod:`tinymed.backends.numpy_ref`) on
a hand-made input that shows it: a float32 subnormal maximum in a pooling window, a window
with no real pixel, causally removed attention entries meeting a NaN, zero-length heads, a
mask that is broadcast rather than full. They run on every GPU backend that can run here:
in Numba's CUDA simulator with no GPU (tests/conftest.py turns it on), and the CuPy
backend too on a GPU. The CUDA C side of the subnormal case, which only shows with CuPy's
``-ftz=true``, is checked in its compiled code by tests/test_cuda_compile.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import gpu_backend_params, run_on

import tinymed.backends as backends
from tinymed.backends import accuracy, cupy_cuda, launch, numpy_ref

GPU_BACKENDS = gpu_backend_params()  # one that cannot run here is skipped, saying why


def _run(name: str, primitive: str, *args):
    """``primitive(*args)`` on backend ``name``, NumPy arrays moved there and results back."""
    return run_on(backends.get(name), primitive, *args)


def _assert_same(actual, expected, what: str) -> None:
    """Equal to the reference to the last bit where the reference is exact, NaN where NaN."""
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, (
            f"{what} output {i}: {a.shape} {a.dtype}, expected {e.shape} {e.dtype}"
        )
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=0, equal_nan=True, err_msg=f"{what} output {i}")


# ---------------------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GPU_BACKENDS)
@pytest.mark.parametrize(
    "window, position",
    [
        ([0.0, 0.0, 0.0, 1e-45], 3),  # the smallest subnormal beats zero
        ([-1e-45, -0.0, 0.0, -1e-45], 1),  # zero beats a negative subnormal; -0 ties +0
        ([-1e-44, -1e-45, -2e-45, -np.inf], 1),  # the largest of negative subnormals
    ],
)
def test_max_pool2d_argmax_sees_subnormals(name, window, position):
    """A 2x2 window holding float32 subnormals: the maximum and its position, exactly."""
    x = np.array(window, np.float32).reshape(1, 1, 2, 2)
    geometry = ((2, 2), (2, 2), (0, 0), (1, 1))
    y, indices = _run(name, "max_pool2d_forward", x, *geometry)
    assert indices.item() == position, f"{name}: argmax of {window} is {indices.item()}, expected {position}"
    assert y.tobytes() == x.reshape(-1)[position : position + 1].tobytes()


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_max_pool2d_window_with_no_real_pixel_follows_the_reference(name):
    """A 1x1 input, padding 1, dilation 2: both taps of each 2-wide window fall in the padding.
    The reference gives -inf at the window's first tap past the top-left padding."""
    x = np.ones((1, 1, 1, 1), np.float64)
    geometry = ((2, 2), (1, 1), (1, 1), (2, 2))
    expected = numpy_ref.max_pool2d_forward(x, *geometry)
    assert np.isneginf(expected[0]).all()
    _assert_same(_run(name, "max_pool2d_forward", x, *geometry), expected, f"{name}.max_pool2d_forward")


# ---------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------


def _attention_inputs(B: int, Lq: int, Lk: int, D: int, Dv: int, dtype=np.float64):
    rng = np.random.default_rng(7)
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in ((B, Lq, D), (B, Lk, D), (B, Lk, Dv)))


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_attention_backward_causally_removed_entries_follow_the_reference(name):
    """A NaN in grad_out meets the causally removed entries: P = 0 there, and the reference's
    dS = P * (dO v^T - delta) = 0 * NaN is NaN, which reaches every dk. A kernel that skips
    the removed entries inside its tile instead gives 0 there."""
    q, k, v = _attention_inputs(1, 3, 3, 2, 2)
    out, lse = numpy_ref.attention_forward(q, k, v, None, 0.5, True)
    grad_out = np.ones_like(out)
    grad_out[0, 0, 0] = np.nan
    args = (grad_out, q, k, v, out, lse, None, 0.5, True)
    expected = numpy_ref.attention_backward(*args)
    assert np.isnan(expected[1]).all()
    _assert_same(_run(name, "attention_backward", *args), expected, f"{name}.attention_backward")


@pytest.mark.parametrize("name", GPU_BACKENDS)
@pytest.mark.parametrize("D, Dv", [(0, 2), (2, 0), (0, 0)])
def test_attention_with_empty_heads_follows_the_reference(name, D, Dv):
    """D = 0 makes every score 0 (an empty dot product): uniform weights. Dv = 0 gives empty rows."""
    q, k, v = _attention_inputs(2, 3, 4, D, Dv)
    forward = (q, k, v, None, 0.5, False)
    out, lse = numpy_ref.attention_forward(*forward)
    _assert_same(_run(name, "attention_forward", *forward), (out, lse), f"{name}.attention_forward")
    args = (np.ones_like(out), q, k, v, out, lse, None, 0.5, False)
    expected = numpy_ref.attention_backward(*args)
    _assert_same(_run(name, "attention_backward", *args), expected, f"{name}.attention_backward")


@pytest.mark.parametrize("name", GPU_BACKENDS)
@pytest.mark.parametrize("mask_shape", [(1, 3, 4), (3, 4), (2, 1, 4)])
def test_attention_mask_broadcast_to_every_head(name, mask_shape):
    """A mask shared by the heads (or by the queries) reads as its broadcast to (B, Lq, Lk)."""
    q, k, v = _attention_inputs(2, 3, 4, 2, 2)
    mask = np.random.default_rng(8).standard_normal(mask_shape)
    full = np.ascontiguousarray(np.broadcast_to(mask, (2, 3, 4)))
    out, lse = numpy_ref.attention_forward(q, k, v, full, 0.5, False)
    _assert_same(_run(name, "attention_forward", q, k, v, mask, 0.5, False), (out, lse), f"{name}.attention_forward")
    args = (np.ones_like(out), q, k, v, out, lse)
    expected = numpy_ref.attention_backward(*args, full, 0.5, False)
    actual = _run(name, "attention_backward", *args, mask, 0.5, False)
    _assert_same(actual, expected, f"{name}.attention_backward")


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_attention_mask_that_does_not_broadcast_is_refused(name):
    q, k, v = _attention_inputs(2, 3, 4, 2, 2)
    with pytest.raises(ValueError, match=r"attention_forward: mask .*\(3, 3\).* \(B, Lq, Lk\) = \(2, 3, 4\)"):
        _run(name, "attention_forward", q, k, v, np.zeros((3, 3)), 0.5, False)


# ---------------------------------------------------------------------------------------
# Limits: what the kernels index with 32-bit ints, and CUDA's grid limits (no GPU needed)
# ---------------------------------------------------------------------------------------

MAX_GRID_X, MAX_GRID_YZ = 2**31 - 1, 65535  # CUDA's limits on the blocks of a grid


@pytest.mark.parametrize("M, N", [(1, 5_000_000), (5_000_000, 1), (3000, 3000)])
def test_gemm_grid_stays_within_cuda_grid_limits(M, N):
    """ceil(N/64) blocks along y failed past N = 4,194,240; the tiles are now numbered along x."""
    blocks_x, blocks_y, splits = launch.gemm_grid(M, N, 1, cupy_cuda.GEMM_TILE)
    assert blocks_x <= MAX_GRID_X and blocks_y <= MAX_GRID_YZ and splits <= MAX_GRID_YZ
    assert blocks_x * blocks_y * cupy_cuda.GEMM_TILE**2 >= M * N  # every element has a tile


def _launched(op: str, grid: int, threads: int, indexed: int | None = None) -> list:
    """The launches that cupy_cuda._launch makes with a recording stand-in for a kernel."""
    calls = []
    cupy_cuda._launch(op, lambda *launch: calls.append(launch), grid, threads, (), indexed)
    return calls


def test_launch_guard_counts_what_the_kernel_indexes():
    # One thread per element: the thread number itself is the int that must not overflow.
    assert _launched("max_pool2d_forward", 2**23 - 1, 256) == [((2**23 - 1,), (256,), ())]
    with pytest.raises(ValueError, match=r"max_pool2d_forward: 2147483648 exceeds the kernels' 32-bit indices"):
        _launched("max_pool2d_forward", 2**23, 256)
    # conv2d_grad_weight numbers blocks, not threads: a 1024x1024x3x3 weight (9.4M blocks of
    # 256, 2.4e9 threads) is fine; a sum of 2**31 terms is not.
    weight = 1024 * 1024 * 3 * 3
    assert len(_launched("conv2d_grad_weight", weight, 256, indexed=max(weight, 128 * 28 * 28 + 256))) == 1
    with pytest.raises(ValueError, match="conv2d_grad_weight"):
        _launched("conv2d_grad_weight", 9, 256, indexed=2**31 + 256)


# ---------------------------------------------------------------------------------------
# Installation: a GPU without a compiler is not a usable backend
# ---------------------------------------------------------------------------------------


class _CompileException(Exception):
    """Stands in for cupy.cuda.compiler.CompileException."""


def _cupy_that_cannot_compile(error: Exception) -> SimpleNamespace:
    """A stand-in for a wheel-only CuPy: one GPU, and compiling any kernel raises ``error``."""

    def kernel(code: str, name: str) -> SimpleNamespace:
        def compile() -> None:
            raise error

        return SimpleNamespace(compile=compile)

    runtime = SimpleNamespace(getDeviceCount=lambda: 1)
    return SimpleNamespace(
        RawKernel=kernel,
        cuda=SimpleNamespace(runtime=runtime, compiler=SimpleNamespace(CompileException=_CompileException)),
    )


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Failed to find CUDA headers. Please install CUDA toolkit headers"),  # CuPy 14, no [ctk]
        _CompileException("catastrophic error: cannot open source file"),
    ],
)
def test_cupy_backend_with_a_gpu_but_no_compiler_says_what_to_install(monkeypatch, error):
    monkeypatch.setattr(cupy_cuda, "cupy", _cupy_that_cannot_compile(error))
    reason = cupy_cuda.unavailable_reason.__wrapped__()  # not the cached answer for this machine
    assert reason is not None and "cannot compile" in reason and str(error) in reason
    assert "pip install 'tinymed[cuda]'" in reason


# ---------------------------------------------------------------------------------------
# Tolerances that scale with the problem (tinymed.backends.accuracy)
# ---------------------------------------------------------------------------------------


def _attention_backward_at_gpu_test_sizes() -> tuple:
    """attention_backward's arguments at the GPU tests' largest sizes: L = 80, D = 70, scale 1.7."""
    rng = np.random.default_rng(0)
    q, k, v, grad_out = (rng.uniform(-2, 2, (1, 80, 70)).astype(np.float32) for _ in range(4))
    out, lse = numpy_ref.attention_forward(q, k, v, None, 1.7, False)
    return grad_out, q, k, v, out, lse, None, 1.7, False


def test_float32_tolerance_scales_with_the_problem():
    """At these sizes the float32 reference itself misses a fixed rtol 1e-4 / atol 1e-5; the
    allowed error follows what float32 delivers, and still rejects a wrong answer."""
    args = _attention_backward_at_gpu_test_sizes()
    exact = accuracy.reference("attention_backward", *args)
    float32 = numpy_ref.attention_backward(*args)
    assert not np.allclose(float32[0], exact[0].astype(np.float32), rtol=1e-4, atol=1e-5)
    allowed = accuracy.allowed_error("attention_backward", np.dtype(np.float32), *args)
    for result, expected, limit in zip(float32, exact, allowed):
        assert accuracy.relative_error(result, expected) <= limit
        wrong = result.copy()
        wrong.flat[7] += 1e-3 * np.abs(expected).max()  # a real error, far above rounding
        assert accuracy.relative_error(wrong, expected) > limit
    # Judged as float64, the float32 answer is far off.
    allowed64 = accuracy.allowed_error("attention_backward", np.dtype(np.float64), *args)
    assert all(accuracy.relative_error(r, e) > limit for r, e, limit in zip(float32, exact, allowed64))


def test_relative_error_wants_nan_and_indices_in_place():
    expected = np.array([1.0, np.nan, -np.inf])
    assert accuracy.relative_error(expected.copy(), expected) == 0
    assert accuracy.relative_error(np.array([1.0, 0.0, -np.inf]), expected) == np.inf
    assert accuracy.relative_error(np.array([1, 2]), np.array([1, 3])) == np.inf


# ---------------------------------------------------------------------------------------
# The first-contact check (benchmarks/gpu_check.py)
# ---------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    """benchmarks/gpu_check.py as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_gpu_check_fails_a_wrong_or_irreproducible_kernel(name):
    gpu_check, module = _gpu_check(), backends.get(name)
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), None, False, False)
    dtype = np.dtype(np.float32)
    assert gpu_check.check(module, "gemm", "5x4 @ 4x3", args, dtype, 1).ok
    calls = []

    def off_by_a_little(*arguments):
        calls.append(None)
        c = module.gemm(*arguments)
        c[0, 0] += 1e-3 * len(calls)  # wrong, and different on every run
        return c

    wrong = SimpleNamespace(
        **{n: getattr(module, n) for n in ("name", "xp", "asarray", "to_numpy")}, gemm=off_by_a_little
    )
    row = gpu_check.check(wrong, "gemm", "5x4 @ 4x3", args, dtype, 1)
    assert row.error > row.allowed and not row.bit_identical and not row.ok


@pytest.mark.skipif(
    not backends.get("numba").SIMULATOR if "numba" in backends.available() else True,
    reason="runs gpu_check --small in Numba's CUDA simulator (CI); on a GPU gpu_suite.sh runs it at full size",
)
def test_gpu_check_small_runs_end_to_end_in_the_simulator(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not report["failures"]
    assert {row["primitive"] for row in report["rows"]} == set(backends.PRIMITIVES)
    assert {row["dtype"] for row in report["rows"]} == {"float32", "float64"}
