"""Kind 1, the formulas: every NumPy reference primitive against its formula, written out.

Each ``loop_*`` function below is the formula of the backend contract typed in as plain
Python loops over every index, with no NumPy cleverness, so that it can be read against the
docstrings of :mod:`tinymed.backends` line by line. On tiny float64 inputs the vectorised
reference must agree with it to rounding error. Around that core:

* the article's convolution, ``y(x,y) = sum_i sum_j w(i,j) x(x-i, y-j)``, which flips the
  kernel, is cross-correlation (tinymed's and PyTorch's convolution) with the kernel flipped;
* the three convolution primitives satisfy the adjoint identity
  ``<conv(x, w), gy> = <x, grad_input(gy, w)> = <w, grad_weight(x, gy)>`` for shapes,
  strides, paddings and dilations drawn by hypothesis, and agree with PyTorch;
* ``attention_backward`` agrees with finite differences of ``attention_forward``.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re

import numpy as np
import pytest
from helpers import assert_close, output_size
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import seeds, window_geometries

import tinymed.backends as backends
from tinymed.backends import numpy_ref as ref

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------
# The formulas as loops.
# ----------------------------------------------------------------------------------------


def loop_conv2d(x, w, b, stride, padding, dilation):
    """y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dh), output_size(W, KW, sw, pw, dw)
    y = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    total = 0.0 if b is None else b[o]
                    for c in range(C):
                        for p in range(KH):
                            for q in range(KW):
                                h, v = i * sh + p * dh - ph, j * sw + q * dw - pw
                                if 0 <= h < H and 0 <= v < W:  # else x_pad is a padding zero
                                    total += w[o, c, p, q] * x[n, c, h, v]
                    y[n, o, i, j] = total
    return y


def loop_conv2d_grad_input(gy, w, input_size, stride, padding, dilation):
    """gx[n,c,h,w] = sum over (o,i,j,p,q) with i*sh + p*dh = h + ph and j*sw + q*dw = w + pw
    of gy[n,o,i,j] * w[o,c,p,q]."""
    N, O, OH, OW = gy.shape
    _, C, KH, KW = w.shape
    H, W = input_size
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    gx = np.zeros((N, C, H, W))
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for v in range(W):
                    total = 0.0
                    for o in range(O):
                        for i in range(OH):
                            for j in range(OW):
                                for p in range(KH):
                                    for q in range(KW):
                                        if i * sh + p * dh == h + ph and j * sw + q * dw == v + pw:
                                            total += gy[n, o, i, j] * w[o, c, p, q]
                    gx[n, c, h, v] = total
    return gx


def loop_conv2d_grad_weight(x, gy, kernel_size, stride, padding, dilation):
    """gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]."""
    N, C, H, W = x.shape
    _, O, OH, OW = gy.shape
    KH, KW = kernel_size
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    gw = np.zeros((O, C, KH, KW))
    for o in range(O):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    total = 0.0
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                h, v = i * sh + p * dh - ph, j * sw + q * dw - pw
                                if 0 <= h < H and 0 <= v < W:
                                    total += gy[n, o, i, j] * x[n, c, h, v]
                    gw[o, c, p, q] = total
    return gw


def loop_max_pool2d(x, kernel_size, stride, padding, dilation):
    """y[n,c,i,j] = max over the window's unpadded pixels, scanned in row-major order: a pixel
    replaces the maximum only if greater (ties keep the first), a NaN beats any number, and
    the index is the flat position h*W + w in the unpadded plane."""
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    OH, OW = output_size(H, KH, sh, ph, dh), output_size(W, KW, sw, pw, dw)
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    indices = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, best_index = None, None
                    for p in range(KH):
                        for q in range(KW):
                            h, v = i * sh + p * dh - ph, j * sw + q * dw - pw
                            if not (0 <= h < H and 0 <= v < W):
                                continue  # -inf padding never beats a pixel
                            value = x[n, c, h, v]
                            if best is None or value > best or (math.isnan(value) and not math.isnan(best)):
                                best, best_index = value, h * W + v
                    y[n, c, i, j], indices[n, c, i, j] = best, best_index
    return y, indices


def loop_max_pool2d_backward(gy, indices, input_size):
    """gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]."""
    N, C, OH, OW = gy.shape
    H, W = input_size
    gx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    gx[n, c, indices[n, c, i, j]] += gy[n, c, i, j]
    return gx.reshape(N, C, H, W)


def loop_gemm(a, b, bias, trans_a, trans_b):
    """c[r, s] = sum_k op(a)[r, k] * op(b)[k, s] + bias[s]."""
    A = [[a[k][r] for k in range(a.shape[0])] for r in range(a.shape[1])] if trans_a else a.tolist()
    B = [[b[k][r] for k in range(b.shape[0])] for r in range(b.shape[1])] if trans_b else b.tolist()
    rows, inner, cols = len(A), len(B), len(B[0])
    c = np.zeros((rows, cols))
    for r in range(rows):
        for s in range(cols):
            c[r, s] = sum(A[r][k] * B[k][s] for k in range(inner)) + (0.0 if bias is None else bias[s])
    return c


def loop_attention(q, k, v, mask, scale, is_causal):
    """s_j = scale * sum_d q[i,d] k[j,d] + mask[i,j]; out[i] = sum_j softmax(s)_j v[j];
    lse[i] = log sum_j exp(s_j). A row with no key left gives out 0 and lse -inf."""
    B, Lq, _ = q.shape
    _, Lk, Dv = v.shape
    out, lse = np.zeros((B, Lq, Dv)), np.zeros((B, Lq))
    for b in range(B):
        for i in range(Lq):
            scores = []
            for j in range(Lk):
                s = scale * sum(q[b, i, d] * k[b, j, d] for d in range(q.shape[2]))
                if mask is not None:
                    s += mask[b, i, j]
                if is_causal and j > i:
                    s = -math.inf
                scores.append(s)
            m = max(scores)
            if m == -math.inf:
                lse[b, i] = -math.inf  # and out stays 0
                continue
            weights = [math.exp(s - m) for s in scores]
            total = sum(weights)
            lse[b, i] = m + math.log(total)
            for e in range(Dv):
                out[b, i, e] = sum(weights[j] / total * v[b, j, e] for j in range(Lk))
    return out, lse


def loop_true_convolution(image, kernel):
    """The article's convolution of one plane, ``y(x,y) = sum_i sum_j w(i,j) x(x-i, y-j)``,
    with x zero outside the image and y wherever it can be nonzero ("full" size H+KH-1)."""
    H, W = image.shape
    KH, KW = kernel.shape
    y = np.zeros((H + KH - 1, W + KW - 1))
    for X in range(H + KH - 1):
        for Y in range(W + KW - 1):
            for i in range(KH):
                for j in range(KW):
                    if 0 <= X - i < H and 0 <= Y - j < W:
                        y[X, Y] += kernel[i, j] * image[X - i, Y - j]
    return y


# ----------------------------------------------------------------------------------------
# The module is the contract.
# ----------------------------------------------------------------------------------------


def _documented_signatures() -> dict[str, list[str]]:
    """Parameter names of every function the contract's docstring writes as ``f(...) ->``."""
    signatures = {}
    for primitive, params in re.findall(r"``(\w+)\(([^)]*)\) ->", backends.__doc__):
        signatures[primitive] = [p.split("=")[0].strip() for p in params.split(",") if p.strip()]
    return signatures


def test_every_primitive_has_the_documented_signature():
    documented = _documented_signatures()
    assert set(backends.PRIMITIVES) <= set(documented)
    for primitive, params in documented.items():
        assert list(inspect.signature(getattr(ref, primitive)).parameters) == params, primitive


def test_backend_identity_and_array_moves():
    assert ref.name == "numpy" and ref.xp is np and ref.unavailable_reason() is None
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert ref.asarray(a) is a and ref.asarray([1.0]).dtype == np.float64
    assert ref.to_numpy(a) is a
    assert backends.get("numpy") is ref


# ----------------------------------------------------------------------------------------
# Convolution.
# ----------------------------------------------------------------------------------------

# (N, C, H, W, O, KH, KW, stride, padding, dilation): square and not, strided, padded,
# dilated, batch 1, a kernel larger than the stride, and two covering the whole image.
CONV_CASES = [
    (2, 3, 5, 5, 2, 3, 3, (1, 1), (0, 0), (1, 1)),
    (1, 2, 6, 7, 3, 3, 2, (2, 1), (1, 0), (1, 1)),
    (2, 1, 7, 5, 2, 2, 3, (1, 2), (1, 2), (2, 1)),
    (1, 2, 8, 6, 2, 4, 4, (2, 2), (1, 1), (1, 1)),
    (2, 2, 4, 4, 1, 4, 4, (1, 1), (0, 0), (1, 1)),
    (3, 2, 3, 3, 4, 3, 3, (2, 2), (0, 0), (1, 1)),
    (1, 1, 9, 8, 2, 2, 2, (3, 2), (1, 1), (3, 2)),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_primitives_match_their_formulas(case):
    N, C, H, W, O, KH, KW, stride, padding, dilation = case
    rng = _rng(1)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, KH, KW)), rng.standard_normal(O)
    y = ref.conv2d_forward(x, w, b, stride, padding, dilation)
    np.testing.assert_allclose(y, loop_conv2d(x, w, b, stride, padding, dilation), **TIGHT)
    np.testing.assert_allclose(
        ref.conv2d_forward(x, w, None, stride, padding, dilation),
        loop_conv2d(x, w, None, stride, padding, dilation),
        **TIGHT,
    )
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        ref.conv2d_grad_input(gy, w, (H, W), stride, padding, dilation),
        loop_conv2d_grad_input(gy, w, (H, W), stride, padding, dilation),
        **TIGHT,
    )
    np.testing.assert_allclose(
        ref.conv2d_grad_weight(x, gy, (KH, KW), stride, padding, dilation),
        loop_conv2d_grad_weight(x, gy, (KH, KW), stride, padding, dilation),
        **TIGHT,
    )


def test_grad_input_with_room_for_output_padding():
    """conv_transpose2d's output_padding asks for an input larger than the windows need:
    the extra rows and columns get no gradient from any window, so they are 0."""
    rng = _rng(2)
    gy, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    args = ((8, 9), (2, 3), (1, 1), (1, 1))  # 3 windows at stride 2 need 7 rows, 3 at stride 3 need 9 columns
    np.testing.assert_allclose(ref.conv2d_grad_input(gy, w, *args), loop_conv2d_grad_input(gy, w, *args), **TIGHT)


def test_large_batches_are_computed_chunk_by_chunk_with_the_same_result(monkeypatch):
    """The batch is cut into chunks to keep im2col in cache; the cut must not show."""
    rng = _rng(3)
    x, w = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    geometry = ((1, 2), (1, 0), (1, 1))
    whole = ref.conv2d_forward(x, w, None, *geometry)
    gy = rng.standard_normal(whole.shape)
    expected = (
        whole,
        ref.conv2d_grad_input(gy, w, (6, 6), *geometry),
        ref.conv2d_grad_weight(x, gy, (3, 3), *geometry),
    )
    monkeypatch.setattr(ref, "_CHUNK_BYTES", 1)  # one sample per chunk
    chunked = (
        ref.conv2d_forward(x, w, None, *geometry),
        ref.conv2d_grad_input(gy, w, (6, 6), *geometry),
        ref.conv2d_grad_weight(x, gy, (3, 3), *geometry),
    )
    for a, b in zip(chunked, expected):
        np.testing.assert_allclose(a, b, **TIGHT)


def test_the_articles_convolution_is_cross_correlation_with_the_kernel_flipped():
    """y(x,y) = sum_i sum_j w(i,j) x(x-i, y-j) (true convolution) equals conv2d_forward, which
    computes cross-correlation, once the kernel is flipped in both axes: w[..., ::-1, ::-1].
    Padding KH-1 rows (KW-1 columns) gives the full-size result."""
    rng = _rng(4)
    image, kernel = rng.standard_normal((5, 6)), rng.standard_normal((3, 2))
    flipped = kernel[::-1, ::-1]
    cross_correlation = ref.conv2d_forward(image[None, None], flipped[None, None].copy(), None, (1, 1), (2, 1), (1, 1))[
        0, 0
    ]
    np.testing.assert_allclose(cross_correlation, loop_true_convolution(image, kernel), **TIGHT)
    # Without the flip they differ: the two operations are not the same thing.
    unflipped = ref.conv2d_forward(image[None, None], kernel[None, None], None, (1, 1), (2, 1), (1, 1))[0, 0]
    assert not np.allclose(unflipped, loop_true_convolution(image, kernel))


def test_impulse_response_shows_the_flip():
    """An image that is a single 1 reproduces the kernel under true convolution, and the
    kernel flipped under cross-correlation: what the flip in the article is about."""
    impulse = np.zeros((5, 5))
    impulse[2, 2] = 1.0
    kernel = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(loop_true_convolution(impulse, kernel)[2:5, 2:5], kernel)
    y = ref.conv2d_forward(impulse[None, None], kernel[None, None], None, (1, 1), (0, 0), (1, 1))[0, 0]
    np.testing.assert_array_equal(y, kernel[::-1, ::-1])


@st.composite
def conv_geometries(draw):
    """A convolution whose output has at least one pixel: shapes, stride, padding, dilation."""
    g = draw(window_geometries(max_kernel=4, max_dilation=3, max_extra=5))
    N, C, O = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (N, C, *g.size, O, *g.kernel), g.stride, g.padding, g.dilation


@settings(max_examples=20, deadline=None)
@given(geometry=conv_geometries(), seed=seeds)
def test_conv2d_gradients_are_the_adjoints_of_the_forward_pass(geometry, seed):
    """<conv(x, w), gy> = <x, grad_input(gy, w)> = <w, grad_weight(x, gy)>: the convolution is
    linear in x and in w, and each gradient is the adjoint (transpose) of one of those maps."""
    (N, C, H, W, O, KH, KW), stride, padding, dilation = geometry
    rng = _rng(seed)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, KH, KW))
    y = ref.conv2d_forward(x, w, None, stride, padding, dilation)
    gy = rng.standard_normal(y.shape)
    forward = np.vdot(y, gy)
    via_input = np.vdot(x, ref.conv2d_grad_input(gy, w, (H, W), stride, padding, dilation))
    via_weight = np.vdot(w, ref.conv2d_grad_weight(x, gy, (KH, KW), stride, padding, dilation))
    scale = np.abs(y).sum() * np.abs(gy).max() + 1.0
    assert abs(forward - via_input) <= 1e-12 * scale
    assert abs(forward - via_weight) <= 1e-12 * scale


@pytest.mark.parametrize("case", CONV_CASES[1:4])
def test_conv2d_primitives_match_pytorch(case, torch):
    N, C, H, W, O, KH, KW, stride, padding, dilation = case
    rng = _rng(5)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((O, C, KH, KW)), rng.standard_normal(O)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, torch.tensor(b), stride, padding, dilation)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(ref.conv2d_forward(x, w, b, stride, padding, dilation), yt.detach().numpy(), **TIGHT)
    np.testing.assert_allclose(
        ref.conv2d_grad_input(gy, w, (H, W), stride, padding, dilation), xt.grad.numpy(), **TIGHT
    )
    np.testing.assert_allclose(
        ref.conv2d_grad_weight(x, gy, (KH, KW), stride, padding, dilation), wt.grad.numpy(), **TIGHT
    )


def test_conv_transpose2d_forward_is_grad_input_as_in_pytorch(torch):
    rng = _rng(6)
    x, w = rng.standard_normal((2, 3, 4, 3)), rng.standard_normal((3, 2, 3, 4))
    stride, padding, output_padding, dilation = (2, 3), (1, 2), (1, 2), (1, 1)
    expected = torch.nn.functional.conv_transpose2d(
        torch.tensor(x), torch.tensor(w), None, stride, padding, output_padding, 1, dilation
    ).numpy()
    np.testing.assert_allclose(
        ref.conv2d_grad_input(x, w, expected.shape[2:], stride, padding, dilation), expected, **TIGHT
    )


# ----------------------------------------------------------------------------------------
# Max pooling.
# ----------------------------------------------------------------------------------------

POOL_CASES = [  # (H, W, kernel, stride, padding, dilation)
    (6, 6, (2, 2), (2, 2), (0, 0), (1, 1)),
    (7, 5, (3, 2), (2, 1), (1, 1), (1, 1)),
    (7, 8, (2, 3), (1, 2), (1, 1), (2, 2)),
    (5, 5, (3, 3), (1, 1), (1, 1), (1, 1)),  # overlapping windows
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_matches_its_formula(case):
    H, W, kernel, stride, padding, dilation = case
    rng = _rng(7)
    # Values from a few levels, so that many windows hold ties.
    x = rng.integers(0, 3, size=(2, 3, H, W)).astype(np.float64)
    y, indices = ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
    y_loop, indices_loop = loop_max_pool2d(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(y, y_loop)
    np.testing.assert_array_equal(indices, indices_loop)
    assert indices.dtype == np.int64
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(
        ref.max_pool2d_backward(gy, indices, (H, W), kernel, stride, padding, dilation),
        loop_max_pool2d_backward(gy, indices, (H, W)),
        **TIGHT,
    )


def test_max_pool2d_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.array([[[[1.0, 5.0, 5.0], [5.0, 2.0, 5.0], [0.0, 0.0, 0.0]]]])
    y, indices = ref.max_pool2d_forward(x, (3, 3), (1, 1), (0, 0), (1, 1))
    assert y.item() == 5.0 and indices.item() == 1


NAN_WINDOW = np.array([[[[1.0, np.nan], [3.0, np.nan]]]])


def test_max_pool2d_nan_is_the_maximum():
    y, indices = ref.max_pool2d_forward(NAN_WINDOW, (2, 2), (1, 1), (0, 0), (1, 1))
    assert np.isnan(y.item()) and indices.item() == 1


def test_max_pool2d_nan_is_the_maximum_in_pytorch_too(torch):
    assert torch.isnan(torch.nn.functional.max_pool2d(torch.tensor(NAN_WINDOW), 2)).item()


def test_max_pool2d_window_of_minus_inf_points_into_the_image_not_the_padding():
    """Padding is -inf too; a window whose pixels are all -inf must still name a pixel (the
    first unpadded one), or the backward pass would route its gradient outside the image."""
    x = np.full((1, 1, 4, 4), -np.inf)
    y, indices = ref.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1))
    _, indices_loop = loop_max_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1))
    assert np.all(np.isneginf(y))
    np.testing.assert_array_equal(indices, indices_loop)
    np.testing.assert_array_equal(indices, [[[[0, 1], [4, 5]]]])


def test_max_pool2d_backward_sums_where_windows_pick_the_same_pixel():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9.0  # the maximum of all four 2x2 windows
    _, indices = ref.max_pool2d_forward(x, (2, 2), (1, 1), (0, 0), (1, 1))
    gx = ref.max_pool2d_backward(np.ones((1, 1, 2, 2)), indices, (3, 3), (2, 2), (1, 1), (0, 0), (1, 1))
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 4.0
    np.testing.assert_array_equal(gx, expected)


def test_max_pool2d_matches_pytorch(torch):
    rng = _rng(8)
    for H, W, kernel, stride, padding, dilation in POOL_CASES:
        x = rng.standard_normal((2, 2, H, W))
        xt = torch.tensor(x, requires_grad=True)
        yt, it = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, dilation, return_indices=True)
        gy = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(gy))
        y, indices = ref.max_pool2d_forward(x, kernel, stride, padding, dilation)
        np.testing.assert_array_equal(y, yt.detach().numpy())
        np.testing.assert_array_equal(indices, it.numpy())
        gx = ref.max_pool2d_backward(gy, indices, (H, W), kernel, stride, padding, dilation)
        np.testing.assert_allclose(gx, xt.grad.numpy(), **TIGHT)


# ----------------------------------------------------------------------------------------
# Affine.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_gemm_matches_its_formula(trans_a, trans_b, with_bias):
    rng = _rng(9)
    rows, inner, cols = 3, 4, 5
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner))
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols))
    bias = rng.standard_normal(cols) if with_bias else None
    c = ref.gemm(a, b, bias, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(c, loop_gemm(a, b, bias, trans_a, trans_b), **TIGHT)


def test_linear_is_gemm_with_the_weight_transposed():
    """linear(x) = x W^T + b, and its gradients are gy W and gy^T x, all as gemm calls."""
    rng = _rng(10)
    x, w, b, gy = (
        rng.standard_normal((4, 3)),
        rng.standard_normal((2, 3)),
        rng.standard_normal(2),
        rng.standard_normal((4, 2)),
    )
    np.testing.assert_allclose(ref.gemm(x, w, b, trans_b=True), loop_gemm(x, w.T, b, False, False), **TIGHT)
    np.testing.assert_allclose(ref.gemm(gy, w), loop_gemm(gy, w, None, False, False), **TIGHT)
    np.testing.assert_allclose(ref.gemm(gy, x, trans_a=True), loop_gemm(gy.T, x, None, False, False), **TIGHT)


# ----------------------------------------------------------------------------------------
# Attention.
# ----------------------------------------------------------------------------------------


def _attention_inputs(seed, B=2, Lq=3, Lk=4, D=3, Dv=2, masked=False):
    rng = _rng(seed)
    q, k, v = rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D)), rng.standard_normal((B, Lk, Dv))
    mask = None
    if masked:
        mask = rng.standard_normal((B, Lq, Lk))
        mask[rng.random((B, Lq, Lk)) < 0.3] = -np.inf
        mask[0, 1, :] = -np.inf  # a query that sees no key at all
    return q, k, v, mask


ATTENTION_CASES = [  # (Lq, Lk, masked, is_causal)
    (3, 4, False, False),
    (4, 3, False, True),
    (3, 5, True, False),
    (1, 1, False, True),
]


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_forward_matches_its_formula(case):
    Lq, Lk, masked, is_causal = case
    q, k, v, mask = _attention_inputs(11, Lq=Lq, Lk=Lk, masked=masked)
    out, lse = ref.attention_forward(q, k, v, mask, 0.7, is_causal)
    out_loop, lse_loop = loop_attention(q, k, v, mask, 0.7, is_causal)
    np.testing.assert_allclose(out, out_loop, **TIGHT)
    np.testing.assert_allclose(lse, lse_loop, **TIGHT)


def test_attention_is_stable_for_large_scores():
    """Subtracting the row maximum keeps exp from overflowing: scores of 1e4 are fine."""
    q, k, v, _ = _attention_inputs(12)
    with np.errstate(over="raise", invalid="raise"):
        out, lse = ref.attention_forward(q * 100, k * 100, v, None, 1.0, False)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    np.testing.assert_allclose(out, loop_attention(q * 100, k * 100, v, None, 1.0, False)[0], **TIGHT)


def test_fully_removed_rows_give_zero_output_and_gradients_without_warnings():
    q, k, v, _ = _attention_inputs(13, Lq=3, Lk=3)
    mask = np.zeros((2, 3, 3))
    mask[1, 2, :] = -np.inf
    go = np.ones((2, 3, 2))
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        out, lse = ref.attention_forward(q, k, v, mask, 0.5, False)
        grads = ref.attention_backward(go, q, k, v, out, lse, mask, 0.5, False)
    assert np.all(out[1, 2] == 0) and lse[1, 2] == -np.inf
    assert np.isfinite(lse[0]).all() and np.isfinite(lse[1, :2]).all()
    gq, gk, gv = grads
    assert np.all(gq[1, 2] == 0)
    for g in grads:
        assert np.all(np.isfinite(g))
    # The removed query adds nothing to the keys' and values' gradients.
    kept = np.ones(3, dtype=bool)
    kept[2] = False
    sub = ref.attention_forward(q[1:, kept], k[1:], v[1:], None, 0.5, False)
    sub_grads = ref.attention_backward(go[1:, kept], q[1:, kept], k[1:], v[1:], *sub, None, 0.5, False)
    np.testing.assert_allclose(gk[1:], sub_grads[1], **TIGHT)
    np.testing.assert_allclose(gv[1:], sub_grads[2], **TIGHT)


def assert_attention_backward_matches_finite_differences(q, k, v, mask, scale, is_causal, go) -> None:
    """Central differences of L = sum(attention_forward(q, k, v) * go) in every input entry
    against ``attention_backward`` (float64)."""
    out, lse = ref.attention_forward(q, k, v, mask, scale, is_causal)
    grads = ref.attention_backward(go, q, k, v, out, lse, mask, scale, is_causal)
    eps = 1e-6
    inputs = [q, k, v]
    for which, grad in enumerate(grads):
        numeric = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            losses = []
            for step in (eps, -eps):
                shifted = [a.copy() for a in inputs]
                shifted[which][index] += step
                losses.append(np.vdot(ref.attention_forward(*shifted, mask, scale, is_causal)[0], go))
            numeric[index] = (losses[0] - losses[1]) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=f"gradient of {'qkv'[which]}")


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_backward_matches_finite_differences(case):
    Lq, Lk, masked, is_causal = case
    q, k, v, mask = _attention_inputs(14, Lq=Lq, Lk=Lk, masked=masked)
    go = _rng(15).standard_normal((q.shape[0], Lq, v.shape[-1]))
    assert_attention_backward_matches_finite_differences(q, k, v, mask, 0.7, is_causal, go)


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_attention_matches_its_formula_at_every_length_up_to_7(dtype, is_causal):
    """Every Lq and Lk from 1 to 7, the sweep tests/test_backends.py runs on the GPU backends.
    float64: the forward against the loop formula, the backward against finite differences.
    float32: forward and backward against the float64 results on the same (float32) values,
    rounded once, at the float32 tolerance."""
    rng = _rng(19)
    for Lq, Lk in itertools.product(range(1, 8), repeat=2):
        q, k, v, go = (rng.standard_normal((1, n, 2)).astype(dtype).astype(np.float64) for n in (Lq, Lk, Lk, Lq))
        where = f"Lq={Lq} Lk={Lk}"
        out, lse = ref.attention_forward(q, k, v, None, 0.7, is_causal)
        if dtype == np.float64:
            out_loop, lse_loop = loop_attention(q, k, v, None, 0.7, is_causal)
            np.testing.assert_allclose(out, out_loop, **TIGHT, err_msg=f"{where} out")
            np.testing.assert_allclose(lse, lse_loop, **TIGHT, err_msg=f"{where} lse")
            assert_attention_backward_matches_finite_differences(q, k, v, None, 0.7, is_causal, go)
            continue
        expected = (out, lse, *ref.attention_backward(go, q, k, v, out, lse, None, 0.7, is_causal))
        q, k, v, go = (a.astype(dtype) for a in (q, k, v, go))
        out, lse = ref.attention_forward(q, k, v, None, 0.7, is_causal)
        actual = (out, lse, *ref.attention_backward(go, q, k, v, out, lse, None, 0.7, is_causal))
        for name, a, e in zip(("out", "lse", "gq", "gk", "gv"), actual, expected):
            assert_close(a, e.astype(dtype), f"{where} {name}")


def test_attention_matches_pytorch(torch):
    F = torch.nn.functional
    for Lq, Lk, masked, is_causal in ATTENTION_CASES:
        q, k, v, mask = _attention_inputs(16, Lq=Lq, Lk=Lk, masked=masked)
        if masked:
            mask[0, 1, :] = 0.0  # PyTorch's math kernel has no "safe softmax" for such rows
        qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
        ot = F.scaled_dot_product_attention(
            qt, kt, vt, None if mask is None else torch.tensor(mask), is_causal=is_causal, scale=0.7
        )
        go = _rng(17).standard_normal(tuple(ot.shape))
        ot.backward(torch.tensor(go))
        out, lse = ref.attention_forward(q, k, v, mask, 0.7, is_causal)
        np.testing.assert_allclose(out, ot.detach().numpy(), **TIGHT)
        for ours, leaf in zip(ref.attention_backward(go, q, k, v, out, lse, mask, 0.7, is_causal), (qt, kt, vt)):
            np.testing.assert_allclose(ours, leaf.grad.numpy(), **TIGHT)


# ----------------------------------------------------------------------------------------
# Every primitive works in its input's dtype.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_primitive_keeps_the_input_dtype(dtype):
    rng = _rng(18)
    geometry = ((2, 1), (1, 1), (1, 2))
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((2, 2, 6, 5), (3, 2, 2, 3), (3,)))
    y = ref.conv2d_forward(x, w, b, *geometry)
    results = [y, ref.conv2d_grad_input(y, w, (6, 5), *geometry), ref.conv2d_grad_weight(x, y, (2, 3), *geometry)]
    pool_geometry = ((2, 2), (2, 2), (1, 0), (1, 1))
    pooled, indices = ref.max_pool2d_forward(x, *pool_geometry)
    results += [pooled, ref.max_pool2d_backward(pooled, indices, (6, 5), *pool_geometry)]
    results += [ref.gemm(x[0, 0], x[1, 0], x[0, 0, 0], trans_a=True)]
    q = x.reshape(4, 6, 5)
    out, lse = ref.attention_forward(q, q, q, np.zeros((4, 6, 6), dtype), 0.5, True)
    results += [out, lse, *ref.attention_backward(out, q, q, q, out, lse, None, 0.5, True)]
    for result in results:
        assert result.dtype == dtype
