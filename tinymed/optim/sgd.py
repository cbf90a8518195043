"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay
(PyTorch's exact update rule)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinymed.optim.optimizer import Optimizer
from tinymed.tensor import Tensor


class SGD(Optimizer):
    """For each parameter ``p`` with gradient ``g``, at every step::

        g = g + weight_decay * p                    (L2 penalty)
        b = g                       at the first step, then
        b = momentum * b + (1 - dampening) * g      (the momentum buffer)
        g = g + momentum * b  if nesterov  else  b
        p = p - lr * g

    (``maximize`` climbs instead: ``g = -g`` first). Momentum remembers the recent
    direction, so steps along a consistent slope grow and zig-zags cancel."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        for name, value in (("learning rate", lr), ("momentum value", momentum), ("weight_decay value", weight_decay)):
            if value < 0.0:
                raise ValueError(f"SGD: invalid {name}: {value}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov momentum requires a momentum and zero dampening, got momentum={momentum}, dampening={dampening}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any], xp: Any) -> None:
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param.array
        momentum = group["momentum"]
        if momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                # A copy: the gradient array may be zeroed in place later.
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param.array -= group["lr"] * grad
