"""The medmnist package's API on tinymed: INFO, the dataset classes, Evaluator and montage,
on small synthetic files and on the real PneumoniaMNIST file when it is present; and
MedMNIST's getting-started loop written with tinymed's imports."""

from pathlib import Path

import numpy as np
import pytest

# Reused from the data tests: a small file in the official layout, and a local HTTP server.
from helpers import publish, write_medmnist_file

import tinymed as tm
import tinymed.data as medmnist
import tinymed.functional as F
import tinymed.nn as nn
import tinymed.optim as optim
from tinymed.data import INFO, DatasetError, Evaluator, montage2d
from tinymed.data.medmnist import URL_ENV_VAR
from tinymed.utils.data import DataLoader

REAL_FILE = next(
    (
        p / "shared" / "data" / "pneumoniamnist_trainval.npz"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "pneumoniamnist_trainval.npz").is_file()
    ),
    None,
)


def to_tensor(img):
    """torchvision's ToTensor for the arrays the datasets give: (C, H, W) float32 in [0, 1]."""
    return tm.tensor(img.reshape(img.shape[0], img.shape[1], -1).transpose(2, 0, 1) / 255.0, dtype=tm.float32)


def write_file(path, n=6, channels=1, n_labels=1, n_classes=2, seed=0):
    """A file of any flag's layout: images (n, 28, 28[, 3]), labels (n, n_labels)."""
    rng = np.random.default_rng(seed)
    shape = (n, 28, 28) if channels == 1 else (n, 28, 28, channels)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (n, n_labels), dtype=np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_info_has_medmnist_fields_and_a_class_per_flag():
    fields = {"python_class", "description", "url", "MD5", "task", "label", "n_channels", "n_samples", "license"}
    assert len(INFO) == 12
    for flag, info in INFO.items():
        assert set(info) == fields
        cls = getattr(medmnist, info["python_class"])
        assert cls.flag == flag and info["url"] == f"https://zenodo.org/records/10519652/files/{flag}.npz?download=1"
        assert list(info["label"]) == [str(i) for i in range(len(info["label"]))]
    pneumonia = INFO["pneumoniamnist"]
    assert pneumonia["MD5"] == "28209eda62fecd6e6a2d98b1501bb15f" and pneumonia["task"] == "binary-class"
    assert pneumonia["label"] == {"0": "normal", "1": "pneumonia"} and pneumonia["n_channels"] == 1
    assert pneumonia["n_samples"] == {"train": 4708, "val": 524, "test": 624} and pneumonia["license"] == "CC BY 4.0"
    assert pneumonia["description"].startswith("The PneumoniaMNIST is based on a prior dataset of 5,856")
    assert INFO["dermamnist"]["license"] == "CC BY-NC 4.0" and INFO["chestmnist"]["task"] == "multi-label, binary-class"


def test_samples_are_medmnist_shaped_arrays(tmp_path):
    arrays = write_file(tmp_path / "pneumoniamnist.npz")
    dataset = medmnist.PneumoniaMNIST(split="val", root=tmp_path)
    assert len(dataset) == 6
    img, target = dataset[2]
    assert img.dtype == np.uint8 and img.shape == (28, 28) and target.dtype == np.int64 and target.shape == (1,)
    np.testing.assert_array_equal(img, arrays["val_images"][2])
    assert target[0] == arrays["val_labels"][2, 0]
    rgb, _ = medmnist.PneumoniaMNIST(split="val", root=tmp_path, as_rgb=True)[2]
    assert rgb.shape == (28, 28, 3) and all(np.array_equal(rgb[..., c], img) for c in range(3))
    shifted = medmnist.PneumoniaMNIST(
        "val", transform=lambda x: x[:2], target_transform=lambda y: int(y[0]) + 10, root=tmp_path
    )
    img2, target2 = shifted[2]
    assert img2.shape == (2, 28) and target2 == target[0] + 10
    text = repr(dataset)
    assert text.startswith("Dataset PneumoniaMNIST of size 28 (pneumoniamnist)") and "Number of datapoints: 6" in text


def test_rgb_and_multi_label_flags(tmp_path):
    blood = write_file(tmp_path / "bloodmnist.npz", channels=3, n_classes=8)
    img, target = medmnist.BloodMNIST(split="test", root=tmp_path)[0]
    assert img.shape == (28, 28, 3) and to_tensor(img).shape == (3, 28, 28)
    np.testing.assert_array_equal(img, blood["test_images"][0])
    write_file(tmp_path / "chestmnist.npz", n_labels=14)
    _, target = medmnist.ChestMNIST(split="train", root=tmp_path)[1]
    assert target.shape == (14,) and target.dtype == np.int64


def test_getting_started_loop_runs_on_tinymed(tmp_path):
    """MedMNIST's getting-started notebook, cut to a few batches, with tinymed's imports."""
    write_file(tmp_path / "pneumoniamnist.npz", n=10)
    data_flag = "pneumoniamnist"
    info = INFO[data_flag]
    task, n_channels, n_classes = info["task"], info["n_channels"], len(info["label"])
    DataClass = getattr(medmnist, info["python_class"])
    train_dataset = DataClass(split="train", transform=to_tensor, root=tmp_path)
    test_dataset = DataClass(split="test", transform=to_tensor, root=tmp_path)
    train_loader = DataLoader(dataset=train_dataset, batch_size=4, shuffle=True)
    test_loader = DataLoader(dataset=test_dataset, batch_size=8, shuffle=False)

    tm.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(n_channels, 4, kernel_size=3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, n_classes)
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    for inputs, targets in train_loader:
        assert inputs.shape[1:] == (1, 28, 28) and inputs.dtype == tm.float32 and targets.shape[1:] == (1,)
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets.squeeze().long())
        loss.backward()
        optimizer.step()
    assert task == "binary-class"

    model.eval()
    with tm.no_grad():
        y_score = tm.cat([F.softmax(model(inputs), dim=-1) for inputs, _ in test_loader], 0)
    auc, acc = Evaluator(data_flag, "test", root=tmp_path).evaluate(y_score.numpy())
    assert 0 <= auc <= 1 and 0 <= acc <= 1


def test_evaluator_uses_medmnist_definitions(tmp_path):
    arrays = write_file(tmp_path / "pneumoniamnist.npz", n=4)
    arrays["test_labels"] = np.array([[0], [1], [1], [0]], dtype=np.uint8)
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    evaluator = Evaluator("pneumoniamnist", "test", root=tmp_path)
    # Positives score 0.8 and 0.4, negatives 0.1 and 0.4: 3 wins and a tie of 4 pairs; > 0.5 gets 3 of 4 right.
    scores = np.array([0.1, 0.8, 0.4, 0.4])
    assert evaluator.evaluate(scores) == (0.875, 0.75)
    metrics = evaluator.evaluate(np.stack([1 - scores, scores], axis=1), save_folder=tmp_path, run=3)
    assert metrics.AUC == 0.875 and metrics.ACC == 0.75
    saved = tmp_path / "pneumoniamnist_test_[AUC]0.875_[ACC]0.750@3.csv"
    assert saved.read_text().splitlines() == ["0,0.9,0.1", "1,0.19999999999999996,0.8", "2,0.6,0.4", "3,0.6,0.4"]

    blood = write_file(tmp_path / "bloodmnist.npz", n=8, channels=3, n_classes=8)
    blood["val_labels"] = np.arange(8, dtype=np.uint8)[:, None]
    np.savez(tmp_path / "bloodmnist.npz", **blood)
    y_score = np.eye(8)[[0, 1, 2, 3, 4, 5, 6, 6]]  # the last sample, class 7, is called 6
    auc, acc = Evaluator("bloodmnist", "val", root=tmp_path).evaluate(y_score)
    # One-vs-rest AUCs: classes 0-5 are perfect; class 6 ties its positive with one of 7
    # negatives (6.5 / 7); class 7 scores every sample 0 (one long tie: 0.5).
    assert auc == pytest.approx((6 + 6.5 / 7 + 0.5) / 8, rel=1e-12) and acc == 7 / 8
    with pytest.raises(ValueError, match="y_score has 2 rows but the pneumoniamnist test split has 4 samples"):
        evaluator.evaluate(scores[:2])


def test_montage(tmp_path):
    imgs = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3) * 8
    grid = montage2d(imgs, 1, np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(grid, np.block([[imgs[0], imgs[1]], [imgs[2], imgs[3]]]))
    padded = montage2d(imgs, 1, np.arange(5))
    assert padded.shape == (6, 9) and padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[2:4, 3:6], imgs[4])
    assert (padded[4:, :] == np.uint8(imgs.mean())).all()  # empty tiles: the images' mean
    rgb = np.stack([imgs, imgs + 1, imgs + 2], axis=-1)
    assert montage2d(rgb, 3, np.arange(4)).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="montage2d: imgs must be"):
        montage2d(rgb, 1, np.arange(4))

    write_file(tmp_path / "pneumoniamnist.npz", n=9)
    dataset = medmnist.PneumoniaMNIST(split="train", root=tmp_path)
    tm.manual_seed(1)
    first = dataset.montage(length=2, save_folder=tmp_path / "montages")
    tm.manual_seed(1)
    assert first.shape == (56, 56) and np.array_equal(dataset.montage(length=2), first)
    assert (tmp_path / "montages" / "pneumoniamnist_train_montage.jpg").stat().st_size > 0
    assert dataset.montage(length=3).shape == (84, 84)


def test_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"not found and downloading is off.*pneumoniamnist.npz\?download=1"):
        medmnist.PneumoniaMNIST(split="train", root=tmp_path)
    with pytest.raises(DatasetError, match="size=64 is not available"):
        medmnist.PneumoniaMNIST(split="train", root=tmp_path, size=64)
    with pytest.raises(DatasetError, match="split must be 'train', 'val' or 'test', got 'training'"):
        medmnist.PneumoniaMNIST(split="training", root=tmp_path)
    with pytest.raises(DatasetError, match="unknown flag 'mnist'"):
        Evaluator("mnist", "test", root=tmp_path)


def test_download_checks_the_md5_of_a_file_already_there(http_server, tmp_path, monkeypatch):  # noqa: F811
    base_url, served = http_server
    content = publish(served, monkeypatch)
    monkeypatch.setenv(URL_ENV_VAR, base_url)
    root = tmp_path / "root"
    root.mkdir()
    write_medmnist_file(root / "pneumoniamnist.npz", seed=5)  # a damaged or stale copy
    img, _ = medmnist.PneumoniaMNIST(split="test", root=root, download=True)[0]
    np.testing.assert_array_equal(img, content["test"][0][0])  # replaced by the verified download
    (served / "pneumoniamnist.npz").unlink()  # a good copy is kept without asking the server
    assert len(medmnist.PneumoniaMNIST(split="val", root=root, download=True)) == 6


@pytest.mark.skipif(REAL_FILE is None, reason="shared/data/pneumoniamnist_trainval.npz is not present")
def test_real_pneumoniamnist(tmp_path):
    (tmp_path / "pneumoniamnist.npz").symlink_to(REAL_FILE)
    for split in ("train", "val"):
        assert len(medmnist.PneumoniaMNIST(split=split, root=tmp_path)) == INFO["pneumoniamnist"]["n_samples"][split]
    val = medmnist.PneumoniaMNIST(split="val", root=tmp_path)
    labels = np.array([target[0] for _, target in val])
    assert np.bincount(labels).tolist() == [135, 389]
    evaluator = Evaluator("pneumoniamnist", "val", root=tmp_path)
    assert evaluator.evaluate(labels.astype(float)) == (1.0, 1.0)
    assert evaluator.evaluate(np.full(len(labels), 0.3)) == (0.5, 135 / 524)
    x, y = next(
        iter(DataLoader(medmnist.PneumoniaMNIST(split="train", root=tmp_path, transform=to_tensor), batch_size=32))
    )
    assert x.shape == (32, 1, 28, 28) and y.shape == (32, 1) and 0 <= x.numpy().min() and x.numpy().max() <= 1
