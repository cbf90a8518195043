"""Graders of chapter 10, Segmenting what the classifier only points at.

10.1 ``upsample2x(x, weight, bias)``: a 2x2 transposed convolution with stride 2 in NumPy,
     against :func:`tinymed.functional.conv_transpose2d` (shapes, values, dtype).
10.2 ``skip_padding(size, depth)``: the rows each decoder level of a U-Net lacks, against
     the shapes tinymed's max pooling and transposed convolution actually produce.
10.3 ``SoftDiceLoss``, a tinymed ``Function``: values against :func:`tinymed.functional.dice_loss`
     (per image, empty masks, eps, dtype), gradients by :func:`tinymed.gradcheck`.
10.4 ``iou_per_image(truth, predicted)``: against :func:`tinymed.metrics.iou_score` with
     ``axis=(1, 2)``, on empty masks, 0/1 integers, and without division warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck
from tinymed.metrics import iou_score

__all__ = ["EXERCISES"]


# ------------------------------------------------------------------ 10.1


def _transposed_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return F.conv_transpose2d(tm.tensor(x), tm.tensor(weight), tm.tensor(bias), stride=2).numpy()


def _grade_upsample2x(ns: Mapping[str, Any]) -> None:
    upsample2x = ns["upsample2x"]
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 4, 5))  # C_in != C_out and H != W expose swapped axes
    weight, bias = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(2)
    got = np.asarray(upsample2x(x, weight, bias))
    want = _transposed_conv(x, weight, bias)
    if got.shape == (2, 3, 8, 10):
        raise Fail(
            f"your output has shape {got.shape}, with C_in = 3 channels; weight is (C_in, C_out, 2, 2), so the output "
            "channels are its second axis (C_out = 2), and the sum runs over the first"
        )
    expect(
        got.shape == want.shape,
        f"for x of shape {x.shape} and weight {weight.shape} the output must be (N, C_out, 2H, 2W) = {want.shape}, "
        f"got {got.shape}",
    )
    if np.allclose(got, want - bias[None, :, None, None]):
        raise Fail("the values are right but for the bias: add bias[o] to every pixel of output channel o")
    if np.allclose(got, _transposed_conv(x, weight.transpose(0, 1, 3, 2), bias)):
        raise Fail(
            "the 2x2 blocks are transposed: the kernel's third axis (a) moves down the rows, "
            "y[n, o, 2i + a, 2j + b], and its fourth (b) across the columns"
        )
    expect_close(
        got,
        want,
        "upsample2x against F.conv_transpose2d(x, weight, bias, stride=2)",
        "input pixel (i, j) owns output rows 2i, 2i+1 and columns 2j, 2j+1: order the axes (n, o, i, a, j, b) "
        "before reshaping to (N, C_out, 2H, 2W)",
    )
    x32, w32, b32 = (a.astype(np.float32) for a in (x, weight, bias))
    got32 = np.asarray(upsample2x(x32, w32, b32))
    expect(got32.dtype == np.float32, f"float32 inputs gave {got32.dtype}; keep the input's dtype")
    one = rng.standard_normal((1, 1, 1, 1))
    expect_close(
        upsample2x(one, weight[:1], bias),
        _transposed_conv(one, weight[:1], bias),
        "upsample2x of a single 1x1 pixel with one input channel",
        "a 1x1 input gives one 2x2 block per output channel: the pixel times the kernel, plus the bias",
    )


# ------------------------------------------------------------------ 10.2


def _observed_padding(size: int, depth: int) -> list[int]:
    """What tinymed's layers produce: pool ``depth`` times, then at each decoder level the skip's
    size minus the upsampled size, deepest first."""
    x, skips = tm.zeros(1, 1, size, size), []
    for _ in range(depth):
        skips.append(x.shape[2])
        x = F.max_pool2d(x, 2)
    kernel = tm.zeros(1, 1, 2, 2)
    padding = []
    for skip in reversed(skips):
        up = F.conv_transpose2d(x, kernel, stride=2)
        padding.append(skip - up.shape[2])
        x = tm.zeros(1, 1, skip, skip)
    return padding


def _grade_skip_padding(ns: Mapping[str, Any]) -> None:
    skip_padding = ns["skip_padding"]
    for size, depth in [(28, 2), (28, 3), (9, 3), (100, 4), (27, 1), (5, 2), (45, 3)]:
        want = _observed_padding(size, depth)
        got = skip_padding(size, depth)
        try:
            got = [int(v) for v in got]
        except TypeError:
            raise Fail(
                f"skip_padding({size}, {depth}) returned {got!r}; return a list of ints, one per level"
            ) from None
        expect(
            len(got) == depth,
            f"skip_padding({size}, {depth}) has {len(got)} entries; the decoder has depth = {depth} levels",
        )
        if got == want[::-1] and got != want:
            raise Fail(
                f"skip_padding({size}, {depth}) = {got} is in the wrong order: the deepest level comes first, "
                f"the one just above the bottom"
            )
        if any(v < 0 for v in got):
            raise Fail(
                f"skip_padding({size}, {depth}) = {got} has a negative entry: max pooling rounds down "
                "(7 // 2 = 3, not 4), so the upsampled map is never larger than its skip"
            )
        expect(
            got == want,
            f"skip_padding({size}, {depth}) = {got}, but tinymed's layers give {want}: each max pooling halves and "
            "rounds down (7 // 2 = 3), each transposed convolution doubles exactly (3 -> 6)",
        )


# ------------------------------------------------------------------ 10.3


def _dice_batch() -> tuple[tm.Tensor, tm.Tensor]:
    """Three 1x5x5 images, float64: probabilities in (0.05, 0.95) and masks, the last one empty."""
    rng = np.random.default_rng(103)
    p = rng.uniform(0.05, 0.95, (3, 1, 5, 5))
    g = (rng.random((3, 1, 5, 5)) < 0.3).astype(np.float64)
    g[2] = 0.0
    return tm.tensor(p), tm.tensor(g)


def _grade_soft_dice_loss(ns: Mapping[str, Any]) -> None:
    SoftDiceLoss = ns["SoftDiceLoss"]
    expect(
        isinstance(SoftDiceLoss, type) and issubclass(SoftDiceLoss, tm.Function),
        "SoftDiceLoss must be a class deriving from tm.Function",
    )
    p, g = _dice_batch()
    loss = SoftDiceLoss.apply(p, g)
    expect(isinstance(loss, tm.Tensor), f"SoftDiceLoss.apply must return a Tensor, got {type(loss).__name__}")
    per_image = F.dice_loss(p, g, reduction="none").numpy()
    if loss.shape == per_image.shape and np.allclose(loss.numpy(), per_image):
        raise Fail("you return one loss per image; the loss is their mean, a single number")
    expect(loss.shape == (), f"the loss must be a single number (shape ()), got shape {loss.shape}")
    got = loss.item()
    pooled = F.dice_loss(p.reshape(1, -1), g.reshape(1, -1)).item()
    if np.isclose(got, pooled):
        raise Fail(
            "you summed over the whole batch at once; compute each image's sums (over every axis but the first), "
            "its loss, and then the mean over the images"
        )
    if np.isclose(got, per_image.sum()):
        raise Fail("you return the sum of the images' losses; divide by the number of images N for the mean")
    expect_close(got, per_image.mean(), "SoftDiceLoss on three images", "1 - (2 sum p g + eps) / (sum p + sum g + eps)")
    expect_close(
        SoftDiceLoss.apply(p, g, eps=1e-3).item(),
        F.dice_loss(p, g, eps=1e-3).item(),
        "SoftDiceLoss with eps=1e-3",
        "use the eps you are given, in the numerator and in the denominator",
    )
    _grade_soft_dice_edges(SoftDiceLoss, p, g)


def _grade_soft_dice_edges(SoftDiceLoss: Any, p: tm.Tensor, g: tm.Tensor) -> None:
    """The edges of 10.3 once the value is right: empty (N, H, W) masks, float32, the gradient."""
    empty = tm.zeros(2, 4, 4, dtype=tm.float64)
    try:
        empty_loss = SoftDiceLoss.apply(empty, empty)
    except (IndexError, ValueError) as e:
        raise Fail(
            f"on (N, H, W) masks your forward raised {type(e).__name__}: {e}; sum over every axis but the first, "
            "whatever the number of axes: tuple(range(1, p.ndim))"
        ) from None
    expect_close(
        empty_loss.item(),
        0.0,
        "the loss of an empty prediction of two empty (N, H, W) masks",
        "with eps the loss is 1 - eps / eps = 0; sum over every axis but the first, tuple(range(1, p.ndim))",
    )
    p32 = tm.tensor(p.numpy().astype(np.float32))
    g32 = tm.tensor(g.numpy().astype(np.float32))
    out32 = SoftDiceLoss.apply(p32, g32)
    expect(out32.dtype == tm.float32, f"float32 inputs gave {out32.dtype}; keep the input's dtype")
    q = tm.tensor(p.numpy(), requires_grad=True)
    try:
        expect_gradcheck(
            lambda x: SoftDiceLoss.apply(x, g),
            [q],
            "SoftDiceLoss",
            "per image dL/dp_i = ((2 I + eps) - 2 g_i (S + eps)) / (S + eps)^2, with I and S that image's sums, then "
            "divided by N for the mean (keepdims=True keeps I and S broadcastable against p)",
        )
    except (TypeError, ValueError, RuntimeError) as e:  # the engine refusing what backward returned
        raise Fail(
            f"backward failed ({type(e).__name__}: {e}); return one gradient per input of forward: (grad_p, None), "
            "grad_p of p's shape"
        ) from None


# ------------------------------------------------------------------ 10.4


def _grade_iou_per_image(ns: Mapping[str, Any]) -> None:
    iou_per_image = ns["iou_per_image"]
    rng = np.random.default_rng(104)
    truth = rng.random((7, 5, 6)) < 0.3
    predicted = rng.random((7, 5, 6)) < 0.3
    truth[0], predicted[0] = False, False  # both empty: 1
    truth[1] = False  # a prediction where there is nothing: 0
    predicted[2] = False  # nothing found where there is something: 0
    predicted[3] = truth[3]  # perfect: 1
    want = iou_score(truth, predicted, axis=(1, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = iou_per_image(truth, predicted)
    got = np.asarray(got, dtype=np.float64)
    expect(
        got.shape == want.shape,
        f"for masks of shape {truth.shape} return one IoU per image, shape {want.shape}; got shape {got.shape} "
        "(sum over axes 1 and 2 only)",
    )
    if np.isnan(got[0]) or got[0] != 1.0:
        raise Fail(
            f"two empty masks gave {got[0]}; the convention is 1.0 (nothing to find, nothing found): "
            "np.where(union == 0, 1.0, ...)"
        )
    overlap = (truth & predicted).sum(axis=(1, 2))
    halves = overlap / np.maximum(truth.sum(axis=(1, 2)) + predicted.sum(axis=(1, 2)), 1)
    if np.allclose(got[4:], halves[4:]):
        raise Fail("your union counts the overlap twice: |T u P| = |T| + |P| - |T n P| (or (T | P).sum())")
    expect_close(got, want, "iou_per_image against tinymed.metrics.iou_score(axis=(1, 2))", "|T n P| / |T u P|")
    divisions = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    expect(
        not divisions,
        f"your function warns: {divisions[0].message if divisions else ''}; np.where computes both branches, so "
        "divide by np.maximum(union, 1) and let np.where pick 1.0 where the union is empty",
    )
    as_ints = np.asarray(iou_per_image(truth.astype(np.uint8), predicted.astype(np.int64)), dtype=np.float64)
    expect_close(
        as_ints,
        want,
        "iou_per_image of the same masks given as 0/1 integers",
        "accept 0/1 integer masks as well as bools: convert them with np.asarray(m).astype(bool) first",
    )


EXERCISES = (
    Exercise(
        "10.1",
        "upsample2x",
        "a 2x2 transposed convolution with stride 2, in NumPy without a loop over pixels",
        _grade_upsample2x,
    ),
    Exercise(
        "10.2",
        "skip_padding",
        "the rows the upsampled map lacks at each decoder level, deepest first",
        _grade_skip_padding,
    ),
    Exercise(
        "10.3",
        "SoftDiceLoss",
        "the soft Dice loss as a tm.Function: per image, then the mean; and its backward",
        _grade_soft_dice_loss,
    ),
    Exercise(
        "10.4",
        "iou_per_image",
        "the IoU of each image's pair of binary masks, 1.0 where both are empty",
        _grade_iou_per_image,
    ),
)
