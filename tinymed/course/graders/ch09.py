"""Graders of chapter 9, Explaining a diagnosis.

9.1 ``gradcam_from(activations, gradients)``: a case small enough to do by hand (the mean,
    not the sum, of the gradients; no rescaling), the ReLU, and a probe network whose
    gradients are known, against ``tinymed.explain.gradcam`` with a different class per image.
9.2 ``occlusion_map(score, images, patch, stride, fill)``: for a linear score, the drop at each
    position is the patch's sum of ``w * (x - fill)``, which ``F.avg_pool2d`` computes; shapes
    for strides that do not divide the image, every channel, the fill, the sign, one call of
    ``score`` per image, and ``images`` left unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed import explain, nn
from tinymed.course.grading import Exercise, Fail, expect, expect_close

__all__ = ["EXERCISES"]


def _array(result: Any, what: str) -> np.ndarray:
    expect(result is not None, f"{what}: your function returned None; return the array")
    try:
        return np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected a NumPy array, got {type(result).__name__}") from None


class _Probe(nn.Module):
    """x -> features (a 1x1 convolution that copies x) -> head (linear on the flattened map).

    The score of class c is ``head.weight[c] . features``, so its gradient with respect to
    the features is ``head.weight[c]`` reshaped to the feature map, whatever x is."""

    def __init__(self, weight: np.ndarray, channels: int) -> None:
        super().__init__()
        self.features = nn.Conv2d(channels, channels, 1, bias=False, dtype=tm.float64)
        self.features.weight = nn.Parameter(tm.tensor(np.eye(channels).reshape(channels, channels, 1, 1)))
        self.head = nn.Linear(weight.shape[1], weight.shape[0], dtype=tm.float64)
        self.head.weight = nn.Parameter(tm.tensor(weight))

    def forward(self, x: tm.Tensor) -> tm.Tensor:
        return self.head(self.features(x).flatten(1))


def _grade_gradcam(ns: Mapping[str, Any]) -> None:
    gradcam_from = ns["gradcam_from"]
    ones = np.ones((1, 3, 2, 2))
    cam = _array(gradcam_from(ones, 2 * ones), "gradcam_from(A = 1, dy/dA = 2)")
    expect(
        cam.shape == (1, 2, 2),
        f"activations and gradients (1, 3, 2, 2) gave shape {cam.shape}, expected (N, h, w) = (1, 2, 2): "
        "weigh each channel by its alpha_k and sum over the channels (axis 1); keep every position",
    )
    if np.allclose(cam, 24.0):
        raise Fail("alpha_k is the MEAN of the gradient over the h*w positions, not the sum")
    if np.allclose(cam, 1.0):
        raise Fail("return the map as computed, sum_k alpha_k A_k after ReLU; do not divide by its maximum")
    expect_close(
        cam,
        np.full((1, 2, 2), 6.0),
        "gradcam_from(A = 1, dy/dA = 2) with 3 channels",
        "alpha_k = mean of dy/dA_k = 2, and sum_k alpha_k A_k = 3 * 2 * 1 = 6 at every position",
    )
    cam = _array(gradcam_from(ones, -ones), "gradcam_from(A = 1, dy/dA = -1)")
    expect(
        bool(np.all(cam >= 0)),
        f"with every gradient -1 your map is {cam.ravel().tolist()}: apply ReLU (np.maximum(map, 0)) to the "
        "weighted sum, so that only evidence FOR the class is kept",
    )

    rng = np.random.default_rng(3)
    channels, h, w = 3, 4, 5
    weight = rng.standard_normal((3, channels * h * w))
    x = rng.standard_normal((2, channels, h, w))
    targets = np.array([0, 2])
    gradients = weight[targets].reshape(2, channels, h, w)  # d score / d features, image by image
    cam = _array(gradcam_from(x, gradients), "gradcam_from on a batch of 2")
    expect(cam.shape == (2, h, w), f"a batch of 2 maps of {h}x{w} gave shape {cam.shape}, expected (2, {h}, {w})")
    expect(
        bool(np.all(cam >= 0)),
        "your map has negative values: ReLU the weighted SUM of the channels (not each channel before summing)",
    )
    want = explain.gradcam(_Probe(weight, channels), tm.tensor(x), target=targets, layer="features")
    peak = cam.reshape(2, -1).max(axis=1)[:, None, None]
    expect_close(
        cam / np.where(peak > 0, peak, 1.0),
        want,
        "your maps scaled to a maximum of 1, against tinymed.explain.gradcam",
        "each image has its own alpha_k: average the gradient over that image's positions (axes 2 and 3) only; "
        "then ReLU(sum_k alpha_k A_k), the ReLU after the sum",
        rtol=1e-6,
        atol=1e-9,
    )


class _LinearScore:
    """score(batch) = sum of w * image over channels and pixels, (B,); counts its calls."""

    def __init__(self, w: np.ndarray) -> None:
        self.w, self.calls = w, 0

    def __call__(self, batch: Any) -> np.ndarray:
        self.calls += 1
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != self.w.shape:
            raise Fail(
                f"score was called with shape {batch.shape}; it takes a batch (B, C, H, W) of images shaped "
                f"like yours, {self.w.shape} (pass image[None] for one image)"
            )
        return (batch * self.w).sum(axis=(1, 2, 3))


def _expected_drops(images: np.ndarray, w: np.ndarray, patch: int, stride: int, fill: float) -> np.ndarray:
    """For a linear score the drop at a position is the patch's sum of w * (x - fill): an average
    pool of that product over the patch, times the patch's area, summed over the channels."""
    pooled = F.avg_pool2d(tm.tensor(w * (images - fill)), patch, stride=stride).numpy()
    return pooled.sum(axis=1) * patch * patch


def _grade_occlusion(ns: Mapping[str, Any]) -> None:
    occlusion_map = ns["occlusion_map"]
    rng = np.random.default_rng(4)
    images = rng.random((2, 2, 10, 7))
    kept = images.copy()
    w = rng.standard_normal(images.shape[1:])
    score = _LinearScore(w)
    drops = _array(occlusion_map(score, images, 4, 3, fill=0.0), "occlusion_map on (2, 2, 10, 7), patch 4, stride 3")
    expect(
        bool(np.array_equal(images, kept)),
        "your function changed `images`: occlude a copy of each image (image.copy(), or np.repeat into a new array)",
    )
    expect(
        drops.shape == (2, 3, 2),
        f"images (2, 2, 10, 7), patch 4, stride 3 gave shape {drops.shape}, expected (2, 3, 2): the top-left corners "
        "run 0, stride, 2*stride, ... up to H - patch, so there are (H - patch) // stride + 1 rows (and the same for "
        "the columns, with W)",
    )
    want = _expected_drops(images, w, 4, 3, 0.0)
    if np.allclose(drops, -want):
        raise Fail("your map has the wrong sign: the drop is score(image) - score(occluded image)")
    one_channel = _expected_drops(images[:, :1], w[:1], 4, 3, 0.0)
    if np.allclose(drops, one_channel):
        raise Fail(
            "you occluded only the first channel: set the square to fill in every channel, [:, top:..., left:...]"
        )
    expect_close(
        drops,
        want,
        "the drops for a score linear in the pixels, fill 0",
        "the square at grid cell (i, j) covers rows i*stride .. i*stride + patch - 1 and the same columns",
    )
    expect(
        score.calls <= 2 * len(images),
        f"score was called {score.calls} times for {len(images)} images: put every occluded copy of an image into "
        "one batch (N_positions, C, H, W) and call score once on it (and once on the image itself)",
    )
    drops = _array(occlusion_map(_LinearScore(w), images, 3, 2, fill=0.5), "occlusion_map with fill = 0.5")
    if drops.shape == (2, 4, 3) and np.allclose(drops, _expected_drops(images, w, 3, 2, 0.0)):
        raise Fail("with fill = 0.5 your squares still hold 0: set them to `fill`")
    expect_close(drops, _expected_drops(images, w, 3, 2, 0.5), "the drops for patch 3, stride 2, fill 0.5")


EXERCISES = (
    Exercise(
        "9.1",
        "gradcam_from",
        "Grad-CAM maps ReLU(sum_k alpha_k A_k), alpha_k the mean gradient over the positions, for a batch",
        _grade_gradcam,
    ),
    Exercise(
        "9.2",
        "occlusion_map",
        "the drop of score(image) as a patch of fill covers each position, one score call per image",
        _grade_occlusion,
    ),
)
