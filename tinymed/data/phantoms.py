"""Phantoms: synthetic chest X-rays with and without a lung opacity, generated from a seed.

The built-in data set that needs no download. Each 28x28 image is a frontal chest
radiograph drawn from a few smooth shapes, bright where tissue absorbs X-rays, dark where
air lets them through::

    intensity = exposure * (background + tissue * body - depth * lungs (part hidden by the heart)
                            + mediastinum + ribs within the lungs + opacity)
                * slow gradient + offset + noise

Half the images (label 1) carry an opacity: a brighter Gaussian blob, of random size and
contrast, centred inside one lung, as fluid or consolidation looks on a radiograph. Its mask
(where the blob reaches half its peak) and bounding box are kept for segmentation and
detection. Patient size, position, exposure and noise vary more than the blob adds to the
mean brightness, so a classifier must find the blob rather than read overall intensity.

The layout is MedMNIST's: images uint8 ``(N, 28, 28)``, labels uint8 ``(N, 1)``, splits
``train``, ``val``, ``test``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Phantoms", "make_phantoms", "load_phantoms", "DEFAULT_SIZES", "TASK", "LABELS"]

TASK = "binary-class"
LABELS = ("normal", "opacity")
DEFAULT_SIZES = {"train": 2000, "val": 500, "test": 500}
_SPLITS = tuple(DEFAULT_SIZES)


@dataclass(frozen=True)
class Phantoms:
    """A batch of phantoms.

    images uint8 ``(N, H, W)``; labels uint8 ``(N, 1)`` (1 = opacity); masks bool
    ``(N, H, W)``, the opacity's pixels (all False for label 0); boxes int64 ``(N, 4)``,
    ``(x_min, y_min, x_max, y_max)`` with the max exclusive, so the box is
    ``mask[y_min:y_max, x_min:x_max]``, and ``-1`` everywhere for label 0.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _ellipse(u, v, cu, cv, au, av, edge: float) -> np.ndarray:
    """A soft ellipse: about 1 inside, 0 outside, blurred over ``edge`` (in units of the radius)."""
    r = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2)
    return _sigmoid((1.0 - r) / edge)


def _boxes(masks: np.ndarray) -> np.ndarray:
    """``(x_min, y_min, x_max, y_max)`` of each mask, max exclusive; -1 for an empty mask."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    h, w = masks.shape[1:]
    boxes = np.stack([cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], axis=1)
    boxes[~rows.any(axis=1)] = -1
    return boxes.astype(np.int64)


def make_phantoms(n: int, rng: np.random.Generator, size: int = 28, positive_fraction: float = 0.5) -> Phantoms:
    """Draws n phantoms of ``size x size`` pixels, ``round(n * positive_fraction)`` of them
    with an opacity, in a random order. All n are drawn at once: every parameter below is an
    ``(n, 1, 1)`` array that broadcasts against the ``(size, size)`` pixel grid. It is long
    because it reads as one picture built top to bottom (body, lungs, heart, ribs, opacity,
    exposure), each step using the random draws of the steps before.
    """
    if n < 0 or size < 8 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(
            f"make_phantoms: needs n >= 0, size >= 8 and 0 <= positive_fraction <= 1, "
            f"got n={n}, size={size}, positive_fraction={positive_fraction}"
        )

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=(n, 1, 1))

    # Pixel centres in [-1, 1]: u runs left to right, v top to bottom. The patient's left
    # is on the image's right, as radiographs are read, so the heart bulges to the right.
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    u, v = grid[None, None, :], grid[None, :, None]

    cu, cv = uniform(-0.06, 0.06), uniform(-0.04, 0.08)
    body = _ellipse(u, v, cu, cv, uniform(0.82, 0.98), uniform(1.05, 1.25), edge=0.05)

    half_gap, lung_v = uniform(0.36, 0.46), cv + uniform(-0.16, -0.04)
    lung_au, lung_av = uniform(0.24, 0.32), uniform(0.48, 0.62)
    lung_centres = (cu - half_gap, cu + half_gap)
    lungs = sum(_ellipse(u, v, lu, lung_v, lung_au, lung_av, edge=0.08) for lu in lung_centres)

    # The heart lies in front of the lower part of the patient's left lung (image right)
    # and hides part of it.
    heart = _ellipse(
        u, v, cu + uniform(0.06, 0.16), cv + uniform(0.22, 0.36), uniform(0.22, 0.32), uniform(0.16, 0.24), edge=0.12
    )
    lungs = lungs * (1.0 - uniform(0.5, 0.8) * heart)
    mediastinum = _sigmoid((uniform(0.07, 0.13) - np.abs(u - cu)) / 0.04)
    # Posterior ribs: bright arcs curving down towards the sides, seen through the lungs.
    arc = (v - uniform(0.15, 0.35) * (u - cu) ** 2 - uniform(0.0, 1.0)) / uniform(0.26, 0.34)
    ribs = (0.5 + 0.5 * np.cos(2.0 * np.pi * arc)) ** 4 * lungs

    depth = uniform(0.30, 0.45)
    image = (
        uniform(0.02, 0.12)
        + uniform(0.55, 0.72) * body
        - depth * lungs
        + uniform(0.06, 0.14) * mediastinum * body
        + uniform(0.05, 0.12) * ribs
    )

    # The opacity: a Gaussian blob centred in a random lung, at most 0.7 of its radii out.
    n_positive = int(round(n * positive_fraction))
    labels = rng.permutation(np.arange(n) < n_positive)
    side = np.where(rng.random((n, 1, 1)) < 0.5, *lung_centres)
    angle, reach = uniform(0.0, 2.0 * np.pi), 0.7 * np.sqrt(uniform(0.0, 1.0))
    du = u - (side + reach * lung_au * np.cos(angle))
    dv = v - (lung_v + reach * lung_av * np.sin(angle))
    sigma = uniform(0.09, 0.2)
    blob = np.exp(-(du**2 + (dv * uniform(0.75, 1.33)) ** 2) / (2.0 * sigma**2))
    blob *= labels[:, None, None]
    image = image + depth * uniform(0.5, 0.9) * blob

    # Acquisition: exposure, a slow gradient across the film, quantum noise.
    image = image * uniform(0.8, 1.15) * (1.0 + uniform(-0.12, 0.12) * u + uniform(-0.12, 0.12) * v)
    image = image + uniform(-0.06, 0.06) + uniform(0.015, 0.035) * rng.standard_normal((n, size, size))

    masks = blob > 0.5
    return Phantoms(
        images=np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8),
        labels=labels.astype(np.uint8)[:, None],
        masks=masks,
        boxes=_boxes(masks),
    )


def load_phantoms(split: str, seed: int = 0, n: int | None = None) -> Phantoms:
    """One split of the phantom data set: n images (default 2000/500/500 for
    train/val/test), drawn from a generator seeded by ``(seed, split)`` so the splits are
    independent of each other and identical on every machine."""
    if split not in _SPLITS:
        raise ValueError(f"load_phantoms: unknown split {split!r}; the splits are: {', '.join(_SPLITS)}")
    rng = np.random.default_rng([seed, _SPLITS.index(split)])
    return make_phantoms(DEFAULT_SIZES[split] if n is None else n, rng)
