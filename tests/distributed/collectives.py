"""The collectives of tinymed.distributed, run by ``mpiexec -n 2``: every op on float32,
float64 and int64 tensors of several shapes (a scalar, empty, odd-sized, 2-D, and a
non-contiguous view), the errors for calls that do not match across ranks, and the
trainer helpers. Any failed check ends the job with a traceback (and a non-zero status)."""

import numpy as np

import tinymed
import tinymed.distributed as dist
from tinymed.distributed import DistError, ReduceOp

SHAPES = [(), (0,), (7,), (3, 5)]
DTYPES = [np.float32, np.float64, np.int64]


def values(rank, shape, dtype):
    """Rank r's tensor: small positive whole numbers (exact in every dtype), rank-dependent."""
    return (np.arange(int(np.prod(shape))).reshape(shape) % 5 + 1 + rank).astype(dtype)


def expect_error(call, *fragments):
    try:
        call()
    except DistError as e:
        assert all(f in str(e) for f in fragments), (str(e), fragments)
    else:
        raise AssertionError(f"no DistError; expected one mentioning {fragments}")


def check_ops(rank, size):
    for dtype in DTYPES:
        for shape in SHAPES:
            mine = values(rank, shape, dtype)
            everyone = [values(r, shape, dtype) for r in range(size)]
            expected = {
                ReduceOp.SUM: sum(everyone),
                ReduceOp.PRODUCT: np.prod(everyone, axis=0),
                ReduceOp.MIN: np.min(everyone, axis=0),
                ReduceOp.MAX: np.max(everyone, axis=0),
            }
            if np.dtype(dtype).kind == "f":
                expected[ReduceOp.AVG] = sum(everyone) / size
            for op, result in expected.items():
                t = tinymed.tensor(mine)
                dist.all_reduce(t, op)
                assert t.dtype == np.dtype(dtype), (op, t.dtype)
                np.testing.assert_array_equal(t.numpy(), result.astype(dtype), err_msg=f"{op} {dtype} {shape}")
            for src in range(size):
                t = tinymed.tensor(mine)
                dist.broadcast(t, src)
                np.testing.assert_array_equal(t.numpy(), everyone[src])
            gathered = [tinymed.zeros(*shape, dtype=dtype) for _ in range(size)]
            dist.all_gather(gathered, tinymed.tensor(mine))
            for got, want in zip(gathered, everyone):
                np.testing.assert_array_equal(got.numpy(), want)


def check_non_contiguous(rank, size):
    base = tinymed.tensor(values(rank, (3, 5), np.float32))
    view = base.transpose(0, 1)
    dist.all_reduce(view)
    total = sum(values(r, (3, 5), np.float32) for r in range(size))
    np.testing.assert_array_equal(view.numpy(), total.T)


def check_mismatches(rank):
    expect_error(
        lambda: dist.all_reduce(tinymed.zeros(3 + rank)),
        "all_reduce",
        "rank 0: all_reduce(op=SUM) of float32 (3,)",
        "rank 1: all_reduce(op=SUM) of float32 (4,)",
    )
    dtype = [np.float32, np.float64][rank]
    expect_error(lambda: dist.broadcast(tinymed.zeros(2, dtype=dtype), 0), "of float32 (2,)", "of float64 (2,)")
    mismatched = [lambda: dist.all_reduce(tinymed.zeros(2)), lambda: dist.broadcast(tinymed.zeros(2), 0)][rank]
    expect_error(mismatched, "rank 0: all_reduce(op=SUM)", "rank 1: broadcast(src=0)")
    many_dims = tinymed.zeros(*[1] * 8, 1 + rank)  # beyond 8 dims, the element count tells them apart
    expect_error(lambda: dist.all_reduce(many_dims), "(9 dims, 1 elements)", "(9 dims, 2 elements)")
    expect_error(lambda: dist.broadcast(tinymed.zeros(2), 2), "src=2 is not a rank")
    expect_error(lambda: dist.all_reduce(tinymed.zeros(2, dtype=np.int64), ReduceOp.AVG), "AVG needs a floating-point")
    expect_error(lambda: dist.all_gather([tinymed.zeros(2)], tinymed.zeros(2)), "world_size=2 tensors, got 1")
    expect_error(lambda: dist.all_reduce(tinymed.zeros(2, dtype=np.float16)), "float16 has no MPI type")


def check_training_helpers(rank, size):
    assert dist.is_main_process() == (rank == 0)
    x, y = dist.shard(np.arange(8).reshape(4, 2), np.arange(4))
    np.testing.assert_array_equal(y, [2 * rank, 2 * rank + 1])
    np.testing.assert_array_equal(x, np.arange(8).reshape(4, 2)[2 * rank : 2 * rank + 2])
    expect_error(lambda: dist.shard(np.arange(5)), "5 samples does not split evenly across 2 processes")
    assert dist.mean_over_ranks(total=rank + 1.0, count=1 + rank) == 1.0
    assert dist.mean_over_ranks(total=3.0 * rank, count=1) == 1.5
    assert dist.average_over_ranks({"loss": 3.0 * rank, "p": 0.25 + rank / 2}) == {"loss": 1.5, "p": 0.5}
    assert dist.rank_and_world_size() == (rank, size)
    dist.check_resume_world_size(size, "last.npz")
    expect_error(
        lambda: dist.check_resume_world_size(1, "last.npz"), "last.npz was written by a run of 1", "this run has 2"
    )


def main():
    dist.init_process_group("mpi", world_size=2)
    rank, size = dist.get_rank(), dist.get_world_size()
    check_ops(rank, size)
    check_non_contiguous(rank, size)
    check_mismatches(rank)
    check_training_helpers(rank, size)
    dist.barrier()
    dist.destroy_process_group()
    assert not dist.is_initialized()
    print(f"rank {rank}: collectives ok")


if __name__ == "__main__":
    main()
