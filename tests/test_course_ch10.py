"""Chapter 10's graders fail for the right reason: each typical wrong answer gets the hint that
names its mistake. (That the chapter runs, and that its graders pass on the solutions and fail
on the released stubs, is tests/test_course.py's job, for every chapter.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import graded_with

pytest.importorskip("jupytext", reason="the course tests need the course extra (jupytext)")

_MEAN = "        return (1 - (2 * self.overlap + eps) / (self.total + eps)).mean()"
_GRAD = "        return grad_output * grad_p / self.g.shape[0], None"
_SUMS = "overlap = (truth & predicted).sum(axis=(1, 2))\n    union = (truth | predicted).sum(axis=(1, 2))"
_IOU = "    return np.where(union == 0, 1.0, overlap / np.maximum(union, 1))"


@pytest.mark.parametrize(
    "exercise, old, new, hint",
    [
        ("10.1", " + bias[None, :, None, None]", "", "but for the bias"),
        ("10.1", '"ncij,coab->noiajb"', '"ncij,coba->noiajb"', "blocks are transposed"),
        ("10.1", '"ncij,coab->noiajb"', '"ncij,coab->noaibj"', "order the axes (n, o, i, a, j, b)"),
        ("10.2", "sizes.append(sizes[-1] // 2)", "sizes.append(-(-sizes[-1] // 2))", "rounds down"),
        ("10.2", "for k in reversed(range(depth))]", "for k in range(depth)]", "wrong order"),
        ("10.3", _MEAN, _MEAN.replace(".mean()", ".sum()"), "sum of the images' losses"),
        ("10.3", "axes = tuple(range(1, p.ndim))", "axes = tuple(range(p.ndim))", "summed over the whole batch"),
        ("10.3", "axes = tuple(range(1, p.ndim))", "axes = (1, 2, 3)", "every axis but the first"),
        ("10.3", _GRAD, _GRAD.replace(" / self.g.shape[0]", ""), "backward disagrees with finite differences"),
        ("10.3", _GRAD, _GRAD.removesuffix(", None"), "(grad_p, None)"),
        ("10.4", _IOU, "    return overlap / union", "the convention is 1.0"),
        ("10.4", _IOU, "    return np.where(union == 0, 1.0, overlap / union)", "np.maximum(union, 1)"),
        (
            "10.4",
            "    union = (truth | predicted).sum(axis=(1, 2))",
            "    union = truth.sum(axis=(1, 2)) + predicted.sum(axis=(1, 2))",
            "counts the overlap twice",
        ),
        ("10.4", _SUMS, _SUMS.replace("sum(axis=(1, 2))", "sum()"), "one IoU per image"),
    ],
    ids=[
        "upsample-no-bias",
        "upsample-kernel-transposed",
        "upsample-blocks-interleaved",
        "padding-rounds-up",
        "padding-top-first",
        "dice-sum",
        "dice-pooled-over-batch",
        "dice-fixed-axes",
        "dice-backward-no-mean",
        "dice-backward-one-gradient",
        "iou-nan-on-empty",
        "iou-division-warning",
        "iou-union-as-sum",
        "iou-whole-batch",
    ],
)
def test_chapter10_graders_hint_at_the_mistake(tmp_path: Path, exercise: str, old: str, new: str, hint: str) -> None:
    result = graded_with(tmp_path, 10, exercise, old, new)
    assert not result.passed and hint in result.message, result.message
