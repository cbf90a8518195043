"""tinymed.distributed: processes that train together, on MPI (mirrors ``torch.distributed``).

``mpiexec -n 4 python train.py`` starts four copies of a program; each calls
``init_process_group("mpi")``, learns its rank and the world size, and exchanges tensors
with the others through the collectives (``all_reduce``, ``broadcast``, ``all_gather``,
``barrier``). :class:`tinymed.nn.parallel.DistributedDataParallel` builds data-parallel
training on them; :mod:`tinymed.distributed.training` holds the rest a trainer needs.

MPI comes from mpi4py (``pip install "tinymed[distributed]"`` brings mpi4py and MPICH, with
``mpiexec``; on a cluster, mpi4py built against the site's MPI). Every collective has a
timeout: a rank that died or never calls it gives an error, not a hang.
"""

from tinymed.distributed.collectives import ReduceOp, all_gather, all_reduce, barrier, broadcast
from tinymed.distributed.errors import DistBackendError, DistError
from tinymed.distributed.mpi import is_mpi_launched
from tinymed.distributed.process_group import (
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)
from tinymed.distributed.training import (
    average_over_ranks,
    check_resume_world_size,
    is_main_process,
    launched_process_group,
    mean_over_ranks,
    rank_and_world_size,
    shard,
)

__all__ = [
    "DistBackendError",
    "DistError",
    "ReduceOp",
    "all_gather",
    "all_reduce",
    "average_over_ranks",
    "barrier",
    "broadcast",
    "check_resume_world_size",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_main_process",
    "is_mpi_launched",
    "launched_process_group",
    "mean_over_ranks",
    "rank_and_world_size",
    "shard",
]
