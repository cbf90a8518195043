"""What a data-parallel trainer calls besides the model wrapper: its slice of each global
batch, metrics summed over the ranks, which rank writes files, and the resume check.

Each works in a plain single-process run too (a world of one), so a trainer calls them
unconditionally. The wiring of a trainer, whole::

    if dist.is_mpi_launched():                       # started by mpiexec or srun
        dist.init_process_group("mpi")
        model = nn.parallel.DistributedDataParallel(model)
    ...
    x, y = dist.shard(x, y)                          # every rank loads the same global batch
    loss = criterion(model(x), y)
    optimizer.zero_grad(); loss.backward()
    model.reduce_gradients()                         # DistributedDataParallel only
    optimizer.step()
    ...
    train_loss = dist.mean_over_ranks(total, seen)   # at the end of the epoch
    nn.parallel.verify_in_sync(model)                # DistributedDataParallel only
    if dist.is_main_process(): save checkpoints, logs and plots
"""

from __future__ import annotations

import numpy as np

from tinymed.distributed.collectives import ReduceOp, all_reduce
from tinymed.distributed.errors import DistError
from tinymed.distributed.process_group import get_rank, get_world_size, is_initialized
from tinymed.tensor import from_numpy


def _rank_and_size() -> tuple[int, int]:
    """This process's rank and the world size; ``(0, 1)`` when no process group was made."""
    return (get_rank(), get_world_size()) if is_initialized() else (0, 1)


def is_main_process() -> bool:
    """Whether this process writes the run's files (checkpoints, logs, plots): rank 0, or the
    only process. The other ranks hold the same parameters; were they to write too, they
    would overwrite each other's files."""
    return _rank_and_size()[0] == 0


def shard(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """This rank's contiguous share of a global batch: rows ``[r*b, (r+1)*b)`` of each
    array, ``b = B / world_size``.

    Every rank's DataLoader, seeded alike, yields the same global batch (augmentation
    included), so the ranks together train on exactly the batches one process would; the
    global batch size must split evenly, or the averaged gradient would weigh the ranks'
    samples unequally."""
    rank, size = _rank_and_size()
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


def mean_over_ranks(total: float, count: float) -> float:
    """``sum(total) / sum(count)`` over the ranks: e.g. the mean training loss of an epoch
    from each rank's summed loss and sample count. Every rank gets the same value."""
    sums = np.array([total, count], dtype=np.float64)
    if is_initialized():
        all_reduce(from_numpy(sums), ReduceOp.SUM)
    return float(sums[0] / sums[1])


def check_resume_world_size(saved_world_size: int, checkpoint: str) -> None:
    """Raise :class:`DistError` unless this run has as many processes as the run that wrote
    ``checkpoint``: each rank's share of every batch depends on the number of processes (and
    with BatchNorm, so do the results), so resuming with another number would not continue
    the same run."""
    size = _rank_and_size()[1]
    if saved_world_size != size:
        raise DistError(
            f"resume: {checkpoint} was written by a run of {saved_world_size} process(es), this run has {size}; "
            f"resume it with {saved_world_size} (mpiexec -n {saved_world_size} ...), "
            "or start a new run"
        )
