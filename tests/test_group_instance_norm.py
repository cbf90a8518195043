"""GroupNorm and InstanceNorm1d/2d against PyTorch (functional and layers: forward,
gradients, running statistics in training and evaluation, state-dict layout, unbatched
inputs), gradcheck, errors; and BatchNorm state dicts without ``num_batches_tracked``,
loaded as PyTorch loads them."""

import numpy as np
import pytest
from helpers import matches_torch, normal

import tinymed as tm
import tinymed.functional as F
import tinymed.nn as nn
from tinymed.gradcheck import gradcheck


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "shape, groups, affine",
    [((2, 6, 4, 5), 3, True), ((2, 6, 4, 5), 1, False), ((3, 4, 7), 4, True), ((2, 4), 2, True)],
    ids=["image-3-groups", "layer-like-1-group", "sequence-depthwise", "no-spatial"],
)
def test_group_norm_matches_torch(torch, shape, groups, affine, dtype):
    rng = np.random.default_rng(0)
    arrays = [normal(rng, shape, dtype)] + ([normal(rng, shape[1:2], dtype) for _ in range(2)] if affine else [])
    matches_torch(
        torch,
        lambda x, *wb: F.group_norm(x, groups, *wb, eps=1e-3),
        lambda x, *wb: torch.nn.functional.group_norm(x, groups, *wb, eps=1e-3),
        *arrays,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("use_input_stats", [True, False], ids=["input-stats", "running-stats"])
def test_instance_norm_matches_torch(torch, use_input_stats, dtype):
    rng = np.random.default_rng(1)
    x, w, b = normal(rng, (2, 3, 4, 5), dtype), normal(rng, (3,), dtype), normal(rng, (3,), dtype)
    mean, var = normal(rng, (3,), dtype), rng.uniform(0.5, 2, 3).astype(dtype)
    stats = {}

    def call(lib_f, make):
        running = [make(mean.copy()), make(var.copy())]
        stats[lib_f] = running
        return lambda x, w, b: lib_f.instance_norm(x, *running, w, b, use_input_stats, 0.3, 1e-4)

    matches_torch(torch, call(F, tm.tensor), call(torch.nn.functional, torch.tensor), x, w, b)
    for ours, theirs in zip(stats[F], stats[torch.nn.functional]):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, err_msg="running statistics")


# (id, build(nn), input shape, mode)
LAYERS = [
    ("groupnorm", lambda nn: nn.GroupNorm(2, 4), (3, 4, 5, 5), "train"),
    ("groupnorm-noaffine", lambda nn: nn.GroupNorm(4, 4, affine=False), (2, 4, 3, 3), "train"),
    ("groupnorm-nobias", lambda nn: nn.GroupNorm(1, 4, eps=1e-3, bias=False), (2, 4, 6), "train"),
    ("instancenorm2d", lambda nn: nn.InstanceNorm2d(3), (2, 3, 4, 5), "train"),
    ("instancenorm2d-affine", lambda nn: nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 5), "eval"),
    ("instancenorm2d-stats-train", lambda nn: nn.InstanceNorm2d(3, track_running_stats=True), (2, 3, 4, 5), "train"),
    (
        "instancenorm2d-stats-eval",
        lambda nn: nn.InstanceNorm2d(3, affine=True, track_running_stats=True, momentum=0.5),
        (2, 3, 4, 5),
        "eval",
    ),
    ("instancenorm2d-unbatched", lambda nn: nn.InstanceNorm2d(3, affine=True), (3, 4, 5), "train"),
    ("instancenorm1d", lambda nn: nn.InstanceNorm1d(4, affine=True, track_running_stats=True), (2, 4, 6), "train"),
    ("instancenorm1d-unbatched", lambda nn: nn.InstanceNorm1d(4), (4, 6), "train"),
]


@pytest.mark.parametrize("build, shape, mode", [c[1:] for c in LAYERS], ids=[c[0] for c in LAYERS])
def test_norm_layers_match_torch(torch, build, shape, mode):
    layer_t, layer_m = build(torch.nn).double(), build(nn).double()
    assert repr(layer_m) == repr(layer_t)
    state = layer_t.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v.shape for k, v in layer_m.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the defaults, so that a forgotten weight or statistic shows
        for t in state.values():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5)
    layer_m.load_state_dict({k: v.numpy() for k, v in state.items()})
    layer_t.train(mode == "train")
    layer_m.train(mode == "train")
    # Outputs, input and parameter gradients, and the running statistics after the forward.
    matches_torch(torch, layer_m, layer_t, normal(np.random.default_rng(2), shape))


def test_norm_gradchecks():
    rng = np.random.default_rng(3)
    x, w, b = (tm.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 4, 3, 2), (4,), (4,)))
    assert gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), [x, w, b])
    assert gradcheck(lambda x, w, b: F.instance_norm(x, weight=w, bias=b), [x, w, b])
    stats = tm.tensor(rng.standard_normal(4)), tm.tensor(rng.uniform(0.5, 2, 4))
    assert gradcheck(lambda x, w, b: F.instance_norm(x, *stats, w, b, use_input_stats=False), [x, w, b])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: nn.GroupNorm(3, 4), r"GroupNorm: num_channels \(4\) must be divisible by num_groups \(3\)"),
        (lambda: F.group_norm(tm.randn(2, 4, 3), 3), r"group_norm: num_groups \(3\) must be a positive divisor"),
        (lambda: F.group_norm(tm.randn(1, 4), 4), r"group_norm: expected more than 1 value per group"),
        (lambda: F.group_norm(tm.randn(2, 4, 3), 2, tm.randn(3)), r"group_norm: weight must have shape \(4,\)"),
        (lambda: F.instance_norm(tm.randn(2, 4)), r"instance_norm: input must be \(N, C, \*\) with at least one"),
        (lambda: F.instance_norm(tm.randn(2, 4, 1)), r"instance_norm: expected more than 1 spatial element"),
        (lambda: F.instance_norm(tm.randn(2, 4, 3), use_input_stats=False), r"running_mean is needed"),
        (lambda: nn.InstanceNorm2d(3)(tm.randn(2, 3)), r"InstanceNorm2d: expected 3D or 4D input"),
        (lambda: nn.InstanceNorm2d(4, affine=True)(tm.randn(2, 3, 4, 4)), r"instance_norm: weight must have shape"),
    ],
    ids=["layer-groups", "groups", "one-value", "weight", "dims", "one-position", "no-stats", "layer-dims", "features"],
)
def test_norm_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- state dicts without num_batches_tracked


def _model(lib):
    return lib.nn.Sequential(
        lib.nn.Conv2d(1, 3, 3), lib.nn.BatchNorm2d(3), lib.nn.InstanceNorm2d(3, affine=True, track_running_stats=True)
    )


def test_batchnorm_state_dict_without_num_batches_tracked_loads_as_in_torch(torch):
    model_t, model_m = _model(torch), _model(tm)
    model_m[1].num_batches_tracked.fill_(5)
    model_t[1].num_batches_tracked.fill_(5)
    # A plain dict of arrays declares no layout version: both frameworks fill the count in
    # from the model and report nothing missing, strict or not.
    exported = {k: v.numpy() for k, v in model_t.state_dict().items() if not k.endswith("num_batches_tracked")}
    for strict in (True, False):
        assert tuple(model_m.load_state_dict(exported, strict=strict)) == ([], [])
        assert tuple(model_t.load_state_dict({k: torch.tensor(v) for k, v in exported.items()}, strict=strict)) == (
            [],
            [],
        )
    assert model_m[1].num_batches_tracked.item() == model_t[1].num_batches_tracked.item() == 5
    for key, value in exported.items():
        np.testing.assert_array_equal(model_m.state_dict()[key], value, err_msg=key)
    # A count that is there is loaded.
    assert model_m.load_state_dict({**exported, "1.num_batches_tracked": np.array(7)}) == ([], [])
    assert model_m[1].num_batches_tracked.item() == 7


def test_a_torch_state_dict_that_declares_version_2_must_have_the_count(torch):
    model_t, model_m = _model(torch), _model(tm)
    state = model_t.state_dict()  # an OrderedDict whose _metadata says BatchNorm layout version 2
    del state["1.num_batches_tracked"]
    with pytest.raises(RuntimeError, match='Missing key.*"1.num_batches_tracked"'):
        model_t.load_state_dict(state)
    with pytest.raises(ValueError, match='Missing key.*"1.num_batches_tracked"'):
        model_m.load_state_dict(state)
    assert model_m.load_state_dict(state, strict=False).missing_keys == ["1.num_batches_tracked"]
    assert model_t.load_state_dict(state, strict=False).missing_keys == ["1.num_batches_tracked"]


def test_other_missing_keys_are_still_missing():
    model = _model(tm)
    state = {k: v for k, v in model.state_dict().items() if k not in ("1.num_batches_tracked", "1.running_var")}
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "1.running_var"\.'):
        model.load_state_dict(state)
    untracked = nn.BatchNorm2d(3, track_running_stats=False)
    with pytest.raises(ValueError, match='Unexpected key.*"num_batches_tracked"'):
        untracked.load_state_dict({"weight": np.ones(3), "bias": np.zeros(3), "num_batches_tracked": np.array(0)})
