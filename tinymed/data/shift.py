"""The shift-proxy validation: the validation split as another hospital, scanner or year might
acquire it.

PneumoniaMNIST's validation split is drawn like its training split, and a good model saturates
it (AUC 0.99), so it cannot tell recipes apart; the official test split comes from other
patients, with another class balance. What transfers to unseen acquisitions is better
predicted by how the model holds up when the validation images themselves are perturbed the
way acquisitions differ. :data:`SHIFTS` lists those perturbations, each at fixed strengths
(from :mod:`tinymed.data.transforms`):

=========  ==========================================  ===========================
name       formula, x in [0, 1]                        what differs
=========  ==========================================  ===========================
contrast   clip(c (x - mean) + mean, 0, 1)             exposure, windowing
gamma      x ** g                                      detector response, display
blur       Gaussian, sigma pixels                      resolution, detector
zoom       magnify about the centre by s               field of view, distance
noise      clip(x + N(0, std^2), 0, 1)                 dose, detector noise
=========  ==========================================  ===========================

Each perturbed image is stored back as 8 bits, as a file from that other site would be. The
result is deterministic given the seed (only the noise draws from it). ``tinymed train cnn
--augment strong`` trains on all of these but noise, so the noise rows measure an
acquisition change the model has not been shown.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tinymed.data.loader import ImageDataset
from tinymed.data.transforms import add_gaussian_noise, adjust_contrast, adjust_gamma, gaussian_blur, zoom

__all__ = ["SHIFTS", "SHIFT_SEED", "perturb", "shifted", "shifted_splits"]

# Each perturbation's strengths: one milder and one harsher than the strong augmentation's
# range, in both directions where there are two (flatter and steeper contrast, brighter and
# darker mid-tones, zoomed out and in).
SHIFTS: dict[str, tuple[float, ...]] = {
    "contrast": (0.6, 1.5),
    "gamma": (0.6, 1.7),
    "blur": (0.6, 1.0),
    "zoom": (0.85, 1.15),
    "noise": (0.03, 0.06),
}

# The seed of the noise, the same for every run, so every run is read on the same images.
SHIFT_SEED = 0


def perturb(x: np.ndarray, name: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The images x ``(N, C, H, W)`` in [0, 1] under perturbation ``name`` of :data:`SHIFTS`
    at ``strength`` (rng draws the noise, and nothing else)."""
    if name == "contrast":
        return adjust_contrast(x, strength)
    if name == "gamma":
        return adjust_gamma(x, strength)
    if name == "blur":
        return gaussian_blur(x, strength)
    if name == "zoom":
        return zoom(x, strength)
    if name == "noise":
        return add_gaussian_noise(x, strength, rng)
    raise ValueError(f"perturb: unknown perturbation {name!r}; one of {', '.join(SHIFTS)}")


def shifted(dataset: ImageDataset, name: str, strength: float, seed: int = SHIFT_SEED) -> ImageDataset:
    """``dataset`` with every image perturbed (see :func:`perturb`) and stored as uint8 again;
    same labels, info and MD5 (it stands for the same data)."""
    images = dataset.images.astype(np.float64) / 255.0
    out = perturb(images, name, strength, np.random.default_rng(seed))
    stored = np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
    return ImageDataset(stored.transpose(0, 2, 3, 1), dataset.labels, dataset.info, dataset.md5)


def shifted_splits(dataset: ImageDataset, seed: int = SHIFT_SEED) -> Iterator[tuple[str, float, ImageDataset]]:
    """``(name, strength, perturbed dataset)`` for every perturbation and strength of :data:`SHIFTS`."""
    for name, strengths in SHIFTS.items():
        for strength in strengths:
            yield name, strength, shifted(dataset, name, strength, seed)
