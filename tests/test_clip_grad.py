"""tinymed.nn.utils against torch.nn.utils: clipping by norm and by value, and parameters as
one vector, give PyTorch's numbers. Gradients are made by backward (``p.grad`` is a Tensor, read
with np.asarray)."""

import math

import numpy as np
import pytest

import tinymed as tm
from tinymed.nn.utils import clip_grad_norm_, clip_grad_value_, parameters_to_vector, vector_to_parameters

SHAPES = [(3, 4), (5,), (2, 1, 3)]


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is the oracle for tinymed.nn.utils")


def gradients(scale=1.0, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * scale).astype(dtype) for shape in SHAPES]


def tinymed_params(grads, with_grad=None):
    """Parameters whose .grad, after backward, is exactly ``grads`` (None: no gradient for that one)."""
    params = [tm.tensor(np.ones_like(g), requires_grad=True) for g in grads]
    loss = sum((p * tm.tensor(g)).sum() for p, g, keep in zip(params, grads, with_grad or [True] * len(grads)) if keep)
    loss.backward()
    return params


def torch_params(torch, grads, with_grad=None):
    params = [torch.ones(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True) for g in grads]
    for p, g, keep in zip(params, grads, with_grad or [True] * len(grads)):
        if keep:
            p.grad = torch.from_numpy(g.copy())
    return params


@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(torch, norm_type, max_norm):
    grads = gradients(scale=3.0)
    ours, theirs = tinymed_params(grads), torch_params(torch, grads)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, tm.Tensor) and total.shape == () and total.dtype == tm.float64
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-12)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=1e-12, atol=1e-15)
    if max_norm < expected.item():  # the gradients really were scaled down to max_norm
        clipped = np.concatenate([np.asarray(p.grad).ravel() for p in ours])
        assert np.linalg.norm(clipped, float(norm_type)) == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_float32_single_tensor_and_missing_grads(torch):
    grads = gradients(scale=5.0, dtype=np.float32)
    keep = [True, False, True]
    ours, theirs = tinymed_params(grads, keep), torch_params(torch, grads, keep)
    total = clip_grad_norm_(ours, 1.0)
    assert total.dtype == tm.float32
    np.testing.assert_allclose(total.item(), torch.nn.utils.clip_grad_norm_(theirs, 1.0).item(), rtol=1e-6)
    assert ours[1].grad is None
    single = tinymed_params(grads[:1])[0]
    clip_grad_norm_(single, 0.1)
    assert np.linalg.norm(np.asarray(single.grad)) == pytest.approx(0.1, rel=1e-4)
    assert clip_grad_norm_([tm.zeros(2, requires_grad=True)], 1.0).item() == 0.0


def test_clip_grad_norm_non_finite(torch):
    grads = gradients()
    grads[1][2] = np.nan
    with pytest.raises(RuntimeError, match="total norm of order 2.0 .* is non-finite"):
        clip_grad_norm_(tinymed_params(grads), 1.0, error_if_nonfinite=True)
    ours, theirs = tinymed_params(grads), torch_params(torch, grads)
    total = clip_grad_norm_(ours, 1.0)
    assert math.isnan(total.item()) and math.isnan(torch.nn.utils.clip_grad_norm_(theirs, 1.0).item())
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(p.grad), q.grad.numpy())
    with pytest.raises(ValueError, match="norm_type must be positive or inf, got 0.0"):
        clip_grad_norm_(ours, 1.0, norm_type=0)


def test_clip_grad_value_matches_torch(torch):
    grads = gradients(scale=2.0)
    ours, theirs = tinymed_params(grads), torch_params(torch, grads)
    assert clip_grad_value_(ours, 0.7) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(p.grad), q.grad.numpy())
    assert max(np.abs(np.asarray(p.grad)).max() for p in ours) == 0.7


def test_parameters_vector_round_trip_matches_torch(torch):
    values = gradients(seed=3)
    ours = [tm.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    vector = parameters_to_vector(ours)
    np.testing.assert_array_equal(vector.numpy(), torch.nn.utils.parameters_to_vector(theirs).detach().numpy())
    vector.sum().backward()  # differentiable, as PyTorch's
    assert all(np.array_equal(np.asarray(p.grad), np.ones(p.shape)) for p in ours)

    new = np.arange(vector.shape[0], dtype=np.float64)
    vector_to_parameters(tm.tensor(new), ours)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs)
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.numpy(), q.detach().numpy())
        assert p.requires_grad and p.is_leaf


def test_vector_to_parameters_errors():
    params = [tm.zeros(2, 3), tm.zeros(4)]
    with pytest.raises(TypeError, match="expected a Tensor, but got ndarray"):
        vector_to_parameters(np.zeros(10), params)
    with pytest.raises(ValueError, match=r"vec must be 1-D with 10 elements .* got shape \(9,\)"):
        vector_to_parameters(tm.zeros(9), params)
