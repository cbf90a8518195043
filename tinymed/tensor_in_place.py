"""The Tensor's in-place vocabulary: ``add_``, ``sub_``, ``mul_``, ``div_``, ``clamp_``,
``masked_fill_``, ``copy_``, ``fill_``, ``zero_``, ``normal_``, ``uniform_``, ``x += y`` and
``x[i] = v``, with PyTorch's names and arguments.

Each is its out-of-place op written back into the tensor's own array by
:func:`tinymed.autograd.apply_in_place`, which bumps the version counter, refuses what PyTorch
refuses (a write to a leaf that requires grad outside ``no_grad``) and records the write on the
graph when it must be. :class:`tinymed.tensor.Tensor` inherits these methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tinymed import random
from tinymed.autograd import TensorBase, apply_in_place, check_in_place, is_grad_enabled, write
from tinymed.ops.conversion import Copy
from tinymed.ops.operands import broadcast_shape, operand
from tinymed.ops.shape import index_arrays

if TYPE_CHECKING:
    from tinymed.tensor import Tensor


class InPlaceMethods:
    """Mixed into :class:`tinymed.tensor.Tensor` (see the module docstring); every method returns
    the tensor itself, as in PyTorch."""

    def add_(self: Tensor, other: Any, *, alpha: float = 1) -> Tensor:
        """self += alpha * other."""
        return apply_in_place("add_", self, lambda t: t.add(other, alpha=alpha), other)

    def sub_(self: Tensor, other: Any, *, alpha: float = 1) -> Tensor:
        """self -= alpha * other."""
        return apply_in_place("sub_", self, lambda t: t.sub(other, alpha=alpha), other)

    def mul_(self: Tensor, other: Any) -> Tensor:
        """self *= other."""
        return apply_in_place("mul_", self, lambda t: t * other, other)

    def div_(self: Tensor, other: Any) -> Tensor:
        """self /= other (true division: an integer tensor cannot hold the result)."""
        return apply_in_place("div_", self, lambda t: t / other, other)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def clamp_(self: Tensor, min: Any = None, max: Any = None) -> Tensor:
        """Limit every element to ``[min, max]`` in place."""
        return apply_in_place("clamp_", self, lambda t: t.clamp(min, max))

    clip_ = clamp_

    def masked_fill_(self: Tensor, mask: Any, value: Any) -> Tensor:
        """Write ``value`` where ``mask`` is True (see :meth:`~tinymed.tensor.Tensor.masked_fill`)."""
        return apply_in_place("masked_fill_", self, lambda t: t.masked_fill(mask, value), value)

    def copy_(self: Tensor, src: Any, non_blocking: bool = False) -> Tensor:
        """Write ``src`` (a tensor on any device, an array or a number, broadcast to this shape
        and cast to this dtype) into this tensor; the gradient flows to ``src``. ``non_blocking``
        is PyTorch's; tinymed's copies always complete before returning."""
        if isinstance(src, TensorBase):
            src = src if src.device == self.device else src.to(self.device)
        else:
            src = operand(src, self, "copy_")
        if broadcast_shape("copy_", self, src, names=("destination", "source")) != self.shape:
            raise ValueError(f"copy_: source shape {src.shape} does not fit destination {self.shape}")
        return apply_in_place("copy_", self, lambda t: Copy.apply(t, src), src)

    def fill_(self: Tensor, value: Any) -> Tensor:
        """Write ``value`` (a number or a 0-d tensor) into every element."""
        if isinstance(value, TensorBase) and value.ndim != 0:
            raise RuntimeError(
                f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions."
            )
        return self.copy_(value)

    def zero_(self: Tensor) -> Tensor:
        """Write zeros into every element."""
        return self.fill_(0)

    def normal_(
        self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator: random.Generator | None = None
    ) -> Tensor:
        """Fill with samples of N(mean, std^2) drawn from ``generator`` (the global one when None)."""
        return self.copy_(random.generator(generator, "normal_").normal(mean, std, self.shape))

    def uniform_(
        self: Tensor, from_: float = 0.0, to: float = 1.0, *, generator: random.Generator | None = None
    ) -> Tensor:
        """Fill with samples of U[from_, to) drawn from ``generator`` (the global one when None)."""
        return self.copy_(random.generator(generator, "uniform_").uniform(from_, to, self.shape))

    def __setitem__(self: Tensor, index: Any, value: Any) -> None:
        recording = is_grad_enabled() and (
            self.requires_grad or (isinstance(value, TensorBase) and value.requires_grad)
        )
        check_in_place("setitem", self, recording)
        if recording:
            raise RuntimeError(
                "setitem: tinymed does not record an indexed assignment for backward (the tensor or the value "
                "requires grad); build the result with tm.where or tm.cat, or assign under tm.no_grad()"
            )
        if isinstance(value, TensorBase):
            value = (value if value.device == self.device else value.to(self.device)).array
        write("setitem", self, value, index_arrays(index, self))
