"""The collectives: ``all_reduce``, ``broadcast``, ``all_gather`` and ``barrier``, with
``torch.distributed``'s names and arguments.

A collective is called by every rank, in the same order, with tensors of the same shape
and dtype; it changes the tensors in place. With ``x_r`` rank r's tensor and p ranks:

* ``all_reduce(x, op)``: every rank ends with ``op(x_0, ..., x_{p-1})`` elementwise
  (``ReduceOp.SUM``, ``PRODUCT``, ``MIN``, ``MAX``, or ``AVG``, the sum divided by p);
* ``broadcast(x, src)``: every rank ends with ``x_src``;
* ``all_gather(xs, x)``: on every rank ``xs[r]`` becomes ``x_r``;
* ``barrier()``: returns on each rank once every rank has called it.

How a tensor travels: a NumPy array goes to MPI as a buffer, memory MPI reads and writes
directly (no pickling, and no copy at all when it is contiguous); a tensor on a GPU backend
is copied to the host, sent, and copied back.

Before any data moves, the ranks swap a few integers saying which collective each called,
with which dtype and shape (one small all-gather). MPI would otherwise reduce mismatched
buffers into garbage or wait for ever; here every rank raises the same :class:`DistError`
naming what each rank passed. ``barrier()`` is exactly that exchange.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

from tinymed.autograd import no_grad
from tinymed.distributed.errors import DistError
from tinymed.distributed.process_group import ProcessGroup, default_group
from tinymed.tensor import Tensor


class ReduceOp(Enum):
    """How ``all_reduce`` combines the ranks' tensors, elementwise."""

    SUM = "SUM"
    PRODUCT = "PRODUCT"
    MIN = "MIN"
    MAX = "MAX"
    AVG = "AVG"  # MPI has no average: the sum, divided by the world size


# MPI's name for each reduction.
_MPI_OPS = {"SUM": "SUM", "PRODUCT": "PROD", "MIN": "MIN", "MAX": "MAX", "AVG": "SUM"}

# The element types MPI has standard types for, and the collectives, numbered for the
# signature the ranks swap.
DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.uint8))
_KINDS = ("barrier", "all_reduce", "broadcast", "all_gather")
_OPS = tuple(ReduceOp)
_SIGNATURE_DIMS = 8  # dims beyond the 8th are compared through the element count


def _signature(kind: str, argument: int = 0, array: np.ndarray | None = None) -> np.ndarray:
    """``[collective, its argument, dtype, ndim, size, dim 0, ..., dim 7]`` as int64."""
    if array is None:
        return np.array([_KINDS.index(kind), argument, -1, 0, 0] + [-1] * _SIGNATURE_DIMS, dtype=np.int64)
    dims = list(array.shape[:_SIGNATURE_DIMS]) + [-1] * (_SIGNATURE_DIMS - min(array.ndim, _SIGNATURE_DIMS))
    return np.array(
        [_KINDS.index(kind), argument, DTYPES.index(array.dtype), array.ndim, array.size] + dims, dtype=np.int64
    )


def _describe(signature: np.ndarray) -> str:
    """A signature as the call it stands for, e.g. ``all_reduce(op=SUM) of float32 (3, 4)``."""
    kind, argument, dtype, ndim, size = (int(v) for v in signature[:5])
    name = _KINDS[kind]
    if name == "barrier":
        return "barrier()"
    shape = tuple(int(d) for d in signature[5 : 5 + min(ndim, _SIGNATURE_DIMS)])
    shape_text = (
        str(shape) if ndim <= _SIGNATURE_DIMS else f"({', '.join(map(str, shape))}, ...) ({ndim} dims, {size} elements)"
    )
    argument_text = {"all_reduce": f"op={_OPS[argument].name}", "broadcast": f"src={argument}"}.get(name, "")
    return f"{name}({argument_text}) of {DTYPES[dtype]} {shape_text}"


def _ranks_text(ranks: list[int]) -> str:
    shown = ", ".join(str(r) for r in ranks[:8])
    more = f" and {len(ranks) - 8} more" if len(ranks) > 8 else ""
    return f"rank{'s' if len(ranks) > 1 else ''} {shown}{more}"


def _agree(group: ProcessGroup, op: str, signature: np.ndarray) -> None:
    """Swap signatures; raise the same :class:`DistError` on every rank if they differ."""
    table = np.empty((group.size, signature.size), dtype=np.int64)
    group.run(lambda: group.comm.Iallgather(signature, table), op, _describe(signature))
    if (table == table[0]).all():
        return
    calls: dict[str, list[int]] = {}
    for rank, row in enumerate(table):
        calls.setdefault(_describe(row), []).append(rank)
    listed = "; ".join(f"{_ranks_text(ranks)}: {call}" for call, ranks in calls.items())
    raise DistError(
        f"{op}: the ranks' calls do not match ({listed}); every rank must make the same collective calls "
        "in the same order, with tensors of the same shape and dtype"
    )


def _host_buffer(op: str, tensor: Tensor) -> np.ndarray:
    """The tensor's elements as a contiguous, writable NumPy array: its own memory when it
    is one already, else a copy (a GPU tensor's host copy)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{op}: expected a tinymed.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in DTYPES:
        raise DistError(
            f"{op}: dtype {tensor.dtype} has no MPI type here; use one of {', '.join(str(d) for d in DTYPES)}"
        )
    return np.require(tensor.numpy(), requirements="CW")


def _store(tensor: Tensor, buffer: np.ndarray) -> None:
    """Put the received elements into ``tensor`` unless MPI wrote them there already, and count
    the write on its version. Collectives write outside autograd, as an optimiser does."""
    if buffer is tensor.array:
        tensor.increment_version()
        return
    with no_grad():
        tensor.copy_(buffer)


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM) -> None:
    """Replace ``tensor`` on every rank by ``op`` over all ranks' tensors, elementwise
    (same shape and dtype on every rank; ``AVG`` needs floating point)."""
    name = "all_reduce"
    group = default_group(name)
    buffer = _host_buffer(name, tensor)
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{name}: op must be a ReduceOp ({', '.join(o.name for o in ReduceOp)}), got {op!r}")
    if op is ReduceOp.AVG and buffer.dtype.kind != "f":
        raise DistError(f"{name}: ReduceOp.AVG needs a floating-point tensor, got {buffer.dtype}")
    signature = _signature(name, _OPS.index(op), buffer)
    _agree(group, name, signature)
    mpi_op = getattr(group.mpi, _MPI_OPS[op.name])
    group.run(lambda: group.comm.Iallreduce(group.mpi.IN_PLACE, buffer, op=mpi_op), name, _describe(signature))
    if op is ReduceOp.AVG:
        buffer /= group.size
    _store(tensor, buffer)


def broadcast(tensor: Tensor, src: int) -> None:
    """Copy rank ``src``'s ``tensor`` into every rank's (same shape and dtype everywhere)."""
    name = "broadcast"
    group = default_group(name)
    buffer = _host_buffer(name, tensor)
    if not 0 <= src < group.size:
        raise DistError(f"{name}: src={src} is not a rank of this world of {group.size} process(es)")
    signature = _signature(name, src, buffer)
    _agree(group, name, signature)
    group.run(lambda: group.comm.Ibcast(buffer, root=src), name, _describe(signature))
    _store(tensor, buffer)


def all_gather(tensor_list: Sequence[Tensor], tensor: Tensor) -> None:
    """Fill ``tensor_list[r]`` with rank r's ``tensor``, on every rank. ``tensor_list`` holds
    ``world_size`` tensors of ``tensor``'s shape and dtype."""
    name = "all_gather"
    group = default_group(name)
    buffer = _host_buffer(name, tensor)
    if len(tensor_list) != group.size:
        raise DistError(f"{name}: tensor_list must hold world_size={group.size} tensors, got {len(tensor_list)}")
    for i, out in enumerate(tensor_list):
        if not isinstance(out, Tensor) or out.shape != buffer.shape or out.dtype != buffer.dtype:
            got = f"{out.dtype} {out.shape}" if isinstance(out, Tensor) else type(out).__name__
            raise DistError(
                f"{name}: tensor_list[{i}] must be a {buffer.dtype} tensor of shape {buffer.shape}, got {got}"
            )
    signature = _signature(name, 0, buffer)
    _agree(group, name, signature)
    gathered = np.empty((group.size, *buffer.shape), dtype=buffer.dtype)
    group.run(lambda: group.comm.Iallgather(buffer, gathered), name, _describe(signature))
    for out, part in zip(tensor_list, gathered):
        _store(out, part)


def barrier() -> None:
    """Return once every rank has called ``barrier()`` (or raise on a mismatch or timeout)."""
    _agree(default_group("barrier"), "barrier", _signature("barrier"))
