"""Conversions that keep the values: a cast to another dtype, a copy to another device, a copy
into new memory (``clone``) or into another tensor (``copy_``).

All are differentiable, so ``x.double()``, ``x.to("numba")`` or ``x.clone()`` can sit inside a
graph: the gradient is cast back, or copied back, to where the input was.
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


class Clone(Function):
    """z = a copied into new memory;  dz/da = 1."""

    def forward(self, a):
        return a.copy()

    def backward(self, grad):
        return grad


class Copy(Function):
    """z = src broadcast to dst's shape and cast to dst's dtype (what ``dst.copy_(src)`` writes);
    dz/ddst = 0, as the old values are overwritten, and dz/dsrc = 1 (the engine sums it back
    over the broadcast and casts it to src's dtype)."""

    def forward(self, dst, src):
        return self.xp.broadcast_to(src, dst.shape).astype(dst.dtype)

    def backward(self, grad):
        return self.xp.zeros_like(grad) if self.needs_input_grad[0] else None, grad
