"""Stopping a run whose loss diverged, with the checkpoint it can be continued from named.

A run has diverged, and the guard stops it, when

* a loss is NaN or infinite: it never comes back, since every weight it touches becomes NaN;
* a loss explodes: it exceeds ``factor`` times its reference, ``max(first, 1)``, where
  ``first`` is that loss at this run's first step (after a resume: the first step after it).
  With the default factor 10^4, cross-entropy starting near log 2 stops above 10^4, where no
  run that is still learning goes: a learning rate far too large sends it to 10^10 and beyond
  within an epoch, while the weights are still finite. The floor of 1 keeps a loss that
  starts near 0 from stopping the run at its first ordinary fluctuation;
* a weight is NaN or infinite at the end of an epoch (an update can overflow even when the
  loss before it was finite), checked before that epoch's checkpoint is written.

The trainer hands the guard each step's losses before the update and its weights before each
save, so the last checkpoint is always the last epoch that ended well. The message says where
(epoch and step), what to try (a smaller learning rate), and which checkpoint of this run
still holds the last good epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from tinymed.errors import TrainingError
from tinymed.tensor import Tensor
from tinymed.train.run import RunDirectory

__all__ = ["DEFAULT_FACTOR", "DivergenceGuard"]

DEFAULT_FACTOR = 1e4


class DivergenceGuard:
    """Watches the losses and weights of one run writing to ``directory``; ``what`` names the
    losses in the message (``"loss"``, ``"GAN losses"``), ``factor`` sets the explosion rule."""

    def __init__(self, directory: RunDirectory, what: str, factor: float = DEFAULT_FACTOR) -> None:
        self.directory, self.what, self.factor = directory, what, factor
        self.reference: dict[str, float] = {}

    def _stop(self, what_happened: str) -> TrainingError:
        kept = self.directory.last_good()
        keep = f"the last good checkpoint is {kept}" if kept else "no checkpoint of this run was written yet"
        return TrainingError(f"{what_happened}; training stopped ({keep}); try a smaller --lr")

    def check(self, losses: Mapping[str, float], epoch: int, step: int) -> None:
        """Raise a TrainingError naming the epoch, the step and the last good checkpoint if
        one of ``losses`` (name to value) is not finite or has exploded."""
        for name, value in losses.items():
            if math.isfinite(value):
                self.reference.setdefault(name, max(value, 1.0))
        exploded = [name for name, value in losses.items() if value > self.factor * self.reference.get(name, math.inf)]
        if all(math.isfinite(value) for value in losses.values()) and not exploded:
            return
        values = ", ".join(
            f"{name} {value:.4g}" if len(losses) > 1 else f"{value:.4g}" for name, value in losses.items()
        )
        why = (
            ""
            if not exploded
            else f", more than {self.factor:g} times where {' and '.join(exploded)} began "
            f"({', '.join(f'{self.reference[name]:.4g}' for name in exploded)})"
        )
        raise self._stop(f"the {self.what} became {values} at epoch {epoch}, step {step}{why}")

    def check_weights(self, parameters: Iterable[tuple[str, Tensor]], epoch: int) -> None:
        """Raise a TrainingError if a weight of ``parameters`` (name, tensor) is not finite at
        the end of ``epoch``, before it is saved."""
        bad = [name for name, p in parameters if not np.isfinite(p.numpy()).all()]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise self._stop(f"weights became NaN or infinite during epoch {epoch} ({shown})")
