"""DCGAN (Radford, Metz and Chintala, 2016) for 28x28 one-channel images.

The generator turns a latent vector z ~ N(0, I) into an image; the discriminator turns an
image into one logit, "real" when positive. Every transposed convolution and convolution
obeys one output-size formula each (kernel k, stride s, padding p)::

    ConvTranspose2d:  H_out = (H - 1) s - 2 p + k          Conv2d:  H_out = (H + 2 p - k) // s + 1

Generator (``ngf`` feature maps in the last hidden layer)::

    z                 latent_dim x  1 x  1
    ConvTranspose 7/1/0   2 ngf  x  7 x  7    (1 - 1) 1 - 0 + 7 = 7        BatchNorm, ReLU
    ConvTranspose 4/2/1     ngf  x 14 x 14    (7 - 1) 2 - 2 + 4 = 14       BatchNorm, ReLU
    ConvTranspose 4/2/1  channels x 28 x 28   (14 - 1) 2 - 2 + 4 = 28      tanh

Discriminator, the mirror image (``ndf`` feature maps in the first layer)::

    image             channels x 28 x 28
    Conv 4/2/1             ndf x 14 x 14      (28 + 2 - 4) // 2 + 1 = 14   LeakyReLU(0.2)
    Conv 4/2/1           2 ndf x  7 x  7      (14 + 2 - 4) // 2 + 1 = 7    BatchNorm, LeakyReLU(0.2)
    Conv 7/1/0               1 x  1 x  1      (7 - 7) // 1 + 1 = 1          the logit

The DCGAN recipe: no pooling (strided convolutions learn their own up- and down-sampling),
BatchNorm in both networks except at the generator's output and the discriminator's input,
ReLU in the generator and LeakyReLU in the discriminator (so its gradient never dies where
the generator needs it), tanh output (images scaled to [-1, 1]), and weights drawn from
N(0, 0.02) (BatchNorm's scale from N(1, 0.02)). No layer has a bias: each is followed by
BatchNorm's shift, or (first discriminator layer, output layers) the original leaves it out.

With ``num_classes > 0`` the pair is conditional (Mirza and Osindero, 2014): the generator
reads the one-hot label next to z, and the discriminator reads it as ``num_classes`` extra
constant image planes, so it judges "a real X-ray of this class", not just "a real X-ray".
"""

from __future__ import annotations

from typing import Any

import tinymed
import tinymed.functional as F
from tinymed import nn
from tinymed.tensor import Tensor

__all__ = ["Generator", "Discriminator", "DCGAN", "weights_init"]


def weights_init(module: nn.Module) -> None:
    """DCGAN's initialisation, for ``model.apply(weights_init)``: convolution weights from
    N(0, 0.02), BatchNorm scale from N(1, 0.02) and shift 0 (the PyTorch DCGAN tutorial's)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _check_sizes(op: str, num_classes: int, **sizes: int) -> None:
    """Layer sizes must be positive ints; num_classes a non-negative one (0: unconditional)."""
    for name, value in {**sizes, "num_classes": num_classes}.items():
        smallest = 0 if name == "num_classes" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
            kind = "non-negative" if smallest == 0 else "positive"
            raise ValueError(f"{op}: {name} must be a {kind} int, got {value!r}")


def _one_hot(op: str, labels: Tensor | None, num_classes: int, batch: int, like: Tensor) -> Tensor | None:
    """The labels as float one-hot rows ``(N, num_classes)`` on ``like``'s backend and dtype,
    or None for an unconditional network (which must then get no labels)."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError(f"{op}: this network is unconditional (num_classes=0) but got labels")
        return None
    if labels is None:
        raise ValueError(f"{op}: this network is conditioned on {num_classes} classes and needs labels")
    if tuple(labels.shape) != (batch,):
        raise ValueError(f"{op}: labels must have shape ({batch},) to match the batch, got {tuple(labels.shape)}")
    return F.one_hot(labels.to(like.device).long(), num_classes).to(like.dtype)


class Generator(nn.Module):
    """Latent vectors ``(N, latent_dim)`` (or ``(N, latent_dim, 1, 1)``) -> images
    ``(N, channels, 28, 28)`` in [-1, 1]; labels ``(N,)`` when ``num_classes > 0``."""

    def __init__(self, latent_dim: int = 100, ngf: int = 64, channels: int = 1, num_classes: int = 0) -> None:
        super().__init__()
        _check_sizes("Generator", num_classes, latent_dim=latent_dim, ngf=ngf, channels=channels)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim + num_classes, 2 * ngf, 7, 1, 0, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )
        self.apply(weights_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if z.ndim == 4 and tuple(z.shape[2:]) == (1, 1):
            z = z.flatten(1)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"Generator: z must have shape (N, {self.latent_dim}) or (N, {self.latent_dim}, 1, 1), "
                f"got {tuple(z.shape)}"
            )
        one_hot = _one_hot("Generator", labels, self.num_classes, z.shape[0], z)
        if one_hot is not None:
            z = tinymed.cat([z, one_hot], dim=1)
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """Images ``(N, channels, 28, 28)`` -> logits ``(N,)`` (positive: judged real); labels
    ``(N,)`` when ``num_classes > 0``."""

    def __init__(self, ndf: int = 64, channels: int = 1, num_classes: int = 0) -> None:
        super().__init__()
        _check_sizes("Discriminator", num_classes, ndf=ndf, channels=channels)
        self.channels, self.num_classes = channels, num_classes
        self.main = nn.Sequential(
            nn.Conv2d(channels + num_classes, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ndf, 1, 7, 1, 0, bias=False),
        )
        self.apply(weights_init)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, 28, 28):
            raise ValueError(
                f"Discriminator: images must have shape (N, {self.channels}, 28, 28), got {tuple(images.shape)}"
            )
        n = images.shape[0]
        one_hot = _one_hot("Discriminator", labels, self.num_classes, n, images)
        if one_hot is not None:
            planes = one_hot.reshape(n, self.num_classes, 1, 1).expand(n, self.num_classes, 28, 28)
            images = tinymed.cat([images, planes], dim=1)
        return self.main(images).reshape(n)


class DCGAN(nn.Module):
    """A generator and its discriminator, built and saved together; calling the pair
    generates (``gan(z, labels)`` is ``gan.generator(z, labels)``)."""

    def __init__(
        self, latent_dim: int = 100, ngf: int = 64, ndf: int = 64, channels: int = 1, num_classes: int = 0
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "latent_dim": latent_dim,
            "ngf": ngf,
            "ndf": ndf,
            "channels": channels,
            "num_classes": num_classes,
        }
        self.generator = Generator(latent_dim, ngf, channels, num_classes)
        self.discriminator = Discriminator(ndf, channels, num_classes)

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.generator(z, labels)
