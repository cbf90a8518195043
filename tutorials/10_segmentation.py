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
# # Chapter 10 · Segmenting what the classifier only points at
#
# In chapter 9 Grad-CAM laid a warm patch over the opacity: *this is where the classifier
# looked*. But that patch was computed on a 7×7 feature map and stretched over 28×28 pixels.
# It cannot say how large the opacity is, whether it has grown since last week's film, or
# where its edge runs. Those questions need an answer for every pixel: is it part of the
# finding or not? That is **segmentation**. How does a network give 784 answers about one
# image, and how do we grade them fairly when the thing we are looking for covers 2% of it?
#
# **Learning objectives.** After this chapter you can:
#
# - Explain with numbers why pixel accuracy flatters a segmenter of small structures, and what Dice and IoU count instead.
# - Build a small U-Net from transposed convolutions and skip connections.
# - Train it with a Dice loss on the phantoms' masks.
# - Measure Dice and IoU, and draw predicted masks over the images.
#
# **You need** chapter 8 (the training loop written out) and the convolutions of chapter 2;
# chapter 9 is the motivation, not a requirement. **Time**: about 2 hours with the exercises.
# Run it as a script (`python tutorials/10_segmentation.py`, figures go to
# `tutorials/figures/10_segmentation/`) or as a notebook (`tinymed course release DIR` writes
# both). The full run trains two small networks for a few minutes; with `TINYMED_FAST=1` it runs
# in seconds on less data and one epoch (the numbers are then poor, and the text's remarks on
# them are about the full run).

# %%
import inspect
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.functional as F
from tinymed import course, nn, plots
from tinymed.data import load_phantoms
from tinymed.metrics import dice_score, iou_score
from tinymed.models import UNet

package_root = Path(tm.__file__).parent.parent


def source_of(obj):
    """The file, relative to the folder holding tinymed, where obj is defined."""
    return Path(inspect.getsourcefile(obj)).relative_to(package_root)


print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. Images that come with an outline
#
# To learn where a finding is, a network needs examples where someone marked it, pixel by
# pixel: a **mask**, an image of zeros and ones the size of the X-ray. PneumoniaMNIST has no
# masks: one label per image, "normal" or "pneumonia", and nobody drew the outline of the
# pneumonia. So this chapter uses tinymed's **phantoms** whatever data you have. Their
# generator knows where it put each opacity (a bright Gaussian blob inside a lung) and keeps
# its mask: the pixels where the blob reaches half its peak. Half the phantoms carry an
# opacity; the other half have an empty mask.

# %%
train_set = load_phantoms("train", n=course.pick(2000, 96))
val_set = load_phantoms("val", n=course.pick(500, 64))
print("data: the built-in phantoms (PneumoniaMNIST has no masks)")
print(
    f"images {train_set.images.shape} {train_set.images.dtype}, masks {train_set.masks.shape} {train_set.masks.dtype}"
)
sizes = train_set.masks.sum(axis=(1, 2))
positive = sizes > 0
print(f"{positive.sum()} of {len(sizes)} training images have an opacity")
print(
    f"opacity size in pixels: min {sizes[positive].min()}, median {np.median(sizes[positive]):.0f}, max {sizes[positive].max()}"
)
print(f"share of all training pixels inside a mask: {train_set.masks.mean():.2%}")

# %% [markdown]
# We will draw masks as outlines over the X-rays many times, so here is one small function
# for it: the true mask's outline in green, a predicted mask's in dashed magenta, and,
# when given, the predicted probability of "opacity" as a translucent layer with its colour
# bar. (`contour` draws the line where a 0/1 image crosses one half: between the pixels
# inside and the pixels outside.)


# %%
def draw_masks(images, truth, probabilities=None, titles=None, title=""):
    """Row 1: X-rays with the true outline (green) and the predicted one (p > 0.5, dashed magenta).
    Row 2, when probabilities are given: the predicted probability over the X-ray."""
    rows = 1 if probabilities is None else 2
    fig = Figure(figsize=(1.9 * len(images) + 0.8, 2.1 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, len(images), squeeze=False)
    for k, image in enumerate(images):
        for ax in axes[:, k]:
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set(xticks=[], yticks=[])
        outlines = [(truth[k], "lime", "solid", 2.4)]
        if probabilities is not None:
            outlines.append((probabilities[k] > 0.5, "magenta", "dashed", 1.3))
            notable = np.ma.masked_less(probabilities[k], 0.05)  # below 5%: leave the X-ray uncovered
            layer = axes[1, k].imshow(notable, cmap="autumn_r", vmin=0, vmax=1, alpha=0.65)
        for mask, colour, style, width in outlines:
            if mask.any():  # an empty mask has no outline to draw
                axes[0, k].contour(mask, levels=[0.5], colors=colour, linestyles=style, linewidths=width)
        axes[0, k].set_title(titles[k] if titles else "", fontsize=9)
    if probabilities is not None:
        fig.colorbar(layer, ax=axes[1, :], label="predicted P(opacity)", shrink=0.9)
    fig.suptitle(title)
    return fig


# %%
picks = np.concatenate([np.flatnonzero(positive)[:6], np.flatnonzero(~positive)[:2]])
fig = draw_masks(
    train_set.images[picks],
    train_set.masks[picks],
    titles=[f"{s} px" if s else "no opacity" for s in sizes[picks]],
    title="phantoms and their masks (green outline: where the opacity reaches half its peak)",
)
course.show(fig, "phantom-masks")

# %% [markdown]
# ## 2. Why pixel accuracy flatters
#
# Segmentation is classification, once per pixel. The obvious score is then the fraction of
# pixels classified right, the **pixel accuracy**. Count the four kinds of pixel, with $T$
# the true mask and $P$ the predicted one: true positives (in both), false positives (in $P$
# only), false negatives (in $T$ only) and true negatives (in neither). Then
#
# $$\text{accuracy} = \frac{TP + TN}{TP + TN + FP + FN}, \qquad
#   \text{Dice} = \frac{2\,|T \cap P|}{|T| + |P|} = \frac{2\,TP}{2\,TP + FP + FN}, \qquad
#   \text{IoU} = \frac{|T \cap P|}{|T \cup P|} = \frac{TP}{TP + FP + FN}.$$
#
# Accuracy counts $TN$, the background both masks agree on, and for a small structure the
# background is nearly everything. Dice and IoU (intersection over union, also called the
# Jaccard index) leave $TN$ out: they only look at the pixels that either mask claims. Both
# are 1 for a perfect mask and 0 when the masks do not touch, and one fixes the other:
# $\text{IoU} = \text{Dice} / (2 - \text{Dice})$. When both masks are empty the fractions
# are $0/0$; tinymed scores that 1 (nothing to find, nothing found).
#
# The literal version counts pixel by pixel. We check it against the vectorised count and
# against `tinymed.metrics.dice_score` on one validation image and a prediction that is
# the truth moved two pixels to the right.


# %%
def dice_by_loop(truth, predicted):
    tp = fp = fn = 0
    for t, p in zip(truth.ravel(), predicted.ravel()):
        tp, fp, fn = tp + (t and p), fp + (p and not t), fn + (t and not p)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


truth = val_set.masks[np.flatnonzero(val_set.masks.any(axis=(1, 2)))[0]]
moved = np.roll(truth, 2, axis=1)
vectorised = 2 * np.sum(truth & moved) / (truth.sum() + moved.sum())
print(f"loop {dice_by_loop(truth, moved):.4f}, vectorised {vectorised:.4f}, tinymed {dice_score(truth, moved):.4f}")
print(f"IoU {iou_score(truth, moved):.4f} = Dice / (2 - Dice) = {vectorised / (2 - vectorised):.4f}")
assert np.isclose(dice_by_loop(truth, moved), vectorised) and np.isclose(vectorised, dice_score(truth, moved))
assert np.isclose(iou_score(truth, moved), vectorised / (2 - vectorised))
print("tinymed's Dice and IoU live in", source_of(dice_score))

# %% [markdown]
# Now four fake segmenters on the whole validation set, none of them trained: one that says
# "background" everywhere, and three that copy the truth with a mistake (moved 2 pixels, grown
# by 1 pixel on every side, shrunk by 1 pixel). Pixel accuracy is over all pixels of all
# images; Dice and IoU are per image, averaged over the images that have an opacity.

# %%
masks = val_set.masks
has_opacity = masks.any(axis=(1, 2))
neighbours = [np.roll(masks, shift, axis) for shift in (1, -1) for axis in (1, 2)]
fakes = {
    "background everywhere": np.zeros_like(masks),
    "moved 2 px": np.roll(masks, 2, axis=2),
    "grown 1 px": masks | np.any(neighbours, axis=0),
    "shrunk 1 px": masks & np.all(neighbours, axis=0),
}
table = {}
for name, predicted in fakes.items():
    accuracy = np.mean(predicted == masks)
    dice = dice_score(masks, predicted, axis=(1, 2))[has_opacity].mean()
    iou = iou_score(masks, predicted, axis=(1, 2))[has_opacity].mean()
    table[name] = (accuracy, dice, iou)
    print(f"{name:>22}: pixel accuracy {accuracy:.2%}   Dice {dice:.3f}   IoU {iou:.3f}")
assert table["background everywhere"][0] > 0.98 and table["background everywhere"][1] == 0.0
assert table["shrunk 1 px"][0] > table["grown 1 px"][0] and table["shrunk 1 px"][1] < table["grown 1 px"][1]

# %%
fig = Figure(figsize=(8, 3.6), layout="constrained")
ax = fig.subplots()
positions = np.arange(len(table))
for k, (label, colour) in enumerate([("pixel accuracy", "grey"), ("Dice", "tab:green"), ("IoU", "tab:blue")]):
    ax.bar(positions + (k - 1) * 0.27, [row[k] for row in table.values()], 0.27, label=label, color=colour)
ax.set(xticks=positions, xticklabels=list(table), ylabel="score (1 is perfect)", ylim=(0, 1.05))
ax.set_title("four segmenters that are wrong: pixel accuracy barely notices, Dice and IoU do")
ax.legend(loc="lower right")
course.show(fig, "accuracy-versus-dice")

# %% [markdown]
# "Background everywhere" finds no opacity at all and still scores about 99% pixel accuracy,
# because about 99% of the pixels *are* background; Dice calls it 0. The mask moved by two
# pixels points at the right place and scores about the same pixel accuracy as finding
# nothing. The two scores even disagree on the order of the last two: shrinking a small blob
# by one pixel gets fewer pixels wrong than growing it by one (the rim just inside is shorter
# than the rim just outside), so pixel accuracy prefers it; but those pixels are a large
# share of a small mask, and Dice prefers growing. Which of Dice and IoU to report is a
# convention: IoU is the lower of the two (except at 0 and 1), and on one image they rank
# masks the same way, since one is a function of the other. Their means over many images can
# still disagree: per-image Dice of (0.5, 1.0) against (0.8, 0.8) averages 0.75 against 0.80,
# but the IoUs (0.33, 1.0) and (0.67, 0.67) both average 0.67.
#
# ## 3. A loss you can differentiate: soft Dice
#
# To *train* for Dice we need a loss with a useful gradient. Dice on 0/1 masks has none:
# nudging a probability from 0.49 to 0.48 changes no pixel of the thresholded mask. The fix
# is to put the probabilities $p_i \in [0, 1]$ where the 0/1 prediction was. For image $n$,
# with its true mask $g$,
#
# $$\mathcal L_n = 1 - \frac{2 \sum_i p_i\, g_i + \varepsilon}{\sum_i p_i + \sum_i g_i + \varepsilon},
#   \qquad \mathcal L = \frac{1}{N} \sum_{n=1}^{N} \mathcal L_n ,$$
#
# the **soft Dice loss**: per image, then averaged over the batch. On 0/1 predictions it is
# $1 - \text{Dice}$ (up to $\varepsilon$). The small $\varepsilon > 0$ makes an empty
# prediction of an empty mask cost $1 - \varepsilon/\varepsilon = 0$ instead of $0/0$. Loop,
# vectorised, tinymed:

# %%
rng = np.random.default_rng(0)
by_size = np.flatnonzero(has_opacity)[np.argsort(masks.sum(axis=(1, 2))[has_opacity], kind="stable")]
chosen = np.r_[by_size[[0, -1, len(by_size) // 2]], np.flatnonzero(~has_opacity)[:1]]
g = masks[chosen, None].astype(np.float64)  # (N, 1, H, W): the smallest, largest, a middle and an empty mask
p = np.clip(g * 0.8 + rng.uniform(0, 0.3, g.shape), 0, 1)  # rough: 0.8-1 inside the mask, 0-0.3 outside
eps = 1.0

by_loop = []
for image_p, image_g in zip(p, g):
    overlap = sum(a * b for a, b in zip(image_p.ravel(), image_g.ravel()))
    by_loop.append(1 - (2 * overlap + eps) / (image_p.sum() + image_g.sum() + eps))
vectorised = 1 - (2 * (p * g).sum(axis=(1, 2, 3)) + eps) / (p.sum(axis=(1, 2, 3)) + g.sum(axis=(1, 2, 3)) + eps)
tinymed_loss = F.dice_loss(tm.tensor(p), tm.tensor(g), eps=eps, reduction="none").numpy()
print("per image: loop", np.round(by_loop, 5), "\n           vectorised", np.round(vectorised, 5))
print("           tinymed   ", np.round(tinymed_loss, 5), " mean", F.dice_loss(tm.tensor(p), tm.tensor(g)).item())
assert np.allclose(by_loop, vectorised) and np.allclose(vectorised, tinymed_loss)
print("F.dice_loss lives in", source_of(F.dice_loss), "and nn.DiceLoss, its module form, in", source_of(nn.DiceLoss))

# %% [markdown]
# Where does the gradient push? Write $I = \sum_i p_i g_i$ and $S = \sum_i p_i + \sum_i g_i$
# for one image. The quotient rule gives, for each pixel,
#
# $$\frac{\partial \mathcal L_n}{\partial p_i} = \frac{(2I + \varepsilon) - 2\,g_i\,(S + \varepsilon)}{(S + \varepsilon)^2}.$$
#
# Outside the true mask ($g_i = 0$) it is positive, so gradient descent lowers $p_i$; inside
# ($g_i = 1$) it is negative, so descent raises $p_i$. It does not depend on $p_i$ itself, only
# on whether the pixel belongs to the mask and on the image's two sums; and inside the mask
# it is stronger when those sums are small: the smaller the structure, the harder each of
# its pixels is pushed. That is how Dice copes with the imbalance of section 2. Binary
# cross-entropy, averaged over all pixels of a batch, gives every pixel the same weight
# whatever the size of the structure it belongs to: a small opacity is outvoted by the
# background around it, and "background everywhere" is the first thing such a network
# learns. Whether that matters after a few epochs is an experiment (exercise 10.6).
#
# We let autograd compute the gradient and check the formula at two pixels, one inside and
# one outside the mask.

# %%
p_t = tm.tensor(p[:2], requires_grad=True)  # the smallest and the largest mask
F.dice_loss(p_t, tm.tensor(g[:2]), eps=eps, reduction="sum").backward()  # sum: each image's own gradient
gradient = np.asarray(p_t.grad)[:, 0]
I, S = (p[0] * g[0]).sum(), p[0].sum() + g[0].sum()
inside, outside = np.argwhere(g[0, 0] == 1)[0], np.argwhere(g[0, 0] == 0)[0]
for name, (r, c) in [("inside", inside), ("outside", outside)]:
    formula = ((2 * I + eps) - 2 * g[0, 0, r, c] * (S + eps)) / (S + eps) ** 2
    print(f"{name:>7} pixel ({r}, {c}): autograd {gradient[0, r, c]: .6f}   formula {formula: .6f}")
    assert np.isclose(gradient[0, r, c], formula)
for k in range(2):
    print(f"mask of {int(g[k].sum())} px: every pixel inside gets {gradient[k][g[k, 0] == 1].mean():.5f}")

# %%
fig = Figure(figsize=(9, 3.6), layout="constrained")
axes = fig.subplots(1, 2)
limit = np.abs(gradient).max()
for k, ax in enumerate(axes):
    shown = ax.imshow(gradient[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.contour(g[k, 0], levels=[0.5], colors="lime")
    ax.set(title=f"true mask of {int(g[k].sum())} pixels (green)", xlabel="column", ylabel="row")
fig.colorbar(shown, ax=axes, label="∂L/∂p  (blue: descent raises p)")
fig.suptitle("the soft Dice loss pushes harder on a small mask's pixels")
course.show(fig, "dice-gradient")

# %% [markdown]
# **The $\varepsilon$ matters on empty masks.** Half the phantoms have no opacity. There
# $g = 0$ and the loss is $\mathcal L_n = S / (S + \varepsilon)$ with $S = \sum_i p_i$, the
# predicted "mass" of opacity. With a tiny $\varepsilon$ (MONAI's default is $10^{-5}$) that
# jumps to almost 1 as soon as the network predicts anything, and then stays flat: the
# gradient $\varepsilon / (S + \varepsilon)^2$ is nearly 0, so the empty images stop teaching.
# With $\varepsilon = 1$ (tinymed's default) the loss rises smoothly with the false positive's
# size and keeps pulling it down.

# %%
mass = np.logspace(-3, 2, 200)
fig = Figure(figsize=(6.5, 3.6), layout="constrained")
ax = fig.subplots()
for eps_value in (1.0, 1e-5):
    ax.plot(mass, mass / (mass + eps_value), label=f"ε = {eps_value:g}")
    print(
        f"ε = {eps_value:g}: loss at S = 0.1 is {0.1 / (0.1 + eps_value):.4f}, its slope {eps_value / (0.1 + eps_value) ** 2:.2e}"
    )
ax.set(
    xscale="log", xlabel="S = sum of the predicted probabilities on an image with no opacity", ylabel="soft Dice loss"
)
ax.set_title("the Dice loss of a false positive on an empty mask")
ax.legend()
course.show(fig, "dice-empty-mask")

# %% [markdown]
# ## 4. Upsampling that learns: the transposed convolution
#
# A classifier's encoder shrinks 28×28 to 7×7 with max pooling. A segmenter must then grow the
# map back to 28×28, one output per pixel. The tool is the **transposed convolution**: every
# input pixel stamps a copy of the kernel, scaled by its own value, into the output, the stamps
# `stride` pixels apart and added where they overlap. For one input and one output channel,
# with a $k\times k$ kernel and stride $s$,
#
# $$y[s\,i + a,\; s\,j + b] \mathrel{+}= x[i, j]\; w[a, b], \qquad 0 \le a, b < k,
#   \qquad H_\text{out} = (H - 1)\,s + k .$$
#
# (With several channels, $y[o] = \sum_c \text{stamp}(x[c], w[c, o])$: tinymed, like PyTorch,
# stores the kernel as $(C_\text{in}, C_\text{out}, k, k)$.) It is the backward pass of a
# convolution with the same kernel and stride, which is where its name comes from. The
# literal loop, checked against `F.conv_transpose2d`:


# %%
def conv_transpose_by_loop(x, w, stride):
    """One channel: x[i, j] * w added into the output at (stride*i, stride*j)."""
    k = w.shape[0]
    y = np.zeros(((x.shape[0] - 1) * stride + k, (x.shape[1] - 1) * stride + k))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            y[stride * i : stride * i + k, stride * j : stride * j + k] += x[i, j] * w
    return y


x_small = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]])
kernels = {2: np.array([[1.0, 0.5], [0.5, -1.0]]), 3: np.full((3, 3), 0.5)}
outputs = {k: conv_transpose_by_loop(x_small, w, stride=2) for k, w in kernels.items()}
for k, w in kernels.items():
    y = F.conv_transpose2d(tm.tensor(x_small[None, None]), tm.tensor(w[None, None]), stride=2).numpy()[0, 0]
    print(f"kernel {k}x{k}, stride 2: 3x3 -> {y.shape[0]}x{y.shape[1]}")
    assert np.allclose(outputs[k], y)
print("F.conv_transpose2d lives in", source_of(F.conv_transpose2d))

# %% [markdown]
# Drawn: with a 2×2 kernel and stride 2 the stamps tile the output without overlapping, each
# input pixel owning a 2×2 block (exercise 10.1 computes it without a loop). With a 3×3 kernel
# they overlap by one row and one column, and the overlaps add up: some output pixels get
# one stamp, others two or four, a known source of checkerboard patterns in generated images.

# %%
fig = Figure(figsize=(11, 3.6), layout="constrained")
axes = fig.subplots(1, 3)
panels = [
    (x_small, "input x (3×3)"),
    (outputs[2], "2×2 kernel, stride 2: 6×6"),
    (outputs[3], "3×3 kernel (all 0.5), stride 2: 7×7"),
]
for ax, (values, name) in zip(axes, panels):
    shown = ax.imshow(values, cmap="viridis")
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7, color="w" if v < values.max() / 2 else "k")
    ax.set(title=name, xlabel="column", ylabel="row", xticks=range(values.shape[1]), yticks=range(values.shape[0]))
    fig.colorbar(shown, ax=ax, shrink=0.8, label="value")
fig.suptitle("a transposed convolution stamps the kernel once per input pixel")
course.show(fig, "transposed-convolution")

# %% [markdown]
# ## 5. The U-Net: down, up, and the skip connections
#
# The **U-Net** (Ronneberger, Fischer and Brox, 2015) has two halves. Its **encoder** is a
# classifier's trunk: blocks of two 3×3 convolutions (in tinymed's version, as in most modern
# ones, each followed by BatchNorm and ReLU, as in chapter 8, and padded; the original had
# unpadded convolutions, no BatchNorm, and ended in a softmax over two classes), then a 2×2
# max pooling that halves the image and lets the next block see a
# wider context. Its **decoder** climbs back: a 2×2 transposed convolution with stride 2
# doubles the size, and a conv block refines the result. The deepest map knows *that* an
# opacity is around here (as Grad-CAM's 7×7 map did) but has lost where its edge runs. So
# the encoder's map of the same size, which still has the edges, is copied across and
# **concatenated** to the upsampled map, channel after channel: the **skip connection**. A
# final 1×1 convolution turns each pixel's channels into one logit; a sigmoid makes it the
# probability of "opacity".
#
# `tinymed.models.UNet(in_channels=1, out_channels=1, base_channels=8, depth=2)` builds it. We
# hang a forward hook on each level (tinymed's Grad-CAM grabs its activations the same way)
# and read the shapes as one image flows through.

# %%
tm.manual_seed(0)
model = UNet(in_channels=1, out_channels=1, base_channels=8, depth=2)
levels = ["down.0", "down.1", "bottom", "up.0", "decode.0", "up.1", "decode.1", "head"]
shapes = {}
hooks = [
    model.get_submodule(name).register_forward_hook(lambda m, args, out, name=name: shapes.__setitem__(name, out.shape))
    for name in levels
]
model(tm.zeros(1, 1, 28, 28))
for hook in hooks:
    hook.remove()
for name in levels:
    print(f"{name:>9}: {' x '.join(map(str, shapes[name][1:]))}")
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; the model is in {source_of(UNet)}")
assert shapes["bottom"][1:] == (32, 7, 7) and shapes["head"][1:] == (1, 28, 28)

# %% [markdown]
# The same shapes, drawn as the letter that gives the network its name: down the left, up the
# right, the skip connections across. First the text of each box; a decoder level's box shows
# the concatenation, where the channels of the upsampled map and of the skip add up.


# %%
def size(name):
    return " x ".join(map(str, shapes[name][1:]))


def joined(up, skip):  # the concatenation: the skip's channels, then the upsampled map's
    return f"{shapes[up][1] + shapes[skip][1]} x {size(up).split(' x ', 1)[1]}"


boxes = {
    "down.0": ((0, 2), f"down.0\n{size('down.0')}"),
    "down.1": ((1.2, 1), f"down.1\n{size('down.1')}"),
    "bottom": ((2.4, 0), f"bottom\n{size('bottom')}"),
    "level 1": ((3.6, 1), f"up.0: {size('up.0')}\ncat skip: {joined('up.0', 'down.1')}\ndecode.0: {size('decode.0')}"),
    "level 0": ((4.8, 2), f"up.1: {size('up.1')}\ncat skip: {joined('up.1', 'down.0')}\ndecode.1: {size('decode.1')}"),
    "head": ((6.4, 2), f"head (1x1 conv)\n{size('head')}"),
}
print(boxes["level 1"][1])

# %%
fig = Figure(figsize=(10, 4.6), layout="constrained")
ax = fig.subplots()
drawn = {}  # name -> its box, so that arrows start and stop at the box's edge
for name, ((x, y), text) in boxes.items():
    colour = "wheat" if name.startswith("level") else "lightsteelblue"
    label = ax.text(x, y, text, ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc=colour))
    drawn[name] = label.get_bbox_patch()
arrows = [
    ("down.0", "down.1"),
    ("down.1", "bottom"),
    ("bottom", "level 1"),
    ("level 1", "level 0"),
    ("level 0", "head"),
]
for a, b in arrows + [("down.0", "level 0"), ("down.1", "level 1")]:
    skip = (a, b) not in arrows
    style = dict(arrowstyle="->", patchA=drawn[a], patchB=drawn[b], linestyle="--" if skip else "-")
    ax.annotate("", boxes[b][0], boxes[a][0], arrowprops=style | dict(color="tab:green" if skip else "k"))
    if a.startswith("down") and not skip:
        ax.text(
            *(np.add(boxes[a][0], boxes[b][0]) / 2 - (0.12, 0)), "max pool", fontsize=8, ha="right", color="dimgray"
        )
ax.text(2.4, 2.12, "skip connections: copy across, then concatenate", color="tab:green", ha="center", fontsize=9)
ax.set(
    xlim=(-0.6, 7.2),
    ylim=(-0.5, 2.5),
    title="UNet(base_channels=8, depth=2) on a 28×28 phantom: channels x height x width",
)
ax.axis("off")
course.show(fig, "unet")

# %% [markdown]
# **Shape arithmetic.** Each pooling halves the size and rounds down; each transposed
# convolution doubles it exactly. With `depth=2`, 28 → 14 → 7 and back, 7 → 14 → 28, and every
# upsampled map meets a skip of its own size. One level deeper, 7 → 3 (a row and a column are
# dropped), and 3 → 6 meets a skip of 7. tinymed's U-Net pads the upsampled map with a row of
# zeros at the bottom and a column at the right, which is where the pooling dropped them: the
# pooling read rows 0-5 of the 7-row skip and never row 6, so the 6 upsampled rows line up
# with rows 0-5. The original U-Net met such mismatches at every level, because its
# convolutions had no padding and every map shrank; it cropped the centre of each skip to
# fit instead. Exercise 10.2 computes the padding at every level.

# %%
deep = UNet(base_channels=2, depth=3)
seen = {}
for name in ["down.2", "bottom", "up.0", "decode.0"]:
    deep.get_submodule(name).register_forward_hook(
        lambda m, args, out, name=name: seen.__setitem__(name, out.shape[2:])
    )
out = deep(tm.zeros(1, 1, 28, 28))
print(
    "depth 3:",
    ", ".join(f"{name} {h}x{w}" for name, (h, w) in seen.items()),
    f"-> output {out.shape[2]}x{out.shape[3]}",
)
assert seen["up.0"] == (6, 6) and seen["down.2"] == seen["decode.0"] == (7, 7)

# %% [markdown]
# ## 6. Training on the phantoms
#
# The loop is chapter 8's, with a mask in place of the label. The images are scaled to
# about zero mean and unit spread; the masks become float 0/1 images of shape
# $(N, 1, 28, 28)$, like the network's output. `predict` runs the network on a whole set in
# evaluation mode (BatchNorm uses its running statistics) and returns probabilities, and
# `segmentation_scores` turns them into the numbers we follow during training: Dice and
# IoU averaged over the validation images that have an opacity, and the share of images
# without one where the network correctly predicts nothing.

# %%
mean, std = train_set.images.mean(), train_set.images.std()
x_train = ((train_set.images[:, None] - mean) / std).astype(np.float32)
x_val = ((val_set.images[:, None] - mean) / std).astype(np.float32)
y_train, y_val = train_set.masks[:, None].astype(np.float32), val_set.masks[:, None].astype(np.float32)


def predict(model, images, batch_size=250):
    """P(opacity) for every pixel of (N, 1, H, W) float images, in evaluation mode."""
    model.eval()
    with tm.no_grad():
        chunks = [F.sigmoid(model(tm.tensor(images[k : k + batch_size]))) for k in range(0, len(images), batch_size)]
    return np.concatenate([chunk.numpy() for chunk in chunks])


def segmentation_scores(probabilities, truth):
    predicted, truth = probabilities[:, 0] > 0.5, truth[:, 0] > 0.5
    found = truth.any(axis=(1, 2))
    return {
        "dice": dice_score(truth, predicted, axis=(1, 2))[found].mean(),
        "iou": iou_score(truth, predicted, axis=(1, 2))[found].mean(),
        "clean": 1 - predicted[~found].any(axis=(1, 2)).mean(),
    }


print(x_train.shape, x_train.dtype, y_train.shape, f"image mean {x_train.mean():.3f}, std {x_train.std():.3f}")

# %% [markdown]
# `train` takes the loss as a function of the logits and the masks, so that the Dice loss
# here and the cross-entropy of exercise 10.6 run through the same loop: Adam with a learning
# rate of 0.01, batches of 32, and the validation scores after each epoch.


# %%
def train(model, loss_fn, epochs, lr=0.01, batch_size=32, seed=0):
    optimizer, order, history = tm.optim.Adam(model.parameters(), lr=lr), np.random.default_rng(seed), []
    for epoch in range(1, epochs + 1):
        model.train()
        start, losses = time.perf_counter(), []
        for batch in np.array_split(order.permutation(len(x_train)), len(x_train) // batch_size):
            loss = loss_fn(model(tm.tensor(x_train[batch])), tm.tensor(y_train[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        row = {"epoch": epoch, "loss": np.mean(losses), **segmentation_scores(predict(model, x_val), y_val)}
        history.append(row)
        print(
            f"epoch {epoch}: loss {row['loss']:.4f}  val Dice {row['dice']:.3f}  IoU {row['iou']:.3f}  "
            f"empty kept empty {row['clean']:.0%}  ({time.perf_counter() - start:.1f} s)"
        )
    return history


# %%
dice_loss = nn.DiceLoss()  # soft Dice, eps = 1, per image then averaged
epochs = course.pick(8, 1)
tm.manual_seed(0)
model = UNet(in_channels=1, out_channels=1, base_channels=8, depth=2)
start = time.perf_counter()
history = train(model, lambda logits, masks: dice_loss(F.sigmoid(logits), masks), epochs)
print(f"{epochs} epochs on {len(x_train)} images in {time.perf_counter() - start:.0f} s")

# %%
fig = plots.plot_curves(
    history,
    [
        plots.Panel("training", "soft Dice loss", {"train loss": "loss"}),
        plots.Panel(
            "validation",
            "score",
            {"Dice (opacities)": "dice", "IoU (opacities)": "iou", "empty images kept empty": "clean"},
            ylim=(0, 1.02),
        ),
    ],
    title="U-Net trained with the soft Dice loss on the phantoms",
)
course.show(fig, "training")

# %% [markdown]
# ## 7. Predicted masks over the images
#
# Numbers summarise; pictures show what the numbers hide. We sort the validation images that
# have an opacity by their Dice and draw the best, two in the middle and the worst, and two
# images without an opacity. Top row: the true outline (green) and the predicted one (dashed
# magenta, where $p > 0.5$). Bottom row: the probability itself.

# %%
probabilities = predict(model, x_val)
predicted = probabilities[:, 0] > 0.5
per_image = dice_score(val_set.masks, predicted, axis=(1, 2))
with_opacity, without = np.flatnonzero(has_opacity), np.flatnonzero(~has_opacity)
ranked = with_opacity[np.argsort(-per_image[with_opacity], kind="stable")]
shown = np.concatenate([ranked[[0, len(ranked) // 3, 2 * len(ranked) // 3, -1]], without[:2]])
titles = [f"Dice {per_image[k]:.2f}" if has_opacity[k] else f"no opacity; {predicted[k].sum()} px" for k in shown]
fig = draw_masks(
    val_set.images[shown],
    val_set.masks[shown],
    probabilities[shown, 0],
    titles,
    title="validation phantoms: best, middle and worst opacities, and two without",
)
course.show(fig, "predictions")

# %% [markdown]
# ## 8. Reading the scores
#
# Three ways to sum up the same predictions give three different numbers, and a report
# must say which one it gives:
#
# - the **mean Dice over images with an opacity**, what we followed during training;
# - the **mean Dice over all images**, where each correctly empty prediction of an empty mask
#   scores 1 by our convention, so the images with nothing to find pull the mean up;
# - the **pooled Dice**, all pixels of all images counted as one mask (`axis=None`), which
#   weighs large opacities more than small ones.
#
# And pixel accuracy, for comparison with "background everywhere" from section 2.

# %%
pooled = dice_score(val_set.masks, predicted)
summary = {
    "mean Dice, images with an opacity": per_image[has_opacity].mean(),
    "mean Dice, all images (empty = 1)": per_image.mean(),
    "pooled Dice, all pixels as one mask": pooled,
    "mean IoU, images with an opacity": iou_score(val_set.masks, predicted, axis=(1, 2))[has_opacity].mean(),
    "pixel accuracy, trained U-Net": np.mean(predicted == val_set.masks),
    "pixel accuracy, background everywhere": table["background everywhere"][0],
}
for name, value in summary.items():
    print(f"{name:>40}: {value:.3f}")

# %% [markdown]
# Does size matter? Each dot is one validation opacity: its size in pixels, and the Dice of
# its predicted mask.

# %%
opacity_sizes = val_set.masks.sum(axis=(1, 2))[has_opacity]
fig = Figure(figsize=(6.5, 3.8), layout="constrained")
ax = fig.subplots()
ax.scatter(opacity_sizes, per_image[has_opacity], s=12, alpha=0.6)
ax.set(xlabel="size of the true mask (pixels)", ylabel="Dice of the predicted mask", ylim=(-0.03, 1.03))
ax.set_title("small opacities are harder on average: one pixel of edge is a larger share of them")
course.show(fig, "dice-by-size")
small = opacity_sizes <= np.median(opacity_sizes)
print(
    f"mean Dice: {per_image[has_opacity][small].mean():.3f} for the smaller half of the opacities, "
    f"{per_image[has_opacity][~small].mean():.3f} for the larger half"
)

# %% [markdown]
# In the full run the U-Net reaches a mean Dice of about 0.75 to 0.8 on the opacities and
# keeps nearly every empty image empty; the mean over all images is higher only because the
# empty images score 1. Its pixel accuracy, about 99.5%, is a hair above the 98.9% of
# "background everywhere": the score that could not tell a useful segmenter from a useless
# one still cannot. Small opacities score lower than large ones, and the worst cases are
# small, faint blobs it misses or outlines too small. Your numbers will differ a little from
# run to run and machine to machine.
#
# ## 9. Honest limits
#
# - **Phantoms are not anatomy.** A phantom's opacity is a Gaussian blob on smooth shapes,
#   and its mask is a threshold of that blob: a ground truth that is exactly right and exactly
#   consistent from image to image. No real mask is. A real opacity has no "half its peak";
#   its outline is a radiologist's judgement, and two radiologists outlining the same finding
#   do not draw the same pixels, so a model's Dice against one reader has a ceiling below 1
#   and should be read next to the readers' agreement with each other.
# - **PneumoniaMNIST has no masks**, so nothing in this chapter can be checked on it. Real
#   segmentation needs images annotated pixel by pixel, which is slow expert work: public
#   chest X-ray sets with masks exist for the lungs and for some findings (the SIIM-ACR
#   pneumothorax challenge published masks; the RSNA pneumonia challenge gave only boxes).
#   Grad-CAM (chapter 9) needs no masks, which is why it is used so much, and why it cannot
#   be scored the way Dice scores a segmenter.
# - **28×28 is coarse.** A chest film shrunk to 28 pixels across puts more than a centimetre
#   of chest in each pixel; a one-pixel error at the edge is a large share of a small mask
#   (section 8's scatter), and Dice at this resolution says little about how an outline would
#   fare on a full-size film.
# - **Dice does not say where the error is.** A false positive in the other lung and a rim
#   one pixel too wide can cost the same. Distance-based scores (the Hausdorff distance,
#   the mean distance between outlines) answer "how far off", and clinical use may need both.
# - **The 0.5 threshold and the empty-mask convention are choices**, and they change the
#   numbers (section 8). The probabilities are not calibrated: 0.9 does not mean "right 9
#   times in 10".
# - **No augmentation.** Small shifts and rotations would help, but they must move the image
#   and its mask together, with the same parameters (and brightness changes must touch the
#   image only); tinymed's transforms, used in chapter 8, take a batch of images alone.
#
# A radiologist would still need: validation on annotated images from their own scanners and
# patients, agreement with more than one reader, a look at the failures (not only the mean),
# and a way to correct the outline by hand.

# %% [markdown]
# ## Exercises
#
# Exercises 10.1 to 10.4 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 10           # in the folder holding your 10_segmentation.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` and prints PASS or FAIL with a hint for each.
# Exercises 10.5 and 10.6 are for you and your instructor.
#
# **Exercise 10.1 (upsampling without a loop).** With a 2×2 kernel and stride 2 the stamps of
# section 4 do not overlap: input pixel $(i, j)$ owns output rows $2i, 2i+1$ and columns
# $2j, 2j+1$, so
# $y[n, o, 2i + a, 2j + b] = \text{bias}[o] + \sum_c x[n, c, i, j]\, w[c, o, a, b]$.
# Write `upsample2x(x, weight, bias)` for NumPy arrays x $(N, C_\text{in}, H, W)$, weight
# $(C_\text{in}, C_\text{out}, 2, 2)$ (PyTorch's layout) and bias $(C_\text{out},)$, returning
# $(N, C_\text{out}, 2H, 2W)$ in x's dtype, with no Python loop over pixels (hint:
# `np.einsum` to an array indexed $(n, o, i, a, j, b)$, then one reshape). The grader compares
# it with `F.conv_transpose2d(..., stride=2)`.

# %% tags=["exercise"]
import numpy as np


def upsample2x(x, weight, bias):
    """2x2 transposed convolution with stride 2: (N, C_in, H, W) -> (N, C_out, 2H, 2W)."""
    # BEGIN SOLUTION
    n, _, h, w = x.shape
    blocks = np.einsum("ncij,coab->noiajb", x, weight)  # each input pixel's own 2x2 block
    return blocks.reshape(n, weight.shape[1], 2 * h, 2 * w) + bias[None, :, None, None]
    # END SOLUTION


# %% [markdown]
# **Exercise 10.2 (skip-connection arithmetic).** Write `skip_padding(size, depth)`: for a
# square image of `size` pixels and a U-Net of `depth` levels, the list of how many rows
# (and columns) the upsampled map is short of its skip connection at each decoder level,
# deepest level first. Max pooling rounds down; the 2×2 transposed convolution doubles.
# `skip_padding(28, 2)` is `[0, 0]` and `skip_padding(28, 3)` is `[1, 0, 0]` (section 5).


# %% tags=["exercise"]
def skip_padding(size, depth):
    """Rows the upsampled map lacks at each decoder level, deepest first."""
    # BEGIN SOLUTION
    sizes = [size]
    for _ in range(depth):
        sizes.append(sizes[-1] // 2)  # max pooling 2x2 drops an odd last row
    return [sizes[k] - 2 * sizes[k + 1] for k in reversed(range(depth))]
    # END SOLUTION


# %% [markdown]
# **Exercise 10.3 (the soft Dice loss, forward and backward).** Write `SoftDiceLoss`, a
# `tm.Function` whose `forward(p, g, eps=1.0)` returns the soft Dice loss of section 3 (per
# image, the sums over every axis but the first, then the mean over the $N$ images) and whose
# `backward` returns the gradient with respect to `p`, from the formula of section 3 (divided
# by $N$ for the mean), and `None` for the mask `g`. Work on the arrays with `self.xp` and
# keep what backward needs on `self`. The grader compares the value with `F.dice_loss` (empty
# masks too) and runs `tm.gradcheck` on your backward.

# %% tags=["exercise"]
import tinymed as tm


class SoftDiceLoss(tm.Function):
    """mean over n of 1 - (2 sum p g + eps) / (sum p + sum g + eps); p, g (N, ...)."""

    def forward(self, p, g, eps=1.0):
        # BEGIN SOLUTION
        axes = tuple(range(1, p.ndim))
        self.g, self.eps = g, eps
        self.overlap = (p * g).sum(axis=axes, keepdims=True)  # I, one per image
        self.total = p.sum(axis=axes, keepdims=True) + g.sum(axis=axes, keepdims=True)  # S
        return (1 - (2 * self.overlap + eps) / (self.total + eps)).mean()
        # END SOLUTION

    def backward(self, grad_output):
        # BEGIN SOLUTION
        denominator = self.total + self.eps
        grad_p = ((2 * self.overlap + self.eps) - 2 * self.g * denominator) / denominator**2
        return grad_output * grad_p / self.g.shape[0], None
        # END SOLUTION


# %% [markdown]
# **Exercise 10.4 (IoU, one per image).** Write `iou_per_image(truth, predicted)` for two
# batches of binary masks $(N, H, W)$ (bool, or 0 and 1): the $(N,)$ array of each image's
# $|T \cap P| / |T \cup P|$, with 1.0 where both masks are empty, without a Python loop over
# the images and without a division-by-zero warning. The grader compares it with
# `tinymed.metrics.iou_score(..., axis=(1, 2))`.

# %% tags=["exercise"]
import numpy as np


def iou_per_image(truth, predicted):
    """(N,) intersection over union of (N, H, W) binary masks; 1.0 where both are empty."""
    # BEGIN SOLUTION
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    overlap = (truth & predicted).sum(axis=(1, 2))
    union = (truth | predicted).sum(axis=(1, 2))
    return np.where(union == 0, 1.0, overlap / np.maximum(union, 1))
    # END SOLUTION


# %% [markdown]
# **Exercise 10.5 (in words).** A hospital's test set has 1,000 chest films, 900 of them with
# no opacity. A vendor reports "mean Dice 0.93" for its segmenter. Using section 8, write down
# what that number could hide: what would its mean Dice be if it found every empty film empty
# and scored only 0.4 on the 100 opacities? Which numbers would you ask the vendor for
# instead, and why is pixel accuracy not one of them?
#
# **Exercise 10.6 (experiment: Dice or cross-entropy).** Train the same U-Net with binary
# cross-entropy on the logits (`F.binary_cross_entropy_with_logits`, every pixel of the batch
# weighted the same) instead of the soft Dice loss, changing nothing else. *Before running*,
# write down your predictions. In the first epochs, will it find the opacities as fast as the
# Dice-trained network did? After the last epoch, will its Dice on the opacities be higher or
# lower, and its pixel accuracy? Will it do worse on the small opacities? Then run the cell and
# explain what you see with section 2's class balance and section 3's gradients. Is Dice the
# better loss on these phantoms, and what would you need to know before saying so in general?
# (Then try `pos_weight=tm.tensor([20.0])`, which weighs the opacity's pixels 20 times, or the
# sum of the two losses, a common choice in practice.)

# %%
tm.manual_seed(0)
bce_model = UNet(in_channels=1, out_channels=1, base_channels=8, depth=2)
bce_history = train(bce_model, lambda logits, masks: F.binary_cross_entropy_with_logits(logits, masks), epochs)
bce_predicted = predict(bce_model, x_val)[:, 0] > 0.5
bce_dice = dice_score(val_set.masks, bce_predicted, axis=(1, 2))[has_opacity]
for name, found, dice in [("soft Dice", predicted, per_image[has_opacity]), ("cross-entropy", bce_predicted, bce_dice)]:
    print(
        f"{name:>13}: pixel accuracy {np.mean(found == val_set.masks):.4f}, mean Dice on opacities {dice.mean():.3f}, "
        f"small {dice[small].mean():.3f}, large {dice[~small].mean():.3f}"
    )

# %%
both = [{"epoch": a["epoch"], "dice": a["dice"], "bce": b["dice"]} for a, b in zip(history, bce_history)]
losses = {"soft Dice loss": "dice", "cross-entropy": "bce"}
panel = plots.Panel("validation, after each epoch", "mean Dice on the opacities", losses, ylim=(0, 1.02))
fig = plots.plot_curves(both, [panel], title="the same U-Net trained with two losses")
course.show(fig, "experiment-losses")
