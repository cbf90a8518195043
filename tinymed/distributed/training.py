"""What a data-parallel trainer calls besides the model wrapper: the process group for the
run, its slice of each global batch, metrics averaged over the ranks, which rank writes
files, and the resume check.

Each works in a plain single-process run too (a world of one), so a trainer calls them
unconditionally. The wiring of a trainer, whole::

    with dist.launched_process_group():              # joined when started by mpiexec or srun
        if dist.is_initialized():
            model = nn.parallel.DistributedDataParallel(model)
        ...
        x, y = dist.shard(x, y)                      # every rank loads the same global batch
        loss = criterion(model(x), y)
        value = dist.average_over_ranks({"loss": loss.item()})["loss"]   # the whole batch's
        optimizer.zero_grad(); loss.backward()
        model.reduce_gradients()                     # DistributedDataParallel only
        optimizer.step()
        ...
        nn.parallel.verify_in_sync(model)            # DistributedDataParallel only, each epoch
        if dist.is_main_process(): save checkpoints, logs and plots

(``mean_over_ranks(total, count)`` instead averages sums over shares of any size, e.g. an
epoch's summed loss and sample count, once at its end.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np

from tinymed.distributed.collectives import ReduceOp, all_reduce
from tinymed.distributed.errors import DistError
from tinymed.distributed.mpi import is_mpi_launched
from tinymed.distributed.process_group import (
    default_group,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
)
from tinymed.tensor import from_numpy


@contextmanager
def launched_process_group() -> Iterator[None]:
    """Run the block in the process group of the MPI job that started this process.

    When an MPI launcher (``mpiexec``, ``srun``) started it and no group exists yet, the
    group is made on entry (``init_process_group("mpi")``) and left on exit; otherwise
    (a plain run, or a group the caller made) nothing changes. An exception that leaves the
    block in a world of several processes ends the whole job when this process exits
    (``MPI_Abort``): it may have struck this rank alone (a full disk on rank 0, which alone
    writes), and the other ranks would wait for this one in their next collective until the
    timeout (30 minutes)."""
    made_here = is_mpi_launched() and not is_initialized()
    if made_here:
        init_process_group("mpi")
    try:
        yield
    except BaseException:
        if is_initialized() and get_world_size() > 1:
            default_group("launched_process_group").abort_at_exit()
        raise
    finally:
        if made_here and is_initialized():
            destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the world size; ``(0, 1)`` when no process group was made
    (a plain run is a world of one)."""
    return (get_rank(), get_world_size()) if is_initialized() else (0, 1)


def is_main_process() -> bool:
    """Whether this process writes the run's files (checkpoints, logs, plots): rank 0, or the
    only process. The other ranks hold the same parameters; were they to write too, they
    would overwrite each other's files."""
    return rank_and_world_size()[0] == 0


def shard(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """This rank's contiguous share of a global batch: rows ``[r*b, (r+1)*b)`` of each
    array, ``b = B / world_size``.

    Every rank's DataLoader, seeded alike, yields the same global batch (augmentation
    included), so the ranks together train on exactly the batches one process would; the
    global batch size must split evenly, or the averaged gradient would weigh the ranks'
    samples unequally."""
    rank, size = rank_and_world_size()
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"shard: the arrays must have the same length, got {[len(a) for a in arrays]}")
    if n % size:
        raise DistError(
            f"shard: a global batch of {n} samples does not split evenly across {size} processes; "
            f"use a batch size divisible by {size} (and drop_last=True)"
        )
    per_rank = n // size
    return tuple(a[rank * per_rank : (rank + 1) * per_rank] for a in arrays)


def _sum_over_ranks(values: list[float]) -> np.ndarray:
    """Each of ``values`` summed over the ranks, in one all-reduce (float64)."""
    sums = np.array(values, dtype=np.float64)
    if is_initialized():
        all_reduce(from_numpy(sums), ReduceOp.SUM)
    return sums


def mean_over_ranks(total: float, count: float) -> float:
    """``sum(total) / sum(count)`` over the ranks: e.g. the mean training loss of an epoch
    from each rank's summed loss and sample count. Every rank gets the same value."""
    total_sum, count_sum = _sum_over_ranks([total, count])
    return float(total_sum / count_sum)


def average_over_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Each of ``values`` (name to number) averaged over the p ranks, ``(1/p) sum_r v_r``, in
    one all-reduce; every rank gets the same dict. For means over equal shares of a global
    batch (a step's loss, a mean probability) that is the mean one process computes on the
    whole batch, so every rank sees, logs and checks the same numbers."""
    sums = _sum_over_ranks(list(values.values()))
    size = rank_and_world_size()[1]
    return {name: float(total / size) for name, total in zip(values, sums)}


def check_resume_world_size(saved_world_size: int, checkpoint: str) -> None:
    """Raise :class:`DistError` unless this run has as many processes as the run that wrote
    ``checkpoint``: each rank's share of every batch depends on the number of processes (and
    with BatchNorm, so do the results), so resuming with another number would not continue
    the same run."""
    size = rank_and_world_size()[1]
    if saved_world_size != size:
        raise DistError(
            f"resume: {checkpoint} was written by a run of {saved_world_size} process(es), this run has {size}; "
            f"resume it with {saved_world_size} (mpiexec -n {saved_world_size} ...), "
            "or start a new run"
        )
