"""Repairing an image with a trained GAN: inpainting by optimising the latent vector.

A trained generator maps every latent vector z to a plausible image. To fill a hole in an
image y, look for the z whose image agrees with y where y is known (Yeh et al., "Semantic
image inpainting with deep generative models", CVPR 2017)::

    z* = argmin_z  sum_known |G(z) - y| / n_known                 contextual loss: agree with y
                   + adversarial_weight * softplus(-D(G(z)))        = -log D(G(z)): look real
                   + prior_weight * |z|^2 / (2 latent_dim)          = -log N(z; 0, I): stay typical

The generator and discriminator stay fixed; only z moves, by gradient descent through both
networks (tinymed's autograd computes d loss / d z exactly as it computes weight gradients
in training). Several starting points are optimised at once, as one batch, and the one that
fits the known pixels best wins. The repaired image is y where y is known and G(z*) in the
hole, so the known pixels never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinymed
import tinymed.functional as F
from tinymed import optim
from tinymed.errors import RepairError
from tinymed.models.dcgan import DCGAN

__all__ = ["MASKS", "RepairError", "RepairResult", "make_mask", "inpaint"]

MASKS = ("box", "random")


def make_mask(
    kind: str, shape: tuple[int, int], rng: np.random.Generator, box_size: int = 10, missing: float = 0.6
) -> np.ndarray:
    """Which pixels are known: a boolean ``(H, W)`` array, False in the hole.

    ``box``: a ``box_size`` square hole at a random position inside the image; ``random``:
    each pixel missing with probability ``missing``.
    """
    h, w = shape
    if kind == "box":
        if box_size < 1:
            raise RepairError(f"repair: --box-size must be at least 1 pixel, got {box_size}")
        if box_size >= h and box_size >= w:
            raise RepairError(
                f"repair: a {box_size}x{box_size} box covers the whole {h}x{w} image; "
                f"nothing known is left to repair from"
            )
        known = np.ones(shape, dtype=bool)
        top, left = (int(rng.integers(0, max(n - box_size, 0) + 1)) for n in (h, w))
        known[top : top + box_size, left : left + box_size] = False
    elif kind == "random":
        if not 0.0 < missing < 1.0:
            raise RepairError(f"repair: --missing must be a fraction between 0 and 1 (exclusive), got {missing}")
        known = rng.random(shape) >= missing
    else:
        raise RepairError(f"repair: unknown mask {kind!r}; the masks are: {', '.join(MASKS)}")
    if not known.any():
        raise RepairError(f"repair: the {kind} mask covers all {h * w} pixels; nothing known is left to repair from")
    if known.all():
        raise RepairError(f"repair: the {kind} mask hides no pixel; there is nothing to repair")
    return known


@dataclass
class RepairResult:
    """``repaired``: the image with its hole filled, ``(C, H, W)`` in [0, 1], equal to the input
    where known; ``generated``: G(z*) itself; ``z``: the winning latent; ``context_loss``: its
    mean absolute error on the known pixels (in [0, 1] units)."""

    repaired: np.ndarray
    generated: np.ndarray
    z: np.ndarray
    context_loss: float


def inpaint(
    gan: DCGAN,
    image: np.ndarray,
    known: np.ndarray,
    label: int | None = None,
    steps: int = 300,
    restarts: int = 16,
    lr: float = 0.05,
    adversarial_weight: float = 0.003,
    prior_weight: float = 0.01,
    backend: str = "numpy",
) -> RepairResult:
    """Fill the pixels of ``image`` (``(C, H, W)`` in [0, 1]) where ``known`` (``(H, W)`` bool)
    is False, by optimising ``restarts`` latent vectors with Adam for ``steps`` steps (see the
    module docstring); ``label`` for a conditional GAN. Draws the starting latents from
    tinymed's generator."""
    image = np.asarray(image, np.float32)
    known = np.asarray(known, bool)
    if image.ndim != 3 or known.shape != image.shape[1:]:
        raise ValueError(f"inpaint: image must be (C, H, W) and known (H, W), got {image.shape} and {known.shape}")
    if not known.any():
        raise RepairError("repair: the mask covers every pixel; nothing known is left to repair from")
    generator, discriminator = gan.generator, gan.discriminator
    target = tinymed.from_numpy(image[None] * 2.0 - 1.0).to(backend)  # G's [-1, 1] units
    weight = tinymed.from_numpy(known[None, None].astype(np.float32)).to(backend)
    labels = None if label is None else tinymed.tensor(np.full(restarts, label, np.int64), backend=backend)
    z = tinymed.tensor(tinymed.randn(restarts, gan.latent_dim).numpy(), requires_grad=True, backend=backend)
    optimizer = optim.Adam([z], lr=lr)
    n_known = float(known.sum() * image.shape[0])

    def contextual(fake: tinymed.Tensor) -> tinymed.Tensor:
        # Per restart, in [0, 1] units: [-1, 1] spans twice the range, hence the 2.
        return ((fake - target).abs() * weight).sum(dim=(1, 2, 3)) / (2.0 * n_known)

    gan.eval()
    gan.requires_grad_(False)
    try:
        for _ in range(steps):
            fake = generator(z, labels)
            context = contextual(fake)
            logits = discriminator(fake, labels)
            realism = F.binary_cross_entropy_with_logits(logits, tinymed.ones_like(logits), reduction="none")
            prior = (z * z).mean(dim=1) / 2.0
            # The restarts do not interact, so one summed loss gives each its own gradient.
            loss = (context + adversarial_weight * realism + prior_weight * prior).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with tinymed.no_grad():
            fake = generator(z, labels)
            context = contextual(fake)
    finally:
        gan.requires_grad_(True)
    best = int(np.argmin(context.numpy()))
    generated = (np.clip(fake.numpy()[best], -1.0, 1.0) + 1.0) / 2.0
    repaired = np.where(known, image, generated).astype(np.float32)
    return RepairResult(repaired, generated.astype(np.float32), z.detach().numpy()[best], float(context.numpy()[best]))
