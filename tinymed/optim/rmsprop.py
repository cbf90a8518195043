"""RMSprop (Hinton's lecture 6e; PyTorch's exact update rule, centred and momentum variants)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinymed.optim.optimizer import Optimizer
from tinymed.tensor import Tensor


class RMSprop(Optimizer):
    """Divide each step by a running root-mean-square of the gradient. For each parameter
    ``p`` with gradient ``g``, at every step::

        g = g + weight_decay * p                          (L2 penalty)
        v = alpha * v + (1 - alpha) * g^2                 (mean square of the gradient)
        m = alpha * m + (1 - alpha) * g   if centered     (mean of the gradient)
        d = sqrt(v - m^2) + eps   if centered  else  sqrt(v) + eps
        b = momentum * b + g / d ;  p = p - lr * b        if momentum > 0
        p = p - lr * g / d                                otherwise

    ``v``, ``m`` and ``b`` start at zero (``maximize`` climbs instead: ``g = -g`` first).
    Unlike Adam there is no bias correction, so early steps are large: with ``v`` at
    ``(1 - alpha) g^2`` the first step is about ``lr / sqrt(1 - alpha)`` (10 lr for the
    default ``alpha = 0.99``). Centring divides by an estimate of the gradient's variance
    instead of its second moment."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        for what, value in (
            ("learning rate", lr),
            ("epsilon value", eps),
            ("momentum value", momentum),
            ("weight_decay value", weight_decay),
            ("alpha value", alpha),
        ):
            if value < 0.0:
                raise ValueError(f"RMSprop: invalid {what}: {value}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any], xp: Any) -> None:
        alpha, momentum = group["alpha"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(param.array)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(param.array)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param.array)
        state["step"] += 1

        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.array
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)
            denom = xp.sqrt(square_avg - grad_avg * grad_avg) + group["eps"]
        else:
            denom = xp.sqrt(square_avg) + group["eps"]
        if momentum > 0:
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += grad / denom
            param.array -= group["lr"] * buffer
        else:
            param.array -= group["lr"] * (grad / denom)
