"""Adam and AdamW (PyTorch's exact update rules, including where ``eps`` goes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tinymed.optim.optimizer import Optimizer
from tinymed.tensor import Tensor


class Adam(Optimizer):
    """Adaptive moment estimation. For each parameter ``p`` with gradient ``g``, at step t::

        g = g + weight_decay * p                         (L2 penalty; AdamW decays p instead)
        m = beta1 * m + (1 - beta1) * g                  (mean of the gradient)
        v = beta2 * v + (1 - beta2) * g^2                (mean of its square)
        v_hat = max(v_hat, v)  if amsgrad  else  v
        p = p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)

    ``m`` and ``v`` start at zero, so early on they are too small by the factors
    ``1 - beta^t``; the two bias corrections undo that. ``eps`` is added after the
    correction of ``sqrt(v)``, as PyTorch does."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        name = type(self).__name__
        for what, value in (("learning rate", lr), ("epsilon value", eps), ("weight_decay value", weight_decay)):
            if value < 0.0:
                raise ValueError(f"{name}: invalid {what}: {value}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: invalid beta parameter at index {i}: {beta}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any], xp: Any) -> None:
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param.array)
            state["exp_avg_sq"] = xp.zeros_like(param.array)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param.array)
        state["step"] += 1
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.array *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param.array
        # In place, through one scratch array: each line below is one pass over the parameter,
        # where the formulas written as expressions would allocate a temporary array for every
        # operator (a third of Adam's time at a DCGAN's sizes). The operations and their order,
        # hence the rounding, are the formulas' above, which are PyTorch's.
        scratch = grad - exp_avg
        scratch *= 1 - beta1
        exp_avg += scratch  # m = m + (1 - beta1) (g - m)
        exp_avg_sq *= beta2
        xp.multiply(grad, 1 - beta2, out=scratch)
        scratch *= grad
        exp_avg_sq += scratch  # v = beta2 v + (1 - beta2) g g

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            second_moment = xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        denom = xp.sqrt(second_moment, out=scratch)
        denom /= bias_correction2**0.5
        denom += eps
        step_size = xp.divide(exp_avg, denom, out=scratch)
        step_size *= lr / bias_correction1
        param.array -= step_size


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): instead of adding
    ``weight_decay * p`` to the gradient, where Adam's scaling would shrink it, every step
    first multiplies ``p`` by ``1 - lr * weight_decay``. Default weight decay 0.01."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)
