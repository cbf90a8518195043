"""Stopping a run whose loss diverged, with the checkpoint it can be continued from named.

A loss that is no longer finite never comes back: every weight it touches becomes NaN. The
trainer hands the guard each step's losses; the guard stops the run at the first one that is
not finite, saying where (epoch and step), what to try (a smaller learning rate), and which
checkpoint still holds the last epoch that ended well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from tinymed.train.run import RunDirectory, TrainingError

__all__ = ["DivergenceGuard"]


class DivergenceGuard:
    """Watches the losses of one run writing to ``directory``; ``what`` names them in the
    message (``"loss"``, ``"GAN losses"``)."""

    def __init__(self, directory: RunDirectory, what: str) -> None:
        self.directory, self.what = directory, what

    def check(self, losses: Mapping[str, float], epoch: int, step: int) -> None:
        """Raise a TrainingError naming the epoch, the step and the last good checkpoint if
        one of ``losses`` (name to value) is not finite."""
        if all(math.isfinite(value) for value in losses.values()):
            return
        values = ", ".join(f"{name} {value}" if len(losses) > 1 else str(value) for name, value in losses.items())
        kept = self.directory.last_good()
        keep = f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet"
        raise TrainingError(
            f"the {self.what} became {values} at epoch {epoch}, step {step}; training stopped ({keep}); "
            f"try a smaller --lr"
        )
