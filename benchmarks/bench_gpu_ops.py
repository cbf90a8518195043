"""Time tinymed's GPU kernels: CuPy against PyTorch CUDA, fused against naive attention, Numba against CuPy.

Three tables, each op forward + backward (the gradients of every input) unless it says
otherwise, float32:

1. **CuPy vs PyTorch CUDA** (cuDNN convolutions, cuBLAS matrix products) at the shapes of
   tinymed's LeNet and DCGAN on 28x28 images; the target is a ratio of at most 3.
2. **Attention, naive vs fused** (both CuPy) for sequence lengths 64 to 1024, forward and
   forward + backward, with PyTorch's scaled_dot_product_attention for scale; the target is
   the fused kernel winning from length 256 on.
3. **Numba vs CuPy**, the same kernels in the two languages; the target is at most 1.5.

A time is the best of ``--repeat`` runs of ``--inner`` calls each, in milliseconds per call,
measured on the host with the device synchronised before and after, so it includes the
Python and launch overhead of each side, which is part of what a training step pays.
PyTorch's TF32 modes are switched off, so both sides do full float32 arithmetic. Before
timing, every row's results are checked against PyTorch's (or CuPy's, in table 3); a row
that disagrees is marked and makes the script exit with status 1.

The tables go to stdout, and as JSON and Markdown to ``$OUT`` when set, else to
``benchmarks/results/``, in files named after the GPU.

    python -m benchmarks.bench_gpu_ops            # everything (about a minute on an H100)
    python -m benchmarks.bench_gpu_ops --quick    # small batch, one run: a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

import tinymed.backends as backends
from benchmarks.report import markdown
from tinymed.backends import output_size

RESULTS = Path(__file__).parent / "results"
ATTENTION_LENGTHS = (64, 128, 256, 512, 1024)
# Agreement needed before a row is timed: the largest difference relative to the largest
# value (float32 sums in different orders differ by a few units in the last place).
AGREEMENT = 1e-3


@dataclass
class Work:
    """One row: the same computation by tinymed's primitives and (optionally) by torch."""

    op: str
    shape: str
    host: Sequence[np.ndarray]  # the inputs on the host; the last is the output gradient
    ours: Callable[..., tuple]  # ours(backend, *device_inputs) -> results
    theirs: Callable[..., tuple] | None = None  # theirs(*torch_inputs) -> results
    device_inputs: list = field(default_factory=list)
    torch_inputs: list = field(default_factory=list)


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _torch_grads(torch, forward: Callable, inputs: list, grad) -> tuple:
    """torch's forward + backward: the output and the gradient of every input."""
    out = forward(*inputs)
    return (out, *torch.autograd.grad(out, inputs, grad))


# ---------------------------------------------------------------------------------------
# The rows: each op as tinymed's primitives and as PyTorch
# ---------------------------------------------------------------------------------------


def conv2d_work(rng, torch, n, c, h, o, k, stride, padding) -> Work:
    """conv2d: forward, grad_input, grad_weight (no bias on either side)."""
    s, p, d = (stride, stride), (padding, padding), (1, 1)
    oh = output_size(h, k, stride, padding, 1)

    def ours(be, x, w, gy):
        return (
            be.conv2d_forward(x, w, None, s, p, d),
            be.conv2d_grad_input(gy, w, (h, h), s, p, d),
            be.conv2d_grad_weight(x, gy, (k, k), s, p, d),
        )

    def theirs(x, w, gy):
        return _torch_grads(torch, lambda a, b: torch.nn.functional.conv2d(a, b, None, stride, padding), [x, w], gy)

    host = (_randn(rng, n, c, h, h), _randn(rng, o, c, k, k), _randn(rng, n, o, oh, oh))
    return Work("conv2d", f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}", host, ours, theirs)


def conv_transpose2d_work(rng, torch, n, c, h, o, k, stride, padding) -> Work:
    """conv_transpose2d: its forward is conv2d_grad_input, its input gradient conv2d_forward
    of the output gradient, its weight gradient conv2d_grad_weight with input and output
    swapped. Weight (C_in, C_out, KH, KW) as in PyTorch."""
    s, p, d = (stride, stride), (padding, padding), (1, 1)
    oh = (h - 1) * stride - 2 * padding + k

    def ours(be, x, w, gy):
        return (
            be.conv2d_grad_input(x, w, (oh, oh), s, p, d),
            be.conv2d_forward(gy, w, None, s, p, d),
            be.conv2d_grad_weight(gy, x, (k, k), s, p, d),
        )

    def theirs(x, w, gy):
        return _torch_grads(
            torch, lambda a, b: torch.nn.functional.conv_transpose2d(a, b, None, stride, padding), [x, w], gy
        )

    host = (_randn(rng, n, c, h, h), _randn(rng, c, o, k, k), _randn(rng, n, o, oh, oh))
    return Work("conv_transpose2d", f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}", host, ours, theirs)


def max_pool2d_work(rng, torch, n, c, h, k) -> Work:
    """max_pool2d with kernel = stride = k: forward with the argmax, and backward."""
    geometry = ((k, k), (k, k), (0, 0), (1, 1))  # kernel, stride, padding, dilation

    def ours(be, x, gy):
        y, indices = be.max_pool2d_forward(x, *geometry)
        return y, be.max_pool2d_backward(gy, indices, (h, h), *geometry)

    def theirs(x, gy):
        return _torch_grads(torch, lambda a: torch.nn.functional.max_pool2d(a, k), [x], gy)

    host = (_randn(rng, n, c, h, h), _randn(rng, n, c, h // k, h // k))
    return Work("max_pool2d", f"{n}x{c}x{h}x{h} k{k}", host, ours, theirs)


def linear_work(rng, torch, n, fan_in, fan_out) -> Work:
    """linear: gemm(x, W, b, trans_b) forward; gemm(gy, W), gemm(gy, x, trans_a) and the
    bias gradient (a sum, by the array module) backward."""

    def ours(be, x, w, b, gy):
        return (be.gemm(x, w, b, trans_b=True), be.gemm(gy, w), be.gemm(gy, x, trans_a=True), gy.sum(axis=0))

    def theirs(x, w, b, gy):
        return _torch_grads(torch, torch.nn.functional.linear, [x, w, b], gy)

    host = (_randn(rng, n, fan_in), _randn(rng, fan_out, fan_in), _randn(rng, fan_out), _randn(rng, n, fan_out))
    return Work("linear", f"{n}x{fan_in} -> {fan_out}", host, ours, theirs)


def attention_work(rng, torch, batch_heads, length, dim, is_causal, variant, backward=True) -> Work:
    """Scaled dot-product attention, ``variant`` "fused" or "naive"; forward (with the
    log-sum-exp) and, when ``backward``, the gradients of q, k, v."""
    scale = dim**-0.5
    suffix = "" if variant == "fused" else "_naive"

    def ours(be, q, k, v, go):
        out, lse = getattr(be, f"attention_forward{suffix}")(q, k, v, None, scale, is_causal)
        if not backward:
            return (out,)
        return (out, *getattr(be, f"attention_backward{suffix}")(go, q, k, v, out, lse, None, scale, is_causal))

    def theirs(q, k, v, go):
        def forward(a, b, c):
            return torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=is_causal)

        return _torch_grads(torch, forward, [q, k, v], go) if backward else (forward(q, k, v),)

    host = tuple(_randn(rng, batch_heads, length, dim) for _ in range(4))
    causal = " causal" if is_causal else ""
    return Work(f"attention {variant}", f"B{batch_heads} L{length} D{dim}{causal}", host, ours, theirs)


def model_rows(rng, torch, batch: int) -> list[tuple[str, list[Work]]]:
    """tinymed's LeNet and DCGAN on 28x28 single-channel images (see tinymed/models), and
    the linear layers of a DCGAN with a fully connected first and last layer."""
    n = batch
    return [
        (
            "LeNet (28x28)",
            [
                conv2d_work(rng, torch, n, 1, 28, 6, 5, 1, 2),
                max_pool2d_work(rng, torch, n, 6, 28, 2),
                conv2d_work(rng, torch, n, 6, 14, 16, 5, 1, 0),
                max_pool2d_work(rng, torch, n, 16, 10, 2),
                linear_work(rng, torch, n, 400, 120),
                linear_work(rng, torch, n, 120, 84),
                linear_work(rng, torch, n, 84, 10),
            ],
        ),
        (
            "DCGAN (28x28)",
            [
                conv_transpose2d_work(rng, torch, n, 100, 1, 128, 7, 1, 0),
                conv_transpose2d_work(rng, torch, n, 128, 7, 64, 4, 2, 1),
                conv_transpose2d_work(rng, torch, n, 64, 14, 1, 4, 2, 1),
                conv2d_work(rng, torch, n, 1, 28, 64, 4, 2, 1),
                conv2d_work(rng, torch, n, 64, 14, 128, 4, 2, 1),
                conv2d_work(rng, torch, n, 128, 7, 1, 7, 1, 0),
                linear_work(rng, torch, n, 100, 128 * 7 * 7),
                linear_work(rng, torch, n, 128 * 7 * 7, 1),
            ],
        ),
    ]


# ---------------------------------------------------------------------------------------
# Checking and timing
# ---------------------------------------------------------------------------------------


def _relative_error(ours: Sequence, reference: Sequence, as_numpy: Callable) -> float:
    """The largest |ours - reference| over all results, relative to the largest |reference|."""
    worst = 0.0
    for a, b in zip(ours, reference, strict=True):
        a, b = as_numpy(a).astype(np.float64), as_numpy(b).astype(np.float64)
        worst = max(worst, float(np.abs(a - b).max(initial=0)) / max(float(np.abs(b).max(initial=0)), 1e-30))
    return worst


def best_ms(run: Callable[[], object], synchronize: Callable[[], None], repeat: int, inner: int) -> float:
    """Best time of ``repeat`` runs of ``inner`` calls, in ms per call, after one warm-up."""
    run()
    synchronize()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            run()
        synchronize()
        best = min(best, (time.perf_counter() - start) / inner)
    return best * 1e3


@dataclass
class Bench:
    """The GPU, the libraries, and how to move arrays and time calls."""

    cupy: ModuleType
    cupy_backend: ModuleType
    torch: ModuleType
    repeat: int
    inner: int

    def synchronize(self) -> None:
        self.cupy.cuda.runtime.deviceSynchronize()  # waits for every stream, torch's too

    def prepare(self, work: Work) -> Work:
        work.device_inputs = [self.cupy.asarray(a) for a in work.host]
        # Every torch input but the output gradient is a leaf whose gradient is wanted.
        last = len(work.host) - 1
        work.torch_inputs = [
            self.torch.as_tensor(a, device="cuda").requires_grad_(i < last) for i, a in enumerate(work.host)
        ]
        return work

    def time_ours(self, work: Work, backend: ModuleType) -> float:
        return best_ms(lambda: work.ours(backend, *work.device_inputs), self.synchronize, self.repeat, self.inner)

    def time_torch(self, work: Work) -> float:
        return best_ms(lambda: work.theirs(*work.torch_inputs), self.synchronize, self.repeat, self.inner)

    def torch_error(self, work: Work, backend: ModuleType) -> float:
        """How far tinymed's results are from PyTorch's."""
        return _relative_error(
            work.ours(backend, *work.device_inputs),
            work.theirs(*work.torch_inputs),
            lambda a: self.cupy.asnumpy(a) if isinstance(a, self.cupy.ndarray) else a.detach().cpu().numpy(),
        )


def _verdict(error: float) -> str:
    return "ok" if error < AGREEMENT else f"MISMATCH {error:.1e}"


def table_vs_torch(bench: Bench, batch: int) -> list[dict]:
    """Table 1: CuPy against PyTorch CUDA at the model shapes."""
    rows = []
    for model, works in model_rows(np.random.default_rng(0), bench.torch, batch):
        for work in works:
            bench.prepare(work)
            cupy_ms, torch_ms = bench.time_ours(work, bench.cupy_backend), bench.time_torch(work)
            rows.append(
                {
                    "model": model,
                    "op": work.op,
                    "shape": work.shape,
                    "cupy_ms": cupy_ms,
                    "torch_ms": torch_ms,
                    "ratio": cupy_ms / torch_ms,
                    "check": _verdict(bench.torch_error(work, bench.cupy_backend)),
                }
            )
    return rows


def table_attention(bench: Bench, lengths: Sequence[int], batch_heads: int = 8, dim: int = 64) -> list[dict]:
    """Table 2: naive against fused attention, forward and forward + backward."""
    rng = np.random.default_rng(1)
    rows = []
    for length, is_causal in [(length, False) for length in lengths] + [(lengths[-1], True)]:
        row = {"shape": f"B{batch_heads} L{length} D{dim}" + (" causal" if is_causal else "")}
        checks = []
        for backward, label in ((False, "fwd"), (True, "fwd+bwd")):
            for variant in ("naive", "fused"):
                work = bench.prepare(
                    attention_work(rng, bench.torch, batch_heads, length, dim, is_causal, variant, backward)
                )
                row[f"{variant} {label} ms"] = bench.time_ours(work, bench.cupy_backend)
                checks.append(bench.torch_error(work, bench.cupy_backend))
            row[f"naive/fused {label}"] = row[f"naive {label} ms"] / row[f"fused {label} ms"]
            row[f"torch sdpa {label} ms"] = bench.time_torch(work)
        row["check"] = _verdict(max(checks))
        rows.append(row)
    return rows


def table_numba(bench: Bench, numba_backend: ModuleType, batch: int) -> list[dict]:
    """Table 3: the Numba kernels against the CuPy kernels, results checked against CuPy's."""
    rng = np.random.default_rng(2)
    torch = bench.torch
    works = [
        conv2d_work(rng, torch, batch, 6, 14, 16, 5, 1, 0),
        conv2d_work(rng, torch, batch, 64, 14, 128, 4, 2, 1),
        conv_transpose2d_work(rng, torch, batch, 128, 7, 64, 4, 2, 1),
        max_pool2d_work(rng, torch, batch, 6, 28, 2),
        linear_work(rng, torch, batch, 400, 120),
        linear_work(rng, torch, batch, 100, 128 * 7 * 7),
        attention_work(rng, torch, 8, 256, 64, False, "fused"),
    ]
    rows = []
    for work in works:
        bench.prepare(work)
        numba_ms, cupy_ms = bench.time_ours(work, numba_backend), bench.time_ours(work, bench.cupy_backend)
        error = _relative_error(
            work.ours(numba_backend, *work.device_inputs),
            work.ours(bench.cupy_backend, *work.device_inputs),
            bench.cupy.asnumpy,
        )
        rows.append(
            {
                "op": work.op,
                "shape": work.shape,
                "numba_ms": numba_ms,
                "cupy_ms": cupy_ms,
                "ratio": numba_ms / cupy_ms,
                "check": _verdict(error),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per row (the best is kept)")
    parser.add_argument("--inner", type=int, default=10, help="calls per timed run")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="batch 8, one run of one call, L up to 256")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS,
        help="where to write the JSON and Markdown results",
    )
    args = parser.parse_args()
    repeat, inner, batch = (1, 1, 8) if args.quick else (args.repeat, args.inner, args.batch)
    lengths = ATTENTION_LENGTHS[:3] if args.quick else ATTENTION_LENGTHS

    try:
        cupy_backend = backends.get("cupy")
    except backends.BackendUnavailableError as error:
        sys.exit(f"bench_gpu_ops: {error}")
    import cupy

    try:
        import torch
    except ImportError:
        sys.exit("bench_gpu_ops: PyTorch is not installed; it is the baseline of tables 1 and 2")
    if not torch.cuda.is_available():
        sys.exit("bench_gpu_ops: PyTorch cannot use the GPU (a CPU-only build?); it is the baseline")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    device = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())["name"]
    device = device.decode() if isinstance(device, bytes) else device
    bench = Bench(cupy, cupy_backend, torch, repeat, inner)
    header = (
        f"device: {device}; CuPy {cupy.__version__}, PyTorch {torch.__version__} (TF32 off); "
        f"float32, best of {repeat} x {inner} calls, ms per call, batch {batch}"
    )
    print(header)

    results: dict = {
        "device": device,
        "cupy": cupy.__version__,
        "torch": torch.__version__,
        "tf32": False,
        "batch": batch,
        "repeat": repeat,
        "inner": inner,
    }
    sections = []
    results["cupy_vs_torch"] = table_vs_torch(bench, batch)
    sections.append(("CuPy kernels vs PyTorch CUDA, forward + backward (target: ratio <= 3)", results["cupy_vs_torch"]))
    results["attention"] = table_attention(bench, lengths)
    sections.append(
        ("Attention, naive vs fused CuPy kernels (target: fused faster from L = 256)", results["attention"])
    )
    try:
        numba_backend = backends.get("numba")
    except backends.BackendUnavailableError as error:
        results["numba_vs_cupy"] = f"skipped: {error}"
        sections.append(("Numba vs CuPy kernels", []))
        print(f"Numba vs CuPy skipped: {error}")
    else:
        results["numba_vs_cupy"] = table_numba(bench, numba_backend, batch)
        sections.append(("Numba vs CuPy kernels, forward + backward (target: ratio <= 1.5)", results["numba_vs_cupy"]))

    report = f"# tinymed GPU op benchmarks\n\n{header}\n\n" + "\n".join(
        f"## {title}\n\n{markdown(rows)}" for title, rows in sections
    )
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_gpu_ops-" + re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(report)
    print(f"wrote {args.out / stem}.json and .md")

    tables = [rows for _, rows in sections]
    if any(str(row["check"]).startswith("MISMATCH") for rows in tables for row in rows):
        sys.exit("bench_gpu_ops: some results disagree with the reference (rows marked MISMATCH)")


if __name__ == "__main__":
    main()
