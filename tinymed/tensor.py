"""Tensor: an n-dimensional array that remembers how it was computed.

A :class:`Tensor` wraps an array (``.array``; ``.data`` is, as in PyTorch, a Tensor sharing it) on a
:class:`~tinymed.device` (NumPy on the cpu; CuPy, or Numba's arrays, on a GPU). The autograd
engine's half of it (``grad``, ``grad_fn``, the version counter) is
:class:`tinymed.autograd.TensorBase`, and its in-place methods (``add_``, ``copy_``, ``x[i] = v``,
...) are :class:`tinymed.tensor_in_place.InPlaceMethods`; this module adds what a user calls:
arithmetic operators, reductions, shape methods, conversions, ``backward``, and the functions
that build a tensor from data (:func:`tensor`, :func:`from_numpy`).

Each method is a thin front: it checks and normalises its arguments, then applies the
Function of one op module, where forward and backward are written side by side
(:mod:`tinymed.ops.elementwise`, ``reduction``, ``shape``, ``matmul``, ``activation``,
``conversion``). Those modules import only the engine, never this one, so there is no import
cycle; the formula ops (convolution, pooling, ...) sit above, and import this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from tinymed import autograd
from tinymed.autograd import TensorBase, same_device
from tinymed.device import device as Device
from tinymed.device import parse_to
from tinymed.dtypes import bool_, float32, float64, get_default_dtype, int32, int64, is_floating
from tinymed.ops import activation
from tinymed.ops.arguments import dim_to_axis, dims_to_axes, resolve_shape, shape_args
from tinymed.ops.conversion import Cast, Clone, ToDevice
from tinymed.ops.elementwise import Abs, Add, Clamp, Div, Exp, Log, Maximum, Mul, Neg, Pow, Sqrt, Sub
from tinymed.ops.matmul import matmul
from tinymed.ops.operands import binary_operands, broadcast_shape, is_operand, operand, to_array
from tinymed.ops.reduction import Extreme, Sum, arg_extreme, extreme, norm
from tinymed.ops.shape import Expand, GetItem, Permute, Reshape, Where, index_arrays, repeat, tril, triu
from tinymed.tensor_in_place import InPlaceMethods


class Tensor(InPlaceMethods, TensorBase):
    """An n-dimensional array that remembers how it was computed.

    Create tensors with :func:`tinymed.tensor` (or ``zeros``, ``randn``, ...). ``array`` is the
    array, ``grad`` the accumulated gradient (a Tensor on the same device, or ``None``).
    ``Tensor(data, requires_grad, dtype, device)`` converts ``data`` as :func:`tensor` does,
    without copying an array that needs no conversion.
    """

    # Let NumPy hand ``ndarray + Tensor`` to Tensor.__radd__ instead of looping over it.
    __array_ufunc__ = None

    def __init__(
        self, data: Any, requires_grad: bool = False, dtype: Any = None, backend: Any = "numpy", device: Any = None
    ) -> None:
        place = Device(backend if device is None else device)
        super().__init__(place.backend.asarray(to_array(data, dtype)), place)
        self.requires_grad = requires_grad

    @staticmethod
    def wrap(data: Any, device: Any, requires_grad: bool = False) -> Tensor:
        """A Tensor around ``data``, an array already on ``device``, without copying it (every
        op makes its result this way; a Parameter's ops give plain Tensors, as in PyTorch)."""
        t = Tensor.__new__(Tensor)
        TensorBase.__init__(t, data, device, requires_grad)
        return t

    # ---- what it is
    def size(self, dim: int | None = None) -> Any:
        """The shape, or one dimension of it (PyTorch's ``x.size(1)``)."""
        return self.shape if dim is None else self.shape[dim_to_axis(dim, self.ndim, "size")]

    def dim(self) -> int:
        """The number of dims (PyTorch's name for ``ndim``)."""
        return self.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self.array.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def __format__(self, spec: str) -> str:
        """``f"{loss:.4f}"`` formats a 0-d tensor's number, as in PyTorch."""
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return super().__format__(spec)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [] if self.dtype in (float32, int64, bool_) else [f"dtype={self.dtype}"]
        extras += [f"backend={self.backend!r}"] if self.backend != "numpy" else []
        extras += ["requires_grad=True"] if self.requires_grad else []
        return "tensor(" + ", ".join([body, *extras]) + ")"

    # ---- leaving the graph / the device
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied to the host when it lives on a GPU)."""
        return self.device.backend.to_numpy(self.array)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # Lets np.asarray(t), matplotlib and tm.tensor([t0, t1]) read a tensor's values.
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self.array.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self) -> Any:
        """The values as (nested) Python lists."""
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """The same array, cut from the graph; it shares the version counter, so a backward still
        notices a write through it (PyTorch's ``detach``)."""
        detached = Tensor.wrap(self.array, self.device)
        detached._version_counter = self._version_counter
        return detached

    def clone(self) -> Tensor:
        """A copy in new memory; the gradient flows back to this tensor."""
        return Clone.apply(self)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see :func:`tinymed.autograd.backward`,
        which walks the graph). ``gradient`` is d(loss)/d(self), omitted for a one-element tensor;
        ``retain_graph=True`` keeps the saved arrays for another backward through the same graph."""
        autograd.backward(self, gradient, retain_graph, create_graph)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place; returns the tensor."""
        self.requires_grad = requires_grad
        return self

    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> Tensor:
        """Move to a device and/or cast to a dtype, as PyTorch: ``x.to("cuda")``,
        ``x.to(tm.float64)``, ``x.to("numba", tm.float64)``, ``x.to(device=..., dtype=...)``.
        Any spelling :class:`tinymed.device` accepts names the device."""
        target, dtype = parse_to("to", *args, device=device, dtype=dtype)
        result = self
        if target is not None and target.backend is not self.device.backend:
            result = ToDevice.apply(result, target=target)
        return result if dtype is None else result.type(dtype)

    def cpu(self) -> Tensor:
        """The tensor on the cpu (the NumPy reference kernels)."""
        return self.to("cpu")

    def cuda(self) -> Tensor:
        """The tensor on the GPU (the CUDA C kernels)."""
        return self.to("cuda")

    def type(self, dtype: Any) -> Tensor:
        """Cast to ``dtype`` (differentiable between floating dtypes)."""
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"type: {dtype!r} is not a dtype") from None
        return self if dtype == self.dtype else Cast.apply(self, dtype=dtype)

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

    # ---- arithmetic (operators broadcast like NumPy/PyTorch, and promote dtypes like PyTorch)
    def __add__(self, other: Any) -> Tensor:
        return Add.apply(*binary_operands("add", self, other))

    def __radd__(self, other: Any) -> Tensor:
        return Add.apply(*binary_operands("add", other, self))

    def __sub__(self, other: Any) -> Tensor:
        return Sub.apply(*binary_operands("sub", self, other))

    def __rsub__(self, other: Any) -> Tensor:
        return Sub.apply(*binary_operands("sub", other, self))

    def __mul__(self, other: Any) -> Tensor:
        return Mul.apply(*binary_operands("mul", self, other))

    def __rmul__(self, other: Any) -> Tensor:
        return Mul.apply(*binary_operands("mul", other, self))

    def __truediv__(self, other: Any) -> Tensor:
        return Div.apply(*binary_operands("div", self, other, floating=True))

    def __rtruediv__(self, other: Any) -> Tensor:
        return Div.apply(*binary_operands("div", other, self, floating=True))

    def __pow__(self, exponent: Any) -> Tensor:
        return Pow.apply(*binary_operands("pow", self, exponent))

    def __rpow__(self, base: Any) -> Tensor:
        return Pow.apply(*binary_operands("pow", base, self))

    def __matmul__(self, other: Tensor) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(operand(other, self, "matmul"), self)

    def __neg__(self) -> Tensor:
        return Neg.apply(self)

    def add(self, other: Any, *, alpha: float = 1) -> Tensor:
        """self + alpha * other."""
        return self + (other if alpha == 1 else operand(other, self, "add") * alpha)

    def sub(self, other: Any, *, alpha: float = 1) -> Tensor:
        """self - alpha * other."""
        return self - (other if alpha == 1 else operand(other, self, "sub") * alpha)

    def mul(self, other: Any) -> Tensor:
        """self * other."""
        return self * other

    def div(self, other: Any) -> Tensor:
        """self / other (true division)."""
        return self / other

    # Comparisons and logical operators give tensors that carry no gradient.
    def _no_grad_op(self, op: str, other: Any, fn: Callable) -> Tensor:
        a, b = self, operand(other, self, op)
        same_device(op, (a, b))
        broadcast_shape(op, a, b)
        return Tensor.wrap(self.device.backend.xp.asarray(fn(a.array, b.array)), self.device)

    def __lt__(self, other: Any) -> Tensor:
        return self._no_grad_op("lt", other, lambda a, b: a < b)

    def __le__(self, other: Any) -> Tensor:
        return self._no_grad_op("le", other, lambda a, b: a <= b)

    def __gt__(self, other: Any) -> Tensor:
        return self._no_grad_op("gt", other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> Tensor:
        return self._no_grad_op("ge", other, lambda a, b: a >= b)

    def __eq__(self, other: Any) -> Any:  # element-wise, as in PyTorch
        if not is_operand(other):
            return NotImplemented  # ``x == None`` falls back to identity, i.e. False
        return self._no_grad_op("eq", other, lambda a, b: a == b)

    def __ne__(self, other: Any) -> Any:
        if not is_operand(other):
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
        if is_floating(self.dtype):
            raise TypeError(f"invert: ~ needs a bool or integer tensor, got dtype {self.dtype}")
        return Tensor.wrap(self.device.backend.xp.asarray(~self.array), self.device)

    def __bool__(self) -> bool:
        if self.array.size != 1:
            raise ValueError(
                f"bool: the truth value of a tensor of shape {self.shape} is ambiguous; use .any() or .all()"
            )
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if is_floating(self.dtype):
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def any(self) -> Tensor:
        """Whether any element is non-zero (a bool tensor)."""
        return Tensor.wrap(self.device.backend.xp.asarray(self.array.any()), self.device)

    def all(self) -> Tensor:
        """Whether every element is non-zero (a bool tensor)."""
        return Tensor.wrap(self.device.backend.xp.asarray(self.array.all()), self.device)

    def __getitem__(self, index: Any) -> Tensor:
        try:
            return GetItem.apply(self, index=index_arrays(index, self))
        except IndexError as error:
            raise IndexError(f"getitem: cannot index a tensor of shape {self.shape} with {index!r}: {error}") from None

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
        return activation.sigmoid(self)

    def tanh(self) -> Tensor:
        """The hyperbolic tangent (see :func:`tinymed.functional.tanh`)."""
        return activation.tanh(self)

    def relu(self) -> Tensor:
        """max(x, 0) (see :func:`tinymed.functional.relu`)."""
        return activation.relu(self)

    def softmax(self, dim: int) -> Tensor:
        """Softmax along ``dim`` (see :func:`tinymed.functional.softmax`)."""
        return activation.softmax(self, dim)

    def log_softmax(self, dim: int) -> Tensor:
        """Log-softmax along ``dim`` (see :func:`tinymed.functional.log_softmax`)."""
        return activation.log_softmax(self, dim)

    # ---- reductions
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The sum over ``dim`` (one dim, several, or all when None)."""
        return Sum.apply(self, axis=dims_to_axes(dim, self.ndim, "sum"), keepdims=keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The mean over ``dim`` (one dim, several, or all when None)."""
        axes = dims_to_axes(dim, self.ndim, "mean")
        source = self if is_floating(self.dtype) else self.type(get_default_dtype())
        return Sum.apply(source, axis=axes, keepdims=keepdim, divisor=math.prod(self.shape[a] for a in axes))

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
        axes = dims_to_axes(dim, self.ndim, "var")
        count = math.prod(self.shape[a] for a in axes)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim) / max(count - correction, 0)

    def std(self, dim: int | Sequence[int] | None = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
        """Standard deviation, the square root of :meth:`var`."""
        return self.var(dim, unbiased, keepdim).sqrt()

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """The maximum; with ``dim``, the named tuple ``(values, indices)``; with a tensor in
        place of ``dim``, the element-wise :meth:`maximum` (PyTorch's three forms)."""
        return self.maximum(dim) if isinstance(dim, TensorBase) else extreme(self, dim, keepdim, "max")

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        """The minimum; with ``dim``, the named tuple ``(values, indices)``; with a tensor in
        place of ``dim``, the element-wise :meth:`minimum` (PyTorch's three forms)."""
        return self.minimum(dim) if isinstance(dim, TensorBase) else extreme(self, dim, keepdim, "min")

    def maximum(self, other: Tensor) -> Tensor:
        """max(self, other), element-wise, broadcasting."""
        return Maximum.apply(*binary_operands("maximum", self, other), kind="max")

    def minimum(self, other: Tensor) -> Tensor:
        """min(self, other), element-wise, broadcasting."""
        return Maximum.apply(*binary_operands("minimum", self, other), kind="min")

    def amax(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The maximum over ``dim``; ties share the gradient evenly."""
        return Extreme.apply(self, axis=dims_to_axes(dim, self.ndim, "amax"), keepdims=keepdim, kind="max")

    def amin(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        """The minimum over ``dim``; ties share the gradient evenly."""
        return Extreme.apply(self, axis=dims_to_axes(dim, self.ndim, "amin"), keepdims=keepdim, kind="min")

    def norm(
        self, p: float | str = "fro", dim: int | Sequence[int] | None = None, keepdim: bool = False, dtype: Any = None
    ) -> Tensor:
        """The p-norm over ``dim`` (see :func:`tinymed.ops.reduction.norm`)."""
        return norm(self, p, dim, keepdim, dtype)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the maximum along ``dim`` (of the flattened tensor when None)."""
        return arg_extreme(self, dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """The index of the minimum along ``dim`` (of the flattened tensor when None)."""
        return arg_extreme(self, dim, keepdim, "argmin")

    # ---- shape
    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in another shape; one dim may be -1 (inferred)."""
        target = resolve_shape(shape_args(shape, "reshape"), self.shape, "reshape")
        return self if target == self.shape else Reshape.apply(self, shape=target)

    def view(self, *shape: Any) -> Tensor:
        """The same memory in another shape (one dim may be -1): writes through either reach the
        other. A transposed or sliced tensor has no such view: an error, as in PyTorch, where
        ``reshape`` would quietly copy (and lose those writes)."""
        target = resolve_shape(shape_args(shape, "view"), self.shape, "view")
        result = self if target == self.shape else Reshape.apply(self, shape=target)
        if result is not self and result.numel() > 1 and result._base is None:
            raise RuntimeError(
                f"view: a tensor of shape {self.shape} whose elements are not laid out in memory as shape "
                f"{target} reads them (a transposed or sliced tensor) cannot be viewed as {target}; use "
                ".reshape(...), which copies"
            )
        return result

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dims ``start_dim`` to ``end_dim`` (inclusive) into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = dim_to_axis(start_dim, self.ndim, "flatten"), dim_to_axis(end_dim, self.ndim, "flatten")
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        return self.reshape(*self.shape[:start], -1, *self.shape[end + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dim of size 1 at ``dim``."""
        dim = dim_to_axis(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Remove dims of size 1 (all of them, or those among ``dim`` that have size 1)."""
        axes = dims_to_axes(dim, self.ndim, "squeeze")
        return self.reshape(*[n for i, n in enumerate(self.shape) if not (i in axes and n == 1)])

    def permute(self, *dims: Any) -> Tensor:
        """Reorder the dims: output dim i is input dim ``dims[i]``."""
        dims = shape_args(dims, "permute", what="dims")
        axes = tuple(dim_to_axis(d, self.ndim, "permute") for d in dims)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(
                f"permute: dims {dims} are not a permutation of the {self.ndim} dims of shape {self.shape}"
            )
        return Permute.apply(self, axes=axes)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Swap two dims."""
        a, b = dim_to_axis(dim0, self.ndim, "transpose"), dim_to_axis(dim1, self.ndim, "transpose")
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
        sizes = shape_args(sizes, "expand")
        lead = len(sizes) - self.ndim
        full = tuple(self.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
        try:
            if lead < 0 or np.broadcast_shapes(self.shape, full) != full:
                raise ValueError
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {sizes}") from None
        return Expand.apply(self, shape=full)

    def repeat(self, *sizes: Any) -> Tensor:
        """Tiled ``sizes[i]`` times along dim i (see :func:`tinymed.ops.shape.repeat`)."""
        return repeat(self, *sizes)

    def triu(self, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two dims, zero below ``diagonal``."""
        return triu(self, diagonal)

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims, zero above ``diagonal``."""
        return tril(self, diagonal)

    def expand_as(self, other: Tensor) -> Tensor:
        """Broadcast to ``other``'s shape."""
        return self.expand(*other.shape)

    def is_contiguous(self) -> bool:
        """Whether the elements lie in row-major order in memory, as :meth:`view` needs."""
        return bool(self.array.flags.c_contiguous)

    def contiguous(self) -> Tensor:
        """This tensor if :meth:`is_contiguous`, else a row-major copy (the gradient flows
        back), which :meth:`view` can then reshape."""
        return self if self.is_contiguous() else self.clone()

    def masked_fill(self, mask: Tensor, value: Any) -> Tensor:
        """Where ``mask`` (bool, broadcastable to this shape) is True use ``value``, elsewhere
        keep ``self``; the result keeps this tensor's shape and dtype."""
        mask = operand(mask, self, "masked_fill")
        if mask.dtype != bool_:
            raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype {mask.dtype}")
        if broadcast_shape("masked_fill", self, mask, names=("input", "mask")) != self.shape:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to input shape {self.shape}")
        value = operand(value, self, "masked_fill")
        if value.ndim != 0:
            raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {value.shape}")
        return Where.apply(mask, value.type(self.dtype), self)

    def matmul(self, other: Tensor) -> Tensor:
        """Matrix product (see :func:`tinymed.ops.matmul.matmul`)."""
        return matmul(self, other)


def tensor(
    data: Any, requires_grad: bool = False, dtype: Any = None, backend: Any = "numpy", device: Any = None
) -> Tensor:
    """Build a tensor from Python data or an array (always a copy, as in PyTorch).

    dtype is inferred as PyTorch does: Python floats become float32, ints int64, bools
    bool, and NumPy arrays keep their dtype; ``dtype`` overrides it. ``device`` (any spelling
    :class:`tinymed.device` accepts) wins over ``backend``, the kernel family's name."""
    array = np.array(to_array(data, dtype), copy=True)
    return Tensor(array, requires_grad=requires_grad, backend=backend, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap a NumPy array without copying; they share memory."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor.wrap(to_array(array, None), Device("cpu"))


def is_tensor(obj: Any) -> bool:
    """Whether ``obj`` is a tinymed Tensor."""
    return isinstance(obj, Tensor)
