"""A few training steps of LeNet, data-parallel under ``mpiexec -n 2``, or in one process
when started without mpiexec; saves the final parameters (rank 0) to the path given.

Wired as a trainer is (see tinymed.distributed.training): every rank draws the same global
batches and trains on its share. Each step accumulates two micro-batches, the first under
no_sync(), so the run checks gradient accumulation as well. Rank 1 starts from other
weights than rank 0, which the wrapper's broadcast must replace. Under mpiexec it then
checks the other guarantees of DistributedDataParallel: verify_in_sync, parameters with no
gradient on some rank, and BatchNorm buffers.
"""

import contextlib
import sys

import numpy as np

import tinymed
import tinymed.distributed as dist
import tinymed.functional as F
from tinymed import nn, optim
from tinymed.models import LeNet
from tinymed.nn.parallel import DistributedDataParallel, verify_in_sync

STEPS, GLOBAL_BATCH, MICRO_BATCHES = 3, 8, 2


def global_batches():
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        yield rng.standard_normal((GLOBAL_BATCH, 1, 28, 28)).astype(np.float32), rng.integers(0, 2, GLOBAL_BATCH)


def train(model, distributed):
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in global_batches():
        x, y = dist.shard(x, y)
        optimizer.zero_grad()
        micro = len(y) // MICRO_BATCHES
        for i in range(MICRO_BATCHES):
            last = i == MICRO_BATCHES - 1
            accumulate = model.no_sync() if distributed and not last else contextlib.nullcontext()
            with accumulate:
                part = slice(i * micro, (i + 1) * micro)
                loss = F.cross_entropy(model(tinymed.from_numpy(x[part])), tinymed.from_numpy(y[part]))
                (loss / MICRO_BATCHES).backward()
                if distributed:
                    model.reduce_gradients()
        optimizer.step()


def check_drift_is_caught(model, rank):
    verify_in_sync(model)
    weight = model.module.fc3.bias
    saved = weight.numpy().copy()
    if rank == 1:
        weight.data[0] += 1e-3
    try:
        verify_in_sync(model)
    except dist.DistError as e:
        assert "fc3.bias" in str(e) and "conv1.weight" not in str(e), e
    else:
        raise AssertionError("verify_in_sync missed a drifted parameter")
    with tinymed.no_grad():  # a parameter that requires grad is written outside the graph, as in PyTorch
        weight.copy_(saved)


def check_missing_gradients(rank):
    """Rank 1 runs no backward: its gradients count as zeros; `unused` gets none anywhere."""
    layer = nn.Linear(3, 1)
    layer.unused = nn.Parameter(tinymed.zeros(2))
    model = DistributedDataParallel(layer)
    if rank == 0:
        layer(tinymed.ones(1, 3)).sum().backward()
    model.reduce_gradients()
    assert layer.unused.grad is None
    np.testing.assert_array_equal(np.asarray(layer.weight.grad), np.full((1, 3), 0.5, np.float32))
    np.testing.assert_array_equal(np.asarray(layer.bias.grad), np.full(1, 0.5, np.float32))


def check_batchnorm_buffers(rank):
    """Each rank updates its own running statistics; the next forward starts from rank 0's."""
    model = DistributedDataParallel(nn.BatchNorm2d(2))
    model(tinymed.full((4, 2, 3, 3), float(rank)) + tinymed.randn(4, 2, 3, 3))
    means = [tinymed.zeros(2) for _ in range(2)]
    dist.all_gather(means, model.module.running_mean)
    assert not np.array_equal(means[0].numpy(), means[1].numpy()), "each rank should keep its own statistics"
    model.eval()
    model(tinymed.zeros(1, 2, 3, 3))
    dist.all_gather(means, model.module.running_mean)
    np.testing.assert_array_equal(means[0].numpy(), means[1].numpy())


def main(out):
    distributed = dist.is_mpi_launched()
    if distributed:
        dist.init_process_group("mpi", world_size=2)
    rank = dist.get_rank() if distributed else 0
    tinymed.manual_seed(rank)
    model = LeNet()
    if distributed:
        model = DistributedDataParallel(model)
    train(model, distributed)
    if distributed:
        check_drift_is_caught(model, rank)
        check_missing_gradients(rank)
        check_batchnorm_buffers(rank)
    if dist.is_main_process():
        np.savez(out, **model.state_dict())
    print(f"rank {rank}: ddp_lenet ok")


if __name__ == "__main__":
    main(sys.argv[1])
