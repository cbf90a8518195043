"""Data: MedMNIST files and synthetic phantoms as data sets, augmentation, batching.

::

    from tinymed.data import load_dataset, DataLoader, Normalize, chest_xray_augmentation

    train = load_dataset("pneumoniamnist", "train")          # ~/.medmnist, downloaded if missing
    loader = DataLoader(train, batch_size=128, shuffle=True, seed=0,
                        transform=Compose([chest_xray_augmentation(), Normalize(0.5, 0.5)]))
    for images, labels in loader:                             # float32 (B, 1, 28, 28), int64 (B,)
        ...
"""

from tinymed.data import medmnist_api
from tinymed.data.loader import DATASETS, DataLoader, DatasetInfo, ImageDataset, load_dataset
from tinymed.data.medmnist import FLAGS, DatasetError, download_medmnist, load_medmnist, read_npz_split

# The medmnist package's names (INFO, Evaluator, PneumoniaMNIST, ...), listed once, in medmnist_api.__all__.
from tinymed.data.medmnist_api import *  # noqa: F403
from tinymed.data.phantoms import Phantoms, load_phantoms, make_phantoms
from tinymed.data.transforms import (
    AUGMENTATIONS,
    Compose,
    GaussianNoise,
    Normalize,
    RandomBrightnessContrast,
    RandomGamma,
    RandomGaussianBlur,
    RandomHorizontalFlip,
    RandomRotation,
    RandomShift,
    RandomZoom,
    chest_xray_augmentation,
)

__all__ = [
    "DATASETS",
    "DataLoader",
    "DatasetInfo",
    "ImageDataset",
    "load_dataset",
    "FLAGS",
    "DatasetError",
    "download_medmnist",
    "load_medmnist",
    "read_npz_split",
    "Phantoms",
    "load_phantoms",
    "make_phantoms",
    "AUGMENTATIONS",
    "Compose",
    "GaussianNoise",
    "Normalize",
    "RandomBrightnessContrast",
    "RandomGamma",
    "RandomGaussianBlur",
    "RandomHorizontalFlip",
    "RandomRotation",
    "RandomShift",
    "RandomZoom",
    "chest_xray_augmentation",
    *medmnist_api.__all__,
]
