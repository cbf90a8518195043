"""The reverse-mode autograd engine (mirrors ``torch.autograd``: ``tm.autograd.grad``,
``tm.autograd.Function``, ``tm.autograd.backward``).

Every differentiable operation is a :class:`Function` whose ``forward`` computes the result from
arrays and whose ``backward``, written right beside it, turns the gradient of the result into
gradients of the inputs (the local chain rule). ``Function.apply`` runs forward and records the
Function on the result (its ``grad_fn``); the engine walks that graph in reverse topological
order. One concept per module:

``grad_mode``  whether operations are recorded: ``no_grad``, ``enable_grad``,
               ``set_grad_enabled``, ``inference_mode``;
``tensor_base`` what the engine knows of a tensor: array, device, ``grad``, ``grad_fn``, version;
``function``   :class:`Function`, what it records, and the broadcasting rule for gradients;
``engine``     the walk: :func:`backward` and :func:`grad`;
``in_place``   in-place writes, with PyTorch's checks and version counting.

Nothing here imports the ops or the Tensor, so the modules form no import cycle.
"""

from tinymed.autograd.engine import backward, grad
from tinymed.autograd.function import Function, same_device, sum_to_shape
from tinymed.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from tinymed.autograd.in_place import apply_in_place, check_in_place, write
from tinymed.autograd.tensor_base import TensorBase, VersionCounter

__all__ = [
    "Function",
    "TensorBase",
    "VersionCounter",
    "apply_in_place",
    "backward",
    "check_in_place",
    "enable_grad",
    "grad",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "no_grad",
    "same_device",
    "set_grad_enabled",
    "sum_to_shape",
    "write",
]
