"""What every training run shares, whatever it trains: the checks made before it starts (the
backend, the options' ranges, the output directory), its directory and the checkpoints in it,
the check that ``--resume`` continues the same run, the progress bar, and ``metrics.json``.

A run is a function of its options (a config dataclass) and its seed. Every checkpoint a
:class:`RunDirectory` writes carries both: the options under ``metadata["train_config"]``
and the state of tinymed's random generator under ``state["rng"]``. Resuming loads
``last.npz``, refuses it if the options differ (except those a trainer names as changing only
where or how long the run happens, such as the backend), or if the data differs (its name,
image size and MD5), and restores the generator, so that a resumed run ends with exactly the
weights of an uninterrupted one.

Where a run reads and writes (:data:`LOCATIONS`: ``data_dir``, ``data_file``, ``out``) is never
stored: a checkpoint names its data by name and MD5 alone, and a resumed run may find the same
data or directory at another path. Nor is wall-clock time: it goes to ``timings.json`` beside
the checkpoints, which are therefore the same bytes whenever the same run writes them.

A run directory belongs to one run at a time:

* a lock file ``.lock`` holds the owner's pid and host; a second run into the directory is
  refused while that process lives, and a lock whose process is gone (a run killed with
  SIGKILL) is stale and taken over;
* a fresh run into a directory holding another run's checkpoints is refused unless
  ``overwrite`` (``--overwrite``) replaces them or ``resume`` (``--resume``) continues them;
* :meth:`RunDirectory.last_good` names only a checkpoint this run wrote (or resumed from);
* ``.part`` files left by a writer killed mid-save are deleted when the next run starts.

A trainer makes its :class:`RunDirectory` first (a bad ``--out`` or a directory in use then
fails before any data is read), builds its data and networks, then opens the directory with
:meth:`RunDirectory.open` (the lock taken, ``last.npz`` loaded when resuming), and writes
through :meth:`RunDirectory.save` once an epoch.

A run may have a time budget (``minutes``, ``--minutes``) besides its number of epochs: before
each epoch, :meth:`RunDirectory.fits_in` asks whether one more epoch of the mean length so far
still ends inside the budget, so the run stops at an epoch boundary, with its checkpoint, inside
the budget. The budget is the run's training time, counted across ``--resume`` as
``timings.json`` counts it: a resumed run has what the earlier runs left of it (all of it again
if ``timings.json`` was lost). Whether an epoch fits depends on the machine's speed, so a
budgeted run is reproducible only in the epochs it did: rerun with ``--epochs`` that number and
no budget, and the weights are the same.

A distributed run (``mpiexec -n N tinymed train ...``, see :mod:`tinymed.distributed`) is one
run with one directory: rank 0 alone creates it, holds its lock and writes into it, while
every rank reads ``last.npz`` to resume (on a cluster, from a file system the nodes share).
Each checkpoint records its ``world_size``, the number of processes that trained it (one
when absent: checkpoints older than distributed training), and a resume with another
number of processes is refused: each rank's share of every batch, and with BatchNorm or
dropout the results, depend on it. The helpers below wrap a model for data-parallel
training, average its gradients, check that the ranks agree, and keep the log to rank 0.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinymed
from tinymed import distributed as dist
from tinymed import nn
from tinymed.data import DataLoader, ImageDataset
from tinymed.errors import CheckpointError, DatasetError, OutputError, TrainingError
from tinymed.outputs import atomic_write, check_output, process_alive, remove_abandoned_parts
from tinymed.train.checkpoint import Checkpoint, check_metadata, load_checkpoint, save_checkpoint

__all__ = [
    "TrainingError",
    "LOCATIONS",
    "RunDirectory",
    "require_backend",
    "check_options",
    "check_minutes",
    "check_not_empty",
    "check_images_fit",
    "check_batches_split",
    "progress_bar",
    "data_parallel",
    "reduce_gradients",
    "verify_in_sync",
    "main_process_log",
]

# The options that say where a run reads and writes: never stored, free to change on resume.
LOCATIONS = ("data_dir", "data_file", "out")

# What identifies a run's data; a resumed run must find the same.
DATA_IDENTITY = ("name", "image_size", "md5")

# What resuming reads from last.npz's metadata, whatever the trainer.
RESUME_FIELDS = {
    "train_config": ("an object", lambda v: type(v) is dict),
    "history": ("a list of objects", lambda v: type(v) is list and all(type(row) is dict for row in v)),
    "world_size": ("a positive integer", lambda v: type(v) is int and v >= 1),
}


def require_backend(name: str) -> tinymed.device:
    """The device ``name``, after failing now, before any data is read, if it cannot run on this
    machine (asking a device for its kernel module raises, in one line, what is missing)."""
    device = tinymed.device(name)
    device.backend.name  # noqa: B018 (the look-up itself is the check)
    return device


def check_options(command: str, config: Any, counts: Iterable[str]) -> None:
    """Refuse a config whose ``counts`` (epochs, batch size, widths) are not positive integers,
    whose ``lr`` is not a positive finite number, whose ``seed`` is negative, or whose
    ``divergence_factor`` is not above 1."""
    for name in counts:
        value = getattr(config, name)
        if type(value) is not int or value < 1:
            raise TrainingError(f"{command}: {name} must be a positive integer, got {value!r}")
    if not 0 < config.lr < float("inf"):
        raise TrainingError(f"{command}: lr must be a positive finite number, got {config.lr}")
    if type(config.seed) is not int or config.seed < 0:
        raise TrainingError(f"{command}: seed must be a non-negative integer, got {config.seed!r}")
    if not 1 < config.divergence_factor < float("inf"):
        raise TrainingError(
            f"{command}: divergence_factor must be a finite number above 1, got {config.divergence_factor}"
        )


def check_minutes(command: str, minutes: float | None) -> None:
    """Refuse a time budget (``--minutes``) that is not a positive finite number of minutes
    (None: no budget)."""
    if minutes is not None and not (type(minutes) in (int, float) and 0 < minutes < float("inf")):
        raise TrainingError(f"{command}: minutes (--minutes) must be a positive finite number, got {minutes!r}")


def check_not_empty(dataset: ImageDataset, split: str) -> None:
    """Refuse a split with no images: nothing to train on, or to measure with."""
    if len(dataset) == 0:
        raise DatasetError(f"the {split} split of {dataset.info.name} has no images")


def check_images_fit(
    model: nn.Module, dataset: ImageDataset, name: str, backend: str, conditional: bool = False
) -> None:
    """Pass one image of ``dataset`` (with its label, for a ``conditional`` model) through
    ``model`` in eval mode without gradients, and raise a DatasetError if the model cannot take
    images of that size or channel count."""
    images, labels = dataset.batch(np.arange(1))
    inputs = [tinymed.from_numpy(a).to(backend) for a in ((images, labels) if conditional else (images,))]
    was_training = model.training
    model.eval()
    try:
        with tinymed.no_grad():
            model(*inputs)
    except (ValueError, IndexError, RuntimeError) as e:
        h, w = dataset.image_size
        raise DatasetError(
            f"{dataset.info.name} images of {dataset.info.n_channels}x{h}x{w} do not fit the {name} model "
            f"({' '.join(str(e).split())})"
        ) from e
    finally:
        model.train(was_training)


def check_batches_split(command: str, loader: DataLoader) -> None:
    """Refuse, before training, a run whose global batches do not split evenly across the
    processes: every rank must train on an equal share, or the averaged gradient would weigh
    the ranks' samples unequally (see :func:`tinymed.distributed.shard`)."""
    world_size = dist.rank_and_world_size()[1]
    n, batch_size = len(loader.dataset), loader.batch_size
    sizes = ([batch_size] if n >= batch_size else []) + (
        [n % batch_size] if n % batch_size and not loader.drop_last else []
    )
    for size in sizes:
        if size % world_size:
            full = size == batch_size
            what = f"--batch-size {size}" if full else f"the last batch ({size} of the {n} training images)"
            raise TrainingError(
                f"{command}: {what} does not split evenly across {world_size} processes; "
                f"use a batch size divisible by {world_size}{'' if full else ' that leaves no such batch'}"
            )


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in :class:`~tinymed.nn.parallel.DistributedDataParallel` in a
    distributed run (which gives every rank rank 0's weights), ``module`` itself otherwise."""
    return nn.parallel.DistributedDataParallel(module) if dist.is_initialized() else module


def reduce_gradients(model: nn.Module) -> None:
    """Average ``model``'s gradients over the ranks when it is data-parallel, after
    ``backward()`` and before the optimiser's step (the line PyTorch's DDP does inside
    ``backward()``); nothing in a plain run."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model.reduce_gradients()


def verify_in_sync(model: nn.Module) -> None:
    """In a distributed run, raise on every rank unless all hold rank 0's parameters (see
    :func:`tinymed.nn.parallel.verify_in_sync`); nothing in a plain run."""
    if dist.is_initialized():
        nn.parallel.verify_in_sync(model)


def main_process_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on the process that writes the run's files, a no-op on the other ranks of a
    distributed run, so each line is printed once."""
    return log if dist.is_main_process() else _silent


def _silent(line: str) -> None:
    """Drop ``line``: a rank other than the main process says nothing."""


def progress_bar(batches: Iterable[Any], epoch: int, epochs: int, enabled: bool) -> tqdm:
    """A progress bar over one epoch's batches that disappears when the epoch ends."""
    return tqdm(
        batches, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not enabled, unit="batch", dynamic_ncols=True
    )


class RunDirectory:
    """The output directory of one training run (``config.out``) and the checkpoints in it.

    ``last.npz`` is written after every epoch with everything needed to resume (the pieces of
    state ``pieces`` names, and the random generator's); a run that ``keeps_best`` also
    writes ``best.npz`` (the model alone) whenever an epoch improves on the best so far.
    ``resumable`` names the options a resumed run may change besides :data:`LOCATIONS`.
    Made with ``resume`` or ``overwrite`` as the command line says; the checks that need no
    data (the directory can be written, is not in use, holds no other run) are made here.
    ``writer`` is whether this process writes (rank 0 of a distributed run, see the module
    docstring); the others keep the same account of the run without touching the directory.
    """

    def __init__(
        self,
        config: Any,
        kind: str,
        model: str,
        resumable: Iterable[str],
        pieces: Iterable[str],
        keeps_best: bool,
        log: Callable[[str], None],
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        if resume and overwrite:
            raise TrainingError("--resume continues the run in --out and --overwrite replaces it; give one of them")
        self.path = check_output(config.out, "--out", directory=True)
        # As JSON gives it back (tuples become lists), so the saved options and these compare.
        options = json.loads(json.dumps(asdict(config)))
        self.options: dict[str, Any] = {name: value for name, value in options.items() if name not in LOCATIONS}
        self.kind, self.model, self.resumable, self.pieces = kind, model, tuple(resumable), (*pieces, "rng")
        self.keeps_best, self.log, self.resume, self.overwrite = keeps_best, log, resume, overwrite
        self.writer = dist.is_main_process()
        self.last, self.best = self.path / "last.npz", self.path / "best.npz"
        self.lock, self.timings = self.path / ".lock", self.path / "timings.json"
        # Seconds of training at the end of each epoch, from the first; kept out of checkpoints.
        self.seconds: list[float] = []
        self._ours = False  # whether last.npz is this run's: written or resumed from by it
        if self.writer:  # the lock is rank 0's, taken by the time the other ranks might look
            self._check_owner()
        written = [p.name for p in (self.last, self.best) if p.exists()]
        if resume and not self.last.exists():
            raise CheckpointError(f"checkpoint not found: {self.last}; --resume continues a run that wrote it")
        if written and not (resume or overwrite):
            raise TrainingError(
                f"{self.path} holds the checkpoints of an earlier run ({', '.join(written)}); "
                f"--resume continues that run, --overwrite replaces it, or choose another --out"
            )

    # ---------------------------------------------------------------- ownership
    def _owner(self) -> tuple[int, str] | None:
        """The pid and host holding the lock, if a process still holds it (a lock of another
        host cannot be checked, and counts as held)."""
        try:
            pid_text, host = self.lock.read_text().split()
            pid = int(pid_text)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable or half-written by a killed process: nobody holds it
        if host == socket.gethostname() and not process_alive(pid):
            return None
        return pid, host

    def _check_owner(self) -> None:
        owner = self._owner()
        if owner is not None:
            pid, host = owner
            raise TrainingError(
                f"{self.path} is in use by another run (pid {pid} on {host}, lock file {self.lock}); "
                f"wait for it to finish, or choose another --out (delete the lock file only if that run is gone)"
            )

    def _take_lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--out {self.path}: cannot create the directory ({e.strerror})") from e
        # The lock appears with its content or not at all: written aside, then linked into place,
        # which fails if another run's lock is there.
        claim = self.path / f".lock.{os.getpid()}"
        claim.write_text(f"{os.getpid()} {socket.gethostname()}\n")
        try:
            for _ in range(2):
                try:
                    os.link(claim, self.lock)
                    return
                except FileExistsError:
                    self._check_owner()
                    self.log(f"note: taking over the stale lock {self.lock}; the run that held it is gone")
                    self.lock.unlink(missing_ok=True)
            raise TrainingError(f"{self.path}: another run keeps taking its lock {self.lock}; choose another --out")
        finally:
            claim.unlink(missing_ok=True)

    def _release_lock(self) -> None:
        if self._owner() == (os.getpid(), socket.gethostname()):
            self.lock.unlink(missing_ok=True)

    @contextmanager
    def open(self, data: Mapping[str, Any], restore: Callable[[Checkpoint], None]) -> Iterator[None]:
        """Own the directory for this run while the block runs: take the lock, delete the
        ``.part`` files killed writers left, and, with ``overwrite``, the earlier run's
        checkpoints. With ``resume``, load ``last.npz``, check that it is this run (same kind,
        model, options and ``data``, the data set metadata the trainer saves), restore the
        random generator from it and hand it to ``restore``, the trainer's, for the rest. A
        process that is not the ``writer`` leaves the directory alone and only resumes."""
        if self.writer:
            self._take_lock()
        try:
            if self.writer:
                for name in (self.last.name, self.best.name, self.timings.name):
                    remove_abandoned_parts(self.path, name)
                if self.overwrite:
                    for old in (self.last, self.best, self.timings):
                        old.unlink(missing_ok=True)
            if self.resume:
                checkpoint = self._resume(data)
                try:
                    restore(checkpoint)
                except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
                    if isinstance(e, CheckpointError):
                        raise
                    raise CheckpointError(
                        f"{self.last}: cannot restore the run from it ({type(e).__name__}: {e})"
                    ) from e
            yield
        finally:
            self._release_lock()

    def _resume(self, data: Mapping[str, Any]) -> Checkpoint:
        checkpoint = load_checkpoint(self.last, kind=self.kind, model=self.model)
        metadata = {"world_size": 1, **checkpoint.metadata}
        check_metadata(self.last, metadata, RESUME_FIELDS)
        dist.check_resume_world_size(metadata["world_size"], str(self.last))
        missing = [piece for piece in self.pieces if piece not in checkpoint.state]
        if missing:
            raise CheckpointError(
                f"{self.last} lacks {', '.join(missing)}, which --resume needs (is it a copy of best.npz?); "
                f"train again with --overwrite"
            )
        saved = checkpoint.metadata["train_config"]
        changed = [
            f"{name} {saved.get(name)!r} -> {value!r}"
            for name, value in self.options.items()
            if name not in self.resumable and saved.get(name) != value
        ]
        trained_on = checkpoint.metadata["dataset"]
        changed += [
            f"data {key} {trained_on.get(key)!r} -> {data.get(key)!r}"
            for key in DATA_IDENTITY
            if trained_on.get(key) != data.get(key)
        ]
        if changed:
            raise TrainingError(
                f"--resume continues {self.last} with the options and data it was started with; "
                f"these differ: {'; '.join(changed)}"
            )
        epoch, epochs = checkpoint.metadata["epoch"], self.options["epochs"]
        if epochs < epoch:
            raise TrainingError(f"--resume: {self.last} has trained {epoch} epochs already; --epochs {epochs} is fewer")
        tinymed.set_rng_state(checkpoint.state["rng"])
        self.seconds = self._saved_seconds(epoch)
        self._ours = True
        return checkpoint

    def _saved_seconds(self, epochs: int) -> list[float]:
        """The timings of the first ``epochs`` epochs, if ``timings.json`` still has them."""
        try:
            seconds = json.loads(self.timings.read_text())["seconds"][:epochs]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        valid = len(seconds) == epochs and all(type(s) in (int, float) for s in seconds)
        return seconds if valid else []

    # ---------------------------------------------------------------- writing
    def save(
        self,
        state: Mapping[str, Any],
        metadata: Mapping[str, Any],
        seconds: float,
        best: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``last.npz``: ``state`` plus the random generator's state, ``metadata`` plus
        the run's kind, options and world size. ``best``, when given, is written to
        ``best.npz`` first, with the same metadata. ``seconds`` (of training so far) goes to
        ``timings.json``. A process that is not the ``writer`` only keeps the account."""
        metadata = {
            "kind": self.kind,
            **metadata,
            "train_config": self.options,
            "world_size": dist.rank_and_world_size()[1],
        }
        self._ours = True
        self.seconds = self.seconds[: metadata["epoch"] - 1] + [seconds]
        if not self.writer:
            return
        if best is not None:
            save_checkpoint(self.best, best, metadata)
        save_checkpoint(self.last, {**state, "rng": tinymed.get_rng_state()}, metadata)
        with atomic_write(self.timings) as f:
            f.write(json.dumps({"seconds": self.seconds}).encode() + b"\n")

    def elapsed(self) -> float:
        """Seconds of training so far (0 when the timings of a resumed run are lost)."""
        return self.seconds[-1] if self.seconds else 0.0

    def fits_in(self, minutes: float | None) -> bool:
        """Whether one more epoch fits in a budget of ``minutes`` of training (None: no budget):
        whether the seconds so far plus their mean per epoch are at most ``60 * minutes``. The
        first epoch, with no mean yet, always fits. In a distributed run every rank must call
        it at the same point, and all get the same answer (from their mean clock)."""
        if minutes is None:
            return True
        # After a resume that lost timings.json, self.seconds counts from the resume and holds
        # one entry per epoch since, so it still gives seconds per epoch.
        clock = dist.average_over_ranks({"elapsed": self.elapsed(), "epochs": len(self.seconds)})
        if clock["epochs"] == 0:
            return True
        return clock["elapsed"] * (1 + 1 / clock["epochs"]) <= 60 * minutes

    def timed(self, history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The history rows with the seconds at the end of each epoch (None where unknown)."""
        rows = list(history)
        seconds = self.seconds if len(self.seconds) == len(rows) else [None] * len(rows)
        return [{**row, "seconds": s} for row, s in zip(rows, seconds)]

    def last_good(self) -> Path | None:
        """The checkpoint a run that stops now can be continued from: this run's ``last.npz``,
        if it has written or resumed from one."""
        return self.last if self._ours and self.last.exists() else None

    def write_metrics(self, summary: Mapping[str, Any]) -> None:
        """The run's summary as ``metrics.json`` (by the ``writer`` alone)."""
        if not self.writer:
            return
        with atomic_write(self.path / "metrics.json") as f:
            f.write(json.dumps(summary, indent=2).encode() + b"\n")
