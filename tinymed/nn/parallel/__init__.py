"""tinymed.nn.parallel: data-parallel training across processes (mirrors ``torch.nn.parallel``).

:class:`DistributedDataParallel` wraps a model so that every rank of a
:mod:`tinymed.distributed` process group trains it on its own share of each batch;
:func:`verify_in_sync` checks that the ranks still hold the same parameters."""

from tinymed.nn.parallel.distributed import DistributedDataParallel, verify_in_sync

__all__ = ["DistributedDataParallel", "verify_in_sync"]
