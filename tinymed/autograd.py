"""The reverse-mode autograd engine: grad modes, :class:`Function`, and the walk of ``backward``.

Every differentiable operation is a :class:`Function`: its ``forward`` computes the result from
arrays, and its ``backward``, written right beside it, turns the gradient of the result into
gradients of the inputs (the local chain rule). ``Function.apply`` runs forward and records the
Function on the result (its ``grad_fn``); :meth:`TensorBase.backward` walks that graph in reverse
topological order and accumulates ``.grad`` on the leaves.

Broadcasting is handled here, once: when ``a`` of shape (3, 1) met ``b`` of shape (4, 3, 5), each
element of ``a`` was used 4 * 5 times, so its gradient is the sum over those uses. A backward may
return a gradient of the broadcast shape; the engine sums it back to its input's shape
(:func:`sum_to_shape`), as tinygrad does, and refuses any other shape mismatch.

Why a ``TensorBase`` here and the ``Tensor`` in :mod:`tinymed.tensor`: the Tensor's methods (``x +
y``, ``x.sum()``, ``x.relu()``) call ops, the ops are Functions, and ``Function.apply`` must make
tensors. So the part of a tensor the engine needs (its array, device, gradient and ``grad_fn``)
lives here, below the ops, and the ops make new tensors through ``wrap`` on a tensor they were
given, which :class:`tinymed.tensor.Tensor` implements. Nothing here imports the ops or the
Tensor, so the modules form no import cycle (PyTorch splits ``torch.Tensor`` over its C++
``TensorBase`` the same way).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tinymed.device import device as Device
from tinymed.dtypes import is_floating

# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether new operations are being recorded for backward."""
    return _grad_enabled


class _GradMode:
    """Context manager (and decorator) that switches graph recording to ``mode`` inside."""

    def __init__(self, mode: bool) -> None:
        self.mode = mode

    def __enter__(self) -> None:
        global _grad_enabled
        self.previous = _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self.previous

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _GradMode(self.mode):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """``with tm.no_grad():`` runs without recording a graph (evaluation, weight updates)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(_GradMode):
    """Turns recording back on inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)


class set_grad_enabled(_GradMode):
    """``tm.set_grad_enabled(False)`` switches recording off at once (as in PyTorch); used in a
    ``with`` block, the previous mode comes back at its end."""

    def __init__(self, mode: bool) -> None:
        global _grad_enabled
        super().__init__(mode)
        self.previous = _grad_enabled
        _grad_enabled = mode

    def __enter__(self) -> None:
        pass  # already switched by __init__; self.previous holds the mode to restore

    def __call__(self, fn: Callable) -> Callable:
        global _grad_enabled
        _grad_enabled = self.previous  # as a decorator it switches only while fn runs
        return super().__call__(fn)


# --------------------------------------------------------------------------- the graph node


class TensorBase:
    """What the engine knows of a tensor: its array ``data`` (of its device's array module), its
    ``device``, whether it ``requires_grad``, the accumulated ``grad`` (an array, or ``None``) and
    the Function that made it (``grad_fn``). :class:`tinymed.tensor.Tensor` builds on it."""

    def __init__(self, data: Any, device: Device, requires_grad: bool = False) -> None:
        self.data = data
        self._device = device
        self._requires_grad = requires_grad
        self.grad: Any = None
        self._ctx: Function | None = None
        self._retains_grad = False

    @staticmethod
    def wrap(data: Any, device: Device, requires_grad: bool = False) -> TensorBase:
        """A tensor around ``data``, an array already on ``device``, without copying it.
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
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """The number of dims."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """The element type, a NumPy dtype (``tm.float32`` is ``np.dtype("float32")``)."""
        return self.data.dtype

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this tensor."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        if requires_grad and not is_floating(self.dtype):
            raise TypeError(f"requires_grad: only floating-point tensors can require gradients, got dtype {self.dtype}")
        self._requires_grad = bool(requires_grad)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op recorded on the graph."""
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        """The Function that made this tensor (``None`` for a leaf)."""
        return self._ctx

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (Grad-CAM needs it)."""
        self._retains_grad = True

    def set_(self, source: TensorBase) -> TensorBase:
        """Make this tensor share ``source``'s array and device, keeping the object itself (as
        PyTorch's ``set_``): a module moved to another device keeps the Parameter objects an
        optimiser holds. Its ``grad``, if any, is left to the caller."""
        self.data, self._device = source.data, source.device
        return self

    def backward(self, gradient: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``gradient`` is d(loss)/d(self); it may be omitted for a one-element tensor (1 is
        used). The graph is walked iteratively, so depth is limited only by memory."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn")
        if gradient is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: gradient can be omitted only for a one-element tensor, got shape {self.shape}"
                )
            gradient = self._device.backend.xp.ones_like(self.data)
        else:
            if isinstance(gradient, TensorBase):
                gradient = gradient.data
            else:
                gradient = self._device.backend.asarray(np.asarray(gradient))
            if tuple(gradient.shape) != self.shape:
                raise ValueError(
                    f"backward: gradient shape {tuple(gradient.shape)} does not match tensor shape {self.shape}"
                )
            gradient = gradient.astype(self.dtype, copy=False)

        grads = {id(self): gradient}
        for node in reversed(_topological_order(self)):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            if node._ctx is None or node._retains_grad:
                # A fresh array on first write: one gradient may be handed to several inputs (x + x).
                xp = node.device.backend.xp
                node.grad = xp.array(grad) if node.grad is None else xp.asarray(node.grad + grad)
            if node._ctx is None:
                continue
            for parent, g in _input_grads(node._ctx, grad):
                grads[id(parent)] = g if id(parent) not in grads else grads[id(parent)] + g


# --------------------------------------------------------------------------- Function


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` beside it.

    Subclasses implement ``forward(self, *args, **kwargs) -> array`` (Tensor arguments
    arrive as their arrays; they must be positional, keyword arguments are settings) and
    ``backward(self, grad_output) -> grad or tuple of grads`` with one entry per positional
    argument (``None`` for arguments that get no gradient), each of its argument's shape or of
    a shape it broadcast to (the engine sums it back). State needed by backward is kept on
    ``self``; ``self.xp`` is the array module and ``self.backend`` the kernel module of the
    inputs' device. ``grad_output`` may be a read-only view shared with other ops, so backward
    must not write into it. A forward may return a tuple: the first array is the
    differentiable result, the others are returned as plain tensors with no gradient (e.g.
    max-pooling's indices). A forward whose result lives on another device than its inputs
    sets ``self.output_device``.
    """

    xp: ModuleType
    backend: ModuleType
    needs_input_grad: tuple[bool, ...]
    parents: tuple[Any, ...]
    output_device: Device | None = None

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` on the arrays of ``args`` and record the op on the result."""
        for key, value in kwargs.items():
            if isinstance(value, TensorBase):
                raise TypeError(
                    f"{cls.__name__}: tensor argument {key!r} must be passed positionally to be differentiated"
                )
        tensors = [a for a in args if isinstance(a, TensorBase)]
        if not tensors:
            raise TypeError(f"{cls.__name__}.apply: needs at least one tensor argument")
        device = same_device(cls.__name__, tensors)
        fn = cls()
        fn.backend = device.backend
        fn.xp = fn.backend.xp
        fn.needs_input_grad = tuple(isinstance(a, TensorBase) and a.requires_grad for a in args)
        raw = fn.forward(*[a.data if isinstance(a, TensorBase) else a for a in args], **kwargs)
        if fn.output_device is not None:
            device = fn.output_device
        # NumPy turns 0-d results into scalars; a tensor's data is always an array.
        xp = device.backend.xp
        outputs = [xp.asarray(o) for o in (raw if isinstance(raw, tuple) else (raw,))]
        requires_grad = _grad_enabled and any(fn.needs_input_grad) and is_floating(outputs[0].dtype)
        wrap = tensors[0].wrap
        result = wrap(outputs[0], device, requires_grad)
        if requires_grad:
            result._ctx = fn
            fn.parents = args
        if isinstance(raw, tuple):
            return (result, *(wrap(o, device) for o in outputs[1:]))
        return result

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")


def same_device(op: str, tensors: Sequence[TensorBase]) -> Device:
    """The device all ``tensors`` live on, or a ValueError naming ``op`` and where each lives."""
    first = tensors[0].device
    for t in tensors[1:]:
        if t.device != first:
            names = ", ".join(f"{t.backend} {t.shape}" for t in tensors)
            raise ValueError(
                f"{op}: all inputs must live on the same backend, got {names}; move them with .to({str(first)!r})"
            )
    return first


def sum_to_shape(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes broadcasting added or stretched, back to ``shape``.

    If ``a`` of shape (3, 1) met ``b`` of shape (4, 3, 5), each element of ``a`` was used
    4 * 5 times, so its gradient is the sum of those uses."""
    if grad.shape == shape:
        return grad
    if grad.ndim > len(shape):
        grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


# --------------------------------------------------------------------------- the walk


def _topological_order(root: TensorBase) -> list[TensorBase]:
    """Every tensor ``root`` depends on, each after all of its own inputs (iterative DFS)."""
    order: list[TensorBase] = []
    visited: set[int] = set()
    stack: list[tuple[TensorBase, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            stack.extend(
                (p, False)
                for p in node._ctx.parents
                if isinstance(p, TensorBase) and p.requires_grad and id(p) not in visited
            )
    return order


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to exactly ``target``."""
    try:
        return tuple(np.broadcast_shapes(shape, target)) == target
    except ValueError:
        return False


def _input_grads(fn: Function, grad: Any) -> Iterator[tuple[TensorBase, Any]]:
    """Run ``fn.backward`` and pair each gradient with the input it belongs to, summed back to
    the input's shape when broadcasting stretched it, and cast to the input's dtype. Any other
    shape is a bug in the Function (it would otherwise broadcast silently into a wrong ``.grad``)."""
    name = type(fn).__name__
    input_grads = fn.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    if len(input_grads) != len(fn.parents):
        raise RuntimeError(f"{name}.backward returned {len(input_grads)} gradients for {len(fn.parents)} inputs")
    for i, (parent, g) in enumerate(zip(fn.parents, input_grads)):
        if not (isinstance(parent, TensorBase) and parent.requires_grad and g is not None):
            continue
        if tuple(g.shape) != parent.shape:
            if not _broadcasts_to(parent.shape, tuple(g.shape)):
                raise RuntimeError(
                    f"{name}.backward: the gradient of input {i} has shape {tuple(g.shape)}, but the input has shape {parent.shape}"
                )
            g = sum_to_shape(g, parent.shape)
        yield parent, g if g.dtype == parent.dtype else g.astype(parent.dtype)
