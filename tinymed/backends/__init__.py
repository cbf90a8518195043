"""The backend contract: the one list of primitives every backend implements.

A backend is a module (``numpy_ref``, ``cupy_cuda``, ``numba_cuda``) that implements
:class:`Backend`, a ``typing.Protocol``: every name in :data:`PRIMITIVES` with exactly the
signatures documented below (and typed in :class:`Backend`), plus:

``name``
    ``"numpy"``, ``"cupy"`` or ``"numba"``.
``xp``
    The array module its arrays belong to (``numpy`` or ``cupy``). Elementwise maths and
    reductions in the autograd engine use ``xp`` directly; only the four formula families
    below need hand-written kernels.
``unavailable_reason() -> str | None``
    ``None`` when the backend can run here, otherwise why not and what to install.
``asarray(array)``
    Moves a NumPy (or this backend's) array onto this backend.
``to_numpy(array)``
    Brings one of this backend's arrays back to the host as a NumPy array.

The NumPy module, :mod:`tinymed.backends.numpy_ref`, is the executable specification:
the other two are tested against it, primitive by primitive. Layers never import these
modules: they reach one through a device (``tinymed.device("numba").backend``).

Conventions shared by every primitive
-------------------------------------
* Images are NCHW; convolution weights are ``(C_out, C_in, KH, KW)`` as in PyTorch.
* ``stride``, ``padding`` and ``dilation`` arrive already normalised to pairs of ints
  ``(along H, along W)``; the functional layer validates them.
* Convolution is cross-correlation (no kernel flip), as in PyTorch::

      y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]

  with ``x_pad`` the input padded by ``padding`` zeros, and output size
  ``OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1`` (likewise ``OW``).
* Every primitive is deterministic: the same inputs give bit-identical outputs on the same
  device (no floating-point atomics whose order varies from run to run); on the CPU, at the
  same BLAS thread count, since OpenBLAS may split a product's sums differently across threads.

The primitives
--------------
``conv2d_forward(x, weight, bias, stride, padding, dilation) -> y``
    x ``(N, C, H, W)``, weight ``(O, C, KH, KW)``, bias ``(O,)`` or ``None``;
    y ``(N, O, OH, OW)`` by the formula above.

``conv2d_grad_input(grad_output, weight, input_size, stride, padding, dilation) -> grad_input``
    dL/dx for the convolution above. grad_output ``(N, O, OH, OW)``, weight
    ``(O, C, KH, KW)``, ``input_size = (H, W)`` (several H give the same OH when the stride
    exceeds one, so it must be given); returns ``(N, C, H, W)``::

        gx[n,c,h,w] = sum over (o, i, j, p, q) with i*sh + p*dh = h + ph and
                      j*sw + q*dw = w + pw  of  gy[n,o,i,j] * w[o,c,p,q]

    This is also the forward pass of the transposed convolution.

``conv2d_grad_weight(x, grad_output, kernel_size, stride, padding, dilation) -> grad_weight``
    dL/dw: ``gw[o,c,p,q] = sum_{n,i,j} gy[n,o,i,j] * x_pad[n, c, i*sh + p*dh, j*sw + q*dw]``.
    x ``(N, C, H, W)``, grad_output ``(N, O, OH, OW)``, ``kernel_size = (KH, KW)``;
    returns ``(O, C, KH, KW)``.

``max_pool2d_forward(x, kernel_size, stride, padding, dilation) -> (y, indices)``
    ``y[n,c,i,j] = max_{p,q} x_pad[n, c, i*sh + p*dh, j*sw + q*dw]`` with ``-inf`` padding;
    ``indices`` (int64, same shape as y) holds the flat position ``h * W + w`` of the
    maximum in the unpadded input plane, as PyTorch's ``return_indices=True`` does. Ties
    go to the first maximum in row-major window order; a NaN counts as the maximum.

``max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride, padding, dilation) -> grad_input``
    Routes each output gradient to the input element its window picked:
    ``gx[n,c].flat[indices[n,c,i,j]] += gy[n,c,i,j]``; ``input_size = (H, W)``, and the
    window geometry is the forward pass's. The geometry does not change the result; it
    tells a GPU thread that owns one input pixel which few windows cover it, so that it
    gathers from those outputs alone, in a fixed order and without atomics.

``gemm(a, b, bias=None, trans_a=False, trans_b=False) -> c``
    The affine formula as one matrix product with the bias fused in:
    ``c = op(a) @ op(b) + bias`` where ``op(m)`` is ``m.T`` when its flag is set; a and b are
    2-D, bias is ``(cols,)`` broadcast over the rows. ``linear`` forward is
    ``gemm(x, W, b, trans_b=True)``; its backward products are ``gemm(gy, W)`` and
    ``gemm(gy, x, trans_a=True)``.

``attention_forward(q, k, v, mask, scale, is_causal) -> (out, lse)``
    Scaled dot-product attention for a batch of independent heads.
    q ``(B, Lq, D)``, k ``(B, Lk, D)``, v ``(B, Lk, Dv)``; mask ``None`` or an additive float
    mask ``(B, Lq, Lk)`` (0 keeps, ``-inf`` removes); ``is_causal`` removes every key
    ``j > i`` (the top-left aligned lower triangle, as PyTorch). With
    ``s = scale * q @ k^T + mask``::

        out = softmax(s, axis=-1) @ v            (B, Lq, Dv)
        lse = log(sum_j exp(s[..., j]))           (B, Lq)

    A row whose every key is removed gives ``out = 0`` and ``lse = -inf`` (PyTorch's
    "safe softmax").

``attention_backward(grad_out, q, k, v, out, lse, mask, scale, is_causal) -> (gq, gk, gv)``
    The gradients of ``attention_forward`` from its saved ``out`` and ``lse``, without
    needing the probabilities stored: ``P = exp(s - lse)``, ``D = rowsum(grad_out * out)``,
    ``dS = P * (grad_out @ v^T - D)``, ``gq = scale * dS @ k``, ``gk = scale * dS^T @ q``,
    ``gv = P^T @ grad_out``. Fully removed rows contribute nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from tinymed.errors import TinymedError

Array = Any  # a numpy.ndarray or a cupy.ndarray: the backend's own arrays
Pair = tuple[int, int]


class Backend(Protocol):
    """The contract as types: what ``tinymed.device(...).backend`` gives, whichever module it is.
    The module docstring above is the specification of each member; a test checks every
    backend module's names and signatures against this class."""

    name: str
    xp: ModuleType

    def unavailable_reason(self) -> str | None: ...
    def asarray(self, array: Any) -> Array: ...
    def to_numpy(self, array: Array) -> Any: ...
    def conv2d_forward(
        self, x: Array, weight: Array, bias: Array | None, stride: Pair, padding: Pair, dilation: Pair
    ) -> Array: ...
    def conv2d_grad_input(
        self, grad_output: Array, weight: Array, input_size: Pair, stride: Pair, padding: Pair, dilation: Pair
    ) -> Array: ...
    def conv2d_grad_weight(
        self, x: Array, grad_output: Array, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
    ) -> Array: ...
    def max_pool2d_forward(
        self, x: Array, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
    ) -> tuple[Array, Array]: ...
    def max_pool2d_backward(
        self,
        grad_output: Array,
        indices: Array,
        input_size: Pair,
        kernel_size: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> Array: ...
    def gemm(
        self, a: Array, b: Array, bias: Array | None = None, trans_a: bool = False, trans_b: bool = False
    ) -> Array: ...
    def attention_forward(
        self, q: Array, k: Array, v: Array, mask: Array | None, scale: float, is_causal: bool
    ) -> tuple[Array, Array]: ...
    def attention_backward(
        self,
        grad_out: Array,
        q: Array,
        k: Array,
        v: Array,
        out: Array,
        lse: Array,
        mask: Array | None,
        scale: float,
        is_causal: bool,
    ) -> tuple[Array, Array, Array]: ...


PRIMITIVES: tuple[str, ...] = (
    "conv2d_forward",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "gemm",
    "attention_forward",
    "attention_backward",
)

# Backend name -> module path. Imported lazily: CuPy and Numba are optional.
MODULES: dict[str, str] = {
    "numpy": "tinymed.backends.numpy_ref",
    "cupy": "tinymed.backends.cupy_cuda",
    "numba": "tinymed.backends.numba_cuda",
}
NAMES: tuple[str, ...] = tuple(MODULES)


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``(size + 2*padding - dilation*(kernel-1) - 1) // stride + 1``: the output length of a
    convolution or pooling window along one axis, the ``OH``/``OW`` of the conventions above."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class BackendUnavailableError(TinymedError, RuntimeError):
    """Raised when a backend is asked for on a machine where it cannot run."""


def get(name: str) -> Backend:
    """Return the backend module called ``name``, or raise why it cannot run here."""
    if name not in MODULES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    module = importlib.import_module(MODULES[name])
    reason = module.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return module


def available() -> list[str]:
    """The names of the backends that can run on this machine, NumPy first."""
    names = []
    for name in NAMES:
        try:
            get(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names
