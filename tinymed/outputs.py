"""Where and how tinymed writes its outputs: checking a path before any work, writing a file
so that it appears complete or not at all with the mode the umask gives, and removing what
writers killed mid-write left behind.

:func:`check_output` refuses, before a command starts its work, an output path that is a
directory where a file is wanted (or a file where a directory is), that lies under a file or
in a directory this process cannot write, or that is one of the command's own inputs, which
writing would destroy.

:func:`atomic_write` writes to ``.NAME.PID.XXXXXXXX.part`` beside the target, flushes it to
disk and renames it over the target. ``os.replace`` is atomic on one file system, so a process
killed mid-write (SIGKILL, a full disk) leaves the previous file whole, and at worst a
``.part`` file. The writer's pid in that name lets :func:`remove_abandoned_parts` tell the
``.part`` files of dead writers, which it deletes, from one being written now.

``tempfile.mkstemp`` creates files only their owner can read (0600); before the rename the
file gets the mode ``open()`` would have given it (0666 less the umask), so a checkpoint on a
course's shared data root is as readable as every other file written there.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tinymed.errors import OutputError

__all__ = ["check_output", "process_alive", "umask_mode", "atomic_write", "remove_abandoned_parts"]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output(
    path: str | os.PathLike, what: str, inputs: Iterable[str | os.PathLike] = (), directory: bool = False
) -> Path:
    """Return ``path`` if a file (``directory``: a directory) can be written there, else raise
    an OutputError naming ``what`` it is for (``"--json"``) and why not; ``inputs`` are the
    files the command reads, none of which it may replace."""
    path = Path(path)
    wanted = "a directory" if directory else "a file"
    if path.exists() and path.is_dir() != directory:
        raise OutputError(f"{what} {path} is {'a file' if directory else 'a directory'}; it must be {wanted}")
    for source in inputs:
        if path.exists() and _same_file(path, Path(source)):
            raise OutputError(f"{what} {path} is this command's input {source}; writing it would destroy it")
    parent = path if directory else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{what} {path} lies under {parent}, which is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} cannot be written: the directory {parent} is not writable")
    return path


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def umask_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask."""
    # The umask can only be read by setting it; it is put back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_write(path) as f: f.write(...)``: the bytes appear at ``path`` when the
    block ends without an exception, complete and with the umask's mode, or not at all."""
    path = Path(path)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(partial, umask_mode())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def remove_abandoned_parts(directory: str | os.PathLike, name: str) -> list[Path]:
    """Delete the ``.part`` files :func:`atomic_write` left for ``directory/name`` whose writer
    is no longer running (also those of older tinymed versions, which named no pid); returns
    them."""
    removed = []
    for part in Path(directory).glob(f".{glob.escape(name)}.*.part"):
        pid = part.name[len(name) + 2 :].split(".")[0]
        if not (pid.isdigit() and process_alive(int(pid))):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed
