"""Weight averaging: a running average of a model's weights over training (mirrors
``torch.optim.swa_utils``).

The weights an optimiser ends on are one noisy point of the last few hundred steps; their
average over those steps usually sits in a flatter, better-generalising part of the loss
surface (Izmailov et al., 2018) and, for a GAN's generator, gives steadier samples than any
single step (Yazici et al., 2019). Two averages are common:

* **exponential moving average** (EMA), :func:`get_ema_avg_fn`::

      avg <- decay * avg + (1 - decay) * w        after every step

  which remembers about the last ``1 / (1 - decay)`` steps; early in training the initial
  weights dominate it (after ``t`` steps they still weigh ``decay ** t``), so
  :func:`get_ema_warmup_avg_fn` (tinymed's addition) starts with a shorter memory;
* **stochastic weight averaging** (SWA), the default: the plain mean of every ``w`` seen::

      avg <- avg + (w - avg) / (n + 1)

:class:`AveragedModel` holds a copy of the model whose weights are that average; it is
evaluated, sampled and checkpointed like the model itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np

from tinymed.autograd import no_grad
from tinymed.creation import zeros
from tinymed.nn import Module
from tinymed.tensor import Tensor

__all__ = ["AveragedModel", "get_ema_avg_fn", "get_ema_warmup_avg_fn", "get_swa_avg_fn"]

# avg_fn(averaged, current, num_averaged) -> the new average, as in PyTorch.
AverageFunction = Callable[[Tensor, Tensor, int], Tensor]


def _check_decay(function: str, decay: float) -> None:
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"{function}: decay must be in [0, 1], got {decay}")


def _ema_step(averaged: Tensor, current: Tensor, decay: float) -> Tensor:
    """One step of an exponential moving average: ``decay * avg + (1 - decay) * w``."""
    return decay * averaged + (1.0 - decay) * current


def get_ema_avg_fn(decay: float = 0.999) -> AverageFunction:
    """``avg_fn`` of an exponential moving average: ``decay * avg + (1 - decay) * w``."""
    _check_decay("get_ema_avg_fn", decay)

    def ema(averaged: Tensor, current: Tensor, num_averaged: int) -> Tensor:
        return _ema_step(averaged, current, decay)

    return ema


def get_ema_warmup_avg_fn(decay: float = 0.999) -> AverageFunction:
    """``avg_fn`` of an exponential moving average whose decay warms up (tinymed's addition;
    the schedule of TensorFlow's ``ExponentialMovingAverage(num_updates=t)``)::

        decay_t = min(decay, (1 + t) / (10 + t))      avg <- decay_t * avg + (1 - decay_t) * w

    with ``t`` the number of weights averaged so far (AveragedModel's ``num_averaged``, 1 at the
    first fold after the copy). ``decay_t`` is 2/11 at first and reaches ``decay`` only after
    ``(10 * decay - 1) / (1 - decay)`` steps (8990 for 0.999): until then the average covers
    about the last ``(10 + t) / 9`` steps, a ninth of the run, so the initial weights fade
    out however short the run is."""
    _check_decay("get_ema_warmup_avg_fn", decay)

    def ema(averaged: Tensor, current: Tensor, num_averaged: int) -> Tensor:
        return _ema_step(averaged, current, min(decay, (1.0 + num_averaged) / (10.0 + num_averaged)))

    return ema


def get_swa_avg_fn() -> AverageFunction:
    """``avg_fn`` of the plain mean of every weight seen: ``avg + (w - avg) / (n + 1)``."""

    def swa(averaged: Tensor, current: Tensor, num_averaged: int) -> Tensor:
        return averaged + (current - averaged) / (num_averaged + 1)

    return swa


class AveragedModel(Module):
    """A copy of ``model`` whose weights are an average of ``model``'s over the calls to
    :meth:`update_parameters` (SWA by default, EMA with ``avg_fn=get_ema_avg_fn(decay)``).

    The first call copies the weights; each later one folds them into the average.
    ``use_buffers=True`` averages the buffers too (BatchNorm's running statistics), so the
    copy can be evaluated directly; with False (PyTorch's default) the buffers are not
    averaged and the copy's BatchNorm statistics must be recomputed before use. Calling the
    averaged model runs the copy: ``averaged(x)`` is ``averaged.module(x)``.
    """

    def __init__(self, model: Module, avg_fn: AverageFunction | None = None, use_buffers: bool = False) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.register_buffer("n_averaged", zeros((), dtype=np.int64))
        self.avg_fn = avg_fn or get_swa_avg_fn()
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _averaged_tensors(self, model: Module) -> Iterator[tuple[Tensor, Tensor]]:
        """(the copy's tensor, the model's tensor) for every tensor that is averaged."""
        mine, theirs = list(self.module.parameters()), list(model.parameters())
        if self.use_buffers:
            mine += list(self.module.buffers())
            theirs += list(model.buffers())
        if len(mine) != len(theirs):
            raise ValueError(
                f"AveragedModel.update_parameters: the model has {len(theirs)} tensors to average, "
                f"the averaged copy {len(mine)}; pass the model the average was made from"
            )
        return zip(mine, theirs)

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current weights into the average (the first call copies them)."""
        n = int(self.n_averaged.item())
        with no_grad():
            for averaged, current in self._averaged_tensors(model):
                current = current.to(averaged.device)
                if n == 0 or not np.issubdtype(averaged.dtype, np.floating):
                    # Integer buffers (a step count) are copied, not averaged.
                    averaged.copy_(current)
                else:
                    averaged.copy_(self.avg_fn(averaged, current, n))
        self.n_averaged.fill_(n + 1)
