"""In-place writes with PyTorch's safety: ``x.add_(y)``, ``x += y``, ``x.fill_(0)``, ``x[i] = v``.

An in-place op is its out-of-place op, written back into the tensor's own array (so every alias
of that array, views and ``detach()`` included, sees the new values) and counted on the tensor's
version counter (so a backward that saved the old values raises instead of using the new ones).

When the write is recorded for backward (grad mode on, and the tensor or an operand requires
grad), the tensor takes the new op as its ``grad_fn``. The op itself computes on a copy of the
old values standing at the tensor's old place in the graph, so its backward is not disturbed by
the write, and gradients of values computed from the tensor before the write still flow to where
they came from: ``y = x * 3; z = y + 1; y.mul_(2)`` leaves ``z``'s gradient untouched, as in
PyTorch.

Refused, as in PyTorch: a write to a leaf that requires grad, or to a view of one, while grad mode
is on (``with tm.no_grad():`` is how an optimiser writes), and a write to an inference tensor
outside ``inference_mode``. Refused by tinymed alone: a recorded write into a view (PyTorch
re-records the view's base, tinymed does not), so such code must compute out of place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinymed.autograd.grad_mode import is_grad_enabled, is_inference_mode_enabled
from tinymed.autograd.tensor_base import TensorBase
from tinymed.dtypes import CATEGORY


def check_in_place(op: str, target: TensorBase, recording: bool) -> None:
    """Raise PyTorch's error if ``target`` may not be written in place now (see the module docstring)."""
    if target.is_inference() and not is_inference_mode_enabled():
        raise RuntimeError(
            f"{op}: Inplace update to inference tensor outside InferenceMode is not allowed. You can make a "
            "clone to get a normal tensor before doing inplace update."
        )
    if not is_grad_enabled():
        return
    if target.is_leaf and target.requires_grad and target._base is None:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    base = target._base
    if base is not None and base.is_leaf and base.requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    if base is not None and recording:
        raise RuntimeError(
            f"{op}: tinymed cannot record an in-place write into a view (shape {target.shape}) of another "
            f"tensor (shape {base.shape}) for backward; compute it out of place (y = y * 2, torch.cat, tm.where)"
        )


def apply_in_place(op: str, target: TensorBase, compute: Callable[[TensorBase], TensorBase], *operands: Any) -> Any:
    """``target`` <- ``compute(target)``, in place: ``compute`` is the out-of-place op (``lambda
    t: t + y``) and ``operands`` the other tensors it reads, which decide whether the write is
    recorded. The result's dtype must be one the target can hold (PyTorch refuses
    ``int_tensor.add_(0.5)``). Returns ``target``."""
    recording = is_grad_enabled() and (
        target.requires_grad or any(isinstance(o, TensorBase) and o.requires_grad for o in operands)
    )
    check_in_place(op, target, recording)
    if recording:
        # The old values at the tensor's old place in the graph (see the module docstring).
        source = target.wrap(target.array.copy(), target.device, target.requires_grad)
        source._ctx = target.grad_fn
    else:
        source = target
    result = compute(source)
    if CATEGORY[result.dtype.kind] > CATEGORY[target.dtype.kind]:
        raise RuntimeError(f"{op}: result type {result.dtype} can't be cast to the desired output type {target.dtype}")
    retained = target.retains_grad
    write(op, target, result.array)
    if not recording:
        return target
    target._ctx, target._requires_grad = result.grad_fn, result.requires_grad
    if retained:
        target.retain_grad()
    return target


def write(op: str, target: TensorBase, values: Any, index: Any = Ellipsis) -> None:
    """Copy ``values`` (an array, or a number) into ``target.array[index]``, cast to its dtype,
    and count the write; written whole (``index`` left out), the values must have its shape."""
    if index is Ellipsis and hasattr(values, "shape") and tuple(values.shape) != target.shape:
        raise RuntimeError(
            f"{op}: output with shape {list(target.shape)} doesn't match the broadcast shape {list(values.shape)}"
        )
    # NumPy marks expand() results (and read-only data) unwritable; CuPy arrays have no such flag.
    if not getattr(getattr(target.array, "flags", None), "writeable", True):
        raise RuntimeError(
            f"{op}: this tensor (shape {target.shape}) is read-only: more than one element may refer to a single "
            "memory location, as after expand(); clone() it first"
        )
    try:
        target.array[index] = values
    except ValueError as e:  # NumPy's "could not broadcast input array from shape ..."
        shape = getattr(values, "shape", ())
        raise ValueError(
            f"{op}: a value of shape {tuple(shape)} does not broadcast to the selected elements of a tensor of "
            f"shape {target.shape} ({e})"
        ) from None
    target.increment_version()
