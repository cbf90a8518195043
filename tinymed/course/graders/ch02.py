"""Graders of chapter 2, Convolution: the formula, the flip, and one matrix product.

2.1 ``stack_geometry(size, layers)``: output sizes against the shapes ``F.conv2d`` produces,
    receptive fields against the footprint of one output's gradient, and a ValueError naming
    the layer whose kernel no longer fits.
2.2 ``im2col(x, kernel_size, stride, padding, dilation)``: the matrix against ``F.conv2d``
    with one-hot filters (filter ``(c, p, q)`` copies tap ``(c, p, q)`` of every window, so its
    output is row ``(c, p, q)`` of im2col), one feature at a time so a mistake is named.
2.3 ``conv2d_gemm``: values against ``F.conv2d``.
2.4 ``conv2d_weight_grad``: values against tinymed's autograd (``weight.grad``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.grading import Exercise, Fail, expect, expect_close

__all__ = ["EXERCISES"]

_RNG_SEED = 2


def _expect_array(got: Any, want: np.ndarray, name: str, layout: str, what: str, hint: str) -> None:
    """Fail unless ``got`` is an array of ``want``'s shape (``layout`` names its axes) and values."""
    tail = f"; {hint}" if hint else ""
    expect(isinstance(got, np.ndarray), f"{name} must return a NumPy array, got {type(got).__name__} ({what})")
    expect(
        got.shape == want.shape, f"{name} returned shape {got.shape}, expected {layout} = {want.shape} ({what}){tail}"
    )
    expect_close(got, want, f"{name} ({what})", hint)


def _conv(x: np.ndarray, weight: np.ndarray, stride: int, padding: int, dilation: int) -> tm.Tensor:
    return F.conv2d(tm.tensor(x), tm.tensor(weight), stride=stride, padding=padding, dilation=dilation)


# ------------------------------------------------------------------ 2.1


def _sizes_by_tinymed(size: int, layers: list[dict[str, int]]) -> list[int]:
    x, sizes = np.zeros((1, 1, size, size)), []
    for layer in layers:
        k = layer["kernel_size"]
        x = _conv(x, np.ones((1, 1, k, k)), layer.get("stride", 1), layer.get("padding", 0), layer.get("dilation", 1))
        sizes.append(x.shape[2])
        x = x.numpy()
    return sizes


def _fields_by_gradient(layers: list[dict[str, int]], size: int = 96) -> list[int]:
    """The receptive field after each layer, measured: the rows of a large input on which the
    middle output of the stack so far has a nonzero gradient (all-ones kernels, no activation,
    so every path counts and none cancels)."""
    fields = []
    for depth in range(1, len(layers) + 1):
        x = tm.tensor(np.zeros((1, 1, size, size)), requires_grad=True)
        y = x
        for layer in layers[:depth]:
            k = layer["kernel_size"]
            ones = tm.tensor(np.ones((1, 1, k, k)))
            y = F.conv2d(y, ones, None, layer.get("stride", 1), layer.get("padding", 0), layer.get("dilation", 1))
        middle = y.shape[2] // 2
        y[0, 0, middle, middle].backward()
        rows = np.flatnonzero(np.abs(np.asarray(x.grad)[0, 0]).sum(axis=1) > 0)
        fields.append(int(rows.max() - rows.min() + 1))
    return fields


def _as_pairs(result: Any, what: str) -> list[tuple[int, int]]:
    expect(
        isinstance(result, (list, tuple)),
        f"stack_geometry must return a list of (output_size, receptive_field) pairs, got {type(result).__name__} "
        f"({what})",
    )
    pairs = []
    for item in result:
        expect(
            isinstance(item, (list, tuple)) and len(item) == 2,
            f"each entry must be a pair (output_size, receptive_field), got {item!r} ({what})",
        )
        expect(
            all(isinstance(v, (int, np.integer)) for v in item),
            f"sizes and fields are whole numbers of pixels: use // (floor division), got {item!r} ({what})",
        )
        pairs.append((int(item[0]), int(item[1])))
    return pairs


_GEOMETRY_CASES = [
    ("one 3x3 layer on 28 pixels", 28, [{"kernel_size": 3}], "H_out = H - K + 1 for stride 1 and no padding"),
    (
        "padding 2 with a 5x5 kernel",
        28,
        [{"kernel_size": 5, "padding": 2}],
        "padding adds P pixels on BOTH sides: H + 2P",
    ),
    (
        "stride 2 on an odd size (27 pixels)",
        27,
        [{"kernel_size": 3, "stride": 2}],
        "with stride S every S-th window start is used: floor((H + 2P - D(K-1) - 1) / S) + 1",
    ),
    (
        "dilation 2",
        28,
        [{"kernel_size": 3, "dilation": 2}],
        "a dilated kernel spans D(K-1) + 1 pixels",
    ),
    (
        "the chapter's CNN",
        28,
        [{"kernel_size": 5, "padding": 2}] + [{"kernel_size": 3, "stride": 2, "padding": 1}] * 2,
        "each layer's output size is the next layer's input size",
    ),
    (
        "a stack with stride and dilation",
        64,
        [
            {"kernel_size": 3, "stride": 2},
            {"kernel_size": 3, "dilation": 2, "padding": 2},
            {"kernel_size": 4, "stride": 3, "padding": 1},
        ],
        "",
    ),
]


def _grade_stack_geometry(ns: Mapping[str, Any]) -> None:
    stack_geometry = ns["stack_geometry"]
    for what, size, layers, hint in _GEOMETRY_CASES:
        got = _as_pairs(stack_geometry(size, [dict(layer) for layer in layers]), what)
        expect(len(got) == len(layers), f"{len(layers)} layers need {len(layers)} pairs, got {len(got)} ({what})")
        sizes = _sizes_by_tinymed(size, layers)
        expect(
            [s for s, _ in got] == sizes,
            f"output sizes {[s for s, _ in got]}, F.conv2d gives {sizes} ({what}); {hint or 'check each layer'}",
        )
    for what, layers, hint in [
        ("two 3x3 layers", [{"kernel_size": 3}, {"kernel_size": 3}], "with stride 1 each KxK layer adds K - 1"),
        (
            "a 3x3 layer after a stride-2 layer",
            [{"kernel_size": 3, "stride": 2}, {"kernel_size": 3}],
            "after a stride S the map's neighbouring cells are S input pixels apart (the jump J multiplies by S), "
            "and the next layer adds D(K-1) times that jump",
        ),
        (
            "a dilated layer",
            [{"kernel_size": 3}, {"kernel_size": 3, "dilation": 3, "padding": 3}],
            "a dilated layer adds D(K-1) times the jump",
        ),
        ("the stack with stride and dilation", _GEOMETRY_CASES[-1][2], "the jump is the product of all strides so far"),
    ]:
        got = [field for _, field in _as_pairs(stack_geometry(96, [dict(layer) for layer in layers]), what)]
        fields = _fields_by_gradient(layers)
        expect(got == fields, f"receptive fields {got}, measured {fields} ({what}); {hint}")
    too_deep = [{"kernel_size": 3, "stride": 2}, {"kernel_size": 3, "stride": 2}, {"kernel_size": 5}]
    try:
        result = stack_geometry(12, too_deep)
    except ValueError as e:
        # The position as a number of its own: not the "-2" of an output size, nor a 1-based "3".
        expect(
            re.search(r"(?<![\d.-])2(?![\d.])", str(e)) is not None,
            f"your ValueError says {str(e)!r}; name the position of the layer that fails: 2 here, counting from 0 "
            "as Python's list indices do",
        )
    else:
        raise Fail(
            f"on a 12-pixel input the third layer's 5x5 kernel meets a 2x2 map, yet stack_geometry returned {result}; "
            "raise ValueError when an output size is below 1"
        )
    try:
        result = stack_geometry(4, [{"kernel_size": 5, "stride": 2}])
    except ValueError:
        pass
    else:
        raise Fail(
            f"a 5x5 kernel with stride 2 on a 4-pixel input has output size floor((4 - 5) / 2) + 1 = 0, yet "
            f"stack_geometry returned {result}; the formula floors: use //, since int(a / s) rounds -0.5 up to 0"
        )


# ------------------------------------------------------------------ 2.2


def _im2col_reference(x: np.ndarray, k: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """(C*K*K, N*OH*OW) by F.conv2d: output channel (c, p, q) of a one-hot filter bank."""
    c = x.shape[1]
    one_hot = np.eye(c * k * k, dtype=x.dtype).reshape(c * k * k, c, k, k)
    y = _conv(x, one_hot, stride, padding, dilation).numpy()  # (N, C*K*K, OH, OW)
    return y.transpose(1, 0, 2, 3).reshape(c * k * k, -1)


# (what, (N, C, H, W), K, stride, padding, dilation), each case adding one feature to the first
_IM2COL_CASES = [
    ("one image, one channel, 4x5, K=3", (1, 1, 4, 5), 3, 1, 0, 1),
    ("one image, two channels", (1, 2, 4, 4), 2, 1, 0, 1),
    ("a batch of three images", (3, 1, 4, 4), 3, 1, 0, 1),
    ("padding 1", (1, 1, 4, 4), 3, 1, 1, 1),
    ("stride 2 on 7x6", (1, 1, 7, 6), 3, 2, 0, 1),
    ("dilation 2", (1, 1, 7, 7), 3, 1, 0, 2),
    ("everything at once", (2, 3, 9, 8), 3, 2, 1, 2),
]
_IM2COL_HINTS = {
    "one image, two channels": "rows are ordered (c, p, q): the K*K taps of channel 0 first, then those of channel 1",
    "a batch of three images": "columns are ordered (n, i, j): all positions of image 0, then those of image 1",
    "padding 1": "pad H and W with P zeros on every side (np.pad with ((0, 0), (0, 0), (P, P), (P, P)))",
    "stride 2 on 7x6": "output (i, j) reads x_pad[i*S + p*D, j*S + q*D]; OH = (H + 2P - D(K-1) - 1) // S + 1",
    "dilation 2": "tap (p, q) of a dilated kernel reads x_pad[i*S + p*D, j*S + q*D]: taps D pixels apart",
}


def _grade_im2col(ns: Mapping[str, Any]) -> None:
    im2col = ns["im2col"]
    rng = np.random.default_rng(_RNG_SEED)
    for what, shape, k, stride, padding, dilation in _IM2COL_CASES:
        hint = _IM2COL_HINTS.get(what, "cols[(c, p, q), (n, i, j)] = x_pad[n, c, iS + pD, jS + qD]")
        x = rng.standard_normal(shape)
        want = _im2col_reference(x, k, stride, padding, dilation)
        got = im2col(x.copy(), k, stride=stride, padding=padding, dilation=dilation)
        if isinstance(got, np.ndarray) and got.shape == want.shape[::-1] != want.shape:
            raise Fail(
                f"im2col returned shape {got.shape}, expected {want.shape} ({what}); your im2col puts the output "
                "positions first; the GEMM expects taps as rows: (C*K*K, N*OH*OW)"
            )
        _expect_array(got, want, "im2col", "(C*K*K, N*OH*OW)", what, hint)
    x32 = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    got = im2col(x32, 3, stride=1, padding=1, dilation=1)
    expect(
        got.dtype == np.float32,
        f"a float32 input gave a {got.dtype} matrix; keep the input's dtype (np.empty(..., dtype=x.dtype))",
    )


# ------------------------------------------------------------------ 2.3 and 2.4

# (what, x (N, C, H, W), weight (O, C, K, K), stride, padding, dilation)
_CONV_CASES = [
    ("one image, one channel, one filter", (1, 1, 5, 6), (1, 1, 3, 3), 1, 0, 1),
    ("four filters", (1, 1, 5, 6), (4, 1, 3, 3), 1, 0, 1),
    ("a batch of two images", (2, 1, 5, 6), (4, 1, 3, 3), 1, 0, 1),
    ("three channels", (2, 3, 5, 6), (4, 3, 3, 3), 1, 0, 1),
    ("stride 2, padding 1, dilation 2", (2, 2, 9, 8), (3, 2, 3, 3), 2, 1, 2),
]
_GEMM_HINTS = {
    "four filters": "weight.reshape(O, -1) @ cols gives one row per filter",
    "a batch of two images": "the product is (O, N*OH*OW) with columns (n, i, j): reshape to (O, N, OH, OW), "
    "then move N first",
    "stride 2, padding 1, dilation 2": "pass stride, padding and dilation on to your im2col, and use them for OH, OW",
}
_WEIGHT_GRAD_HINTS = {
    "one image, one channel, one filter": "dL/dW_mat = dL/dY @ cols.T",
    "four filters": "dL/dW_mat = dL/dY @ cols.T, with dL/dY as a matrix (O, N*OH*OW)",
    "a batch of two images": "dL/dy is (N, O, OH, OW); as a matrix (O, N*OH*OW) its columns must be (n, i, j) like "
    "im2col's: transpose(1, 0, 2, 3) before reshape",
    "three channels": "the product is (O, C*K*K); reshape it to (O, C, K, K)",
    "stride 2, padding 1, dilation 2": "use the stride, padding and dilation of the forward convolution",
}


def _grade_conv2d_gemm(ns: Mapping[str, Any]) -> None:
    conv2d_gemm = ns["conv2d_gemm"]
    rng = np.random.default_rng(_RNG_SEED)
    for what, x_shape, w_shape, stride, padding, dilation in _CONV_CASES:
        for with_bias in (False, True):
            x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
            bias = tm.tensor(b) if with_bias else None
            want = F.conv2d(tm.tensor(x), tm.tensor(w), bias, stride, padding, dilation).numpy()
            got = conv2d_gemm(x, w, b if with_bias else None, stride=stride, padding=padding, dilation=dilation)
            hint = "add bias[o] to every output of filter o" if with_bias else _GEMM_HINTS.get(what, "")
            what_now = what + (", with a bias" if with_bias else "")
            _expect_array(got, want, "conv2d_gemm", "F.conv2d's (N, O, OH, OW)", what_now, hint)


def _grade_conv2d_weight_grad(ns: Mapping[str, Any]) -> None:
    conv2d_weight_grad = ns["conv2d_weight_grad"]
    rng = np.random.default_rng(_RNG_SEED)
    for what, x_shape, w_shape, stride, padding, dilation in _CONV_CASES:
        hint = _WEIGHT_GRAD_HINTS[what]
        x = rng.standard_normal(x_shape)
        w = tm.tensor(rng.standard_normal(w_shape), requires_grad=True)
        y = F.conv2d(tm.tensor(x), w, None, stride, padding, dilation)
        grad_y = rng.standard_normal(y.shape)
        y.backward(tm.tensor(grad_y))
        want = np.asarray(w.grad)
        got = conv2d_weight_grad(x, grad_y, w_shape[2], stride=stride, padding=padding, dilation=dilation)
        _expect_array(got, want, "conv2d_weight_grad", "the weight's (O, C, K, K)", what, hint)


EXERCISES = (
    Exercise(
        "2.1",
        "stack_geometry",
        "the output size and receptive field after each layer of a stack of convolutions",
        _grade_stack_geometry,
    ),
    Exercise(
        "2.2",
        "im2col",
        "copy every window of a padded, strided, dilated batch into the columns of a matrix",
        _grade_im2col,
    ),
    Exercise(
        "2.3",
        "conv2d_gemm",
        "a convolution layer as im2col and one matrix product",
        _grade_conv2d_gemm,
    ),
    Exercise(
        "2.4",
        "conv2d_weight_grad",
        "dL/dw of a convolution as one matrix product with the im2col matrix",
        _grade_conv2d_weight_grad,
    ),
)
