"""Activations: relu, leaky_relu, sigmoid, tanh, gelu, softmax and log_softmax.

Each is an element-wise (or, for the softmaxes, row-wise) Function with its derivative beside
it, written so that it stays finite for any finite input: the logistic function never takes
e^x of a large x, the softmaxes subtract the row maximum first (the log-sum-exp trick). The
Tensor's methods ``x.relu()``, ``x.softmax(dim)``, ... call these functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tinymed.autograd import Function
from tinymed.ops.arguments import dim_to_axis, float_tensor

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class _ReLU(Function):
    """y = max(x, 0);  dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        self.positive = x > 0
        return self.xp.maximum(x, 0)

    def backward(self, grad):
        return grad * self.positive


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0). ``inplace`` is accepted for PyTorch code; tinymed always returns a new tensor."""
    float_tensor("relu", "input", input)
    return _ReLU.apply(input)


class _LeakyReLU(Function):
    """y = x if x > 0 else negative_slope * x;  dy/dx = 1 or negative_slope."""

    def forward(self, x, negative_slope):
        # Each element's slope, looked up by x > 0 (False -> 0, True -> 1) in a two-entry table
        # of x's dtype: 3x faster than xp.where, whose branch on each sign the CPU mispredicts.
        table = self.xp.asarray([negative_slope, 1], dtype=x.dtype)
        self.slope = self.xp.take(table, (x > 0).view(self.xp.uint8))
        return x * self.slope

    def backward(self, grad):
        return grad * self.slope


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise. ``inplace`` is accepted for PyTorch code;
    tinymed always returns a new tensor."""
    float_tensor("leaky_relu", "input", input)
    return _LeakyReLU.apply(input, negative_slope=float(negative_slope))


def logistic(xp: Any, x: Any) -> Any:
    """The logistic function of an array, 1 / (1 + e^-x), without overflow: with e = e^-|x| <= 1 it is 1/(1+e) for x >= 0 and
    e/(1+e) for x < 0."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class _Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y)."""

    def forward(self, x):
        self.y = logistic(self.xp, x)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


def sigmoid(input: Tensor) -> Tensor:
    """The logistic function 1 / (1 + e^-x), finite for any x."""
    float_tensor("sigmoid", "input", input)
    return _Sigmoid.apply(input)


class _Tanh(Function):
    """y = tanh x;  dy/dx = 1 - y^2."""

    def forward(self, x):
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent."""
    float_tensor("tanh", "input", input)
    return _Tanh.apply(input)


# Chebyshev coefficients of Numerical Recipes (3rd ed., section 6.2.2) for erfc on z >= 0:
# erfc(z) = t exp(-z^2 + P(4t - 2)) with t = 2 / (2 + z); relative error below 1e-13.
_ERFC_COEFFICIENTS = (
    -1.3026537197817094,
    6.4196979235649026e-1,
    1.9476473204185836e-2,
    -9.561514786808631e-3,
    -9.46595344482036e-4,
    3.66839497852761e-4,
    4.2523324806907e-5,
    -2.0278578112534e-5,
    -1.624290004647e-6,
    1.303655835580e-6,
    1.5626441722e-8,
    -8.5238095915e-8,
    6.529054439e-9,
    5.059343495e-9,
    -9.91364156e-10,
    -2.27365122e-10,
    9.6467911e-11,
    2.394038e-12,
    -6.886027e-12,
    8.94487e-13,
    3.13092e-13,
    -1.12708e-13,
    3.81e-16,
    7.106e-15,
    -1.523e-15,
    -9.4e-17,
    1.21e-16,
    -2.8e-17,
)


def _erfc(xp: Any, z: Any) -> Any:
    """erfc(z) for z >= 0 (NumPy has no erf), the Chebyshev sum evaluated by Clenshaw's rule."""
    t = 2 / (2 + z)
    ty = 4 * t - 2
    d = dd = xp.zeros_like(z)
    for c in _ERFC_COEFFICIENTS[:0:-1]:
        d, dd = ty * d - dd + c, d
    return t * xp.exp(-z * z + 0.5 * (_ERFC_COEFFICIENTS[0] + ty * d) - dd)


class _GELU(Function):
    """y = x Phi(x), Phi the standard normal CDF;  dy/dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi).

    Phi(x) = erfc(-x/sqrt 2) / 2, written with erfc of |x| so both tails keep their digits.
    approximate='tanh': y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = (1 + tanh u)/2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2.
    """

    def forward(self, x, approximate):
        xp = self.xp
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
            return 0.5 * x * (1 + self.t)
        tail = 0.5 * _erfc(xp, xp.abs(x) / math.sqrt(2))
        self.cdf = xp.where(x >= 0, 1 - tail, tail)
        return x * self.cdf

    def backward(self, grad):
        x = self.x
        if self.approximate == "tanh":
            du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * du)
        pdf = self.xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return grad * (self.cdf + x * pdf)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """Gaussian error linear unit x * Phi(x); ``approximate='tanh'`` for the tanh form."""
    op = "gelu"
    float_tensor(op, "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _GELU.apply(input, approximate=approximate)


class _Softmax(Function):
    """y_i = e^(x_i - m) / sum_j e^(x_j - m) along one axis, m = max_j x_j (so no e^x
    overflows);  dL/dx_i = y_i (g_i - sum_j g_j y_j)."""

    def forward(self, x, axis):
        self.axis = axis
        e = self.xp.exp(x - x.max(axis=axis, keepdims=True))
        self.y = e / e.sum(axis=axis, keepdims=True)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=self.axis, keepdims=True))


class _LogSoftmax(Function):
    """y_i = x_i - m - log sum_j e^(x_j - m), m = max_j x_j (the log-sum-exp trick);
    dL/dx_i = g_i - e^(y_i) sum_j g_j."""

    def forward(self, x, axis):
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.y = shifted - self.xp.log(self.xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.y

    def backward(self, grad):
        return grad - self.xp.exp(self.y) * grad.sum(axis=self.axis, keepdims=True)


def _along(fn: type[Function], op: str, input: Tensor, dim: int, dtype: Any) -> Tensor:
    float_tensor(op, "input", input)
    if dtype is not None:
        input = input.type(dtype)
    if input.ndim == 0:
        return fn.apply(input.reshape(1), axis=0).reshape(())
    return fn.apply(input, axis=dim_to_axis(dim, input.ndim, op))


def softmax(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """e^x_i / sum_j e^x_j along ``dim`` (computed in ``dtype`` when given); finite for any finite x."""
    return _along(_Softmax, "softmax", input, dim, dtype)


def log_softmax(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """log softmax along ``dim``, by the log-sum-exp trick; finite for any finite x."""
    return _along(_LogSoftmax, "log_softmax", input, dim, dtype)
