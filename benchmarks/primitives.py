"""The backend contract's primitives, one op at one shape at a time, in tinymed, PyTorch and tinygrad.

An :class:`OpCase` is one layer of a model (LeNet's second convolution, the DCGAN's first
transposed convolution, MedCNN's attention) at one batch size. It holds the host arrays, and
splits the op into the parts a training step runs, each a primitive of the contract in
``tinymed/backends/__init__.py``:

==================  ==============================  ==================================
op                  part                            tinymed primitive
==================  ==============================  ==================================
conv2d              forward, grad_input,            conv2d_forward, conv2d_grad_input,
                    grad_weight                     conv2d_grad_weight
conv_transpose2d    forward, grad_input,            conv2d_grad_input, conv2d_forward,
                    grad_weight                     conv2d_grad_weight (roles swapped)
max_pool2d          forward, backward               max_pool2d_forward, max_pool2d_backward
linear              forward, grad_input,            gemm (bias fused), gemm, gemm
                    grad_weight
attention           forward, backward               attention_forward, attention_backward
==================  ==============================  ==================================

The other libraries do each part their own usual way. PyTorch: the forward is the
``torch.nn.functional`` op under ``no_grad``; a gradient part is ``torch.autograd.grad`` of the
op's output with respect to that one input, on a graph recorded once (PyTorch's engine then
asks its backward kernel for that gradient alone, as in a training step). tinygrad, which has
no backward kernels of its own, builds the gradient lazily from the forward graph and runs
what it needs (for pooling and attention that includes the forward).

Work counts, for GFLOP/s and the roofline: a convolution part does ``2 * N * O * OH * OW * C *
KH * KW`` operations (a multiply and an add per term, each part the same number); a matrix
product ``2 * M * N * K``; attention ``4 * B * Lq * Lk * D`` forward (two products) and 2.5
times that backward (five products, FlashAttention's count), half of each when causal;
pooling one comparison per window element forward and one add per output backward. Bytes are
the arrays a part must read and write once, float32 (int64 pooling indices): the least any
implementation moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

FLOAT, INDEX = 4, 8  # bytes per float32 value and per int64 index


@dataclass(frozen=True)
class Part:
    """One primitive of an op: ``name`` (forward, grad_input, grad_weight, backward), the
    inputs it differentiates (none for the forward), its operations and its bytes."""

    name: str
    primitive: str
    wrt: tuple[int, ...]
    flops: float
    bytes: float


@dataclass
class OpCase:
    """One op at one shape. ``inputs`` are the op's host arrays in PyTorch's argument order,
    ``grad_output`` the gradient flowing back into its output.

    ``tinymed(backend, *inputs, grad_output)`` returns one zero-argument call per part name,
    each running that part's primitive on arrays already on ``backend``. ``torch(F, *inputs)``
    and ``tinygrad(*inputs)`` are the op's forward in those libraries (None where tinygrad has
    no such op)."""

    op: str
    shape: str
    inputs: tuple[np.ndarray, ...]
    grad_output: np.ndarray
    parts: tuple[Part, ...]
    tinymed: Callable[..., dict[str, Callable[[], Any]]]
    torch: Callable[..., Any]
    tinygrad: Callable[..., Any] | None = None


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _nbytes(*shapes: Sequence[int], size: int = FLOAT) -> float:
    return float(sum(size * np.prod(shape) for shape in shapes))


def _pair(value: int) -> tuple[int, int]:
    return (value, value)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv2d(rng: np.random.Generator, n: int, c: int, h: int, o: int, k: int, stride: int, padding: int) -> OpCase:
    """``F.conv2d`` of ``(n, c, h, h)`` with ``o`` filters ``k x k`` (no bias: the models'
    convolutions are followed by BatchNorm, and the bias gradient is a sum)."""
    oh = _conv_out(h, k, stride, padding)
    s, p, d = _pair(stride), _pair(padding), (1, 1)
    x, w, gy = _randn(rng, n, c, h, h), _randn(rng, o, c, k, k), _randn(rng, n, o, oh, oh)
    flops = 2.0 * n * o * oh * oh * c * k * k

    def tinymed(be: ModuleType, x, w, gy) -> dict[str, Callable[[], Any]]:
        return {
            "forward": lambda: be.conv2d_forward(x, w, None, s, p, d),
            "grad_input": lambda: be.conv2d_grad_input(gy, w, (h, h), s, p, d),
            "grad_weight": lambda: be.conv2d_grad_weight(x, gy, (k, k), s, p, d),
        }

    arrays = (x.shape, w.shape, gy.shape)
    return OpCase(
        "conv2d",
        f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}",
        (x, w),
        gy,
        (
            Part("forward", "conv2d_forward", (), flops, _nbytes(*arrays)),
            Part("grad_input", "conv2d_grad_input", (0,), flops, _nbytes(*arrays)),
            Part("grad_weight", "conv2d_grad_weight", (1,), flops, _nbytes(*arrays)),
        ),
        tinymed,
        lambda F, x, w: F.conv2d(x, w, None, stride, padding),
        lambda x, w: x.conv2d(w, stride=stride, padding=padding),
    )


def conv_transpose2d(
    rng: np.random.Generator, n: int, c: int, h: int, o: int, k: int, stride: int, padding: int
) -> OpCase:
    """``F.conv_transpose2d`` of ``(n, c, h, h)`` to ``o`` channels, weight ``(c, o, k, k)``
    as in PyTorch. Its forward is the convolution's input gradient, its input gradient the
    convolution's forward, its weight gradient the convolution's with input and output swapped."""
    oh = (h - 1) * stride - 2 * padding + k
    s, p, d = _pair(stride), _pair(padding), (1, 1)
    x, w, gy = _randn(rng, n, c, h, h), _randn(rng, c, o, k, k), _randn(rng, n, o, oh, oh)
    flops = 2.0 * n * c * h * h * o * k * k

    def tinymed(be: ModuleType, x, w, gy) -> dict[str, Callable[[], Any]]:
        return {
            "forward": lambda: be.conv2d_grad_input(x, w, (oh, oh), s, p, d),
            "grad_input": lambda: be.conv2d_forward(gy, w, None, s, p, d),
            "grad_weight": lambda: be.conv2d_grad_weight(gy, x, (k, k), s, p, d),
        }

    arrays = (x.shape, w.shape, gy.shape)
    return OpCase(
        "conv_transpose2d",
        f"{n}x{c}x{h}x{h} -> {o}@{k}x{k} s{stride} p{padding}",
        (x, w),
        gy,
        (
            Part("forward", "conv2d_grad_input", (), flops, _nbytes(*arrays)),
            Part("grad_input", "conv2d_forward", (0,), flops, _nbytes(*arrays)),
            Part("grad_weight", "conv2d_grad_weight", (1,), flops, _nbytes(*arrays)),
        ),
        tinymed,
        lambda F, x, w: F.conv_transpose2d(x, w, None, stride, padding),
        lambda x, w: x.conv_transpose2d(w, stride=stride, padding=padding),
    )


def max_pool2d(rng: np.random.Generator, n: int, c: int, h: int, k: int) -> OpCase:
    """``F.max_pool2d(x, k)`` (stride k) of ``(n, c, h, h)``; the forward also finds the
    argmax the backward routes through, in every library."""
    oh = h // k
    ks, s, p, d = _pair(k), _pair(k), (0, 0), (1, 1)
    x, gy = _randn(rng, n, c, h, h), _randn(rng, n, c, oh, oh)

    def tinymed(be: ModuleType, x, gy) -> dict[str, Callable[[], Any]]:
        _, indices = be.max_pool2d_forward(x, ks, s, p, d)
        return {
            "forward": lambda: be.max_pool2d_forward(x, ks, s, p, d),
            "backward": lambda: be.max_pool2d_backward(gy, indices, (h, h), ks, s, p, d),
        }

    outputs = n * c * oh * oh
    return OpCase(
        "max_pool2d",
        f"{n}x{c}x{h}x{h} k{k}",
        (x,),
        gy,
        (
            Part("forward", "max_pool2d_forward", (), outputs * k * k, _nbytes(x.shape, gy.shape) + INDEX * outputs),
            Part("backward", "max_pool2d_backward", (0,), outputs, _nbytes(x.shape, gy.shape) + INDEX * outputs),
        ),
        tinymed,
        lambda F, x: F.max_pool2d(x, k, return_indices=True)[0],
        lambda x: x.max_pool2d(k),
    )


def linear(rng: np.random.Generator, n: int, fan_in: int, fan_out: int) -> OpCase:
    """``F.linear(x, weight, bias)``, x ``(n, fan_in)``: forward ``gemm(x, W, b, trans_b)``,
    input gradient ``gemm(gy, W)``, weight gradient ``gemm(gy, x, trans_a)``."""
    x, w, b, gy = _randn(rng, n, fan_in), _randn(rng, fan_out, fan_in), _randn(rng, fan_out), _randn(rng, n, fan_out)
    flops = 2.0 * n * fan_in * fan_out

    def tinymed(be: ModuleType, x, w, b, gy) -> dict[str, Callable[[], Any]]:
        return {
            "forward": lambda: be.gemm(x, w, b, trans_b=True),
            "grad_input": lambda: be.gemm(gy, w),
            "grad_weight": lambda: be.gemm(gy, x, trans_a=True),
        }

    arrays = (x.shape, w.shape, gy.shape)
    return OpCase(
        "linear",
        f"{n}x{fan_in} -> {fan_out}",
        (x, w, b),
        gy,
        (
            Part("forward", "gemm", (), flops, _nbytes(*arrays, b.shape)),
            Part("grad_input", "gemm", (0,), flops, _nbytes(*arrays)),
            Part("grad_weight", "gemm", (1,), flops, _nbytes(*arrays)),
        ),
        tinymed,
        lambda F, x, w, b: F.linear(x, w, b),
        lambda x, w, b: x.linear(w.transpose(), b),
    )


def attention(rng: np.random.Generator, batch_heads: int, length: int, dim: int, is_causal: bool = False) -> OpCase:
    """``F.scaled_dot_product_attention`` of ``batch_heads`` independent heads, q, k, v
    ``(batch_heads, length, dim)``, scale ``1 / sqrt(dim)``."""
    scale = dim**-0.5
    q, k, v, go = (_randn(rng, batch_heads, length, dim) for _ in range(4))
    flops = 4.0 * batch_heads * length * length * dim / (2 if is_causal else 1)
    lse = (batch_heads, length)

    def tinymed(be: ModuleType, q, k, v, go) -> dict[str, Callable[[], Any]]:
        out, saved_lse = be.attention_forward(q, k, v, None, scale, is_causal)
        return {
            "forward": lambda: be.attention_forward(q, k, v, None, scale, is_causal),
            "backward": lambda: be.attention_backward(go, q, k, v, out, saved_lse, None, scale, is_causal),
        }

    return OpCase(
        "attention",
        f"B{batch_heads} L{length} D{dim}" + (" causal" if is_causal else ""),
        (q, k, v),
        go,
        (
            Part("forward", "attention_forward", (), flops, _nbytes(q.shape, q.shape, q.shape, q.shape, lse)),
            Part("backward", "attention_backward", (0, 1, 2), 2.5 * flops, _nbytes(*[q.shape] * 8, lse)),
        ),
        tinymed,
        lambda F, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale),
        lambda q, k, v: q.scaled_dot_product_attention(k, v, is_causal=is_causal),
    )


@dataclass(frozen=True)
class Layer:
    """A layer of one of tinymed's models: its op and its geometry without the batch.
    ``build(rng, batch)`` makes its :class:`OpCase`; ``batched`` is False for the rows whose
    size is a sequence length rather than a batch (the attention sweep)."""

    model: str
    name: str
    build: Callable[[np.random.Generator, int], OpCase]
    batched: bool = True


def model_layers() -> list[Layer]:
    """Every kernel-bound layer of LeNet, MedCNN and the DCGAN on 28x28 one-channel images, as
    tinymed/models builds them (default widths). MedCNN's attention runs its 4 heads of 32
    dimensions over the 7 x 7 = 49 positions of its last feature map."""
    return [
        Layer("LeNet", "conv1", lambda rng, n: conv2d(rng, n, 1, 28, 6, 5, 1, 2)),
        Layer("LeNet", "pool1", lambda rng, n: max_pool2d(rng, n, 6, 28, 2)),
        Layer("LeNet", "conv2", lambda rng, n: conv2d(rng, n, 6, 14, 16, 5, 1, 0)),
        Layer("LeNet", "pool2", lambda rng, n: max_pool2d(rng, n, 16, 10, 2)),
        Layer("LeNet", "fc1", lambda rng, n: linear(rng, n, 400, 120)),
        Layer("LeNet", "fc2", lambda rng, n: linear(rng, n, 120, 84)),
        Layer("LeNet", "fc3", lambda rng, n: linear(rng, n, 84, 2)),
        Layer("MedCNN", "block1 conv", lambda rng, n: conv2d(rng, n, 1, 28, 32, 3, 1, 1)),
        Layer("MedCNN", "block1 pool", lambda rng, n: max_pool2d(rng, n, 32, 28, 2)),
        Layer("MedCNN", "block2 conv", lambda rng, n: conv2d(rng, n, 32, 14, 64, 3, 1, 1)),
        Layer("MedCNN", "block2 pool", lambda rng, n: max_pool2d(rng, n, 64, 14, 2)),
        Layer("MedCNN", "block3 conv", lambda rng, n: conv2d(rng, n, 64, 7, 128, 3, 1, 1)),
        Layer("MedCNN", "in_proj", lambda rng, n: linear(rng, n * 49, 128, 384)),
        Layer("MedCNN", "attention", lambda rng, n: attention(rng, n * 4, 49, 32)),
        Layer("MedCNN", "out_proj", lambda rng, n: linear(rng, n * 49, 128, 128)),
        Layer("MedCNN", "fc", lambda rng, n: linear(rng, n, 128, 2)),
        Layer("DCGAN G", "convT1", lambda rng, n: conv_transpose2d(rng, n, 100, 1, 128, 7, 1, 0)),
        Layer("DCGAN G", "convT2", lambda rng, n: conv_transpose2d(rng, n, 128, 7, 64, 4, 2, 1)),
        Layer("DCGAN G", "convT3", lambda rng, n: conv_transpose2d(rng, n, 64, 14, 1, 4, 2, 1)),
        Layer("DCGAN D", "conv1", lambda rng, n: conv2d(rng, n, 1, 28, 64, 4, 2, 1)),
        Layer("DCGAN D", "conv2", lambda rng, n: conv2d(rng, n, 64, 14, 128, 4, 2, 1)),
        Layer("DCGAN D", "conv3", lambda rng, n: conv2d(rng, n, 128, 7, 1, 7, 1, 0)),
    ]


def attention_sweep(lengths: Sequence[int], batch_heads: int = 8, dim: int = 64) -> list[Layer]:
    """Attention over growing sequence lengths (8 heads of 64 dimensions), and the longest
    once more with the causal mask."""
    sweep = [
        Layer("attention", f"L{length}", lambda rng, _, length=length: attention(rng, batch_heads, length, dim), False)
        for length in lengths
    ]
    longest = lengths[-1]
    sweep.append(
        Layer(
            "attention",
            f"L{longest} causal",
            lambda rng, _: attention(rng, batch_heads, longest, dim, is_causal=True),
            False,
        )
    )
    return sweep
