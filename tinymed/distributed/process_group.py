"""The default process group: this process's rank among the world's processes, and the
timeout and failure handling every collective shares.

``mpiexec -n 2 python train.py`` starts two copies; each calls
``init_process_group("mpi")`` and learns its rank (0 or 1) and the world size (2) from MPI.

MPI has no timeouts of its own: a blocking collective waits for ever for a rank that died
or never calls it. So every collective here starts MPI's nonblocking form and polls it
(:meth:`ProcessGroup.wait`) until it finishes or the timeout passes. When it does not
finish, the job cannot go on (MPI cannot cancel a collective that is under way), so the
waiting rank raises :class:`DistBackendError` and, when the process exits, aborts the whole
job with ``MPI_Abort`` rather than hang in ``MPI_Finalize`` waiting for the missing rank.
An uncaught exception on any rank aborts the job at once, for the same reason: its peers
would otherwise wait for it until their timeout (mpi4py's ``python -m mpi4py`` does the
same). Before aborting, a rank flushes its output and waits :data:`ABORT_GRACE_S`: ``MPI_Abort``
ends the launcher's processes too, including those that carry each rank's output to the
terminal, and without the pause the traceback or last message that says why can be lost
(seen: a rank's traceback missing from ``mpiexec``'s output).
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType, TracebackType
from typing import Any

from tinymed.distributed.errors import DistBackendError, DistError
from tinymed.distributed.mpi import LAUNCHER_VARIABLES, is_mpi4py_installed, is_mpi_launched, load_mpi

# PyTorch's default for its CPU backends.
DEFAULT_TIMEOUT = timedelta(minutes=30)

# MPI moves a nonblocking collective forward only inside calls such as Test: while a rank
# sleeps between polls, its part of the collective stands still. So a wait first polls
# without sleeping for _SPIN_S, yielding the core between polls (in case the ranks outnumber
# the cores): a gradient all-reduce between two processes on one machine finishes in about
# a millisecond (1.5 MB: 0.6 ms spinning, 3.8 ms with the back-off alone). Only a longer wait
# (a rank writing a checkpoint, a slow peer) backs off to sleeps, so it leaves the cores to
# the others.
_SPIN_S = 0.05
_FIRST_PAUSE_S = 1e-5
_LONGEST_PAUSE_S = 1e-3


@dataclass
class ProcessGroup:
    """The processes of one MPI job, as this process sees them.

    ``comm`` is a duplicate of ``MPI.COMM_WORLD``, so tinymed's messages never mix with the
    program's own MPI calls."""

    mpi: ModuleType
    comm: Any
    rank: int
    size: int
    timeout: timedelta
    failed: bool = False

    def run(self, start: Callable[[], Any], op: str, what: str) -> None:
        """Start a nonblocking MPI operation (``start()`` returns its request) and wait for it."""
        if self.failed:
            raise DistBackendError(f"{op}: an earlier collective failed on rank {self.rank}; this job cannot go on")
        self.wait(start(), op, what)

    def wait(self, request: Any, op: str, what: str) -> None:
        """Poll a nonblocking MPI ``request`` until it completes (spinning, then sleeping: see
        ``_SPIN_S``); after ``timeout``, give up and raise :class:`DistBackendError` naming
        ``op``, this rank and ``what`` was sent."""
        start = time.monotonic()
        deadline = start + self.timeout.total_seconds()
        pause = _FIRST_PAUSE_S
        while not request.Test():
            now = time.monotonic()
            if now - start < _SPIN_S:
                os.sched_yield()
                continue
            if now > deadline:
                raise self.fail(
                    f"{op}: rank {self.rank} of {self.size} waited {self.timeout.total_seconds():g} s for the other "
                    f"ranks ({what}) and gave up: a rank has died, is stuck, or did not call {op}; "
                    "the job is aborted when this process exits"
                )
            time.sleep(pause)
            pause = min(2 * pause, _LONGEST_PAUSE_S)

    def fail(self, message: str) -> DistBackendError:
        """Mark the group unusable and arrange for the job to be aborted at exit; returns the
        error to raise."""
        self.abort_at_exit()
        return DistBackendError(message)

    def abort_at_exit(self) -> None:
        """Mark the group unusable and end every rank of the job with ``MPI_Abort`` when this
        process exits (registered once)."""
        if not self.failed:
            self.failed = True
            atexit.register(_abort_job, self.mpi)


_group: ProcessGroup | None = None
_previous_excepthook: Any = None

# Seconds a failing rank waits between flushing its output and MPI_Abort (see the module docstring).
ABORT_GRACE_S = 1.0


def _abort_job(mpi: ModuleType) -> None:
    """End every rank of the job, once this rank's output has had time to reach the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_S)
    mpi.COMM_WORLD.Abort(1)


def _abort_on_uncaught_exception(
    exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    """Print the traceback as usual, then end every rank of the job."""
    _previous_excepthook(exc_type, exc, traceback)
    if _group is not None:
        _abort_job(_group.mpi)


def init_process_group(
    backend: str | None = "mpi", timeout: timedelta | None = None, world_size: int = -1, rank: int = -1
) -> None:
    """Join the job's other processes (``torch.distributed.init_process_group``).

    The rank and world size come from MPI, i.e. from the launcher (``mpiexec -n N``,
    ``srun``); ``world_size`` and ``rank``, when given, are checked against them, which
    catches copies started without a launcher (each is then a world of one). ``timeout``
    (default 30 minutes, as PyTorch) bounds every collective, this one included."""
    global _group, _previous_excepthook
    op = "init_process_group"
    if backend not in (None, "mpi"):
        raise DistError(f"{op}: tinymed's only backend is 'mpi', got backend={backend!r}")
    if _group is not None:
        raise DistError(f"{op}: the default process group is already initialized (destroy_process_group() ends it)")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
        raise ValueError(f"{op}: timeout must be a positive datetime.timedelta, got {timeout!r}")
    MPI = load_mpi(op)
    world = MPI.COMM_WORLD
    if world_size not in (-1, world.size):
        alone = (
            ""
            if is_mpi_launched()
            else (
                f"; this process was started without an MPI launcher (none of {', '.join(LAUNCHER_VARIABLES)} "
                "is set), so it is a world of 1 however many copies run: start them together with "
                f"mpiexec -n {world_size} python ..."
            )
        )
        raise DistError(f"{op}: world_size={world_size} was asked for, but MPI started {world.size} process(es){alone}")
    if rank not in (-1, world.rank):
        raise DistError(f"{op}: rank={rank} was asked for, but MPI made this process rank {world.rank}")
    comm, request = world.Idup()
    group = ProcessGroup(MPI, comm, world.rank, world.size, timeout)
    group.wait(request, op, f"a world of {world.size}")
    _group = group
    if group.size > 1:
        _previous_excepthook, sys.excepthook = sys.excepthook, _abort_on_uncaught_exception


def destroy_process_group() -> None:
    """Leave the process group (MPI itself stays initialised until the program ends, so
    ``init_process_group`` may be called again)."""
    global _group, _previous_excepthook
    group = default_group("destroy_process_group")
    if not group.failed:  # a failed group may still have a collective pending on its communicator
        group.comm.Free()
    if _previous_excepthook is not None:
        sys.excepthook, _previous_excepthook = _previous_excepthook, None
    _group = None


def default_group(op: str) -> ProcessGroup:
    """The initialized process group, or a :class:`DistError` naming ``op``."""
    if _group is None:
        raise DistError(f"{op}: the default process group has not been initialized; call init_process_group() first")
    return _group


def is_available() -> bool:
    """Whether the MPI backend can be used: mpi4py is installed."""
    return is_mpi4py_installed()


def is_initialized() -> bool:
    """Whether :func:`init_process_group` has been called (and not undone)."""
    return _group is not None


def get_rank() -> int:
    """This process's rank, 0 to ``world_size - 1``."""
    return default_group("get_rank").rank


def get_world_size() -> int:
    """The number of processes in the job."""
    return default_group("get_world_size").size
