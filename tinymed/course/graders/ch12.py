"""Graders of chapter 12 (CPU versus GPU): the work and traffic of a convolution and a matrix
product, the roofline bound, and a timing helper checked with a fake clock.

The counts follow the benchmark's conventions (benchmarks/primitives.py): two FLOPs per
multiply-add, and the bytes of every array an op reads or writes, each once. The output shape
of a convolution is taken from ``F.conv2d`` itself, so the grader and tinymed cannot disagree
about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.grading import Exercise, Fail, expect, expect_close


def _pair(result: Any, name: str) -> tuple[float, float]:
    expect(
        isinstance(result, tuple) and len(result) == 2,
        f"{name} must return a pair (flops, nbytes), got {type(result).__name__}",
    )
    return float(result[0]), float(result[1])


def _conv_reference(x_shape, w_shape, stride, padding, itemsize) -> tuple[float, float]:
    """The counts, with the output's size from tinymed's own convolution of one image: a batch
    of N has N times its outputs (convolving the whole batch could need terabytes)."""
    N, C, H, W = x_shape
    O, _, KH, KW = w_shape
    outputs = N * F.conv2d(tm.zeros(1, C, H, W), tm.zeros(*w_shape), stride=stride, padding=padding).numel()
    flops = 2.0 * outputs * C * KH * KW
    return flops, float(itemsize * (N * C * H * W + O * C * KH * KW + outputs))


def _grade_conv2d_cost(ns: Mapping[str, Any]) -> None:
    conv2d_cost = ns["conv2d_cost"]
    cases = [
        ((2, 3, 8, 8), (4, 3, 3, 3), 1, 0, 4, "a 3x3 convolution, no padding"),
        ((128, 6, 14, 14), (16, 6, 5, 5), 1, 0, 4, "LeNet's conv2 at batch 128"),
        ((1, 1, 28, 28), (6, 1, 5, 5), 1, 2, 4, "LeNet's conv1 (padding 2)"),
        ((3, 2, 9, 7), (5, 2, 3, 2), 2, 1, 4, "a non-square input and kernel, stride 2, padding 1"),
        ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 8, "float64 (itemsize 8)"),
        ((10**9, 3, 64, 64), (8, 3, 3, 3), 1, 1, 4, "a billion images, 49 TB, which only a formula can count"),
    ]
    for x_shape, w_shape, stride, padding, itemsize, what in cases:
        try:
            result = conv2d_cost(x_shape, w_shape, stride, padding, itemsize)
        except MemoryError:
            raise Fail(
                f"{what}: your conv2d_cost ran out of memory; count with the output-size formula instead of "
                "building arrays (no convolution needs to run to know its cost)"
            ) from None
        flops, nbytes = _pair(result, "conv2d_cost")
        want_flops, want_bytes = _conv_reference(x_shape, w_shape, stride, padding, itemsize)
        if flops == want_flops / 2:
            raise Fail(f"{what}: {flops:.0f} FLOPs is the number of multiply-adds; count the multiply and the add (2)")
        expect_close(
            flops,
            want_flops,
            f"FLOPs of {what}",
            "2 * N * O * OH * OW * C * KH * KW, with OH = (H + 2*padding - KH) // stride + 1 (and OW from W, KW)",
        )
        expect_close(
            nbytes,
            want_bytes,
            f"bytes of {what}",
            "itemsize * (input elements + weight elements + output elements): each array read or written once",
        )


def _grade_gemm_cost(ns: Mapping[str, Any]) -> None:
    gemm_cost = ns["gemm_cost"]
    for m, n, k, itemsize in ((2, 3, 4, 4), (128, 120, 400, 4), (1, 1, 1, 4), (5, 7, 3, 8)):
        flops, nbytes = _pair(gemm_cost(m, n, k, itemsize), "gemm_cost")
        what = f"an ({m}, {k}) @ ({k}, {n}) product, itemsize {itemsize}"
        if flops == m * n * k:
            raise Fail(f"{what}: {flops:.0f} FLOPs counts the multiply-adds; each is a multiply and an add (2 m n k)")
        expect_close(flops, 2 * m * n * k, f"FLOPs of {what}", "each of the m*n outputs is a sum of k products")
        expect(
            nbytes != m * k + k * n + m * n or itemsize == 1,
            f"bytes of {what}: {nbytes:.0f} counts elements; multiply by itemsize ({itemsize} bytes each)",
        )
        expect_close(
            nbytes,
            itemsize * (m * k + k * n + m * n),
            f"bytes of {what}",
            "read A (m x k) and B (k x n) once, write C (m x n) once",
        )


def _grade_roofline(ns: Mapping[str, Any]) -> None:
    roofline = ns["roofline"]
    peak, bandwidth = 100.0, 10.0  # the ridge point is at 10 FLOP per byte
    for flops, nbytes, want in ((1e6, 1e6, 10.0), (1e9, 1e7, 100.0), (2e7, 2e6, 100.0), (3e6, 1e6, 30.0)):
        result = roofline(flops, nbytes, peak, bandwidth)
        expect(isinstance(result, tuple) and len(result) == 2, "roofline must return a pair (intensity, attainable)")
        intensity, attainable = result
        expect_close(
            intensity, flops / nbytes, f"the intensity of {flops:g} FLOPs on {nbytes:g} bytes", "FLOPs / bytes"
        )
        if flops / nbytes * bandwidth > peak and np.isclose(float(np.asarray(attainable)), flops / nbytes * bandwidth):
            raise Fail(
                f"{flops:g} FLOPs on {nbytes:g} bytes: {float(attainable):g} GFLOP/s is above the peak of {peak:g}; "
                "the bound is the smaller of the peak and intensity * bandwidth"
            )
        expect_close(
            attainable,
            want,
            f"the attainable GFLOP/s at intensity {flops / nbytes:g} (peak {peak:g}, {bandwidth:g} GB/s)",
            "min(peak, intensity * bandwidth): FLOP/byte times GB/s is GFLOP/s",
        )
    flops, nbytes = np.array([1e6, 1e9, 4e6]), np.array([4e6, 1e6, 1e6])
    try:
        intensity, attainable = roofline(flops, nbytes, peak, bandwidth)
    except (TypeError, ValueError) as e:
        raise Fail(f"roofline on arrays of three ops raised {type(e).__name__}: {e}; use np.minimum, not min") from None
    expect_close(intensity, flops / nbytes, "the intensities of three ops at once", "elementwise FLOPs / bytes")
    expect_close(attainable, [2.5, 100.0, 40.0], "the bounds of three ops at once", "np.minimum works elementwise")


class _FakeClock:
    """A clock that only moves while the timed function runs, by the next duration in a list."""

    def __init__(self, durations):
        self.durations, self.now, self.calls = list(durations), 0.0, 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += self.durations[self.calls]
        self.calls += 1


def _grade_median_time(ns: Mapping[str, Any]) -> None:
    median_time = ns["median_time"]
    clock = _FakeClock([100.0, 3.0, 1.0, 2.0, 50.0, 2.0])
    got = median_time(clock.work, repeat=5, warmup=1, clock=clock)
    if isinstance(got, float | int) and 0 <= got < 1e-3:
        raise Fail(
            f"got {got:.3g} s, where every call took at least 1 s on the grader's clock; read the time from the "
            "`clock` argument you were given (clock() before and after each call), not from time.perf_counter or "
            "timeit"
        )
    expect(
        clock.calls == 6,
        f"with warmup=1 and repeat=5 the function must be called 6 times, it was called {clock.calls} times",
    )
    if np.isclose(got, 2.5):
        raise Fail("you timed the warm-up call too (it took 100 s on the fake clock); leave the warm-ups out")
    if np.isclose(got, 11.6):
        raise Fail("that is the mean of the timed calls; return the median, which one slow call barely moves")
    if np.isclose(got, 1.0):
        raise Fail("that is the fastest call; this helper returns the median (statistics.median)")
    expect_close(got, 2.0, "the median of calls taking 3, 1, 2, 50 and 2 s (after a 100 s warm-up)")
    clock = _FakeClock([9.0, 9.0, 4.0, 1.0, 3.0, 2.0])
    got = median_time(clock.work, repeat=4, warmup=2, clock=clock)
    expect(clock.calls == 6, f"warmup=2, repeat=4: 6 calls expected, got {clock.calls}")
    expect_close(got, 2.5, "the median of 4, 1, 3 and 2 s (an even count: the mean of the middle two)")
    clock = _FakeClock([7.0])
    expect_close(median_time(clock.work, repeat=1, warmup=0, clock=clock), 7.0, "one call, no warm-up")
    try:
        median_time(lambda: None, repeat=0)
    except ValueError:
        pass
    else:
        raise Fail("median_time(fn, repeat=0) must raise ValueError: there is no median of nothing")


EXERCISES = (
    Exercise("12.1", "conv2d_cost", "the FLOPs and bytes of a convolution", _grade_conv2d_cost),
    Exercise("12.2", "gemm_cost", "the FLOPs and bytes of a matrix product", _grade_gemm_cost),
    Exercise("12.3", "roofline", "the arithmetic intensity and min(peak, intensity * bandwidth)", _grade_roofline),
    Exercise("12.4", "median_time", "the median of timed repeats after untimed warm-ups", _grade_median_time),
)
