"""tinymed.data: MedMNIST files and download, phantoms, transforms, DataLoader."""

import socket
from pathlib import Path

import numpy as np
import pytest
from helpers import publish, write_medmnist_file

from tinymed.data import (
    DataLoader,
    DatasetError,
    DatasetInfo,
    ImageDataset,
    load_dataset,
    load_medmnist,
    load_phantoms,
    make_phantoms,
    medmnist,
    read_npz_split,
)
from tinymed.data.transforms import (
    Compose,
    GaussianNoise,
    Normalize,
    RandomBrightnessContrast,
    RandomHorizontalFlip,
    RandomRotation,
    RandomShift,
    chest_xray_augmentation,
)
from tinymed.metrics import roc_auc_score

SHARED_PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist_trainval.npz"


# ---- reading MedMNIST files --------------------------------------------------------------


def test_read_official_layout(tmp_path):
    content = write_medmnist_file(tmp_path / "pneumoniamnist.npz")
    images, labels = load_medmnist("pneumoniamnist", "val", root=tmp_path, download=False)
    np.testing.assert_array_equal(images, content["val"][0])
    np.testing.assert_array_equal(labels, content["val"][1])
    dataset = load_dataset("pneumoniamnist", "val", data_dir=tmp_path, download=False)
    assert dataset.images.shape == (6, 1, 28, 28) and dataset.labels.shape == (6,)
    assert dataset.info.task == "binary-class" and dataset.info.labels == ("normal", "pneumonia")


def test_file_with_one_split_and_missing_split_error(tmp_path):
    path = tmp_path / "only_test.npz"
    write_medmnist_file(path, splits=("test",))
    assert load_dataset("pneumoniamnist", "test", data_file=path).images.shape == (6, 1, 28, 28)
    with pytest.raises(DatasetError, match=r"only_test\.npz has no train_images.*test_images, test_labels"):
        load_dataset("pneumoniamnist", "train", data_file=path)


@pytest.mark.parametrize("content", [b"this is not a zip file", b"PK\x03\x04 truncated"])
def test_corrupted_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "pneumoniamnist.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="is not a readable .npz file"):
        read_npz_split(path, "train")


def test_truncated_npz_is_a_clear_error(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    write_medmnist_file(path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="is not a readable .npz file"):
        read_npz_split(path, "train")


def test_wrong_arrays_are_clear_errors(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, train_images=np.zeros((3, 28, 28), np.float32), train_labels=np.zeros((3, 1)))
    with pytest.raises(DatasetError, match="must be uint8"):
        read_npz_split(path, "train")
    np.savez(path, train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.full((3, 1), 7))
    with pytest.raises(DatasetError, match=r"bad\.npz \(train\).*values in 0..1"):
        load_dataset("pneumoniamnist", "train", data_file=path)
    np.savez(path, train_images=np.zeros((3, 28, 28, 3), np.uint8), train_labels=np.zeros((3, 1)))
    with pytest.raises(DatasetError, match="1 channel"):
        load_dataset("pneumoniamnist", "train", data_file=path)


def test_rgb_flag_becomes_channels_first(tmp_path):
    path = tmp_path / "bloodmnist.npz"
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)
    np.savez(path, train_images=images, train_labels=np.array([[0], [7], [3], [1]], np.uint8))
    dataset = load_dataset("bloodmnist", "train", data_dir=tmp_path, download=False)
    assert dataset.images.shape == (4, 3, 28, 28)
    np.testing.assert_array_equal(dataset.images[1, 2], images[1, :, :, 2])
    assert len(dataset.info.labels) == 8


def test_unknown_names_and_missing_file_without_download(tmp_path):
    with pytest.raises(DatasetError, match="unknown data set 'mnist'.*phantoms.*pneumoniamnist"):
        load_dataset("mnist", "train")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset("phantoms", "training")
    with pytest.raises(DatasetError, match="data file not found"):
        load_dataset("pneumoniamnist", "train", data_file=tmp_path / "nope.npz")
    with pytest.raises(DatasetError, match="is a directory; --data takes the .npz file itself"):
        load_dataset("pneumoniamnist", "train", data_file=tmp_path)
    with pytest.raises(DatasetError) as error:
        load_dataset("pneumoniamnist", "train", data_dir=tmp_path, download=False)
    message = str(error.value)
    assert "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1" in message
    assert "28209eda62fecd6e6a2d98b1501bb15f" in message
    assert str(tmp_path / "pneumoniamnist.npz") in message


@pytest.mark.skipif(not SHARED_PNEUMONIA.exists(), reason=f"real data not found at {SHARED_PNEUMONIA}")
def test_shared_pneumoniamnist_file():
    train = load_dataset("pneumoniamnist", "train", data_file=SHARED_PNEUMONIA)
    val = load_dataset("pneumoniamnist", "val", data_file=SHARED_PNEUMONIA)
    assert train.images.shape == (4708, 1, 28, 28) and len(val) == 524
    np.testing.assert_array_equal(np.bincount(train.labels), [1214, 3494])
    np.testing.assert_array_equal(np.bincount(val.labels), [135, 389])
    with pytest.raises(DatasetError, match="has no test_images"):
        load_dataset("pneumoniamnist", "test", data_file=SHARED_PNEUMONIA)


# ---- downloading from a local HTTP server ------------------------------------------------


def test_download_verifies_md5_and_loads(http_server, tmp_path, monkeypatch):
    base_url, served = http_server
    content = publish(served, monkeypatch)
    root = tmp_path / "root"
    monkeypatch.setenv(medmnist.URL_ENV_VAR, base_url)  # the way a user points at a mirror
    dataset = load_dataset("pneumoniamnist", "test", data_dir=root)
    np.testing.assert_array_equal(dataset.images[:, 0], content["test"][0])
    assert sorted(p.name for p in root.iterdir()) == ["pneumoniamnist.npz"]


def test_download_with_bad_md5_leaves_no_file(http_server, tmp_path, monkeypatch):
    base_url, served = http_server
    publish(served, monkeypatch, md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as error:
        medmnist.download_medmnist("pneumoniamnist", root, base_url=base_url, progress=False)
    message = str(error.value)
    assert "0" * 32 in message and f"{base_url}/pneumoniamnist.npz?download=1" in message
    assert str(root / "pneumoniamnist.npz") in message
    assert list(root.iterdir()) == []


def test_download_from_a_server_that_is_down(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="cannot download pneumoniamnist.npz") as error:
        load_medmnist("pneumoniamnist", "train", root=root, base_url=base_url)
    message = str(error.value)
    assert f"{base_url}/pneumoniamnist.npz?download=1" in message
    assert "28209eda62fecd6e6a2d98b1501bb15f" in message and str(root / "pneumoniamnist.npz") in message
    assert list(root.iterdir()) == []


def test_download_of_a_missing_file_is_a_clear_error(http_server, tmp_path):
    base_url, _ = http_server
    with pytest.raises(DatasetError, match=r"cannot download pneumoniamnist.npz \(HTTP Error 404"):
        medmnist.download_medmnist("pneumoniamnist", tmp_path / "root", base_url=base_url, progress=False)


# ---- phantoms ----------------------------------------------------------------------------


def test_phantoms_layout_and_determinism():
    a, b = load_phantoms("val", seed=3, n=64), load_phantoms("val", seed=3, n=64)
    assert a.images.shape == (64, 28, 28) and a.images.dtype == np.uint8
    assert a.labels.shape == (64, 1) and a.masks.shape == (64, 28, 28) and a.boxes.shape == (64, 4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, load_phantoms("val", seed=4, n=64).images)
    assert not np.array_equal(a.images, load_phantoms("test", seed=3, n=64).images)
    assert a.labels.sum() == 32
    assert len(load_dataset("phantoms", "test")) == 500


def test_phantom_masks_and_boxes_agree_with_labels():
    p = make_phantoms(200, np.random.default_rng(0))
    positive = p.labels[:, 0] == 1
    assert p.masks[positive].any(axis=(1, 2)).all() and not p.masks[~positive].any()
    assert (p.boxes[~positive] == -1).all()
    for mask, (x0, y0, x1, y1) in zip(p.masks[positive], p.boxes[positive]):
        ys, xs = np.nonzero(mask)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_phantom_opacity_is_brighter_than_the_same_place_without_it():
    # The same draw with and without opacities differs only by the blob.
    rng_state = np.random.default_rng(7)
    with_blob = make_phantoms(100, np.random.default_rng(7), positive_fraction=1.0)
    without = make_phantoms(100, rng_state, positive_fraction=0.0)
    diff = with_blob.images.astype(int) - without.images.astype(int)
    assert (diff[with_blob.masks] > 0).mean() > 0.95
    assert np.abs(diff[~with_blob.masks]).mean() < 3


def test_phantoms_are_not_solved_by_mean_intensity():
    p = load_phantoms("train")
    mean_intensity = p.images.reshape(len(p.images), -1).mean(axis=1)
    assert roc_auc_score(p.labels[:, 0], mean_intensity) < 0.7


# ---- transforms --------------------------------------------------------------------------


def batch(n=4, c=1, h=9, w=9, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def test_shift_equals_pad_then_crop():
    x = batch(n=6, c=2)
    out = RandomShift(max_shift=2, fill=0.25)(x, np.random.default_rng(5))
    dy, dx = np.random.default_rng(5).integers(-2, 3, size=(2, 6, 1, 1))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=0.25)
    for i in range(6):
        top, left = 2 - dy[i, 0, 0], 2 - dx[i, 0, 0]
        np.testing.assert_array_equal(out[i], padded[i, :, top : top + 9, left : left + 9])
    assert out.dtype == np.float32


def test_rotation_by_90_degrees_is_rot90_and_zero_is_identity():
    x = batch(h=7, w=7)
    turned = RandomRotation(degrees=(90, 90))(x, np.random.default_rng(0))
    np.testing.assert_allclose(turned, np.rot90(x, k=1, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(RandomRotation(0)(x, np.random.default_rng(0)), x, atol=1e-6)


def test_rotation_bilinear_between_pixels():
    # 45 degrees about the centre of a 3x3 image: the corner (0, 0) reads the input at
    # distance sqrt(2) from the centre along the top edge's middle, (row 1 - sqrt 2, col 1).
    x = np.zeros((1, 1, 3, 3), np.float32)
    x[0, 0, 0, 1] = 1.0
    out = RandomRotation(degrees=(45, 45))(x, np.random.default_rng(0))
    a = np.sqrt(2) - 1  # fraction of the way from row 0 up to row -1 (outside, fill 0)
    assert out[0, 0, 0, 0] == pytest.approx(1 - a, abs=1e-6)


def test_flip_brightness_noise_normalize():
    x = batch(n=8)
    rng = np.random.default_rng
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x, rng(0)), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x, rng(0)), x)
    np.testing.assert_allclose(RandomBrightnessContrast(0.0, 0.0)(x, rng(0)), x, atol=1e-6)
    jittered = RandomBrightnessContrast(0.5, 0.5)(x, rng(0))
    assert jittered.min() >= 0 and jittered.max() <= 1 and not np.allclose(jittered, x)
    noise = GaussianNoise(std=0.1)(np.zeros((50, 1, 20, 20), np.float32), rng(0))
    assert noise.std() == pytest.approx(0.1, rel=0.05)
    np.testing.assert_allclose(Normalize(0.5, 0.5)(x), (x - 0.5) / 0.5, atol=1e-6)
    two = Normalize([0.0, 1.0], [1.0, 2.0])(batch(c=2))
    np.testing.assert_allclose(two[:, 1], (batch(c=2)[:, 1] - 1.0) / 2.0, atol=1e-6)


def test_transforms_are_reproducible_and_reject_bad_input():
    pipeline = Compose([chest_xray_augmentation(), GaussianNoise(0.01), Normalize()])
    x = batch(n=5, h=28, w=28)
    rng = np.random.default_rng
    np.testing.assert_array_equal(pipeline(x, rng(1)), pipeline(x, rng(1)))
    assert not np.array_equal(pipeline(x, rng(1)), pipeline(x, rng(2)))
    assert not any(isinstance(t, RandomHorizontalFlip) for t in chest_xray_augmentation().transforms)
    with pytest.raises(ValueError, match=r"RandomShift: expects a float NumPy batch \(N, C, H, W\)"):
        RandomShift()(np.zeros((28, 28), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="Normalize: mean has 2 values for 1 channels"):
        Normalize([0.5, 0.5], 0.5)(x)


# ---- DataLoader --------------------------------------------------------------------------


def indexed_dataset(n=50, labels=None):
    """Image i carries i in its first two pixels, so a batch tells which samples it holds."""
    images = np.zeros((n, 4, 4), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    labels = np.arange(n) % 2 if labels is None else labels
    return ImageDataset(images, labels, DatasetInfo("indexed", "binary-class", ("a", "b"), 1))


def indices(images):
    pixels = np.round(images[:, 0, 0, :2] * 255).astype(int)
    return pixels[:, 0] * 256 + pixels[:, 1]


def epoch_indices(loader):
    return np.concatenate([indices(images) for images, _ in loader])


def test_loader_batches_dtypes_and_len():
    loader = DataLoader(indexed_dataset(50), batch_size=16)
    batches = list(loader)
    assert len(loader) == len(batches) == 4 and [len(b[1]) for b in batches] == [16, 16, 16, 2]
    images, labels = batches[0]
    assert images.dtype == np.float32 and images.shape == (16, 1, 4, 4) and labels.dtype == np.int64
    np.testing.assert_array_equal(epoch_indices(loader), np.arange(50))
    dropping = DataLoader(indexed_dataset(50), batch_size=16, drop_last=True)
    assert len(dropping) == len(list(dropping)) == 3


def test_loader_shuffle_is_reproducible_per_epoch():
    a = DataLoader(indexed_dataset(), batch_size=8, shuffle=True, seed=0)
    first, second = epoch_indices(a), epoch_indices(a)
    np.testing.assert_array_equal(np.sort(first), np.arange(50))
    assert not np.array_equal(first, second)
    b = DataLoader(indexed_dataset(), batch_size=8, shuffle=True, seed=0)
    b.set_epoch(1)  # a resumed run re-creates epoch 1 directly
    np.testing.assert_array_equal(epoch_indices(b), second)
    assert not np.array_equal(epoch_indices(DataLoader(indexed_dataset(), 8, shuffle=True, seed=1)), first)


def test_loader_transform_is_reproducible_per_epoch():
    def make():
        return DataLoader(indexed_dataset(), batch_size=8, shuffle=True, seed=0, transform=GaussianNoise(0.1))

    a, b = make(), make()
    b.set_epoch(0)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_loader_balanced_sampling():
    labels = (np.arange(1000) < 100).astype(int)  # 10% positives
    loader = DataLoader(indexed_dataset(1000, labels), batch_size=100, seed=0, balanced=True)
    drawn = np.concatenate([y for _, y in loader])
    assert len(drawn) == 1000 and 0.44 < drawn.mean() < 0.56
    with pytest.raises(ValueError, match="use shuffle=False with balanced=True"):
        DataLoader(indexed_dataset(), shuffle=True, balanced=True)


def test_dataset_item_and_label_checks():
    dataset = indexed_dataset(10)
    image, label = dataset[3]
    assert image.shape == (1, 4, 4) and label == 1 and image[0, 0, 1] == pytest.approx(3 / 255)
    with pytest.raises(ValueError, match="labels must be"):
        ImageDataset(np.zeros((3, 4, 4), np.uint8), np.array([0, 1]), DatasetInfo("x", "binary-class", ("a", "b"), 1))
