"""Element-wise arithmetic: ``+ - * / **``, negation, exp, log, sqrt, abs, clamp, maximum/minimum.

Each op is a :class:`~tinymed.autograd.Function` whose forward is one expression on the
backend's array module and whose backward is its derivative. The operands may have
different shapes that broadcast (``(3, 1) + (4, 3, 5)``); a backward then returns gradients of
the broadcast shape and the engine sums them back to each input's shape
(:func:`tinymed.autograd.sum_to_shape`). The Tensor's operators (``x + y``, ``x.exp()``) call
these after :func:`tinymed.ops.operands.binary_operands` has promoted the dtypes.
"""

from __future__ import annotations

import numpy as np

from tinymed.autograd import Function


class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        ga = grad * self.b if self.needs_input_grad[0] else None
        gb = grad * self.a if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b^2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        ga = grad / self.b if self.needs_input_grad[0] else None
        gb = -grad * self.a / (self.b * self.b) if self.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """z = a ** b;  dz/da = b a^(b-1), dz/db = a^b log(a)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.z = a**b
        return self.z

    def backward(self, grad):
        xp = self.xp
        ga = gb = None
        if self.needs_input_grad[0]:
            # b * a^(b-1), not b * z / a, which would divide by a = 0.
            ga = grad * self.b * self.a ** (self.b - 1)
        if self.needs_input_grad[1]:
            # log(a) is undefined for a <= 0; where z = 0 (a = 0, b > 0) PyTorch gives 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.where(self.a > 0, xp.log(xp.where(self.a > 0, self.a, 1)), xp.nan)
            gb = grad * self.z * xp.where(self.z == 0, 0, log_a)
        return ga, gb


class Neg(Function):
    """z = -a;  dz/da = -1."""

    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class Exp(Function):
    """z = e^a;  dz/da = e^a = z."""

    def forward(self, a):
        self.z = self.xp.exp(a)
        return self.z

    def backward(self, grad):
        return grad * self.z


class Log(Function):
    """z = ln a;  dz/da = 1/a."""

    def forward(self, a):
        self.a = a
        return self.xp.log(a)

    def backward(self, grad):
        return grad / self.a


class Sqrt(Function):
    """z = sqrt(a);  dz/da = 1 / (2 sqrt(a)) = 1 / (2 z)."""

    def forward(self, a):
        self.z = self.xp.sqrt(a)
        return self.z

    def backward(self, grad):
        return grad / (2 * self.z)


class Abs(Function):
    """z = |a|;  dz/da = sign(a) (0 at 0, as PyTorch)."""

    def forward(self, a):
        self.sign = self.xp.sign(a)
        return self.xp.abs(a)

    def backward(self, grad):
        return grad * self.sign


class Clamp(Function):
    """z = min(max(a, low), high);  dz/da = 1 inside [low, high], 0 where clamped."""

    def forward(self, a, low, high):
        self.inside = self.xp.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return self.xp.clip(a, low, high).astype(a.dtype, copy=False)

    def backward(self, grad):
        return grad * self.inside


class Maximum(Function):
    """z = max(a, b) (``kind="max"``) or min(a, b);  the gradient goes to the input that won,
    split evenly between the two on a tie, as PyTorch's ``maximum``/``minimum``."""

    def forward(self, a, b, kind):
        won = a > b if kind == "max" else a < b
        self.share_a = self.xp.where(a == b, 0.5, won).astype(a.dtype)
        return self.xp.maximum(a, b) if kind == "max" else self.xp.minimum(a, b)

    def backward(self, grad):
        return grad * self.share_a, grad * (1 - self.share_a)
