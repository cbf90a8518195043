"""Time the NumPy reference backend against PyTorch's CPU ops, forward + backward.

For each op and shape (a LeNet and a DCGAN on 28x28 inputs, batch 128, plus attention),
both sides compute the same forward pass and the gradients of every input, and the table
gives the best wall time of ``--repeat`` runs after a warm-up, and the ratio
tinymed / torch. The two sides alternate run by run, so a burst of load from elsewhere on
the machine slows both rather than one. Before timing, every tinymed result is checked
against torch's, so the two columns always time the same computation.

Both libraries keep their default thread counts (printed in the header). Wall times only
mean something on an otherwise idle machine: the load average is printed before and after.

    python benchmarks/bench_cpu_ops.py            # the full table (under a minute when idle)
    python benchmarks/bench_cpu_ops.py --quick    # every op once at batch 8: a smoke test
"""

from __future__ import annotations

import argparse
import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tinymed.backends import numpy_ref as ref


@dataclass
class Case:
    """One row of the table: the same work done by tinymed's primitives and by torch."""

    op: str
    shape: str
    tinymed: Callable[[], object]
    torch: Callable[[], object]


def _best_times(case: Case, repeat: int) -> tuple[float, float]:
    """Best wall time in ms of each side over ``repeat`` alternating runs, after a warm-up."""
    case.tinymed()
    case.torch()
    best_tm = best_torch = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        case.tinymed()
        best_tm = min(best_tm, time.perf_counter() - start)
        start = time.perf_counter()
        case.torch()
        best_torch = min(best_torch, time.perf_counter() - start)
    return best_tm * 1e3, best_torch * 1e3


def _check(op: str, ours, theirs) -> None:
    """Fail loudly when tinymed and torch disagree: a timing of a wrong result means nothing."""
    for a, b in zip(ours, theirs):
        b = b.detach().numpy()
        scale = max(float(np.abs(b).max()), 1e-30)
        err = float(np.abs(a - b).max()) / scale
        if not err < 1e-4:
            raise AssertionError(f"{op}: tinymed differs from torch (max error {err:.2e} of the largest value)")


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _leaves(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(a).requires_grad_() for a in arrays]


def _torch_step(
    forward: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """torch's forward + backward: the output and the gradient of every input."""
    out = forward(*inputs)
    return (out, *torch.autograd.grad(out, inputs, grad))


def conv2d_case(rng, n, c, h, o, k, stride, padding) -> Case:
    """conv2d forward, grad_input and grad_weight; bias gradient left out on both sides."""
    s, p, d = (stride, stride), (padding, padding), (1, 1)
    x, w = _randn(rng, n, c, h, h), _randn(rng, o, c, k, k)
    gy = _randn(rng, n, o, *ref.conv2d_forward(x, w, None, s, p, d).shape[2:])
    inputs, gy_t = _leaves(x, w), torch.from_numpy(gy)

    def tinymed():
        return (
            ref.conv2d_forward(x, w, None, s, p, d),
            ref.conv2d_grad_input(gy, w, (h, h), s, p, d),
            ref.conv2d_grad_weight(x, gy, (k, k), s, p, d),
        )

    def torch_side():
        return _torch_step(lambda a, b: F.conv2d(a, b, None, stride, padding), inputs, gy_t)

    _check("conv2d", tinymed(), torch_side())
    return Case("conv2d", f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}", tinymed, torch_side)


def conv_transpose2d_case(rng, n, c, h, o, k, stride, padding) -> Case:
    """conv_transpose2d: its forward is conv2d_grad_input; its input gradient is
    conv2d_forward of the output gradient and its weight gradient is conv2d_grad_weight
    with the roles of input and output swapped. Weight (C_in, C_out, KH, KW) as in PyTorch."""
    s, p, d = (stride, stride), (padding, padding), (1, 1)
    oh = (h - 1) * stride - 2 * padding + k
    x, w, gy = _randn(rng, n, c, h, h), _randn(rng, c, o, k, k), _randn(rng, n, o, oh, oh)
    inputs, gy_t = _leaves(x, w), torch.from_numpy(gy)

    def tinymed():
        return (
            ref.conv2d_grad_input(x, w, (oh, oh), s, p, d),
            ref.conv2d_forward(gy, w, None, s, p, d),
            ref.conv2d_grad_weight(gy, x, (k, k), s, p, d),
        )

    def torch_side():
        return _torch_step(lambda a, b: F.conv_transpose2d(a, b, None, stride, padding), inputs, gy_t)

    _check("conv_transpose2d", tinymed(), torch_side())
    return Case("conv_transpose2d", f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}", tinymed, torch_side)


def max_pool2d_case(rng, n, c, h, k, stride) -> Case:
    """max_pool2d forward (with the argmax) and backward."""
    ks, s, p, d = (k, k), (stride, stride), (0, 0), (1, 1)
    x = _randn(rng, n, c, h, h)
    oh = (h - k) // stride + 1
    gy = _randn(rng, n, c, oh, oh)
    inputs, gy_t = _leaves(x), torch.from_numpy(gy)

    def tinymed():
        y, indices = ref.max_pool2d_forward(x, ks, s, p, d)
        return y, ref.max_pool2d_backward(gy, indices, (h, h), ks, s, p, d)

    def torch_side():
        return _torch_step(lambda a: F.max_pool2d(a, k, stride), inputs, gy_t)

    _check("max_pool2d", tinymed(), torch_side())
    return Case("max_pool2d", f"{n}x{c}x{h}x{h} k{k} s{stride}", tinymed, torch_side)


def linear_case(rng, n, fan_in, fan_out) -> Case:
    """linear: gemm(x, W, b, trans_b) forward; gemm(gy, W) and gemm(gy, x, trans_a) back."""
    x, w, b, gy = _randn(rng, n, fan_in), _randn(rng, fan_out, fan_in), _randn(rng, fan_out), _randn(rng, n, fan_out)
    inputs, gy_t = _leaves(x, w, b), torch.from_numpy(gy)

    def tinymed():
        return (ref.gemm(x, w, b, trans_b=True), ref.gemm(gy, w), ref.gemm(gy, x, trans_a=True), gy.sum(axis=0))

    def torch_side():
        return _torch_step(F.linear, inputs, gy_t)

    _check("linear", tinymed(), torch_side())
    return Case("linear", f"{n}x{fan_in} -> {fan_out}", tinymed, torch_side)


def attention_case(rng, batch_heads, length, dim, is_causal) -> Case:
    """Scaled dot-product attention forward (with the log-sum-exp) and backward."""
    q, k, v, go = (_randn(rng, batch_heads, length, dim) for _ in range(4))
    scale = dim**-0.5
    inputs, go_t = _leaves(q, k, v), torch.from_numpy(go)

    def tinymed():
        out, lse = ref.attention_forward(q, k, v, None, scale, is_causal)
        return (out, *ref.attention_backward(go, q, k, v, out, lse, None, scale, is_causal))

    def torch_side():
        return _torch_step(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=is_causal), inputs, go_t)

    _check("attention", tinymed(), torch_side())
    causal = " causal" if is_causal else ""
    return Case("attention", f"B{batch_heads} L{length} D{dim}{causal}", tinymed, torch_side)


def cases(batch: int) -> list[tuple[str, list[Callable[[], Case]]]]:
    """The shapes of a LeNet and of a DCGAN on 28x28 single-channel images, and attention
    over the 14x14 = 196 positions of a feature map; built lazily, one row at a time."""
    rng = np.random.default_rng(0)
    n = batch
    return [
        (
            "LeNet (28x28)",
            [
                lambda: conv2d_case(rng, n, 1, 28, 6, 5, 1, 0),
                lambda: max_pool2d_case(rng, n, 6, 24, 2, 2),
                lambda: conv2d_case(rng, n, 6, 12, 16, 5, 1, 0),
                lambda: max_pool2d_case(rng, n, 16, 8, 2, 2),
                lambda: linear_case(rng, n, 256, 120),
                lambda: linear_case(rng, n, 120, 84),
                lambda: linear_case(rng, n, 84, 10),
            ],
        ),
        (
            "28x28 CNN, 3x3 convolutions",
            [
                lambda: conv2d_case(rng, n, 32, 28, 64, 3, 1, 1),
                lambda: conv2d_case(rng, n, 32, 14, 64, 3, 1, 1),
            ],
        ),
        (
            "DCGAN (28x28)",
            [
                lambda: linear_case(rng, n, 100, 128 * 7 * 7),
                lambda: conv_transpose2d_case(rng, n, 128, 7, 64, 4, 2, 1),
                lambda: conv_transpose2d_case(rng, n, 64, 14, 1, 4, 2, 1),
                lambda: conv2d_case(rng, n, 1, 28, 64, 4, 2, 1),
                lambda: conv2d_case(rng, n, 64, 14, 128, 4, 2, 1),
                lambda: linear_case(rng, n, 128 * 7 * 7, 1),
            ],
        ),
        (
            "attention",
            [
                lambda: attention_case(rng, 32, 196, 32, False),
                lambda: attention_case(rng, 32, 196, 32, True),
            ],
        ),
    ]


def numpy_blas_threads() -> int | None:
    """Threads of the OpenBLAS NumPy links (None where that cannot be asked)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in paths:
        library = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(library, symbol):
                return int(getattr(library, symbol)())
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per side (best is kept)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--quick", action="store_true", help="one timed run at batch 8: checks that everything runs, times mean little"
    )
    args = parser.parse_args()
    repeat, batch = (1, 8) if args.quick else (args.repeat, args.batch)

    print(
        f"tinymed NumPy reference vs PyTorch {torch.__version__} CPU, forward + backward, "
        f"float32, best of {repeat} after a warm-up"
    )
    print(
        f"threads: torch {torch.get_num_threads()}, NumPy's BLAS {numpy_blas_threads()} "
        f"(both their defaults; {os.cpu_count()} CPUs)"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}\n")
    header = f"{'op':<17} {'shape':<34} {'tinymed ms':>10} {'torch ms':>9} {'ratio':>6}"
    total_tm = total_torch = 0.0
    for title, rows in cases(batch):
        print(f"{title}\n{header}")
        for make in rows:
            case = make()
            tm_ms, torch_ms = _best_times(case, repeat)
            total_tm, total_torch = total_tm + tm_ms, total_torch + torch_ms
            print(f"{case.op:<17} {case.shape:<34} {tm_ms:>10.2f} {torch_ms:>9.2f} {tm_ms / torch_ms:>6.2f}")
        print()
    print(f"{'all rows':<52} {total_tm:>10.2f} {total_torch:>9.2f} {total_tm / total_torch:>6.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
