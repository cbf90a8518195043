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
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

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


# PyTorch promotes by category first (bool < integer < floating), and only within the
# winning category by size: int64 * float32 is float32 there, where NumPy would say float64.
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def _promote(dtypes: Sequence[np.dtype]) -> np.dtype:
    top = max(_CATEGORY[d.kind] for d in dtypes)
    return np.result_type(*[d for d in dtypes if _CATEGORY[d.kind] == top])


def _result_type(*tensors: Tensor) -> np.dtype:
    """The dtype of an op on ``tensors``, by PyTorch's rule: tensors with dims decide, unless
    a 0-d tensor is of a higher category (``int_tensor * tm.tensor(2.5)`` is float32).
    Python numbers have already become 0-d tensors of a fitting dtype (see ``_operand``)."""
    dims = [t.dtype for t in tensors if t.ndim > 0]
    zero_dim = [t.dtype for t in tensors if t.ndim == 0]
    if dims and not (zero_dim and _CATEGORY[_promote(zero_dim).kind] > _CATEGORY[_promote(dims).kind]):
        return _promote(dims)
    return _promote(dims + zero_dim)


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


# --------------------------------------------------------------------------- Function


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` beside it.

    Subclasses implement ``forward(self, *args, **kwargs) -> array`` (Tensor arguments
    arrive as their arrays; they must be positional, keyword arguments are settings) and
    ``backward(self, grad_output) -> grad or tuple of grads`` with one entry per positional
    argument (``None`` for arguments that get no gradient), each of its argument's shape.
    State needed by backward is kept on ``self``; ``self.xp`` is the array module and
    ``self.backend`` the backend module. ``grad_output`` may be a read-only view shared with
    other ops, so backward must not write into it. A forward may return a tuple: the first
    array is the differentiable result, the others are returned as plain tensors with no
    gradient (e.g. max-pooling's indices).
    """

    xp: ModuleType
    backend: ModuleType
    needs_input_grad: tuple[bool, ...]
    parents: tuple[Any, ...]

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward`` on the arrays of ``args`` and record the op on the result."""
        for key, value in kwargs.items():
            if isinstance(value, Tensor):
                raise TypeError(
                    f"{cls.__name__}: tensor argument {key!r} must be passed positionally to be differentiated"
                )
        tensors = [a for a in args if isinstance(a, Tensor)]
        backend = _common_backend(cls.__name__, tensors)
        fn = cls()
        fn.backend, fn.xp = backend, backend.xp
        fn.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        raw = fn.forward(*[a.data if isinstance(a, Tensor) else a for a in args], **kwargs)
        # NumPy turns 0-d results into scalars; a tensor's data is always an array.
        outputs = [backend.xp.asarray(o) for o in (raw if isinstance(raw, tuple) else (raw,))]
        requires_grad = _grad_enabled and any(fn.needs_input_grad) and _is_float(outputs[0].dtype)
        result = Tensor._wrap(outputs[0], backend, requires_grad)
        if requires_grad:
            result._ctx = fn
            fn.parents = args
        if isinstance(raw, tuple):
            return (result, *(Tensor._wrap(o, backend) for o in outputs[1:]))
        return result

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no backward")


def _common_backend(op: str, tensors: Sequence[Tensor]) -> ModuleType:
    if not tensors:
        return backends.get("numpy")
    first = tensors[0]._backend
    for t in tensors[1:]:
        if t._backend is not first:
            names = ", ".join(f"{t.backend} {t.shape}" for t in tensors)
            raise ValueError(
                f"{op}: all inputs must live on the same backend, got {names}; move them with .to({first.name!r})"
            )
    return first


def _broadcast_shape(op: str, *tensors: Tensor, names: Sequence[str] = ("input", "other")) -> tuple[int, ...]:
    """The shape ``tensors`` broadcast to, or a ValueError naming ``op`` and every shape."""
    try:
        return tuple(np.broadcast_shapes(*(t.shape for t in tensors)))
    except ValueError:
        shapes = ", ".join(f"{name} {t.shape}" for name, t in zip(names, tensors))
        raise ValueError(f"{op}: shapes do not broadcast: {shapes}") from None


def _unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes broadcasting added or stretched, back to ``shape``.

    If ``a`` of shape (3, 1) met ``b`` of shape (4, 3, 5), each element of ``a`` was used
    4 * 5 times, so its gradient is the sum of those uses."""
    if grad.shape == shape:
        return grad
    if grad.ndim > len(shape):
        grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
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
        module = backends.get(_backend_name(backend, "Tensor"))
        self._init(module.asarray(_to_array(data, dtype)), module, False)
        self.requires_grad = requires_grad

    def _init(self, data: Any, backend: ModuleType, requires_grad: bool) -> None:
        self.data = data
        self._backend = backend
        self._requires_grad = requires_grad
        self.grad: Any = None
        self._ctx: Function | None = None
        self._retains_grad = False

    # copy.deepcopy and pickle: a module object cannot be copied, so store the backend's
    # name and look the module up again (deep-copying a model copies its parameters).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_backend": self._backend.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _backend=backends.get(state["_backend"]))

    @classmethod
    def _wrap(cls, data: Any, backend: ModuleType, requires_grad: bool = False) -> Tensor:
        """Wrap an array already on ``backend`` without copying."""
        t = cls.__new__(cls)
        t._init(data, backend, requires_grad)
        return t

    # ---- what it is
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
    def backend(self) -> str:
        """The backend's name: ``"numpy"``, ``"cupy"`` or ``"numba"``."""
        return self._backend.name

    device = backend  # PyTorch code asks for ``x.device``; the backend plays that role here.

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this tensor."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, requires_grad: bool) -> None:
        if requires_grad and not _is_float(self.dtype):
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

    def size(self, dim: int | None = None) -> Any:
        """The shape, or one dimension of it (PyTorch's ``x.size(1)``)."""
        return self.shape if dim is None else self.shape[_axis(dim, self.ndim, "size")]

    def dim(self) -> int:
        """The number of dims (PyTorch's name for ``ndim``)."""
        return self.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

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

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # Lets np.asarray(t), matplotlib and tm.tensor([t0, t1]) read a tensor's values.
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        """The values as (nested) Python lists."""
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data, self._backend, False)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place; returns the tensor."""
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` on this non-leaf tensor after backward (Grad-CAM needs it)."""
        self._retains_grad = True

    def to(self, *targets: Any, dtype: Any = None) -> Tensor:
        """Move to a backend and/or cast to a dtype: ``x.to("cupy")``, ``x.to(tm.float64)``,
        ``x.to("numba", tm.float64)``. PyTorch's ``"cpu"`` means ``"numpy"``, ``"cuda"``
        means ``"cupy"``."""
        result = self
        for target in (*targets, dtype):
            if target is None:
                continue
            name = _backend_name(target, None)
            if name is not None:
                result = result if name == result.backend else _ToBackend.apply(result, backends.get(name))
            else:
                result = result.type(target)
        return result

    def cpu(self) -> Tensor:
        """The tensor on the NumPy backend."""
        return self.to("numpy")

    def cuda(self) -> Tensor:
        """The tensor on the CuPy backend."""
        return self.to("cupy")

    def type(self, dtype: Any) -> Tensor:
        """Cast to ``dtype`` (differentiable between floating dtypes)."""
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(
                f"to/type: {dtype!r} is neither a dtype nor a backend ({', '.join(backends.NAMES)})"
            ) from None
        return self if dtype == self.dtype else _Cast.apply(self, dtype=dtype)

    def float(self) -> Tensor:
        """Cast to float32."""
        return self.type(float32)

    def double(self) -> Tensor:
        """Cast to float64."""
        return self.type(float64)

    def long(self) -> Tensor:
        """Cast to int64."""
        return self.type(int64)

    def int(self) -> Tensor:
        """Cast to int32."""
        return self.type(int32)

    def bool(self) -> Tensor:
        """Cast to bool."""
        return self.type(bool_)

    # ---- in-place writes (weight initialisation, optimisers): they bypass autograd
    def zero_(self) -> Tensor:
        """Fill with zeros in place."""
        self.data[...] = 0
        return self

    def fill_(self, value: float) -> Tensor:
        """Fill with ``value`` in place."""
        self.data[...] = value
        return self

    def copy_(self, src: Any) -> Tensor:
        """Copy ``src`` (broadcast to this tensor's shape) into this tensor in place."""
        array = src.numpy() if isinstance(src, Tensor) else np.asarray(src)
        if _broadcast_shape("copy_", self, array, names=("destination", "source")) != self.shape:
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
        if gradient is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward: gradient can be omitted only for a one-element tensor, got shape {self.shape}"
                )
            gradient = self._backend.xp.ones_like(self.data)
        else:
            gradient = gradient.data if isinstance(gradient, Tensor) else self._backend.asarray(np.asarray(gradient))
            if tuple(gradient.shape) != self.shape:
                raise ValueError(
                    f"backward: gradient shape {tuple(gradient.shape)} does not match tensor shape {self.shape}"
                )
            gradient = gradient.astype(self.dtype, copy=False)

        grads = {id(self): gradient}
        for node in reversed(self._topological_order()):
            grad = grads.pop(id(node), None)
            if grad is None:
                continue
            if node._ctx is None or node._retains_grad:
                # A fresh array on first write: one gradient may be handed to several inputs (x + x).
                node.grad = (
                    node._backend.xp.array(grad) if node.grad is None else node._backend.xp.asarray(node.grad + grad)
                )
            if node._ctx is None:
                continue
            for parent, g in _input_grads(node._ctx, grad):
                grads[id(parent)] = g if id(parent) not in grads else grads[id(parent)] + g

    def _topological_order(self) -> list[Tensor]:
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
                stack.extend(
                    (p, False)
                    for p in node._ctx.parents
                    if isinstance(p, Tensor) and p.requires_grad and id(p) not in visited
                )
        return order

    # ---- arithmetic (operators broadcast like NumPy/PyTorch, and promote dtypes like PyTorch)
    def __add__(self, other: Any) -> Tensor:
        return Add.apply(*_binary_operands("add", self, other))

    def __radd__(self, other: Any) -> Tensor:
        return Add.apply(*_binary_operands("add", other, self))

    def __sub__(self, other: Any) -> Tensor:
        return Sub.apply(*_binary_operands("sub", self, other))

    def __rsub__(self, other: Any) -> Tensor:
        return Sub.apply(*_binary_operands("sub", other, self))

    def __mul__(self, other: Any) -> Tensor:
        return Mul.apply(*_binary_operands("mul", self, other))

    def __rmul__(self, other: Any) -> Tensor:
        return Mul.apply(*_binary_operands("mul", other, self))

    def __truediv__(self, other: Any) -> Tensor:
        return Div.apply(*_binary_operands("div", self, other, floating=True))

    def __rtruediv__(self, other: Any) -> Tensor:
        return Div.apply(*_binary_operands("div", other, self, floating=True))

    def __pow__(self, exponent: Any) -> Tensor:
        return Pow.apply(*_binary_operands("pow", self, exponent))

    def __rpow__(self, base: Any) -> Tensor:
        return Pow.apply(*_binary_operands("pow", base, self))

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(_operand(other, self, "matmul"), self)

    def __neg__(self) -> Tensor:
        return Neg.apply(self)

    # Comparisons and logical operators give tensors that carry no gradient.
    def _no_grad_op(self, op: str, other: Any, fn: Callable) -> Tensor:
        a, b = self, _operand(other, self, op)
        _common_backend(op, (a, b))
        _broadcast_shape(op, a, b)
        return Tensor._wrap(self._backend.xp.asarray(fn(a.data, b.data)), self._backend)

    def __lt__(self, other: Any) -> Tensor:
        return self._no_grad_op("lt", other, lambda a, b: a < b)

    def __le__(self, other: Any) -> Tensor:
        return self._no_grad_op("le", other, lambda a, b: a <= b)

    def __gt__(self, other: Any) -> Tensor:
        return self._no_grad_op("gt", other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> Tensor:
        return self._no_grad_op("ge", other, lambda a, b: a >= b)

    def __eq__(self, other: Any) -> Any:  # element-wise, as in PyTorch
        if not _is_operand(other):
            return NotImplemented  # ``x == None`` falls back to identity, i.e. False
        return self._no_grad_op("eq", other, lambda a, b: a == b)

    def __ne__(self, other: Any) -> Any:
        if not _is_operand(other):
            return NotImplemented
        return self._no_grad_op("ne", other, lambda a, b: a != b)

    eq, ne = __eq__, __ne__
    lt, le, gt, ge = __lt__, __le__, __gt__, __ge__

    # Tensors stay hashable by identity (as in PyTorch), so they can be dict keys.
    __hash__ = object.__hash__

    def __and__(self, other: Any) -> Tensor:
        return self._no_grad_op("and", other, lambda a, b: a & b)

    def __or__(self, other: Any) -> Tensor:
        return self._no_grad_op("or", other, lambda a, b: a | b)

    def __xor__(self, other: Any) -> Tensor:
        return self._no_grad_op("xor", other, lambda a, b: a ^ b)

    def __invert__(self) -> Tensor:
        if _is_float(self.dtype):
            raise TypeError(f"invert: ~ needs a bool or integer tensor, got dtype {self.dtype}")
        return Tensor._wrap(self._backend.xp.asarray(~self.data), self._backend)

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()"
            )
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if _is_float(self.dtype):
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def any(self) -> Tensor:
        """Whether any element is non-zero (a bool tensor)."""
        return Tensor._wrap(self._backend.xp.asarray(self.data.any()), self._backend)

    def all(self) -> Tensor:
        """Whether every element is non-zero (a bool tensor)."""
        return Tensor._wrap(self._backend.xp.asarray(self.data.all()), self._backend)

    def __getitem__(self, index: Any) -> Tensor:
        try:
            return GetItem.apply(self, index=_index_arrays(index, self._backend))
        except IndexError as error:
            raise IndexError(f"getitem: cannot index a tensor of shape {self.shape} with {index!r}: {error}") from None

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad and _grad_enabled:
            raise RuntimeError(
                "setitem: in-place assignment to a tensor that requires grad; use tm.where or wrap it in tm.no_grad()"
            )
        value = value.data if isinstance(value, Tensor) else value
        self.data[_index_arrays(index, self._backend)] = value

    # ---- element-wise functions
    def neg(self) -> Tensor:
        """-x."""
        return Neg.apply(self)

    def exp(self) -> Tensor:
        """e^x, element-wise."""
        return Exp.apply(self)

    def log(self) -> Tensor:
        """The natural logarithm, element-wise."""
        return Log.apply(self)

    def sqrt(self) -> Tensor:
        """The square root, element-wise."""
        return Sqrt.apply(self)

    def rsqrt(self) -> Tensor:
        """1 / sqrt(x), element-wise."""
        return self**-0.5

    def abs(self) -> Tensor:
        """|x|, element-wise."""
        return Abs.apply(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> Tensor:
        """Limit every element to ``[min, max]`` (either bound may be omitted)."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return Clamp.apply(self, low=min, high=max)

    clip = clamp

    def pow(self, exponent: Any) -> Tensor:
        """x ** exponent."""
        return self**exponent

    def sigmoid(self) -> Tensor:
        """The logistic function (see :func:`tinymed.functional.sigmoid`)."""
        from tinymed import functional

        return functional.sigmoid(self)

    def tanh(self) -> Tensor:
        """The hyperbolic tangent (see :func:`tinymed.functional.tanh`)."""
        from tinymed import functional

        return functional.tanh(self)

    def relu(self) -> Tensor:
        """max(x, 0) (see :func:`tinymed.functional.relu`)."""
        from tinymed import functional

        return functional.relu(self)

    def softmax(self, dim: int) -> Tensor:
        """Softmax along ``dim`` (see :func:`tinymed.functional.softmax`)."""
        from tinymed import functional

        return functional.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        """Log-softmax along ``dim`` (see :func:`tinymed.functional.log_softmax`)."""
        from tinymed import functional

        return functional.log_softmax(self, dim)

    # ---- reductions
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The sum over ``dim`` (one dim, several, or all when None)."""
        return Sum.apply(self, axis=_axes(dim, self.ndim, "sum"), keepdims=keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The mean over ``dim`` (one dim, several, or all when None)."""
        axes = _axes(dim, self.ndim, "mean")
        count = math.prod(self.shape[a] for a in axes)
        return self.sum(axes, keepdim) / count

    def var(
        self,
        dim: int | Sequence[int] | None = None,
        unbiased: bool = True,
        keepdim: bool = False,
        *,
        correction: int | None = None,
    ) -> Tensor:
        """Variance, ``sum (x - mean)^2 / (n - correction)``; ``unbiased`` means correction 1."""
        correction = (1 if unbiased else 0) if correction is None else correction
        axes = _axes(dim, self.ndim, "var")
        count = math.prod(self.shape[a] for a in axes)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim) / max(count - correction, 0)

    def std(self, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
        """Standard deviation, the square root of :meth:`var`."""
        return self.var(dim, unbiased, keepdim).sqrt()

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The maximum; with ``dim``, the named tuple ``(values, indices)`` as in PyTorch."""
        return _extreme(self, dim, keepdim, "max")

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """The minimum; with ``dim``, the named tuple ``(values, indices)`` as in PyTorch."""
        return _extreme(self, dim, keepdim, "min")

    def amax(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The maximum over ``dim``; ties share the gradient evenly."""
        return Extreme.apply(self, axis=_axes(dim, self.ndim, "amax"), keepdims=keepdim, kind="max")

    def amin(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The minimum over ``dim``; ties share the gradient evenly."""
        return Extreme.apply(self, axis=_axes(dim, self.ndim, "amin"), keepdims=keepdim, kind="min")

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the maximum along ``dim`` (of the flattened tensor when None)."""
        return _arg_extreme(self, dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the minimum along ``dim`` (of the flattened tensor when None)."""
        return _arg_extreme(self, dim, keepdim, "argmin")

    # ---- shape
    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in another shape; one dim may be -1 (inferred)."""
        target = _resolve_shape(_shape_args(shape), self.shape, "reshape")
        return self if target == self.shape else Reshape.apply(self, shape=target)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims ``start_dim`` to ``end_dim`` (inclusive) into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _axis(start_dim, self.ndim, "flatten"), _axis(end_dim, self.ndim, "flatten")
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        return self.reshape(*self.shape[:start], -1, *self.shape[end + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dim of size 1 at ``dim``."""
        dim = _axis(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Remove dims of size 1 (all of them, or those among ``dim`` that have size 1)."""
        axes = _axes(dim, self.ndim, "squeeze")
        return self.reshape(*[n for i, n in enumerate(self.shape) if not (i in axes and n == 1)])

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dims: output dim i is input dim ``dims[i]``."""
        dims = _shape_args(dims)
        axes = tuple(_axis(d, self.ndim, "permute") for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(
                f"permute: dims {dims} are not a permutation of the {self.ndim} dims of shape {self.shape}"
            )
        return Permute.apply(self, axes=axes)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two dims."""
        a, b = _axis(dim0, self.ndim, "transpose"), _axis(dim1, self.ndim, "transpose")
        if a == b:
            return self
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return Permute.apply(self, axes=tuple(axes))

    def t(self) -> Tensor:
        """The transpose of a matrix (a 0-d or 1-d tensor is returned as is)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with <= 2 dims, got shape {self.shape}")
        return self if self.ndim < 2 else self.transpose(0, 1)

    @property
    def T(self) -> Tensor:
        """All dims reversed."""
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *sizes: Any) -> Tensor:
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

    def expand_as(self, other: Tensor) -> Tensor:
        """Broadcast to ``other``'s shape."""
        return self.expand(*other.shape)

    def contiguous(self) -> Tensor:
        """The tensor itself: NumPy and CuPy handle any memory layout."""
        return self

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        """Where ``mask`` (bool, broadcastable to this shape) is True use ``value``, elsewhere
        keep ``self``; the result keeps this tensor's shape and dtype."""
        mask = _operand(mask, self, "masked_fill")
        if mask.dtype != bool_:
            raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype {mask.dtype}")
        if _broadcast_shape("masked_fill", self, mask, names=("input", "mask")) != self.shape:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to input shape {self.shape}")
        value = _operand(value, self, "masked_fill")
        if value.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {value.shape}")
        return Where.apply(mask, value.type(self.dtype), self)

    def matmul(self, other: Tensor) -> Tensor:
        """Matrix product (see :func:`matmul`)."""
        return matmul(self, other)


# --------------------------------------------------------------------------- helpers


def _to_array(data: Any, dtype: Any) -> np.ndarray:
    """A NumPy array from Python data with PyTorch's dtype rules: Python floats become the
    default dtype (float32), ints int64, bools bool; NumPy arrays keep their dtype."""
    if isinstance(data, Tensor):
        array = data.numpy()
    elif isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
    elif hasattr(data, "__cuda_array_interface__") or type(data).__module__.startswith("cupy"):
        array = data.get()
    else:
        try:
            array = np.asarray(data)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"tensor: cannot build a tensor from this {type(data).__name__}: {error}") from None
        if array.dtype.kind == "f":
            array = array.astype(_default_dtype)
        elif array.dtype.kind in "iu":
            array = array.astype(int64)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor: cannot build a tensor from data of dtype {array.dtype}")
    return array.astype(np.dtype(dtype), copy=False) if dtype is not None else array


def _is_operand(value: Any) -> bool:
    """Whether ``value`` can meet a tensor in an element-wise op."""
    return isinstance(value, (Tensor, int, float, np.ndarray, np.generic, list, tuple))


def _operand(value: Any, like: Tensor, op: str) -> Tensor:
    """Turn a Python number or array met in ``like <op> value`` into a tensor of ``like``'s
    backend. A number takes ``like``'s dtype when it fits its category (``x * 2`` keeps
    float32, ``int_x + 1`` stays int), else the default of its own (``int_x * 0.5`` is float32)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float)):
        fits = isinstance(value, bool) or _CATEGORY[like.dtype.kind] >= (1 if isinstance(value, int) else 2)
        dtype = like.dtype if fits else (_default_dtype if isinstance(value, float) else int64)
        return Tensor._wrap(like._backend.asarray(np.asarray(value, dtype=dtype)), like._backend)
    if not _is_operand(value):
        raise TypeError(f"{op}: cannot combine a tensor with a {type(value).__name__}")
    return Tensor._wrap(like._backend.asarray(_to_array(value, None)), like._backend)


def _binary_operands(op: str, a: Any, b: Any, floating: bool = False) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` as tensors of one dtype (PyTorch's promotion; ``floating`` makes integer
    results float, as true division does), after checking that their shapes broadcast."""
    like = a if isinstance(a, Tensor) else b
    a, b = _operand(a, like, op), _operand(b, like, op)
    _broadcast_shape(op, a, b)
    dtype = a.dtype if a.dtype == b.dtype else _result_type(a, b)
    if floating and not _is_float(dtype):
        dtype = _default_dtype
    return a.type(dtype), b.type(dtype)


def _axis(dim: int, ndim: int, op: str) -> int:
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dims")
    return int(dim) % max(ndim, 1)


def _axes(dim: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    """``dim`` (None for all, one int, or several) as sorted non-negative axes. A 0-d tensor
    accepts dim 0 or -1, as in PyTorch, and has no axis to reduce."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = tuple(sorted({_axis(d, ndim, op) for d in dims}))
    return axes if ndim > 0 else ()


def _shape_args(shape: tuple) -> tuple[int, ...]:
    """Accept both ``reshape(2, 3)`` and ``reshape((2, 3))``, as PyTorch does."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _resolve_shape(shape: tuple[int, ...], source: tuple[int, ...], op: str) -> tuple[int, ...]:
    """``shape`` with its one -1 replaced by what makes the element count match ``source``."""
    numel = math.prod(source)
    known = math.prod(n for n in shape if n != -1)
    unknown = [i for i, n in enumerate(shape) if n == -1]
    if (
        len(unknown) > 1
        or any(n < -1 for n in shape)
        or (unknown and (known == 0 or numel % known))
        or (not unknown and known != numel)
    ):
        raise ValueError(f"{op}: cannot reshape a tensor of shape {source} ({numel} elements) into {shape}")
    if unknown:
        shape = shape[: unknown[0]] + (numel // known,) + shape[unknown[0] + 1 :]
    return shape


# PyTorch's device names, for code written as ``.to("cuda")`` or ``device="cpu"``.
_DEVICE_NAMES = {"cpu": "numpy", "cuda": "cupy"}


def _backend_name(name: str, op: str | None) -> str | None:
    """The backend ``name`` refers to: a backend's own name, or PyTorch's ``"cpu"``,
    ``"cuda"``, ``"cuda:0"``. An unknown name raises ValueError naming ``op`` (or gives None
    when ``op`` is None, for callers that try other meanings)."""
    backend = _DEVICE_NAMES.get(name.split(":")[0], name) if isinstance(name, str) else None
    if backend in backends.NAMES:
        return backend
    if op is None:
        return None
    raise ValueError(f"{op}: unknown backend {name!r}; choose one of {', '.join(backends.NAMES)} (or 'cpu', 'cuda')")


def _index_arrays(index: Any, backend: ModuleType) -> Any:
    """Replace tensors inside an index by their arrays (integer and boolean indexing)."""
    if isinstance(index, tuple):
        return tuple(_index_arrays(i, backend) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return backend.asarray(np.asarray(index))
    return index


def _input_grads(fn: Function, grad: Any) -> Iterator[tuple[Tensor, Any]]:
    """Run ``fn.backward`` and pair each gradient with the input it belongs to, checking that
    the Function returned one gradient per input, of that input's shape and dtype (a wrong
    shape would otherwise broadcast silently into a wrong ``.grad``)."""
    name = type(fn).__name__
    input_grads = fn.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    if len(input_grads) != len(fn.parents):
        raise RuntimeError(f"{name}.backward returned {len(input_grads)} gradients for {len(fn.parents)} inputs")
    for i, (parent, g) in enumerate(zip(fn.parents, input_grads)):
        if not (isinstance(parent, Tensor) and parent.requires_grad and g is not None):
            continue
        if tuple(g.shape) != parent.shape:
            raise RuntimeError(
                f"{name}.backward: the gradient of input {i} has shape {tuple(g.shape)}, but the input has shape {parent.shape}"
            )
        yield parent, g if g.dtype == parent.dtype else g.astype(parent.dtype)


# --------------------------------------------------------------------------- the ops


class _ToBackend(Function):
    """Copy data to another backend (through the host); the gradient is copied back."""

    def forward(self, x, target):
        self.target = target
        return target.asarray(self.backend.to_numpy(x))

    def backward(self, grad):
        return self.backend.asarray(self.target.to_numpy(grad))

    @classmethod
    def apply(cls, x: Tensor, target: ModuleType) -> Tensor:
        # The one op whose result lives on another backend than its input, so it wraps the
        # result itself rather than through Function.apply.
        fn = cls()
        fn.backend, fn.xp, fn.needs_input_grad, fn.parents = x._backend, x._backend.xp, (x.requires_grad,), (x,)
        out = Tensor._wrap(fn.forward(x.data, target), target, x.requires_grad and _grad_enabled)
        if out.requires_grad:
            out._ctx = fn
        return out


class _Cast(Function):
    """z = a converted to ``dtype``;  the gradient is converted back (none for integers)."""

    def forward(self, a, dtype):
        self.source_dtype = a.dtype
        return a.astype(dtype)

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
        self.z = a**b
        return self.z

    def backward(self, grad):
        xp = self.xp
        ga = gb = None
        if self.needs_input_grad[0]:
            # b * a^(b-1), not b * z / a, which would divide by a = 0.
            ga = _unbroadcast(grad * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            # log(a) is undefined for a <= 0; where z = 0 (a = 0, b > 0) PyTorch gives 0.
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
    if t.ndim == 0:
        _axis(dim, 0, kind)
        return MaxResult(t, Tensor._wrap(t._backend.xp.zeros((), dtype=int64), t._backend))
    axis = _axis(dim, t.ndim, kind)
    indices = _arg_extreme(t, axis, True, "arg" + kind)
    values = TakeAlongDim.apply(t, index=indices.data, axis=axis)
    if not keepdim:
        values, indices = values.squeeze(axis), indices.squeeze(axis)
    return MaxResult(values, indices)


def _arg_extreme(t: Tensor, dim: int | None, keepdim: bool, kind: str) -> Tensor:
    fn = t._backend.xp.argmax if kind == "argmax" else t._backend.xp.argmin
    if dim is None:
        return Tensor._wrap(t._backend.xp.asarray(fn(t.data.reshape(-1)).astype(int64)), t._backend)
    axis = _axis(dim, t.ndim, kind)
    if t.ndim == 0:
        return Tensor._wrap(t._backend.xp.zeros((), dtype=int64), t._backend)
    index = fn(t.data, axis=axis)
    if keepdim:
        index = t._backend.xp.expand_dims(index, axis)
    return Tensor._wrap(t._backend.xp.asarray(index.astype(int64)), t._backend)


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
        self.inverse = tuple(int(i) for i in np.argsort(axes))
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
        self.shape, self.index = a.shape, index
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
        # The column's dim goes back into grad first: for vector @ vector grad is 0-d.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = grad
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
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
    """Element-wise choice: ``input`` where ``condition`` is True, ``other`` elsewhere.
    ``input`` and ``other`` may be tensors or numbers; the result dtype is promoted as in
    PyTorch (``where(c, x_float32, 0)`` is float32)."""
    like = next((t for t in (input, other, condition) if isinstance(t, Tensor)), None)
    if like is None:
        raise TypeError("where: at least one of condition, input and other must be a tensor")
    cond = _operand(condition, like, "where")
    if cond.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    if like is cond:  # two numbers: each becomes a 0-d tensor of its own kind
        input = _operand(input, cond, "where")
    a, b = _binary_operands("where", input, other)
    _broadcast_shape("where", cond, a, b, names=("condition", "input", "other"))
    return Where.apply(cond, a, b)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (dtypes promoted as in PyTorch)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expects a non-empty list of tensors")
    ndim = tensors[0].ndim
    axis = _axis(dim, ndim, "cat")
    for t in tensors:
        if (
            t.ndim != ndim
            or t.shape[:axis] + t.shape[axis + 1 :] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1 :]
        ):
            shapes = ", ".join(str(t.shape) for t in tensors)
            raise ValueError(f"cat: tensors must match in every dim but {dim}, got {shapes}")
    dtype = _result_type(*tensors)
    return Concatenate.apply(*[t.type(dtype) for t in tensors], axis=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expects a non-empty list of tensors")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors must have the same shape, got {', '.join(str(t.shape) for t in tensors)}")
    axis = _axis(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(axis) for t in tensors], axis)


def tensor(
    data: Any, requires_grad: bool = False, dtype: Any = None, backend: str = "numpy", device: str | None = None
) -> Tensor:
    """Build a tensor from Python data or an array (always a copy, as in PyTorch).

    dtype is inferred as PyTorch does: Python floats become float32, ints int64, bools
    bool, and NumPy arrays keep their dtype; ``dtype`` overrides it. ``device`` is PyTorch's
    name for ``backend``."""
    array = np.array(_to_array(data, dtype), copy=True)
    return Tensor(array, requires_grad=requires_grad, backend=device if device is not None else backend)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap a NumPy array without copying; they share memory."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(_to_array(array, None), backends.get("numpy"))


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a tinymed Tensor."""
    return isinstance(obj, Tensor)
