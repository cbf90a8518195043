"""Datasets: what a DataLoader reads samples from (``torch.utils.data.dataset``).

A map-style dataset answers ``len(dataset)`` and ``dataset[i]``; any object that does is
one, whether or not it subclasses :class:`Dataset`. An iterable-style dataset
(:class:`IterableDataset`) is a stream: it is iterated, never indexed.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tinymed import random
from tinymed.tensor import Tensor
from tinymed.utils.data.sampler import RandomSampler


class Dataset:
    """Base class of map-style datasets: subclasses define ``__getitem__`` (sample ``i``)
    and ``__len__``."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class IterableDataset(Dataset):
    """Base class of datasets that are streams: subclasses define ``__iter__``. A DataLoader
    batches what the iterator yields, in order (it cannot shuffle or sample a stream)."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class TensorDataset(Dataset):
    """Sample ``i`` is ``(tensors[0][i], tensors[1][i], ...)``; every tensor holds N samples
    along its first dim (e.g. images ``(N, C, H, W)`` and labels ``(N,)``)."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset: needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor) or t.ndim == 0:
                what = f"shape {t.shape}" if isinstance(t, Tensor) else type(t).__name__
                raise TypeError(f"TensorDataset: tensor {i} must be a Tensor with a first dim of samples, got {what}")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) != 1:
            raise ValueError(
                f"TensorDataset: size mismatch between tensors: first dims {sizes} (shapes {[t.shape for t in tensors]})"
            )
        self.tensors = tensors

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``: ``subset[i]`` is ``dataset[indices[i]]``."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def _split_lengths(n: int, lengths: Sequence[float]) -> list[int]:
    """``lengths`` as counts: given as counts, they are checked to sum to ``n``; given as
    fractions summing to 1, each is ``floor(n * fraction)``, and the remaining samples go one
    each to the splits in turn from the first (PyTorch's rule)."""
    total = sum(lengths)
    if math.isclose(total, 1) and total <= 1:
        counts = []
        for i, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1, got {fraction}")
            counts.append(math.floor(n * fraction))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(
                    f"random_split: length of split at index {i} is 0; this might result in an empty dataset",
                    stacklevel=3,
                )
        return counts
    if any(not isinstance(length, (int, np.integer)) or length < 0 for length in lengths) or total != n:
        raise ValueError(
            f"random_split: lengths must be non-negative counts summing to the dataset's length {n}, "
            f"or fractions summing to 1, got {list(lengths)}"
        )
    return [int(length) for length in lengths]


def random_split(dataset: Any, lengths: Sequence[float], generator: random.Generator | None = None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping :class:`Subset` s of the given ``lengths`` (counts,
    or fractions of ``len(dataset)`` summing to 1), at a random permutation of its indices drawn
    from ``generator`` (tinymed's global generator when None)."""
    counts = _split_lengths(len(dataset), lengths)
    order = list(RandomSampler(range(len(dataset)), generator=generator)) if len(dataset) else []
    return [Subset(dataset, order[end - count : end]) for end, count in zip(itertools.accumulate(counts), counts)]
