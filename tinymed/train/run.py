"""What every training run shares, whatever it trains: the checks made before it starts (the
backend, the options' ranges), its directory and the checkpoints in it, the check that
``--resume`` continues the same run, the progress bar, and ``metrics.json``.

A run is a function of its options (a config dataclass) and its seed. Every checkpoint a
:class:`RunDirectory` writes carries both: the options under ``metadata["train_config"]``
and the state of tinymed's random generator under ``state["rng"]``. Resuming loads
``last.npz``, refuses it if the options differ (except those a trainer names as changing only
where the run happens, such as the backend), and restores the generator, so that a resumed
run ends with exactly the weights of an uninterrupted one.

A trainer builds its data and networks first (a bad data file then fails before anything is
written), then calls :meth:`RunDirectory.start`, then writes through :meth:`RunDirectory.save`
once an epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

import tinymed
from tinymed import backends
from tinymed.errors import TrainingError
from tinymed.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

__all__ = ["TrainingError", "RunDirectory", "require_backend", "check_positive", "progress_bar"]


def require_backend(name: str) -> None:
    """Fail now, before any data is read, if the backend ``name`` cannot run on this machine."""
    backends.get(name)


def check_positive(command: str, integers: Mapping[str, Any], lr: float) -> None:
    """Refuse a config whose counts (``integers``: epochs, batch size, widths) are not positive
    integers or whose learning rate is not positive."""
    for name, value in integers.items():
        if not isinstance(value, int) or value < 1:
            raise TrainingError(f"{command}: {name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise TrainingError(f"{command}: lr must be positive, got {lr}")


def progress_bar(batches: Iterable[Any], epoch: int, epochs: int, enabled: bool) -> tqdm:
    """A progress bar over one epoch's batches that disappears when the epoch ends."""
    return tqdm(
        batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not enabled, unit="batch", dynamic_ncols=True
    )


class RunDirectory:
    """The output directory of one training run (``config.out``) and the checkpoints in it.

    ``last.npz`` is written after every epoch with everything needed to resume; a run that
    ``keeps_best`` also writes ``best.npz`` (the model alone) whenever an epoch improves on the
    best so far. ``resumable`` names the options a resumed run may change.
    """

    def __init__(
        self,
        config: Any,
        kind: str,
        model: str,
        resumable: Iterable[str],
        keeps_best: bool,
        log: Callable[[str], None],
    ) -> None:
        self.path = Path(config.out)
        # As JSON gives it back (tuples become lists), so the saved options and these compare.
        self.options: dict[str, Any] = json.loads(json.dumps(asdict(config)))
        self.kind, self.model, self.resumable = kind, model, tuple(resumable)
        self.keeps_best, self.log = keeps_best, log
        self.last, self.best = self.path / "last.npz", self.path / "best.npz"

    def start(self, resume: bool) -> Checkpoint | None:
        """Open the directory for this run. With ``resume``, load ``last.npz``, check that it is
        this run (same kind, model and options), restore the random generator from it and
        return it, for the trainer to restore the rest; otherwise return None."""
        if resume:
            return self._resume()
        if self.last.exists():
            which = "checkpoints (--resume continues them)" if self.keeps_best else "checkpoint (--resume continues it)"
            self.log(f"note: starting over in {self.path}, replacing its {which}")
        self.path.mkdir(parents=True, exist_ok=True)
        return None

    def _resume(self) -> Checkpoint:
        checkpoint = load_checkpoint(self.last, kind=self.kind, model=self.model)
        saved = checkpoint.metadata["train_config"]
        changed = [
            f"{name} {saved.get(name)!r} -> {value!r}"
            for name, value in self.options.items()
            if name not in self.resumable and saved.get(name) != value
        ]
        if changed:
            raise TrainingError(
                f"--resume continues {self.last} with the options it was started with; "
                f"these differ: {'; '.join(changed)}"
            )
        tinymed.set_rng_state(checkpoint.state["rng"])
        return checkpoint

    def save(
        self, state: Mapping[str, Any], metadata: Mapping[str, Any], best: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``last.npz``: ``state`` plus the random generator's state, ``metadata`` plus
        the run's kind and options. ``best``, when given, is written to ``best.npz`` first,
        with the same metadata."""
        metadata = {"kind": self.kind, **metadata, "train_config": self.options}
        if best is not None:
            save_checkpoint(self.best, best, metadata)
        save_checkpoint(self.last, {**state, "rng": tinymed.get_rng_state()}, metadata)

    def last_good(self) -> Path | None:
        """The checkpoint a run that stops now can be continued from, if there is one."""
        return self.last if self.last.exists() else None

    def write_metrics(self, summary: Mapping[str, Any]) -> None:
        """The run's summary as ``metrics.json``."""
        (self.path / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
