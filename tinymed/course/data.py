"""The X-rays a chapter trains on: PneumoniaMNIST when a copy is here, the phantoms when not.

A chapter never downloads (it must run offline, in CI, in a classroom without network). It
reads PneumoniaMNIST from the first of: the ``data`` argument, ``$TINYMED_DATA``, or the
medmnist package's root ``~/.medmnist/pneumoniamnist.npz`` (where ``tinymed train cnn
--dataset pneumoniamnist`` and the medmnist package download it). Any file in the MedMNIST
layout works, the official ``pneumoniamnist.npz`` or a train/val copy. With none of them it
uses tinymed's built-in phantoms (synthetic chest-like images, a bright opacity in the
positive class) and says so, because a result on phantoms is not a result on patients.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from tinymed.data import ImageDataset, load_dataset
from tinymed.data.medmnist import DEFAULT_ROOT

__all__ = ["DATA_ENV_VAR", "pneumoniamnist_file", "xray_dataset"]

DATA_ENV_VAR = "TINYMED_DATA"
FLAG = "pneumoniamnist"


def pneumoniamnist_file(data: str | os.PathLike | None = None) -> Path | None:
    """The PneumoniaMNIST file a chapter would read, or None (then it uses the phantoms).

    A path given in ``data`` or ``$TINYMED_DATA`` must exist: a typo is an error, never a
    silent switch to phantoms."""
    for given, source in ((data, "data"), (os.environ.get(DATA_ENV_VAR), f"${DATA_ENV_VAR}")):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"xray_dataset: {source} names {path}, which is not a file")
            return path
    default = DEFAULT_ROOT.expanduser() / f"{FLAG}.npz"
    return default if default.is_file() else None


def xray_dataset(split: str = "train", n: int | None = None, data: str | os.PathLike | None = None) -> ImageDataset:
    """One split of PneumoniaMNIST if it is here (see the module docstring), else of the phantoms.

    Returns an :class:`~tinymed.data.ImageDataset` (images uint8 ``(N, 1, 28, 28)``, labels
    int64 ``(N,)``: 0 normal, 1 pneumonia or opacity) holding its first ``n`` samples (all
    when None), and prints which data it is, how many images of each class, and where from.
    """
    path = pneumoniamnist_file(data)
    if path is None:
        dataset = load_dataset("phantoms", split)
        source = (
            f"the built-in phantoms (PneumoniaMNIST not found: set {DATA_ENV_VAR}=/path/to/{FLAG}.npz "
            f"or put the file at {DEFAULT_ROOT / (FLAG + '.npz')})"
        )
    else:
        dataset = load_dataset(FLAG, split, data_file=path, download=False)
        source = f"PneumoniaMNIST from {path}"
    if n is not None:
        if n < 1:
            raise ValueError(f"xray_dataset: n must be a positive number of images, got {n}")
        dataset = copy.copy(dataset)
        dataset.images, dataset.labels = dataset.images[:n], dataset.labels[:n]
    counts = np.bincount(dataset.labels, minlength=len(dataset.info.labels))
    classes = ", ".join(f"{count} {name}" for name, count in zip(dataset.info.labels, counts))
    print(f"data: {source}; {split} split, {len(dataset)} images ({classes})")
    return dataset
