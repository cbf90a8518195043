"""Weight averaging (tinymed.optim.swa_utils) against PyTorch's, step for step."""

import numpy as np
import pytest

import tinymed
from tinymed import nn
from tinymed.optim import swa_utils as tm_swa
from tinymed.optim.swa_utils import AveragedModel, get_ema_avg_fn


def _twins(torch):
    """A Linear + BatchNorm model in tinymed and in PyTorch with the same weights."""
    tinymed.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()})
    return model, twin


@pytest.mark.parametrize("form", ["avg_fn", "multi_avg_fn"])
@pytest.mark.parametrize("average", ["ema", "swa"])
def test_averaged_model_matches_torch(torch, average, form):
    """Both forms of both averages against PyTorch's ``avg_fn`` (its ``multi_avg_fn`` of the
    mean cannot average BatchNorm's integer step count)."""
    swa_utils = torch.optim.swa_utils
    model, twin = _twins(torch)
    args = (0.9,) if average == "ema" else ()
    averaged = AveragedModel(model, use_buffers=True, **{form: getattr(tm_swa, f"get_{average}_{form}")(*args)})
    twin_averaged = swa_utils.AveragedModel(
        twin, use_buffers=True, avg_fn=getattr(swa_utils, f"get_{average}_avg_fn")(*args)
    )
    optimizer = tinymed.optim.SGD(model.parameters(), lr=0.1)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.random((8, 3), dtype=np.float32)
        optimizer.zero_grad()
        model(tinymed.tensor(x)).pow(2).sum().backward()
        optimizer.step()
        twin_optimizer.zero_grad()
        twin(torch.tensor(x)).pow(2).sum().backward()
        twin_optimizer.step()
        averaged.update_parameters(model)
        twin_averaged.update_parameters(twin)
    state, twin_state = averaged.state_dict(), twin_averaged.state_dict()
    assert set(state) == set(twin_state)
    for name, value in state.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            np.testing.assert_allclose(np.asarray(value), twin_state[name].numpy(), rtol=1e-4, atol=2e-5, err_msg=name)
    assert int(state["n_averaged"]) == 5
    # The average is not the model: averaging changed something.
    assert not np.allclose(np.asarray(state["module.0.weight"]), np.asarray(model.state_dict()["0.weight"]))


def test_averaged_model_is_evaluated_like_the_model():
    model = nn.Linear(3, 2)
    averaged = AveragedModel(model)
    averaged.update_parameters(model)
    x = tinymed.randn(4, 3)
    np.testing.assert_array_equal(averaged(x).numpy(), model(x).numpy())
    assert not any(p.requires_grad for p in averaged.parameters())


def test_update_from_another_model_names_the_mismatch():
    averaged = AveragedModel(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="update_parameters: the model has 4 tensors to average, the averaged copy 2"):
        averaged.update_parameters(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)))


def test_ema_decay_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="decay must be in"):
        get_ema_avg_fn(1.5)


def test_the_default_average_is_the_plain_mean_and_one_form_at_a_time():
    model = nn.Linear(1, 1, bias=False)
    averaged = AveragedModel(model)
    for w in (1.0, 2.0, 6.0):
        model.weight.data.fill_(w)
        averaged.update_parameters(model)
    assert averaged.module.weight.item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="give avg_fn or multi_avg_fn, not both"):
        AveragedModel(model, avg_fn=get_ema_avg_fn(), multi_avg_fn=tm_swa.get_ema_multi_avg_fn())
