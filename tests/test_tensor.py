"""Tensor and autograd: every Tensor method and operator, three ways.

1. ``tm.gradcheck`` (central differences in float64) on shapes and values drawn by hypothesis;
2. forward values and gradients against PyTorch, in float32 (rtol 1e-4) and float64 (rtol
   1e-10) (skipped when torch is absent);
3. the engine's behaviour (no_grad, detach, retain_grad, accumulation, deep graphs), PyTorch's
   dtype rules, creation functions, and the error messages of bad calls.

Each op is written once, as ``op(m, *tensors)`` with ``m`` either ``tinymed`` or ``torch``: the
two share the names, so one lambda drives both sides of the comparison.
"""

import types

import numpy as np
import pytest
from helpers import matches_torch, tolerance, values
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes
from strategies import seeds, shapes

import tinymed as tm
from tinymed.tensor import Tensor

SETTINGS = settings(max_examples=12, deadline=None)


# --------------------------------------------------------------------------- the ops
# Each entry: name -> (op(m, *tensors), domain of every input).

# Any shape, including 0-d.
UNARY = {
    "neg": (lambda m, x: -x, "real"),
    "neg_method": (lambda m, x: x.neg(), "real"),
    "exp": (lambda m, x: x.exp(), "real"),
    "exp_function": (lambda m, x: m.exp(x), "real"),
    "log": (lambda m, x: x.log(), "positive"),
    "sqrt": (lambda m, x: x.sqrt(), "positive"),
    "rsqrt": (lambda m, x: x.rsqrt(), "positive"),
    "abs": (lambda m, x: x.abs(), "nonzero"),
    "clamp": (lambda m, x: x.clamp(-0.5, 0.7), "real"),
    "clamp_min": (lambda m, x: x.clamp(min=-0.3), "real"),
    "clip_max": (lambda m, x: x.clip(max=0.2), "real"),
    "pow_int": (lambda m, x: x**2, "real"),
    "pow_float": (lambda m, x: x**1.5, "positive"),
    "pow_method": (lambda m, x: x.pow(3), "real"),
    "rpow": (lambda m, x: 2.0**x, "real"),
    "add_scalar": (lambda m, x: x + 2, "real"),
    "radd_scalar": (lambda m, x: 1.5 + x, "real"),
    "rsub_scalar": (lambda m, x: 2 - x, "real"),
    "mul_scalar": (lambda m, x: x * 3, "real"),
    "div_scalar": (lambda m, x: x / 4, "real"),
    "rdiv_scalar": (lambda m, x: 3 / x, "nonzero"),
    "sum": (lambda m, x: x.sum(), "real"),
    "mean": (lambda m, x: x.mean(), "real"),
    "max": (lambda m, x: x.max(), "real"),
    "min": (lambda m, x: x.min(), "real"),
    "amax": (lambda m, x: x.amax(), "real"),
    "masked_fill": (lambda m, x: x.masked_fill(x > 0, -2.0), "nonzero"),
    "where_scalar": (lambda m, x: m.where(x > 0, x, 0.5), "nonzero"),
    "reshape_flat": (lambda m, x: x.reshape(-1), "real"),
    "flatten": (lambda m, x: x.flatten(), "real"),
    "squeeze": (lambda m, x: x.squeeze(), "real"),
    "unsqueeze_front": (lambda m, x: x.unsqueeze(0), "real"),
    "unsqueeze_back": (lambda m, x: x.unsqueeze(-1), "real"),
    "expand": (lambda m, x: x.expand(2, *x.shape), "real"),
    "x_plus_x": (lambda m, x: x + x, "real"),
    "x_times_x": (lambda m, x: x * x, "real"),
    "chain": (lambda m, x: ((x * 2 + 1).exp() / 3).sum(), "real"),
    "clone": (lambda m, x: x.clone() * 2, "real"),
    "clone_function": (lambda m, x: m.clone(x), "real"),
    "add_alpha": (lambda m, x: x.add(x * x, alpha=2), "real"),
    "sub_alpha_function": (lambda m, x: m.sub(x, 1.5, alpha=3), "real"),
    "mul_method": (lambda m, x: x.mul(3), "real"),
    "div_function": (lambda m, x: m.div(x, 4), "real"),
    "norm": (lambda m, x: x.norm(), "real"),
    "norm_3_function": (lambda m, x: m.norm(x, 3), "real"),
    "norm_1": (lambda m, x: x.norm(1), "nonzero"),
    "norm_inf": (lambda m, x: x.norm(float("inf")), "nonzero"),
    "repeat": (lambda m, x: x.repeat(2, *[2] * x.ndim), "real"),
    # In-place ops on a non-leaf: recorded on the graph, as in PyTorch.
    "add_": (lambda m, x: (x * 1).add_(x * x, alpha=2), "real"),
    "sub_": (lambda m, x: (x * 1).sub_(0.5), "real"),
    "mul_": (lambda m, x: (x * 2).mul_(x), "real"),
    "div_": (lambda m, x: (x * 2).div_(x.exp()), "real"),
    "iadd": (lambda m, x: (x * 3).__iadd__(x), "real"),
    "itruediv": (lambda m, x: (x * 3).__itruediv__(2), "real"),
    "clamp_": (lambda m, x: (x * 1).clamp_(-0.5, 0.7), "real"),
    "masked_fill_": (lambda m, x: (x * 1).masked_fill_(x > 0, -2.0), "nonzero"),
    "copy_": (lambda m, x: (x * 0).copy_(x.exp()) * x, "real"),
    "fill_": (lambda m, x: (x * 1).fill_(2.0) + x, "real"),
    "zero_": (lambda m, x: (x * 1).zero_() * x, "real"),
}

# Two (or three) inputs whose shapes broadcast together.
BROADCAST = {
    "add": (lambda m, a, b: a + b, "real"),
    "sub": (lambda m, a, b: a - b, "real"),
    "mul": (lambda m, a, b: a * b, "real"),
    "div": (lambda m, a, b: a / b, "nonzero"),
    "pow": (lambda m, a, b: a**b, "positive"),
    "where": (lambda m, c, a, b: m.where(c > 0, a, b), "nonzero"),
    "maximum": (lambda m, a, b: m.maximum(a, b), "real"),
    "minimum_method": (lambda m, a, b: a.minimum(b), "real"),
    "max_of_two": (lambda m, a, b: m.max(a, b), "real"),
    "min_of_two_method": (lambda m, a, b: a.min(b), "real"),
}

# One input of at least one dim (sides >= 2 so the unbiased variance is defined); the op
# receives a dim drawn from [-ndim, ndim) and keepdim.
REDUCE = {
    "sum": lambda m, x, d, k: x.sum(d, keepdim=k),
    "sum_function": lambda m, x, d, k: m.sum(x, d, keepdim=k),
    "mean": lambda m, x, d, k: x.mean(d, keepdim=k),
    "var": lambda m, x, d, k: x.var(d, keepdim=k),
    "var_biased": lambda m, x, d, k: x.var(d, unbiased=False, keepdim=k),
    "std": lambda m, x, d, k: x.std(d, keepdim=k),
    "max_dim": lambda m, x, d, k: x.max(d, keepdim=k).values,
    "min_dim": lambda m, x, d, k: x.min(d, keepdim=k)[0],
    "max_function": lambda m, x, d, k: m.max(x, d, keepdim=k).values,
    "amax": lambda m, x, d, k: x.amax(d, keepdim=k),
    "amin": lambda m, x, d, k: x.amin(d, keepdim=k),
    "norm_dim": lambda m, x, d, k: x.norm(2, d, keepdim=k),
    "norm_fro_dim": lambda m, x, d, k: x.norm(dim=d, keepdim=k),
    "norm_1_leading_dims": lambda m, x, d, k: m.norm(x, 1, tuple(range(d % x.ndim + 1)), keepdim=k),
    "sum_leading_dims": lambda m, x, d, k: x.sum(tuple(range(d % x.ndim + 1)), keepdim=k),
    "mean_all_negative_dims": lambda m, x, d, k: x.mean(tuple(range(-x.ndim, 0)), keepdim=k),
    "var_leading_dims": lambda m, x, d, k: x.var(tuple(range(d % x.ndim + 1)), keepdim=k),
    "squeeze_dim": lambda m, x, d, k: x.sum(d, keepdim=True).squeeze(d),
    "unsqueeze_dim": lambda m, x, d, k: x.unsqueeze(d),
    "flatten_from": lambda m, x, d, k: x.flatten(d % x.ndim),
    "transpose": lambda m, x, d, k: x.transpose(d, 0),
    "cat": lambda m, x, d, k: m.cat([x, x * 2], d),
    "cat_unequal_sizes": lambda m, x, d, k: m.cat([x, x[..., :1].exp(), x], -1),
    "stack": lambda m, x, d, k: m.stack([x, -x], d),
    "softmax_by_hand": lambda m, x, d, k: (
        (x - x.amax(d, keepdim=True)).exp() / (x - x.amax(d, keepdim=True)).exp().sum(d, keepdim=True)
    ),
}

# Indexing: any shape with at least ``ndim`` dims; indices 0 and -1 are valid for every side.
INDEX = {
    "int": (1, lambda m, x: x[0]),
    "negative_int": (1, lambda m, x: x[-1]),
    "slice": (1, lambda m, x: x[1:]),
    "step_slice": (1, lambda m, x: x[::2]),
    "ellipsis": (1, lambda m, x: x[..., -1]),
    "none": (1, lambda m, x: x[:, None]),
    "int_array_repeats": (1, lambda m, x: x[m.tensor([0, -1, 0, 0])]),
    "list_repeats": (1, lambda m, x: x[[0, 0, -1]]),
    "int_array_2d": (1, lambda m, x: x[m.tensor([[0, -1], [0, 0]])]),
    "int_array_last_dim": (1, lambda m, x: x[..., m.tensor([-1, 0, -1])]),
    "two_int_arrays": (2, lambda m, x: x[m.tensor([0, -1, 0]), m.tensor([0, 0, -1])]),
    "slice_and_array": (2, lambda m, x: x[1:, m.tensor([0, 0])]),
    "bool_mask": (1, lambda m, x: x[x > 0]),
    "bool_mask_rows": (2, lambda m, x: x[x[..., 0] > 0]),
    "reverse_dims": (1, lambda m, x: x.permute(*reversed(range(x.ndim)))),
    "t": (2, lambda m, x: x[0].t() if x.ndim > 2 else x.t()),
    "permute": (2, lambda m, x: x.permute(-1, *range(x.ndim - 1))),
    "view": (2, lambda m, x: x.view(x.shape[0], -1)),
    "triu": (2, lambda m, x: x.triu()),
    "tril_below": (2, lambda m, x: x.tril(-1)),
    "triu_function_above": (2, lambda m, x: m.triu(x, 1)),
    "tril_function": (2, lambda m, x: m.tril(x)),
    "repeat_dims": (1, lambda m, x: x.repeat(*[1] * (x.ndim - 1), 3)),
}

# (shape of a, shape of b) for matmul, with a broadcast batch where PyTorch allows one.
MATMUL = {
    "vector_vector": lambda n, k, m_, b: ((k,), (k,)),
    "matrix_vector": lambda n, k, m_, b: ((n, k), (k,)),
    "vector_matrix": lambda n, k, m_, b: ((k,), (k, m_)),
    "matrix_matrix": lambda n, k, m_, b: ((n, k), (k, m_)),
    "batch_matrix": lambda n, k, m_, b: ((b, n, k), (k, m_)),
    "matrix_batch": lambda n, k, m_, b: ((n, k), (b, k, m_)),
    "batch_batch": lambda n, k, m_, b: ((b, n, k), (b, k, m_)),
    "broadcast_batch": lambda n, k, m_, b: ((1, b, n, k), (2, 1, k, m_)),
    "batch_vector": lambda n, k, m_, b: ((b, n, k), (k,)),
}


def reduce_args(shape, seed, dim_fraction, keepdim):
    """Values of ``shape``, a dim in [-ndim, ndim) picked by ``dim_fraction``, and keepdim."""
    dim = int(dim_fraction * 2 * len(shape)) - len(shape)
    return values(seed, shape), dim, keepdim


reduce_shapes = shapes(min_dims=1, min_side=2)
dim_fractions = st.floats(0, 1, exclude_max=True)


# --------------------------------------------------------------------------- comparisons


def to_numpy_dtype(torch_dtype):
    return np.dtype(str(torch_dtype).removeprefix("torch."))


def assert_matches_torch(torch, op, arrays, dtype):
    """Forward and gradients of ``op`` on tinymed and on torch, from the same arrays in ``dtype``."""
    cast = [np.asarray(a, dtype) for a in arrays]  # 0-d draws are NumPy scalars
    matches_torch(torch, lambda *ts: op(tm, *ts), lambda *ts: op(torch, *ts), *cast, tol=tolerance(dtype))


def assert_matches_torch_in_both_dtypes(torch, op, arrays):
    for dtype in (np.float32, np.float64):
        assert_matches_torch(torch, op, arrays, dtype)


def assert_gradcheck(op, arrays):
    inputs = [tm.tensor(a, requires_grad=True) for a in arrays]
    assert tm.gradcheck(lambda *ts: op(tm, *ts), inputs)


both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])
TORCH_SETTINGS = settings(max_examples=8, deadline=None)


# --------------------------------------------------------------------------- element-wise, any shape


@pytest.mark.parametrize("name", UNARY)
@SETTINGS
@given(shape=shapes(), seed=seeds)
def test_unary_gradcheck(name, shape, seed):
    op, domain = UNARY[name]
    assert_gradcheck(op, [values(seed, shape, domain)])


@pytest.mark.parametrize("name", UNARY)
@TORCH_SETTINGS
@given(shape=shapes(), seed=seeds)
def test_unary_matches_torch(torch, name, shape, seed):
    op, domain = UNARY[name]
    assert_matches_torch_in_both_dtypes(torch, op, [values(seed, shape, domain)])


# --------------------------------------------------------------------------- broadcasting


@pytest.mark.parametrize("name", BROADCAST)
@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_broadcast_gradcheck(name, shapes, seed):
    op, domain = BROADCAST[name]
    arity = op.__code__.co_argcount - 1
    assert_gradcheck(op, [values(seed + i, s, domain) for i, s in enumerate(shapes.input_shapes[:arity])])


@pytest.mark.parametrize("name", BROADCAST)
@TORCH_SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_broadcast_matches_torch(torch, name, shapes, seed):
    op, domain = BROADCAST[name]
    arity = op.__code__.co_argcount - 1
    assert_matches_torch_in_both_dtypes(
        torch, op, [values(seed + i, s, domain) for i, s in enumerate(shapes.input_shapes[:arity])]
    )


def test_unbroadcast_sums_over_stretched_and_added_dims():
    a = tm.tensor(np.ones((3, 1)), requires_grad=True)
    b = tm.tensor(np.ones((4, 3, 5)), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and (a.grad == 20).all()
    assert b.grad.shape == (4, 3, 5) and (b.grad == 1).all()


# --------------------------------------------------------------------------- reductions and dims


@pytest.mark.parametrize("name", REDUCE)
@SETTINGS
@given(shape=reduce_shapes, seed=seeds, dim_fraction=dim_fractions, keepdim=st.booleans())
def test_dim_ops_gradcheck(name, shape, seed, dim_fraction, keepdim):
    x, dim, keepdim = reduce_args(shape, seed, dim_fraction, keepdim)
    assert_gradcheck(lambda m, t: REDUCE[name](m, t, dim, keepdim), [x])


@pytest.mark.parametrize("name", REDUCE)
@TORCH_SETTINGS
@given(shape=reduce_shapes, seed=seeds, dim_fraction=dim_fractions, keepdim=st.booleans())
def test_dim_ops_match_torch(torch, name, shape, seed, dim_fraction, keepdim):
    x, dim, keepdim = reduce_args(shape, seed, dim_fraction, keepdim)
    assert_matches_torch_in_both_dtypes(torch, lambda m, t: REDUCE[name](m, t, dim, keepdim), [x])


@settings(max_examples=15, deadline=None)
@given(shape=reduce_shapes, seed=seeds, dim_fraction=dim_fractions, keepdim=st.booleans())
def test_argmax_argmin_and_max_indices_match_torch(torch, shape, seed, dim_fraction, keepdim):
    x, dim, keepdim = reduce_args(shape, seed, dim_fraction, keepdim)
    ours, theirs = tm.tensor(x), torch.tensor(x)
    for name in ("argmax", "argmin"):
        for got, want in [
            (getattr(ours, name)(dim, keepdim), getattr(theirs, name)(dim, keepdim)),
            (getattr(ours, name)(), getattr(theirs, name)()),
        ]:
            assert got.dtype == tm.int64 and got.shape == tuple(want.shape)
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(ours.max(dim, keepdim).indices.numpy(), theirs.max(dim, keepdim).indices.numpy())
    np.testing.assert_array_equal(tm.argmax(ours, dim).numpy(), torch.argmax(theirs, dim).numpy())


def test_max_without_dim_shares_the_gradient_among_ties_like_torch(torch):
    data = [[1.0, 3.0], [3.0, 0.0]]
    x, y = tm.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    x.max().backward()
    y.max().backward()
    np.testing.assert_array_equal(x.grad, y.grad.numpy())


def test_maximum_and_minimum_split_the_gradient_of_a_tie_like_torch(torch):
    """Drawn values never tie, so the tie is here: each input gets half, as in PyTorch."""
    grads = []
    for lib in (tm, torch):
        a, b = lib.tensor([1.0, 2.0, 5.0], requires_grad=True), lib.tensor([1.0, 3.0, 4.0], requires_grad=True)
        (lib.maximum(a, b) * 2 + lib.min(a, b)).sum().backward()
        grads.append([a.grad.numpy(), b.grad.numpy()])
    np.testing.assert_array_equal(grads[0], grads[1])


# --------------------------------------------------------------------------- indexing and shapes


@pytest.mark.parametrize("name", INDEX)
@SETTINGS
@given(data=st.data(), seed=seeds)
def test_index_and_shape_gradcheck(name, data, seed):
    min_dims, op = INDEX[name]
    shape = data.draw(shapes(min_dims=min_dims, max_dims=3))
    assert_gradcheck(op, [values(seed, shape, "nonzero")])


@pytest.mark.parametrize("name", INDEX)
@TORCH_SETTINGS
@given(data=st.data(), seed=seeds)
def test_index_and_shape_match_torch(torch, name, data, seed):
    min_dims, op = INDEX[name]
    shape = data.draw(shapes(min_dims=min_dims, max_dims=3))
    assert_matches_torch_in_both_dtypes(torch, op, [values(seed, shape, "nonzero")])


def test_integer_index_with_repeats_adds_gradients():
    x = tm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])


@SETTINGS
@given(shape=shapes(min_dims=1), seed=seeds, data=st.data())
def test_permute_reshape_roundtrip_gradcheck(shape, seed, data):
    perm = data.draw(st.permutations(range(len(shape))))
    assert_gradcheck(lambda m, x: x.permute(*perm).reshape(-1, 1) * 1.5, [values(seed, shape)])


# --------------------------------------------------------------------------- matmul


@pytest.mark.parametrize("name", MATMUL)
@SETTINGS
@given(sizes=st.tuples(*[st.integers(1, 3)] * 4), seed=seeds)
def test_matmul_gradcheck(name, sizes, seed):
    a, b = MATMUL[name](*sizes)
    assert_gradcheck(lambda m, x, y: x @ y, [values(seed, a), values(seed + 1, b)])


@pytest.mark.parametrize("name", MATMUL)
@TORCH_SETTINGS
@given(sizes=st.tuples(*[st.integers(1, 3)] * 4), seed=seeds)
def test_matmul_matches_torch(torch, name, sizes, seed):
    a, b = MATMUL[name](*sizes)
    assert_matches_torch_in_both_dtypes(torch, lambda m, x, y: m.matmul(x, y), [values(seed, a), values(seed + 1, b)])


@both_dtypes
def test_bmm_and_method_matmul_match_torch(torch, dtype):
    a, b = values(1, (2, 3, 4)), values(2, (2, 4, 5))
    assert_matches_torch(torch, lambda m, x, y: m.bmm(x, y), [a, b], dtype)
    assert_matches_torch(torch, lambda m, x, y: x.matmul(y), [a, b], dtype)
    assert_gradcheck(lambda m, x, y: m.bmm(x, y), [a, b])


# --------------------------------------------------------------------------- casts


@both_dtypes
def test_casts_match_torch_and_carry_gradients(torch, dtype):
    x = values(3, (2, 3))
    assert_matches_torch(torch, lambda m, t: t.double() * 2, [x], dtype)
    assert_matches_torch(torch, lambda m, t: t.float() * 2, [x], dtype)
    assert_matches_torch(torch, lambda m, t: t.to(m.float64) + 1, [x], dtype)
    assert_matches_torch(torch, lambda m, t: t.long(), [x], dtype)
    assert_matches_torch(torch, lambda m, t: t.float() * t.long(), [x * 3], dtype)


def test_cast_to_integer_cuts_the_graph():
    x = tm.tensor([1.5, -2.5], requires_grad=True)
    assert x.long().dtype == tm.int64 and not x.long().requires_grad
    assert x.double().requires_grad and x.float() is x


# --------------------------------------------------------------------------- dtype rules


def test_tensor_infers_dtypes_as_pytorch(torch):
    examples = [1.5, 3, True, [1, 2], [1.0, 2], [[True, False]], [1, 2.5], [], np.float64(2.0), np.int32(4),
                np.zeros(2), np.zeros(2, np.float32), np.arange(3, dtype=np.int32), np.array([1, 2], np.uint8),
                np.array([True])]  # fmt: skip
    for data in examples:
        assert tm.tensor(data).dtype == to_numpy_dtype(torch.tensor(data).dtype), data
    assert tm.tensor([1, 2], dtype=tm.float64).dtype == tm.float64
    assert tm.tensor(np.zeros(2), dtype=np.float32).dtype == tm.float32


def test_a_requested_dtype_converts_from_the_values_as_given(torch):
    """tm.tensor(0.8, dtype=tm.float64) is float64's 0.8, not float32's 0.8 widened (issue 10)."""
    for data in (0.8, [0.1], [[0.1, 1 / 3]], 2**40 + 1):
        ours, theirs = tm.tensor(data, dtype=tm.float64), torch.tensor(data, dtype=torch.float64)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert tm.tensor([0.1], dtype=tm.float64).item() == 0.1 and tm.tensor(0.8, dtype=tm.float64).item() == 0.8
    assert tm.tensor(0.8).item() == np.float32(0.8) and tm.tensor(3, dtype=tm.float32).dtype == tm.float32


def test_binary_ops_promote_dtypes_as_pytorch(torch):
    """Every pair of dtypes, each as a tensor with dims, as a 0-d tensor or as a Python number."""
    dtypes = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]

    def operands(m):
        tensors = [m.ones(shape, dtype=getattr(m, d)) for d in dtypes for shape in ((2,), ())]
        return tensors, tensors + [True, 2, 2.5]

    (ours, our_others), (theirs, their_others) = operands(tm), operands(torch)
    mismatches = []
    for a, ta in zip(ours, theirs):
        for b, tb in zip(our_others, their_others):
            for symbol, fn in [
                ("+", lambda p, q: p + q),
                ("*", lambda p, q: p * q),
                ("/", lambda p, q: p / q),
                ("reflected *", lambda p, q: q * p),
            ]:
                got, want = fn(a, b).dtype, to_numpy_dtype(fn(ta, tb).dtype)
                if got != want:
                    mismatches.append(f"{a.dtype}{list(a.shape)} {symbol} {b!r}: {got}, torch {want}")
    assert not mismatches, "\n".join(mismatches[:20])


def test_scalar_keeps_float32_and_int_division_gives_float32():
    x = tm.ones(3)
    assert (x * 2).dtype == tm.float32 and (2.5 * x).dtype == tm.float32 and (x**2).dtype == tm.float32
    i = tm.tensor([1, 2, 3])
    assert (i / 2).dtype == tm.float32 and (i / i).dtype == tm.float32
    assert (i * 2).dtype == tm.int64 and (i * 0.5).dtype == tm.float32
    np.testing.assert_allclose((i / 2).numpy(), [0.5, 1.0, 1.5])


def assert_same_results(torch, results):
    """``results(m)`` gives a list of tensors; tinymed's must equal torch's in dtype, shape and value."""
    for ours, theirs in zip(results(tm), results(torch), strict=True):
        assert ours.dtype == to_numpy_dtype(theirs.dtype) and ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_where_cat_and_masked_fill_dtypes_match_torch(torch):
    def results(m):
        x, i = m.ones(2, 2), m.tensor([[1, 2], [3, 4]])
        return [
            m.where(x > 0, x, 0.0), m.where(x > 0, 1.0, 0.0), m.where(x > 0, 1, 0), m.where(i > 2, i, x.double()),
            m.cat([x, i]), m.cat([i, i.int()]), i.masked_fill(i > 2, 7), x.masked_fill(x > 0, 2),
        ]  # fmt: skip

    assert_same_results(torch, results)


def test_comparisons_and_logic_give_bool_tensors_like_torch(torch):
    a, b = values(4, (3, 2)), values(5, (2,))

    def results(m):
        x, y = m.tensor(a), m.tensor(b)
        return [
            x < y,
            x <= 0,
            x > y,
            x >= 0.5,
            x == y,
            x != 0,
            (x > 0) & (y > 0),
            (x > 0) | (y > 0),
            ~(x > 0),
            (x > 0) ^ (y < 0),
        ]

    assert_same_results(torch, results)
    assert not any(r.requires_grad for r in results(tm))
    x = tm.ones(3)
    assert (x == None) is False and x in {x: 1}  # noqa: E711  (hashable by identity)
    assert (x.eq(x)).all().item() and not (x.ne(x)).any().item()


# --------------------------------------------------------------------------- the engine


def test_no_grad_records_nothing():
    x = tm.ones(2, requires_grad=True)
    with tm.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert (x * 2).requires_grad and tm.is_grad_enabled()

    @tm.no_grad()
    def evaluate(t):
        return t * 3

    assert not evaluate(x).requires_grad and tm.is_grad_enabled()
    with tm.no_grad():
        with tm.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    tm.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    tm.set_grad_enabled(True)
    with tm.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad

    @tm.set_grad_enabled(False)
    def frozen(t):
        return t * 3

    assert tm.is_grad_enabled() and not frozen(x).requires_grad and tm.is_grad_enabled()


def test_detach_shares_data_but_stops_gradients():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.array is x.array
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])  # d counted as a constant


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    z = y * 2
    y.retain_grad()
    z.sum().backward()
    np.testing.assert_array_equal(y.grad, [2.0, 2.0])
    assert z.grad is None and not y.is_leaf and x.is_leaf


def test_gradients_accumulate_over_backward_calls():
    x = tm.tensor([1.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, -8.0])
    y = (x * 3).sum()
    y.backward(retain_graph=True)
    y.backward()  # the same graph, walked again
    np.testing.assert_array_equal(x.grad, [10.0, -2.0])
    x.grad = None
    (x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_zero_dim_results_hold_arrays_and_gradients_are_tensors():
    x = tm.tensor(3.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert isinstance(y.array, np.ndarray) and isinstance(x.grad, tm.Tensor) and isinstance(x.grad.array, np.ndarray)
    assert x.grad.shape == () and x.grad.item() == 12.0


def test_diamond_graph():
    # a feeds b and c, both feed d: d = (2a) * (a + 1), dd/da = 2(a + 1) + 2a = 4a + 2.
    a = tm.tensor([0.5, -1.0, 2.0], requires_grad=True)
    b, c = a * 2, a + 1
    (b * c).sum().backward()
    np.testing.assert_allclose(a.grad, 4 * a.numpy() + 2)


def test_deep_chain_has_no_recursion_limit():
    x = tm.tensor(1.0, dtype=tm.float64, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**20000, rtol=1e-9)
    del y  # freeing the 20000-deep graph must not recurse either


def test_backward_with_an_explicit_gradient():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(tm.tensor([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 30.0])


@pytest.mark.parametrize(
    "wrap", [np.asarray, tm.tensor, list], ids=["float64 array", "float64 tensor", "list of floats"]
)
def test_backward_casts_an_explicit_gradient_to_the_tensors_dtype(wrap):
    """A float64 gradient (the default of NumPy and of Python floats) given to a float32
    tensor's backward is cast to float32, as PyTorch does: every .grad keeps its tensor's
    dtype, so a float32 model is not silently trained in mixed precision."""
    upstream = wrap(np.array([1.0, 1 / 3]))
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    y.backward(upstream)
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.float32([1.0, 1 / 3]) * np.float32(3))
    leaf = tm.tensor([1.0, 2.0], requires_grad=True)
    leaf.backward(upstream)
    assert leaf.grad.dtype == np.float32


def test_to_backend_and_back_carries_the_gradient():
    try:
        tm.backends.get("numba")
    except (tm.backends.BackendUnavailableError, ImportError) as error:
        pytest.skip(f"needs a second backend: {error}")
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("numba")
    assert y.backend == "numba" and x.to("numpy") is x
    (y * y).sum().to("numpy").backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_to_accepts_backends_pytorch_device_names_and_dtypes():
    x = tm.tensor([1.0, 2.0], requires_grad=True)
    assert x.to("numpy") is x and x.to("cpu") is x and x.cpu() is x
    assert x.to(tm.float64).dtype == tm.float64 and x.to("cpu", tm.float64).dtype == tm.float64
    assert x.to(dtype=tm.float16).dtype == tm.float16
    with pytest.raises(TypeError, match="neither a dtype nor a backend"):
        x.to("tpu")


def test_leaving_the_graph_numpy_item_size():
    x = tm.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert isinstance(x.numpy(), np.ndarray) and x.numpy().dtype == np.float32
    assert x[1, 2].item() == 6.0 and isinstance(x.sum().item(), float) and tm.tensor(3).item() == 3
    assert x.size() == (2, 3) and x.size(-1) == 3 and x.shape == (2, 3) and x.dim() == 2 and x.numel() == 6
    assert len(x) == 2 and [r.shape for r in x] == [(3,), (3,)] and x.tolist()[1] == [4.0, 5.0, 6.0]
    assert np.asarray(x).shape == (2, 3) and float(x[0, 0]) == 1.0
    assert "requires_grad=True" in repr(x) and "dtype=float64" in repr(x.double())


# --------------------------------------------------------------------------- creation and randomness


def test_creation_functions_match_torch(torch):
    def results(m):
        return [
            m.zeros(2, 3), m.zeros((2, 3)), m.ones(4), m.ones(2, dtype=m.float64), m.full((2,), 1.5), m.full((2, 2), 3),
            m.full((1,), True), m.arange(5), m.arange(1, 7, 2), m.arange(0, 1, 0.25), m.arange(1.0, 4),
            m.arange(5, dtype=m.float32), m.zeros_like(m.ones(2, dtype=m.int32)), m.ones_like(m.ones(3, 1)),
            m.randn(2, 3) * 0, m.rand(3, dtype=m.float64) * 0, m.randn_like(m.ones(2)) * 0, m.eye(3),
            m.linspace(0, 1, 5), m.tensor([[1, 2]], dtype=m.float64),
        ]  # fmt: skip

    assert_same_results(torch, results)


def test_creation_requires_grad_and_device_names():
    assert tm.zeros(2, requires_grad=True).requires_grad and tm.randn(2, 2, requires_grad=True).is_leaf
    assert tm.ones(2, device="cpu").backend == "numpy" and tm.tensor([1.0], device="cpu").backend == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        tm.zeros(2, backend="tpu")
    with pytest.raises(TypeError, match="randn: dtype must be floating"):
        tm.randn(2, dtype=tm.int64)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: tm.zeros(2, 3.5), TypeError, r"zeros: size\[1\] must be an int, got float 3.5"),
        (lambda: tm.randn(2.7), TypeError, r"randn: size\[0\] must be an int"),
        (lambda: tm.zeros(-1, 3), ValueError, r"zeros: sizes must be >= 0, got \(-1, 3\)"),
        (lambda: tm.full((2, -2), 1.0), ValueError, r"full: sizes must be >= 0"),
        (lambda: tm.eye(-1), ValueError, r"eye: sizes must be >= 0, got \(-1, -1\)"),
        (lambda: tm.linspace(0, 1, -1), ValueError, r"linspace: sizes must be >= 0"),
        (lambda: tm.randperm(-1), ValueError, r"randperm: sizes must be >= 0, got \(-1,\)"),
    ],
)
def test_creation_refuses_a_float_or_negative_size_instead_of_truncating_it(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_view_shares_memory_both_ways():
    x = tm.arange(6.0).reshape(2, 3)
    v = x.view(3, 2)
    with tm.no_grad():
        v[0, 0] = 100.0
        x[1, 2] = -1.0
    assert x[0, 0].item() == 100.0 and v[2, 1].item() == -1.0


def test_from_numpy_shares_memory_and_tensor_copies():
    array = np.zeros(3, dtype=np.float64)
    shared, copied = tm.from_numpy(array), tm.tensor(array)
    array[0] = 5.0
    assert shared.dtype == tm.float64 and shared[0].item() == 5.0 and copied[0].item() == 0.0
    with pytest.raises(TypeError, match="from_numpy"):
        tm.from_numpy([1.0])


def test_manual_seed_makes_random_tensors_reproducible():
    def draw():
        return [
            tm.randn(2, 3),
            tm.rand(4),
            tm.randn_like(tm.ones(2)),
            tm.randint(0, 10, (5,)),
            tm.randint(3, (2,)),
            tm.randperm(5),
        ]

    tm.manual_seed(7)
    first = draw()
    tm.manual_seed(7)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    tm.manual_seed(8)
    assert not np.array_equal(tm.randn(2, 3).numpy(), first[0].numpy())
    assert 0 <= first[1].numpy().min() and first[1].numpy().max() < 1 and first[3].dtype == tm.int64
    state = tm.get_rng_state()
    a = tm.rand(3)
    tm.set_rng_state(state)
    np.testing.assert_array_equal(tm.rand(3).numpy(), a.numpy())


# --------------------------------------------------------------------------- bad input


def test_mismatched_backends_raise_naming_op_and_backends():
    fake = types.SimpleNamespace(kernels="fake", backend=types.SimpleNamespace(name="fake", xp=np))
    a, b = tm.ones(2), Tensor.wrap(np.ones(2), fake)
    with pytest.raises(
        ValueError, match=r"Add: all inputs must live on the same backend, got numpy \(2,\), fake \(2,\)"
    ):
        a + b
    with pytest.raises(ValueError, match="same backend"):
        tm.cat([a, b])


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, got dtype int64"):
        tm.tensor([1, 2], requires_grad=True)
    x = tm.arange(3)
    with pytest.raises(TypeError, match="int64"):
        x.requires_grad = True
    with pytest.raises(TypeError, match="int64"):
        x.requires_grad_()


def test_backward_errors_as_pytorch_raises_them(torch):
    """Each error is PyTorch's exception type with PyTorch's key phrase."""
    for lib in (tm, torch):
        x = lib.ones(2, 2, requires_grad=True)
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
            (x * 2).backward()
        with pytest.raises(RuntimeError, match="Mismatch in shape"):
            (x * 2).backward(lib.ones(3))
        with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
            lib.ones(1).backward()


def test_a_function_returning_a_wrongly_shaped_gradient_is_caught():
    class Bad(tm.Function):
        def forward(self, a):
            return a * 2

        def backward(self, grad):
            return grad.sum(axis=0)

    x = tm.ones(3, 2, requires_grad=True)
    with pytest.raises(
        RuntimeError, match=r"Bad.backward: the gradient of input 0 has shape \(2,\), but the input has shape \(3, 2\)"
    ):
        Bad.apply(x).sum().backward()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda x: x + tm.ones(4), ValueError, r"add: shapes do not broadcast: input \(2, 3\), other \(4,\)"),
        (lambda x: x * tm.ones(2), ValueError, r"mul: .*\(2, 3\).*\(2,\)"),
        (lambda x: tm.ones(2) / x, ValueError, r"div: .*\(2,\).*\(2, 3\)"),
        (lambda x: x < tm.ones(5), ValueError, r"lt: .*\(2, 3\).*\(5,\)"),
        (lambda x: x @ tm.ones(2, 3), ValueError, r"matmul: shapes \(2, 3\) and \(2, 3\) cannot be multiplied"),
        (lambda x: tm.bmm(x, x), ValueError, r"bmm: expects \(B, n, m\) and \(B, m, p\), got \(2, 3\)"),
        (
            lambda x: x.reshape(4, -1),
            ValueError,
            r"reshape: a tensor of shape \(2, 3\) \(6 elements\) does not fit shape \(4, -1\)",
        ),
        (lambda x: x.view(2, -1, -1), ValueError, r"view: only one dim can be -1 \(inferred\), got \(2, -1, -1\)"),
        (lambda x: x.t().view(6), RuntimeError, r"view: a tensor of shape \(3, 2\) .* use \.reshape"),
        (lambda x: x.reshape(2, 3.5), TypeError, r"reshape: size\[1\] must be an int, got float 3.5"),
        (lambda x: x.permute(0, 1.0), TypeError, r"permute: dims\[1\] must be an int, got float"),
        (lambda x: tm.stack(x), TypeError, r"stack: tensors must be a list or tuple of Tensors, got Tensor"),
        (lambda x: tm.cat([x, [[1.0, 2.0, 3.0]]]), TypeError, r"cat: tensors\[1\] must be a Tensor, got list"),
        (
            lambda x: x.long() @ x.t(),
            TypeError,
            r"matmul: both operands must have the same dtype, got int64 and float32",
        ),
        (lambda x: x.__setitem__(0, tm.ones(2)), ValueError, r"setitem: a value of shape \(2,\) does not broadcast"),
        (lambda x: x.permute(0, 0), ValueError, r"permute: dims \(0, 0\) are not a permutation"),
        (lambda x: x.sum(2), IndexError, "sum: dim 2 is out of range for a tensor with 2 dims"),
        (lambda x: x.transpose(0, -3), IndexError, "transpose: dim -3 is out of range"),
        (lambda x: x.max(5), IndexError, "max: dim 5 is out of range"),
        (
            lambda x: x[2],
            IndexError,
            r"getitem: cannot index a tensor of shape \(2, 3\) with 2: index 2 is out of bounds",
        ),
        (lambda x: x[tm.tensor([0.5])], IndexError, r"getitem: .*shape \(2, 3\)"),
        (
            lambda x: tm.cat([x, tm.ones(2, 2)], dim=0),
            ValueError,
            r"cat: tensors must match in every dim but 0, got \(2, 3\), \(2, 2\)",
        ),
        (
            lambda x: tm.stack([x, tm.ones(3, 2)]),
            ValueError,
            r"stack: all tensors must have the same shape, got \(2, 3\), \(3, 2\)",
        ),
        (lambda x: tm.where(x, x, x), TypeError, "where: condition must be a bool tensor, got dtype float32"),
        (lambda x: tm.where(x > 0, x, tm.ones(4)), ValueError, r"where: shapes do not broadcast: .*\(2, 3\).*\(4,\)"),
        (lambda x: x.masked_fill(x, 0.0), TypeError, "masked_fill: mask must be a bool tensor"),
        (
            lambda x: x.masked_fill(tm.ones(4, 2, 3) > 0, 0.0),
            ValueError,
            r"masked_fill: mask of shape \(4, 2, 3\) does not broadcast to input shape \(2, 3\)",
        ),
        (lambda x: x.flatten(1, 0), ValueError, "flatten: start_dim 1 comes after end_dim 0"),
        (lambda x: x.expand(3, 3), ValueError, r"expand: cannot expand shape \(2, 3\) to \(3, 3\)"),
        (lambda x: x.clamp(), ValueError, "clamp: at least one of min and max"),
        (lambda x: x.item(), ValueError, r"item: .*shape \(2, 3\)"),
        (lambda x: bool(x), ValueError, r"bool: the truth value of a tensor of shape \(2, 3\) is ambiguous"),
        (lambda x: x.unsqueeze(0).t(), ValueError, r"t: expects a tensor with <= 2 dims, got shape \(1, 2, 3\)"),
        (lambda x: x.copy_(tm.ones(3, 3)), ValueError, r"copy_: .*\(2, 3\).*\(3, 3\)"),
        (lambda x: tm.tensor([[1, 2], [3]]), ValueError, "tensor: cannot build a tensor"),
        (lambda x: tm.tensor(["a"]), TypeError, "tensor: cannot build a tensor from data of dtype"),
        (lambda x: x + "a", TypeError, "add: cannot combine a tensor with a str"),
    ],
)
def test_bad_calls_raise_errors_naming_op_argument_and_shapes(call, error, message):
    with pytest.raises(error, match=message):
        call(tm.ones(2, 3))


def test_tensor_arguments_to_function_apply_must_be_positional():
    class Scale(tm.Function):
        def forward(self, a, factor):
            return a * factor

        def backward(self, grad):
            return grad

    with pytest.raises(TypeError, match="Scale: tensor argument 'factor' must be passed positionally"):
        Scale.apply(tm.ones(2), factor=tm.ones(2))


def test_integer_and_bool_sums_are_int64_as_in_pytorch():
    # NumPy sums uint8 into uint64, where subtracting wraps around to 1.8e19.
    pixels = tm.from_numpy(np.array([[200, 100], [250, 50]], dtype=np.uint8))
    assert pixels.sum().dtype == tm.int64 and (pixels.sum() - 700).item() == -100
    assert (pixels.sum(0) - 300).tolist() == [150, -150]
    assert (pixels > 99).sum().dtype == tm.int64


def test_a_0d_tensor_takes_a_format_spec_and_others_refuse_one():
    loss = tm.tensor(0.123456)
    assert f"{loss:.4f}" == "0.1235" and f"{loss}" == repr(loss)
    with pytest.raises(TypeError):
        f"{tm.ones(2):.3f}"


def test_a_name_pytorch_has_and_tinymed_has_not_says_so():
    with pytest.raises(AttributeError, match="'tinymed' has no attribute 'gather': tinymed implements the part"):
        tm.gather  # noqa: B018
    with pytest.raises(AttributeError, match="'tinymed.nn' has no attribute 'Conv1d': tinymed implements"):
        tm.nn.Conv1d  # noqa: B018
    assert not hasattr(tm, "gather") and getattr(tm.optim, "Adagrad", None) is None


def test_contiguous_copies_a_transposed_tensor_so_that_view_works():
    x = tm.arange(6.0).reshape(2, 3)
    assert x.is_contiguous() and x.contiguous() is x and not x.t().is_contiguous()
    flat = x.t().contiguous().view(6)
    assert flat.tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
