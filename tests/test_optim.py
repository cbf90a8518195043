"""tinymed.optim against torch.optim: the same parameters and gradients give the same
updates, checkpoints resume bit-identically, and every schedule gives PyTorch's rates."""

import copy

import numpy as np
import pytest

import tinymed as tm
import tinymed.nn as nn
import tinymed.optim as optim

SHAPES = [(3, 4), (5,)]


def make_params(lib, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [lib.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True) for shape in SHAPES]


def gradients(step, dtype=np.float64):
    """The gradients fed at ``step``: fixed, different every step, some elements tiny."""
    rng = np.random.default_rng(100 + step)
    return [(rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 10.0], size=shape)).astype(dtype) for shape in SHAPES]


def run_steps(optimizer, params, lib, steps, first=0):
    history = []
    for step in range(first, first + steps):
        optimizer.zero_grad()
        for p, g in zip(params, gradients(step)):
            p.grad = lib.from_numpy(g.copy())
        optimizer.step()
        history.append([np.array(p.detach().numpy(), copy=True) for p in params])
    return history


def groups(params, options):
    """Either all params with ``options``, or two groups with per-group overrides."""
    if "groups" not in options:
        return params, options
    options = dict(options)
    per_group = options.pop("groups")
    return [{"params": [params[0]], **per_group[0]}, {"params": [params[1]], **per_group[1]}], options


CONFIGS = [
    ("sgd", "SGD", dict(lr=0.1)),
    ("sgd-default-lr", "SGD", dict()),
    ("sgd-momentum", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd-nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("sgd-dampening-decay", "SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    ("sgd-maximize", "SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("sgd-groups", "SGD", dict(lr=0.05, momentum=0.9, groups=[dict(lr=0.5), dict(momentum=0.1, weight_decay=0.01)])),
    ("adam", "Adam", dict()),
    ("adam-options", "Adam", dict(lr=0.01, betas=(0.5, 0.999), eps=1e-6, weight_decay=0.1)),
    ("adam-low-beta1", "Adam", dict(lr=0.01, betas=(0.3, 0.9))),
    ("adam-amsgrad", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("adam-maximize", "Adam", dict(lr=0.01, maximize=True)),
    ("adam-groups", "Adam", dict(lr=0.01, groups=[dict(betas=(0.8, 0.99)), dict(lr=0.1, amsgrad=True)])),
    ("adamw", "AdamW", dict()),
    ("adamw-options", "AdamW", dict(lr=0.05, weight_decay=0.1, betas=(0.7, 0.95))),
    ("adamw-amsgrad", "AdamW", dict(lr=0.05, amsgrad=True)),
    ("rmsprop", "RMSprop", dict()),
    ("rmsprop-momentum-decay", "RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8, weight_decay=0.1, eps=1e-6)),
    ("rmsprop-centered", "RMSprop", dict(lr=0.01, centered=True, momentum=0.5, maximize=True)),
    ("rmsprop-groups", "RMSprop", dict(lr=0.01, groups=[dict(alpha=0.5), dict(centered=True, lr=0.001)])),
]


@pytest.mark.parametrize("name, options", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_optimizer_matches_torch(torch, name, options):
    params_t, params_m = make_params(torch), make_params(tm)
    args_t, kwargs = groups(params_t, options)
    args_m, _ = groups(params_m, options)
    opt_t = getattr(torch.optim, name)(args_t, **kwargs)
    opt_m = getattr(optim, name)(args_m, **kwargs)
    for step, (after_t, after_m) in enumerate(
        zip(run_steps(opt_t, params_t, torch, 6), run_steps(opt_m, params_m, tm, 6))
    ):
        for a, b in zip(after_m, after_t):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")
    # PyTorch's state-dict structure: the same state names and values per parameter index,
    # and every group option we keep is one PyTorch keeps too.
    state_t, state_m = opt_t.state_dict(), opt_m.state_dict()
    assert state_m["state"].keys() == state_t["state"].keys()
    for index, values in state_t["state"].items():
        assert state_m["state"][index].keys() == values.keys()
        for key, value in values.items():
            np.testing.assert_allclose(state_m["state"][index][key], value.numpy(), rtol=1e-6)
    for group_t, group_m in zip(state_t["param_groups"], state_m["param_groups"]):
        assert set(group_m) <= set(group_t)
        assert all(group_m[key] == group_t[key] for key in group_m)


@pytest.mark.parametrize(
    "name, options",
    [c[1:] for c in CONFIGS if c[0] in ("sgd-nesterov", "adam-amsgrad", "adamw", "sgd-groups", "rmsprop-centered")],
)
def test_state_dict_round_trip_resumes_bit_identically(name, options):
    params = make_params(tm)
    args, kwargs = groups(params, options)
    straight = getattr(optim, name)(args, **kwargs)
    expected = run_steps(straight, params, tm, 6)[-1]

    params = make_params(tm)
    args, _ = groups(params, options)
    first = getattr(optim, name)(args, **kwargs)
    run_steps(first, params, tm, 3)
    checkpoint = first.state_dict()
    pristine = copy.deepcopy(checkpoint)
    weights = [p.numpy().copy() for p in params]

    resumed_params = [tm.tensor(w, requires_grad=True) for w in weights]
    args, _ = groups(resumed_params, options)
    resumed = getattr(optim, name)(args, lr=123.0)  # options come back from the checkpoint
    resumed.load_state_dict(checkpoint)
    after = run_steps(resumed, resumed_params, tm, 3, first=3)[-1]
    for a, b in zip(after, expected):
        np.testing.assert_array_equal(a, b)
    # The checkpoint holds NumPy copies: training on after loading it did not change it.
    for index, values in checkpoint["state"].items():
        for key, value in values.items():
            assert isinstance(value, (int, np.ndarray))
            np.testing.assert_array_equal(value, pristine["state"][index][key])


def test_float32_parameters_stay_float32_and_follow_torch(torch):
    params_t, params_m = make_params(torch, dtype=np.float32), make_params(tm, dtype=np.float32)
    opt_t, opt_m = torch.optim.Adam(params_t, lr=0.01), optim.Adam(params_m, lr=0.01)
    for step in range(3):
        for p_t, p_m, g in zip(params_t, params_m, gradients(step, np.float32)):
            p_t.grad, p_m.grad = torch.from_numpy(g.copy()), tm.from_numpy(g.copy())
        opt_t.step()
        opt_m.step()
    for p_t, p_m in zip(params_t, params_m):
        assert p_m.dtype == np.float32 and opt_m.state[p_m]["exp_avg"].dtype == np.float32
        np.testing.assert_allclose(p_m.numpy(), p_t.detach().numpy(), rtol=1e-5, atol=1e-7)


def test_zero_grad_closure_and_params_without_grad():
    params = make_params(tm)
    opt = optim.SGD(params, lr=0.1)
    params[0].grad = tm.ones(SHAPES[0], dtype=params[0].dtype)
    before = params[1].numpy().copy()
    assert opt.step(closure=lambda: 42.0) == 42.0
    np.testing.assert_array_equal(params[1].numpy(), before)  # no gradient, no update
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(params[0].grad, 0)
    opt.zero_grad()
    assert params[0].grad is None
    assert "SGD (" in repr(opt) and "lr: 0.1" in repr(opt)


def test_training_a_module_updates_parameters_in_place():
    layer = nn.Linear(3, 1)
    weight = layer.weight
    opt = optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        (layer(tm.ones(4, 3)) ** 2).mean().backward()
        opt.step()
    assert layer.weight is weight and weight.dtype == np.float32


def test_bad_arguments():
    params = make_params(tm)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="epsilon"):
        optim.AdamW(params, eps=-1e-8)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="iterable"):
        optim.Adam(params[0])
    with pytest.raises(TypeError, match=r"got the method 'parameters' itself; call it: model.parameters\(\)"):
        optim.Adam(tm.nn.Linear(2, 2).parameters)
    with pytest.warns(UserWarning, match="holds the same parameter more than once"):
        optim.SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int, got 0"):
        optim.lr_scheduler.StepLR(optim.SGD(params, lr=0.1), step_size=0)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": params}, {"params": [params[0]]}])
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([params[0] * 2])
    opt = optim.Adam(params)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Adam([{"params": [params[0]]}, {"params": [params[1]]}]).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="group 0 has 2 parameters"):
        optim.Adam([params[0]]).load_state_dict(opt.state_dict())


# --------------------------------------------------------------------------- schedulers

SCHEDULES = [
    ("step", "SGD", dict(lr=0.1), "StepLR", dict(step_size=7, gamma=0.5)),
    ("multistep", "SGD", dict(lr=0.1), "MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3)),
    ("cosine", "SGD", dict(lr=0.1), "CosineAnnealingLR", dict(T_max=10, eta_min=0.01)),
    ("cosine-zero-min", "Adam", dict(lr=0.1), "CosineAnnealingLR", dict(T_max=7)),
    ("onecycle-sgd", "SGD", dict(lr=0.1, momentum=0.9), "OneCycleLR", dict(max_lr=0.5, total_steps=30)),
    ("onecycle-adam", "Adam", dict(lr=0.1), "OneCycleLR", dict(max_lr=0.01, epochs=5, steps_per_epoch=6)),
    (
        "onecycle-three-phase",
        "AdamW",
        dict(lr=0.1),
        "OneCycleLR",
        dict(max_lr=0.02, total_steps=30, three_phase=True, pct_start=0.25),
    ),
    (
        "onecycle-linear",
        "SGD",
        dict(lr=0.1, momentum=0.9),
        "OneCycleLR",
        dict(max_lr=0.2, total_steps=31, anneal_strategy="linear", div_factor=10.0),
    ),
    ("onecycle-no-momentum", "SGD", dict(lr=0.1), "OneCycleLR", dict(max_lr=0.2, total_steps=30, cycle_momentum=False)),
]


def _schedule(lib_optim, params, opt_name, opt_options, name, options):
    # Two param groups with different rates; OneCycleLR gets one max_lr per group.
    param_groups = [{"params": [params[0]]}, {"params": [params[1]], "lr": opt_options["lr"] / 2}]
    optimizer = getattr(lib_optim, opt_name)(param_groups, **opt_options)
    if name == "OneCycleLR":
        options = dict(options, max_lr=[options["max_lr"], options["max_lr"] * 2])
    scheduler = getattr(lib_optim.lr_scheduler, name)(optimizer, **options)
    return optimizer, scheduler


def _trace(optimizer, scheduler, steps):
    values = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        group = optimizer.param_groups[0]
        values.append(
            (
                scheduler.get_last_lr(),
                [g["lr"] for g in optimizer.param_groups],
                group.get("momentum"),
                group.get("betas"),
            )
        )
    return values


@pytest.mark.parametrize(
    "opt_name, opt_options, name, options", [c[1:] for c in SCHEDULES], ids=[c[0] for c in SCHEDULES]
)
def test_scheduler_matches_torch(torch, opt_name, opt_options, name, options):
    opt_t, sched_t = _schedule(torch.optim, make_params(torch), opt_name, opt_options, name, options)
    opt_m, sched_m = _schedule(optim, make_params(tm), opt_name, opt_options, name, options)
    assert sched_m.get_last_lr() == pytest.approx(sched_t.get_last_lr(), rel=1e-12)
    assert getattr(optim, name) is getattr(optim.lr_scheduler, name)
    steps = 30 if name != "OneCycleLR" else sched_t.total_steps - 1
    for step, (ours, theirs) in enumerate(zip(_trace(opt_m, sched_m, steps), _trace(opt_t, sched_t, steps))):
        for a, b in zip(ours, theirs):
            if b is not None:
                assert np.array(a, dtype=float) == pytest.approx(np.array(b, dtype=float), rel=1e-12, abs=1e-15), (
                    f"step {step}"
                )
    if name == "OneCycleLR":
        with pytest.raises(ValueError, match="total steps"):
            opt_m.step()
            sched_m.step()
            sched_m.step()


def test_scheduler_state_dict_resumes():
    params = make_params(tm)
    opt, sched = _schedule(
        optim, params, "SGD", dict(lr=0.1, momentum=0.9), "OneCycleLR", dict(max_lr=0.5, total_steps=30)
    )
    expected = _trace(opt, sched, 20)[10:]
    opt, sched = _schedule(
        optim, params, "SGD", dict(lr=0.1, momentum=0.9), "OneCycleLR", dict(max_lr=0.5, total_steps=30)
    )
    _trace(opt, sched, 10)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in saved_sched and saved_sched["last_epoch"] == 10
    opt2, sched2 = _schedule(
        optim, params, "SGD", dict(lr=0.1, momentum=0.9), "OneCycleLR", dict(max_lr=0.5, total_steps=30)
    )
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert _trace(opt2, sched2, 10) == expected


def test_scheduler_bad_arguments():
    opt = optim.SGD(make_params(tm), lr=0.1)
    with pytest.raises(TypeError, match="not an Optimizer"):
        optim.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        optim.StepLR(opt, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="total_steps OR"):
        optim.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="pct_start"):
        optim.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        optim.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="max_lr has 3 values"):
        optim.OneCycleLR(opt, max_lr=[0.1, 0.2, 0.3], total_steps=10)
