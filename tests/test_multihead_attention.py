"""nn.MultiheadAttention against torch.nn.MultiheadAttention with copied weights, at PyTorch's
defaults (sequence first): every mask kind (key_padding_mask bool or float (N, S); attn_mask
2-D (L, S) or 3-D (N * num_heads, L, S), bool or float; both together), with and without
the weights, averaged or per head, the is_causal hint on both of PyTorch's paths, unbatched
inputs; the weights returned are those the output used; the signature is PyTorch's."""

import inspect

import numpy as np
import pytest
from helpers import assert_close

import tinymed as tm
import tinymed.nn as nn

N, L, S, E, HEADS = 2, 3, 4, 8, 2
rng = np.random.default_rng(11)
PADDING = np.array([[False, False, True, False], [False, True, False, True]])
CAUSAL = np.triu(np.ones((L, S), dtype=bool), 1)
MASKS = {
    "none": {},
    "padding-bool": dict(key_padding_mask=PADDING),
    "padding-float": dict(key_padding_mask=np.where(PADDING, -np.inf, rng.standard_normal((N, S)))),
    "attn-2d-bool": dict(attn_mask=CAUSAL),
    "attn-2d-float": dict(attn_mask=rng.standard_normal((L, S))),
    "attn-3d-bool": dict(attn_mask=rng.random((N * HEADS, L, S)) < 0.3),
    "attn-3d-float": dict(attn_mask=rng.standard_normal((N * HEADS, L, S))),
    "attn-2d-and-padding": dict(attn_mask=CAUSAL, key_padding_mask=PADDING),
    "attn-3d-float-and-padding-float": dict(
        attn_mask=rng.standard_normal((N * HEADS, L, S)), key_padding_mask=np.where(PADDING, -1e9, 0.0)
    ),
    "causal-hint": dict(attn_mask=CAUSAL, is_causal=True),
    "causal-hint-and-padding": dict(attn_mask=CAUSAL, key_padding_mask=PADDING, is_causal=True),
}
OUTPUTS = {"weights": {}, "per-head": dict(average_attn_weights=False), "no-weights": dict(need_weights=False)}


def layers(torch, **options):
    """A torch layer with random parameters (biases included) and a tinymed copy of it."""
    generator = torch.Generator().manual_seed(3)
    layer_t = torch.nn.MultiheadAttention(E, HEADS, **options).double()
    with torch.no_grad():
        for p in layer_t.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * 2 - 1)
    layer_m = nn.MultiheadAttention(E, HEADS, **options).double()
    layer_m.load_state_dict({k: v.numpy() for k, v in layer_t.state_dict().items()})
    return layer_t, layer_m


def compare(torch, layer_t, layer_m, inputs, masks, outputs):
    """Same output, weights, and gradients of the inputs and of every parameter."""
    tensors_t = [torch.tensor(a, requires_grad=True) for a in inputs]
    tensors_m = [tm.tensor(a, requires_grad=True) for a in inputs]
    options = {k: v for k, v in masks.items() if not isinstance(v, np.ndarray)} | outputs
    arrays = {k: v for k, v in masks.items() if isinstance(v, np.ndarray)}
    out_t, w_t = layer_t(*tensors_t, **{k: torch.tensor(v) for k, v in arrays.items()}, **options)
    out_m, w_m = layer_m(*tensors_m, **{k: tm.tensor(v) for k, v in arrays.items()}, **options)
    assert_close(out_m, out_t.detach().numpy(), "output")
    assert (w_m is None) == (w_t is None)
    if w_t is not None:
        assert_close(w_m, w_t.detach().numpy(), "attention weights")
    upstream = np.random.default_rng(5).standard_normal(out_m.shape)
    (out_t * torch.tensor(upstream)).sum().backward()
    (out_m * tm.tensor(upstream)).sum().backward()
    for name, t, m in zip(("query", "key", "value"), tensors_t, tensors_m):
        assert_close(tm.tensor(m.grad), t.grad.numpy(), f"gradient of {name}")
    grads_t = dict(layer_t.named_parameters())
    for name, p in layer_m.named_parameters():
        assert_close(tm.tensor(p.grad), grads_t[name].grad.numpy(), f"gradient of {name}")


@pytest.mark.parametrize("outputs", list(OUTPUTS.values()), ids=list(OUTPUTS))
@pytest.mark.parametrize("masks", list(MASKS.values()), ids=list(MASKS))
def test_every_mask_kind_matches_torch_sequence_first(torch, masks, outputs):
    layer_t, layer_m = layers(torch)  # PyTorch's default: batch_first=False
    assert layer_m.batch_first is False
    q = rng.standard_normal((L, N, E))
    kv = np.random.default_rng(1).standard_normal((S, N, E))
    compare(torch, layer_t, layer_m, (q, kv, kv * 0.5 + 1), masks, outputs)


def test_the_causal_hint_replaces_the_mask_where_torch_does(torch):
    """Without weights or a padding mask PyTorch trusts the hint and applies the causal mask
    itself, so an attn_mask that is not causal is not used; with weights, the mask is."""
    layer_t, layer_m = layers(torch, batch_first=True)
    x = np.random.default_rng(2).standard_normal((N, S, E))
    other = dict(attn_mask=np.zeros((S, S), dtype=bool), is_causal=True)
    compare(torch, layer_t, layer_m, (x, x, x), other, dict(need_weights=False))
    compare(torch, layer_t, layer_m, (x, x, x), other, {})


@pytest.mark.parametrize(
    "masks",
    [{}, dict(key_padding_mask=PADDING[0]), dict(attn_mask=rng.random((HEADS, L, S)) < 0.3)],
    ids=["plain", "padding", "per-head-mask"],
)
def test_unbatched_inputs_match_torch(torch, masks):
    layer_t, layer_m = layers(torch)
    q, kv = rng.standard_normal((L, E)), np.random.default_rng(4).standard_normal((S, E))
    compare(torch, layer_t, layer_m, (q, kv, kv), masks, dict(average_attn_weights=False))


def test_a_query_with_every_key_masked_gets_zero_weights(torch):
    """PyTorch's module gives NaN there when it computes the weights and 0 when it does not;
    tinymed gives 0 both ways (its safe softmax), so the outputs agree on the no-weights path."""
    layer_t, layer_m = layers(torch, batch_first=True)
    x = np.random.default_rng(7).standard_normal((1, S, E))
    everything = dict(key_padding_mask=np.ones((1, S), dtype=bool))
    compare(torch, layer_t, layer_m, (x, x, x), everything, dict(need_weights=False))
    out, weights = layer_m(*(tm.tensor(x),) * 3, key_padding_mask=tm.tensor(everything["key_padding_mask"]))
    assert np.all(weights.numpy() == 0)
    assert_close(out, np.broadcast_to(layer_m.out_proj.bias.numpy(), (1, S, E)), "output: the projection's bias")


def test_the_weights_returned_in_training_are_those_the_output_used():
    tm.manual_seed(0)
    layer = nn.MultiheadAttention(E, HEADS, dropout=0.5, batch_first=True).double()
    x = tm.tensor(np.random.default_rng(6).standard_normal((N, S, E)))
    out, weights = layer(x, x, x, average_attn_weights=False)
    kept = weights.numpy()
    undropped = layer.eval()(x, x, x, average_attn_weights=False)[1].numpy()
    assert np.any(kept == 0) and np.all(kept != undropped)
    assert_close(kept[kept != 0], 2 * undropped[kept != 0], "kept weights, scaled by 1 / (1 - p)")
    values = layer._project(x, 2)
    by_hand = layer.out_proj((tm.tensor(kept) @ values).transpose(1, 2).reshape(N, S, E))
    assert_close(out, by_hand.numpy(), "output from the returned weights")


def test_signature_is_torchs(torch):
    for ours, theirs in (
        (nn.MultiheadAttention.__init__, torch.nn.MultiheadAttention.__init__),
        (nn.MultiheadAttention.forward, torch.nn.MultiheadAttention.forward),
    ):
        expected = {n: p.default for n, p in inspect.signature(theirs).parameters.items()}
        assert {n: p.default for n, p in inspect.signature(ours).parameters.items()} == expected


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda x: nn.MultiheadAttention(E, HEADS)(x, x, x, is_causal=True), RuntimeError, r"pass that attn_mask"),
        (lambda x: nn.MultiheadAttention(E, HEADS, add_bias_kv=True), ValueError, r"only add_bias_kv=False"),
        (lambda x: nn.MultiheadAttention(E, HEADS, add_zero_attn=True), ValueError, r"only add_zero_attn=False"),
        (lambda x: nn.MultiheadAttention(E, HEADS, kdim=4), ValueError, r"only kdim=None \(= embed_dim, 8\)"),
        (
            lambda x: nn.MultiheadAttention(E, HEADS)(x, x, x, attn_mask=tm.zeros(N * HEADS + 1, L, L).bool()),
            ValueError,
            r"attn_mask must be \(3, 3\) or \(4, 3, 3\), got \(5, 3, 3\)",
        ),
    ],
    ids=["causal-without-mask", "bias-kv", "zero-attn", "kdim", "mask-shape"],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call(tm.randn(L, N, E))
