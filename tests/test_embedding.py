"""Embedding and F.embedding against PyTorch: lookups of any index shape, gradients with
repeated indices, padding_idx, max_norm's in-place renormalisation, scale_grad_by_freq;
the layer's initialisation, repr and from_pretrained; gradcheck; errors."""

import numpy as np
import pytest
from helpers import Fixed, assert_close, matches_torch, normal

import tinymed as tm
import tinymed.functional as F
import tinymed.nn as nn
from tinymed.gradcheck import gradcheck

INDICES = np.array([[1, 4, 1], [0, 2, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [{}, dict(padding_idx=1), dict(padding_idx=-1), dict(scale_grad_by_freq=True, padding_idx=0)],
    ids=["plain", "padding", "padding-negative", "scaled-by-frequency"],
)
def test_embedding_matches_torch(torch, options, dtype):
    weight = normal(np.random.default_rng(0), (5, 3), dtype)
    matches_torch(
        torch,
        lambda i, w: F.embedding(i, w, **options),
        lambda i, w: torch.nn.functional.embedding(i, w, **options),
        INDICES,
        weight,
    )


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_max_norm_rescales_the_rows_looked_up_in_place_as_torch(torch, norm_type):
    weight = normal(np.random.default_rng(1), (6, 4), np.float64) * 2
    ours, theirs = tm.tensor(weight.copy()), torch.tensor(weight.copy())
    out_m = F.embedding(tm.tensor(INDICES), ours, max_norm=1.5, norm_type=norm_type)
    out_t = torch.nn.functional.embedding(torch.tensor(INDICES), theirs, max_norm=1.5, norm_type=norm_type)
    assert_close(out_m, out_t.numpy(), "output")
    assert_close(ours, theirs.numpy(), "weight after renormalisation")
    assert_close(ours[5], weight[5], "a row not looked up is left alone")


def test_embedding_layer_matches_torch(torch):
    layer_t = torch.nn.Embedding(7, 4, padding_idx=2).double()
    layer_m = nn.Embedding(7, 4, padding_idx=2).double()
    assert repr(layer_m) == repr(layer_t)
    layer_m.load_state_dict({k: v.numpy() for k, v in layer_t.state_dict().items()})
    matches_torch(torch, layer_m, layer_t, Fixed(np.array([[2, 6], [3, 2]])))


def test_embedding_initialisation_and_from_pretrained(torch):
    tm.manual_seed(0)
    layer = nn.Embedding(2000, 8, padding_idx=3, max_norm=2.0)
    weights = layer.weight.numpy()
    assert np.all(weights[3] == 0)
    assert abs(weights.std() - 1.0) < 0.05 and abs(weights.mean()) < 0.05  # N(0, 1), as PyTorch
    assert repr(layer) == repr(torch.nn.Embedding(2000, 8, padding_idx=3, max_norm=2.0))
    table = tm.randn(4, 3)
    frozen = nn.Embedding.from_pretrained(table)
    assert frozen.weight.requires_grad is False and frozen.weight.shape == (4, 3)
    assert_close(frozen(tm.tensor([3, 0])), table.numpy()[[3, 0]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_embedding_gradchecks():
    # padding_idx and scale_grad_by_freq change the gradient on purpose (it is no longer the
    # derivative), so they are held to PyTorch above instead.
    weight = tm.tensor(np.random.default_rng(2).standard_normal((5, 3)), requires_grad=True)
    assert gradcheck(lambda w: F.embedding(tm.tensor(INDICES), w), [weight])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda w: F.embedding(tm.tensor([5]), w), IndexError, r"embedding: indices must be in \[0, 5\)"),
        (lambda w: F.embedding(tm.tensor([-1]), w), IndexError, r"got values in \[-1, -1\]"),
        (lambda w: F.embedding(tm.tensor([1.0]), w), TypeError, r"input must be an integer tensor.*float32"),
        (lambda w: F.embedding(tm.tensor([1]), w[0]), ValueError, r"weight must be 2-D"),
        (lambda w: F.embedding(tm.tensor([1]), w, padding_idx=5), ValueError, r"padding_idx must be within"),
        (lambda w: F.embedding(tm.tensor([1]), w, sparse=True), ValueError, r"only sparse=False"),
        (lambda w: nn.Embedding(5, 3, padding_idx=-6), ValueError, r"Embedding: padding_idx must be within"),
        (lambda w: nn.Embedding(5, 3, _weight=w[:2]), ValueError, r"_weight must have shape \(5, 3\)"),
    ],
    ids=["too-large", "negative", "float-indices", "weight-dims", "padding", "sparse", "layer-padding", "layer-weight"],
)
def test_embedding_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(tm.randn(5, 3))
