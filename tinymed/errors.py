"""tinymed's error types: every failure a user can cause is a :class:`TinymedError`.

The ``tinymed`` command prints a TinymedError's message alone, on one line, after
``tinymed: error:``, so each message says what went wrong, with which file, option or shape,
and what to do instead. Each subclass also derives from the built-in type that Python code
would expect for its failure (a bad data file is a ``ValueError``), so ``except ValueError``
written before these types existed still catches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

__all__ = [
    "TinymedError",
    "DatasetError",
    "CheckpointError",
    "TrainingError",
    "ModelError",
    "RepairError",
    "OutputError",
    "SerializationError",
    "not_in_tinymed",
]


class TinymedError(Exception):
    """A failure the user can fix: its message is one line that says how."""

    #: The status the ``tinymed`` command exits with after printing the message.
    exit_status = 1


class DatasetError(TinymedError, ValueError):
    """A data set cannot be used: unknown name, missing, malformed or unsuitable file, failed download."""


class CheckpointError(TinymedError, ValueError):
    """A checkpoint cannot be used: missing, corrupted, malformed metadata, or of another kind or model."""


class TrainingError(TinymedError, RuntimeError):
    """Training cannot go on: an option out of range, a loss that diverged, a run directory in
    use or holding another run, or a resume that does not match its run."""


class ModelError(TinymedError, ValueError):
    """A model cannot be built: an unknown name or a config its constructor refuses."""


class RepairError(TinymedError, ValueError):
    """A repair cannot be done: a mask that leaves nothing known, or nothing missing."""


class OutputError(TinymedError, ValueError):
    """An output path cannot be written: a directory, under a file, not writable, or one of the
    command's own inputs or another run's checkpoint, which writing would destroy."""


class SerializationError(TinymedError, ValueError):
    """A file cannot be read by ``tinymed.load`` or as a checkpoint: not an archive of arrays,
    sizes that do not add up, another format or version, or a layout its arrays do not match;
    also an object two of whose arrays ``tinymed.save`` would store under one name."""


def not_in_tinymed(module: str) -> Callable[[str], NoReturn]:
    """A module ``__getattr__``: asked for a name it does not hold (``tm.gather``,
    ``nn.Conv1d``), the module says that tinymed has not got it, rather than Python's bare
    "has no attribute", which reads like a typo."""

    def __getattr__(name: str) -> NoReturn:
        if name.startswith("__"):  # Python's own probes (__path__, __wrapped__, ...)
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        raise AttributeError(
            f"module {module!r} has no attribute {name!r}: tinymed implements the part of PyTorch's API "
            "that the course uses, listed in the README's section 'Porting code between PyTorch and tinymed'"
        )

    return __getattr__
