"""tinymed.functional: every op against PyTorch (forward and gradients, float32 and float64),
against finite differences (gradcheck), at extreme logits, and on bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import Fixed, matches_torch, normal, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conv_transpose_geometries, dtypes, pairs, rngs, window_geometries

import tinymed as tm
import tinymed.functional as F
from tinymed.gradcheck import gradcheck

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


# =========================================================================== convolution


@st.composite
def conv_cases(draw, transposed: bool = False):
    """A convolution's (or transposed convolution's) geometry, batch, channels and bias."""
    return dict(
        geometry=draw(conv_transpose_geometries() if transposed else window_geometries()),
        n=draw(st.integers(1, 2)),
        c=draw(st.integers(1, 3)),
        o=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batched=draw(st.booleans()),
        dtype=draw(dtypes),
        rng=draw(rngs),
    )


def conv_arrays(case, weight_channels):
    """Input, weight and optional bias for a drawn case; the weight's first two dims are
    ``weight_channels`` (conv2d: (O, C); conv_transpose2d: (C, O))."""
    rng, dtype, geometry = case["rng"], case["dtype"], case["geometry"]
    shape = (case["n"], case["c"], *geometry.size) if case["batched"] else (case["c"], *geometry.size)
    bias = normal(rng, (case["o"],), dtype) if case["bias"] else None
    return normal(rng, shape, dtype), normal(rng, (*weight_channels, *geometry.kernel), dtype), bias


@SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_torch(torch, case):
    x, w, b = conv_arrays(case, (case["o"], case["c"]))
    geometry = case["geometry"].stride, case["geometry"].padding, case["geometry"].dilation
    matches_torch(
        torch,
        lambda x, w, b: F.conv2d(x, w, b, *geometry),
        lambda x, w, b: torch.nn.functional.conv2d(x, w, b, *geometry),
        x,
        w,
        b,
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), (2, 1))])
def test_conv2d_padding_same_and_valid_match_torch(torch, kernel, dilation):
    rng = np.random.default_rng(1)
    x, w = normal(rng, (2, 3, 6, 7), np.float64), normal(rng, (4, 3, *kernel), np.float64)
    for padding in ("same", "valid"):
        out, _ = matches_torch(
            torch,
            lambda x, w, padding=padding: F.conv2d(x, w, padding=padding, dilation=dilation),
            lambda x, w, padding=padding: torch.nn.functional.conv2d(x, w, padding=padding, dilation=dilation),
            x,
            w,
        )
        assert padding == "valid" or out.shape[2:] == x.shape[2:]


@SETTINGS
@given(case=conv_cases(transposed=True))
def test_conv_transpose2d_matches_torch(torch, case):
    x, w, b = conv_arrays(case, (case["c"], case["o"]))
    g = case["geometry"]
    args = g.stride, g.padding, g.output_padding, 1, g.dilation
    matches_torch(
        torch,
        lambda x, w, b: F.conv_transpose2d(x, w, b, *args),
        lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, *args),
        x,
        w,
        b,
    )


# =========================================================================== pooling


@st.composite
def pool_cases(draw, dilated: bool):
    geometry = draw(window_geometries(max_dilation=2 if dilated else 1, pooling=True, default_stride=True))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *geometry.size)
    return dict(
        shape=shape if draw(st.booleans()) else shape[1:],
        args=(geometry.kernel, geometry.stride, geometry.padding, geometry.dilation),
        dtype=draw(dtypes),
        rng=draw(rngs),
    )


@SETTINGS
@given(case=pool_cases(dilated=True))
def test_max_pool2d_matches_torch(torch, case):
    x = normal(case["rng"], case["shape"], case["dtype"])
    args = case["args"]
    matches_torch(torch, lambda x: F.max_pool2d(x, *args), lambda x: torch.nn.functional.max_pool2d(x, *args), x)
    (_, indices), (_, expected) = (
        F.max_pool2d(tm.tensor(x), *args, return_indices=True),
        torch.nn.functional.max_pool2d(torch.tensor(x), *args, return_indices=True),
    )
    assert indices.dtype == tm.int64
    np.testing.assert_array_equal(indices.numpy(), expected.numpy())


@SETTINGS
@given(case=pool_cases(dilated=False), count_include_pad=st.booleans(), divisor_override=st.sampled_from([None, 1, 3]))
def test_avg_pool2d_matches_torch(torch, case, count_include_pad, divisor_override):
    x = normal(case["rng"], case["shape"], case["dtype"])
    kernel, stride, padding, _ = case["args"]
    args = kernel, stride, padding, False, count_include_pad, divisor_override
    matches_torch(torch, lambda x: F.avg_pool2d(x, *args), lambda x: torch.nn.functional.avg_pool2d(x, *args), x)


@SETTINGS
@given(
    size=pairs(1, 9),
    output_size=st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 10), st.one_of(st.none(), st.integers(1, 4)))),
    dtype=dtypes,
    batched=st.booleans(),
)
def test_adaptive_avg_pool2d_matches_torch(torch, size, output_size, dtype, batched):
    x = normal(np.random.default_rng(3), ((2, 3) if batched else (3,)) + size, dtype)
    matches_torch(
        torch,
        lambda x: F.adaptive_avg_pool2d(x, output_size),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, output_size),
        x,
    )


# =========================================================================== affine


@SETTINGS
@given(leading=st.lists(st.integers(1, 3), max_size=3), features=pairs(1, 5), bias=st.booleans(), dtype=dtypes)
def test_linear_matches_torch(torch, leading, features, bias, dtype):
    rng = np.random.default_rng(len(leading))
    (n_in, n_out) = features
    x, w = normal(rng, (*leading, n_in), dtype), normal(rng, (n_out, n_in), dtype)
    b = normal(rng, (n_out,), dtype) if bias else None
    matches_torch(torch, F.linear, torch.nn.functional.linear, x, w, b)


# =========================================================================== attention


@st.composite
def attention_cases(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))

    def leading():  # a shape that broadcasts to ``batch``: some dims dropped or set to 1
        dims = batch[draw(st.integers(0, len(batch))) :]
        return tuple(1 if draw(st.booleans()) else n for n in dims)

    lq, lk, e, ev = (draw(st.integers(1, 4)) for _ in range(4))
    # PyTorch needs the query to carry the whole batch shape; keys, values and mask broadcast.
    return dict(
        q=(*batch, lq, e),
        k=(*leading(), lk, e),
        v=(*leading(), lk, ev),
        mask_shape=(*leading(), lq, lk),
        mask=draw(st.sampled_from(["none", "bool", "float", "float needing grad", "causal"])),
        scale=draw(st.one_of(st.none(), st.floats(0.1, 2.0))),
        dtype=draw(dtypes),
        rng=draw(rngs),
    )


@SETTINGS
@given(case=attention_cases())
def test_scaled_dot_product_attention_matches_torch(torch, case):
    rng, dtype, kind = case["rng"], case["dtype"], case["mask"]
    q, k, v = (normal(rng, case[name], dtype) for name in "qkv")
    keep = rng.random(case["mask_shape"]) > 0.3  # some rows lose every key: they must give 0
    mask = None
    if kind == "bool":
        mask = Fixed(keep)
    elif kind.startswith("float"):
        additive = np.where(keep, normal(rng, case["mask_shape"], dtype), -np.inf).astype(dtype)
        mask = additive if kind == "float needing grad" else Fixed(additive)
    causal, scale = kind == "causal", case["scale"]
    out, _ = matches_torch(
        torch,
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m, is_causal=causal, scale=scale),
        lambda q, k, v, m: torch.nn.functional.scaled_dot_product_attention(q, k, v, m, is_causal=causal, scale=scale),
        q,
        k,
        v,
        mask,
    )
    assert np.all(np.isfinite(out.numpy()))


def test_scaled_dot_product_attention_grouped_query_heads_match_torch(torch):
    rng = np.random.default_rng(4)
    q, k, v = (
        normal(rng, (2, 4, 3, 5), np.float64),
        normal(rng, (2, 2, 6, 5), np.float64),
        normal(rng, (2, 2, 6, 3), np.float64),
    )
    matches_torch(
        torch,
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True),
        q,
        k,
        v,
    )


def test_scaled_dot_product_attention_dropout_uses_tinymed_generator():
    rng = np.random.default_rng(5)
    q, k, v = (tm.tensor(normal(rng, (2, 3, 4), np.float64), requires_grad=True) for _ in range(3))
    tm.manual_seed(7)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    tm.manual_seed(7)
    scores = q.numpy() @ k.numpy().transpose(0, 2, 1) / 2.0
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    kept = tm.random.generator().random(p.shape) >= 0.4
    np.testing.assert_allclose(out.numpy(), (p * kept / 0.6) @ v.numpy(), rtol=1e-12)
    assert F.scaled_dot_product_attention(q, k, v, dropout_p=1.0).numpy().max() == 0


# =========================================================================== activations

ACTIVATIONS = {  # name: (tinymed, PyTorch given the torch module)
    "relu": (F.relu, lambda torch, x: torch.nn.functional.relu(x)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda torch, x: torch.nn.functional.leaky_relu(x, 0.2)),
    "leaky_relu default": (F.leaky_relu, lambda torch, x: torch.nn.functional.leaky_relu(x)),
    "sigmoid": (F.sigmoid, lambda torch, x: torch.sigmoid(x)),
    "tanh": (F.tanh, lambda torch, x: torch.tanh(x)),
    "gelu": (F.gelu, lambda torch, x: torch.nn.functional.gelu(x)),
    "gelu tanh": (
        lambda x: F.gelu(x, approximate="tanh"),
        lambda torch, x: torch.nn.functional.gelu(x, approximate="tanh"),
    ),
    "softmax dim 1": (lambda x: F.softmax(x, 1), lambda torch, x: torch.softmax(x, 1)),
    "softmax dim -1": (lambda x: F.softmax(x, dim=-1), lambda torch, x: torch.softmax(x, dim=-1)),
    "softmax in float64": (
        lambda x: F.softmax(x, 1, dtype=tm.float64),
        lambda torch, x: torch.softmax(x, 1, dtype=torch.float64),
    ),
    "log_softmax dim 0": (lambda x: F.log_softmax(x, 0), lambda torch, x: torch.log_softmax(x, 0)),
    "log_softmax dim -1": (lambda x: F.log_softmax(x, -1), lambda torch, x: torch.log_softmax(x, -1)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch(torch, name, dtype):
    ours, theirs = ACTIVATIONS[name]
    x = normal(np.random.default_rng(6), (3, 4, 5), dtype) * 3
    x[0, 0, :3] = (0.0, -6.0, 6.0)  # the kink of relu and the tails
    matches_torch(torch, ours, lambda x: theirs(torch, x), x)


def test_tensor_methods_use_the_functional_ops():
    x = tm.tensor([[-1.0, 0.5, 2.0]])
    np.testing.assert_allclose(x.sigmoid().numpy(), F.sigmoid(x).numpy())
    np.testing.assert_allclose(x.relu().numpy(), [[0.0, 0.5, 2.0]])
    np.testing.assert_allclose(x.softmax(-1).numpy().sum(), 1.0, rtol=1e-6)


def test_gelu_keeps_its_digits_in_both_tails():
    # x Phi(x) for x = -8 is about -5e-15: 1 + erf(x / sqrt 2) would cancel to nothing.
    x = np.array([-8.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 8.0])
    expected = x * np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    np.testing.assert_allclose(F.gelu(tm.tensor(x)).numpy(), expected, rtol=1e-13, atol=0)


# =========================================================================== dropout


def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    tm.manual_seed(0)
    x = tm.ones(200, 100, requires_grad=True)
    y = F.dropout(x, p=0.3)
    kept = y.numpy() != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad != 0, kept)  # the gradient goes through the same mask
    tm.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(x, p=0.3).numpy(), y.numpy())  # reproducible
    assert F.dropout(x, p=0.3, training=False) is x
    assert F.dropout(x, p=1.0).numpy().max() == 0


# =========================================================================== normalisation


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_matches_torch_and_updates_running_statistics(torch, shape, training, affine, dtype):
    rng = np.random.default_rng(8)
    x = normal(rng, shape, dtype) * 2 + 1
    w, b = (normal(rng, (3,), dtype), normal(rng, (3,), dtype)) if affine else (None, None)
    stats = rng.standard_normal(3).astype(dtype), rng.random(3).astype(dtype) + 0.5
    ours_stats = [tm.tensor(s) for s in stats]
    theirs_stats = [torch.tensor(s) for s in stats]
    matches_torch(
        torch,
        lambda x, w, b: F.batch_norm(x, *ours_stats, w, b, training, 0.2, 1e-3),
        lambda x, w, b: torch.nn.functional.batch_norm(x, *theirs_stats, w, b, training, 0.2, 1e-3),
        x,
        w,
        b,
    )
    for mine, theirs in zip(ours_stats, theirs_stats):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), **tolerance(dtype))


@pytest.mark.parametrize("normalized_shape, affine", [(6, True), ((5, 6), True), ([6], False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_matches_torch(torch, normalized_shape, affine, dtype):
    rng = np.random.default_rng(9)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = normal(rng, (2, 5, 6), dtype) * 3 + 2
    w, b = (normal(rng, shape, dtype), normal(rng, shape, dtype)) if affine else (None, None)
    matches_torch(
        torch,
        lambda x, w, b: F.layer_norm(x, normalized_shape, w, b),
        lambda x, w, b: torch.nn.functional.layer_norm(x, shape, w, b),  # PyTorch's takes no plain int
        x,
        w,
        b,
    )


# =========================================================================== pad and one_hot


@pytest.mark.parametrize(
    "shape, widths, mode, value",
    [
        ((2, 3, 4, 5), (1, 2), "constant", None),
        ((2, 3, 4, 5), (1, 2, 0, 3), "constant", 1.5),
        ((2, 3, 4, 5), (-1, 2, 1, -2), "constant", None),
        ((2, 3, 4), (1, 1, 1, 1, 1, 1), "constant", -2.0),
        ((2, 3, 4, 5), (1, 2, 3, 1), "reflect", None),
        ((3, 4, 5), (2, 0), "reflect", None),
        ((2, 3, 4, 5), (2, 1, 0, 3), "replicate", None),
        ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 2), "replicate", None),
        ((2, 3, 4, 5), (2, 5, 1, 4), "circular", None),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pad_matches_torch(torch, shape, widths, mode, value, dtype):
    x = normal(np.random.default_rng(10), shape, dtype)
    matches_torch(
        torch, lambda x: F.pad(x, widths, mode, value), lambda x: torch.nn.functional.pad(x, widths, mode, value), x
    )


def test_one_hot_matches_torch(torch):
    labels = np.array([[0, 3], [2, 1]])
    for num_classes in (-1, 6):
        out = F.one_hot(tm.tensor(labels), num_classes)
        expected = torch.nn.functional.one_hot(torch.tensor(labels), num_classes)
        assert out.dtype == tm.int64
        np.testing.assert_array_equal(out.numpy(), expected.numpy())


# =========================================================================== losses

REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


@st.composite
def classification_cases(draw):
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return dict(
        n=n,
        c=c,
        extra=extra,
        unbatched=draw(st.booleans()) and not extra,
        weight=draw(st.booleans()),
        ignore_index=draw(st.sampled_from([-100, 1])),
        reduction=draw(REDUCTIONS),
        dtype=draw(dtypes),
        rng=draw(rngs),
    )


def class_indices(case):
    """logits (N, C, ...) and integer targets (N, ...), about a fifth of them ignore_index."""
    rng = case["rng"]
    logits = normal(rng, (case["n"], case["c"], *case["extra"]), case["dtype"]) * 2
    target = rng.integers(0, case["c"], (case["n"], *case["extra"]))
    target[rng.random(target.shape) < 0.2] = case["ignore_index"]
    if case["unbatched"]:
        logits, target = logits[0], np.asarray(target[0])
    weight = rng.random(case["c"]).astype(case["dtype"]) + 0.5 if case["weight"] else None
    return logits, target, weight


@SETTINGS
@given(case=classification_cases(), label_smoothing=st.sampled_from([0.0, 0.25]))
def test_cross_entropy_with_class_indices_matches_torch(torch, case, label_smoothing):
    logits, target, weight = class_indices(case)
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"], label_smoothing=label_smoothing)
    weight = None if weight is None else Fixed(weight)
    matches_torch(
        torch,
        lambda x, t, w: F.cross_entropy(x, t, w, **options),
        lambda x, t, w: torch.nn.functional.cross_entropy(x, t, w, **options),
        logits,
        target,
        weight,
    )


@SETTINGS
@given(case=classification_cases(), label_smoothing=st.sampled_from([0.0, 0.25]))
def test_cross_entropy_with_class_probabilities_matches_torch(torch, case, label_smoothing):
    logits, _, weight = class_indices(case)
    probabilities = case["rng"].dirichlet(
        np.ones(case["c"]), logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ()
    )
    target = np.moveaxis(probabilities, -1, 1 if logits.ndim > 1 else 0).astype(case["dtype"])
    options = dict(reduction=case["reduction"], label_smoothing=label_smoothing)
    weight = None if weight is None else Fixed(weight)
    matches_torch(
        torch,
        lambda x, t, w: F.cross_entropy(x, t, w, **options),
        lambda x, t, w: torch.nn.functional.cross_entropy(x, t, w, **options),
        logits,
        target,
        weight,
    )


@SETTINGS
@given(case=classification_cases())
def test_nll_loss_matches_torch(torch, case):
    log_p, target, weight = class_indices(case)
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"])
    weight = None if weight is None else Fixed(weight)
    matches_torch(
        torch,
        lambda x, t, w: F.nll_loss(x, t, w, **options),
        lambda x, t, w: torch.nn.functional.nll_loss(x, t, w, **options),
        log_p,
        target,
        weight,
    )


@st.composite
def binary_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    return dict(
        shape=shape,
        weight=draw(st.sampled_from(["none", "full", "last dim"])),
        pos_weight=draw(st.booleans()),
        reduction=draw(REDUCTIONS),
        dtype=draw(dtypes),
        rng=draw(rngs),
    )


def binary_weights(case, name):
    kind = case[name] if name == "weight" else ("last dim" if case[name] else "none")
    if kind == "none":
        return None
    return Fixed(
        case["rng"].random(case["shape"] if kind == "full" else case["shape"][-1:]).astype(case["dtype"]) + 0.5
    )


@SETTINGS
@given(case=binary_cases())
def test_binary_cross_entropy_matches_torch(torch, case):
    rng, dtype = case["rng"], case["dtype"]
    x = (rng.random(case["shape"]) * 0.98 + 0.01).astype(dtype)
    y = rng.random(case["shape"]).astype(dtype)
    weight, reduction = binary_weights(case, "weight"), case["reduction"]
    matches_torch(
        torch,
        lambda x, y, w: F.binary_cross_entropy(x, y, w, reduction=reduction),
        lambda x, y, w: torch.nn.functional.binary_cross_entropy(x, y, w, reduction=reduction),
        x,
        y,
        weight,
    )


def test_binary_cross_entropy_clamps_its_logs_at_minus_100(torch):
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3])
    # (PyTorch's gradient for the target is inf here; tinymed's is the clamped forward's, finite)
    out, _ = matches_torch(
        torch,
        lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
        lambda x, y: torch.nn.functional.binary_cross_entropy(x, y, reduction="none"),
        x,
        Fixed(y),
    )
    np.testing.assert_allclose(out.numpy()[:4], [100, 100, 0, 0])
    y_grad = tm.tensor(y, requires_grad=True)
    F.binary_cross_entropy(tm.tensor(x), y_grad, reduction="sum").backward()
    np.testing.assert_allclose(y_grad.grad, [100, -100, 100, -100, 0], atol=1e-12)  # log(1 - x) - log x


@SETTINGS
@given(case=binary_cases())
def test_binary_cross_entropy_with_logits_matches_torch(torch, case):
    rng, dtype = case["rng"], case["dtype"]
    x = normal(rng, case["shape"], dtype) * 3
    y = rng.random(case["shape"]).astype(dtype)
    weight, pos_weight, reduction = (
        binary_weights(case, "weight"),
        binary_weights(case, "pos_weight"),
        case["reduction"],
    )
    matches_torch(
        torch,
        lambda x, y, w, p: F.binary_cross_entropy_with_logits(x, y, w, reduction=reduction, pos_weight=p),
        lambda x, y, w, p: torch.nn.functional.binary_cross_entropy_with_logits(
            x, y, w, reduction=reduction, pos_weight=p
        ),
        x,
        y,
        weight,
        pos_weight,
    )


@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regression_losses_match_torch(torch, loss, reduction, weighted, dtype):
    rng = np.random.default_rng(12)
    x, y = normal(rng, (3, 4), dtype), normal(rng, (3, 4), dtype)
    weight = Fixed(rng.random((3, 4)).astype(dtype)) if weighted else None
    matches_torch(
        torch,
        lambda x, y, w: getattr(F, loss)(x, y, reduction=reduction, weight=w),
        lambda x, y, w: getattr(torch.nn.functional, loss)(x, y, reduction=reduction, weight=w),
        x,
        y,
        weight,
    )


def test_regression_loss_warns_when_target_broadcasts(torch):
    x, y = np.arange(6.0).reshape(2, 3), np.array([1.0, 2.0, 3.0])
    with pytest.warns(
        UserWarning, match=r"mse_loss: using a target size \(\(3,\)\) that is different to the input size \(\(2, 3\)\)"
    ):
        matches_torch(torch, F.mse_loss, torch.nn.functional.mse_loss, x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_are_finite_for_logits_of_magnitude_1e4(torch, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    indices = np.array([1, 0, 2])
    probabilities = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=dtype)
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]], dtype=dtype)
    cases = [
        (
            lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
            lambda x, t: torch.nn.functional.cross_entropy(x, t, label_smoothing=0.1),
            indices,
        ),
        (F.cross_entropy, torch.nn.functional.cross_entropy, probabilities),
        (F.binary_cross_entropy_with_logits, torch.nn.functional.binary_cross_entropy_with_logits, labels),
    ]
    for ours, theirs, target in cases:
        x = tm.tensor(logits, requires_grad=True)
        out, _ = matches_torch(torch, ours, theirs, logits, Fixed(target))
        assert np.isfinite(out.item())
        ours(x, tm.tensor(target)).backward()
        assert np.all(np.isfinite(x.grad.numpy()))


# =========================================================================== gradcheck (float64, finite differences)


def _f64(rng, *shape, positive=False):
    data = rng.random(shape) * 0.8 + 0.1 if positive else rng.standard_normal(shape)
    return tm.tensor(data, dtype=tm.float64, requires_grad=True)


def _gradcheck_cases():
    rng = np.random.default_rng(11)
    x4, w = _f64(rng, 1, 2, 5, 5), _f64(rng, 2, 2, 3, 2)
    b2 = _f64(rng, 2)
    q, k, v = _f64(rng, 2, 3, 4), _f64(rng, 2, 5, 4), _f64(rng, 2, 5, 3)
    mask = tm.tensor(rng.random((3, 5)) > 0.3)
    float_mask = _f64(rng, 3, 5)
    grid = tm.tensor(rng.permutation(40).reshape(1, 2, 4, 5) / 10.0, requires_grad=True)  # no ties for max
    m = _f64(rng, 4, 3, 2)
    labels, class_weight = tm.tensor(rng.integers(0, 2, (1, 5, 5))), tm.tensor(rng.random(2) + 0.5, dtype=tm.float64)
    return {
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2)), (x4, w, b2)),
        "conv_transpose2d": (
            lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
            (_f64(rng, 1, 2, 3, 3), w, b2),
        ),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2, stride=1, padding=1), (grid,)),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False), (x4,)),
        "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (x4,)),
        "linear": (F.linear, (_f64(rng, 2, 3, 4), _f64(rng, 3, 4), _f64(rng, 3))),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, tm.tensor(mask.numpy())), (q, k, v)),
        "attention causal": (
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
            (q, k, v),
        ),
        "attention float mask": (lambda q, m: F.scaled_dot_product_attention(q, q, q, m[:, :3]), (q, float_mask)),
        "attention dropout": (
            lambda q: (tm.manual_seed(0), F.scaled_dot_product_attention(q, q, q, dropout_p=0.3))[1],
            (q,),
        ),
        "relu": (F.relu, (m,)),
        "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), (m,)),
        "sigmoid": (F.sigmoid, (m,)),
        "tanh": (F.tanh, (m,)),
        "gelu": (F.gelu, (m,)),
        "gelu tanh": (lambda x: F.gelu(x, "tanh"), (m,)),
        "softmax": (lambda x: F.softmax(x, 1), (m,)),
        "log_softmax": (lambda x: F.log_softmax(x, -1), (m,)),
        "dropout": (lambda x: (tm.manual_seed(1), F.dropout(x, 0.5))[1], (m,)),
        "batch_norm training": (
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            (x4, b2, _f64(rng, 2)),
        ),
        "batch_norm eval": (
            lambda x, w, b: F.batch_norm(x, tm.zeros(3, dtype=tm.float64), tm.ones(3, dtype=tm.float64) * 2, w, b),
            (m, _f64(rng, 3), _f64(rng, 3)),
        ),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, (3, 2), w, b), (m, _f64(rng, 3, 2), _f64(rng, 3, 2))),
        "pad constant": (lambda x: F.pad(x, (1, -1, 2, 0), value=0.5), (m,)),
        "pad reflect": (lambda x: F.pad(x, (1, 1), mode="reflect"), (m,)),
        "pad replicate": (lambda x: F.pad(x, (2, 1, 0, 1), mode="replicate"), (m,)),
        "pad circular": (lambda x: F.pad(x, (2, 1, 3, 0), mode="circular"), (m,)),
        "cross_entropy": (
            lambda x: F.cross_entropy(x, labels, class_weight, ignore_index=0, label_smoothing=0.2),
            (x4,),
        ),
        "cross_entropy probabilities": (
            lambda x, p: F.cross_entropy(x, p, class_weight, label_smoothing=0.1),
            (x4, _f64(rng, 1, 2, 5, 5, positive=True)),
        ),
        "nll_loss": (lambda x: F.nll_loss(x, labels, class_weight, reduction="sum"), (x4,)),
        "binary_cross_entropy": (
            lambda x, y: F.binary_cross_entropy(x, y, m.detach()),
            (_f64(rng, 4, 3, 2, positive=True), _f64(rng, 4, 3, 2, positive=True)),
        ),
        "binary_cross_entropy_with_logits": (
            lambda x, y, p: F.binary_cross_entropy_with_logits(x, y, pos_weight=p),
            (m, _f64(rng, 4, 3, 2, positive=True), _f64(rng, 2, positive=True)),
        ),
        "mse_loss": (F.mse_loss, (m, _f64(rng, 4, 3, 2))),
        "l1_loss": (lambda x, y: F.l1_loss(x, y, reduction="sum"), (m, _f64(rng, 4, 3, 2))),
    }


GRADCHECK_CASES = _gradcheck_cases()


@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gradcheck(name):
    fn, inputs = GRADCHECK_CASES[name]
    assert gradcheck(fn, inputs)


# =========================================================================== stability


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_is_finite_for_logits_of_magnitude_1e4(torch, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4 + 1], [1e4, 1e4, 1e4]], dtype=dtype)
    for ours, theirs in ((F.softmax, torch.nn.functional.softmax), (F.log_softmax, torch.nn.functional.log_softmax)):
        out, _ = matches_torch(torch, lambda x, f=ours: f(x, 1), lambda x, f=theirs: f(x, 1), x)
        assert np.all(np.isfinite(out.numpy()))
    out, _ = matches_torch(torch, F.sigmoid, torch.sigmoid, x)
    assert np.all(np.isfinite(out.numpy()))


# =========================================================================== bad input

X4 = tm.randn(2, 3, 8, 8)
W4 = tm.randn(4, 3, 3, 3)
Q = tm.randn(2, 5, 4)
LOGITS = tm.randn(3, 4)

BAD_INPUT = [
    (
        lambda: F.conv2d(X4, tm.randn(4, 2, 3, 3)),
        ValueError,
        r"conv2d: input has 3 channels but weight \(4, 2, 3, 3\) \(C_out, C_in, KH, KW\) expects 2",
    ),
    (
        lambda: F.conv2d(X4, tm.randn(4, 3, 9, 9)),
        ValueError,
        r"conv2d: kernel \(9, 9\).*spans 9 pixels along H, more than the padded input",
    ),
    (lambda: F.conv2d(X4, W4, stride=0), ValueError, r"conv2d: stride must be positive, got 0"),
    (lambda: F.conv2d(X4, W4, padding=(1, -1)), ValueError, r"conv2d: padding must be non-negative"),
    (lambda: F.conv2d(X4, W4, dilation=0), ValueError, r"conv2d: dilation must be positive"),
    (lambda: F.conv2d(X4, W4, stride=1.5), TypeError, r"conv2d: stride must be an int or a pair of ints"),
    (
        lambda: F.conv2d(X4, W4, groups=3),
        ValueError,
        r"conv2d: input has 3 channels but weight \(4, 3, 3, 3\) .* with groups=3 expects 9",
    ),
    (
        lambda: F.conv2d(tm.randn(8, 8), W4),
        ValueError,
        r"conv2d: input must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\), got shape \(8, 8\)",
    ),
    (lambda: F.conv2d(X4, W4, tm.randn(3)), ValueError, r"conv2d: bias must have shape \(4,\), got \(3,\)"),
    (lambda: F.conv2d(X4, W4.double()), TypeError, r"conv2d: weight has dtype float64 but input has dtype float32"),
    (
        lambda: F.conv2d(tm.ones(2, 3, 8, 8, dtype=tm.int64), W4),
        TypeError,
        r"conv2d: input must be a floating-point tensor, got dtype int64",
    ),
    (lambda: F.conv2d(X4.numpy(), W4), TypeError, r"conv2d: input must be a Tensor, got ndarray"),
    (lambda: F.conv2d(X4, W4, stride=2, padding="same"), ValueError, r"conv2d: padding='same' needs stride 1"),
    (
        lambda: F.conv_transpose2d(X4, tm.randn(4, 2, 3, 3)),
        ValueError,
        r"conv_transpose2d: input has 3 channels but weight \(4, 2, 3, 3\) \(C_in, C_out, KH, KW\) expects 4",
    ),
    (
        lambda: F.conv_transpose2d(X4, tm.randn(3, 4, 3, 3), stride=2, output_padding=2),
        ValueError,
        r"conv_transpose2d: output_padding \(2, 2\) must be smaller than either stride \(2, 2\) or dilation",
    ),
    (
        lambda: F.conv_transpose2d(tm.randn(1, 3, 1, 1), tm.randn(3, 4, 3, 3), padding=2),
        ValueError,
        r"conv_transpose2d: output size \(-1, -1\) is not positive",
    ),
    (
        lambda: F.max_pool2d(X4, 3, padding=2),
        ValueError,
        r"max_pool2d: padding \(2, 2\) must be at most half of kernel_size \(3, 3\)",
    ),
    (lambda: F.max_pool2d(X4, 9), ValueError, r"max_pool2d: kernel \(9, 9\).*more than the padded input"),
    (lambda: F.max_pool2d(X4, 0), ValueError, r"max_pool2d: kernel_size must be positive"),
    (lambda: F.max_pool2d(X4, 2, ceil_mode=True), ValueError, r"max_pool2d: only ceil_mode=False is supported"),
    (lambda: F.avg_pool2d(X4, 2, stride=-1), ValueError, r"avg_pool2d: stride must be positive"),
    (lambda: F.adaptive_avg_pool2d(X4, 0), ValueError, r"adaptive_avg_pool2d: output_size must be positive"),
    (
        lambda: F.linear(tm.randn(2, 5), tm.randn(3, 4)),
        ValueError,
        r"linear: input shape \(2, 5\) does not end in in_features = 4 of weight \(3, 4\)",
    ),
    (lambda: F.linear(tm.randn(2, 4), tm.randn(3, 4), tm.randn(4)), ValueError, r"linear: bias must have shape \(3,\)"),
    (
        lambda: F.scaled_dot_product_attention(Q, tm.randn(2, 5, 3), Q),
        ValueError,
        r"scaled_dot_product_attention: expects query \(\.\.\., Lq, E\).*key \(2, 5, 3\)",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, Q, Q, tm.ones(5, 4, dtype=tm.bool_)),
        ValueError,
        r"scaled_dot_product_attention: attn_mask \(5, 4\) does not broadcast to \(\.\.\., Lq, Lk\) = \(\.\.\., 5, 5\)",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, tm.randn(3, 5, 4), tm.randn(3, 5, 4)),
        ValueError,
        r"scaled_dot_product_attention: the leading \(batch, head\) dims do not broadcast",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, Q, Q, tm.ones(5, 5, dtype=tm.int64)),
        TypeError,
        r"scaled_dot_product_attention: attn_mask must be bool or have query's dtype",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, Q, Q, tm.ones(5, 5, dtype=tm.bool_), is_causal=True),
        ValueError,
        r"scaled_dot_product_attention: give attn_mask or is_causal",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, Q, Q, dropout_p=1.5),
        ValueError,
        r"scaled_dot_product_attention: dropout_p must be in \[0, 1\]",
    ),
    (
        lambda: F.scaled_dot_product_attention(Q, tm.randn(2, 3, 5, 4), tm.randn(2, 3, 5, 4), enable_gqa=True),
        ValueError,
        r"scaled_dot_product_attention: enable_gqa needs",
    ),
    (lambda: F.relu(tm.tensor([1, 2])), TypeError, r"relu: input must be a floating-point tensor, got dtype int64"),
    (lambda: F.softmax(Q, 3), IndexError, r"softmax: dim 3 is out of range"),
    (lambda: F.gelu(Q, approximate="erf"), ValueError, r"gelu: approximate must be 'none' or 'tanh'"),
    (lambda: F.dropout(Q, p=-0.1), ValueError, r"dropout: p must be in \[0, 1\], got -0.1"),
    (
        lambda: F.batch_norm(X4, tm.zeros(4), tm.ones(3)),
        ValueError,
        r"batch_norm: running_mean must be a float tensor of shape \(3,\), got \(4,\)",
    ),
    (lambda: F.batch_norm(X4, None, None), ValueError, r"batch_norm: running_mean is needed when training=False"),
    (
        lambda: F.batch_norm(tm.randn(1, 3), None, None, training=True),
        ValueError,
        r"batch_norm: expected more than 1 value per channel when training",
    ),
    (
        lambda: F.batch_norm(X4, None, None, tm.ones(2), training=True),
        ValueError,
        r"batch_norm: weight must have shape \(3,\), got \(2,\)",
    ),
    (
        lambda: F.layer_norm(X4, (8, 7)),
        ValueError,
        r"layer_norm: input shape \(2, 3, 8, 8\) does not end in normalized_shape \(8, 7\)",
    ),
    (lambda: F.pad(X4, (1, 2, 3)), ValueError, r"pad: pad must be an even number of ints"),
    (
        lambda: F.pad(X4, (8, 0, 0, 0), mode="reflect"),
        ValueError,
        r"pad: mode 'reflect' needs padding in \[0, 7\] for dim 3 of size 8",
    ),
    (lambda: F.pad(X4, (1, 1), mode="reflect"), ValueError, r"pad: mode 'reflect' pads the last 1-3 dims"),
    (
        lambda: F.pad(X4, (1, 1), mode="wrap"),
        ValueError,
        r"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular'",
    ),
    (lambda: F.pad(X4, (-5, -5)), ValueError, r"pad: pad \(-5, -5\) crops more than input shape"),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([0, 1])),
        ValueError,
        r"cross_entropy: target shape \(2,\) does not match input shape \(3, 4\); class indices need shape \(3,\)",
    ),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([0, 4, 1])),
        ValueError,
        r"cross_entropy: target holds class 4, outside \[0, 4\) for input shape \(3, 4\)",
    ),
    (lambda: F.cross_entropy(LOGITS, tm.tensor([0, -1, 1])), ValueError, r"cross_entropy: target holds class -1"),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([True, False, True])),
        TypeError,
        r"cross_entropy: target must hold class indices \(an integer tensor\), got dtype bool",
    ),
    (
        lambda: F.cross_entropy(LOGITS, tm.randn(3, 5)),
        ValueError,
        r"cross_entropy: class-probability target shape \(3, 5\) must equal input shape \(3, 4\)",
    ),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([0, 1, 2]), tm.ones(3)),
        ValueError,
        r"cross_entropy: weight must have shape \(4,\), got \(3,\)",
    ),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([0, 1, 2]), reduction="avg"),
        ValueError,
        r"cross_entropy: reduction must be one of 'none', 'mean', 'sum', got 'avg'",
    ),
    (
        lambda: F.cross_entropy(LOGITS, tm.tensor([0, 1, 2]), label_smoothing=1.5),
        ValueError,
        r"cross_entropy: label_smoothing must be in \[0, 1\]",
    ),
    (lambda: F.cross_entropy(LOGITS, [0, 1, 2]), TypeError, r"cross_entropy: target must be a Tensor, got list"),
    (lambda: F.nll_loss(LOGITS, tm.tensor([0, 1, 9])), ValueError, r"nll_loss: target holds class 9"),
    (
        lambda: F.binary_cross_entropy(tm.rand(3), tm.rand(4)),
        ValueError,
        r"binary_cross_entropy: target shape \(4,\) must equal input shape \(3,\)",
    ),
    (
        lambda: F.binary_cross_entropy(tm.rand(3) + 1, tm.rand(3)),
        ValueError,
        r"binary_cross_entropy: all elements of input must be between 0 and 1",
    ),
    (
        lambda: F.binary_cross_entropy(tm.rand(2), tm.tensor([0.0, 2.0])),
        ValueError,
        r"binary_cross_entropy: all elements of target must be between 0 and 1 .* from 0.0 to 2.0",
    ),
    (
        lambda: F.binary_cross_entropy(tm.rand(3), tm.tensor([0, 1, 1])),
        TypeError,
        r"binary_cross_entropy: target must be a floating-point tensor, got dtype int64",
    ),
    (
        lambda: F.binary_cross_entropy_with_logits(LOGITS, tm.rand(3, 4), pos_weight=tm.ones(3)),
        ValueError,
        r"binary_cross_entropy_with_logits: pos_weight shape \(3,\) does not broadcast to input shape \(3, 4\)",
    ),
    (
        lambda: F.binary_cross_entropy_with_logits(LOGITS, tm.rand(3, 4), tm.ones(2, 4)),
        ValueError,
        r"binary_cross_entropy_with_logits: weight shape \(2, 4\) does not broadcast",
    ),
    (
        lambda: F.mse_loss(LOGITS, tm.randn(2, 4)),
        ValueError,
        r"mse_loss: target shape \(2, 4\) does not broadcast with input shape \(3, 4\)",
    ),
    (
        lambda: F.l1_loss(LOGITS, tm.randn(3, 4), weight=tm.ones(4)),
        ValueError,
        r"l1_loss: weight shape \(4,\) must equal input shape \(3, 4\)",
    ),
    (lambda: F.one_hot(tm.tensor([0, 3]), 3), ValueError, r"one_hot: class values must be in \[0, 3\)"),
    (lambda: F.one_hot(tm.tensor([0.0, 1.0])), TypeError, r"one_hot: tensor must be an integer tensor"),
]


@pytest.mark.parametrize(
    "call, error, message", BAD_INPUT, ids=[m.split(":")[0] + f"-{i}" for i, (_, _, m) in enumerate(BAD_INPUT)]
)
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mismatched_backends_are_named():
    class Elsewhere:  # a stand-in device: the check compares devices, not names
        kernels = "elsewhere"

    w = tm.Tensor.wrap(W4.array, Elsewhere)
    with pytest.raises(ValueError, match=r"conv2d: all inputs must live on the same backend"):
        F.conv2d(X4, w)


def test_integer_tensor_cannot_ask_for_a_gradient():
    with pytest.raises(TypeError, match=r"requires_grad: only floating-point tensors can require gradients"):
        tm.tensor([1, 2, 3], requires_grad=True)


@pytest.mark.parametrize(
    "shape, kernel, padding, dilation, axis",
    [
        ((1, 1, 1, 1), (1, 2), (0, 1), (1, 2), "width"),
        ((1, 1, 1), (2, 1), (1, 0), (2, 1), "height"),  # the draw that once made the strategy flaky
    ],
)
def test_max_pool2d_refuses_a_window_of_only_padding(shape, kernel, padding, dilation, axis):
    # With dilation 2 and padding 1, the only window of a 1-pixel input reads positions
    # -1 and 1: both padding. PyTorch answers -inf with an index outside the window.
    with pytest.raises(ValueError, match=rf"max_pool2d: output {axis} position 0 sees only padding \(input {axis} 1"):
        F.max_pool2d(tm.randn(*shape), kernel, padding=padding, dilation=dilation)
