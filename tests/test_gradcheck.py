"""tm.gradcheck itself: it must pass correct gradients and catch wrong ones.

The ops' own gradchecks are in test_tensor.py; here the checker is the thing under test, so
each wrong case is a Function written wrong on purpose."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import seeds, shapes

import tinymed as tm


class Square(tm.Function):
    """z = a^2, dz/da = 2a: correct."""

    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, grad):
        return 2 * self.a * grad


class SquareWrongAtOneElement(Square):
    """Square whose backward is off by exactly 1 at flat index 4 and right everywhere else."""

    def backward(self, grad):
        wrong = super().backward(grad).copy()
        wrong.reshape(-1)[4] += 1.0
        return wrong


class SquareMissingFactorTwo(Square):
    """Square with the classic mistake: dz/da = a."""

    def backward(self, grad):
        return self.a * grad


def float64_input(shape, seed=0):
    return tm.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


@settings(max_examples=10, deadline=None)
@given(shape=shapes(max_side=4), seed=seeds)
def test_returns_true_for_a_correct_function(shape, seed):
    assert tm.gradcheck(Square.apply, [float64_input(shape, seed)]) is True


def test_raises_naming_the_wrong_element_and_both_values():
    x = float64_input((2, 3))
    with pytest.raises(tm.GradcheckError) as raised:
        tm.gradcheck(SquareWrongAtOneElement.apply, [x])
    message = str(raised.value)
    assert "input 0" in message and "(shape (2, 3))" in message and "at index (1, 1)" in message
    autograd, numeric = (float(v) for v in re.search(r"autograd (\S+), finite difference (\S+) ", message).groups())
    assert autograd - numeric == pytest.approx(1.0, abs=1e-6)


def test_catches_a_gradient_wrong_everywhere():
    with pytest.raises(tm.GradcheckError, match=r"is wrong at index \(\d+,\)"):
        tm.gradcheck(SquareMissingFactorTwo.apply, [float64_input((4,))])


def test_checks_only_inputs_that_require_grad_and_names_the_position():
    constant, x = float64_input((3,)), float64_input((3,), seed=1)
    constant.requires_grad = False
    assert tm.gradcheck(lambda c, t: c * Square.apply(t), [constant, x])
    with pytest.raises(tm.GradcheckError, match="gradient of input 1"):
        tm.gradcheck(lambda c, t: c * SquareMissingFactorTwo.apply(t), [constant, x])


def test_refuses_float32_inputs():
    with pytest.raises(TypeError, match=r"gradcheck: input 0 has dtype float32; finite differences need float64"):
        tm.gradcheck(Square.apply, [tm.ones(3, requires_grad=True)])


def test_needs_an_input_that_requires_grad_and_a_float_output():
    with pytest.raises(ValueError, match="no input tensor has requires_grad=True"):
        tm.gradcheck(Square.apply, [tm.ones(3, dtype=tm.float64)])
    with pytest.raises(ValueError, match="fn returned no floating-point tensor"):
        tm.gradcheck(lambda t: t.argmax(), [float64_input((3,))])


def test_several_outputs_and_outputs_independent_of_the_input():
    x = float64_input((2, 3))
    assert tm.gradcheck(lambda t: t.max(1), [x])  # (values, indices): the integer indices are skipped
    assert tm.gradcheck(lambda t: (t.exp(), t.sum(0)), [x])
    assert tm.gradcheck(lambda t: tm.ones(2, dtype=tm.float64), [x])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_reports_a_non_finite_gradient():
    x = tm.tensor([0.0, 1.0], dtype=tm.float64, requires_grad=True)
    with pytest.raises(tm.GradcheckError, match=r"at index \(0,\): autograd inf"):
        tm.gradcheck(lambda t: t.sqrt(), [x])


def test_tolerances_decide_how_wrong_is_wrong():
    class SlightlyOff(Square):
        def backward(self, grad):
            return 2.0001 * self.a * grad

    x = float64_input((3,))
    assert tm.gradcheck(SlightlyOff.apply, [x], rtol=1e-3)
    with pytest.raises(tm.GradcheckError):
        tm.gradcheck(SlightlyOff.apply, [x], atol=1e-9, rtol=1e-6)


def test_leaves_inputs_and_their_gradients_as_they_were():
    x = float64_input((2, 2))
    x.grad = tm.full((2, 2), 7.0, dtype=tm.float64)
    transposed = tm.tensor(np.ones((3, 2)).T, requires_grad=True)  # not C-contiguous
    scalar = tm.tensor(2.0, dtype=tm.float64, requires_grad=True)
    before = x.numpy().copy(), transposed.array, scalar.array
    assert tm.gradcheck(lambda a, b, c: (a * c).sum() + b.exp().sum(), [x, transposed, scalar])
    np.testing.assert_array_equal(x.numpy(), before[0])
    assert transposed.array is before[1] and scalar.array is before[2] and scalar.shape == ()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 7.0))


def test_works_inside_no_grad():
    with tm.no_grad():
        assert tm.gradcheck(Square.apply, [float64_input((3,))])
