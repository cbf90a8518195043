"""The acquisition perturbations of the shift-proxy validation and the strong augmentation:
identities where they should be, what they claim to do, in range, deterministic."""

import numpy as np
import pytest

from tinymed.data import DatasetInfo, ImageDataset, chest_xray_augmentation
from tinymed.data.shift import SHIFTS, shifted, shifted_splits
from tinymed.data.transforms import add_gaussian_noise, adjust_contrast, adjust_gamma, gaussian_blur, zoom

RNG = np.random.default_rng(0)
X = RNG.random((4, 1, 28, 28)).astype(np.float32)


def _dataset(n=8):
    images = np.random.default_rng(1).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return ImageDataset(images, np.arange(n) % 2, DatasetInfo("tiny", "binary-class", ("a", "b"), n_channels=1))


def _high_frequency_energy(x):
    spectrum = np.abs(np.fft.fft2(x[:, 0])) ** 2
    frequencies = np.abs(np.fft.fftfreq(28))
    high = (frequencies[:, None] > 0.25) | (frequencies[None, :] > 0.25)
    return spectrum[:, high].sum()


def test_unit_strengths_are_the_identity():
    np.testing.assert_allclose(adjust_contrast(X, 1.0), X, atol=1e-6)
    np.testing.assert_array_equal(adjust_gamma(X, 1.0), X)
    np.testing.assert_array_equal(gaussian_blur(X, 0.0), X)
    np.testing.assert_allclose(zoom(X, 1.0), X, atol=1e-6)
    np.testing.assert_array_equal(add_gaussian_noise(X, 0.0, np.random.default_rng(0)), X)


def test_each_perturbation_does_what_it_says():
    assert _high_frequency_energy(gaussian_blur(X, 1.0)) < 0.1 * _high_frequency_energy(X)
    np.testing.assert_allclose(adjust_contrast(X, 0.5).std(axis=(1, 2, 3)), 0.5 * X.std(axis=(1, 2, 3)), rtol=1e-5)
    assert (adjust_gamma(X, 0.5) >= X).all() and (adjust_gamma(X, 2.0) <= X).all()
    # Zoom 2 about the centre: the centre pixel pair stays, the edges come from the middle.
    zoomed = zoom(X, 2.0)
    assert zoomed[:, :, 0, 0] == pytest.approx(0.5 * (X[:, :, 6, 6] + X[:, :, 7, 7]), abs=0.5)
    assert (zoom(X, 0.5)[:, :, 0, :] == 0).all()  # zoomed out: the border reads fill
    per_image = gaussian_blur(X, np.array([0.0, 1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(per_image[0], X[0])
    # Alone, sigma 1 gets a radius of 3 pixels, in this batch the largest sigma's 6: the
    # Gaussian's tail beyond 3 sigma is all that differs.
    np.testing.assert_allclose(per_image[1], gaussian_blur(X[1:2], 1.0)[0], atol=1e-3)


@pytest.mark.parametrize("name", list(SHIFTS))
def test_shifted_splits_stay_in_range_and_are_deterministic(name):
    dataset = _dataset()
    for strength in SHIFTS[name]:
        once, again = shifted(dataset, name, strength), shifted(dataset, name, strength)
        assert once.images.dtype == np.uint8 and once.images.shape == dataset.images.shape
        np.testing.assert_array_equal(once.images, again.images)
        np.testing.assert_array_equal(once.labels, dataset.labels)
        assert not np.array_equal(once.images, dataset.images)
    if name == "noise":
        assert not np.array_equal(shifted(dataset, name, 0.06, seed=1).images, shifted(dataset, name, 0.06).images)


def test_shifted_splits_cover_every_strength():
    conditions = [(name, strength) for name, strength, _ in shifted_splits(_dataset())]
    assert conditions == [(name, s) for name, strengths in SHIFTS.items() for s in strengths]


def test_strong_augmentation_is_reproducible_and_stays_in_range():
    strong = chest_xray_augmentation(strength="strong")
    a, b = strong(X, np.random.default_rng(3)), strong(X, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == X.dtype and a.min() >= 0.0 and a.max() <= 1.0
    assert len(strong.transforms) > len(chest_xray_augmentation().transforms)
    assert chest_xray_augmentation(strength="none").transforms == []
    with pytest.raises(ValueError, match="strength must be one of none, light, strong"):
        chest_xray_augmentation(strength="heavy")
