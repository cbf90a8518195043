"""DataLoader: a dataset read in batches (``torch.utils.data.DataLoader``).

For a map-style dataset the loader asks its batch sampler for lists of indices, fetches
``[dataset[i] for i in indices]`` and hands that list to ``collate_fn``
(:func:`~tinymed.utils.data.default_collate` unless given). For an
:class:`~tinymed.utils.data.IterableDataset` it collates consecutive runs of ``batch_size``
items of the stream. ``batch_size=None`` turns batching off: each sample goes through
``collate_fn`` alone (:func:`~tinymed.utils.data.default_convert` unless given).

Workers: tinymed always loads in the main process. ``num_workers > 0`` is accepted, so
PyTorch code runs unchanged, with a warning that it loads single-process; the batches are
the same a worker pool would give, in the same order. The worker options (``timeout``,
``worker_init_fn``, ``multiprocessing_context``, ``prefetch_factor``,
``persistent_workers``) are checked as PyTorch checks them and kept as attributes, but no
worker is started. ``pin_memory`` has no effect: a batch lives in host (NumPy) memory and
moves to a GPU backend through ``.to(device)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tinymed import random
from tinymed.utils.data.collate import default_collate, default_convert
from tinymed.utils.data.dataset import IterableDataset
from tinymed.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler


class DataLoader:
    """Iterate over ``dataset`` in batches; each ``iter()`` is one epoch.

    dataset: a map-style dataset (``__len__`` and ``__getitem__``) or an IterableDataset.
    batch_size: samples per batch (None: no batching). shuffle: a new random order every
    epoch (a RandomSampler drawing from ``generator``, tinymed's global generator when None).
    sampler: the order of indices instead (excludes shuffle). batch_sampler: lists of indices
    instead (excludes batch_size, shuffle, sampler and drop_last). drop_last: drop the last
    batch when it is short. collate_fn: turns a list of samples into a batch.
    ``len(loader)`` is the number of batches (needs ``len(dataset)`` for an IterableDataset).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[Any] | None = None,
        batch_sampler: Iterable[list[Any]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: random.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
    ) -> None:
        _check_worker_options(num_workers, timeout, prefetch_factor, persistent_workers)
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(
                        f"DataLoader with IterableDataset: expected unspecified {name} option, but got {name}={value}"
                    )
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "DataLoader: batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
            )
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and sampler is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        batching = batch_sampler is not None or (self._iterable and batch_size is not None)
        self.collate_fn = collate_fn or (default_collate if batching else default_convert)

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            if self.batch_size is None:
                return map(self.collate_fn, self.dataset)
            # A BatchSampler groups any iterable: here the stream's items themselves.
            return map(self.collate_fn, BatchSampler(self.dataset, self.batch_size, self.drop_last))
        if self.batch_sampler is None:
            return (self.collate_fn(self.dataset[index]) for index in self.sampler)
        return (self.collate_fn([self.dataset[index] for index in indices]) for indices in self.batch_sampler)

    def __len__(self) -> int:
        if self._iterable:
            batches = (
                self.dataset if self.batch_size is None else BatchSampler(self.dataset, self.batch_size, self.drop_last)
            )
            return len(batches)
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)


def _check_worker_options(
    num_workers: int, timeout: float, prefetch_factor: int | None, persistent_workers: bool
) -> None:
    """PyTorch's checks of the worker options. tinymed always loads in the main process, so
    workers are accepted with a warning and change nothing (the batches and their order are
    the same)."""
    if num_workers < 0:
        raise ValueError(
            f"DataLoader: num_workers should be non-negative, got {num_workers}; use num_workers=0 to load in the main process"
        )
    if timeout < 0:
        raise ValueError(f"DataLoader: timeout should be non-negative, got {timeout}")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("DataLoader: prefetch_factor can only be given with num_workers > 0")
    if prefetch_factor is not None and prefetch_factor < 0:
        raise ValueError(f"DataLoader: prefetch_factor should be non-negative, got {prefetch_factor}")
    if persistent_workers and num_workers == 0:
        raise ValueError("DataLoader: persistent_workers needs num_workers > 0")
    if num_workers > 0:
        warnings.warn(
            f"DataLoader: tinymed loads in the main process; num_workers={num_workers} is ignored "
            "(the batches and their order are the same)",
            stacklevel=2,
        )
