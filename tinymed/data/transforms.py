"""Data augmentation on batches of images, in NumPy, reproducible from a seed.

Every transform is called as ``transform(x, rng)``: x is a float batch ``(N, C, H, W)``
(values in [0, 1] before :class:`Normalize`), rng a ``numpy.random.Generator`` that supplies
all its randomness, so the same generator state gives the same augmented batch. Each image
of the batch draws its own parameters, and the whole batch is transformed at once.

Geometric transforms resample the image through a coordinate map: for each output pixel,
the (fractional) input position it comes from. :func:`_resample` reads the input there by
bilinear interpolation, and positions outside the image read ``fill``.

The deterministic perturbations (:func:`adjust_contrast`, :func:`adjust_gamma`,
:func:`gaussian_blur`, :func:`zoom`, :func:`add_gaussian_noise`) take one strength, or one per
image; the random transforms draw those per-image strengths, and the shift-proxy validation
(:mod:`tinymed.data.shift`) applies fixed ones.

:func:`chest_xray_augmentation` is the recommended pipeline for chest radiographs. It has
no horizontal flip: a flipped chest X-ray puts the heart on the wrong side (dextrocardia,
a rare anomaly), so flips teach the model anatomy that does not occur; on PneumoniaMNIST
they lowered validation AUC. :class:`RandomHorizontalFlip` exists for other images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "Compose",
    "RandomShift",
    "RandomRotation",
    "RandomHorizontalFlip",
    "RandomBrightnessContrast",
    "GaussianNoise",
    "RandomGamma",
    "RandomGaussianBlur",
    "RandomZoom",
    "Normalize",
    "adjust_contrast",
    "adjust_gamma",
    "gaussian_blur",
    "zoom",
    "add_gaussian_noise",
    "AUGMENTATIONS",
    "chest_xray_augmentation",
]

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _check_batch(name: str, x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name}: expects a float NumPy batch (N, C, H, W), got "
            f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}"
        )


def _resample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: float) -> np.ndarray:
    """Bilinear sampling: ``out[n, c, i, j] = x[n, c, rows[n, i, j], cols[n, i, j]]``.

    rows, cols ``(N, H, W)`` are fractional input positions. With ``r0 = floor(row)``,
    ``a = row - r0`` (likewise ``c0``, ``b``)::

        out = (1-a)(1-b) x[r0, c0] + (1-a) b x[r0, c0+1] + a (1-b) x[r0+1, c0] + a b x[r0+1, c0+1]

    and a neighbour outside the image contributes ``fill``. Integer positions copy pixels
    exactly.
    """
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    r0, c0 = np.floor(rows), np.floor(cols)
    a, b = (rows - r0)[:, None], (cols - c0)[:, None]
    r0, c0 = r0.astype(np.int64), c0.astype(np.int64)

    def neighbour(dr: int, dc: int) -> np.ndarray:
        r, q = r0 + dr, c0 + dc
        inside = ((r >= 0) & (r < h) & (q >= 0) & (q < w))[:, None]
        index = (np.clip(r, 0, h - 1) * w + np.clip(q, 0, w - 1)).reshape(n, 1, h * w)
        values = np.take_along_axis(flat, index, axis=2).reshape(n, c, h, w)
        return np.where(inside, values, fill)

    out = (
        (1 - a) * (1 - b) * neighbour(0, 0)
        + (1 - a) * b * neighbour(0, 1)
        + a * (1 - b) * neighbour(1, 0)
        + a * b * neighbour(1, 1)
    )
    return out.astype(x.dtype)


def _pixel_grid(n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.broadcast_to(rows, (n, h, w)), np.broadcast_to(cols, (n, h, w))


def _per_image(value: float | np.ndarray, n: int) -> np.ndarray:
    """One strength for every image, or one per image, as a float64 ``(N, 1, 1, 1)`` array."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (n,)).reshape(n, 1, 1, 1)


def adjust_contrast(x: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """``clip(c (x - m) + m, 0, 1)`` with m the image's mean: torchvision's ``adjust_contrast``
    for a grayscale image. c = 1 is the identity (up to the clip), c < 1 flattens, c > 1
    stretches. x ``(N, C, H, W)`` in [0, 1]; factor a number or ``(N,)``."""
    _check_batch("adjust_contrast", x)
    c = _per_image(factor, x.shape[0])
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(c * (x - mean) + mean, 0.0, 1.0).astype(x.dtype)


def adjust_gamma(x: np.ndarray, gamma: float | np.ndarray) -> np.ndarray:
    """``x ** gamma`` on [0, 1] (torchvision's ``adjust_gamma`` with gain 1): gamma < 1 brightens
    the mid-tones, gamma > 1 darkens them, 0 and 1 stay fixed. A different detector response
    or display curve. gamma a positive number or ``(N,)``."""
    _check_batch("adjust_gamma", x)
    g = _per_image(gamma, x.shape[0])
    if (g <= 0).any():
        raise ValueError(f"adjust_gamma: gamma must be positive, got {np.unique(g)[:5].tolist()}")
    return (np.clip(x, 0.0, 1.0) ** g).astype(x.dtype)


def gaussian_blur(x: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Separable Gaussian blur, ``sigma`` in pixels (a number or ``(N,)``; 0 is the identity):
    each axis is convolved with ``w_k = exp(-k^2 / (2 sigma^2)) / sum``, k in ``-r..r``,
    ``r = ceil(3 max sigma)``, edges replicated. A softer detector or a lower resolution."""
    _check_batch("gaussian_blur", x)
    n, _, h, w = x.shape
    s = _per_image(sigma, n)[:, 0, 0, 0]
    if (s < 0).any():
        raise ValueError(f"gaussian_blur: sigma must be >= 0, got {np.unique(s)[:5].tolist()}")
    radius = int(np.ceil(3 * s.max()))
    if radius == 0:
        return x.copy()
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    # A tiny sigma makes every weight but the centre's 0: the identity, without dividing by 0.
    weights = np.exp(-(k**2) / (2 * np.maximum(s, 1e-6)[:, None] ** 2))
    weights = (weights / weights.sum(axis=1, keepdims=True))[:, :, None, None, None]
    out = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="edge")
    out = sum(weights[:, i] * out[:, :, i : i + h, :] for i in range(2 * radius + 1))
    out = np.pad(out, ((0, 0), (0, 0), (0, 0), (radius, radius)), mode="edge")
    out = sum(weights[:, i] * out[:, :, :, i : i + w] for i in range(2 * radius + 1))
    return out.astype(x.dtype)


def zoom(x: np.ndarray, scale: float | np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Magnifies each image about its centre by ``scale`` (a number or ``(N,)``; > 1 zooms in,
    < 1 out, uncovered pixels read fill): output pixel p reads the input at
    ``(p - centre) / scale + centre``, bilinearly. A different field of view or patient
    distance."""
    _check_batch("zoom", x)
    n, _, h, w = x.shape
    s = _per_image(scale, n)[:, 0]
    if (s <= 0).any():
        raise ValueError(f"zoom: scale must be positive, got {np.unique(s)[:5].tolist()}")
    rows, cols = _pixel_grid(n, h, w)
    src_rows = (rows - (h - 1) / 2) / s + (h - 1) / 2
    src_cols = (cols - (w - 1) / 2) / s + (w - 1) / 2
    return _resample(x, src_rows, src_cols, fill)


def add_gaussian_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``clip(x + N(0, std^2), 0, 1)`` per pixel: a noisier detector or a lower dose."""
    _check_batch("add_gaussian_noise", x)
    return np.clip(x + std * rng.standard_normal(x.shape), 0.0, 1.0).astype(x.dtype)


class Compose:
    """Applies transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomShift:
    """Translates each image by a whole number of pixels, up to max_shift in each direction.

    The same as torchvision's ``RandomCrop(size, padding=max_shift, fill=fill)``: pad by
    max_shift, then crop a random window of the original size. Offsets are uniform in
    ``-max_shift..max_shift``; uncovered pixels read fill.
    """

    def __init__(self, max_shift: int = 2, fill: float = 0.0):
        if max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be >= 0, got {max_shift}")
        self.max_shift, self.fill = int(max_shift), fill

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomShift", x)
        n, _, h, w = x.shape
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=(2, n, 1, 1))
        rows, cols = _pixel_grid(n, h, w)
        return _resample(x, rows - dy, cols - dx, self.fill)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill})"


class RandomRotation:
    """Rotates each image about its centre by an angle drawn uniformly from degrees.

    degrees: a number d for ``[-d, d]``, or a pair ``(min, max)``; positive angles turn the
    image counter-clockwise, as torchvision. Output pixel p reads the input at
    ``R(-angle) (p - centre) + centre``, bilinearly; outside the image reads fill.
    """

    def __init__(self, degrees: float | tuple[float, float] = 10.0, fill: float = 0.0):
        low, high = (-abs(degrees), abs(degrees)) if np.isscalar(degrees) else degrees
        if low > high:
            raise ValueError(f"RandomRotation: degrees must be d or (min, max) with min <= max, got {degrees}")
        self.degrees, self.fill = (float(low), float(high)), fill

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomRotation", x)
        n, _, h, w = x.shape
        theta = np.deg2rad(rng.uniform(*self.degrees, size=(n, 1, 1)))
        rows, cols = _pixel_grid(n, h, w)
        # Rows grow downwards, so a counter-clockwise turn on screen is clockwise in (col, row).
        dy, dx = rows - (h - 1) / 2, cols - (w - 1) / 2
        cos, sin = np.cos(theta), np.sin(theta)
        src_cols = cos * dx - sin * dy + (w - 1) / 2
        src_rows = sin * dx + cos * dy + (h - 1) / 2
        return _resample(x, src_rows, src_cols, self.fill)

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees}, fill={self.fill})"


class RandomHorizontalFlip:
    """Mirrors each image left-right with probability p.

    Not for chest X-rays (see the module docstring): a mirrored chest has its heart on the
    wrong side.
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomHorizontalFlip", x)
        flip = rng.random(x.shape[0]) < self.p
        return np.where(flip[:, None, None, None], x[..., ::-1], x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomBrightnessContrast:
    """Exposure and contrast changes, as torchvision's ColorJitter for a grayscale image::

        x' = clip(c * (b x - m) + m, 0, 1),   m = mean of b x over the image

    with the brightness factor b uniform in ``[1 - brightness, 1 + brightness]`` (an
    intensity scaling, like a change of exposure) and the contrast factor c uniform in
    ``[1 - contrast, 1 + contrast]``, per image. Expects values in [0, 1].
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1):
        if not (0.0 <= brightness < 1.0 and 0.0 <= contrast < 1.0):
            raise ValueError(
                f"RandomBrightnessContrast: brightness and contrast must be in [0, 1), got {brightness} and {contrast}"
            )
        self.brightness, self.contrast = brightness, contrast

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("RandomBrightnessContrast", x)
        b = rng.uniform(1 - self.brightness, 1 + self.brightness, size=(x.shape[0], 1, 1, 1))
        c = rng.uniform(1 - self.contrast, 1 + self.contrast, size=(x.shape[0], 1, 1, 1))
        return adjust_contrast(b * x, c[:, 0, 0, 0]).astype(x.dtype)

    def __repr__(self) -> str:
        return f"RandomBrightnessContrast(brightness={self.brightness}, contrast={self.contrast})"


class GaussianNoise:
    """Adds independent noise ``N(0, std^2)`` to every pixel (not clipped)."""

    def __init__(self, std: float = 0.02):
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be >= 0, got {std}")
        self.std = std

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch("GaussianNoise", x)
        return (x + self.std * rng.standard_normal(x.shape)).astype(x.dtype)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class RandomGamma:
    """:func:`adjust_gamma` with gamma log-uniform in ``[1 / max_gamma, max_gamma]`` per image,
    so brightening and darkening are equally likely."""

    def __init__(self, max_gamma: float = 1.5):
        if max_gamma < 1:
            raise ValueError(f"RandomGamma: max_gamma must be >= 1, got {max_gamma}")
        self.max_gamma = max_gamma

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bound = np.log(self.max_gamma)
        return adjust_gamma(x, np.exp(rng.uniform(-bound, bound, size=x.shape[0])))

    def __repr__(self) -> str:
        return f"RandomGamma(max_gamma={self.max_gamma})"


class RandomGaussianBlur:
    """:func:`gaussian_blur` with sigma uniform in ``[0, max_sigma]`` pixels per image."""

    def __init__(self, max_sigma: float = 0.8):
        if max_sigma < 0:
            raise ValueError(f"RandomGaussianBlur: max_sigma must be >= 0, got {max_sigma}")
        self.max_sigma = max_sigma

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return gaussian_blur(x, rng.uniform(0.0, self.max_sigma, size=x.shape[0]))

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(max_sigma={self.max_sigma})"


class RandomZoom:
    """:func:`zoom` with the scale uniform in ``scale = (min, max)`` per image."""

    def __init__(self, scale: tuple[float, float] = (0.9, 1.1), fill: float = 0.0):
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"RandomZoom: scale must be (min, max) with 0 < min <= max, got {scale}")
        self.scale, self.fill = (float(scale[0]), float(scale[1])), fill

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return zoom(x, rng.uniform(*self.scale, size=x.shape[0]), self.fill)

    def __repr__(self) -> str:
        return f"RandomZoom(scale={self.scale}, fill={self.fill})"


class Normalize:
    """``x' = (x - mean) / std`` per channel, as torchvision's Normalize; deterministic.

    mean, std: one number for every channel, or one per channel. MedMNIST's reference
    training uses mean 0.5, std 0.5, mapping [0, 1] to [-1, 1].
    """

    def __init__(self, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5):
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if (self.std <= 0).any():
            raise ValueError(f"Normalize: std must be positive, got {std}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_batch("Normalize", x)
        for name, stat in (("mean", self.mean), ("std", self.std)):
            if stat.size not in (1, x.shape[1]):
                raise ValueError(f"Normalize: {name} has {stat.size} values for {x.shape[1]} channels")
        mean, std = self.mean[None, :, None, None], self.std[None, :, None, None]
        return ((x - mean) / std).astype(x.dtype)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


# The strengths of chest_xray_augmentation, weakest first (``tinymed train cnn --augment``).
AUGMENTATIONS = ("none", "light", "strong")


def chest_xray_augmentation(flip: bool = False, strength: str = "light") -> Compose:
    """The augmentation recommended for chest radiographs: variations a real acquisition
    has, no flip unless asked for (see the module docstring). Apply :class:`Normalize` after it.

    ``"light"``: the patient rotated by up to 10 degrees, off-centre by up to 2 pixels,
    exposure and contrast within 10 %. ``"strong"`` adds what another scanner or hospital
    changes (the shift-proxy validation's perturbations but noise, which stays unseen): zoom
    0.9 to 1.1, contrast within 30 %, gamma 1/1.5 to 1.5 and blur up to sigma 0.8 pixels.
    ``"none"``: no transform.
    """
    if strength not in AUGMENTATIONS:
        raise ValueError(
            f"chest_xray_augmentation: strength must be one of {', '.join(AUGMENTATIONS)}, got {strength!r}"
        )
    transforms: list[Transform] = []
    if strength == "light":
        transforms = [RandomRotation(10.0), RandomShift(2), RandomBrightnessContrast(0.1, 0.1)]
    elif strength == "strong":
        transforms = [
            RandomRotation(10.0),
            RandomZoom((0.9, 1.1)),
            RandomShift(2),
            RandomBrightnessContrast(0.1, 0.3),
            RandomGamma(1.5),
            RandomGaussianBlur(0.8),
        ]
    if flip:
        transforms.append(RandomHorizontalFlip())
    return Compose(transforms)
