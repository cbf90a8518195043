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
# # Chapter 9 · Explaining a diagnosis
#
# Chapter 8 trained a network that reads a chest X-ray and answers "pneumonia, 0.93". Before
# anyone acts on that number, a radiologist asks: *where?* Which part of the image made the
# network say so: the shadow low in the right lung, or the letter "R" the technician put in
# the corner? And a sceptic asks a second question: is a heatmap an answer about *this*
# network at all, or would any edge detector draw the same picture?
#
# This chapter computes four answers to "where?" for the same X-rays: **saliency** (the
# gradient with respect to the pixels), **Grad-CAM** (the gradient with respect to a feature
# map), **occlusion sensitivity** (hide a patch, watch the score drop) and the **attention
# maps** of chapter 5. Then it puts them to two tests: do they change when the network's
# weights are randomised, and, on phantoms where we know where the opacity is, do they point
# at it?
#
# **Learning objectives.** After this chapter you can:
#
# - Compute Grad-CAM for a trained classifier.
# - Compare Grad-CAM, attention maps and occlusion sensitivity on the same X-ray.
# - Say what a heatmap can and cannot tell a radiologist.
#
# **You need** chapter 5 (self-attention and MedCNN's attention block) and chapter 8 (training a
# classifier, ROC AUC). **Time**: about 90 minutes with the exercises. Run it as a script
# (`python tutorials/09_explain.py`, figures go to `tutorials/figures/09_explain/`) or as a
# notebook (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it runs in seconds
# on less data, and the network it explains has barely trained, so its maps mean little.

# %%
import inspect
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.functional as F
from tinymed import course, explain, plots
from tinymed.data import DataLoader, Normalize, load_dataset, load_phantoms
from tinymed.metrics import roc_auc_score
from tinymed.models import MedCNN

print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. A classifier to explain
#
# We train tinymed's `MedCNN` (chapter 5 met its attention block), small: 8, 16 and 32
# channels, 2 heads. It is not chapter 8's plain CNN: section 5's attention maps need an
# attention block. The loop has chapter 8's shape, made quicker: AdamW (Adam with weight
# decay, chapter 5) under a **one-cycle** schedule instead of Adam under a cosine one (the
# learning rate climbs from small to its maximum over the first part of the run, then decays
# to almost zero, which lets a short run take large steps in the middle safely), and no
# augmentation. `fit`
# returns the network in evaluation mode, with the normalisation its inputs need.


# %%
def fit(dataset, epochs, seed=0):
    """A small MedCNN trained on dataset; returns (network in eval mode, its input normalisation)."""
    pixels = dataset.images / 255.0
    normalise = Normalize(pixels.mean(), pixels.std())
    tm.manual_seed(seed)
    net = MedCNN(channels=(8, 16, 32), num_heads=2)
    loader = DataLoader(dataset, batch_size=64, shuffle=True, seed=seed, transform=normalise)
    optimizer = tm.optim.AdamW(net.parameters(), lr=1e-2)
    schedule = tm.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * len(loader))
    for _ in range(epochs):
        for images, labels in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(tm.tensor(images)), tm.tensor(labels)).backward()
            optimizer.step()
            schedule.step()
    return net.eval(), normalise


def scores(net, x):
    """The class scores (logits) y for normalised images x (N, 1, 28, 28): a NumPy array (N, 2)."""
    with tm.no_grad():
        return net(tm.tensor(x)).numpy()


def probabilities(net, x):
    """p(class) = softmax(y) for normalised images x: a NumPy array (N, 2)."""
    with tm.no_grad():
        return F.softmax(net(tm.tensor(x)), dim=1).numpy()


# %%
train = course.xray_dataset("train", n=course.pick(2000, 192))
val = course.xray_dataset("val", n=course.pick(400, 64))
EPOCHS = course.pick(3, 1)
start = time.perf_counter()
model, normalise = fit(train, EPOCHS)
x_val = normalise((val.images / 255.0).astype(np.float32))  # (N, 1, 28, 28), what the network reads
p_val = probabilities(model, x_val)[:, 1]
print(f"{EPOCHS} epochs in {time.perf_counter() - start:.0f} s; val AUC {roc_auc_score(val.labels, p_val):.3f}")

# %% [markdown]
# The X-rays we explain: the first three positives of the validation set that the network
# gets right, and the first normal one it gets right (in fast mode, when it gets none right, the
# first ones). Explaining right answers first is the kind choice; section 9 comes back to the
# unkind ones.

# %%
positives, normals = np.flatnonzero(val.labels == 1), np.flatnonzero(val.labels == 0)
right = (p_val > 0.5) == (val.labels == 1)
picks = np.concatenate(
    [
        positives[np.argsort(~right[positives], kind="stable")[:3]],
        normals[np.argsort(~right[normals], kind="stable")[:1]],
    ]
)
x_pick = x_val[picks]
shown = val.images[picks, 0] / 255.0  # for drawing, in [0, 1]
names = [f"{val.info.labels[val.labels[n]]}, p = {p_val[n]:.2f}" for n in picks]
print("explaining validation images", picks.tolist(), "\n ", "\n  ".join(names))
target = 1  # we explain the score of the positive class throughout
positive = val.info.labels[target]

# %% [markdown]
# ## 2. Saliency: which pixels would move the score?
#
# The simplest answer uses the gradient of chapter 1, taken with respect to the *input*. Let
# $y_c$ be the score (the logit, before the softmax) of class $c$. A pixel whose small change
# moves $y_c$ a lot matters to the network there:
#
# $$S_{ij} = \max_{\text{channels}} \left| \frac{\partial y_c}{\partial x_{ij}} \right| .$$
#
# One backward pass gives it for every pixel. We backpropagate the sum of the four images'
# scores: each score depends only on its own image, so each image receives its own gradient.
# (That holds in evaluation mode only. In training mode BatchNorm mixes the images of a batch
# through its batch statistics, and the gradients would leak between them.)

# %%
x = tm.tensor(x_pick, requires_grad=True)
model(x)[:, target].sum().backward()
ours = np.abs(np.asarray(x.grad)).max(axis=1)  # (4, 28, 28)
ours /= ours.max(axis=(1, 2), keepdims=True)  # each map scaled to a maximum of 1
model.zero_grad()
saliency = explain.saliency(model, tm.tensor(x_pick), target=target)
assert np.allclose(ours, saliency, atol=1e-6)
print("saliency maps", saliency.shape, "- ours and tinymed.explain.saliency agree")

# %% [markdown]
# ## 3. Grad-CAM: which places in a feature map?
#
# Pixels are the wrong unit for a CNN's reasoning; its last convolution block (`block3`, 32
# channels on a 7×7 grid) holds the features the rest of the network classifies (in MedCNN
# an attention block still mixes the positions before the head, so the gradients reach
# `block3` through it). **Grad-CAM** (Selvaraju et
# al., 2017) weighs each channel $A_k$ of that block by how much the class score rises with it,
# on average over the positions, adds the weighted channels up, and keeps the positive part:
#
# $$\alpha_k^c = \frac{1}{hw} \sum_{i,j} \frac{\partial y_c}{\partial A_k[i,j]}, \qquad
#   L^c = \operatorname{ReLU}\!\Big(\sum_k \alpha_k^c A_k\Big) \quad (h \times w = 7 \times 7).$$
#
# The ReLU keeps the places that speak *for* class $c$; what is left is upsampled to 28×28 and
# scaled to a maximum of 1. We need the block's output $A$ and its gradient: `explain.capture`
# registers a forward hook that catches the block's output and asks autograd to keep that
# intermediate tensor's gradient. First the formula as a loop, for the first X-ray.

# %%
layer = explain.find_layer(model, model.gradcam_layer)  # "block3"
with explain.capture(layer) as record:
    model(tm.tensor(x_pick))[:, target].sum().backward()
A = record.output.detach().numpy()  # (4, 32, 7, 7) activations
dA = np.asarray(record.output.grad)  # (4, 32, 7, 7) d y_c / d A
model.zero_grad()
n, channels = 0, A.shape[1]
alpha = np.array([dA[n, k].mean() for k in range(channels)])  # one weight per channel
weighted = sum(alpha[k] * A[n, k] for k in range(channels))  # (7, 7), may be negative
cam = explain.resize_bilinear(np.maximum(weighted, 0)[None], (28, 28))[0]
cam = cam / cam.max() if cam.max() > 0 else cam
gradcam = explain.gradcam(model, tm.tensor(x_pick), target=target)  # (4, 28, 28)
assert np.allclose(cam, gradcam[0], atol=1e-6)
top = np.argsort(-np.abs(alpha * A[n].mean(axis=(1, 2))))[:4]
print("channel  alpha_k   mean A_k   contribution (alpha_k * mean A_k)")
for k in top:
    print(f"{k:7d} {alpha[k]:9.4f} {A[n, k].mean():10.4f} {alpha[k] * A[n, k].mean():12.4f}")
where = Path(inspect.getsourcefile(explain.gradcam)).relative_to(Path(tm.__file__).parent.parent)
print(f"where it lives: {where}, line {inspect.getsourcelines(explain.gradcam)[1]}")

# %% [markdown]
# The pieces drawn: the X-ray, the three channels that contribute most, their weighted sum
# before the ReLU (red for evidence *for* the class, blue for evidence against), and the
# Grad-CAM map that results. Exercise 9.1 writes the same computation for a whole batch, with
# no loop.

# %%
fig = Figure(figsize=(15, 3.4), layout="constrained")
axes = fig.subplots(1, 6)
axes[0].imshow(shown[n], cmap="gray", vmin=0, vmax=1)
axes[0].set_title(names[n], fontsize=9)
for ax, k in zip(axes[1:4], top[:3]):
    im = ax.imshow(A[n, k], cmap="gray")
    ax.set_title(f"channel {k}: α = {alpha[k]:+.3f}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
limit = np.abs(weighted).max()
im = axes[4].imshow(weighted, cmap="RdBu_r", vmin=-limit, vmax=limit)
axes[4].set_title("Σ α_k A_k (before ReLU)", fontsize=9)
fig.colorbar(im, ax=axes[4], fraction=0.046)
axes[5].imshow(shown[n], cmap="gray", vmin=0, vmax=1)
im = axes[5].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
axes[5].set_title("Grad-CAM, upsampled", fontsize=9)
fig.colorbar(im, ax=axes[5], fraction=0.046)
for ax in axes:
    ax.set(xticks=[], yticks=[])
fig.suptitle(f"Grad-CAM for '{positive}', block3 (7×7)")
course.show(fig, "gradcam-pieces")

# %% [markdown]
# Two choices shape the map. **The layer**: an earlier block has a finer grid (block1 is
# 14×14) but features closer to edges than to findings. **The class**: Grad-CAM for the other
# class shows where the evidence *against* pneumonia sits. Both on the same X-ray:

# %%
maps = {
    f"'{positive}', {name}": explain.gradcam(model, tm.tensor(x_pick[:1]), target=target, layer=name)[0]
    for name in ("block1", "block2", "block3")
}
maps[f"'{val.info.labels[0]}', block3"] = explain.gradcam(model, tm.tensor(x_pick[:1]), target=0)[0]
fig = plots.plot_explanation(shown[0], maps, title="Grad-CAM: the layer and the class change the map")
course.show(fig, "gradcam-layers")
for name, heat in maps.items():
    if not heat.any():
        print(f"{name}: empty (every value 0 after the ReLU)")

# %% [markdown]
# A panel can come out empty. Grad-CAM keeps only the positive part of $\sum_k \alpha_k^c A_k$
# (the ReLU of section 3): where the weighted channels only argue *against* the class, nothing
# is left. On an X-ray the network calls pneumonia with near certainty, the other class's map
# is often empty, and so can be an early block's. An empty map is an answer ("nothing in this
# layer speaks for this class here"), not a failure; the cell prints which maps were empty in
# your run.

# %% [markdown]
# ## 4. Occlusion sensitivity: hide a patch, watch the score
#
# Gradients describe what an infinitesimal change would do. **Occlusion** (Zeiler and Fergus,
# 2014) asks a plainer question by experiment: cover a square of the image with a grey patch
# and measure how far the class score falls.
#
# $$\Delta_c(i, j) = y_c(x) - y_c\big(x \text{ with the patch at } (i, j) \text{ set to } f\big) .$$
#
# A large drop means the network needed what was under the patch. No gradient is involved, so
# it works for any model, but it costs one forward pass per position. We measure the score
# $y_c$, as saliency and Grad-CAM do, rather than the probability: a probability of 0.999
# hardly moves when some of the evidence is hidden (the softmax saturates, as in chapter 5,
# section 4), while the score does. We use a 6×6 patch moved in steps of 2 pixels, and
# $f = 0$, which after normalisation is the training images' mean grey. First one position,
# to see what the network sees:

# %%
PATCH, STRIDE = 6, course.pick(2, 4)
r, c = 12, 4  # a patch low in the lung on the image's left
hidden = x_pick[:1].copy()
hidden[:, :, r : r + PATCH, c : c + PATCH] = 0.0
before, after = scores(model, x_pick[:1])[0, target], scores(model, hidden)[0, target]
p_before, p_after = probabilities(model, x_pick[:1])[0, target], probabilities(model, hidden)[0, target]
print(f"rows {r}-{r + PATCH - 1}, columns {c}-{c + PATCH - 1} hidden:")
print(f"  score y_{target} {before:7.3f} -> {after:7.3f}\n  p({positive}) {p_before:9.4f} -> {p_after:7.4f}")
fig = plots.plot_image_grid(
    np.stack([x_pick[0, 0], hidden[0, 0]]) * normalise.std[0] + normalise.mean[0],
    nrow=2,
    titles=[f"score {before:.2f}", f"patch hidden: score {after:.2f}"],
    title="the first X-ray, and with one grey patch",
)
course.show(fig, "occlusion-one")

# %% [markdown]
# Now every position, with a loop: a forward pass per position. The result is a grid of drops,
# one per patch position. To draw it on the image and compare it with the other maps, each
# pixel gets the mean drop of the patches that covered it, and, as for Grad-CAM, the positive
# part scaled to a maximum of 1. (Exercise 9.2 computes the grid for a batch of images, with
# one call to the network per image.)


# %%
def occlusion_loop(net, image, target, patch=PATCH, stride=STRIDE, fill=0.0):
    """Drop of the target's score for each position of a patch x patch square of `fill` on image (1, H, W)."""
    base = scores(net, image[None])[0, target]
    rows = range(0, image.shape[-2] - patch + 1, stride)
    cols = range(0, image.shape[-1] - patch + 1, stride)
    drop = np.zeros((len(rows), len(cols)))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            hidden = image.copy()
            hidden[:, r : r + patch, c : c + patch] = fill
            drop[a, b] = base - scores(net, hidden[None])[0, target]
    return drop


def to_pixels(drop, size=28, patch=PATCH, stride=STRIDE):
    """Each pixel: the mean drop of the patches that covered it; then the positive part, max 1."""
    total, count = np.zeros((size, size)), np.zeros((size, size))
    for (a, b), value in np.ndenumerate(drop):
        total[a * stride : a * stride + patch, b * stride : b * stride + patch] += value
        count[a * stride : a * stride + patch, b * stride : b * stride + patch] += 1
    heat = np.maximum(total / np.maximum(count, 1), 0)
    return heat / heat.max() if heat.max() > 0 else heat


start = time.perf_counter()
drops = [occlusion_loop(model, image, target) for image in x_pick]
occlusion = np.stack([to_pixels(d) for d in drops])
print(f"{len(drops)} images x {drops[0].size} positions in {time.perf_counter() - start:.1f} s; grid {drops[0].shape}")
cell = tuple(int(i) for i in np.unravel_index(drops[0].argmax(), drops[0].shape))
print(f"largest drop on the first image: {drops[0].max():.3f}, at grid cell {cell} (patch rows and columns x {STRIDE})")

# %% [markdown]
# ## 5. Attention maps
#
# MedCNN has a fourth answer built in: the attention each position of its 7×7 feature map
# receives (chapter 5, section 7). It costs one forward pass, and it is computed *before* the
# head that makes the decision; section 7 shows what that implies.

# %%
attention = explain.attention_map(model, tm.tensor(x_pick))
print(f"attention maps {attention.shape}; gamma = {model.attention.gamma.item():+.3f} scales the block's output")

# %% [markdown]
# ## 6. Four answers, one X-ray
#
# The four maps side by side, each scaled to a maximum of 1, over the same X-rays:

# %%
methods = {"saliency": saliency, "Grad-CAM": gradcam, "occlusion": occlusion, "attention": attention}
fig = Figure(figsize=(13, 2.9 * len(picks)), layout="constrained")
axes = fig.subplots(len(picks), 1 + len(methods))
for row, (ax_row, image, name) in enumerate(zip(axes, shown, names)):
    ax_row[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    ax_row[0].set_title(name, fontsize=9)
    for ax, (method, heat) in zip(ax_row[1:], methods.items()):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        overlay = ax.imshow(heat[row], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(method, fontsize=9)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
fig.colorbar(overlay, ax=axes[:, -1].tolist(), fraction=0.05, label="importance (max = 1)")
fig.suptitle(f"where the evidence for '{positive}' is, four ways")
course.show(fig, "four-maps")

# %% [markdown]
# Do the methods agree? A number for "how alike are two maps" that ignores their scales is
# the **rank correlation** (Spearman's): replace each map's 784 values by their ranks and take
# the ordinary correlation of the ranks. 1 means the same ordering of the pixels, 0 none.
# Pixels with equal values (Grad-CAM's ReLU makes many zeros) share their average rank.


# %%
def ranks(values):
    """Ranks 0..n-1 of a flat array, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values))
    rank[order] = np.arange(len(values))
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(group, rank) / counts)[group]


def rank_correlation(a, b):
    """Spearman's correlation of two maps; 0 when either is flat (a flat map ranks nothing)."""
    ra, rb = ranks(a.ravel()), ranks(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


assert np.isclose(rank_correlation(np.array([1.0, 2, 2, 5]), np.array([0.0, 7, 7, 9])), 1.0)
names_m = list(methods)
print(" " * 10 + "".join(f"{m:>11}" for m in names_m))
for a_name in names_m:
    cells = [
        np.mean([rank_correlation(methods[a_name][i], methods[b_name][i]) for i in range(len(picks))])
        for b_name in names_m
    ]
    print(f"{a_name:>10}" + "".join(f"{v:11.2f}" for v in cells))

# %% [markdown]
# Four methods, four pictures, and the table says how far they agree on your run. In our full
# runs saliency agreed least with the others (its maps are speckled at the scale of single
# pixels). On PneumoniaMNIST, Grad-CAM, occlusion and attention agreed moderately (rank
# correlations from 0.25 to 0.7); on the phantoms hardly at all, and there the attention block
# often looked at the lung *opposite* the opacity, the healthy side a radiologist compares it
# with, so its maps ran against the others. When methods that all claim to show "the
# evidence" disagree, some of them do not show it. Which?
#
# ## 7. Sanity checks: does the map depend on the network?
#
# Adebayo et al. ("Sanity Checks for Saliency Maps", 2018) proposed two tests any explanation
# should pass; the one we run is **randomise the network's weights and explain again** (the
# other retrains the network on shuffled labels). A map that explains the
# *network* must change when the network is destroyed; a map that stays the same was showing
# the *image* (its edges, its bright spots), not the decision. They randomise layer by layer,
# from the head down (a *cascade*), and measure the rank correlation between each map and the
# trained network's map. We do the same: the head `fc`, then the attention block, then the
# three convolution blocks, taking each layer's weights from a freshly initialised MedCNN.

# %%
tm.manual_seed(1)
fresh = MedCNN(channels=(8, 16, 32), num_heads=2).eval()
cascade = ["fc", "attention", "block3", "block2", "block1"]


def randomised(top_layers):
    """The trained network with the layers named in top_layers re-initialised (weights of `fresh`)."""
    net = MedCNN(channels=(8, 16, 32), num_heads=2)
    net.load_state_dict(model.state_dict())
    for name in top_layers:
        getattr(net, name).load_state_dict(getattr(fresh, name).state_dict())
    return net.eval()


def explain_all(net, x):
    """The four maps of section 6 for the network net on the images x."""
    return {
        "saliency": explain.saliency(net, tm.tensor(x), target=target),
        "Grad-CAM": explain.gradcam(net, tm.tensor(x), target=target),
        "occlusion": np.stack([to_pixels(occlusion_loop(net, image, target)) for image in x]),
        "attention": explain.attention_map(net, tm.tensor(x)),
    }


checked = course.pick(3, 1)  # the three positives (one in fast mode)
x_check = x_pick[:checked]
trained_maps = {m: v[:checked] for m, v in methods.items()}
similarity, stages = {m: [1.0] for m in methods}, ["trained"]
for depth in range(1, len(cascade) + 1):
    maps = explain_all(randomised(cascade[:depth]), x_check)
    stages.append(f"+ {cascade[depth - 1]}")
    for m in methods:
        similarity[m].append(np.mean([rank_correlation(maps[m][i], trained_maps[m][i]) for i in range(len(x_check))]))
print(f"{'randomised':>12}" + "".join(f"{m:>11}" for m in methods))
for k, stage in enumerate(stages):
    print(f"{stage:>12}" + "".join(f"{similarity[m][k]:11.2f}" for m in methods))
random_maps = maps  # the whole network randomised

# %% [markdown]
# A method passes when its correlation falls towards 0 as the layers it depends on are
# randomised. (A flat map, such as the Grad-CAM of a random network, which its ReLU often sets
# to zero everywhere, counts as 0.) Three things held in both of our full runs:
#
# - The **attention** map does not move at all when the head is randomised: it is computed
#   before the head, so it cannot know what the head decides.
# - **Grad-CAM** falls to about 0 as soon as the head is random: its weights $\alpha_k$ come
#   through the head.
# - Some method kept a clear likeness to the trained map on a network that no longer knew
#   anything: **saliency** on the phantoms (about 0.8 with a random head), **occlusion** on
#   PneumoniaMNIST (about 0.6 with every layer random: hiding a dark lung moves almost any
#   network's output). Such a map is partly a picture of the *image*, not of the decision.
#   Adebayo et al. found this most clearly in Guided Backprop and Guided Grad-CAM; plain
#   gradients (saliency) passed their test, so our saliency result on the phantoms deserves
#   a closer look (a head of one linear layer is a small part of the network to randomise).
#
# The curves, and the maps of the fully randomised network beside the trained one's:

# %%
fig = Figure(figsize=(13, 3.8), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[1, 1.6])
ax = left.subplots()
for style, (m, values) in zip(("o-", "s-", "^-", "v-"), similarity.items()):
    ax.plot(range(len(stages)), values, style, label=m)
ax.set_xticks(range(len(stages)), stages, rotation=30, fontsize=8)
ax.set(title="cascading randomisation", ylabel="rank correlation with the trained map", ylim=(-1.05, 1.05))
ax.axhline(0, color="grey", lw=0.8)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
axes = right.subplots(2, 4)
for col, m in enumerate(methods):
    for row_, (label, source) in enumerate((("trained", trained_maps), ("random", random_maps))):
        axes[row_, col].imshow(shown[0], cmap="gray", vmin=0, vmax=1)
        overlay = axes[row_, col].imshow(source[m][0], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[row_, col].set_title(f"{m}, {label}", fontsize=8)
        axes[row_, col].set(xticks=[], yticks=[])
right.colorbar(overlay, ax=axes, fraction=0.03, label="map value (max = 1)")
course.show(fig, "sanity-check")

# %% [markdown]
# Read the random attention map with care. Random weights spread each query's attention nearly
# evenly, so every position receives about the same total; divided by its maximum (every map
# here is scaled to a maximum of 1), a nearly flat map is nearly 1 everywhere, and draws as one
# colour from edge to edge. That colour says "attention spread evenly", not "everything matters":
# chapter 5 met the same trap when a map is scaled to its own maximum.

# %% [markdown]
# ## 8. Pointing at the truth: the phantoms
#
# On PneumoniaMNIST nobody has marked where the pneumonia is, so a map cannot be scored, only
# looked at. tinymed's phantoms carry the answer: each positive phantom has a mask of its
# opacity. We score each method on the phantoms two ways.
#
# - **Pointing game**: does the map's hottest pixel fall on the opacity (grown by 2 pixels,
#   since a 7×7 map cannot be sharper than that)?
# - **Energy in the mask**: the share of the map's total that lies on the opacity, against the
#   share of the image the opacity covers (what a map spread evenly would score).
#
# If you trained on the phantoms above, the same network is scored; on PneumoniaMNIST, a
# second network is trained on the phantoms first.

# %%
if train.info.name == "phantoms":
    phantom_model, phantom_normalise = model, normalise
else:
    phantom_model, phantom_normalise = fit(load_dataset("phantoms", "train"), EPOCHS)
truth = load_phantoms("val", n=course.pick(200, 40))
found = np.flatnonzero(truth.labels[:, 0] == 1)
x_truth = phantom_normalise((truth.images[found, None] / 255.0).astype(np.float32))
p_truth = probabilities(phantom_model, x_truth)[:, 1]
hits = found[np.argsort(-p_truth)][: course.pick(12, 2)]  # the opacities the network is surest of
x_hits = phantom_normalise((truth.images[hits, None] / 255.0).astype(np.float32))
masks = truth.masks[hits]
with tm.no_grad():  # grow each mask by 2 pixels: a 5x5 max filter, as max pooling computes it
    grown = F.max_pool2d(tm.tensor(masks[:, None].astype(np.float32)), 5, stride=1, padding=2).numpy()[:, 0] > 0
print(
    f"the phantom network finds {(p_truth > 0.5).sum()} of {len(found)} opacities (p > 0.5); scoring the {len(hits)} surest"
)

# %%
truth_maps = explain_all(phantom_model, x_hits)
chance = masks.mean(axis=(1, 2))
print(f"{'method':>10} {'pointing game':>14} {'energy in mask':>15}   (a map spread evenly: {chance.mean():.2f})")
for m, heat in truth_maps.items():
    peak = heat.reshape(len(heat), -1).argmax(axis=1)
    pointing = grown.reshape(len(heat), -1)[np.arange(len(heat)), peak].mean()
    energy = np.mean([(h * k).sum() / max(h.sum(), 1e-12) for h, k in zip(heat, masks)])
    print(f"{m:>10} {pointing:14.0%} {energy:15.2f}")

# %%
fig = Figure(figsize=(13, 2.9 * min(3, len(hits))), layout="constrained")
axes = fig.subplots(min(3, len(hits)), 1 + len(truth_maps), squeeze=False)
for row_, ax_row in enumerate(axes):
    image = truth.images[hits[row_]] / 255.0
    for col, (title, heat) in enumerate([("phantom, opacity outlined", None), *truth_maps.items()]):
        ax_row[col].imshow(image, cmap="gray", vmin=0, vmax=1)
        if heat is not None:
            overlay = ax_row[col].imshow(heat[row_], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax_row[col].contour(masks[row_], levels=[0.5], colors="white", linewidths=1)
        ax_row[col].set(title=title, xticks=[], yticks=[])
fig.colorbar(overlay, ax=axes[:, -1].tolist(), fraction=0.05, label="importance (max = 1)")
course.show(fig, "phantom-truth")

# %% [markdown]
# Read the scores against the chance level. In our full runs (the phantom network is the same
# whether PneumoniaMNIST is present or not) Grad-CAM put its hottest pixel on the (grown)
# opacity for all 12 phantoms, saliency for 9 and occlusion for 8, while attention never did:
# it shows where the block looked, and it looked at the other lung. Yet every map put most of
# its weight *off* the opacity (at best 16%, for occlusion), because the
# opacity covers about 2% of the image and the maps are far blurrier than that: Grad-CAM's
# 7×7 grid smears it over the neighbours. And this is the easy case: on the phantoms the only
# difference between the classes is the opacity, so a network that works *must* use it. A
# network trained on real X-rays may have found a shortcut, and then a faithful map *should*
# point at the shortcut.
#
# ## 9. What a heatmap can and cannot tell a radiologist
#
# **It can** show roughly where the evidence the network used lies, on a grid as coarse as the
# layer explained (here 7×7 cells of 4×4 pixels); catch a network that looks at the wrong
# thing (a side marker, the edge of the film, a chest drain, the hospital's label: networks
# trained on X-rays from several hospitals have learned to recognise the hospital, Zech et al.,
# 2018); and let a radiologist compare the network's "where" with their own reading.
#
# **It cannot** say *what* the network saw there (a shadow? a texture? the patient's age?), nor
# that the finding is pneumonia; make a wrong answer look wrong (the maps of a mistaken
# diagnosis look as convincing as those of a right one: try the most confident false
# positive); be trusted without sanity checks (section 7), or when methods disagree (section
# 6); or stand in for a segmentation, which delineates the finding rather than the evidence
# (chapter 10).
#
# **Each method has its own blind spot.** Saliency is local and speckled and can survive
# randomisation; Grad-CAM is as coarse as its layer and depends on which layer and class you
# pick; occlusion depends on the patch's size and fill, and a grey square is itself something
# the network never saw in training (exercise 9.4); attention maps do not depend on the head
# at all.
#
# **What a radiologist still needs**: the image at full resolution (ours are 28×28), a
# probability that is calibrated on their own patients, the network's measured sensitivity
# and specificity there (chapter 8), and a list of how it fails. A heatmap is a prompt for a
# question, not an answer.
#
# ## Exercises
#
# Exercises 9.1 and 9.2 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 9            # in the folder holding your 09_explain.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` and prints PASS or FAIL with a hint for each.
# Exercises 9.3 and 9.4 are for you and your instructor.
#
# **Exercise 9.1 (Grad-CAM from activations and gradients).** Write
# `gradcam_from(activations, gradients)` in NumPy, with no Python loop: `activations` $A$ and
# `gradients` $\partial y_c / \partial A$ are both `(N, K, h, w)`; return the Grad-CAM maps
# `(N, h, w)`, $\operatorname{ReLU}(\sum_k \alpha_k A_k)$ with $\alpha_k$ the mean of the
# gradient over the $h \times w$ positions, each image on its own. Do not upsample or rescale
# (section 3 does that afterwards). The grader compares with `tinymed.explain.gradcam`.

# %% tags=["exercise"]
import numpy as np


def gradcam_from(activations, gradients):
    """Grad-CAM maps (N, h, w) from a layer's activations and the class score's gradients (N, K, h, w)."""
    # BEGIN SOLUTION
    alpha = gradients.mean(axis=(2, 3), keepdims=True)  # (N, K, 1, 1): one weight per channel
    return np.maximum((alpha * activations).sum(axis=1), 0.0)
    # END SOLUTION


# %% [markdown]
# **Exercise 9.2 (occlusion sensitivity).** Write `occlusion_map(score, images, patch,
# stride, fill=0.0)`. `images` is a NumPy array `(N, C, H, W)`; `score` is a function that
# takes a batch `(B, C, H, W)` and returns the class score of each image, `(B,)`. For every
# image and every position of a `patch`×`patch` square, top-left corner at `(i * stride,
# j * stride)` and wholly inside the image, set the square to `fill` in all channels and
# record how far the score drops: `score(image) - score(occluded image)`. Return
# `(N, rows, cols)` with `rows = (H - patch) // stride + 1` (and the same for the columns).
# Call `score` once per image, on a batch holding every occluded copy, not once per position;
# and leave `images` as you found it.

# %% tags=["exercise"]
import numpy as np


def occlusion_map(score, images, patch, stride, fill=0.0):
    """Drop of score(image) when a patch x patch square of fill covers each position; (N, rows, cols)."""
    # BEGIN SOLUTION
    n, _, height, width = images.shape
    tops, lefts = range(0, height - patch + 1, stride), range(0, width - patch + 1, stride)
    maps = np.zeros((n, len(tops), len(lefts)))
    for k, image in enumerate(images):
        copies = np.repeat(image[None], len(tops) * len(lefts), axis=0)
        for index, (top, left) in enumerate((t, l) for t in tops for l in lefts):
            copies[index, :, top : top + patch, left : left + patch] = fill
        base = np.asarray(score(image[None]))[0]
        maps[k] = (base - np.asarray(score(copies))).reshape(len(tops), len(lefts))
    return maps
    # END SOLUTION


# %% [markdown]
# **Exercise 9.3 (in words).** A colleague shows you a Grad-CAM map that lights up the lower
# right lung of an X-ray the network called pneumonia with $p = 0.97$, and says "the network
# found the consolidation". Using sections 6 to 8, write down what this map does establish,
# what it does not, and one check you would run before you believed your colleague (say what
# result would change your mind).
#
# **Exercise 9.4 (experiment).** Occlusion's answer depends on what you hide with. The cell
# below draws the occlusion map of the first X-ray for three fills: the mean grey ($f = 0$ in
# normalised units), black and white (the darkest and brightest pixel of the training images),
# and two patch sizes. *Predict* first: which fill will give the largest drops, and why? Will
# a 3×3 patch find the same places as a 10×10 one? Then run it, try other fills (a blurred
# copy of the patch, say), and explain what you see. Which of these maps would you trust, and
# what does it say about "the network needed what was under the patch"?

# %%
black, white = (0.0 - normalise.mean[0]) / normalise.std[0], (1.0 - normalise.mean[0]) / normalise.std[0]
settings = {
    "grey, 6x6": (0.0, 6),
    "black, 6x6": (black, 6),
    "white, 6x6": (white, 6),
    "grey, 3x3": (0.0, 3),
    "grey, 10x10": (0.0, 10),
}
drop_maps = {}
for label, (fill, patch) in settings.items():
    drop = occlusion_loop(model, x_pick[0], target, patch=patch, stride=STRIDE, fill=fill)
    drop_maps[f"{label}: max drop {drop.max():.2f}"] = to_pixels(drop, patch=patch)
fig = plots.plot_explanation(shown[0], drop_maps, title="occlusion: the fill and the patch size change the answer")
course.show(fig, "experiment-occlusion")
