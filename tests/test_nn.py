"""tinymed.nn against torch.nn: every layer's forward and gradients from the same weights,
state-dict keys and shapes, default initialisation, train/eval behaviour, Module machinery."""

import math

import numpy as np
import pytest
from helpers import Fixed, assert_close, matches_torch

import tinymed as tm
import tinymed.nn as nn
import tinymed.nn.functional as F


def to_tinymed(module_torch, module_tm):
    """Copy a torch module's state into the tinymed one (torch -> NumPy -> load_state_dict)."""
    return module_tm.load_state_dict({k: v.detach().numpy() for k, v in module_torch.state_dict().items()})


def randomise(torch, module_torch, generator):
    """Give every parameter and float buffer random values (variances stay positive), so
    the comparison does not rest on default values such as BatchNorm's ones and zeros."""
    with torch.no_grad():
        for name, t in list(module_torch.named_parameters()) + list(module_torch.named_buffers()):
            if t.dtype.is_floating_point:
                low = 0.5 if name.endswith("running_var") else -1.0
                t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * 1.0 + low)


# --------------------------------------------------------------------------- layers vs torch

x4 = lambda *shape: lambda rng: [(rng.standard_normal(shape), True)]  # noqa: E731


def classes(shape, n):
    return lambda rng: [(rng.standard_normal(shape), True), (rng.integers(0, n, shape[:1] + shape[2:]), False)]


def probabilities(shape):
    return lambda rng: [(rng.uniform(0.05, 0.95, shape), True), (rng.uniform(0, 1, shape), False)]


def pairs(shape):
    return lambda rng: [(rng.standard_normal(shape), True), (rng.standard_normal(shape), False)]


# (id, build(lib, nn) -> layer, inputs(rng) -> [(array, requires_grad)], mode)
LAYERS = [
    ("linear", lambda lib, nn: nn.Linear(5, 4), x4(3, 2, 5), "train"),
    ("linear-nobias", lambda lib, nn: nn.Linear(5, 4, bias=False), x4(3, 5), "train"),
    ("conv", lambda lib, nn: nn.Conv2d(3, 4, 3), x4(2, 3, 7, 6), "train"),
    (
        "conv-strided",
        lambda lib, nn: nn.Conv2d(3, 4, (3, 2), stride=2, padding=1, dilation=(1, 2)),
        x4(2, 3, 8, 9),
        "train",
    ),
    ("conv-same", lambda lib, nn: nn.Conv2d(2, 3, 4, padding="same", bias=False), x4(1, 2, 6, 5), "train"),
    ("conv-valid", lambda lib, nn: nn.Conv2d(2, 3, 3, padding="valid"), x4(1, 2, 6, 5), "train"),
    ("conv-reflect", lambda lib, nn: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), x4(2, 2, 5, 6), "train"),
    (
        "conv-replicate",
        lambda lib, nn: nn.Conv2d(2, 3, 3, padding=(2, 1), padding_mode="replicate"),
        x4(2, 2, 5, 6),
        "train",
    ),
    (
        "conv-circular-same",
        lambda lib, nn: nn.Conv2d(2, 3, 4, padding="same", padding_mode="circular"),
        x4(1, 2, 6, 5),
        "train",
    ),
    ("convT", lambda lib, nn: nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1), x4(2, 3, 4, 5), "train"),
    (
        "convT-outpad",
        lambda lib, nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, bias=False),
        x4(2, 3, 4, 4),
        "train",
    ),
    ("convT-dilated", lambda lib, nn: nn.ConvTranspose2d(2, 3, 3, stride=1, dilation=2), x4(1, 2, 4, 3), "train"),
    ("maxpool", lambda lib, nn: nn.MaxPool2d(2), x4(2, 3, 6, 8), "train"),
    ("maxpool-overlap", lambda lib, nn: nn.MaxPool2d(3, stride=2, padding=1), x4(2, 3, 7, 6), "train"),
    ("avgpool", lambda lib, nn: nn.AvgPool2d(2), x4(2, 3, 6, 8), "train"),
    ("avgpool-pad", lambda lib, nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False), x4(2, 3, 7, 6), "train"),
    ("adaptive-avgpool", lambda lib, nn: nn.AdaptiveAvgPool2d((2, 3)), x4(2, 3, 7, 8), "train"),
    ("global-avgpool", lambda lib, nn: nn.AdaptiveAvgPool2d(1), x4(2, 3, 5, 5), "train"),
    ("batchnorm1d", lambda lib, nn: nn.BatchNorm1d(4), x4(6, 4), "train"),
    ("batchnorm1d-3d", lambda lib, nn: nn.BatchNorm1d(4, momentum=None), x4(3, 4, 5), "train"),
    ("batchnorm2d", lambda lib, nn: nn.BatchNorm2d(3), x4(2, 3, 4, 5), "train"),
    ("batchnorm2d-eval", lambda lib, nn: nn.BatchNorm2d(3), x4(2, 3, 4, 5), "eval"),
    ("batchnorm2d-nobias", lambda lib, nn: nn.BatchNorm2d(3, bias=False), x4(2, 3, 4, 5), "train"),
    ("batchnorm2d-noaffine", lambda lib, nn: nn.BatchNorm2d(3, affine=False, momentum=0.3), x4(2, 3, 4, 5), "train"),
    ("batchnorm2d-nostats", lambda lib, nn: nn.BatchNorm2d(3, track_running_stats=False), x4(2, 3, 4, 5), "eval"),
    ("layernorm", lambda lib, nn: nn.LayerNorm(5), x4(3, 2, 5), "train"),
    ("layernorm-2d", lambda lib, nn: nn.LayerNorm((3, 5), eps=1e-3), x4(2, 3, 5), "train"),
    ("layernorm-nobias", lambda lib, nn: nn.LayerNorm(5, bias=False), x4(3, 5), "train"),
    ("layernorm-noaffine", lambda lib, nn: nn.LayerNorm(5, elementwise_affine=False), x4(3, 5), "train"),
    ("relu", lambda lib, nn: nn.ReLU(), x4(3, 5), "train"),
    # torch refuses in-place ops on a leaf that requires grad, so in-place layers follow a Linear.
    ("relu-inplace", lambda lib, nn: nn.Sequential(nn.Linear(5, 5), nn.ReLU(True)), x4(3, 5), "train"),
    ("leaky-relu", lambda lib, nn: nn.LeakyReLU(0.2), x4(3, 5), "train"),
    (
        "leaky-relu-inplace",
        lambda lib, nn: nn.Sequential(nn.Linear(5, 5), nn.LeakyReLU(0.2, inplace=True)),
        x4(3, 5),
        "train",
    ),
    ("sigmoid", lambda lib, nn: nn.Sigmoid(), x4(3, 5), "train"),
    ("tanh", lambda lib, nn: nn.Tanh(), x4(3, 5), "train"),
    ("gelu", lambda lib, nn: nn.GELU(), x4(3, 5), "train"),
    ("gelu-tanh", lambda lib, nn: nn.GELU("tanh"), x4(3, 5), "train"),
    ("softmax", lambda lib, nn: nn.Softmax(dim=1), x4(3, 5, 2), "train"),
    ("log-softmax", lambda lib, nn: nn.LogSoftmax(dim=-1), x4(3, 5), "train"),
    ("flatten", lambda lib, nn: nn.Flatten(), x4(2, 3, 4, 5), "train"),
    ("flatten-range", lambda lib, nn: nn.Flatten(0, 2), x4(2, 3, 4, 5), "train"),
    ("identity", lambda lib, nn: nn.Identity(54, unused=True), x4(2, 3), "train"),
    ("dropout-eval", lambda lib, nn: nn.Dropout(0.5), x4(4, 5), "eval"),
    ("dropout-p0", lambda lib, nn: nn.Dropout(0.0), x4(4, 5), "train"),
    (
        "sequential",
        lambda lib, nn: nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(True), nn.Flatten(), nn.Linear(48, 2)
        ),
        x4(2, 2, 4, 4),
        "train",
    ),
    ("cross-entropy", lambda lib, nn: nn.CrossEntropyLoss(), classes((6, 4), 4), "train"),
    (
        "cross-entropy-options",
        lambda lib, nn: nn.CrossEntropyLoss(weight=lib.tensor([1.0, 2.0, 0.5, 1.5]), label_smoothing=0.1),
        classes((6, 4), 4),
        "train",
    ),
    ("cross-entropy-sum-2d", lambda lib, nn: nn.CrossEntropyLoss(reduction="sum"), classes((2, 3, 4, 2), 3), "train"),
    (
        "cross-entropy-ignore",
        lambda lib, nn: nn.CrossEntropyLoss(ignore_index=1, reduction="none"),
        classes((6, 3), 3),
        "train",
    ),
    ("nll", lambda lib, nn: nn.NLLLoss(weight=lib.tensor([1.0, 3.0, 0.5])), classes((6, 3), 3), "train"),
    ("bce", lambda lib, nn: nn.BCELoss(), probabilities((4, 3)), "train"),
    (
        "bce-weight-sum",
        lambda lib, nn: nn.BCELoss(weight=lib.tensor([1.0, 2.0, 0.5]), reduction="sum"),
        probabilities((4, 3)),
        "train",
    ),
    ("bce-logits", lambda lib, nn: nn.BCEWithLogitsLoss(), pairs((4, 3)), "train"),
    (
        "bce-logits-posweight",
        lambda lib, nn: nn.BCEWithLogitsLoss(pos_weight=lib.tensor([3.0, 1.0, 0.5]), reduction="none"),
        probabilities((4, 3)),
        "train",
    ),
    ("mse", lambda lib, nn: nn.MSELoss(), pairs((4, 3)), "train"),
    ("mse-none", lambda lib, nn: nn.MSELoss(reduction="none"), pairs((4, 3)), "train"),
    ("l1", lambda lib, nn: nn.L1Loss(reduction="sum"), pairs((4, 3)), "train"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("build, make_inputs, mode", [case[1:] for case in LAYERS], ids=[case[0] for case in LAYERS])
def test_layer_matches_torch(torch, build, make_inputs, mode, dtype):
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    generator = torch.Generator().manual_seed(0)
    layer_t = build(torch, torch.nn).to(torch_dtype)
    randomise(torch, layer_t, generator)
    layer_m = build(tm, nn).to(dtype)
    # Same parameter and buffer names, shapes and dtypes as PyTorch's.
    expected = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in layer_t.state_dict().items()}
    assert {k: (v.shape, str(v.dtype)) for k, v in layer_m.state_dict().items()} == expected
    assert to_tinymed(layer_t, layer_m) == ([], [])
    layer_t.train(mode == "train")
    layer_m.train(mode == "train")

    def as_input(array, requires_grad):  # float inputs in the layer's dtype; targets Fixed
        if array.dtype.kind != "f":
            return array
        return array.astype(dtype) if requires_grad else Fixed(array.astype(dtype))

    inputs = [as_input(a, grad) for a, grad in make_inputs(np.random.default_rng(1))]
    # Outputs, gradients of the inputs and parameters, and (training-mode BatchNorm) the
    # running statistics after the forward pass, as PyTorch's.
    out_m, _ = matches_torch(torch, layer_m, layer_t, *inputs)
    assert out_m.dtype == dtype


# --------------------------------------------------------------------------- multi-head attention


def _mha_pair(torch, embed_dim=8, num_heads=2, bias=True, batch_first=True, dtype=np.float64):
    generator = torch.Generator().manual_seed(3)
    layer_t = torch.nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=batch_first)
    layer_t = layer_t.to(getattr(torch, np.dtype(dtype).name))
    randomise(torch, layer_t, generator)
    layer_m = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=batch_first).to(dtype)
    to_tinymed(layer_t, layer_m)
    return layer_t, layer_m


causal = np.triu(np.ones((3, 4), dtype=bool), 1)
padding = np.array([[False, False, True, False], [True, False, False, False]])
rng_masks = np.random.default_rng(7)
MHA_CASES = [
    ("plain", {}, {}),
    ("no-weights", {}, dict(need_weights=False)),
    ("per-head-weights", {}, dict(average_attn_weights=False)),
    ("key-padding-bool", dict(key_padding_mask=padding), {}),
    ("key-padding-float", dict(key_padding_mask=np.where(padding, -np.inf, rng_masks.standard_normal((2, 4)))), {}),
    ("causal-bool", dict(attn_mask=causal), {}),
    ("float-mask", dict(attn_mask=rng_masks.standard_normal((3, 4))), {}),
    ("per-head-bool-mask", dict(attn_mask=rng_masks.random((4, 3, 4)) < 0.3), {}),
    (
        "causal-and-padding",
        dict(attn_mask=causal, key_padding_mask=np.array([[False, False, False, True], [False, True, False, False]])),
        dict(average_attn_weights=False),
    ),
    ("no-bias", {}, dict(bias=False)),
    ("seq-first", {}, dict(batch_first=False)),
]


@pytest.mark.parametrize("masks, options", [c[1:] for c in MHA_CASES], ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_matches_torch(torch, masks, options):
    options = dict(options)
    layer_options = {k: options.pop(k) for k in ("bias", "batch_first") if k in options}
    layer_t, layer_m = _mha_pair(torch, **layer_options)
    rng = np.random.default_rng(5)
    q, kv = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 8))
    if layer_options.get("batch_first") is False:
        q, kv = q.transpose(1, 0, 2).copy(), kv.transpose(1, 0, 2).copy()
    tensors_t = [torch.tensor(a, requires_grad=True) for a in (q, kv, kv + 0.5)]
    tensors_m = [tm.tensor(a, requires_grad=True) for a in (q, kv, kv + 0.5)]
    masks_t = {k: torch.tensor(v) for k, v in masks.items()}
    masks_m = {k: tm.tensor(v) for k, v in masks.items()}
    out_t, w_t = layer_t(*tensors_t, **masks_t, **options)
    out_m, w_m = layer_m(*tensors_m, **masks_m, **options)
    assert_close(out_m.numpy(), out_t.detach().numpy(), "output")
    if options.get("need_weights", True):
        assert w_m.shape == tuple(w_t.shape)
        assert_close(w_m.numpy(), w_t.detach().numpy(), "attention weights")
    else:
        assert w_m is None and w_t is None
    upstream = rng.standard_normal(out_m.shape)
    (out_t * torch.tensor(upstream)).sum().backward()
    (out_m * tm.tensor(upstream)).sum().backward()
    for name, t, m in zip(("query", "key", "value"), tensors_t, tensors_m):
        assert_close(m.grad, t.grad.numpy(), f"gradient of {name}")
    grads_t = dict(layer_t.named_parameters())
    for name, p in layer_m.named_parameters():
        assert_close(p.grad, grads_t[name].grad.numpy(), f"gradient of {name}")


def test_multihead_attention_is_also_named_with_a_capital_h():
    assert nn.MultiHeadAttention is nn.MultiheadAttention


def test_multihead_attention_unbatched_float32(torch):
    layer_t, layer_m = _mha_pair(torch, dtype=np.float32)
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    out_t, w_t = layer_t(*(torch.tensor(x),) * 3)
    out_m, w_m = layer_m(*(tm.tensor(x),) * 3)
    assert out_m.shape == (5, 8) and w_m.shape == (5, 5)
    assert_close(out_m.numpy(), out_t.detach().numpy(), "output")
    assert_close(w_m.numpy(), w_t.detach().numpy(), "weights")


def test_multihead_attention_dropout_only_in_training_and_bad_shapes():
    layer = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = tm.randn(2, 3, 8)
    layer.eval()
    first, _ = layer(x, x, x)
    np.testing.assert_array_equal(layer(x, x, x)[0].numpy(), first.numpy())
    layer.train()
    assert not np.allclose(layer(x, x, x)[0].numpy(), first.numpy())
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="key_padding_mask"):
        layer(x, x, x, key_padding_mask=tm.zeros(3, 2).bool())
    with pytest.raises(ValueError, match="attn_mask"):
        layer(x, x, x, attn_mask=tm.zeros(2, 2).bool())
    with pytest.raises(ValueError, match="query"):
        layer(tm.randn(2, 3, 6), x, x)


# --------------------------------------------------------------------------- default initialisation


@pytest.mark.parametrize(
    "build, fan_in",
    [
        (lambda nn: nn.Linear(150, 300), 150),
        (lambda nn: nn.Conv2d(16, 32, 3), 16 * 9),
        (lambda nn: nn.ConvTranspose2d(16, 24, 4), 24 * 16),
    ],
    ids=["linear", "conv", "convT"],
)
def test_default_init_matches_torch_bounds(torch, build, fan_in):
    tm.manual_seed(0)
    torch.manual_seed(0)
    layer_m, layer_t = build(nn), build(torch.nn)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for name in ("weight", "bias"):
        ours, theirs = getattr(layer_m, name).numpy(), getattr(layer_t, name).detach().numpy()
        assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
        assert ours.std() == pytest.approx(bound / math.sqrt(3), rel=0.1 if name == "weight" else 0.35)
        assert ours.std() == pytest.approx(theirs.std(), rel=0.1 if name == "weight" else 0.5)
    assert layer_m.weight.dtype == np.float32


def test_default_init_of_normalisation_and_attention():
    bn, ln = nn.BatchNorm2d(4), nn.LayerNorm(6)
    for t, value in (
        (bn.weight, 1),
        (bn.bias, 0),
        (bn.running_mean, 0),
        (bn.running_var, 1),
        (ln.weight, 1),
        (ln.bias, 0),
    ):
        np.testing.assert_array_equal(t.numpy(), value)
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == np.int64
    mha = nn.MultiheadAttention(32, 4)
    xavier = math.sqrt(6 / (32 + 96))
    weight = mha.in_proj_weight.numpy()
    assert weight.shape == (96, 32) and np.abs(weight).max() <= xavier
    assert weight.std() == pytest.approx(xavier / math.sqrt(3), rel=0.1)
    np.testing.assert_array_equal(mha.in_proj_bias.numpy(), 0)
    np.testing.assert_array_equal(mha.out_proj.bias.numpy(), 0)
    assert np.abs(mha.out_proj.weight.numpy()).max() <= 1 / math.sqrt(32)


def test_init_gains_and_fans_match_torch(torch):
    for name, param in [
        ("linear", None),
        ("sigmoid", None),
        ("tanh", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("selu", None),
        ("conv2d", None),
    ]:
        assert nn.init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))
    for shape in [(3, 4), (5, 2, 3, 3), (2, 6, 4)]:
        assert nn.init._calculate_fan_in_and_fan_out(tm.zeros(*shape)) == torch.nn.init._calculate_fan_in_and_fan_out(
            torch.zeros(shape)
        )


def test_init_functions_follow_their_formulas():
    with pytest.raises(ValueError, match="fewer than 2"):
        nn.init.xavier_uniform_(tm.zeros(5))
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_normal_(tm.zeros(3, 3), mode="fan_avg")

    tm.manual_seed(1)
    w = tm.zeros(400, 200)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 400), rel=0.05)
    nn.init.xavier_normal_(w, gain=2.0)
    assert w.numpy().std() == pytest.approx(2 * math.sqrt(2 / 600), rel=0.05)
    nn.init.kaiming_uniform_(w, a=0.2)
    assert np.abs(w.numpy()).max() <= math.sqrt(3) * math.sqrt(2 / 1.04) / math.sqrt(200)
    nn.init.uniform_(w, -2, 3)
    assert -2 <= w.numpy().min() and w.numpy().max() < 3 and w.dtype == np.float32
    nn.init.normal_(w, 5.0, 0.5)
    assert w.numpy().mean() == pytest.approx(5.0, abs=0.01)
    nn.init.constant_(w, 0.25)
    np.testing.assert_array_equal(w.numpy(), 0.25)

    # The DCGAN tutorial initialises through .data, a Tensor sharing the parameter's array, as in PyTorch.
    conv = nn.Conv2d(3, 8, 4)
    nn.init.normal_(conv.weight.data, 0.0, 0.02)
    nn.init.constant_(conv.bias.data, 0)
    assert conv.weight.numpy().std() == pytest.approx(0.02, rel=0.2)
    np.testing.assert_array_equal(conv.bias.numpy(), 0)
    with pytest.raises(TypeError, match="nn.init"):
        nn.init.zeros_([1.0, 2.0])


def test_manual_seed_makes_initialisation_reproducible():
    tm.manual_seed(42)
    first = nn.Linear(4, 3).state_dict()
    tm.manual_seed(42)
    second = nn.Linear(4, 3).state_dict()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])


# --------------------------------------------------------------------------- train / eval behaviour


def test_batchnorm_train_eval_and_cumulative_momentum(torch):
    bn_t, bn_m = torch.nn.BatchNorm2d(3, momentum=None).double(), nn.BatchNorm2d(3, momentum=None).double()
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 2, 2)) * 3 + 1
        bn_t(torch.tensor(x))
        bn_m(tm.tensor(x))
    assert bn_m.num_batches_tracked.item() == 3
    for key, value in bn_t.state_dict().items():
        assert_close(bn_m.state_dict()[key], value.numpy(), key)
    bn_t.eval()
    bn_m.eval()
    x = rng.standard_normal((1, 3, 2, 2))
    assert_close(bn_m(tm.tensor(x)).numpy(), bn_t(torch.tensor(x)).detach().numpy(), "eval output")
    assert bn_m.num_batches_tracked.item() == 3  # evaluation leaves the statistics alone
    with pytest.raises(ValueError, match="BatchNorm2d: expected 4D"):
        bn_m(tm.randn(2, 3))
    with pytest.raises(ValueError, match="BatchNorm1d: expected 2D or 3D"):
        nn.BatchNorm1d(3)(tm.randn(2, 3, 4, 4))


def test_dropout_train_and_eval():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.25)))
    dropout = model[1][0]
    x = tm.ones(200, 50)
    assert dropout.training
    y = dropout(x).numpy()
    kept = y != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.02)
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    model.eval()
    assert not dropout.training and not model.training
    np.testing.assert_array_equal(dropout(x).numpy(), x.numpy())
    model.train()
    assert dropout.training
    with pytest.raises(ValueError, match="Dropout: p"):
        nn.Dropout(1.5)


# --------------------------------------------------------------------------- Module machinery


def composite(lib_nn):
    """The same small model in torch.nn or tinymed.nn: nested Sequentials, a custom
    Module with a buffer, attention, every layer kind."""

    class Block(lib_nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = lib_nn.Conv2d(2, 4, 3, padding=1, bias=False)
            self.bn = lib_nn.BatchNorm2d(4)
            self.act = lib_nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

    class Net(lib_nn.Module):
        def __init__(self):
            super().__init__()
            self.features = lib_nn.Sequential(
                Block(), lib_nn.MaxPool2d(2), lib_nn.ConvTranspose2d(4, 3, 4, 2, 1), lib_nn.AvgPool2d(2)
            )
            self.pool = lib_nn.AdaptiveAvgPool2d((2, 2))
            self.flatten = lib_nn.Flatten()
            self.attn = lib_nn.MultiheadAttention(4, 2, batch_first=True)
            self.head = lib_nn.Sequential(
                lib_nn.Linear(12, 8),
                lib_nn.LayerNorm(8),
                lib_nn.GELU(),
                lib_nn.Dropout(0.1),
                lib_nn.Linear(8, 1),
                lib_nn.Sigmoid(),
            )
            self.extra = lib_nn.Tanh()

        def forward(self, x):
            return self.head(self.flatten(self.pool(self.features(x))))

    return Net()


def test_composite_state_dict_names_modules_and_repr_match_torch(torch):
    net_t, net_m = composite(torch.nn), composite(nn)
    assert [(k, tuple(v.shape)) for k, v in net_t.state_dict().items()] == [
        (k, v.shape) for k, v in net_m.state_dict().items()
    ]
    assert [k for k, _ in net_t.named_parameters()] == [k for k, _ in net_m.named_parameters()]
    assert [k for k, _ in net_t.named_buffers()] == [k for k, _ in net_m.named_buffers()]
    assert [k for k, _ in net_t.named_modules()] == [k for k, _ in net_m.named_modules()]
    assert [k for k, _ in net_t.named_children()] == [k for k, _ in net_m.named_children()]
    assert len(list(net_m.parameters())) == len(list(net_t.parameters()))
    assert len(list(net_m.parameters(recurse=False))) == 0
    # Reprs agree line for line, except that PyTorch's attention projection has a longer class name.
    assert repr(net_m) == repr(net_t).replace("NonDynamicallyQuantizableLinear", "Linear")

    to_tinymed(net_t, net_m)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    net_t.eval()
    net_m.eval()
    assert_close(net_m(tm.tensor(x)).numpy(), net_t(torch.tensor(x)).detach().numpy(), "composite forward")


def test_apply_visits_children_before_parents_and_named_modules():
    net = composite(nn)
    visited = []
    assert net.apply(lambda m: visited.append(m)) is net
    assert visited[-1] is net and len(visited) == len(list(net.modules()))
    assert visited.index(net.features[0].conv) < visited.index(net.features[0]) < visited.index(net.features)
    names = dict(net.named_modules())
    assert names["features.0.bn"] is net.features[0].bn and names[""] is net
    assert net.get_submodule("head.1") is net.head[1]
    assert isinstance(net.get_submodule("attn.out_proj"), nn.Linear)
    with pytest.raises(AttributeError, match="no submodule"):
        net.get_submodule("head.9")


def test_train_eval_zero_grad_and_requires_grad():
    net = composite(nn)
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="bool"):
        net.train("yes")
    net(tm.randn(2, 2, 8, 8)).sum().backward()
    assert net.head[0].weight.grad is not None
    net.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(net.head[0].weight.grad, 0)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.features.requires_grad_(False)
    assert not any(p.requires_grad for p in net.features.parameters())
    assert all(p.requires_grad for p in net.head.parameters())


def test_registration_rules():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(tm.ones(3))
            self.register_buffer("scale", tm.full((3,), 2.0))
            self.register_buffer("cache", tm.zeros(3), persistent=False)
            self.plain = tm.zeros(2)  # a plain tensor attribute is not state
            self.child = nn.Linear(3, 1)

        def forward(self, x):
            return self.child(x * self.weight * self.scale)

    m = Custom()
    assert list(m.state_dict()) == ["weight", "scale", "child.weight", "child.bias"]
    assert [k for k, _ in m.named_buffers()] == ["scale", "cache"]
    assert m(tm.ones(4, 3)).shape == (4, 1)
    m.scale = tm.full((3,), 4.0)  # assigning a tensor to a buffer name replaces the buffer
    assert m.state_dict()["scale"][0] == 4.0
    with pytest.raises(TypeError, match="parameter 'weight'"):
        m.weight = tm.ones(3)
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("plain", tm.zeros(1))
    m.child = None
    assert "child.weight" not in m.state_dict()
    del m.weight
    assert "weight" not in dict(m.named_parameters())

    class Early(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(tm.ones(1))

    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(tied.parameters())) == 2  # a shared layer's parameters come once
    assert len(list(tied.named_modules())) == 3


def test_parameter_is_a_tensor_sharing_data():
    data = tm.randn(2, 3)
    p = nn.Parameter(data)
    assert isinstance(p, tm.Tensor) and p.requires_grad and p.array is data.array
    assert not nn.Parameter(tm.ones(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert type(p * 2) is tm.Tensor
    with pytest.raises(TypeError):
        nn.Parameter(tm.tensor([1, 2]))


def test_load_state_dict_errors_and_strict_false():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    good = net.state_dict()
    before = net[0].weight.numpy().copy()
    bad = dict(good)
    bad["0.weight"] = np.zeros((4, 2), np.float32)
    bad["0.extra"] = np.zeros(1)
    del bad["1.running_var"]
    with pytest.raises(ValueError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    assert "Sequential" in message and '"0.extra"' in message and '"1.running_var"' in message
    assert "size mismatch for 0.weight" in message and "(4, 2)" in message and "(4, 3)" in message
    np.testing.assert_array_equal(net[0].weight.numpy(), before)  # nothing was copied

    with pytest.raises(TypeError, match="load_state_dict: state_dict must be a mapping .* got Tensor"):
        net.load_state_dict(tm.zeros(3))

    del bad["0.weight"]
    result = net.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["0.weight", "1.running_var"] and result.unexpected_keys == ["0.extra"]
    with pytest.raises(ValueError, match="size mismatch"):
        net.load_state_dict({"0.bias": np.zeros(5)}, strict=False)


def test_state_dict_copies_and_loads_tensors_and_casts():
    net = nn.Linear(3, 2)
    saved = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    net.weight.data += 1  # training goes on ...
    assert not np.array_equal(saved["weight"], net.weight.numpy())  # ... the saved state does not move
    kept = net.state_dict(keep_vars=True)
    assert kept["weight"] is net.weight
    other = nn.Linear(3, 2)
    other.load_state_dict({"weight": tm.tensor(saved["weight"]), "bias": saved["bias"].astype(np.float64)})
    np.testing.assert_array_equal(other.weight.numpy(), saved["weight"])
    assert other.bias.dtype == np.float32


def test_to_dtype_keeps_parameter_objects():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    weight = net[0].weight
    net(tm.randn(4, 3)).sum().backward()
    assert net.double() is net
    assert net[0].weight is weight and weight.dtype == np.float64 and weight.grad.dtype == np.float64
    assert net[1].running_mean.dtype == np.float64 and net[1].num_batches_tracked.dtype == np.int64
    assert net(tm.randn(4, 3, dtype=np.float64)).dtype == np.float64
    net.float()
    assert weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        net.to(np.int32)
    with pytest.raises(TypeError, match="expected a backend"):
        net.to("gpu0")


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1:], nn.Sequential)
    assert list(seq[1:].state_dict()) == ["2.weight", "2.bias"]  # a slice keeps the names
    with pytest.raises(IndexError, match="Sequential"):
        seq[3]
    seq.append(nn.Sigmoid())
    assert seq(tm.randn(5, 2)).shape == (5, 1)
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.Tanh()))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.act is named[1]

    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    blocks.append(nn.Linear(2, 1))
    assert len(blocks) == 4 and list(blocks.state_dict())[-1] == "3.bias"
    blocks[0] = nn.Identity()
    assert isinstance(blocks[0], nn.Identity) and len(list(blocks.parameters())) == 6

    heads = nn.ModuleDict({"a": nn.Linear(2, 1)})
    heads["b"] = nn.Linear(2, 3)
    assert "b" in heads and list(heads) == ["a", "b"] and list(heads.state_dict())[0] == "a.weight"
    del heads["a"]
    assert list(heads.keys()) == ["b"]


def test_forward_hooks():
    layer = nn.Linear(3, 2)
    seen = []
    handle = layer.register_forward_hook(
        lambda module, args, output: seen.append((module, args[0].shape, output.shape))
    )
    pre = layer.register_forward_pre_hook(lambda module, args: (args[0] * 0,))
    out = layer(tm.ones(4, 3))
    assert seen == [(layer, (4, 3), (4, 2))]
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(layer.bias.numpy(), (4, 2)))
    handle.remove()
    pre.remove()
    layer(tm.ones(1, 3))
    assert len(seen) == 1


def test_functional_alias_is_the_same_module():
    import tinymed.functional
    import tinymed.nn.functional as nnF

    assert nnF is tinymed.functional is F is nn.functional
    assert nnF.relu is tinymed.functional.relu


def test_to_backend_moves_parameters_buffers_and_grads_in_place():
    try:
        others = [name for name in tm.backends.available() if name != "numpy"]
    except ImportError as error:  # the kernels ship as tinymed.kernels once installed
        pytest.skip(f"GPU backends not importable here ({error}); install with pip install -e .")
    if not others:
        pytest.skip("no backend besides NumPy can run here")
    tm.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    x = tm.randn(4, 3)
    expected = net(x).numpy()
    weight = net[0].weight
    net(x).sum().backward()
    net.to(others[0])
    assert net[0].weight is weight and weight.backend == others[0] and net[1].running_mean.backend == others[0]
    assert weight.grad is not None and weight.grad.backend == others[0]
    np.testing.assert_allclose(net(x.to(others[0])).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert all(isinstance(v, np.ndarray) for v in net.state_dict().values())
    net.to("numpy")
    assert weight.backend == "numpy" and weight.grad.backend == "numpy" and isinstance(weight.grad.array, np.ndarray)


@pytest.mark.parametrize(
    "args, message",
    [((4.5, 2), "in_features must be an int >= 0, got 4.5"), ((4, -2), "out_features must be an int >= 0, got -2")],
)
def test_linear_refuses_a_size_that_is_not_a_count(args, message):
    with pytest.raises(ValueError, match=f"Linear: {message}"):
        nn.Linear(*args)


@pytest.mark.parametrize(
    "module, shape, message",
    [
        (
            lambda: nn.BatchNorm2d(3),
            (2, 4, 5, 5),
            r"BatchNorm2d: built for 3 channels, but the input's dim 1 \(N, C, ...\) has 4",
        ),
        (
            lambda: nn.GroupNorm(2, 4),
            (2, 6, 4, 4),
            r"GroupNorm: built for 4 channels, but the input's dim 1 \(N, C, ...\) has 6",
        ),
    ],
)
def test_a_normalisation_names_the_channels_it_was_built_for(module, shape, message):
    with pytest.raises(ValueError, match=message):
        module()(tm.randn(*shape))
