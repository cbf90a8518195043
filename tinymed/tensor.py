"""Tensor and the reverse-mode autograd engine.

A :class:`Tensor` wraps an array (``.data``) of one backend (NumPy, CuPy or Numba-on-GPU).
Every differentiable operation is a :class:`Function`: its ``forward`` computes the result
from arrays, and its ``backward``, written right beside it, turns the gradient of the
result into gradients of the inputs (the local chain rule). Calling an op records the
Function on the result (``t._ctx``); :meth:`Tensor.backward` walks that graph in reverse
topological order and accumulates ``.grad`` on the leaves.

The element-wise maths, reductions and shape operations here use the backend's array module
``xp`` (``numpy`` or ``cupy``) directly; the four formula families (convolution, pooling,
affine, attention) live in :mod:`tinymed.functional` and call the backend's primitives.
"""

from __future__ import annotations

import functools
import math
from collections import namedtuple
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from tinymed import backends

# --------------------------------------------------------------------------- dtypes

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
uint8 = np.dtype(np.uint8)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
# PyTorch's aliases, so `tm.float`, `tm.long` read as they do in PyTorch code.
half, double, long = float16, float64, int64

_default_dtype = float32


def get_default_dtype() -> np.dtype:
    """The dtype Python floats become (float32, as in PyTorch)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Make Python floats become ``dtype`` (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


def _is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether new operations are being recorded for backward."""
    return _grad_enabled


class set_grad_enabled:
    """Context manager (and decorator) that turns graph recording on or off."""

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
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(set_grad_enabled):
    """``with tm.no_grad():`` runs without recording a graph (evaluation, weight updates)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turns recording back on inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)


# --------------------------------------------------------------------------- Function


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` beside it.

    Subclasses implement ``forward(self, *args, **kwargs) -> array`` (Tensor arguments
    arrive as their arrays) and ``backward(self, grad_output) -> grad or tuple of grads``
    with one entry per positional argument (``None`` for arguments that get no gradient).
    State needed by backward is kept on ``self``. A forward may return a tuple: the first
    array is the differentiable result, the others are returned as plain tensors with no
    gradient (e.g. max-pooling's indices).
    """

    xp: ModuleType
    backend: ModuleType
    needs_input_grad: tuple[bool, ...]
    parents: tuple[Any, ...]

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in args if isinstance(a, Tensor)]
        backend = _common_backend(cls.__name__, tensors)
        fn = cls()
        fn.backend, fn.xp = backend, backend.xp
        fn.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        raw = fn.forward(*[a.data if isinstance(a, Tensor) else a for a in args], **kwargs)
        outputs = raw if isinstance(raw, tuple) else (raw,)
        requires_grad = _grad_enabled and any(fn.needs_input_grad)
        result = Tensor._wrap(outputs[0], backend, requires_grad and _is_float(outputs[0].dtype))
        if result.requires_grad:
            result._ctx = fn
            fn.parents = args
        if isinstance(raw, tuple):
            return (result, *(Tensor._wrap(o, backend, False) for o in outputs[1:]))
        return result

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")


def _common_backend(op: str, tensors: Sequence["Tensor"]) -> ModuleType:
    if not tensors:
        return backends.get("numpy")
    first = tensors[0]._backend
    for t in tensors[1:]:
        if t._backend is not first:
            names = ", ".join(f"{t.backend} {t.shape}" for t in tensors)
            raise ValueError(
                f"{op}: all inputs must live on the same backend, got {names}; "
                f"move them with .to({first.name!r})"
            )
    return first


def _unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes broadcasting added or stretched, back to ``shape``.

    If ``a`` of shape (3, 1) met ``b`` of shape (4, 3, 5), each element of ``a`` was used
    4 * 5 times, so its gradient is the sum of those uses."""
    if grad.shape == shape:
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


# --------------------------------------------------------------------------- Tensor


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Create tensors with :func:`tinymed.tensor` (or ``zeros``, ``randn``, ...). ``data`` is the
    array, ``grad`` the accumulated gradient (an array of the same backend, or ``None``).
    """

    # Let NumPy hand ``ndarray + Tensor`` to Tensor.__radd__ instead of looping over it.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None, backend: str = "numpy") -> None:
        module = backends.get(backend)
        array = _to_array(data, dtype)
        self._init(module.asarray(array), module, False)
        self.requires_grad_(requires_grad)

    def _init(self, data: Any, backend: ModuleType, requires_grad: bool) -> None:
        self.data = data
        self._backend = backend
        self.requires_grad = requires_grad
        self.grad: Any = None
        self._ctx: Function | None = None
        self._retains_grad = False

    @classmethod
    def _wrap(cls, data: Any, backend: ModuleType, requires_grad: bool = False) -> "Tensor":
        """Wrap an array already on ``backend`` without copying."""
        t = cls.__new__(cls)
        t._init(data, backend, requires_grad)
        return t

    # ---- what it is
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def backend(self) -> str:
        """The backend's name: ``"numpy"``, ``"cupy"`` or ``"numba"``."""
        return self._backend.name

    device = backend  # PyTorch code asks for ``x.device``; the backend plays that role here.

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def size(self, dim: int | None = None) -> Any:
        """The shape, or one dimension of it (PyTorch's ``x.size(1)``)."""
        return self.shape if dim is None else self.shape[_axis(dim, self.ndim, "size")]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [] if self.dtype in (float32, int64, bool_) else [f"dtype={self.dtype}"]
        extras += [f"backend={self.backend!r}"] if self.backend != "numpy" else []
        extras += ["requires_grad=True"] if self.requires_grad else []
        return "tensor(" + ", ".join([body, *extras]) + ")"

    # ---- leaving the graph / the backend
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host when it lives on a GPU)."""
        return self._backend.to_numpy(self.data)

    def item(self) -> Any:
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, self._backend, False)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not _is_float(self.dtype):
            raise TypeError(f"requires_grad: only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (Grad-CAM needs it)."""
        self._retains_grad = True

    def to(self, target: Any) -> "Tensor":
        """Move to a backend (``"numpy"``, ``"cupy"``, ``"numba"``) or cast to a dtype."""
        if isinstance(target, str) and target in backends.NAMES:
            if target == self.backend:
                return self
            return _ToBackend.apply(self, backend=backends.get(target))
        return self.type(target)

    def cpu(self) -> "Tensor":
        return self.to("numpy")

    def cuda(self) -> "Tensor":
        return self.to("cupy")

    def type(self, dtype: Any) -> "Tensor":
        dtype = np.dtype(dtype)
        return self if dtype == self.dtype else _Cast.apply(self, dtype=dtype)

    def float(self) -> "Tensor":
        return self.type(float32)

    def double(self) -> "Tensor":
        return self.type(float64)

    def long(self) -> "Tensor":
        return self.type(int64)

    def int(self) -> "Tensor":
        return self.type(int32)

    def bool(self) -> "Tensor":
        return self.type(bool_)

    # ---- in-place writes (weight initialisation, optimisers): they bypass autograd
    def zero_(self) -> "Tensor":
        self.data[...] = 0
        return self

    def fill_(self, value: float) -> "Tensor":
        self.data[...] = value
        return self

    def copy_(self, src: Any) -> "Tensor":
        array = src.numpy() if isinstance(src, Tensor) else np.asarray(src)
        if array.shape != self.shape and np.broadcast_shapes(array.shape, self.shape) != self.shape:
            raise ValueError(f"copy_: source shape {array.shape} does not fit destination {self.shape}")
        self.data[...] = self._backend.asarray(array.astype(self.dtype, copy=False))
        return self

    # ---- the engine
    def backward(self, gradient: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``gradient`` is d(loss)/d(self); it may be omitted for a one-element tensor (1 is
        used). The graph is walked iteratively, so depth is limited only by memory."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn")
        xp = self._backend.xp
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for one-element outputs, got shape {self.shape}")
            gradient = xp.ones_like(self.data)
        else:
            gradient = gradient.data if isinstance(gradient, Tensor) else self._backend.asarray(np.asarray(gradient))
            if tuple(gradient.shape) != self.shape:
                raise ValueError(f"backward: gradient shape {tuple(gradient.shape)} does not match tensor shape {self.shape}")
            gradient = gradient.astype(self.dtype, copy=False)

        grads = {id(self): gradient}
        for node in reversed(self._topological_order()):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            if node._ctx is None or node._retains_grad:
                # Copy on first write: one array may be handed to several inputs (x + x).
                node.grad = grad.copy() if node.grad is None else node.grad + grad
            if node._ctx is None:
                continue
            input_grads = node._ctx.backward(grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, g in zip(node._ctx.parents, input_grads):
                if isinstance(parent, Tensor) and parent.requires_grad and g is not None:
                    grads[id(parent)] = g if id(parent) not in grads else grads[id(parent)] + g

    def _topological_order(self) -> list["Tensor"]:
        """Every tensor this one depends on, each after all of its own inputs (iterative DFS)."""
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
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
                stack.extend((p, False) for p in node._ctx.parents if isinstance(p, Tensor) and p.requires_grad and id(p) not in visited)
        return order

    # ---- arithmetic (operators broadcast like NumPy/PyTorch)
    def __add__(self, other: Any) -> "Tensor":
        return Add.apply(self, _operand(other, self))

    def __radd__(self, other: Any) -> "Tensor":
        return Add.apply(_operand(other, self), self)

    def __sub__(self, other: Any) -> "Tensor":
        return Sub.apply(self, _operand(other, self))

    def __rsub__(self, other: Any) -> "Tensor":
        return Sub.apply(_operand(other, self), self)

    def __mul__(self, other: Any) -> "Tensor":
        return Mul.apply(self, _operand(other, self))

    def __rmul__(self, other: Any) -> "Tensor":
        return Mul.apply(_operand(other, self), self)

    def __truediv__(self, other: Any) -> "Tensor":
        return Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other: Any) -> "Tensor":
        return Div.apply(_operand(other, self), self)

    def __pow__(self, exponent: Any) -> "Tensor":
        return Pow.apply(self, _operand(exponent, self))

    def __rpow__(self, base: Any) -> "Tensor":
        return Pow.apply(_operand(base, self), self)

    def __matmul__(self, other: "Tensor") -> "Tensor":
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return matmul(_operand(other, self), self)

    def __neg__(self) -> "Tensor":
        return Neg.apply(self)

    # Comparisons give boolean tensors and carry no gradient.
    def _compare(self, other: Any, op: Callable) -> "Tensor":
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, other), self._backend)

    def __lt__(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a >= b)

    def eq(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a == b)

    def ne(self, other: Any) -> "Tensor":
        return self._compare(other, lambda a, b: a != b)

    # ``==`` stays identity-based so tensors can be dict keys and set members (modules rely
    # on it); use ``eq`` for element-wise equality.
    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if _is_float(self.dtype):
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def __getitem__(self, index: Any) -> "Tensor":
        return GetItem.apply(self, index=_index_arrays(index, self._backend))

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad and _grad_enabled:
            raise RuntimeError("__setitem__: in-place assignment to a tensor that requires grad; use tm.where or wrap it in tm.no_grad()")
        value = value.data if isinstance(value, Tensor) else value
        self.data[_index_arrays(index, self._backend)] = value

    # ---- element-wise functions
    def neg(self) -> "Tensor":
        return Neg.apply(self)

    def exp(self) -> "Tensor":
        return Exp.apply(self)

    def log(self) -> "Tensor":
        return Log.apply(self)

    def sqrt(self) -> "Tensor":
        return Pow.apply(self, _operand(0.5, self))

    def rsqrt(self) -> "Tensor":
        return Pow.apply(self, _operand(-0.5, self))

    def abs(self) -> "Tensor":
        return Abs.apply(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> "Tensor":
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return Clamp.apply(self, low=min, high=max)

    clip = clamp

    def pow(self, exponent: Any) -> "Tensor":
        return self ** exponent

    def sigmoid(self) -> "Tensor":
        from tinymed import functional

        return functional.sigmoid(self)

    def tanh(self) -> "Tensor":
        from tinymed import functional

        return functional.tanh(self)

    def relu(self) -> "Tensor":
        from tinymed import functional

        return functional.relu(self)

    def softmax(self, dim: int) -> "Tensor":
        from tinymed import functional

        return functional.softmax(self, dim)

    def log_softmax(self, dim: int) -> "Tensor":
        from tinymed import functional

        return functional.log_softmax(self, dim)

    # ---- reductions
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> "Tensor":
        return Sum.apply(self, axis=_axes(dim, self.ndim, "sum"), keepdims=keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> "Tensor":
        axes = _axes(dim, self.ndim, "mean")
        count = math.prod(self.shape[a] for a in axes)
        return self.sum(dim, keepdim) / count

    def var(self, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False, *, correction: int | None = None) -> "Tensor":
        """Variance, ``sum (x - mean)^2 / (n - correction)``; ``unbiased`` means correction 1."""
        correction = (1 if unbiased else 0) if correction is None else correction
        axes = _axes(dim, self.ndim, "var")
        count = math.prod(self.shape[a] for a in axes)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim) / max(count - correction, 0)

    def std(self, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False) -> "Tensor":
        return self.var(dim, unbiased, keepdim).sqrt()

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The maximum; with ``dim``, the named tuple ``(values, indices)`` as in PyTorch."""
        return _extreme(self, dim, keepdim, "max")

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return _extreme(self, dim, keepdim, "min")

    def amax(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> "Tensor":
        return Extreme.apply(self, axis=_axes(dim, self.ndim, "amax"), keepdims=keepdim, kind="max")

    def amin(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> "Tensor":
        return Extreme.apply(self, axis=_axes(dim, self.ndim, "amin"), keepdims=keepdim, kind="min")

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return _arg_extreme(self, dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return _arg_extreme(self, dim, keepdim, "argmin")

    # ---- shape
    def reshape(self, *shape: Any) -> "Tensor":
        shape = _shape_args(shape)
        try:
            target = np.empty(self.shape, dtype=np.bool_).reshape(shape).shape  # resolves -1
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} ({self.numel()} elements) into {shape}") from None
        return self if target == self.shape else Reshape.apply(self, shape=target)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _axis(start_dim, self.ndim, "flatten"), _axis(end_dim, self.ndim, "flatten")
        return self.reshape(*self.shape[:start], -1, *self.shape[end + 1 :])

    def unsqueeze(self, dim: int) -> "Tensor":
        dim = _axis(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> "Tensor":
        if dim is None:
            return self.reshape(*[n for n in self.shape if n != 1])
        dim = _axis(dim, self.ndim, "squeeze")
        return self if self.shape[dim] != 1 else self.reshape(*self.shape[:dim], *self.shape[dim + 1 :])

    def permute(self, *dims: Any) -> "Tensor":
        dims = _shape_args(dims)
        if sorted(_axis(d, self.ndim, "permute") for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of the {self.ndim} dims of shape {self.shape}")
        return Permute.apply(self, axes=tuple(_axis(d, self.ndim, "permute") for d in dims))

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        axes = list(range(self.ndim))
        a, b = _axis(dim0, self.ndim, "transpose"), _axis(dim1, self.ndim, "transpose")
        axes[a], axes[b] = axes[b], axes[a]
        return Permute.apply(self, axes=tuple(axes))

    def t(self) -> "Tensor":
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with <= 2 dims, got shape {self.shape}")
        return self if self.ndim < 2 else self.transpose(0, 1)

    @property
    def T(self) -> "Tensor":
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *sizes: Any) -> "Tensor":
        """Broadcast to ``sizes`` without copying; -1 keeps a dim, new dims go in front."""
        sizes = _shape_args(sizes)
        lead = len(sizes) - self.ndim
        full = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
        try:
            if lead < 0 or np.broadcast_shapes(self.shape, full) != full:
                raise ValueError
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {sizes}") from None
        return Expand.apply(self, shape=full)

    def expand_as(self, other: "Tensor") -> "Tensor":
        return self.expand(*other.shape)

    def contiguous(self) -> "Tensor":
        return self

    def masked_fill(self, mask: "Tensor", value: float) -> "Tensor":
        """Where ``mask`` is True use ``value``, elsewhere keep ``self``."""
        return where(mask, _operand(value, self), self)

    def matmul(self, other: "Tensor") -> "Tensor":
        return matmul(self, other)


# --------------------------------------------------------------------------- helpers


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    """A NumPy array from Python data with PyTorch's dtype rules: Python floats become the
    default dtype (float32), ints int64, bools bool; NumPy arrays keep their dtype."""
    if isinstance(data, Tensor):
        array = data.numpy()
    elif isinstance(data, np.ndarray) or np.isscalar(data) and isinstance(data, np.generic):
        array = np.asarray(data)
    elif hasattr(data, "__cuda_array_interface__") or type(data).__module__.startswith("cupy"):
        array = data.get()
    else:
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(_default_dtype)
        elif array.dtype.kind in "iu":
            array = array.astype(int64)
        elif array.dtype.kind not in "b":
            raise TypeError(f"tensor: cannot build a tensor from data of dtype {array.dtype}")
    return array.astype(np.dtype(dtype), copy=False) if dtype is not None else array


def _operand(value: Any, like: Tensor) -> Tensor:
    """Turn a Python number or array met in ``like <op> value`` into a tensor of ``like``'s
    backend. Numbers take ``like``'s dtype, so ``x * 2`` keeps float32 (PyTorch's rule)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float, bool)) and not isinstance(value, np.ndarray):
        if _is_float(like.dtype) or isinstance(value, bool) or isinstance(value, int) and like.dtype.kind in "iu":
            dtype = like.dtype
        else:
            dtype = _default_dtype if isinstance(value, float) else int64
        return Tensor._wrap(like._backend.asarray(np.asarray(value, dtype=dtype)), like._backend)
    return Tensor._wrap(like._backend.asarray(np.asarray(value)), like._backend)


def _axis(dim: int, ndim: int, op: str) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims")
    return dim % max(ndim, 1)


def _axes(dim: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(_axis(d, ndim, op) for d in dims))


def _shape_args(shape: tuple) -> tuple[int, ...]:
    """Accept both ``reshape(2, 3)`` and ``reshape((2, 3))``, as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _index_arrays(index: Any, backend: ModuleType) -> Any:
    """Replace tensors inside an index by their arrays (integer and boolean indexing)."""
    if isinstance(index, tuple):
        return tuple(_index_arrays(i, backend) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return backend.asarray(np.asarray(index))
    return index


# --------------------------------------------------------------------------- the ops


class _ToBackend(Function):
    """Move data between backends; the gradient moves back."""

    def forward(self, x, backend):
        self.source = self.backend
        self.backend = backend
        return backend.asarray(self.source.to_numpy(x))

    @classmethod
    def apply(cls, x: Tensor, backend: ModuleType) -> Tensor:
        fn = cls()
        fn.backend, fn.xp, fn.needs_input_grad = x._backend, x._backend.xp, (x.requires_grad,)
        data = fn.forward(x.data, backend)
        out = Tensor._wrap(data, backend, x.requires_grad and _grad_enabled)
        if out.requires_grad:
            out._ctx, fn.parents = fn, (x,)
        return out

    def backward(self, grad):
        return self.source.asarray(self.backend.to_numpy(grad))


class _Cast(Function):
    def forward(self, x, dtype):
        self.source_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.source_dtype) if _is_float(self.source_dtype) else None


class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1 (summed back over broadcast axes)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return _unbroadcast(grad, self.shapes[0]), _unbroadcast(grad, self.shapes[1])


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return _unbroadcast(grad, self.shapes[0]), _unbroadcast(-grad, self.shapes[1])


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        ga = _unbroadcast(grad * self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = _unbroadcast(grad * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b^2."""

    def forward(self, a, b):
        if not _is_float(a.dtype) and not _is_float(b.dtype):
            # true division of integers gives floats, as in PyTorch
            a, b = a.astype(_default_dtype), b.astype(_default_dtype)
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        ga = _unbroadcast(grad / self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = _unbroadcast(-grad * self.a / (self.b * self.b), self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Pow(Function):
    """z = a ** b;  dz/da = b a^(b-1), dz/db = a^b log(a)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.z = a ** b
        return self.z

    def backward(self, grad):
        xp = self.xp
        ga = gb = None
        if self.needs_input_grad[0]:
            # b * a^(b-1) written without a^(b-1) would divide by a = 0; keep the plain form.
            ga = _unbroadcast(grad * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.where(self.a > 0, xp.log(xp.where(self.a > 0, self.a, 1)), xp.nan)
            gb = _unbroadcast(grad * self.z * xp.where(self.z == 0, 0, log_a), self.b.shape)
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


class Sum(Function):
    """z = sum of a over ``axis``;  dz/da = 1 everywhere, so grad is spread back out."""

    def forward(self, a, axis, keepdims):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axis else n for i, n in enumerate(self.shape)])
        return self.xp.broadcast_to(grad, self.shape)


class Extreme(Function):
    """z = max (or min) of a over ``axis``. The gradient is shared evenly among the
    elements that reach the extreme (PyTorch's amax/amin rule for ties)."""

    def forward(self, a, axis, keepdims, kind):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        z = a.max(axis=axis, keepdims=True) if kind == "max" else a.min(axis=axis, keepdims=True)
        self.winners = a == z
        return z if keepdims else z.reshape([n for i, n in enumerate(a.shape) if i not in axis])

    def backward(self, grad):
        if not self.keepdims:
            grad = grad.reshape([1 if i in self.axis else n for i, n in enumerate(self.shape)])
        return grad * self.winners / self.winners.sum(axis=self.axis, keepdims=True)


class TakeAlongDim(Function):
    """z = a[..., index, ...] along ``axis`` (one picked element per slice);
    the gradient goes back to the picked element only."""

    def forward(self, a, index, axis):
        self.shape, self.index, self.axis = a.shape, index, axis
        return self.xp.take_along_axis(a, index, axis=axis)

    def backward(self, grad):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=grad.dtype)
        xp.put_along_axis(out, self.index, grad, axis=self.axis)
        return out


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _extreme(t: Tensor, dim: int | None, keepdim: bool, kind: str) -> Any:
    if dim is None:
        return Extreme.apply(t, axis=tuple(range(t.ndim)), keepdims=False, kind=kind)
    axis = _axis(dim, t.ndim, kind)
    indices = _arg_extreme(t, axis, True, "arg" + kind)
    values = TakeAlongDim.apply(t, indices.data, axis=axis)
    if not keepdim:
        values, indices = values.squeeze(axis), indices.squeeze(axis)
    return MaxResult(values, indices)


def _arg_extreme(t: Tensor, dim: int | None, keepdim: bool, kind: str) -> Tensor:
    fn = t._backend.xp.argmax if kind == "argmax" else t._backend.xp.argmin
    if dim is None:
        return Tensor._wrap(fn(t.data.reshape(-1)).astype(int64), t._backend)
    axis = _axis(dim, t.ndim, kind)
    index = fn(t.data, axis=axis)
    if keepdim:
        index = t._backend.xp.expand_dims(index, axis)
    return Tensor._wrap(index.astype(int64), t._backend)


class Reshape(Function):
    """z = a viewed with another shape;  the gradient is reshaped back."""

    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    """z = a with its axes reordered;  the gradient takes the inverse order."""

    def forward(self, a, axes):
        self.inverse = tuple(np.argsort(axes))
        return a.transpose(axes)

    def backward(self, grad):
        return grad.transpose(self.inverse)


class Expand(Function):
    """z = a broadcast to ``shape`` (no copy);  the gradient is summed back."""

    def forward(self, a, shape):
        self.shape = a.shape
        return self.xp.broadcast_to(a, shape)

    def backward(self, grad):
        return _unbroadcast(grad, self.shape)


class GetItem(Function):
    """z = a[index];  the gradient lands where the elements were taken from. Integer-array
    indexing may pick one element twice, so those gradients are added, not overwritten."""

    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    def backward(self, grad):
        xp = self.xp
        out = xp.zeros(self.shape, dtype=grad.dtype)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if any(hasattr(p, "dtype") and p.dtype.kind in "iu" for p in parts):
            xp.add.at(out, self.index, grad)
        else:
            out[self.index] = grad
        return out


class MatMul(Function):
    """z = a @ b (batched and broadcast over leading dims);
    dz/da = grad @ b^T, dz/db = a^T @ grad."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        xp, a, b = self.xp, self.a, self.b
        # 1-D operands are treated as a row (a) or a column (b), then squeezed away again.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _unbroadcast(g2 @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = _unbroadcast(xp.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


class Where(Function):
    """z = a where cond else b;  the gradient flows to whichever side was chosen."""

    def forward(self, cond, a, b):
        self.cond, self.shapes = cond, (a.shape, b.shape)
        return self.xp.where(cond, a, b)

    def backward(self, grad):
        zero = self.xp.zeros((), dtype=grad.dtype)
        return (
            None,
            _unbroadcast(self.xp.where(self.cond, grad, zero), self.shapes[0]),
            _unbroadcast(self.xp.where(self.cond, zero, grad), self.shapes[1]),
        )


class Concatenate(Function):
    """z = the inputs joined along ``axis``;  each input gets its slice of the gradient."""

    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = np.cumsum([0] + [a.shape[axis] for a in arrays])
        return self.xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        index = [slice(None)] * grad.ndim
        parts = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            index[self.axis] = slice(int(lo), int(hi))
            parts.append(grad[tuple(index)])
        return tuple(parts)


# --------------------------------------------------------------------------- functions


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch broadcasting rules (``input @ other``)."""
    if input.ndim == 0 or other.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dim, got shapes {input.shape} and {other.shape}")
    k_in = input.shape[-1]
    k_other = other.shape[-2] if other.ndim > 1 else other.shape[0]
    if k_in != k_other:
        raise ValueError(f"matmul: shapes {input.shape} and {other.shape} cannot be multiplied ({k_in} != {k_other})")
    try:
        np.broadcast_shapes(input.shape[:-2], other.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dims of {input.shape} and {other.shape} do not broadcast") from None
    return MatMul.apply(input, other)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched matrix product: ``(B, n, m) @ (B, m, p) -> (B, n, p)``."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise ValueError(f"bmm: expects (B, n, m) and (B, m, p), got {input.shape} and {mat2.shape}")
    return MatMul.apply(input, mat2)


def where(condition: Tensor, input: Any, other: Any) -> Tensor:
    """Element-wise choice: ``input`` where ``condition`` is True, ``other`` elsewhere."""
    like = input if isinstance(input, Tensor) else other
    if not isinstance(like, Tensor):
        raise TypeError("where: at least one of input and other must be a tensor")
    cond = condition if isinstance(condition, Tensor) else _operand(condition, like)
    if cond.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    a, b = _operand(input, like), _operand(other, like)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: shapes condition {cond.shape}, input {a.shape}, other {b.shape} do not broadcast") from None
    return Where.apply(cond, a, b)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expects a non-empty list of tensors")
    ndim = tensors[0].ndim
    axis = _axis(dim, ndim, "cat")
    for t in tensors:
        if t.ndim != ndim or t.shape[:axis] + t.shape[axis + 1 :] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1 :]:
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"cat: tensors must match in every dim but {dim}, got {shapes}")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expects a non-empty list of tensors")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors must have the same shape, got {', '.join(str(t.shape) for t in tensors)}")
    axis = _axis(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], axis)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, backend: str = "numpy") -> Tensor:
    """Build a tensor from Python data or an array (always a copy, as in PyTorch).

    dtype is inferred as PyTorch does: Python floats become float32, ints int64, bools
    bool, and NumPy arrays keep their dtype; ``dtype`` overrides it."""
    array = np.array(_to_array(data, dtype), copy=True)
    return Tensor(array, requires_grad=requires_grad, backend=backend)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap a NumPy array without copying; they share memory."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(array, backends.get("numpy"))


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)
