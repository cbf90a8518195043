"""MedMNIST's 2D data sets at 28x28: the official ``.npz`` files, read and downloaded.

An official file ``{flag}.npz`` holds, for each split in ``train``, ``val``, ``test``::

    {split}_images   uint8 (N, 28, 28)  grayscale, or (N, 28, 28, 3) for the RGB flags
    {split}_labels   uint8 (N, 1)       class index, or (N, 14) for multi-label ChestMNIST

Files live at ``{root}/{flag}.npz`` with the medmnist package's default root
``~/.medmnist``, so a file that package downloaded is found here too. A missing file is
downloaded from the official Zenodo record 10519652 and checked against the MD5 the medmnist
package publishes before it is used.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinymed.errors import DatasetError
from tinymed.npz import NpzError, read_npz
from tinymed.outputs import atomic_write, remove_abandoned_parts

__all__ = [
    "DatasetError",
    "MedMNISTFlag",
    "FLAGS",
    "SPLITS",
    "DEFAULT_ROOT",
    "DEFAULT_BASE_URL",
    "URL_ENV_VAR",
    "medmnist_url",
    "file_md5",
    "download_medmnist",
    "verified_medmnist",
    "read_npz_split",
    "load_medmnist",
]

SPLITS = ("train", "val", "test")
DEFAULT_ROOT = Path("~/.medmnist")
DEFAULT_BASE_URL = "https://zenodo.org/records/10519652/files"
URL_ENV_VAR = "TINYMED_MEDMNIST_URL"


@dataclass(frozen=True)
class MedMNISTFlag:
    """What MedMNIST publishes about one data set (``medmnist/info.py``)."""

    task: str  # "binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression"
    n_channels: int  # 1 grayscale, 3 RGB
    labels: tuple[str, ...]  # the name of each class (or of each label, for multi-label)
    md5: str  # MD5 of the 28x28 file in Zenodo record 10519652
    python_class: str  # the medmnist package's class name for the flag
    n_samples: dict[str, int]  # samples per split in the official file
    license: str
    description: str  # the medmnist package's description, word for word


_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

# The 2D flags of MedMNIST v3 (medmnist 3.0.2, medmnist/info.py), whose URLs point to
# Zenodo record 10519652. The Organ{A,C,S} MD5s differ from those of the older record 6496656.
# Every flag has its MD5 here, so every download is verified; none is used unchecked.
FLAGS: dict[str, MedMNISTFlag] = {
    "pathmnist": MedMNISTFlag(
        task="multi-class",
        n_channels=3,
        labels=(
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        md5="a8b06965200029087d5bd730944a56c1",
        python_class="PathMNIST",
        n_samples={"train": 89996, "val": 10004, "test": 7180},
        license="CC BY 4.0",
        description=(
            "The PathMNIST is based on a prior study for predicting survival from colorectal cancer histology "
            "slides, providing a dataset (NCT-CRC-HE-100K) of 100,000 non-overlapping image patches from "
            "hematoxylin & eosin stained histological images, and a test dataset (CRC-VAL-HE-7K) of 7,180 image "
            "patches from a different clinical center. The dataset is comprised of 9 types of tissues, resulting "
            "in a multi-class classification task. We resize the source images of 3×224×224 into 3×28×28, and "
            "split NCT-CRC-HE-100K into training and validation set with a ratio of 9:1. The CRC-VAL-HE-7K is "
            "treated as the test set."
        ),
    ),
    "chestmnist": MedMNISTFlag(
        task="multi-label, binary-class",
        n_channels=1,
        labels=(
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        md5="02c8a6516a18b556561a56cbdd36c4a8",
        python_class="ChestMNIST",
        n_samples={"train": 78468, "val": 11219, "test": 22433},
        license="CC BY 4.0",
        description=(
            "The ChestMNIST is based on the NIH-ChestXray14 dataset, a dataset comprising 112,120 frontal-view "
            "X-Ray images of 30,805 unique patients with the text-mined 14 disease labels, which could be "
            "formulized as a multi-label binary-class classification task. We use the official data split, and "
            "resize the source images of 1×1024×1024 into 1×28×28."
        ),
    ),
    "dermamnist": MedMNISTFlag(
        task="multi-class",
        n_channels=3,
        labels=(
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        md5="0744692d530f8e62ec473284d019b0c7",
        python_class="DermaMNIST",
        n_samples={"train": 7007, "val": 1003, "test": 2005},
        license="CC BY-NC 4.0",
        description=(
            "The DermaMNIST is based on the HAM10000, a large collection of multi-source dermatoscopic images of "
            "common pigmented skin lesions. The dataset consists of 10,015 dermatoscopic images categorized as 7 "
            "different diseases, formulized as a multi-class classification task. We split the images into "
            "training, validation and test set with a ratio of 7:1:2. The source images of 3×600×450 are resized "
            "into 3×28×28."
        ),
    ),
    "octmnist": MedMNISTFlag(
        task="multi-class",
        n_channels=1,
        labels=("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        md5="c68d92d5b585d8d81f7112f81e2d0842",
        python_class="OCTMNIST",
        n_samples={"train": 97477, "val": 10832, "test": 1000},
        license="CC BY 4.0",
        description=(
            "The OCTMNIST is based on a prior dataset of 109,309 valid optical coherence tomography (OCT) images "
            "for retinal diseases. The dataset is comprised of 4 diagnosis categories, leading to a multi-class "
            "classification task. We split the source training set with a ratio of 9:1 into training and "
            "validation set, and use its source validation set as the test set. The source images are gray-scale,"
            " and their sizes are (384−1,536)×(277−512). We center-crop the images and resize them into 1×28×28."
        ),
    ),
    "pneumoniamnist": MedMNISTFlag(
        task="binary-class",
        n_channels=1,
        labels=("normal", "pneumonia"),
        md5="28209eda62fecd6e6a2d98b1501bb15f",
        python_class="PneumoniaMNIST",
        n_samples={"train": 4708, "val": 524, "test": 624},
        license="CC BY 4.0",
        description=(
            "The PneumoniaMNIST is based on a prior dataset of 5,856 pediatric chest X-Ray images. The task is "
            "binary-class classification of pneumonia against normal. We split the source training set with a "
            "ratio of 9:1 into training and validation set and use its source validation set as the test set. The"
            " source images are gray-scale, and their sizes are (384−2,916)×(127−2,713). We center-crop the "
            "images and resize them into 1×28×28."
        ),
    ),
    "retinamnist": MedMNISTFlag(
        task="ordinal-regression",
        n_channels=3,
        labels=("0", "1", "2", "3", "4"),
        md5="bd4c0672f1bba3e3a89f0e4e876791e4",
        python_class="RetinaMNIST",
        n_samples={"train": 1080, "val": 120, "test": 400},
        license="CC BY 4.0",
        description=(
            "The RetinaMNIST is based on the DeepDRiD challenge, which provides a dataset of 1,600 retina fundus "
            "images. The task is ordinal regression for 5-level grading of diabetic retinopathy severity. We "
            "split the source training set with a ratio of 9:1 into training and validation set, and use the "
            "source validation set as the test set. The source images of 3×1,736×1,824 are center-cropped and "
            "resized into 3×28×28."
        ),
    ),
    "breastmnist": MedMNISTFlag(
        task="binary-class",
        n_channels=1,
        labels=("malignant", "normal, benign"),
        md5="750601b1f35ba3300ea97c75c52ff8f6",
        python_class="BreastMNIST",
        n_samples={"train": 546, "val": 78, "test": 156},
        license="CC BY 4.0",
        description=(
            "The BreastMNIST is based on a dataset of 780 breast ultrasound images. It is categorized into 3 "
            "classes: normal, benign, and malignant. As we use low-resolution images, we simplify the task into "
            "binary classification by combining normal and benign as positive and classifying them against "
            "malignant as negative. We split the source dataset with a ratio of 7:1:2 into training, validation "
            "and test set. The source images of 1×500×500 are resized into 1×28×28."
        ),
    ),
    "bloodmnist": MedMNISTFlag(
        task="multi-class",
        n_channels=3,
        labels=(
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        md5="7053d0359d879ad8a5505303e11de1dc",
        python_class="BloodMNIST",
        n_samples={"train": 11959, "val": 1712, "test": 3421},
        license="CC BY 4.0",
        description=(
            "The BloodMNIST is based on a dataset of individual normal cells, captured from individuals without "
            "infection, hematologic or oncologic disease and free of any pharmacologic treatment at the moment of"
            " blood collection. It contains a total of 17,092 images and is organized into 8 classes. We split "
            "the source dataset with a ratio of 7:1:2 into training, validation and test set. The source images "
            "with resolution 3×360×363 pixels are center-cropped into 3×200×200, and then resized into 3×28×28."
        ),
    ),
    "tissuemnist": MedMNISTFlag(
        task="multi-class",
        n_channels=1,
        labels=(
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        md5="ebe78ee8b05294063de985d821c1c34b",
        python_class="TissueMNIST",
        n_samples={"train": 165466, "val": 23640, "test": 47280},
        license="CC BY 4.0",
        description=(
            "We use the BBBC051, available from the Broad Bioimage Benchmark Collection. The dataset contains "
            "236,386 human kidney cortex cells, segmented from 3 reference tissue specimens and organized into 8 "
            "categories. We split the source dataset with a ratio of 7:1:2 into training, validation and test "
            "set. Each gray-scale image is 32×32×7 pixels, where 7 denotes 7 slices. We take maximum values "
            "across the slices and resize them into 28×28 gray-scale images."
        ),
    ),
    "organamnist": MedMNISTFlag(
        task="multi-class",
        n_channels=1,
        labels=_ORGANS,
        md5="68e3f8846a6bd62f0c9bf841c0d9eacc",
        python_class="OrganAMNIST",
        n_samples={"train": 34561, "val": 6491, "test": 17778},
        license="CC BY 4.0",
        description=(
            "The OrganAMNIST is based on 3D computed tomography (CT) images from Liver Tumor Segmentation "
            "Benchmark (LiTS). It is renamed from OrganMNIST_Axial (in MedMNIST v1) for simplicity. We use "
            "bounding-box annotations of 11 body organs from another study to obtain the organ labels. "
            "Hounsfield-Unit (HU) of the 3D images are transformed into gray-scale with an abdominal window. We "
            "crop 2D images from the center slices of the 3D bounding boxes in axial views (planes). The images "
            "are resized into 1×28×28 to perform multi-class classification of 11 body organs. 115 and 16 CT "
            "scans from the source training set are used as training and validation set, respectively. The 70 CT "
            "scans from the source test set are treated as the test set."
        ),
    ),
    "organcmnist": MedMNISTFlag(
        task="multi-class",
        n_channels=1,
        labels=_ORGANS,
        md5="b9ceb9546e10131b32923c5bbeaea2b1",
        python_class="OrganCMNIST",
        n_samples={"train": 12975, "val": 2392, "test": 8216},
        license="CC BY 4.0",
        description=(
            "The OrganCMNIST is based on 3D computed tomography (CT) images from Liver Tumor Segmentation "
            "Benchmark (LiTS). It is renamed from OrganMNIST_Coronal (in MedMNIST v1) for simplicity. We use "
            "bounding-box annotations of 11 body organs from another study to obtain the organ labels. "
            "Hounsfield-Unit (HU) of the 3D images are transformed into gray-scale with an abdominal window. We "
            "crop 2D images from the center slices of the 3D bounding boxes in coronal views (planes). The images"
            " are resized into 1×28×28 to perform multi-class classification of 11 body organs. 115 and 16 CT "
            "scans from the source training set are used as training and validation set, respectively. The 70 CT "
            "scans from the source test set are treated as the test set."
        ),
    ),
    "organsmnist": MedMNISTFlag(
        task="multi-class",
        n_channels=1,
        labels=_ORGANS,
        md5="9ab87b696fb54e2a387ebe992d6ed5f1",
        python_class="OrganSMNIST",
        n_samples={"train": 13932, "val": 2452, "test": 8827},
        license="CC BY 4.0",
        description=(
            "The OrganSMNIST is based on 3D computed tomography (CT) images from Liver Tumor Segmentation "
            "Benchmark (LiTS). It is renamed from OrganMNIST_Sagittal (in MedMNIST v1) for simplicity. We use "
            "bounding-box annotations of 11 body organs from another study to obtain the organ labels. "
            "Hounsfield-Unit (HU) of the 3D images are transformed into gray-scale with an abdominal window. We "
            "crop 2D images from the center slices of the 3D bounding boxes in sagittal views (planes). The "
            "images are resized into 1×28×28 to perform multi-class classification of 11 body organs. 115 and 16 "
            "CT scans from the source training set are used as training and validation set, respectively. The 70 "
            "CT scans from the source test set are treated as the test set."
        ),
    ),
}


def _flag_info(flag: str) -> MedMNISTFlag:
    if flag not in FLAGS:
        raise DatasetError(f"unknown MedMNIST data set {flag!r}; the 2D flags are: {', '.join(FLAGS)}")
    return FLAGS[flag]


def medmnist_url(flag: str, base_url: str | None = None) -> str:
    """Download URL of ``{flag}.npz``: ``{base}/{flag}.npz?download=1``.

    The base is base_url, else the environment variable ``TINYMED_MEDMNIST_URL`` (a mirror,
    or a local server in the tests), else the Zenodo record.
    """
    _flag_info(flag)
    base = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL
    if urllib.parse.urlsplit(base).scheme not in ("http", "https", "file"):
        given = f"{URL_ENV_VAR}={base!r}" if base == os.environ.get(URL_ENV_VAR) else f"base URL {base!r}"
        raise DatasetError(f"{given} is not an http://, https:// or file:// URL")
    return f"{base.rstrip('/')}/{flag}.npz?download=1"


def file_md5(path: str | os.PathLike) -> str:
    """The MD5 of a file, as hexadecimal digits."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_medmnist(
    flag: str,
    root: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Downloads ``{flag}.npz`` into root (default ``~/.medmnist``) and returns its path.

    The bytes go to a temporary ``.part`` file in root (see :func:`tinymed.outputs.atomic_write`);
    only once their MD5 matches the published one is it renamed to ``{root}/{flag}.npz``, so an
    interrupted or corrupted download never sits where a good file is expected. On failure
    the temporary file is removed and DatasetError gives the URL, the expected MD5 and the
    path to place the file at by hand; ``.part`` files of downloads killed outright are
    removed by the next download.
    """
    expected_md5 = _flag_info(flag).md5
    root = Path(root or DEFAULT_ROOT).expanduser()
    target = root / f"{flag}.npz"
    url = medmnist_url(flag, base_url)
    by_hand = f"download {url} (MD5 {expected_md5}) and place it at {target}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the data directory {root} ({e}); {by_hand}") from e
    try:
        remove_abandoned_parts(root, target.name)
        digest = hashlib.md5()
        with atomic_write(target) as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"{flag}.npz", disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            if digest.hexdigest() != expected_md5:
                raise DatasetError(
                    f"the download of {flag}.npz has MD5 {digest.hexdigest()}, expected {expected_md5}; "
                    f"nothing was kept; {by_hand}"
                )
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        # str() of an HTTPError reads "HTTP Error 404: ..."; a URLError's reason is clearer than its str().
        why = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        raise DatasetError(f"cannot download {flag}.npz ({why}); {by_hand}") from e
    return target


def verified_medmnist(flag: str, root: str | os.PathLike | None = None, base_url: str | None = None) -> Path:
    """``{root}/{flag}.npz``, downloaded first when it is missing or when its MD5 is not the
    published one (torchvision's ``download_url`` rule, which the medmnist package's
    ``download=True`` follows). Returns its path."""
    path = Path(root or DEFAULT_ROOT).expanduser() / f"{flag}.npz"
    if not path.is_file() or file_md5(path) != _flag_info(flag).md5:
        download_medmnist(flag, path.parent, base_url)
    return path


def read_npz_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``{split}_images`` and ``{split}_labels`` from a file in the MedMNIST layout.

    ``np.load`` reads an ``.npz`` member only when it is asked for, so only this split's two
    arrays are read, and a file holding just this split works. Returns ``(images, labels)``
    as stored: images uint8 ``(N, H, W)`` or ``(N, H, W, C)``, labels ``(N, 1)`` or ``(N, K)``.
    """
    path = Path(path)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; the splits are: {', '.join(SPLITS)}")
    if path.is_dir():
        raise DatasetError(f"{path} is a directory; --data takes the .npz file itself (--data-dir takes a directory)")
    if not path.is_file():
        raise DatasetError(f"data file not found: {path}")
    keys = (f"{split}_images", f"{split}_labels")
    try:
        arrays = read_npz(path, keys)
    except (OSError, NpzError) as e:
        raise DatasetError(f"{path} is not a readable .npz file ({e}); delete it, or download it again") from e
    missing = [k for k in keys if k not in arrays]
    if missing:
        with zipfile.ZipFile(path) as archive:
            held = [name.removesuffix(".npy") for name in archive.namelist()]
        raise DatasetError(f"{path} has no {' or '.join(missing)} (it holds the keys: {', '.join(held) or 'none'})")
    images, labels = arrays[keys[0]], arrays[keys[1]]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(
            f"{path}: {keys[0]} must be uint8 (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 2 or labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{path}: {keys[1]} must be (N, 1) or (N, K) with N = {images.shape[0]} like {keys[0]}, got {labels.shape}"
        )
    return images, labels


def load_medmnist(
    flag: str,
    split: str,
    root: str | os.PathLike | None = None,
    data_file: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of a 2D MedMNIST data set as ``(images, labels)`` (see :func:`read_npz_split`).

    Reads data_file when given (any file in the layout, never downloaded), else
    ``{root}/{flag}.npz``, downloading it first when it is missing and download is True.
    """
    info = _flag_info(flag)
    if data_file is None:
        path = Path(root or DEFAULT_ROOT).expanduser() / f"{flag}.npz"
        if not path.is_file():
            if not download:
                raise DatasetError(
                    f"{path} not found and downloading is off; download "
                    f"{medmnist_url(flag, base_url)} (MD5 {info.md5}) and place "
                    f"it at {path}"
                )
            download_medmnist(flag, path.parent, base_url)
    else:
        path = Path(data_file).expanduser()
    images, labels = read_npz_split(path, split)
    channels = 1 if images.ndim == 3 else images.shape[3]
    if channels != info.n_channels:
        raise DatasetError(
            f"{path}: {flag} images have {info.n_channels} channel(s), this file's "
            f"{split}_images {images.shape} has {channels}"
        )
    return images, labels
