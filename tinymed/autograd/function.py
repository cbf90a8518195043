"""Function: one differentiable operation, its ``forward`` on arrays and its ``backward`` beside it.

``Function.apply`` runs forward and records the Function on the result (its ``grad_fn``): the
edges to where each input's gradient goes next (the Function that made the input, or the input
itself when it is a leaf), and the version of every tensor whose array forward kept for backward,
so that :mod:`tinymed.autograd.engine` can refuse a backward whose saved values were since
written in place, as PyTorch does.

Broadcasting is handled once, in the engine: when ``a`` of shape (3, 1) met ``b`` of shape (4, 3,
5), each element of ``a`` was used 4 * 5 times, so its gradient is the sum over those uses. A
backward may return a gradient of the broadcast shape; the engine sums it back to its input's
shape (:func:`sum_to_shape`), as tinygrad does, and refuses any other shape mismatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from tinymed.autograd.grad_mode import is_grad_enabled
from tinymed.autograd.tensor_base import TensorBase, VersionCounter
from tinymed.device import device as Device
from tinymed.dtypes import is_floating

# Where an input's gradient goes (the Function that made it, or the leaf itself), with the
# input's shape and dtype, which the gradient is summed back to and cast to.
Edge = tuple[Any, tuple[int, ...], np.dtype]


class SavedValue:
    """A tensor whose array a Function kept for backward, and its version at that moment."""

    def __init__(self, counter: VersionCounter, shape: tuple[int, ...], dtype: np.dtype, output_of: str) -> None:
        self.counter, self.version = counter, counter.value
        self.shape, self.dtype, self.output_of = shape, dtype, output_of

    def check(self) -> None:
        """Raise PyTorch's error if the tensor was written in place since it was saved."""
        if self.counter.value != self.version:
            what = f"[{self.dtype} tensor of shape {list(self.shape)}]"
            if self.output_of:
                what += f", which is output 0 of {self.output_of},"
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: {what} is at version {self.counter.value}; expected version {self.version} "
                "instead. Hint: write that operation out of place (y = y + 1 rather than y += 1), or "
                "clone() the tensor before changing it."
            )


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` beside it.

    Subclasses implement ``forward(self, *args, **kwargs) -> array`` (Tensor arguments
    arrive as their arrays; they must be positional, keyword arguments are settings) and
    ``backward(self, grad_output) -> grad or tuple of grads`` with one entry per positional
    argument (``None`` for arguments that get no gradient), each of its argument's shape or of
    a shape it broadcast to (the engine sums it back). State needed by backward is kept on
    ``self``; ``self.xp`` is the array module and ``self.backend`` the kernel module of the
    inputs' device. The arrays kept on ``self`` are what the engine frees after a backward
    without ``retain_graph`` and watches for in-place writes. ``grad_output`` may be a read-only
    view shared with other ops, so backward must not write into it. A forward may return a
    tuple: the first array is the differentiable result, the others are returned as plain
    tensors with no gradient (e.g. max-pooling's indices). A forward whose result lives on
    another device than its inputs sets ``self.output_device``.
    """

    xp: ModuleType
    backend: ModuleType
    needs_input_grad: tuple[bool, ...]
    parents: tuple[Any, ...]
    next_edges: tuple[Edge | None, ...]
    saved_values: list[SavedValue]
    output_device: Device | None = None
    # A weak reference to the output when it called retain_grad(); set by TensorBase.
    retained: Callable[[], Any] | None = None
    # Set once backward has freed the saved arrays (a backward without retain_graph).
    released: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse PyTorch's style of Function when it is written, not when it first runs: there
        the call would fail with a confusing missing-argument error."""
        super().__init_subclass__(**kwargs)
        if any(isinstance(vars(cls).get(name), staticmethod) for name in ("forward", "backward")):
            raise TypeError(
                f"{cls.__name__}: tinymed's Function has its own interface, not PyTorch's @staticmethod "
                "forward(ctx, ...): write forward(self, *arrays) and backward(self, grad) as plain methods "
                "on the backend's arrays, and keep what backward needs on self (self.x = x rather than "
                "ctx.save_for_backward(x)); see tinymed/autograd/function.py"
            )

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
        raw = fn.forward(*[a.array if isinstance(a, TensorBase) else a for a in args], **kwargs)
        same_place = fn.output_device is None
        if not same_place:
            device = fn.output_device
        # NumPy turns 0-d results into scalars; a tensor's array is always an array.
        xp = device.backend.xp
        outputs = [xp.asarray(o) for o in (raw if isinstance(raw, tuple) else (raw,))]
        requires_grad = is_grad_enabled() and any(fn.needs_input_grad) and is_floating(outputs[0].dtype)
        if requires_grad and any(t.is_inference() for t in tensors):
            raise RuntimeError(
                f"{cls.__name__}: Inference tensors cannot be saved for backward. To work around you can "
                "make a clone to get a normal tensor and use it in autograd."
            )
        wrap = tensors[0].wrap
        result = wrap(outputs[0], device, requires_grad)
        if same_place:
            _mark_view(result, tensors)
        if requires_grad:
            result._ctx = fn
            fn.parents = args
            fn.next_edges = tuple(_edge(a) for a in args)
            fn.saved_values = _saved_values(fn, tensors, result)
        if isinstance(raw, tuple):
            return (result, *(wrap(o, device) for o in outputs[1:]))
        return result

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def saved_arrays(self) -> dict[str, Any]:
        """The attributes forward kept for backward that hold arrays (alone or in a tuple/list)."""
        array_type = self.xp.ndarray
        return {
            name: value
            for name, value in vars(self).items()
            if isinstance(value, array_type)
            or (isinstance(value, (tuple, list)) and any(isinstance(v, array_type) for v in value))
        }

    @property
    def next_functions(self) -> tuple[Any, ...]:
        """Where each input's gradient goes: the Function that made it, the leaf tensor itself,
        or ``None`` (PyTorch's ``grad_fn.next_functions``, with leaves in place of AccumulateGrad)."""
        return tuple(None if edge is None else edge[0] for edge in self.next_edges)


def _edge(arg: Any) -> Edge | None:
    """Where the gradient of ``arg`` goes, or None when it needs none."""
    if not (isinstance(arg, TensorBase) and arg.requires_grad):
        return None
    return (arg.grad_fn if arg.grad_fn is not None else arg), arg.shape, arg.dtype


def _mark_view(result: TensorBase, inputs: Sequence[TensorBase]) -> None:
    """Make ``result`` a view of the input whose memory it shares (``reshape``, ``permute``,
    basic indexing): it takes that input's version counter, so writes through either count."""
    xp = result.device.backend.xp
    for t in inputs:
        if xp.may_share_memory(result.array, t.array):
            result._base = t._base if t._base is not None else t
            result._version_counter = t._version_counter
            return


def _saved_values(fn: Function, inputs: Sequence[TensorBase], output: TensorBase) -> list[SavedValue]:
    """The tensors among ``inputs`` and ``output`` whose memory ``fn`` kept for its backward."""
    xp = fn.xp
    kept = [
        array
        for value in fn.saved_arrays().values()
        for array in (value if isinstance(value, (tuple, list)) else (value,))
        if isinstance(array, xp.ndarray)
    ]
    saved = []
    for t, output_of in [*((t, "") for t in inputs), (output, type(fn).__name__)]:
        if any(xp.may_share_memory(array, t.array) for array in kept):
            saved.append(SavedValue(t._version_counter, t.shape, t.dtype, output_of))
    return saved


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
