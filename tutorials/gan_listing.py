"""Why the textbook DCGAN listing fails on 28x28 X-rays, and the fix, shape by shape.

Run it: ``python tutorials/gan_listing.py``. It builds the networks with tinymed's layers,
pushes a batch through them one layer at a time, and prints each shape next to what the
output-size formula predicts.

The classic listing was written for other images: its discriminator is the DCGAN paper's
64x64 colour one, and its generator's transposed convolutions forget their padding. On
PneumoniaMNIST (1 channel, 28x28) both break. The two formulas explain everything (kernel
k, stride s, padding p; PyTorch's and tinymed's definitions)::

    Conv2d:           H_out = floor((H + 2p - k) / s) + 1
    ConvTranspose2d:  H_out = (H - 1) s - 2p + k

A transposed convolution with k = 4, s = 2, p = 1 gives (H - 1) 2 - 2 + 4 = 2H: it doubles
exactly, and a convolution with the same k, s, p halves exactly (for even H). That pair is
the DCGAN building block; the only other layer needed is the one that goes between 1x1 and
7x7 (28 = 7 * 2 * 2), a kernel of 7 with stride 1 and no padding, in both directions.
"""

from __future__ import annotations

import os
import sys

# Run from a checkout without installing: make the package next to this folder importable.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import tinymed  # noqa: E402
from tinymed import nn  # noqa: E402
from tinymed.models.dcgan import Discriminator, Generator  # noqa: E402


def formula(layer: nn.Module, h: int) -> str:
    """The output-size formula of ``layer`` for an input of side h, written out and evaluated."""
    (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
    if isinstance(layer, nn.ConvTranspose2d):
        return f"({h} - 1)*{s} - 2*{p} + {k} = {(h - 1) * s - 2 * p + k}"
    return f"({h} + 2*{p} - {k}) // {s} + 1 = {(h + 2 * p - k) // s + 1}"


def walk(name: str, layers: nn.Sequential, x: tinymed.Tensor) -> tinymed.Tensor | None:
    """Apply the layers one at a time, printing each output shape (and, for a convolution,
    the formula that predicts its side); stop at the first layer that cannot take its
    input, printing tinymed's error."""
    print(f"\n{name}")
    print(f"  {'input':<46} -> {tuple(x.shape)}")
    for i, layer in enumerate(layers):
        description = f"[{i}] {type(layer).__name__}"
        is_conv = isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
        if is_conv:
            description += (
                f"({layer.in_channels}, {layer.out_channels}, k={layer.kernel_size[0]}, "
                f"s={layer.stride[0]}, p={layer.padding[0]})"
            )
        side = x.shape[2]
        try:
            x = layer(x)
        except ValueError as error:
            print(f"  {description:<46} -> FAILS: {error}")
            return None
        note = f"   H_out = {formula(layer, side)}" if is_conv else ""
        print(f"  {description:<46} -> {tuple(x.shape)}{note}")
    return x


def textbook_generator(latent_dim: int = 100) -> nn.Sequential:
    """The listing's generator: 4x4 from the latent, then two transposed convolutions with
    k = 4, s = 2 but no padding, which give 2H + 2, not 2H: 4 -> 10 -> 22."""
    return nn.Sequential(
        nn.ConvTranspose2d(latent_dim, 256, 4, 1, 0, bias=False),
        nn.BatchNorm2d(256),
        nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4, 2, 0, bias=False),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.ConvTranspose2d(128, 1, 4, 2, 0, bias=False),
        nn.Tanh(),
    )


def textbook_discriminator() -> nn.Sequential:
    """The DCGAN paper's discriminator for 64x64 colour images: 3 input channels, and four
    halvings (64 -> 32 -> 16 -> 8 -> 4) before a 4x4 convolution reads the last 4x4 map.
    A 28x28 image is down to 1x1 after four halvings (28 -> 14 -> 7 -> 3 -> 1), and the
    final 4x4 kernel no longer fits: (1 - 4) // 1 + 1 = -2."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False),
        nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False),
        nn.BatchNorm2d(256),
        nn.LeakyReLU(0.2),
        nn.Conv2d(256, 512, 4, 2, 1, bias=False),
        nn.BatchNorm2d(512),
        nn.LeakyReLU(0.2),
        nn.Conv2d(512, 1, 4, 1, 0, bias=False),
    )


def main() -> None:
    tinymed.manual_seed(0)
    batch = 4
    z = tinymed.randn(batch, 100, 1, 1)
    # Stand-ins for PneumoniaMNIST images: the shapes are what matters here, not the pixels.
    xray = tinymed.rand(batch, 1, 28, 28) * 2 - 1

    print("=" * 100)
    print("1. The textbook listing")
    print("=" * 100)
    fake = walk("generator: z -> image", textbook_generator(), z)
    print(f"  => it generates {fake.shape[2]}x{fake.shape[3]} images; the X-rays are 28x28. Without padding,")
    print("     k=4, s=2 maps H to (H - 1)*2 + 4 = 2H + 2, so 1 -> 4 -> 10 -> 22.")

    walk("discriminator on a 1-channel 28x28 X-ray", textbook_discriminator(), xray)
    print("  => its first layer was written for RGB photographs (3 channels); an X-ray has 1.")
    walk(
        "discriminator on the X-ray copied into 3 channels",
        textbook_discriminator(),
        tinymed.cat([xray, xray, xray], dim=1),
    )
    print("  => four halvings take 28 to 1 (28 -> 14 -> 7 -> 3 -> 1); the last 4x4 kernel needs a 4x4 map.")
    print("     The listing was made for 64x64 images, whose fourth halving leaves exactly 4x4.")

    print()
    print("=" * 100)
    print("2. The fix: tinymed.models.dcgan (1 channel, 28 = 7 * 2 * 2)")
    print("=" * 100)
    generator, discriminator = Generator(latent_dim=100, ngf=64), Discriminator(ndf=64)
    fake = walk("Generator: z -> image", generator.main, z)
    print("  => k=7, s=1, p=0 makes 7x7 from 1x1; then k=4, s=2, p=1 doubles exactly: 7 -> 14 -> 28.")
    walk("Discriminator: image -> logit", discriminator.main, fake)
    print("  => k=4, s=2, p=1 halves exactly: 28 -> 14 -> 7; then a 7x7 kernel reads the whole map: one logit.")
    print(
        f"\nGenerator: z {tuple(z.shape)} -> images {tuple(generator(z).shape)}; Discriminator: images -> logits "
        f"{tuple(discriminator(fake).shape)}"
    )
    for name, net in (("generator", generator), ("discriminator", discriminator)):
        print(f"{name} parameters: {sum(p.numel() for p in net.parameters()):,}")


if __name__ == "__main__":
    main()
