"""TensorBase: the part of a tensor the autograd engine needs, below the ops.

A tensor holds its ``array`` (of its device's array module) on a ``device``; whether it
``requires_grad``; its accumulated gradient ``grad`` (a Tensor, or ``None``); the
:class:`~tinymed.autograd.function.Function` that made it (``grad_fn``); and a version counter,
bumped by every in-place write, that lets a backward notice that a value it saved has changed.

Why a ``TensorBase`` here and the ``Tensor`` in :mod:`tinymed.tensor`: the Tensor's methods (``x +
y``, ``x.sum()``, ``x.relu()``) call ops, the ops are Functions, and ``Function.apply`` must make
tensors. So what the engine needs lives here, below the ops, and the ops make new tensors through
``wrap`` on a tensor they were given, which :class:`tinymed.tensor.Tensor` implements (PyTorch
splits ``torch.Tensor`` over its C++ ``TensorBase`` the same way).

Storage and views, as tinymed has them: ``t.data`` and ``t.detach()`` are new Tensors around the
same array (``detach`` shares the version counter too, ``data`` does not: PyTorch's rule, which
makes writes through ``.data`` invisible to autograd). An op whose result shares memory with its
input (``reshape``, ``permute``, basic indexing, ``expand``) gives a view: the result records its
``_base`` and shares the base's version counter, so an in-place write through either is seen by
every backward that saved the other.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from tinymed.autograd.grad_mode import is_inference_mode_enabled
from tinymed.device import device as Device
from tinymed.dtypes import is_floating

if TYPE_CHECKING:
    from tinymed.autograd.function import Function


class VersionCounter:
    """How many in-place writes a storage has seen; shared by a tensor, its views and ``detach()``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class TensorBase:
    """What the engine knows of a tensor (see the module docstring). Subclasses implement
    :meth:`wrap`; :class:`tinymed.tensor.Tensor` is the one users meet."""

    def __init__(self, array: Any, device: Device, requires_grad: bool = False) -> None:
        self.array = array
        self._device = device
        self._requires_grad = requires_grad
        self._grad: TensorBase | None = None
        self._ctx: Function | None = None
        self._version_counter = VersionCounter()
        self._base: TensorBase | None = None
        self._inference = is_inference_mode_enabled()

    @staticmethod
    def wrap(array: Any, device: Device, requires_grad: bool = False) -> TensorBase:
        """A tensor around ``array``, an array already on ``device``, without copying it.
        Subclasses make their own kind of tensor; the engine makes every result through this."""
        raise NotImplementedError("TensorBase.wrap: a tensor class must say how it wraps arrays")

    @property
    def device(self) -> Device:
        """Where the tensor lives, and which kernels run there (:class:`tinymed.device`)."""
        return self._device

    @property
    def backend(self) -> str:
        """The kernel family's name: ``"numpy"``, ``"cupy"`` or ``"numba"``."""
        return self._device.kernels

    @property
    def shape(self) -> tuple[int, ...]:
        """The size of each dim, as a tuple."""
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        """The number of dims."""
        return self.array.ndim

    @property
    def dtype(self) -> np.dtype:
        """The element type, a NumPy dtype (``tm.float32`` is ``np.dtype("float32")``)."""
        return self.array.dtype

    # ---- the values, as PyTorch exposes them
    @property
    def data(self) -> TensorBase:
        """A new tensor around the same array, cut from the graph, with a version counter of its
        own: writes through it are invisible to autograd (PyTorch's ``.data``; prefer
        ``detach()``, whose writes a backward can still detect)."""
        return self.wrap(self.array, self._device)

    @data.setter
    def data(self, source: TensorBase) -> None:
        if not isinstance(source, TensorBase):
            raise TypeError(f"data: expected a Tensor to take the values of, got {type(source).__name__}")
        self.array, self._device = source.array, source.device

    @property
    def _version(self) -> int:
        """How many in-place writes this tensor's storage has seen (PyTorch's ``t._version``)."""
        return self._version_counter.value

    def increment_version(self) -> None:
        """Record an in-place write to the array made outside the ops (an optimiser's update)."""
        self._version_counter.value += 1

    def is_inference(self) -> bool:
        """Whether this tensor was made inside ``inference_mode()``."""
        return self._inference

    # ---- gradients
    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this tensor."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        if requires_grad and not is_floating(self.dtype):
            raise TypeError(f"requires_grad: only floating-point tensors can require gradients, got dtype {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a computed "
                "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach()."
            )
        self._requires_grad = bool(requires_grad)

    @property
    def grad(self) -> TensorBase | None:
        """The gradient backward accumulated here: a Tensor of this tensor's shape, dtype and
        device (a leaf that does not require grad), or ``None`` before any backward."""
        return self._grad

    @grad.setter
    def grad(self, grad: TensorBase | None) -> None:
        if grad is not None:
            if not isinstance(grad, TensorBase):
                raise TypeError(
                    f"assigned grad expected to be a Tensor or None but got grad of type {type(grad).__name__}"
                )
            if grad.shape != self.shape:
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(grad.shape)}' to a tensor of size "
                    f"'{list(self.shape)}'. Please ensure that the gradient and the tensor are the same size"
                )
            if grad.dtype != self.dtype or grad.device != self.device:
                raise TypeError(
                    f"assigned grad has data of a different type or device: {grad.dtype} on {grad.device}, "
                    f"the tensor is {self.dtype} on {self.device}"
                )
        self._grad = grad

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op recorded on the graph."""
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        """The Function that made this tensor (``None`` for a leaf)."""
        return self._ctx

    @property
    def retains_grad(self) -> bool:
        """Whether backward keeps ``.grad`` on this non-leaf tensor (see :meth:`retain_grad`)."""
        return self._ctx is not None and self._ctx.retained is not None and self._ctx.retained() is self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (Grad-CAM needs it); a leaf
        keeps its gradient anyway."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._ctx is not None:
            self._ctx.retained = weakref.ref(self)

    def set_(self, source: TensorBase) -> TensorBase:
        """Make this tensor share ``source``'s array and device, keeping the object itself (as
        PyTorch's ``set_``): a module moved to another device keeps the Parameter objects an
        optimiser holds. Its ``grad``, if any, is left to the caller."""
        self.array, self._device = source.array, source.device
        self.increment_version()
        return self
