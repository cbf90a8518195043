"""Conversions that keep the values: a cast to another dtype, a copy to another device.

Both are differentiable, so ``x.double()`` or ``x.to("numba")`` can sit inside a graph: the
gradient is cast back, or copied back, to where the input was.
"""

from __future__ import annotations

from tinymed.autograd import Function
from tinymed.dtypes import is_floating


class Cast(Function):
    """z = a converted to ``dtype``;  the gradient is converted back (none for integers)."""

    def forward(self, a, dtype):
        self.source_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.source_dtype) if is_floating(self.source_dtype) else None


class ToDevice(Function):
    """z = a copied to the device ``target`` (through the host);  the gradient is copied back."""

    def forward(self, a, target):
        self.output_device = target
        return target.backend.asarray(self.backend.to_numpy(a))

    def backward(self, grad):
        return self.backend.asarray(self.output_device.backend.to_numpy(grad))
