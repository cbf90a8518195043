"""F.interpolate and the Upsample layers against PyTorch (forward and gradients, every mode,
sizes and scale factors that up- and downsample, align_corners both ways), gradcheck, the
resize in tinymed.explain, and the errors."""

import numpy as np
import pytest
from helpers import matches_torch, normal

import tinymed as tm
import tinymed.functional as F
import tinymed.nn as nn
from tinymed import explain
from tinymed.gradcheck import gradcheck

# (id, input shape, interpolate's keyword arguments)
CASES = [
    ("nearest-x2", (2, 3, 4, 5), dict(scale_factor=2)),
    ("nearest-size-down", (2, 3, 7, 9), dict(size=(3, 4))),
    ("nearest-size-up-odd", (1, 2, 3, 5), dict(size=(7, 8))),
    ("nearest-same-size", (1, 2, 3, 5), dict(size=(3, 5))),
    ("nearest-scale-1.5", (1, 2, 5, 4), dict(scale_factor=(1.5, 2.3))),
    ("nearest-scale-kept-size", (1, 1, 3, 3), dict(scale_factor=1.2)),
    ("nearest-exact", (1, 2, 5, 7), dict(size=(8, 3), mode="nearest-exact")),
    ("nearest-1d", (2, 3, 5), dict(scale_factor=1.5)),
    ("linear-1d", (2, 3, 5), dict(size=8, mode="linear")),
    ("linear-1d-corners", (2, 3, 5), dict(size=3, mode="linear", align_corners=True)),
    ("bilinear-x2", (2, 3, 4, 5), dict(scale_factor=2, mode="bilinear")),
    ("bilinear-scale-1.5", (1, 2, 5, 4), dict(scale_factor=1.5, mode="bilinear")),
    ("bilinear-recompute", (1, 2, 5, 4), dict(scale_factor=1.5, mode="bilinear", recompute_scale_factor=True)),
    ("bilinear-down", (2, 2, 9, 7), dict(size=(4, 3), mode="bilinear")),
    ("bilinear-corners-up", (2, 2, 4, 5), dict(size=(7, 9), mode="bilinear", align_corners=True)),
    ("bilinear-corners-down", (1, 2, 9, 7), dict(size=(4, 1), mode="bilinear", align_corners=True)),
    ("bilinear-false-explicit", (1, 1, 3, 3), dict(size=(5, 6), mode="bilinear", align_corners=False)),
    ("area", (2, 3, 7, 9), dict(size=(3, 4), mode="area")),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape, options", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_interpolate_matches_torch(torch, shape, options, dtype):
    x = normal(np.random.default_rng(0), shape, dtype)
    matches_torch(
        torch, lambda x: F.interpolate(x, **options), lambda x: torch.nn.functional.interpolate(x, **options), x
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Upsample(scale_factor=2),
        lambda nn: nn.Upsample(size=(5, 7), mode="bilinear"),
        lambda nn: nn.Upsample(scale_factor=(1.5, 2.0), mode="bilinear", align_corners=True),
        lambda nn: nn.UpsamplingNearest2d(size=6),
        lambda nn: nn.UpsamplingBilinear2d(scale_factor=2),
    ],
    ids=["nearest", "bilinear-size", "bilinear-corners", "nearest-2d", "bilinear-2d"],
)
def test_upsample_layers_match_torch(torch, build):
    layer_t, layer_m = build(torch.nn), build(nn)
    assert repr(layer_m) == repr(layer_t)
    matches_torch(torch, layer_m, layer_t, normal(np.random.default_rng(1), (2, 3, 4, 5)))


@pytest.mark.parametrize(
    "options", [c[2] for c in CASES if len(c[1]) == 4], ids=[c[0] for c in CASES if len(c[1]) == 4]
)
def test_interpolate_gradchecks(options):
    x = tm.tensor(np.random.default_rng(2).standard_normal((1, 2, 5, 4)), requires_grad=True)
    size = options.get("size")
    if size is not None:  # keep the finite differences cheap
        options = {**options, "size": tuple(min(s, 6) for s in size)}
    assert gradcheck(lambda x: F.interpolate(x, **options), [x])


def test_explain_resize_is_the_bilinear_interpolation():
    maps = np.random.default_rng(3).random((2, 7, 7))
    expected = F.interpolate(tm.tensor(maps[:, None]), size=(28, 28), mode="bilinear")[:, 0].numpy()
    np.testing.assert_array_equal(explain.resize_bilinear(maps, (28, 28)), expected)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: F.interpolate(x), r"interpolate: give exactly one of size or scale_factor"),
        (lambda x: F.interpolate(x, size=3, scale_factor=2), r"give exactly one of size or scale_factor"),
        (lambda x: F.interpolate(x, size=(2, 3, 4)), r"size \(2, 3, 4\) must have one entry per spatial dim"),
        (lambda x: F.interpolate(x, scale_factor=0.1), r"makes an empty output from spatial size \(4, 5\)"),
        (lambda x: F.interpolate(x, scale_factor=-2), r"scale_factor must be positive"),
        (lambda x: F.interpolate(x, size=2, mode="bicubic"), r"mode must be one of"),
        (lambda x: F.interpolate(x, size=2, mode="linear"), r"mode 'linear' does not apply to a 4-D input"),
        (lambda x: F.interpolate(x[0, 0], size=2), r"input must be 3-D \(N, C, L\) or 4-D"),
        (lambda x: F.interpolate(x, size=2, align_corners=True), r"align_corners can only be set with the modes"),
        (lambda x: F.interpolate(x, size=2, antialias=True), r"only antialias=False"),
    ],
    ids=["none", "both", "dims", "empty", "negative", "mode", "mode-dims", "input-dims", "corners", "antialias"],
)
def test_interpolate_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(tm.randn(1, 2, 4, 5))
