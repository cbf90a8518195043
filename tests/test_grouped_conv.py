"""Grouped and depthwise convolution (``groups=g``): against PyTorch for g in {1, 2, C_in},
forward and gradients, for conv2d, conv_transpose2d and their layers; gradcheck; every
backend against the NumPy reference; and the shape errors."""

import numpy as np
import pytest
from helpers import assert_close, matches_torch, normal

import tinymed as tm
import tinymed.functional as F
import tinymed.nn as nn
from tinymed.gradcheck import gradcheck

# (groups, C_in, C_out): plain, two groups, depthwise, depthwise with a channel multiplier.
GROUPS = [(1, 4, 6), (2, 4, 6), (4, 4, 4), (4, 4, 8)]
GEOMETRIES = [dict(stride=1, padding=1), dict(stride=2, padding=(0, 1), dilation=(2, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["same-size", "strided-dilated"])
@pytest.mark.parametrize("groups, c_in, c_out", GROUPS, ids=[f"g{g}-{c}-{o}" for g, c, o in GROUPS])
def test_conv2d_groups_match_torch(torch, groups, c_in, c_out, geometry, dtype):
    rng = np.random.default_rng(groups)
    x, w = normal(rng, (2, c_in, 7, 6), dtype), normal(rng, (c_out, c_in // groups, 3, 2), dtype)
    b = normal(rng, (c_out,), dtype)
    matches_torch(
        torch,
        lambda x, w, b: F.conv2d(x, w, b, groups=groups, **geometry),
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, groups=groups, **geometry),
        x,
        w,
        b,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("groups, c_in, c_out", GROUPS, ids=[f"g{g}-{c}-{o}" for g, c, o in GROUPS])
def test_conv_transpose2d_groups_match_torch(torch, groups, c_in, c_out, dtype):
    rng = np.random.default_rng(groups)
    x, w = normal(rng, (2, c_in, 4, 5), dtype), normal(rng, (c_in, c_out // groups, 3, 3), dtype)
    b = normal(rng, (c_out,), dtype)
    options = dict(stride=2, padding=1, output_padding=1, groups=groups)
    matches_torch(
        torch,
        lambda x, w, b: F.conv_transpose2d(x, w, b, **options),
        lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **options),
        x,
        w,
        b,
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Conv2d(4, 8, 3, padding=1, groups=4),
        lambda nn: nn.Conv2d(4, 6, 3, padding="same", groups=2, padding_mode="reflect", bias=False),
        lambda nn: nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2),
    ],
    ids=["depthwise", "two-groups-reflect", "transposed-two-groups"],
)
def test_grouped_layers_match_torch(torch, build):
    layer_t = build(torch.nn).double()
    layer_m = build(nn).double()
    state = layer_t.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v.shape for k, v in layer_m.state_dict().items()}
    layer_m.load_state_dict({k: v.numpy() for k, v in state.items()})
    x = np.random.default_rng(3).standard_normal((2, 4, 6, 5))
    matches_torch(torch, layer_m, layer_t, x)


def test_grouped_conv_gradchecks():
    rng = np.random.default_rng(0)
    x, w, b = (tm.tensor(rng.standard_normal(s), requires_grad=True) for s in ((1, 4, 4, 3), (6, 2, 2, 2), (6,)))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2), [x, w, b])
    wt = tm.tensor(rng.standard_normal((4, 1, 3, 2)), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b[:4], stride=2, groups=4), [x, wt, b])


@pytest.mark.parametrize("backend", [name for name in tm.backends.available() if name != "numpy"])
def test_grouped_conv_on_every_backend_matches_numpy(backend):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((1, 4, 5, 5), (4, 1, 3, 3), (4,), (1, 4, 5, 5))]

    def run(device):
        x, w, b = (tm.tensor(a, requires_grad=True, device=device) for a in arrays[:3])
        y = F.conv2d(x, w, b, padding=1, groups=4)
        (y * tm.tensor(arrays[3], device=device)).sum().backward()
        return [y.numpy()] + [tm.tensor(t.grad).numpy() for t in (x, w, b)]  # grads: arrays or tensors

    for got, expected in zip(run(backend), run("numpy")):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_unbatched_grouped_conv():
    x, w = tm.randn(4, 5, 5), tm.randn(4, 1, 3, 3)
    assert_close(F.conv2d(x, w, groups=4), F.conv2d(x.unsqueeze(0), w, groups=4).squeeze(0))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: F.conv2d(tm.randn(1, 4, 5, 5), tm.randn(6, 4, 3, 3), groups=2), r"input has 4 channels .* expects 8"),
        (lambda: F.conv2d(tm.randn(1, 4, 5, 5), tm.randn(5, 2, 3, 3), groups=2), r"does not split into groups=2"),
        (lambda: F.conv2d(tm.randn(1, 4, 5, 5), tm.randn(4, 4, 3, 3), groups=0), r"groups must be a positive int"),
        (
            lambda: F.conv_transpose2d(tm.randn(1, 3, 5, 5), tm.randn(3, 2, 3, 3), groups=2),
            r"conv_transpose2d: weight \(3, 2, 3, 3\).* does not split into groups=2",
        ),
        (lambda: nn.Conv2d(4, 6, 3, groups=4), r"must be divisible by groups"),
    ],
    ids=["channels", "out-channels", "zero", "transposed", "layer"],
)
def test_grouped_conv_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
