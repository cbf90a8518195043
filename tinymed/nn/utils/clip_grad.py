"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` (``torch.nn.utils.clip_grad``).

Both change the gradients in place, between ``loss.backward()`` and ``optimizer.step()``,
and leave the parameters themselves alone. All arithmetic is tinymed Tensor ops, so the same
code runs on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tinymed.autograd import no_grad
from tinymed.ops.shape import stack
from tinymed.tensor import Tensor, tensor


def _gradients(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """The gradients of ``parameters`` that exist (writing into them changes ``p.grad``)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients so that, taken together as one vector, their norm is at most ``max_norm``.

    With g_1..g_k the gradients (any shapes) and ``p = norm_type`` (> 0, or ``inf`` / ``"inf"``)::

        total = || (||g_1||_p, ..., ||g_k||_p) ||_p          (the p-norm of all elements at once)
        g_i  <- g_i * min(1, max_norm / (total + 1e-6))

    The 1e-6 keeps the division finite for zero gradients. Returns ``total`` (before clipping)
    as a 0-d Tensor of the gradients' dtype (0. when no parameter has a gradient). A NaN or
    infinite ``total`` raises RuntimeError when ``error_if_nonfinite``; otherwise the gradients
    are scaled by it anyway, as in PyTorch.
    """
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
    grads = _gradients(parameters)
    if not grads:
        return tensor(0.0)
    with no_grad():
        total = stack([g.norm(norm_type) for g in grads]).norm(norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {norm_type} for gradients from `parameters` is "
                f"non-finite ({total.item()}), so it cannot be clipped. To disable this error and scale the "
                "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
            )
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.copy_(g * scale)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _gradients(parameters):
            g.copy_(g.clamp(-clip_value, clip_value))
