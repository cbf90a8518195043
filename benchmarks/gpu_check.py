"""The first-contact check of the GPU kernels: right, reproducible, and how fast, at the course's shapes.

For every GPU backend that can run here (CuPy, Numba) and every primitive of the backend
contract, at the shapes the course trains (batch 128; 28, 14 and 7 pixel images; 1 -> 32
-> 64 -> 128 channels; the classifier's linear layers; attention over 512 heads of L = 49
with D = 32, and D = 128 with Lq != Lk), in float32 and float64:

* **error**: the largest difference from the float64 reference, relative to the result's
  largest value, against what that dtype can deliver on this input
  (:mod:`tinymed.backends.accuracy`: a multiple of the float32 reference's own error);
* **bit-identity**: two runs on the same inputs give the same bits (no atomics);
* **time**: the median of ``--repeat`` runs, in milliseconds, timed with CUDA events on a
  GPU (the host clock in Numba's simulator, where times mean nothing);

and the subnormal max-pool probe: a 2x2 window of float32 zeros with 1e-45 in its last
place must point at the 1e-45, which CuPy's ``-ftz=true`` once broke.

The table goes to stdout and, with every number, to ``gpu_check.json`` in ``--out`` (by
default ``$OUT``, else ``benchmarks/results``). The exit status is 1 if anything failed.

    python benchmarks/gpu_check.py            # a GPU; under 5 minutes with compilation
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_check.py --small   # CI: tiny shapes, simulator
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import tinymed.backends as backends
from tinymed.backends import accuracy


@dataclass(frozen=True)
class Shapes:
    """The sizes of one run: the course's, or tiny ones for the simulator."""

    batch: int
    image: int  # the first convolution's input side; pooling halves it twice
    channels: tuple[int, ...]  # 1 -> 32 -> 64 -> 128 in the course's classifier
    hidden: int  # the first linear layer's outputs
    classes: int
    heads: int
    length: int  # L of self-attention
    head_dim: int
    wide_heads: int  # the D = 128 case, with Lq != Lk
    wide_dim: int
    keys: int


COURSE = Shapes(128, 28, (1, 32, 64, 128), 128, 2, 512, 49, 32, 128, 128, 98)
SMALL = Shapes(2, 4, (1, 2, 3, 2), 5, 2, 2, 4, 3, 1, 4, 6)


@dataclass
class Row:
    """One primitive on one input, on one backend, in one dtype."""

    backend: str
    dtype: str
    primitive: str
    shape: str
    error: float  # the worst output's relative error
    allowed: float  # what that output was allowed
    bit_identical: bool
    median_ms: float

    @property
    def ok(self) -> bool:
        return self.error <= self.allowed and self.bit_identical


def cases(shapes: Shapes, rng: np.random.Generator) -> list[tuple[str, str, tuple]]:
    """``(primitive, shape label, args)`` for every primitive at these shapes, args in float64."""
    normal = rng.standard_normal
    one = (1, 1)
    out = []
    side = shapes.image
    for c_in, c_out in zip(shapes.channels, shapes.channels[1:]):
        x, w, b = normal((shapes.batch, c_in, side, side)), normal((c_out, c_in, 3, 3)), normal(c_out)
        gy = normal((shapes.batch, c_out, side, side))
        label = f"{shapes.batch}x{c_in}x{side}x{side} -> {c_out}, 3x3 pad 1"
        geometry = (one, one, one)
        out += [
            ("conv2d_forward", label, (x, w, b, *geometry)),
            ("conv2d_grad_input", label, (gy, w, (side, side), *geometry)),
            ("conv2d_grad_weight", label, (x, gy, (3, 3), *geometry)),
        ]
        if side >= 2 * 2 and c_out != shapes.channels[-1]:  # the classifier pools after all but the last
            pool = ((2, 2), (2, 2), (0, 0), one)
            y = gy  # the convolution's output is what is pooled
            _, indices = accuracy.reference("max_pool2d_forward", y, *pool)
            label = f"{shapes.batch}x{c_out}x{side}x{side}, 2x2 stride 2"
            out += [
                ("max_pool2d_forward", label, (y, *pool)),
                ("max_pool2d_backward", label, (normal(indices.shape), indices, (side, side), *pool)),
            ]
            side //= 2
    features = shapes.channels[-1] * side * side
    for n_in, n_out in ((features, shapes.hidden), (shapes.hidden, shapes.classes)):
        x, w, b, gy = normal((shapes.batch, n_in)), normal((n_out, n_in)), normal(n_out), normal((shapes.batch, n_out))
        label = f"linear {shapes.batch}x{n_in} -> {n_out}"
        out += [
            ("gemm", f"{label}: x W^T + b", (x, w, b, False, True)),
            ("gemm", f"{label}: gy W", (gy, w, None, False, False)),
            ("gemm", f"{label}: gy^T x", (gy, x, None, True, False)),
        ]
    for heads, lq, lk, d in ((shapes.heads, shapes.length, shapes.length, shapes.head_dim),
                             (shapes.wide_heads, shapes.length, shapes.keys, shapes.wide_dim)):  # fmt: skip
        q, k, v = normal((heads, lq, d)), normal((heads, lk, d)), normal((heads, lk, d))
        scale = 1 / np.sqrt(d)
        out_, lse = accuracy.reference("attention_forward", q, k, v, None, scale, False)
        label = f"{heads} heads, Lq {lq}, Lk {lk}, D {d}"
        out += [
            ("attention_forward", label, (q, k, v, None, scale, False)),
            ("attention_backward", label, (normal(out_.shape), q, k, v, out_, lse, None, scale, False)),
        ]
    return out


def _timer(module) -> Callable[[Callable[[], tuple]], tuple[float, tuple]]:
    """A function that runs a callable once and returns its time in milliseconds and its
    result: timed between two CUDA events when the backend's arrays are CuPy's, else on the
    host clock."""
    if module.xp is np:

        def host(run: Callable[[], tuple]) -> tuple[float, tuple]:
            start = time.perf_counter()
            result = run()
            return (time.perf_counter() - start) * 1e3, result

        return host
    cupy = module.xp

    def events(run: Callable[[], tuple]) -> tuple[float, tuple]:
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        result = run()
        stop.record()
        stop.synchronize()
        return cupy.cuda.get_elapsed_time(start, stop), result

    return events


def check(module, primitive: str, label: str, args: tuple, dtype: np.dtype, repeat: int) -> Row:
    """Run ``primitive`` on the backend: its error, whether two runs agree bit for bit, its time."""
    args = accuracy.in_dtype(args, dtype)
    exact = accuracy.reference(primitive, *args)
    allowed = accuracy.allowed_error(primitive, dtype, *args)
    moved = [module.asarray(a) if isinstance(a, np.ndarray) else a for a in args]

    def run() -> tuple:
        result = getattr(module, primitive)(*moved)
        return result if isinstance(result, tuple) else (result,)

    first = tuple(module.to_numpy(r) for r in run())  # untimed: the first run also compiles
    timer = _timer(module)
    times, later = zip(*(timer(run) for _ in range(repeat)))
    second = tuple(module.to_numpy(r) for r in later[-1])
    errors = [accuracy.relative_error(a, e) for a, e in zip(first, exact)]
    worst = max(range(len(errors)), key=lambda i: errors[i] / allowed[i])
    identical = all(a.tobytes() == b.tobytes() for a, b in zip(first, second))
    return Row(
        module.name, dtype.name, primitive, label, errors[worst], allowed[worst], identical, statistics.median(times)
    )


def subnormal_probe(module) -> str | None:
    """``None`` if max pooling finds a float32 subnormal maximum, else what it found instead."""
    x = np.array([0.0, 0.0, 0.0, 1e-45], np.float32).reshape(1, 1, 2, 2)
    y, indices = (
        module.to_numpy(r) for r in module.max_pool2d_forward(module.asarray(x), (2, 2), (2, 2), (0, 0), (1, 1))
    )
    if indices.item() == 3 and y.tobytes() == x.reshape(-1)[3:].tobytes():
        return None
    return f"max_pool2d of [0, 0, 0, 1e-45] gave y = {y.item()!r} at {indices.item()}, expected 1e-45 at 3"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny shapes, for Numba's CUDA simulator in CI")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per row (default 20, or 1 with --small)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", Path(__file__).parent / "results")))
    options = parser.parse_args(argv)
    shapes = SMALL if options.small else COURSE
    repeat = options.repeat or (1 if options.small else 20)
    names = [name for name in backends.NAMES if name != "numpy" and name in backends.available()]
    if not names:
        print("gpu_check: no GPU backend can run here", file=sys.stderr)
        for name in ("cupy", "numba"):
            try:
                backends.get(name)
            except backends.BackendUnavailableError as error:
                print(f"  {error}", file=sys.stderr)
        return 1
    rows, failures = [], []
    print(f"{'backend':7} {'dtype':8} {'primitive':20} {'error':>9} {'allowed':>9} {'bits':5} {'ms':>9}  shape")
    for name in names:
        module = backends.get(name)
        problem = subnormal_probe(module)
        if problem:
            failures.append(f"{name}: {problem}")
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            for primitive, label, args in cases(shapes, np.random.default_rng(0)):
                row = check(module, primitive, label, args, dtype, repeat)
                rows.append(row)
                print(
                    f"{row.backend:7} {row.dtype:8} {row.primitive:20} {row.error:9.2e} {row.allowed:9.2e} "
                    f"{'same' if row.bit_identical else 'DIFF':5} {row.median_ms:9.3f}  {row.shape}"
                    + ("" if row.ok else "   <- FAILED")
                )
                if not row.ok:
                    failures.append(f"{name} {row.dtype} {row.primitive} ({row.shape})")
    options.out.mkdir(parents=True, exist_ok=True)
    report = {"small": options.small, "repeat": repeat, "rows": [asdict(r) | {"ok": r.ok} for r in rows]}
    report["failures"] = failures
    (options.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    for failure in failures:
        print("FAILED:", failure)
    print(f"gpu_check: {len(rows)} rows, {len(failures)} failures; results in {options.out / 'gpu_check.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
