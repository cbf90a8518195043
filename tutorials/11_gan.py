# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 11 · Generating and repairing X-rays
#
# Chapter 8's network learned to tell two kinds of chest X-ray apart. Can a network learn what
# a chest X-ray *looks like*, well enough to draw new ones that nobody took, and to fill in a
# part of a real one that is missing? And if it can, how would you measure how good its
# drawings are, when there is no right answer to compare them with?
#
# This chapter builds a **generative adversarial network** (GAN): a generator that turns random
# numbers into images, trained against a discriminator that learns to tell its images from real
# ones. It starts where many students start, with a textbook listing that does not run on 28×28
# X-rays, and finds out why by arithmetic; then trains the fixed networks, measures them with
# the Fréchet distance, and repairs a damaged X-ray by searching the generator's inputs.
#
# **Learning objectives.** After this chapter you can:
#
# - Find why the textbook DCGAN listing breaks, by shape arithmetic.
# - Train the fixed DCGAN and read its training dynamics.
# - Measure generated images with the Fréchet distance.
# - Repair an image by optimising the latent code.
#
# **You need** chapter 2 (convolution, output sizes) and chapter 8 (the training loop).
# **Time**: about two and a half hours with the exercises; the training takes several minutes on
# a 2-core laptop. Run it as a script (`python tutorials/11_gan.py`, figures go to
# `tutorials/figures/11_gan/`) or as a notebook (`tinymed course release DIR` writes both). With
# `TINYMED_FAST=1` it runs in seconds: a few training steps, whose pictures are noise.
#
# It trains on PneumoniaMNIST when it finds it (`TINYMED_DATA=/path/to/pneumoniamnist.npz`, or
# the file in `~/.medmnist/`), on tinymed's synthetic phantoms otherwise; the data line says which.

# %%
import inspect
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import tinymed as tm
import tinymed.functional as F
from tinymed import course, metrics, nn, optim, plots
from tinymed.models.dcgan import DCGAN, Discriminator, Generator
from tinymed.repair import inpaint, make_mask
from tinymed.train.gan import GANTrainer, generate
from tinymed.utils.data import DataLoader, TensorDataset

package_root = Path(tm.__file__).parent.parent
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. Making an image larger: the transposed convolution
#
# A discriminator is a classifier like chapter 8's: convolutions with stride 2 halve the image
# until one number is left. A generator must go the other way, from a vector of random numbers
# to a 28×28 image. Its layer is the **transposed convolution** (chapter 10, section 4, met it
# in the U-Net's decoder, if you took that chapter): every input pixel *stamps* a
# copy of the kernel, scaled by the pixel's value, onto the output, the stamps `stride` pixels
# apart, and where stamps overlap they add. Then `padding` crops $p$ pixels off every border.
# With kernel $k$, stride $s$ and padding $p$, an input of side $H$ gives
#
# $$H_{\text{out}} = (H - 1)\,s - 2p + k .$$
#
# The literal loop, stamp by stamp, for one image with `C_in` channels and a weight of
# PyTorch's layout `(C_in, C_out, k, k)`:


# %%
def conv_transpose_loop(x, w, stride, padding):
    """Transposed convolution of one image x (C_in, H, W) with w (C_in, C_out, k, k)."""
    c_in, h, width = x.shape
    k = w.shape[2]
    full = np.zeros((w.shape[1], (h - 1) * stride + k, (width - 1) * stride + k))
    for c in range(c_in):
        for i in range(h):
            for j in range(width):  # stamp w[c], scaled by x[c, i, j], with its corner at (i s, j s)
                full[:, i * stride : i * stride + k, j * stride : j * stride + k] += x[c, i, j] * w[c]
    return full[:, padding : full.shape[1] - padding, padding : full.shape[2] - padding]


rng = np.random.default_rng(0)
x, w = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 5, 4, 4))
by_hand = conv_transpose_loop(x, w, stride=2, padding=1)
by_tinymed = F.conv_transpose2d(tm.tensor(x), tm.tensor(w), stride=2, padding=1).numpy()
print(f"input {x.shape} -> output {by_hand.shape}: (3 - 1)*2 - 2*1 + 4 = {(3 - 1) * 2 - 2 + 4}")
assert np.allclose(by_hand, by_tinymed)

# %% [markdown]
# Where does the name come from? A convolution with stride 2 maps a 6×6 image to 3×3; its
# gradient with respect to its input maps a 3×3 gradient back to 6×6, and that map *is* the
# transposed convolution with the same weight (the matrix of one is the transpose of the
# other's). Check yourself with autograd: the gradient of $\sum_{ij} x_{ij}\,
# \text{conv2d}(z)_{ij}$ with respect to $z$ is the transposed convolution of $x$.

# %%
z = tm.zeros(1, 5, 6, 6, dtype=tm.float64, requires_grad=True)
(F.conv2d(z, tm.tensor(w), stride=2, padding=1) * tm.tensor(x[None])).sum().backward()
print("d/dz of sum(x * conv2d(z)):", np.asarray(z.grad).shape)
assert np.allclose(np.asarray(z.grad)[0], by_hand)
print("conv_transpose2d lives in", Path(inspect.getsourcefile(F.conv_transpose2d)).relative_to(package_root))

# %% [markdown]
# How many stamps cover each output pixel? Take an input of ones and a kernel of ones: the
# output counts them. With kernel 3 and stride 2 the count alternates, 1, 2, 1, 2 along a row
# and 1, 2, 4 over the image: some pixels receive four times the signal of their neighbours,
# and generated images show a faint **checkerboard** unless the weights learn to cancel it.
# With kernel 4 and stride 2, the choice of the widely copied PyTorch DCGAN example (the paper
# itself used 5×5 kernels), every interior pixel is covered exactly four times; only the
# border, which padding 1 partly crops, gets fewer. The kernel size is a multiple of the
# stride: that is the reason for 4 (Odena, Dumoulin and Olah, "Deconvolution and Checkerboard
# Artifacts", 2016, explain the pattern).

# %%
fig = Figure(figsize=(9, 4), layout="constrained")
axes = fig.subplots(1, 2)
panels = [
    ("k=3, s=2, p=0: 4×4 -> 9×9", conv_transpose_loop(np.ones((1, 4, 4)), np.ones((1, 1, 3, 3)), 2, 0)[0]),
    ("k=4, s=2, p=1: 4×4 -> 8×8", conv_transpose_loop(np.ones((1, 4, 4)), np.ones((1, 1, 4, 4)), 2, 1)[0]),
]
for ax, (title, counts) in zip(axes, panels):
    shown = ax.imshow(counts, cmap="viridis", vmin=0, vmax=4)
    ax.set(title=title, xlabel="output column", ylabel="output row")
fig.colorbar(shown, ax=list(axes), label="stamps covering the pixel")
fig.suptitle("a 4×4 input of ones, a kernel of ones: the output counts the stamps")
course.show(fig, "stamps")

# %% [markdown]
# ## 2. The textbook listing, and why it breaks on X-rays
#
# The DCGAN paper (Radford, Metz and Chintala, 2016) built its networks for 64×64 colour
# photographs, and most textbook listings copy the widely used PyTorch version of them (kernel
# 4 throughout, a last 4×4 convolution where the paper flattened to one output). Here is such
# a listing: a generator that starts from a 4×4 map and doubles it twice with kernel 4 and
# stride 2, but forgets the padding; and that version's discriminator, whose first layer reads
# 3 colour channels and whose last 4×4 kernel expects the 4×4 map that four halvings leave of
# a 64×64 image.


# %%
def textbook_generator(latent_dim=100):
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


def textbook_discriminator():
    layers, channels = [], [3, 64, 128, 256, 512]
    for k, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
        layers += [nn.BatchNorm2d(c_out)] if k else []
        layers += [nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Conv2d(512, 1, 4, 1, 0, bias=False))


# %% [markdown]
# Both output-size formulas, as a function of a layer (chapter 2's for `Conv2d`):
#
# $$\text{Conv2d: } H_{\text{out}} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1,
#   \qquad \text{ConvTranspose2d: } H_{\text{out}} = (H - 1)\,s - 2p + k .$$
#
# `walk` pushes a batch through the layers one at a time, printing each shape beside the
# formula's prediction, and stops at the first layer that refuses its input, printing
# tinymed's error.


# %%
def predicted_size(layer, h):
    (k, _), (s, _), (p, _) = layer.kernel_size, layer.stride, layer.padding
    if isinstance(layer, nn.ConvTranspose2d):
        return f"({h} - 1)*{s} - 2*{p} + {k} = {(h - 1) * s - 2 * p + k}"
    return f"({h} + 2*{p} - {k}) // {s} + 1 = {(h + 2 * p - k) // s + 1}"


def walk(title, layers, x):
    print(f"{title}\n  {'input':<34} {tuple(x.shape)}")
    for layer in layers:
        name = type(layer).__name__
        is_conv = isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
        if is_conv:
            name += f"(k={layer.kernel_size[0]}, s={layer.stride[0]}, p={layer.padding[0]})"
        side = x.shape[2]
        try:
            x = layer(x)
        except ValueError as error:
            print(f"  {name:<34} FAILS: {error}")
            return None
        print(f"  {name:<34} {tuple(x.shape)}" + (f"   H_out = {predicted_size(layer, side)}" if is_conv else ""))
    return x


tm.manual_seed(0)
with tm.no_grad():
    fake = walk("textbook generator, z -> image", textbook_generator(), tm.randn(4, 100, 1, 1))
assert tuple(fake.shape) == (4, 1, 22, 22)

# %% [markdown]
# 22×22, not 28×28. Without padding, kernel 4 and stride 2 map $H$ to $(H-1)\cdot 2 + 4 =
# 2H + 2$: 4 → 10 → 22. The discriminator fares worse; we feed it 1-channel X-rays, then the
# same X-rays copied into three channels.

# %%
xrays = tm.rand(4, 1, 28, 28) * 2 - 1  # stand-ins: only the shapes matter here
with tm.no_grad():
    assert walk("textbook discriminator, a 1-channel X-ray", textbook_discriminator(), xrays) is None
    three = tm.cat([xrays, xrays, xrays], dim=1)
    assert walk("textbook discriminator, the X-ray in 3 channels", textbook_discriminator(), three) is None

# %% [markdown]
# Two failures. The first layer wants three colour channels; an X-ray has one. And four
# halvings take 28 to 1 (28 → 14 → 7 → 3 → 1: the third one already drops a pixel), where the
# last 4×4 kernel needs a 4×4 map: $(1 + 0 - 4)/1 + 1 = -2$.
#
# ## 3. The fixed networks
#
# The repair is arithmetic. $28 = 7 \cdot 2 \cdot 2$, so: one layer that goes between 1×1 and
# 7×7 (kernel 7, stride 1, no padding: $(1-1)\cdot1 - 0 + 7 = 7$), and two that double or
# halve exactly (kernel 4, stride 2, padding 1: $(H-1)\cdot2 - 2 + 4 = 2H$ and
# $\lfloor(H + 2 - 4)/2\rfloor + 1 = H/2$ for even $H$). `tinymed.models.dcgan` holds both
# networks, with one input channel.

# %%
tm.manual_seed(0)
generator, discriminator = Generator(latent_dim=100, ngf=64), Discriminator(ndf=64)
with tm.no_grad():
    fake = walk("Generator", generator.main, tm.randn(4, 100, 1, 1))
    logits = walk("Discriminator", discriminator.main, fake)
assert tuple(fake.shape) == (4, 1, 28, 28) and tuple(logits.shape) == (4, 1, 1, 1)
for name, net in (("generator", generator), ("discriminator", discriminator)):
    print(f"{name}: {sum(p.numel() for p in net.parameters()):,} parameters")
print("both live in", Path(inspect.getsourcefile(Generator)).relative_to(package_root))

# %% [markdown]
# The rest of the recipe is the DCGAN paper's, and the module's docstring explains each piece:
# no pooling, BatchNorm in both networks (except the generator's output and the
# discriminator's input), ReLU in the generator, LeakyReLU in the discriminator (so its
# gradient never dies where the generator needs it), a tanh output in $[-1, 1]$, and weights
# drawn from $\mathcal N(0, 0.02^2)$.
#
# ## 4. The game
#
# The discriminator $D$ outputs a logit $\ell$; $D(x) = \sigma(\ell)$ is its probability that
# $x$ is real. The generator $G$ turns $z \sim \mathcal N(0, I)$ into an image $G(z)$. Each
# training step plays two moves, each a binary cross-entropy (chapter 1):
#
# $$L_D = -\log D(x) - \log\bigl(1 - D(G(z))\bigr), \qquad
#   L_G = -\log D(G(z)) .$$
#
# $D$ learns to say 1 on real images and 0 on generated ones; $G$ learns to make $D$ say 1 on
# its images. The original GAN paper (Goodfellow et al., 2014) wrote the game with the
# generator *minimising* $\log(1 - D(G(z)))$, the exact opposite of $D$'s second term, and
# noted in the same section that this **saturating** loss fails in practice: early in training $D$ rejects every generated image, $D(G(z)) \approx 0$, and
# there its slope is nearly flat, so $G$ gets almost no gradient. The **non-saturating**
# $-\log D(G(z))$, which that paper recommends instead, has the same aim and a steep slope
# exactly there. In terms of the logit,
# $\frac{d}{d\ell}\log(1 - \sigma(\ell)) = -\sigma(\ell)$, which vanishes as $D(G(z)) \to 0$,
# while $\frac{d}{d\ell}\bigl(-\log \sigma(\ell)\bigr) = -(1 - \sigma(\ell))$ tends to $-1$.
# Autograd agrees:

# %%
ell = tm.tensor(np.array([-6.0, -2.0, 0.0, 2.0]), requires_grad=True)
F.binary_cross_entropy_with_logits(ell, tm.ones_like(ell), reduction="sum").backward()  # -log D, summed
non_saturating = np.asarray(ell.grad).copy()
ell.grad = None
(-F.binary_cross_entropy_with_logits(ell, tm.zeros_like(ell), reduction="sum")).backward()  # log(1 - D)
saturating = np.asarray(ell.grad)
sigma = 1 / (1 + np.exp(-ell.numpy()))
print("D(G(z))                  ", sigma.round(4))
print("slope of -log D          ", non_saturating.round(4))
print("slope of log(1 - D)      ", saturating.round(4))
assert np.allclose(non_saturating, -(1 - sigma)) and np.allclose(saturating, -sigma)

# %%
d = np.linspace(0.001, 0.999, 400)
fig = Figure(figsize=(10, 3.6), layout="constrained")
left, right = fig.subplots(1, 2)
left.plot(d, -np.log(d), label="non-saturating: $-\\log D(G(z))$")
left.plot(d, np.log(1 - d), label="saturating: $\\log(1 - D(G(z)))$")
left.set(xlabel="D(G(z)): how real D finds the generated image", ylabel="generator's loss", title="the two losses")
right.plot(d, 1 - d, label="non-saturating")
right.plot(d, d, label="saturating")
right.set(xlabel="D(G(z))", ylabel="|d loss / d logit|", title="the gradient G receives")
right.axvspan(0, 0.1, color="grey", alpha=0.2, label="early training")
for ax in (left, right):
    ax.grid(alpha=0.3)
    ax.legend()
course.show(fig, "generator-losses")

# %% [markdown]
# ## 5. Training, written out
#
# The images go into $[-1, 1]$, the range of the generator's tanh. A `DataLoader` shuffles
# them into batches of 64 (`drop_last=True`: a last batch of a few images would give BatchNorm
# poor statistics).

# %%
train = course.xray_dataset("train", n=course.pick(None, 128))
real_images = tm.from_numpy(train.images.astype(np.float32) / 127.5 - 1.0)
loader = DataLoader(TensorDataset(real_images), batch_size=course.pick(64, 32), shuffle=True, drop_last=True)
print(f"{len(loader)} batches per epoch, images in [{real_images.min().item()}, {real_images.max().item()}]")

# %% [markdown]
# The networks are narrower than the module's defaults (32 feature maps where it has 64), to
# train in minutes on a CPU; `tinymed train gan` makes the same choice, for the same reason.
# Two Adam optimisers with the DCGAN paper's settings: a learning rate of $2\cdot10^{-4}$ and
# $\beta_1 = 0.5$, a shorter memory than the usual 0.9 for Adam's running average of the
# gradient (its *momentum*: the step keeps going the way recent gradients pointed), so that
# each network's momentum follows its opponent's moves.
#
# One step, written out. The discriminator's step sees `fake.detach()`: its loss must not send
# gradients into $G$. The generator's step freezes $D$ (`requires_grad_(False)`), so that
# `loss_g.backward()` computes only $G$'s gradients, through $D$.

# %%
latent_dim = 64
tm.manual_seed(0)
gan = DCGAN(latent_dim=latent_dim, ngf=32, ndf=32)
G, D = gan.generator, gan.discriminator
optimizer_d = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizer_g = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))


def non_saturating_loss(logits):
    return F.binary_cross_entropy_with_logits(logits, tm.ones_like(logits))  # -log D(G(z)), averaged


def gan_step(G, D, optimizer_d, optimizer_g, real, z, generator_loss=non_saturating_loss):
    fake = G(z)
    real_logits, fake_logits = D(real), D(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(real_logits, tm.ones_like(real_logits))
    loss_d = loss_d + F.binary_cross_entropy_with_logits(fake_logits, tm.zeros_like(fake_logits))
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    D.requires_grad_(False)
    loss_g = generator_loss(D(fake))  # the updated D judges the same generated images
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    D.requires_grad_(True)
    d_real, d_fake = F.sigmoid(real_logits).mean().item(), F.sigmoid(fake_logits).mean().item()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": d_real, "d_fake": d_fake}


# %% [markdown]
# Check yourself: tinymed's trainer (`tinymed.train.gan.GANTrainer`, what `tinymed train gan`
# runs) must make exactly this step. A twin GAN with the same starting weights takes the
# trainer's step on the same batch and the same $z$; the numbers and the new weights must match.

# %%
fixed_z = tm.randn(8, latent_dim).numpy()  # for the pictures of section 6
snapshots = {0: generate(G, fixed_z)[:, 0]}  # before any training
G.train()
(real,) = next(iter(loader))
z = tm.randn(len(real), latent_dim)
tm.manual_seed(0)
twin = DCGAN(latent_dim=latent_dim, ngf=32, ndf=32)
ours = gan_step(G, D, optimizer_d, optimizer_g, real, z)
theirs = GANTrainer(twin, lr=2e-4, betas=(0.5, 0.999)).step(real, z)
print({k: round(v, 5) for k, v in ours.items()})
assert all(np.isclose(ours[k], theirs[k], rtol=1e-5) for k in ours)
assert all(np.allclose(a.numpy(), b.numpy(), atol=1e-6) for a, b in zip(G.parameters(), twin.generator.parameters()))
print("GANTrainer lives in", Path(inspect.getsourcefile(GANTrainer)).relative_to(package_root))

# %% [markdown]
# That was step 1. Now the rest of the training. Every few steps we keep the generator's
# images for the fixed batch of $z$ drawn above, so that the pictures from different moments
# are comparable (`generate` runs $G$ in evaluation mode; we switch back to training mode
# after). This is the cell that takes minutes.

# %%
steps, snapshot_every = course.pick(300, 4), course.pick(50, 2)
log, step, start = [ours], 1, time.perf_counter()
while step < steps:
    for (real,) in loader:
        if step % snapshot_every == 0:
            snapshots[step] = generate(G, fixed_z)[:, 0]
            G.train()
        log.append(gan_step(G, D, optimizer_d, optimizer_g, real, tm.randn(len(real), latent_dim)))
        step += 1
        if step == steps:
            break
snapshots[step] = generate(G, fixed_z)[:, 0]
G.train()
print(f"{steps} steps in {time.perf_counter() - start:.0f} s; last step:", {k: round(v, 3) for k, v in log[-1].items()})

# %% [markdown]
# ## 6. Reading the training dynamics
#
# Four numbers per step, averaged over windows of steps to see through the noise:
#
# - $D$'s loss. Guessing gives $2 \log 2 \approx 1.39$ (1/2 on every image); near 0, $D$ wins
#   every time and $G$ learns little.
# - $G$'s loss, $-\log D(G(z))$: $\log 2 \approx 0.69$ when $D$ gives every generated image
#   1/2.
# - $D(x)$, the mean probability "real" on real images, and $D(G(z))$ on generated ones. At the
#   game's ideal end both would be 1/2: $D$ can no longer tell. In practice they hover apart,
#   and the generator improves while $D$ keeps finding new differences.
#
# A GAN has no loss that falls steadily; the two losses pull against each other. What to
# worry about: $D$'s loss collapsing to 0 with $G$'s climbing (the generator has lost), or
# every sample becoming the same image (**mode collapse**: $G$ found one image that fools $D$).

# %%
window = max(1, steps // 30)
rows = [
    {
        "epoch": (k + 1) * window,
        **{key: np.mean([r[key] for r in log[k * window : (k + 1) * window]]) for key in log[0]},
    }
    for k in range(len(log) // window)
]
fig = plots.plot_gan_history(rows, title=f"DCGAN on {train.info.name}, means over {window} steps")
for ax in fig.axes:
    ax.set_xlabel("training step")
fig.axes[0].axhline(2 * np.log(2), color="C0", lw=1, linestyle=":", label="2 log 2: D's loss when D(x) = 1/2")
fig.axes[0].axhline(np.log(2), color="C1", lw=1, linestyle=":", label="log 2: G's loss when D(G(z)) = 1/2")
fig.axes[0].legend(fontsize=8)
course.show(fig, "dynamics")

# %% [markdown]
# The same eight $z$ at every snapshot, one row per moment: flat grey (an untrained generator
# in evaluation mode), then noise, then blurred shapes, then chests: two dark lungs either side
# of a bright middle.

# %%
moments = sorted(snapshots)
fig = plots.plot_image_grid(
    (np.concatenate([snapshots[m] for m in moments]) + 1) / 2,
    nrow=8,
    titles=[f"step {m}" if i == 0 else "" for m in moments for i in range(8)],
    title="G(z) for eight fixed z, as training goes on",
)
course.show(fig, "samples-over-time")

# %% [markdown]
# Real or generated? The first row is real training images, the second generated ones. And the
# question every generative model in medicine must answer: is it *copying* its training images?
# The third row holds, under each generated image, its nearest training image (smallest pixel
# distance). If they were identical, the GAN would leak patients' images; if they are merely
# similar, it has learned the kind of image.

# %%
generated = (generate(G, tm.randn(8, latent_dim).numpy())[:, 0] + 1) / 2
G.train()
pool = train.images[:, 0].astype(np.float32) / 255.0
flat_g, flat_p = generated.reshape(8, -1), pool.reshape(len(pool), -1)
# |g - p|^2 = |g|^2 + |p|^2 - 2 g.p for every pair at once, one matrix product: (8, N training)
distance = ((flat_g**2).sum(1)[:, None] + (flat_p**2).sum(1)[None] - 2 * flat_g @ flat_p.T) / flat_g.shape[1]
nearest = pool[distance.argmin(axis=1)]
fig = plots.plot_image_grid(
    np.concatenate([pool[:8], generated[:8], nearest[:8]]),
    nrow=8,
    titles=["real"] * 8 + ["generated"] * 8 + ["nearest real"] * 8,
    title="training images, generated images, and each one's nearest training image",
)
course.show(fig, "real-generated-nearest")
print(f"mean squared distance to the nearest training image: {distance.min(axis=1).mean():.4f}")

# %% [markdown]
# ## 7. The Fréchet distance
#
# How good are the samples? A single image cannot say; a GAN is judged on its *distribution*:
# do its images, taken together, spread like real ones? The **Fréchet distance** (FID, when the
# features come from the Inception network) turns each set of images into feature vectors,
# fits a Gaussian to each set (mean $\mu$, covariance $\Sigma$), and measures the squared
# 2-Wasserstein distance between the two Gaussians:
#
# $$d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{Tr}\!\left(\Sigma_1 + \Sigma_2 -
#   2\,(\Sigma_1 \Sigma_2)^{1/2}\right) .$$
#
# In one dimension, with standard deviations $\sigma_1, \sigma_2$, the trace term is
# $\sigma_1^2 + \sigma_2^2 - 2\sigma_1\sigma_2$, so $d^2 = (\mu_1 - \mu_2)^2 + (\sigma_1 -
# \sigma_2)^2$: one term for a shifted mean, one for a wrong spread. With diagonal covariances
# the dimensions add up. Both against tinymed:

# %%
mu1, mu2, s1, s2 = 0.3, -0.2, 1.5, 0.5
one_d = metrics.frechet_distance([mu1], [[s1**2]], [mu2], [[s2**2]])
print(f"1-D: tinymed {one_d:.6f}, (mu1 - mu2)^2 + (s1 - s2)^2 = {(mu1 - mu2) ** 2 + (s1 - s2) ** 2:.6f}")
assert np.isclose(one_d, (mu1 - mu2) ** 2 + (s1 - s2) ** 2)
m1, m2 = rng.normal(size=5), rng.normal(size=5)
v1, v2 = rng.uniform(0.5, 2.0, 5), rng.uniform(0.5, 2.0, 5)
diagonal = metrics.frechet_distance(m1, np.diag(v1), m2, np.diag(v2))
assert np.isclose(diagonal, np.sum((m1 - m2) ** 2 + (np.sqrt(v1) - np.sqrt(v2)) ** 2))
print(
    f"5-D diagonal: {diagonal:.6f}, the sum of five 1-D distances; lives in",
    Path(metrics.__file__).relative_to(package_root),
)

# %% [markdown]
# For full covariances, $(\Sigma_1\Sigma_2)^{1/2}$ is a matrix square root, and the product of
# two symmetric matrices is not symmetric; `metrics.frechet_distance` uses the identity
# $\operatorname{Tr}(\Sigma_1\Sigma_2)^{1/2} = \operatorname{Tr}(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}$,
# a symmetric square root an eigendecomposition gives (exercise 11.2).
#
# Which features? The Inception network is not in tinymed, and was trained on photographs
# anyway. `tinymed evaluate-gan` uses the penultimate layer of a trained tinymed classifier
# (chapter 8's kind of network). Here, to stay self-contained, we use chapter 1's 7×7
# thumbnails: 49 averages of 4×4 blocks. They see brightness and layout, not fine texture; the
# distance is only as good as its features.
#
# Three comparisons give the number a scale: real training images against real validation
# images (the floor: what a perfect generator would get with as many images), the trained
# generator against validation, and an untrained generator against validation.


# %%
def thumbnails(images):
    """(N, 28, 28) in [0, 1] -> (N, 49): means of 4x4 blocks."""
    return images.reshape(len(images), 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(images), 49)


val = course.xray_dataset("val", n=course.pick(None, 96))
n = len(val)
val_features = thumbnails(val.images[:, 0] / 255.0)
tm.manual_seed(1)
untrained = DCGAN(latent_dim=latent_dim, ngf=32, ndf=32).generator
sets = {
    "real train": thumbnails(pool[:n]),
    "trained G": thumbnails((generate(G, tm.randn(n, latent_dim).numpy())[:, 0] + 1) / 2),
    "untrained G": thumbnails((generate(untrained, tm.randn(n, latent_dim).numpy())[:, 0] + 1) / 2),
}
G.train()
fd = {name: metrics.frechet_distance_from_features(val_features, f) for name, f in sets.items()}
for name, value in fd.items():
    print(f"Fréchet distance, {name:>11} vs {n} val images: {value:8.4f}")
assert fd["real train"] < fd["untrained G"]

# %% [markdown]
# The distance also depends on how many images it is computed from: a mean and a covariance
# estimated from few samples are noisy, and noise only adds to $d^2$. Two sets of *real*
# images, drawn from the same distribution, are far apart when small:

# %%
sizes = [s for s in course.pick([25, 50, 100, 200, 400, 800], [25, 50]) if s <= min(n, len(pool) - n)]
floor = [metrics.frechet_distance_from_features(val_features[:s], thumbnails(pool[n : n + s])) for s in sizes]
fig = Figure(figsize=(6, 3.6), layout="constrained")
ax = fig.subplots()
ax.plot(sizes, floor, "o-", label="real train vs real val")
ax.axhline(fd["trained G"], color="C1", linestyle="--", label=f"trained G vs val ({n} images)")
ax.set(xscale="log", xlabel="images in each set", ylabel="Fréchet distance (thumbnail features)")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.minorticks_off()
ax.set_title("two real sets look far apart when they are small")
ax.grid(alpha=0.3)
ax.legend()
course.show(fig, "frechet-sample-size")

# %% [markdown]
# So compare distances only at equal sample sizes and on the same features, and never across
# papers that used other ones.
#
# ## 8. Repairing an X-ray: inpainting by latent optimisation
#
# Suppose a box of pixels is missing (a burnt-in label, a detector fault). A trained generator
# can fill it: every $z$ gives a plausible X-ray, so look for the $z$ whose X-ray agrees with
# ours where ours is known: the idea of Yeh et al. (2017), in a simpler variant (they weight
# the known pixels by their distance to the hole, use a prior term $\log(1 - D(G(z)))$ and
# blend the result in; the $\lVert z\rVert^2$ term below is ours). With $y$ the image scaled
# to the generator's range $[-1, 1]$, $M$ the mask of known pixels and $n_M$ their number,
# minimise over $z$ only, the networks fixed:
#
# $$\mathcal L(z) = \underbrace{\frac{1}{2 n_M}\sum_{M} \lvert G(z) - y \rvert}_{\text{agree
#   where known}} \; + \; \lambda_a \underbrace{\bigl(-\log D(G(z))\bigr)}_{\text{look real}}
#   \; + \; \lambda_p \underbrace{\tfrac{1}{2 d}\lVert z \rVert^2}_{\text{stay a typical } z} .$$
#
# (The 2 undoes the scaling: $[-1, 1]$ is twice as wide as $[0, 1]$, so the first term is the
# mean brightness error on the image's own scale, which is what the cell prints.) Gradient
# descent on $z$ uses the same autograd as training, with $z$ the only tensor that
# requires a gradient. The repaired image is $y$ where known and $G(z^*)$ in the hole. First by
# hand, for one starting $z$:

# %%
image = val.images[0].astype(np.float32) / 255.0  # (1, 28, 28) in [0, 1]
known = make_mask("box", (28, 28), np.random.default_rng(3), box_size=10)
target, weight = tm.from_numpy(image[None] * 2 - 1), tm.from_numpy(known[None, None].astype(np.float32))
gan.eval()
gan.requires_grad_(False)
tm.manual_seed(5)
z = tm.tensor(tm.randn(1, latent_dim).numpy(), requires_grad=True)
z_optimizer, trace = optim.Adam([z], lr=0.05), []
for _ in range(course.pick(100, 5)):
    fake = G(z)
    context = ((fake - target).abs() * weight).sum(dim=(1, 2, 3)) / (2.0 * known.sum())  # [-1, 1] spans 2
    realism = F.binary_cross_entropy_with_logits(D(fake), tm.ones(1), reduction="none")
    loss = (context + 0.003 * realism + 0.01 * (z * z).mean(dim=1) / 2).sum()
    z_optimizer.zero_grad()
    loss.backward()
    z_optimizer.step()
    trace.append(context.item())
gan.requires_grad_(True)
print(f"mean error on the known pixels: {trace[0]:.4f} at the start, {trace[-1]:.4f} after {len(trace)} steps")

# %% [markdown]
# `tinymed.repair.inpaint` runs that loop for several starting points at once (one batch of
# $z$) and keeps the one that fits best. Check yourself: with one start, the same seed and the
# same number of steps it must reach our $z$.

# %%
tm.manual_seed(5)
one_start = inpaint(gan, image, known, steps=len(trace), restarts=1)
print(f"inpaint: mean error on the known pixels {one_start.context_loss:.4f}")
assert np.allclose(one_start.z, z.detach().numpy()[0], atol=1e-4)
print("inpaint lives in", Path(inspect.getsourcefile(inpaint)).relative_to(package_root))

# %% [markdown]
# Now with several starts, on a normal and an abnormal validation image. A simple baseline
# keeps us honest: fill the hole with the mean of the known pixels.

# %%
repairs, restarts, repair_steps = [], course.pick(8, 2), course.pick(200, 5)
for label in (0, 1):
    k = int(np.flatnonzero(val.labels == label)[0])
    image = val.images[k].astype(np.float32) / 255.0
    hole = ~known
    result = inpaint(gan, image, known, steps=repair_steps, restarts=restarts)
    assert np.array_equal(result.repaired[:, known], image[:, known])  # the known pixels never change
    baseline = np.where(known, image, image[:, known].mean())
    errors = {
        name: np.abs(filled - image)[:, hole].mean() for name, filled in (("GAN", result.repaired), ("mean", baseline))
    }
    repairs.append((val.info.labels[label], image, result, baseline, errors))
    print(
        f"{val.info.labels[label]:>9}: mean error in the hole, GAN {errors['GAN']:.4f}, mean fill {errors['mean']:.4f}"
    )

# %%
top, left = np.argwhere(~known).min(axis=0)
fig = Figure(figsize=(12, 5.4), layout="constrained")
axes = fig.subplots(2, 5)
for row, (name, image, result, baseline, errors) in zip(axes, repairs):
    columns = {
        f"{name}: original": image[0],
        "the hole": np.where(known, image[0], 0.0),
        "G(z*)": result.generated[0],
        f"repaired (error {errors['GAN']:.3f})": result.repaired[0],
        f"mean fill (error {errors['mean']:.3f})": baseline[0],
    }
    for ax, (title, picture) in zip(row, columns.items()):
        shown = ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), 10, 10, fill=False, edgecolor="red", lw=1))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
fig.colorbar(shown, ax=axes, fraction=0.02, label="grey level")
fig.suptitle("inpainting by latent optimisation (the red box is the hole)")
course.show(fig, "inpainting")

# %% [markdown]
# ## 9. Honest limits
#
# - **A repair is invented, not recovered.** What fills the hole is what the generator finds
#   typical around the known pixels. A small opacity hidden by the box cannot come back; a
#   repaired image must never be read for diagnosis, and any image that went through a
#   generator must say so.
# - **Short training, small networks.** A few hundred steps on a CPU give blurry chests; GANs
#   that fool radiologists train for days on full-resolution images. Whether our repair beats
#   the mean fill printed above depends on the run; with more training it should.
# - **The Fréchet distance is only as good as its features**, and it is biased by the sample
#   size. On thumbnails it sees brightness and layout; it cannot see whether the ribs are right.
#   A low distance is also what a GAN that copies its training images gets: it cannot detect
#   memorisation (the nearest-neighbour check of section 6 can, roughly).
# - **GAN training is fragile.** Other seeds, learning rates or widths can diverge or collapse;
#   watch the dynamics, not only the final samples.
# - **Privacy.** A generator trained on patients' images can reproduce them. Synthetic data is
#   not anonymous by default.

# %% [markdown]
# ## Exercises
#
# Exercises 11.1 to 11.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 11           # in the folder holding your 11_gan.py or .ipynb
# ```
#
# Exercises 11.4 and 11.5 are for you and your instructor.
#
# **Exercise 11.1 (the size of a transposed convolution).** Write
# `conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0,
# dilation=1)`: the output side of `nn.ConvTranspose2d` for an input of side `size`. Dilation
# spreads the kernel's taps `dilation` pixels apart, so a kernel of $k$ taps covers
# $d\,(k - 1) + 1$ pixels; `output_padding` adds that many rows at the bottom (and columns at
# the right). Raise `ValueError` when the result is not a positive size.


# %% tags=["exercise"]
def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1):
    """Side of a ConvTranspose2d's output for an input of side ``size``."""
    # BEGIN SOLUTION
    out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(f"a transposed convolution of a side-{size} input would have side {out}")
    return out
    # END SOLUTION


# %% [markdown]
# **Exercise 11.2 (the Fréchet distance between two Gaussians).** Write
# `frechet_distance_gaussians(mu1, sigma1, mu2, sigma2)` with NumPy, for mean vectors (D,) and
# covariance matrices (D, D), returning a float. You need the square root of a symmetric
# positive semi-definite matrix: with `np.linalg.eigh`, $S = V\operatorname{diag}(\lambda)V^\top$
# gives $S^{1/2} = V\operatorname{diag}(\sqrt{\lambda})V^\top$ (clip tiny negative $\lambda$ to
# 0). Then use the identity of section 7. Two traps the grader checks: the square root of a
# matrix is not the square root of its entries, and $\Sigma_1^{1/2}\Sigma_2^{1/2}$ is not
# $(\Sigma_1\Sigma_2)^{1/2}$ unless the two matrices commute.

# %% tags=["exercise"]
import numpy as np


def frechet_distance_gaussians(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)), for (D,) means and (D, D) covariances."""

    # BEGIN SOLUTION
    def sqrt_psd(matrix):
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = sqrt_psd(sigma1)
    cross = np.trace(sqrt_psd(root1 @ sigma2 @ root1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * cross)
    # END SOLUTION


# %% [markdown]
# **Exercise 11.3 (the generator's loss, stable).** Write `generator_loss(fake_logits)`: the
# non-saturating loss $\frac1n\sum_i -\log\sigma(\ell_i)$ of the discriminator's logits on
# generated images, as a 0-d tinymed Tensor, with tinymed operations (so backward works) and
# without `F.binary_cross_entropy_with_logits` (the grader compares with it). The trap: early
# in training $\ell$ is very negative, $\sigma(-1000)$ rounds to 0 and $-\log 0 = \infty$.
# Rewrite $-\log\sigma(\ell) = \log(1 + e^{-\ell})$ so that nothing overflows:
# $\log(1 + e^{-\ell}) = \max(-\ell, 0) + \log(1 + e^{-|\ell|})$.

# %% tags=["exercise"]
import tinymed.functional as F


def generator_loss(fake_logits):
    """mean over the batch of -log sigmoid(fake_logits), computed without overflow."""
    # BEGIN SOLUTION
    softplus = F.relu(-fake_logits) + (1.0 + (-fake_logits.abs()).exp()).log()
    return softplus.mean()
    # END SOLUTION


# %% [markdown]
# **Exercise 11.4 (in words).** A hospital proposes to remove pacemakers and ECG leads from its
# chest X-rays with this chapter's inpainting before training a pneumonia classifier on them,
# "so that the classifier is not distracted". Give two ways this could make the classifier
# worse or its evaluation misleading, and one measurement that would tell you whether it did.
#
# **Exercise 11.5 (experiment: the saturating loss).** The cell below trains a fresh GAN for a
# short while with the saturating generator loss $\log(1 - D(G(z)))$ (one argument of
# `gan_step` changed), from the same starting weights as section 5's. *Before
# running it*, predict what $D(G(z))$ and $G$'s images will do in these first steps, compared
# with section 5's run. Run it, compare the printed means and the two rows of pictures, and
# explain with the right-hand plot of section 4.


# %%
def saturating_loss(logits):
    return -F.binary_cross_entropy_with_logits(logits, tm.zeros_like(logits))  # log(1 - D(G(z))), averaged


compare_steps = course.pick(100, 2)
tm.manual_seed(0)
other = DCGAN(latent_dim=latent_dim, ngf=32, ndf=32)
other_d = optim.Adam(other.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
other_g = optim.Adam(other.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
other_log = []
while len(other_log) < compare_steps:
    for (real,) in loader:
        z = tm.randn(len(real), latent_dim)
        other_log.append(gan_step(other.generator, other.discriminator, other_d, other_g, real, z, saturating_loss))
        if len(other_log) == compare_steps:
            break
for name, run in (("non-saturating", log[:compare_steps]), ("saturating", other_log)):
    print(
        f"{name:>15}, first {compare_steps} steps: mean D(G(z)) {np.mean([r['d_fake'] for r in run]):.3f}, "
        f"mean D(x) {np.mean([r['d_real'] for r in run]):.3f}"
    )
pictures = [generate(other.generator, fixed_z)[:, 0], snapshots[compare_steps]]
fig = plots.plot_image_grid(
    (np.concatenate(pictures) + 1) / 2,
    nrow=8,
    titles=["saturating"] + [""] * 7 + ["non-saturating"] + [""] * 7,
    title=f"G(z) for the fixed z after {compare_steps} steps",
)
course.show(fig, "experiment-saturating")
