"""DistributedDataParallel: one model trained by every rank of a process group, each rank on
its own share of every batch (mirrors ``torch.nn.parallel.DistributedDataParallel``).

Every rank holds a whole copy of the model. The copies start equal (rank 0's parameters
are broadcast when the wrapper is made) and stay equal if every rank applies the same
update. That update is the single-process one: a global batch of B = p * b samples split
across p ranks has, for the mean loss,

    grad (1/B) sum_{i in batch} l_i  =  (1/p) sum_{ranks r} grad (1/b) sum_{i in r's share} l_i

so averaging the ranks' gradients (all-reduce, then divide by p) gives every rank the
gradient one process would compute on the whole batch, up to float round-off.

When the average happens is explicit here. PyTorch's DDP does it inside ``backward()``,
from hooks that fire as each gradient is ready, overlapping the communication with the
rest of the backward pass; tinymed's autograd engine has no such hooks, so a training step
says it, after ``backward()`` and before ``step()``::

    loss = F.cross_entropy(ddp_model(x), y)
    optimizer.zero_grad()
    loss.backward()
    ddp_model.reduce_gradients()    # the line PyTorch code does not have
    optimizer.step()

A step that leaves it out lets the ranks drift apart, and :func:`verify_in_sync` (run at
the end of each epoch) says so.

Buckets: an all-reduce per parameter would pay the network's latency once per parameter,
so the gradients are copied into flat buckets of at most ``bucket_cap_mb`` megabytes, one
all-reduce each (MedCNN's 0.6 MB of float32 gradients make one bucket).

BatchNorm, as in PyTorch's DDP: each rank normalises with its own share's statistics and
updates its own running statistics; with ``broadcast_buffers`` rank 0's buffers are copied
to every rank at the start of each forward, so every rank evaluates alike. (PyTorch's
SyncBatchNorm, statistics over the global batch, is not implemented.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tinymed.autograd import no_grad
from tinymed.creation import zeros_like
from tinymed.distributed.collectives import ReduceOp, all_reduce, broadcast
from tinymed.distributed.errors import DistError
from tinymed.distributed.process_group import get_world_size, is_initialized
from tinymed.nn.module import IncompatibleKeys, Module
from tinymed.nn.parameter import Parameter
from tinymed.tensor import Tensor, from_numpy


def _gradient(param: Parameter, create: bool = False) -> Tensor | None:
    """``param.grad``; ``None`` when backward gave it none, unless ``create`` (then zeros are
    stored first)."""
    if param.grad is None and create:
        param.grad = zeros_like(param)
    return param.grad


def _buckets(tensors: Sequence[Tensor], cap_bytes: float) -> list[list[Tensor]]:
    """The tensors grouped by dtype (a flat buffer has one), in order, each group cut into
    buckets of at most ``cap_bytes`` (a larger tensor gets a bucket of its own)."""
    buckets: list[list[Tensor]] = []
    for dtype in dict.fromkeys(t.dtype for t in tensors):
        size = 0
        for t in (t for t in tensors if t.dtype == dtype):
            nbytes = t.numel() * dtype.itemsize
            if not buckets or buckets[-1][0].dtype != dtype or size + nbytes > cap_bytes:
                buckets.append([])
                size = 0
            buckets[-1].append(t)
            size += nbytes
    return buckets


def _pieces(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> Iterator[np.ndarray]:
    """Consecutive views of ``flat`` with the given shapes."""
    start = 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        yield flat[start : start + size].reshape(shape)
        start += size


def _flatten(arrays: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The arrays' elements one after the other, in one new host array of ``dtype``."""
    flat = np.empty(sum(a.size for a in arrays), dtype=dtype)
    for piece, array in zip(_pieces(flat, [a.shape for a in arrays]), arrays):
        piece[...] = array
    return flat


def _broadcast_from_rank0(buckets: list[list[Tensor]]) -> None:
    """Give every rank rank 0's values of the bucketed tensors: one broadcast per bucket."""
    for bucket in buckets:
        flat = _flatten([t.numpy() for t in bucket], bucket[0].dtype)
        broadcast(from_numpy(flat), src=0)
        with no_grad():  # parameters that require grad are written, outside the model's computation
            for t, piece in zip(bucket, _pieces(flat, [t.shape for t in bucket])):
                t.copy_(piece)


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training on the default process group.

    At construction every rank's parameters and buffers become rank 0's. Calling the
    wrapper calls ``module`` (after copying rank 0's buffers to every rank, when
    ``broadcast_buffers``); :meth:`reduce_gradients` averages the gradients across ranks,
    in flat buckets of at most ``bucket_cap_mb`` MB. ``.module`` is the wrapped model."""

    def __init__(self, module: Module, *, broadcast_buffers: bool = True, bucket_cap_mb: float = 25) -> None:
        super().__init__()
        if not is_initialized():
            raise DistError("DistributedDataParallel: call tinymed.distributed.init_process_group() first")
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a tinymed.nn.Module, got {type(module).__name__}")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True  # False inside no_sync(), as in PyTorch
        cap_bytes = bucket_cap_mb * 2**20
        trained = [p for p in module.parameters() if p.requires_grad]
        if not trained:
            raise DistError("DistributedDataParallel: the module has no parameter that requires a gradient")
        self._grad_buckets = _buckets(trained, cap_bytes)
        self._buffer_buckets = _buckets(list(module.buffers()), cap_bytes)
        try:
            _broadcast_from_rank0(_buckets(list(module.parameters()), cap_bytes) + self._buffer_buckets)
        except DistError as e:
            raise DistError(f"DistributedDataParallel: the module is not the same on every rank: {e}") from e

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)``, after giving every rank rank 0's buffers."""
        if self.broadcast_buffers:
            _broadcast_from_rank0(self._buffer_buckets)
        return self.module(*args, **kwargs)

    def reduce_gradients(self) -> None:
        """Replace every parameter's gradient by its average over the ranks; call it after
        ``backward()`` and before ``optimizer.step()`` (a no-op inside :meth:`no_sync`).

        A parameter that got no gradient on some rank counts as zero there; one that got
        none on any rank keeps ``None`` (so the optimiser skips it, as one process would).
        Each bucket carries, after the gradients, one 0/1 flag per parameter saying whether
        it had one, so the ranks learn that in the same all-reduce."""
        if not self.require_backward_grad_sync:
            return
        world_size = get_world_size()
        for bucket in self._grad_buckets:
            grads = [_gradient(p) for p in bucket]
            present = np.array([g is not None for g in grads], dtype=bucket[0].dtype)
            parts = [g.numpy() if g is not None else np.zeros(p.shape, p.dtype) for p, g in zip(bucket, grads)]
            flat = _flatten([*parts, present], bucket[0].dtype)
            all_reduce(from_numpy(flat), ReduceOp.SUM)
            sums, counts = flat[: -len(bucket)], flat[-len(bucket) :]
            sums /= world_size
            for p, mean, count in zip(bucket, _pieces(sums, [p.shape for p in bucket]), counts):
                if count > 0:
                    _gradient(p, create=True).copy_(mean)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally: inside, :meth:`reduce_gradients` does nothing; the
        first call after the block averages everything accumulated. For gradient
        accumulation over micro-batches, without a communication per micro-batch."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # The wrapped module's state, under its own names: a checkpoint written by a
    # distributed run loads into a plain model, and the other way round. (PyTorch's
    # wrapper prefixes every key with "module.".)
    def state_dict(self, *, destination: dict | None = None, prefix: str = "", keep_vars: bool = False) -> dict:
        """``module.state_dict()``."""
        return self.module.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """``module.load_state_dict(state_dict, strict)``."""
        return self.module.load_state_dict(state_dict, strict)


def verify_in_sync(module: Module) -> None:
    """Raise :class:`DistError`, on every rank alike, unless every rank's parameters are
    bitwise equal to rank 0's.

    Exact equality is expected, not a tolerance: every rank applies the same averaged
    gradient with the same optimiser, and MPI's all-reduce gives every rank the same sum.
    Drift means a step skipped :meth:`DistributedDataParallel.reduce_gradients`, or a rank
    updated its parameters on its own. Costs a broadcast and an all-reduce of the
    parameters (in float64): run it once an epoch, not every step."""
    inner = module.module if isinstance(module, DistributedDataParallel) else module
    named = list(inner.named_parameters())
    mine = _flatten([p.numpy() for _, p in named], np.dtype(np.float64))
    rank0 = mine.copy()
    broadcast(from_numpy(rank0), src=0)
    equal = (mine == rank0) | (np.isnan(mine) & np.isnan(rank0))
    # A NaN on one side only is as far apart as it gets.
    gap = np.nan_to_num(np.where(equal, 0.0, np.abs(mine - rank0)), nan=np.inf)
    largest = np.array([piece.max(initial=0.0) for piece in _pieces(gap, [p.shape for _, p in named])])
    all_reduce(from_numpy(largest), ReduceOp.MAX)
    drifted = [(name, value) for (name, _), value in zip(named, largest) if value > 0]
    if drifted:
        listed = ", ".join(f"{name} (up to {value:.3g})" for name, value in drifted[:5])
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        raise DistError(
            f"verify_in_sync: the ranks' parameters have drifted apart from rank 0's: {listed}{more}; "
            "every training step must call reduce_gradients() after backward(), and no rank may change "
            "its parameters on its own"
        )
