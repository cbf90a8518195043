"""DistributedSampler: each of several processes reads its own share of a dataset
(``torch.utils.data.distributed.DistributedSampler``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np

from tinymed.utils.data.sampler import Sampler


class DistributedSampler(Sampler):
    """The indices that process ``rank`` of ``num_replicas`` reads, PyTorch's arithmetic exactly.

    All ranks start from one order of the N indices: ``0..N-1``, or, with ``shuffle``, a
    permutation drawn from a generator seeded with ``seed + epoch`` (the same on every rank, so
    the shares never overlap; a new one each epoch after :meth:`set_epoch`). Every rank gets
    ``num_samples`` indices: ``ceil(N / R)`` with the order padded by repeating it from its start
    up to ``R * num_samples``, or, with ``drop_last``, ``ceil((N - R) / R)`` (that is,
    ``floor(N / R)``) with the tail cut. Rank r takes every R-th index from position r:
    ``order[r :: R]``.

    ``num_replicas`` and ``rank`` must be given: tinymed has no process group to ask for them.
    The shuffled order comes from NumPy's generator, so it differs from PyTorch's; everything
    else (padding, dropping, striding, lengths) is identical.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            raise ValueError(
                f"DistributedSampler: num_replicas and rank must be given (tinymed has no process group to read "
                f"them from), got num_replicas={num_replicas}, rank={rank}"
            )
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > n:
            order = np.resize(order, self.total_size)  # repeats the order from its start
        return iter(order[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s shuffled order next; call it on every rank before each epoch."""
        self.epoch = epoch
