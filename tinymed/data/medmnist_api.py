"""The medmnist package's own API on tinymed: ``INFO``, a dataset class per 2D flag,
``Evaluator`` and ``montage``, so MedMNIST's getting-started code runs with its imports changed::

    from tinymed.data import INFO, Evaluator
    import tinymed.data as medmnist
    from tinymed.utils.data import DataLoader

    info = INFO["pneumoniamnist"]
    DataClass = getattr(medmnist, info["python_class"])
    train = DataClass(split="train", transform=to_tensor, download=True)
    loader = DataLoader(train, batch_size=128, shuffle=True)
    ...
    auc, acc = Evaluator("pneumoniamnist", "test").evaluate(y_score)

Files, root and names are the medmnist package's (``~/.medmnist/{flag}.npz``, Zenodo record
10519652), so the two share downloads. Where tinymed differs (it has no PIL or torchvision):

* ``dataset[i]`` gives the image as a uint8 NumPy array, ``(H, W)`` for grayscale and
  ``(H, W, 3)`` for RGB or ``as_rgb=True`` (what ``np.asarray`` makes of medmnist's PIL image),
  so ``transform`` receives that array. torchvision's ``ToTensor`` is then, for example,
  ``lambda img: tm.tensor(img.reshape(img.shape[0], img.shape[1], -1).transpose(2, 0, 1) / 255.0,
  dtype=tm.float32)``. The label is the same int64 array of shape ``(1,)`` (``(14,)`` for
  ChestMNIST).
* ``montage`` returns the montage as a uint8 array instead of a PIL image (saved with
  matplotlib); its random choice of images comes from tinymed's generator
  (``tm.manual_seed``), not NumPy's global one.
* Only the 2D flags at ``size=28``, whose MD5s tinymed carries; no ``mmap_mode``.
* Failures raise :class:`~tinymed.data.DatasetError` (a ValueError) with what to do, where
  medmnist raises RuntimeError; ``root`` is created when downloading, and ``len()`` does not
  insist on the official sample counts, so a file holding only some samples still loads.
* ``Evaluator.evaluate`` computes AUC and ACC with :mod:`tinymed.metrics`, which follows
  medmnist's definitions and scikit-learn's rule for tied scores; results saved with
  ``save_folder`` are written without pandas, in the same CSV layout.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tinymed import random
from tinymed.data.medmnist import (
    DEFAULT_BASE_URL,
    DEFAULT_ROOT,
    FLAGS,
    DatasetError,
    load_medmnist,
    medmnist_url,
    read_npz_split,
    verified_medmnist,
)
from tinymed.metrics import accuracy, roc_auc_score

__all__ = [
    "INFO",
    "Metrics",
    "Evaluator",
    "MedMNIST2D",
    "montage2d",
    "PathMNIST",
    "ChestMNIST",
    "DermaMNIST",
    "OCTMNIST",
    "PneumoniaMNIST",
    "RetinaMNIST",
    "BreastMNIST",
    "BloodMNIST",
    "TissueMNIST",
    "OrganAMNIST",
    "OrganCMNIST",
    "OrganSMNIST",
]

# medmnist.INFO for the 2D flags at 28x28, with its field names and layout.
INFO: dict[str, dict[str, Any]] = {
    flag: {
        "python_class": info.python_class,
        "description": info.description,
        "url": medmnist_url(flag, DEFAULT_BASE_URL),
        "MD5": info.md5,
        "task": info.task,
        "label": {str(i): name for i, name in enumerate(info.labels)},
        "n_channels": info.n_channels,
        "n_samples": dict(info.n_samples),
        "license": info.license,
    }
    for flag, info in FLAGS.items()
}

Metrics = namedtuple("Metrics", ["AUC", "ACC"])


def _check_size(op: str, size: int | None) -> None:
    if size not in (None, 28):
        raise DatasetError(f"{op}: size={size} is not available in tinymed; only the 28x28 files (size=28) are")


def _check_split(op: str, split: str) -> None:
    if split not in ("train", "val", "test"):
        raise DatasetError(f"{op}: split must be 'train', 'val' or 'test', got {split!r}")


def montage2d(imgs: np.ndarray, n_channels: int, sel: np.ndarray) -> np.ndarray:
    """The images ``imgs[sel]`` tiled row by row into a square grid (scikit-image's ``montage``,
    which medmnist uses): ``n = len(sel)`` images of ``(H, W)`` (or ``(H, W, 3)`` when
    ``n_channels == 3``) make ``(k H, k W[, 3])`` with ``k = ceil(sqrt(n))``; empty tiles are
    filled with the images' mean value (per channel). Same dtype as ``imgs``."""
    tiles = np.asarray(imgs)[np.asarray(sel)]
    if tiles.ndim != (4 if n_channels == 3 else 3):
        raise ValueError(
            f"montage2d: imgs must be (N, H, W) for 1 channel or (N, H, W, 3) for 3, got {tiles.shape[1:]} "
            f"images with n_channels={n_channels}"
        )
    n, height, width = tiles.shape[:3]
    k = int(np.ceil(np.sqrt(n)))
    grid = np.empty((k * height, k * width, *tiles.shape[3:]), dtype=tiles.dtype)
    grid[...] = tiles.mean(axis=(0, 1, 2))
    for i, tile in enumerate(tiles):
        row, col = divmod(i, k)
        grid[row * height : (row + 1) * height, col * width : (col + 1) * width] = tile
    return grid


class MedMNIST2D:
    """One split of a 2D MedMNIST data set (a subclass per flag sets ``flag``).

    ``dataset[i]`` is ``(image, label)``: image uint8 ``(H, W)`` or ``(H, W, 3)`` passed through
    ``transform``, label int64 ``(1,)`` (``(14,)`` for multi-label) passed through
    ``target_transform``. ``download=True`` fetches ``{root}/{flag}.npz`` when it is missing or
    its MD5 is wrong; without it the file must be there. ``as_rgb`` repeats a grayscale image
    over 3 channels."""

    flag: str

    def __init__(
        self,
        split: str = "train",
        transform: Callable[[np.ndarray], Any] | None = None,
        target_transform: Callable[[np.ndarray], Any] | None = None,
        download: bool = False,
        as_rgb: bool = False,
        root: str | os.PathLike = DEFAULT_ROOT,
        size: int | None = None,
    ) -> None:
        name = type(self).__name__
        _check_split(name, split)
        _check_size(name, size)
        self.info = INFO[self.flag]
        self.root = Path(root).expanduser()
        self.size, self.split, self.as_rgb = 28, split, as_rgb
        self.transform, self.target_transform = transform, target_transform
        if download:
            verified_medmnist(self.flag, self.root)
        self.imgs, self.labels = load_medmnist(self.flag, split, root=self.root, download=False)

    def __len__(self) -> int:
        return self.imgs.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.imgs[index], self.labels[index].astype(np.int64)
        if self.as_rgb and img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        body = [
            f"Number of datapoints: {len(self)}",
            f"Root location: {self.root}",
            f"Split: {self.split}",
            f"Task: {self.info['task']}",
            f"Number of channels: {self.info['n_channels']}",
            f"Meaning of labels: {self.info['label']}",
            f"Number of samples: {self.info['n_samples']}",
            f"Description: {self.info['description']}",
            f"License: {self.info['license']}",
        ]
        head = f"Dataset {type(self).__name__} of size {self.size} ({self.flag})"
        return "\n".join([head] + ["    " + line for line in body])

    def montage(
        self, length: int = 20, replace: bool = False, save_folder: str | os.PathLike | None = None
    ) -> np.ndarray:
        """``length * length`` images drawn at random (without replacement unless ``replace``)
        in a :func:`montage2d` grid; saved as ``{save_folder}/{flag}_{split}_montage.jpg`` when
        ``save_folder`` is given. Returns the grid."""
        sel = random.generator().choice(len(self), size=length * length, replace=replace)
        grid = montage2d(self.imgs, self.info["n_channels"], sel)
        if save_folder is not None:
            from matplotlib.image import imsave  # matplotlib is imported only to write the file

            os.makedirs(save_folder, exist_ok=True)
            path = Path(save_folder) / f"{self.flag}_{self.split}_montage.jpg"
            if grid.ndim == 2:
                imsave(path, grid, cmap="gray", vmin=0, vmax=255)
            else:
                imsave(path, grid)
        return grid


class Evaluator:
    """medmnist's Evaluator: the labels of one split, scored by medmnist's AUC and ACC.

    ``evaluate(y_score)`` takes the model's scores for every sample of the split, in order:
    ``(N,)`` or ``(N, 2)`` probabilities for a binary task (the last column is the positive
    class; ACC thresholds it at 0.5), ``(N, K)`` for a multi-class or ordinal task (AUC is the
    one-vs-rest macro average, ACC takes the argmax), ``(N, K)`` for multi-label (both averaged
    over the K labels). See :mod:`tinymed.metrics`."""

    def __init__(self, flag: str, split: str, size: int | None = None, root: str | os.PathLike = DEFAULT_ROOT) -> None:
        if flag not in INFO:
            raise DatasetError(f"Evaluator: unknown flag {flag!r}; the 2D flags are: {', '.join(INFO)}")
        _check_split("Evaluator", split)
        _check_size("Evaluator", size)
        self.flag, self.split, self.size, self.info = flag, split, 28, INFO[flag]
        self.root = Path(root).expanduser()
        _, self.labels = read_npz_split(self.root / f"{flag}.npz", split)

    def evaluate(self, y_score: Any, save_folder: str | os.PathLike | None = None, run: Any = None) -> Metrics:
        """``Metrics(AUC, ACC)`` of ``y_score`` against this split's labels; with
        ``save_folder``, the scores are also written there as a CSV named by
        :meth:`get_standard_evaluation_filename` (one line per sample: index, then scores)."""
        y_score = np.asarray(y_score)
        if y_score.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"Evaluator.evaluate: y_score has {y_score.shape[0]} rows but the {self.flag} {self.split} split "
                f"has {self.labels.shape[0]} samples (y_score shape {y_score.shape})"
            )
        metrics = Metrics(roc_auc_score(self.labels, y_score), accuracy(self.labels, y_score))
        if save_folder is not None:
            rows = y_score.reshape(len(y_score), -1)
            lines = [",".join([str(i), *(repr(float(v)) for v in row)]) for i, row in enumerate(rows)]
            path = Path(save_folder) / self.get_standard_evaluation_filename(metrics, run)
            path.write_text("".join(line + "\n" for line in lines))
        return metrics

    def get_standard_evaluation_filename(self, metrics: Metrics, run: Any = None) -> str:
        """``{flag}_{split}_[AUC]{auc:.3f}_[ACC]{acc:.3f}@{run}.csv`` (run: the time when None)."""
        scores = "_".join(f"[{name}]{value:.3f}" for name, value in zip(metrics._fields, metrics))
        return f"{self.flag}_{self.split}_{scores}@{time.time() if run is None else run}.csv"


class PathMNIST(MedMNIST2D):
    flag = "pathmnist"


class ChestMNIST(MedMNIST2D):
    flag = "chestmnist"


class DermaMNIST(MedMNIST2D):
    flag = "dermamnist"


class OCTMNIST(MedMNIST2D):
    flag = "octmnist"


class PneumoniaMNIST(MedMNIST2D):
    flag = "pneumoniamnist"


class RetinaMNIST(MedMNIST2D):
    flag = "retinamnist"


class BreastMNIST(MedMNIST2D):
    flag = "breastmnist"


class BloodMNIST(MedMNIST2D):
    flag = "bloodmnist"


class TissueMNIST(MedMNIST2D):
    flag = "tissuemnist"


class OrganAMNIST(MedMNIST2D):
    flag = "organamnist"


class OrganCMNIST(MedMNIST2D):
    flag = "organcmnist"


class OrganSMNIST(MedMNIST2D):
    flag = "organsmnist"
