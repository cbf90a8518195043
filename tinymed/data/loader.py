"""Data sets as arrays, and the DataLoader that cuts them into shuffled, augmented batches.

:func:`load_dataset` gives an :class:`ImageDataset` for every data set tinymed knows: the
built-in ``phantoms`` and the 2D MedMNIST flags. The images stay uint8 in memory and become
float32 in [0, 1] one batch at a time.

Reproducibility: the :class:`DataLoader`'s randomness for an epoch (its sample order and the
augmentation) comes from a generator seeded by ``(seed, epoch)``, never from state left by
earlier epochs. A resumed run calls ``set_epoch(k)`` and gets exactly epoch k's batches.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinymed.data.medmnist import DEFAULT_ROOT, FLAGS, SPLITS, DatasetError, file_md5, load_medmnist, read_npz_split
from tinymed.data.phantoms import LABELS as PHANTOM_LABELS
from tinymed.data.phantoms import TASK as PHANTOM_TASK
from tinymed.data.phantoms import load_phantoms
from tinymed.data.transforms import Transform

__all__ = ["DatasetInfo", "ImageDataset", "DATASETS", "load_dataset", "DataLoader"]

DATASETS = ("phantoms", *FLAGS)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the metrics need to know about a data set."""

    name: str
    task: str  # MedMNIST's task names: "binary-class", "multi-class", ...
    labels: tuple[str, ...]  # class names (label names for a multi-label task)
    n_channels: int

    @property
    def multilabel(self) -> bool:
        return self.task.startswith("multi-label")


class ImageDataset:
    """Images with their labels.

    images uint8 ``(N, H, W)`` or ``(N, H, W, C)`` (MedMNIST's layouts), kept as
    ``self.images`` ``(N, C, H, W)``; labels ``(N,)`` or ``(N, 1)`` class indices, kept as int64
    ``(N,)``, or ``(N, K)`` 0/1 for a multi-label task. Labels must be integers (or booleans):
    a float label such as 0.9 is not a class, and truncating it would train on the wrong one.
    ``md5`` is the MD5 of the file the data was read from (None for data made in memory): what
    identifies the data in a checkpoint.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo, md5: str | None = None):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"ImageDataset: images must be uint8 (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}"
            )
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise ValueError(f"ImageDataset: {info.name} labels must be integer class indices, got {labels.dtype}")
        self.images = images[:, None] if images.ndim == 3 else np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        if info.multilabel:
            shape, n_values = (len(images), len(info.labels)), 2
        else:
            labels = labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels
            shape, n_values = (len(images),), len(info.labels)
        if labels.shape != shape or (labels.size and (labels.min() < 0 or labels.max() >= n_values)):
            raise ValueError(
                f"ImageDataset: {info.name} labels must be {shape} with values in "
                f"0..{n_values - 1}, got {labels.shape} with values "
                f"{np.unique(labels)[:10].tolist()}"
            )
        if self.images.shape[1] != info.n_channels:
            raise ValueError(
                f"ImageDataset: {info.name} has {info.n_channels} channel(s), the "
                f"images {images.shape} have {self.images.shape[1]}"
            )
        self.labels = labels.astype(np.int64)
        self.info, self.md5 = info, md5

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return self.images.shape[2], self.images.shape[3]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample: image float32 ``(C, H, W)`` in [0, 1] and its label."""
        images, labels = self.batch(np.array([index]))
        return images[0], labels[0]

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples at indices: images float32 ``(B, C, H, W)`` in [0, 1], labels int64."""
        return self.images[indices].astype(np.float32) / 255.0, self.labels[indices]

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name!r}, n={len(self)}, images={self.images.shape[1:]})"


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    data_file: str | os.PathLike | None = None,
    download: bool = True,
) -> ImageDataset:
    """One split (``train``, ``val`` or ``test``) of a data set by name.

    ``phantoms`` is generated in memory (data_dir and download do not apply); a data_file in
    the MedMNIST layout is read instead when given. A MedMNIST flag reads data_file, or
    ``{data_dir}/{name}.npz`` (default ``~/.medmnist``), downloaded when missing and
    download is True. The data set's ``md5`` is that of the file read. Every failure raises
    :class:`DatasetError` with a one-line message.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; the splits are: {', '.join(SPLITS)}")
    source = data_file
    if name == "phantoms":
        info = DatasetInfo(name, PHANTOM_TASK, PHANTOM_LABELS, n_channels=1)
        if data_file is None:
            generated = load_phantoms(split)
            images, labels = generated.images, generated.labels
        else:
            images, labels = read_npz_split(data_file, split)
    elif name in FLAGS:
        flag = FLAGS[name]
        info = DatasetInfo(name, flag.task, flag.labels, flag.n_channels)
        images, labels = load_medmnist(name, split, root=data_dir, data_file=data_file, download=download)
        source = Path(data_file or Path(data_dir or DEFAULT_ROOT) / f"{name}.npz").expanduser()
    else:
        raise DatasetError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    try:
        return ImageDataset(images, labels, info, md5=None if source is None else file_md5(source))
    except ValueError as e:
        source = data_file if data_file is not None else name
        raise DatasetError(f"{source} ({split}): {e}") from e


class DataLoader:
    """Iterates over a data set in batches of ``(images, labels)`` NumPy arrays.

    images float32 ``(B, C, H, W)`` (in [0, 1], then whatever transform makes of them),
    labels int64 ``(B,)`` (``(B, K)`` for multi-label). Arguments as PyTorch's DataLoader:

    shuffle: a new random order each epoch. seed: makes every epoch's order and
        augmentation reproducible (None: drawn once from the operating system).
    drop_last: drop the last batch when it is smaller than batch_size.
    transform: ``transform(images, rng)`` applied to each batch (see transforms.py).
    balanced: draw ``len(dataset)`` samples with replacement, each class with equal
        probability (PyTorch's WeightedRandomSampler with weights 1 / class count), for an
        imbalanced training set. It sets the order itself, so it excludes shuffle, as a
        sampler does in PyTorch.

    The k-th ``iter()`` (from 0) is epoch k unless :meth:`set_epoch` says otherwise.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        transform: Transform | None = None,
        balanced: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if shuffle and balanced:
            raise ValueError(
                "DataLoader: balanced sampling sets the order itself; use shuffle=False with balanced=True"
            )
        if balanced and dataset.labels.ndim != 1:
            raise ValueError(
                f"DataLoader: balanced sampling needs one class per sample, got labels of shape {dataset.labels.shape}"
            )
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.transform, self.balanced = drop_last, transform, balanced
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration epoch ``epoch`` (to resume a run mid-way, as PyTorch's
        DistributedSampler.set_epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.dataset)
        if self.balanced:
            counts = np.bincount(self.dataset.labels)
            weights = 1.0 / counts[self.dataset.labels]
            return rng.choice(n, size=n, replace=True, p=weights / weights.sum())
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # The epoch advances here, when iteration starts, so a loop broken off mid-epoch
        # still moves the next one on.
        epoch, self.epoch = self.epoch, self.epoch + 1
        order_rng, augment_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, epoch]).spawn(2))
        return self._batches(self._order(order_rng), augment_rng)

    def _batches(self, order: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            images, labels = self.dataset.batch(order[start : start + self.batch_size])
            if self.transform is not None:
                images = self.transform(images, rng)
            yield images, labels
