"""The hints of chapter 12's graders: a typical wrong answer to each exercise (a multiply-add
counted as one FLOP, the built-in min on arrays, the mean of the timings...) is failed with the
hint that names it. Running the chapter, and its graders on the solutions and the released
stubs, is tests/test_course.py's job."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("jupytext", reason="the course tests need the course extra (jupytext)")

from helpers import graded_with  # noqa: E402 - after the skip, as the course tests need jupytext

_FLOPS = "    flops = 2 * N * O * OH * OW * C * KH * KW\n"
_GEMM = "    return 2 * m * n * k, itemsize * (m * k + k * n + m * n)"
_BOUND = "    return intensity, np.minimum(peak_gflops, intensity * bandwidth_gbs)"


@pytest.mark.parametrize(
    "exercise, old, new, hint",
    [
        ("12.1", _FLOPS, _FLOPS.replace("2 * ", ""), "count the multiply and the add"),
        ("12.1", "OH = (H + 2 * padding - KH)", "OH = (H + padding - KH)", "OH = (H + 2*padding - KH) // stride + 1"),
        ("12.1", "OW = (W + 2 * padding - KW) // stride", "OW = (W + 2 * padding - KW)", "OW from W, KW"),
        ("12.1", "nbytes = itemsize * (N * C * H * W + ", "nbytes = itemsize * (", "each array read or written once"),
        ("12.2", _GEMM, _GEMM.replace("2 * m", "m"), "each is a multiply and an add"),
        ("12.2", _GEMM, _GEMM.replace("itemsize * ", ""), "multiply by itemsize"),
        ("12.3", _BOUND, "    return intensity, intensity * bandwidth_gbs", "above the peak"),
        ("12.3", _BOUND, "    return intensity, min(peak_gflops, intensity * bandwidth_gbs)", "np.minimum, not min"),
        ("12.3", _BOUND, "    return intensity, np.minimum(peak_gflops, intensity)", "FLOP/byte times GB/s"),
        ("12.4", "    for _ in range(warmup):\n        fn()\n", "", "must be called 6 times"),
        ("12.4", "    return statistics.median(durations)", "    return statistics.mean(durations)", "the mean"),
        ("12.4", "    return statistics.median(durations)", "    return min(durations)", "the fastest call"),
        ("12.4", "        raise ValueError(", "        return 0.0\n        raise ValueError(", "must raise ValueError"),
        (
            "12.1",
            "    OH = (H + 2 * padding - KH) // stride + 1\n",
            "    import numpy\n    numpy.zeros((N, C, H, W), numpy.float32)\n    OH = (H + 2 * padding - KH) // stride + 1\n",
            "ran out of memory",
        ),
        (
            "12.4",
            "    clock = time.perf_counter if clock is None else clock\n",
            "    clock = time.perf_counter\n",
            "`clock` argument",
        ),
    ],
    ids=[
        "conv-multiply-adds",
        "conv-one-sided-padding",
        "conv-width-ignores-stride",
        "conv-bytes-no-input",
        "gemm-multiply-adds",
        "gemm-elements-not-bytes",
        "roofline-no-peak",
        "roofline-builtin-min",
        "roofline-no-bandwidth",
        "timing-no-warmup",
        "timing-mean",
        "timing-min",
        "timing-repeat-zero",
        "conv-builds-arrays",
        "timing-ignores-clock",
    ],
)
def test_chapter12_graders_hint_at_the_mistake(tmp_path: Path, exercise: str, old: str, new: str, hint: str) -> None:
    result = graded_with(tmp_path, 12, exercise, old, new)
    assert not result.passed and hint in result.message, result.message
