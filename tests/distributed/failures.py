"""Ways a distributed run goes wrong, each of which must end in an error, not a hang.
``python failures.py MODE``:

no-launcher   init_process_group(world_size=2) in a process mpiexec did not start;
rank-exits    (mpiexec -n 2) rank 1 quits after the first all-reduce; rank 0's next
              all-reduce times out after 2 s, later collectives refuse at once, and when
              rank 0 exits the job is aborted rather than left waiting in MPI_Finalize;
rank-raises   (mpiexec -n 2) rank 1 raises; the job is aborted at once, long before the
              60 s timeout;
rank-killed   (mpiexec -n 2) rank 1 is killed by SIGKILL; mpiexec ends the job.
"""

import os
import signal
import sys
from datetime import timedelta

import tinymed
import tinymed.distributed as dist


def main(mode):
    if mode == "no-launcher":
        dist.init_process_group("mpi", world_size=2)
        raise AssertionError("init_process_group accepted a world of 1 for world_size=2")
    timeout = timedelta(seconds=2 if mode == "rank-exits" else 60)
    dist.init_process_group("mpi", timeout=timeout, world_size=2)
    rank = dist.get_rank()
    t = tinymed.ones(3)
    dist.all_reduce(t)
    if rank == 1:
        if mode == "rank-exits":
            sys.exit(0)
        if mode == "rank-raises":
            raise RuntimeError("rank 1 fails mid-run")
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        dist.all_reduce(t)
    except dist.DistBackendError as e:
        print(f"rank {rank} caught: {e}", flush=True)
    try:
        dist.barrier()
    except dist.DistBackendError as e:
        print(f"rank {rank} then: {e}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
