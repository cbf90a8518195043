"""ReduceLROnPlateau against PyTorch's, step by step, and RMSprop's argument checks.
(RMSprop's trajectories and state-dict resumption are tested with the other optimisers in
test_optim.py.)"""

import math

import numpy as np
import pytest

import tinymed as tm
import tinymed.optim as optim

# A validation loss that improves, stalls, wobbles within the threshold, and improves again.
METRICS = [1.0, 0.8, 0.79995, 0.8, 0.81, 0.8, 0.82, 0.7, 0.7, 0.71, 0.72, 0.73, 0.69, 0.69, 0.7, 0.7, 0.71, 0.7]

PLATEAUS = [
    ("defaults", dict(), METRICS + [0.7] * 10),
    ("patience-1", dict(patience=1, factor=0.5), METRICS),
    ("cooldown", dict(patience=0, cooldown=2, factor=0.5), METRICS),
    ("abs-threshold", dict(patience=1, threshold=0.05, threshold_mode="abs"), METRICS),
    ("max-mode", dict(mode="max", patience=1, factor=0.3), [-m for m in METRICS]),
    ("max-rel", dict(mode="max", patience=1, threshold=0.1), [1 - m for m in METRICS]),
    ("negative-min-rel", dict(patience=1, threshold=0.1), [-m for m in METRICS]),
    ("min-lr-floor", dict(patience=0, factor=0.1, min_lr=[1e-3, 0.0]), METRICS),
    ("eps-stops-tiny-cuts", dict(patience=0, factor=0.9, eps=1e-3), METRICS),
    ("nan-metric", dict(patience=1), [1.0, math.nan, math.nan, 0.5, math.nan]),
]


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is the oracle for tinymed.optim")


def plateau(lib, lib_optim, options):
    """An SGD with two param groups of different rates, and a ReduceLROnPlateau on it."""
    params = [lib.tensor(np.ones(2), requires_grad=True), lib.tensor(np.ones(3), requires_grad=True)]
    optimizer = lib_optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.01}], lr=0.1)
    return optimizer, lib_optim.lr_scheduler.ReduceLROnPlateau(optimizer, **options)


def rates(optimizer, scheduler, metrics):
    history = []
    for metric in metrics:
        scheduler.step(metric)
        history.append(([g["lr"] for g in optimizer.param_groups], scheduler.get_last_lr(), scheduler.num_bad_epochs))
    return history


@pytest.mark.parametrize("options, metrics", [c[1:] for c in PLATEAUS], ids=[c[0] for c in PLATEAUS])
def test_reduce_lr_on_plateau_matches_torch(torch, options, metrics):
    ours = rates(*plateau(tm, optim, options), metrics)
    theirs = rates(*plateau(torch, torch.optim, options), metrics)
    assert ours == theirs  # the same floats: the same multiplications in the same order
    assert any(before[0] != after[0] for before, after in zip(ours, ours[1:])), "no cut: the case tests nothing"


def test_reduce_lr_on_plateau_takes_tensor_metrics_and_resumes_from_its_state_dict():
    optimizer, scheduler = plateau(tm, optim, dict(patience=1, factor=0.5))
    assert scheduler.get_last_lr() == [0.1, 0.01] and scheduler.last_epoch == 0
    rates(optimizer, scheduler, [tm.tensor(m) for m in METRICS[:8]])
    saved = scheduler.state_dict()
    expected = rates(optimizer, scheduler, METRICS[8:])

    resumed_optimizer, resumed = plateau(tm, optim, dict(patience=1, factor=0.5))
    for group, lr in zip(resumed_optimizer.param_groups, saved["_last_lr"]):
        group["lr"] = lr  # the optimizer's own state dict carries these in a real resume
    resumed.load_state_dict(saved)
    assert "optimizer" not in saved and resumed.best == saved["best"]
    assert rates(resumed_optimizer, resumed, METRICS[8:]) == expected


def test_reduce_lr_on_plateau_bad_arguments():
    optimizer, _ = plateau(tm, optim, {})
    with pytest.raises(ValueError, match="factor should be < 1.0, got 1.5"):
        optim.ReduceLROnPlateau(optimizer, factor=1.5)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'down'"):
        optim.ReduceLROnPlateau(optimizer, mode="down")
    with pytest.raises(ValueError, match="threshold_mode must be 'rel' or 'abs'"):
        optim.ReduceLROnPlateau(optimizer, threshold_mode="ratio")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 3"):
        optim.ReduceLROnPlateau(optimizer, min_lr=[0, 0, 0])
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        optim.ReduceLROnPlateau([], patience=1)
    scheduler = optim.ReduceLROnPlateau(optimizer, patience=0, min_lr=[0.0, 0.0])
    optimizer.add_param_group({"params": [tm.tensor([1.0], requires_grad=True)]})
    scheduler.step(1.0)
    with pytest.raises(RuntimeError, match="3 param groups but min_lr gave 2"):
        scheduler.step(2.0)


def test_rmsprop_bad_arguments_and_exports():
    params = [tm.tensor([1.0], requires_grad=True)]
    for name, value in (("learning rate", dict(lr=-1)), ("alpha", dict(alpha=-0.1)), ("momentum", dict(momentum=-1))):
        with pytest.raises(ValueError, match=f"RMSprop: invalid {name}"):
            optim.RMSprop(params, **value)
    assert optim.RMSprop(params).defaults == dict(
        lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False
    )
    assert optim.ReduceLROnPlateau is optim.lr_scheduler.ReduceLROnPlateau
