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
# # Chapter 8 · Diagnosing pneumonia
#
# A network looks at a child's chest X-ray and answers "pneumonia, probability 0.83". Should a
# doctor act on it? Nothing in the network can say. The answer lies in how it was trained and,
# above all, in how it was measured: on which images, counting which mistakes, at which
# threshold, and how far those images are from the next child's.
#
# Chapters 2 and 3 built the layers; this chapter trains a convolutional network with them, the
# training loop written out line by line, and then spends as long measuring the network as it
# spent training it.
#
# **Learning objectives.** After this chapter you can:
#
# - Describe the data: images, labels, class balance.
# - Write the training loop out: batches, augmentation, loss, optimiser, validation.
# - Read an ROC curve and a confusion matrix; compute sensitivity and specificity.
# - Choose an operating point and say what it costs in missed cases and false alarms.
# - Explain why validation and test figures differ.
#
# **You need** chapters 2 and 3 (convolution, pooling, the affine layer) and chapter 1's
# autograd. **Time**: about three hours with the exercises; the training takes a few minutes on
# a 2-core laptop. Run it as a script (`python tutorials/08_pneumonia.py`, figures go to
# `tutorials/figures/08_pneumonia/`) or as a notebook (`tinymed course release DIR` writes
# both). With `TINYMED_FAST=1` it runs in seconds on a few hundred images: the code is the same,
# the numbers mean nothing.
#
# The chapter trains on PneumoniaMNIST when it finds it (`TINYMED_DATA=/path/to/pneumoniamnist.npz`,
# or the file in `~/.medmnist/`) and on tinymed's synthetic phantoms otherwise; the first data
# line printed says which.

# %%
import inspect
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.functional as F
from tinymed import course, metrics, nn, optim, plots
from tinymed.data import (
    Normalize,
    RandomBrightnessContrast,
    RandomHorizontalFlip,
    RandomRotation,
    RandomShift,
    chest_xray_augmentation,
)
from tinymed.utils.data import DataLoader, TensorDataset

print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. The data
#
# PneumoniaMNIST (MedMNIST v2) holds 5,856 frontal chest X-rays of children aged one to five,
# from one hospital in Guangzhou (Kermany et al., *Cell* 2018), shrunk to 28×28 pixels. Each
# carries one label: 0 **normal** or 1 **pneumonia** (bacterial and viral together), graded by
# physicians. MedMNIST split the source's training images at random, 9 to 1, into **train**
# (4,708) and **val** (524), and kept the source's separate evaluation images, 624 of them, as
# **test**. This chapter leaves the test split alone, whether or not your file has it (the
# official file does): a test figure is measured once, at the end, with everything fixed
# beforehand. Section 9 is about what that split does to the numbers.
#
# The phantoms, the offline fallback, are synthetic chest-like images; label 1 adds a faint
# bright blob (an "opacity") in one lung. Everything below runs on either; what the numbers
# *mean* depends on which one you have.

# %%
train = course.xray_dataset("train", n=course.pick(None, 256))
val = course.xray_dataset("val", n=course.pick(None, 128))
names = train.info.labels
print(f"train images {train.images.shape} {train.images.dtype}, values {train.images.min()}..{train.images.max()}")
print(f"train labels {train.labels.shape} {train.labels.dtype}, classes {dict(enumerate(names))}")

# %% [markdown]
# Eight images of each class. At this size a radiologist would not make a diagnosis (the
# originals are mostly over a thousand pixels wide); what survives is the overall pattern: how dark
# and clear the lungs are, and whether a bright hazy region fills part of one.

# %%
picks = np.concatenate([np.flatnonzero(train.labels == c)[:8] for c in (0, 1)])
fig = plots.plot_image_grid(
    train.images[picks, 0] / 255.0,
    nrow=8,
    titles=[names[c] for c in train.labels[picks]],
    title=f"{train.info.name}: the first eight training images of each class (grey level 0 = black, 1 = white)",
)
course.show(fig, "xrays")

# %% [markdown]
# ## 2. Class balance
#
# How many images of each class? It matters twice. A loss averaged over the images is
# dominated by the larger class, so the network first learns to say "pneumonia"; and accuracy,
# the fraction of correct answers, rewards a model that always says the common answer.

# %%
counts = {split: np.bincount(d.labels, minlength=2) for split, d in (("train", train), ("val", val))}
for split, c in counts.items():
    print(f"{split:>5}: {c[0]:5d} {names[0]:<9} {c[1]:5d} {names[1]:<9} ({c[0] / c.sum():.1%} {names[0]})")
always_positive = float(np.mean(val.labels == 1))
print(f"a 'model' that calls every image {names[1]} is right on {always_positive:.1%} of the validation images")
assert sum(c.sum() for c in counts.values()) == len(train) + len(val)

# %%
fig = Figure(figsize=(6, 3.6), layout="constrained")
ax = fig.subplots()
for k, name in enumerate(names):
    heights = [counts[split][k] for split in counts]
    bars = ax.bar(np.arange(len(counts)) + (k - 0.5) * 0.38, heights, width=0.38, label=name)
    ax.bar_label(bars, [f"{h} ({h / counts[s].sum():.0%})" for h, s in zip(heights, counts)], fontsize=8)
ax.set(xticks=range(len(counts)), xticklabels=list(counts), ylabel="images", title="class balance of each split")
ax.legend()
course.show(fig, "class-balance")

# %% [markdown]
# On PneumoniaMNIST about 26% of train and val are normal: the split was random, so both
# have the same balance. Its test split does not: 234 normal and 390 pneumonia, 37.5% normal
# (MedMNIST's published counts; the phantoms are half and half in every split).
#
# ## 3. Augmentation
#
# 4,708 images are few for a network with thousands of weights: it can learn them by heart.
# **Augmentation** shows it, at every epoch, a slightly different version of each image, drawn
# from variations a real acquisition has: the child rotated by a few degrees, off-centre by a
# pixel or two, a different exposure and contrast. The label does not change, so the network
# learns that these variations do not matter.
#
# Each tinymed transform takes a float batch in $[0, 1]$ of shape (N, C, H, W) and a NumPy
# random generator, and draws each image's parameters from that generator, so the same
# generator state gives the same batch. `chest_xray_augmentation()` chains the three below.
# One image, each transform on its own, then three draws of the whole chain:

# %%
image = train.images[picks[:1]].astype(np.float32) / 255.0  # the first normal X-ray, shape (1, 1, 28, 28)
rng = np.random.default_rng(0)
shown = {"original": image}
shown["rotation ±10°"] = RandomRotation(10.0)(image, rng)
shown["shift ±2 pixels"] = RandomShift(2)(image, rng)
shown["exposure, contrast ±10%"] = RandomBrightnessContrast(0.1, 0.1)(image, rng)
augment = chest_xray_augmentation()
print(augment)
for k in range(3):
    shown[f"all three, draw {k + 1}"] = augment(image, rng)
shown["flipped: never on a chest"] = RandomHorizontalFlip(p=1.0)(image, rng)
fig = plots.plot_image_grid(
    np.concatenate(list(shown.values()))[:, 0], nrow=4, titles=list(shown), title="one X-ray, augmented"
)
course.show(fig, "augmentation")

# %% [markdown]
# The last picture is why there is no horizontal flip. On a frontal chest X-ray the heart
# bulges to the patient's left, the right of the image. A flipped image shows the heart on the
# wrong side, *dextrocardia*, which about one person in twelve thousand has. A flip teaches the
# network anatomy that does not occur, and on PneumoniaMNIST it lowered the validation AUC.
# (Flips are fine for images with no left and right, such as skin lesions or cells.)
#
# Check yourself: the same generator state gives the same batch, the transforms keep shape and
# dtype, and a flip done twice is no flip.

# %%
first = augment(image, np.random.default_rng(7))
second = augment(image, np.random.default_rng(7))
flip = RandomHorizontalFlip(p=1.0)
assert np.array_equal(first, second) and first.shape == image.shape and first.dtype == np.float32
assert np.array_equal(flip(flip(image, rng), rng), image)
print("augmentation is reproducible from its generator; shape", first.shape, first.dtype)

# %% [markdown]
# ## 4. The model
#
# The network is chapter 2's convolutions and chapter 3's pooling and affine layer, stacked
# three times: each **block** is a 3×3 convolution, a `BatchNorm2d`, a ReLU and (in the first
# two) a 2×2 max pooling that halves the image. `BatchNorm2d` is new: during training it
# standardises each channel over the batch, $\hat x = (x - \mu_{\text{batch}}) /
# \sqrt{\sigma^2_{\text{batch}} + \epsilon}$, then scales and shifts it by two learned numbers
# per channel; this keeps every layer's inputs in a range where the gradients are useful, and
# a small network trains in a few epochs. It also keeps running averages of $\mu$ and
# $\sigma^2$ and uses those in **evaluation mode** (`model.eval()`), so that a prediction does
# not depend on which other images share its batch. Last, the average over the 7×7 positions
# of each channel (`AdaptiveAvgPool2d(1)`) and an affine layer give two **logits**, one per
# class.
#
# The input is normalised first: $x' = (x - \mu)/\sigma$ with the mean and standard deviation
# of the *training* pixels (never the validation ones: what the model is evaluated on must not
# shape the model).


# %%
def make_model(width=8):
    """Three conv blocks (width, 2 width, 4 width channels), global average pooling, 2 logits."""
    tm.manual_seed(0)  # the same starting weights every time we build it

    def block(c_in, c_out, pool):
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        return layers + [nn.MaxPool2d(2)] if pool else layers

    return nn.Sequential(
        *block(1, width, True),
        *block(width, 2 * width, True),
        *block(2 * width, 4 * width, False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, 2),
    )


normalize = Normalize(train.images.mean() / 255.0, train.images.std() / 255.0)
print(normalize)
model = make_model()
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# Four images through the network, one layer at a time: the shapes follow from chapter 2's
# and chapter 3's formulas (padding 1 keeps a 3×3 convolution's size, pooling halves it).

# %%
out = tm.from_numpy(normalize(train.images[:4].astype(np.float32) / 255.0))
model.eval()  # use BatchNorm's running averages, and leave them alone
with tm.no_grad():
    print(f"{'input':<20} {tuple(out.shape)}")
    for layer in model:
        out = layer(out)
        print(f"{type(layer).__name__:<20} {tuple(out.shape)}")
assert tuple(out.shape) == (4, 2)

# %% [markdown]
# The loss is the **cross-entropy** of the logits $z$ (chapter 1's, written for two logits): turn them
# into probabilities with a softmax and take minus the log of the probability given to the true
# class $y$,
#
# $$L = -\frac{1}{n}\sum_{i=1}^n \log \frac{e^{z_{i, y_i}}}{e^{z_{i,0}} + e^{z_{i,1}}} .$$
#
# An untrained network's logits are small, so it gives each class a probability near 1/2 and
# its loss should be near $\log 2 \approx 0.693$. A first loss far from that means a bug before
# any training (labels shifted, images not normalised). It lives here:

# %%
loss_fn = nn.CrossEntropyLoss()
labels = tm.from_numpy(train.labels[:4])
with tm.no_grad():
    first_loss = loss_fn(out, labels).item()
print(f"untrained loss {first_loss:.3f}, log 2 = {np.log(2):.3f}")
print(
    "F.cross_entropy lives in",
    Path(inspect.getsourcefile(F.cross_entropy)).relative_to(Path(tm.__file__).parent.parent),
)
assert abs(first_loss - np.log(2)) < 0.3

# %% [markdown]
# ## 5. The training loop, written out
#
# PyTorch's idiom, which tinymed copies name for name (`tinymed.utils.data`, as
# `torch.utils.data`): the images and labels go into a `TensorDataset`; a `DataLoader` cuts it
# into shuffled **batches** (a new order every epoch);
# one pass over all the batches is an **epoch**. The dataset holds pixels in $[0, 1]$, because
# augmentation works on those; normalisation comes after it, batch by batch.

# %%
x_train = tm.from_numpy(train.images.astype(np.float32) / 255.0)
y_train = tm.from_numpy(train.labels)
loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)
images, labels = next(iter(loader))
print(
    f"{len(loader)} batches per epoch; one batch: images {tuple(images.shape)} {images.dtype}, "
    f"labels {tuple(labels.shape)} {labels.dtype} with {int(labels.numpy().sum())} of class 1"
)

# %% [markdown]
# One **training step** is five lines, always in this order:
#
# 1. `optimizer.zero_grad()`: tinymed, like PyTorch, *adds* into `.grad` (chapter 1), so the
#    last step's gradients must go;
# 2. forward: `logits = model(x)`;
# 3. the loss;
# 4. `loss.backward()`: $\partial L/\partial \theta$ for every parameter $\theta$;
# 5. `optimizer.step()`: move every parameter against its gradient.
#
# With plain gradient descent (`optim.SGD`) step 5 is $\theta \leftarrow \theta - \eta\,
# \partial L/\partial\theta$ for a learning rate $\eta$. One step by hand, checked against that
# formula:

# %%
model = make_model()
model.train()  # BatchNorm uses the batch's statistics and updates its running averages
sgd = optim.SGD(model.parameters(), lr=0.1)
x = tm.from_numpy(normalize(images.numpy()))
before = [p.numpy().copy() for p in model.parameters()]
sgd.zero_grad()
loss = loss_fn(model(x), labels)
loss.backward()
sgd.step()
with tm.no_grad():
    after = loss_fn(model(x), labels).item()
print(f"loss on this batch: {loss.item():.4f} before the step, {after:.4f} after")
for p, old in zip(model.parameters(), before):
    assert np.allclose(p.numpy(), old - 0.1 * np.asarray(p.grad), atol=1e-6)

# %% [markdown]
# We train with **Adam** instead of plain SGD: it keeps a running average of each parameter's
# gradient and of its square, and steps by the first over the square root of the second (with
# a correction for the averages' start at zero), so every parameter moves at a sensible
# rate whatever the scale of its gradient. Its step is a few more lines of arithmetic, in the
# file printed below; the five lines of the loop stay the same.
#
# Here is one epoch: augment the batch, normalise it, then the five lines. `loss.item()` turns
# the loss into a Python number, so that the history we keep does not hold on to the graph.


# %%
def run_epoch(model, loader, loss_fn, optimizer, augment, rng):
    """One pass over the training batches; returns the mean training loss."""
    model.train()
    total, seen = 0.0, 0
    for images, labels in loader:
        x = tm.from_numpy(normalize(augment(images.numpy(), rng)))
        optimizer.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()
        total, seen = total + loss.item() * len(labels), seen + len(labels)
    return total / seen


print("Adam lives in", Path(inspect.getsourcefile(optim.Adam)).relative_to(Path(tm.__file__).parent.parent))

# %% [markdown]
# After each epoch we **validate**: predict the validation images in evaluation mode, without
# recording a graph (`tm.no_grad()`), and compute the loss, the AUC (chapter 1's ranking score,
# explained in section 7) and, calling class 1 when its probability is at least 1/2, the
# accuracy, sensitivity and specificity (section 6).


# %%
def predict(model, dataset):
    """The probability of class 1 for every image of ``dataset``, and the logits."""
    model.eval()
    with tm.no_grad():
        logits = model(tm.from_numpy(normalize(dataset.images.astype(np.float32) / 255.0)))
    return F.softmax(logits, dim=1).numpy()[:, 1], logits


def validate(model, dataset, loss_fn):
    scores, logits = predict(model, dataset)
    called = (scores >= 0.5).astype(np.int64)
    return {
        "val_loss": loss_fn(logits, tm.from_numpy(dataset.labels)).item(),
        "val_auc": metrics.roc_auc_score(dataset.labels, scores),
        "val_acc": float(np.mean(called == dataset.labels)),
        "val_sensitivity": metrics.sensitivity(dataset.labels, called),
        "val_specificity": metrics.specificity(dataset.labels, called),
    }


# %% [markdown]
# The whole training: build the model, choose the optimiser, loop over the epochs. One more
# line: a **learning-rate schedule** lowers Adam's rate along half a cosine, from `lr` at the
# start to almost nothing at the last epoch, so that the weights settle instead of jumping
# between good solutions. This is the cell that takes minutes.

# %%
epochs, lr = course.pick(6, 1), 3e-3
model = make_model()
optimizer = optim.Adam(model.parameters(), lr=lr)
schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
augment_rng = np.random.default_rng(1)
history, start = [], time.perf_counter()
for epoch in range(1, epochs + 1):
    train_loss = run_epoch(model, loader, loss_fn, optimizer, augment, augment_rng)
    schedule.step()
    history.append({"epoch": epoch, "train_loss": train_loss, **validate(model, val, loss_fn)})
    row = history[-1]
    print(
        f"epoch {epoch}: train loss {train_loss:.4f}, val loss {row['val_loss']:.4f}, AUC {row['val_auc']:.4f}, "
        f"ACC {row['val_acc']:.4f}  ({time.perf_counter() - start:.0f} s)"
    )

# %% [markdown]
# ## 6. Curves, scores and the confusion matrix
#
# The curves first. The training loss should fall; the validation loss follows it while the
# network learns what generalises, and turns up when it starts to learn the training images by
# heart. The training loss is measured on augmented images while the network changes, the
# validation loss on plain images at the end of the epoch, so the two are not on quite the same
# footing.

# %%
fig = plots.plot_history(history, title=f"training on {train.info.name} ({len(train)} images)")
course.show(fig, "curves")

# %% [markdown]
# The network gives every validation image a **score**, its probability of class 1. How do the
# scores of the two classes spread? A good classifier puts them at opposite ends; where the two
# histograms overlap, every threshold makes mistakes.

# %%
scores, _ = predict(model, val)
y = val.labels
fig = Figure(figsize=(6, 3.6), layout="constrained")
ax = fig.subplots()
bins = np.linspace(0, 1, 26)
for k, name in enumerate(names):
    ax.hist(scores[y == k], bins=bins, alpha=0.6, label=f"{name} ({np.sum(y == k)} images)")
ax.axvline(0.5, color="k", linestyle="--", lw=1, label="threshold 0.5")
ax.set(xlabel=f"score: the model's probability of {names[1]}", ylabel="validation images", title="scores by true class")
ax.set_yscale("log")
ax.legend()
course.show(fig, "scores")

# %% [markdown]
# A **threshold** $t$ turns scores into decisions: class 1 when the score is at least $t$. Against
# the truth, each decision is one of four kinds, and the **confusion matrix** counts them, rows
# the true class and columns the decision (scikit-learn's layout, and tinymed's):
#
# $$C = \begin{pmatrix} \text{TN} & \text{FP} \\ \text{FN} & \text{TP} \end{pmatrix}
#   \qquad \begin{array}{l} \text{row 0: truly normal} \\ \text{row 1: truly ill} \end{array}$$
#
# First counted one image at a time, then with tinymed:

# %%
called = (scores >= 0.5).astype(np.int64)
matrix_by_hand = np.zeros((2, 2), dtype=np.int64)
for truth, decision in zip(y, called):
    matrix_by_hand[truth, decision] += 1
matrix = metrics.confusion_matrix(y, called)
print(matrix)
assert np.array_equal(matrix, matrix_by_hand)
fig = plots.plot_confusion_matrix(matrix, names, title="validation, threshold 0.5")
course.show(fig, "confusion-matrix")

# %% [markdown]
# Two rates summarise the matrix, one per row, each answering a clinician's question:
#
# $$\text{sensitivity} = \frac{\text{TP}}{\text{TP} + \text{FN}} \quad\text{(of the ill, how
#   many are found?)} \qquad \text{specificity} = \frac{\text{TN}}{\text{TN} + \text{FP}}
#   \quad\text{(of the healthy, how many are cleared?)}$$
#
# and two more, one per column, answer the patient's: the **positive predictive value**
# $\text{TP}/(\text{TP}+\text{FP})$ (I was called ill: how likely am I ill?) and the
# **negative predictive value** $\text{TN}/(\text{TN}+\text{FN})$.

# %%
(tn, fp), (fn, tp) = matrix
sens, spec = tp / (tp + fn), tn / (tn + fp)
print(f"sensitivity {sens:.3f}: found {tp} of the {tp + fn} {names[1]} images, missed {fn}")
print(f"specificity {spec:.3f}: cleared {tn} of the {tn + fp} {names[0]} images, {fp} false alarms")
ppv = tp / (tp + fp) if tp + fp else float("nan")  # nan: no image was called ill
npv = tn / (tn + fn) if tn + fn else float("nan")
print(f"PPV {ppv:.3f}   NPV {npv:.3f}   accuracy {(tp + tn) / matrix.sum():.3f}")
assert np.isclose(sens, metrics.sensitivity(y, called)) and np.isclose(spec, metrics.specificity(y, called))

# %% [markdown]
# ## 7. The ROC curve
#
# Sensitivity and specificity belong to one threshold. Sweep the threshold from above the
# highest score (everything called normal) down to the lowest (everything called ill) and plot,
# at each, the **true positive rate** (sensitivity) against the **false positive rate**
# (1 − specificity):
#
# $$\text{TPR}(t) = \frac{\#\{\text{ill with score} \ge t\}}{\#\text{ill}}, \qquad
#   \text{FPR}(t) = \frac{\#\{\text{healthy with score} \ge t\}}{\#\text{healthy}} .$$
#
# That is the **ROC curve**. Only thresholds at the distinct scores matter (between two scores
# nothing changes). A literal loop over them, the same with one broadcast comparison, and
# tinymed's `roc_curve`:

# %%
thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
tpr_loop = np.array([np.mean(scores[y == 1] >= t) for t in thresholds])
fpr_loop = np.array([np.mean(scores[y == 0] >= t) for t in thresholds])
at_or_above = scores[None, :] >= thresholds[:, None]  # (thresholds, images)
tpr_vec, fpr_vec = at_or_above[:, y == 1].mean(axis=1), at_or_above[:, y == 0].mean(axis=1)
fpr, tpr, roc_thresholds = metrics.roc_curve(y, scores)
print(f"{len(thresholds)} thresholds; (FPR, TPR) runs from ({fpr[0]}, {tpr[0]}) to ({fpr[-1]}, {tpr[-1]})")
assert np.allclose(tpr_loop, tpr_vec) and np.allclose(fpr_loop, fpr_vec)
assert np.allclose(tpr, tpr_vec) and np.allclose(fpr, fpr_vec) and np.array_equal(roc_thresholds, thresholds)

# %% [markdown]
# The area under the curve, the **AUC**, is one number for the whole sweep, and it has a
# meaning that needs no curve: the probability that a randomly chosen ill child scores higher
# than a randomly chosen healthy one, a tie counting one half (the Mann-Whitney statistic):
#
# $$\text{AUC} = \frac{1}{n_+ n_-} \sum_{i \in +} \sum_{j \in -}
#   \Bigl( [s_i > s_j] + \tfrac12 [s_i = s_j] \Bigr) .$$
#
# The trapezoid area, the pairs counted with one broadcast, and tinymed must agree:

# %%
positive, negative = scores[y == 1], scores[y == 0]
auc_pairs = np.mean((positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :]))
auc_area = np.trapezoid(tpr, fpr)
auc = metrics.roc_auc_score(y, scores)
print(f"AUC: trapezoids {auc_area:.6f}, {positive.size} x {negative.size} pairs {auc_pairs:.6f}, tinymed {auc:.6f}")
assert np.isclose(auc_area, auc_pairs) and np.isclose(auc, auc_pairs)
print(
    "roc_curve and roc_auc_score live in",
    Path(inspect.getsourcefile(metrics.roc_curve)).relative_to(Path(tm.__file__).parent.parent),
)

# %% [markdown]
# The AUC does not depend on any threshold, nor on the class balance (it compares ill with
# healthy, never counts them together), which makes it the usual headline for a classifier.
# It says nothing about *which* threshold to use.
#
# ## 8. Choosing an operating point
#
# A deployed model runs at one threshold, its **operating point**, one point of the ROC curve.
# Raising the threshold trades sensitivity for specificity; which trade is right is a clinical
# decision, not a statistical one. Two common choices:
#
# - **a sensitivity target**: for screening, a missed pneumonia costs more than a false alarm
#   (a radiologist looks at the flagged image). Take the highest threshold whose sensitivity is
#   at least 95%;
# - **Youden's index**: the threshold maximising sensitivity + specificity − 1, the point of the
#   curve furthest above the diagonal, when both errors cost the same.

# %%
target = 0.95
screening = roc_thresholds[np.argmax(tpr >= target)]  # thresholds decrease: the first that reaches it
youden = roc_thresholds[np.argmax(tpr - fpr)]
operating_points = {"threshold 0.5": 0.5, f"sensitivity ≥ {target:.0%}": screening, "Youden": youden}
rates = {}
for name, t in operating_points.items():
    (tn_t, fp_t), (fn_t, tp_t) = metrics.confusion_matrix(y, (scores >= t).astype(np.int64), num_classes=2)
    rates[name] = (tp_t / (tp_t + fn_t), tn_t / (tn_t + fp_t))
    print(
        f"{name:>18}: t = {t:.4f}  sensitivity {rates[name][0]:.3f}  specificity {rates[name][1]:.3f}"
        f"  missed {fn_t:3d}  false alarms {fp_t:3d}"
    )

# %% [markdown]
# The two pictures say the same from two sides: the ROC curve with the three points on it,
# and both rates against the threshold.

# %%
fig = plots.plot_roc(y, scores, title=f"validation ROC, {val.info.name}")
ax = fig.axes[0]
for (name, t), marker in zip(operating_points.items(), "os^"):
    ax.plot(1 - rates[name][1], rates[name][0], marker, ms=8, label=f"{name} (t = {t:.3f})")
ax.legend(loc="lower right", fontsize=8)
course.show(fig, "roc")

# %%
fig = Figure(figsize=(6.5, 3.8), layout="constrained")
ax = fig.subplots()
ax.plot(roc_thresholds[1:], tpr[1:], label="sensitivity (TPR)")
ax.plot(roc_thresholds[1:], 1 - fpr[1:], label="specificity (1 - FPR)")
for (name, t), style in zip(operating_points.items(), (":", "--", "-.")):
    ax.axvline(t, color="grey", linestyle=style, lw=1, label=name)
ax.set(xlabel="threshold on the score", ylabel="rate", title="the trade a threshold makes", xlim=(0, 1), ylim=(0, 1.02))
ax.legend(fontsize=8)
course.show(fig, "threshold-trade")

# %% [markdown]
# A warning that leads to the next section: both thresholds were *chosen on the validation
# images*, and the rates printed beside them were measured on the same images. Choosing a
# point that looks best on a set makes that set flatter the choice. The threshold must be
# fixed before the images it is judged on are looked at.
#
# ## 9. Why validation and test figures differ
#
# On PneumoniaMNIST, small CNNs reach validation AUCs of 0.98 to 0.99 and more (this chapter's
# short run: the figure printed above); the MedMNIST v2 paper's ResNet baselines reach a *test*
# AUC of 0.94 to 0.96 and test accuracies of 0.85 to 0.89. Similar recipes, two sets, a clear
# gap. Four reasons, each worth knowing wherever a model is evaluated:
#
# 1. **Validation is drawn like train.** MedMNIST split one pool of images at random into train
#    and val: same hospital, same period, same machines, same graders. Validation measures how
#    well the model does on *more of the same*, and the source's training pool holds several
#    images of some children, so a random split can put one child on both sides. The test
#    images are the source's own evaluation set, kept apart by its authors (same hospital and
#    period, so not an external test either): closer to what the next patient brings, not the
#    same.
# 2. **Selection.** We choose the epoch, the learning rate, the threshold by looking at
#    validation figures; each choice fits the validation set a little. A figure used for a choice
#    is optimistic.
# 3. **Class balance.** About 26% of train and val are normal, 37.5% of test. Some numbers move
#    with the balance, some do not; the next cells show which.
# 4. **Chance.** 135 normal validation images pin specificity down to a few points, no better.
#
# Sensitivity and specificity are rates *within* a class, so a change of balance leaves them
# alone (if the model treats each class as before). Accuracy and the predictive values mix the
# classes. With $\pi$ the fraction of ill images (the **prevalence**):
#
# $$\text{ACC} = \pi\,\text{sens} + (1-\pi)\,\text{spec}, \qquad
#   \text{PPV} = \frac{\pi\,\text{sens}}{\pi\,\text{sens} + (1-\pi)(1-\text{spec})}, \qquad
#   \text{NPV} = \frac{(1-\pi)\,\text{spec}}{(1-\pi)\,\text{spec} + \pi\,(1-\text{sens})} .$$
#
# Check yourself: reweighting each validation image so the classes have test's balance gives
# exactly the accuracy the formula predicts.

# %%
pi_val, pi_test = float(np.mean(y == 1)), 390 / 624  # test: MedMNIST's published counts
correct = called == y
weights = np.where(y == 1, pi_test / pi_val, (1 - pi_test) / (1 - pi_val))
reweighted = np.average(correct, weights=weights)
predicted_acc = pi_test * sens + (1 - pi_test) * spec
print(f"accuracy at val's balance (pi = {pi_val:.3f}): {np.mean(correct):.4f}")
print(f"accuracy at test's balance (pi = {pi_test:.3f}): reweighted {reweighted:.4f}, formula {predicted_acc:.4f}")
assert np.isclose(reweighted, predicted_acc) and np.isclose(np.mean(correct), pi_val * sens + (1 - pi_val) * spec)

# %%
prevalence = np.linspace(0.01, 0.99, 99)
fig = Figure(figsize=(6.5, 3.8), layout="constrained")
ax = fig.subplots()
ax.plot(prevalence, prevalence * sens + (1 - prevalence) * spec, label="accuracy")
with np.errstate(invalid="ignore"):  # 0/0 where a model calls no image ill (or none healthy)
    ax.plot(prevalence, prevalence * sens / (prevalence * sens + (1 - prevalence) * (1 - spec)), label="PPV")
    ax.plot(prevalence, (1 - prevalence) * spec / ((1 - prevalence) * spec + prevalence * (1 - sens)), label="NPV")
ax.axhline(sens, color="C3", lw=1, linestyle=":", label=f"sensitivity {sens:.3f} (flat)")
ax.axhline(spec, color="C4", lw=1, linestyle=":", label=f"specificity {spec:.3f} (flat)")
ax.axvline(pi_val, color="k", lw=1, linestyle="--")
ax.axvline(pi_test, color="k", lw=1, linestyle="-.")
# Each label on the outer side of its line, whichever of the two prevalences is larger.
for pi, name in ((pi_val, "val"), (pi_test, "test")):
    outer = pi == max(pi_val, pi_test)
    label = f" {name}" if outer else f"{name} "
    ax.text(pi, 0.03, label, fontsize=8, ha="left" if outer else "right", transform=ax.get_xaxis_transform())
ax.set(
    xlabel="prevalence: fraction of images with pneumonia",
    ylabel="rate",
    title="what the class balance moves (threshold 0.5)",
)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
course.show(fig, "prevalence")

# %% [markdown]
# Now chance. How much would the validation figures move with another validation set of the
# same size, drawn the same way (524 images on PneumoniaMNIST)? The **bootstrap** answers
# without new images: draw as many images as the set holds from the set *with replacement*,
# recompute, repeat; the spread of the results estimates the spread of the figure. The middle
# 95% of it is a 95% interval.

# %%
boot_rng = np.random.default_rng(0)
boot = {"AUC": [], "sensitivity": [], "specificity": []}
for _ in range(course.pick(1000, 100)):
    i = boot_rng.integers(0, len(y), len(y))
    if 0 < y[i].sum() < len(i):  # a resample needs both classes
        boot["AUC"].append(metrics.roc_auc_score(y[i], scores[i]))
        boot["sensitivity"].append(metrics.sensitivity(y[i], called[i]))
        boot["specificity"].append(metrics.specificity(y[i], called[i]))
fig = Figure(figsize=(10, 3.2), layout="constrained")
for ax, (name, values), point in zip(fig.subplots(1, 3), boot.items(), (auc, sens, spec)):
    low, high = np.percentile(values, [2.5, 97.5])
    ax.hist(values, bins=30, color="C0", alpha=0.7)
    ax.axvspan(low, high, color="C1", alpha=0.2, label=f"95%: {low:.3f} to {high:.3f}")
    ax.axvline(point, color="k", lw=1, label=f"measured {point:.3f}")
    ax.set(xlabel=name, ylabel="bootstrap resamples", title=f"validation {name}")
    ax.legend(fontsize=8)
course.show(fig, "bootstrap")

# %% [markdown]
# What this means for trusting a number:
#
# - **A validation figure is a development tool.** It ranks recipes against each other; it
#   does not predict how the model does on the next hospital's patients.
# - **Report a test figure once**, on images collected apart from the training data, at a
#   threshold fixed before looking at them, with an interval.
# - **Prefer the figures that the balance cannot move** (sensitivity, specificity, AUC), and
#   give PPV and NPV at the prevalence of the place the model will be used, not the data set's.
# - **Count the images behind each rate.** A specificity from PneumoniaMNIST's 135 normal
#   validation images is known to a few points, as the right-hand histogram shows.
#
# ## 10. Honest limits
#
# - **Resolution.** At 28×28 the network sees the overall lightness of the lungs and large hazy
#   regions; the detail a radiologist reads (air bronchograms, the border of the heart, small
#   effusions) is gone.
# - **One source.** Children aged one to five in one hospital. Adults, other machines, portable
#   X-rays of patients lying down, other hospitals' habits are all unseen. CNNs trained on
#   X-rays pooled from several hospitals learned to recognise the hospital (markers,
#   positioning, the machine's noise) and used it along with the disease, and did worse on
#   hospitals they had not seen (Zech et al., *PLOS Medicine* 2018).
# - **The label.** "Pneumonia" merges bacterial and viral, which are treated differently, and
#   it is the graders' reading of the image, not a diagnosis confirmed by tests.
# - **A probability that is not one.** The softmax output ranks images; nothing made it
#   *calibrated* (of the images scored 0.8, 80% ill). Check before reading it as a risk.
# - **What the radiologist still needs**: the full-resolution image, previous images, the
#   clinical picture (fever, breathing, blood tests), and the judgement of what to do next. A
#   model like this can at most sort the worklist.
# - **The phantoms** are a stand-in for running the chapter offline. Every figure measured on
#   them is about synthetic blobs, not about children.

# %% [markdown]
# ## Exercises
#
# Exercises 8.1 to 8.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 8            # in the folder holding your 08_pneumonia.py or .ipynb
# ```
#
# Exercises 8.4 and 8.5 are for you and your instructor.
#
# **Exercise 8.1 (one class against the rest).** PneumoniaMNIST has two classes; its source has
# three (normal, bacterial, viral), and a confusion matrix can have any number $K$ of rows.
# Write `sensitivity_specificity(matrix, positive)`: from a $K\times K$ confusion matrix
# `matrix[true, predicted]`, the sensitivity and specificity of class `positive` against all
# the others together. Return two floats; raise `ValueError` when one of them is undefined
# (no image of that class, or no image of any other).

# %% tags=["exercise"]
import numpy as np


def sensitivity_specificity(matrix, positive=1):
    """(sensitivity, specificity) of class ``positive`` against the rest, from C[true, predicted]."""
    # BEGIN SOLUTION
    counts = np.asarray(matrix)
    found = counts[positive, positive]
    missed = counts[positive, :].sum() - found
    false_alarms = counts[:, positive].sum() - found
    cleared = counts.sum() - found - missed - false_alarms
    if found + missed == 0 or cleared + false_alarms == 0:
        raise ValueError(f"class {positive} has no image, or no other class has one: a rate is undefined")
    return float(found / (found + missed)), float(cleared / (cleared + false_alarms))
    # END SOLUTION


# %% [markdown]
# **Exercise 8.2 (the AUC by ranks).** Counting all $n_+ n_-$ pairs, as in section 7, costs
# memory and time in proportion to their number: a million images of each class make $10^{12}$
# pairs. Ranks need one sort. Give every score its rank (1 for the lowest, $n$ for the highest),
# tied scores sharing the mean of the ranks they occupy; with $R_+$ the sum of the positives'
# ranks,
#
# $$\text{AUC} = \frac{R_+ - n_+(n_+ + 1)/2}{n_+\, n_-} .$$
#
# (Why: $R_+ - n_+(n_+ + 1)/2$ counts, for each positive, the negatives below it, ties by
# half.) Write `roc_auc_by_ranks(y_true, y_score)` with NumPy, no pair counting; raise
# `ValueError` when `y_true` has only one class.

# %% tags=["exercise"]
import numpy as np


def roc_auc_by_ranks(y_true, y_score):
    """ROC AUC as the Mann-Whitney statistic from mid-ranks; y_true (N,) in {0, 1}, y_score (N,)."""
    # BEGIN SOLUTION
    is_positive = np.asarray(y_true).reshape(-1) == 1
    s = np.asarray(y_score, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc_by_ranks: y_true needs both classes")
    _, which, copies = np.unique(s, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(copies) - (copies - 1) / 2.0  # ties share the mean of their ranks
    rank_sum = mid_rank[which][is_positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    # END SOLUTION


# %% [markdown]
# **Exercise 8.3 (a class-weighted loss).** With 26% normal images, the loss is mostly about
# the ill ones. A **class-weighted** cross-entropy multiplies each image's term by the weight of
# its class, $w_{y_i}$, and, as PyTorch's `F.cross_entropy(..., weight=w)` does, divides by the
# sum of the weights used rather than by $n$:
#
# $$L = \frac{\sum_i w_{y_i}\,\bigl(-\log \operatorname{softmax}(z_i)_{y_i}\bigr)}{\sum_i w_{y_i}} .$$
#
# Write `weighted_cross_entropy(logits, labels, weight)` with tinymed operations, so that
# backward works: logits a float Tensor (N, C), labels an int64 Tensor (N,), weight a Tensor
# (C,); return a 0-d Tensor. It must stay finite for logits of ±1000 (`F.log_softmax` is).
# Do not call `F.cross_entropy` or `nn.CrossEntropyLoss`: the grader compares with them.

# %% tags=["exercise"]
import tinymed.functional as F


def weighted_cross_entropy(logits, labels, weight):
    """sum_i w[y_i] * -log softmax(logits_i)[y_i] / sum_i w[y_i], as a 0-d Tensor."""
    # BEGIN SOLUTION
    log_probabilities = F.log_softmax(logits, dim=1)
    chosen = (log_probabilities * F.one_hot(labels, logits.shape[1]).to(logits.dtype)).sum(dim=1)
    per_image = weight.to(logits.dtype)[labels]
    return -(per_image * chosen).sum() / per_image.sum()
    # END SOLUTION


# %% [markdown]
# **Exercise 8.4 (in words).** A clinic where 5% of the children X-rayed have pneumonia wants
# to use your model to put the likely pneumonias at the top of the radiologist's list. From
# your validation sensitivity and specificity at the three operating points of section 8,
# compute the PPV at that prevalence and the number of false alarms per 1,000 children. Which
# operating point would you propose, and what would you need to measure, and on which images,
# before anyone relied on it?
#
# **Exercise 8.5 (experiment: weighting the classes).** The cell below trains the same network
# for a few epochs with the loss weighted by the inverse of each class's frequency
# (`nn.CrossEntropyLoss(weight=...)`, the function of exercise 8.3), from the same starting
# weights and the same batches as the training of section 5. *Before running it*, predict
# which way the sensitivity and the specificity at threshold 0.5 will move, and what happens to
# the AUC. Run it, compare with the unweighted model after the same number of epochs, and
# explain: why would the AUC barely move, and what did the weights change that a different
# threshold could have changed too? (On the phantoms, which are balanced, both weights are 1
# and nothing changes: set `class_weight = tm.tensor([3.0, 1.0])` to see the effect.)

# %%
compare_epochs = course.pick(2, 1)
class_counts = np.bincount(train.labels, minlength=2)
class_weight = tm.tensor((class_counts.sum() / (2 * class_counts)).astype(np.float32))
weighted = make_model()
weighted_optimizer = optim.Adam(weighted.parameters(), lr=lr)
weighted_schedule = optim.lr_scheduler.CosineAnnealingLR(weighted_optimizer, T_max=epochs)
weighted_rng = np.random.default_rng(1)
for _ in range(compare_epochs):
    run_epoch(weighted, loader, nn.CrossEntropyLoss(weight=class_weight), weighted_optimizer, augment, weighted_rng)
    weighted_schedule.step()
result = validate(weighted, val, loss_fn)
print(
    f"class weights {', '.join(f'{w:.3f}' for w in class_weight.numpy())}; after {compare_epochs} epoch(s), threshold 0.5:"
)
for name, row in (("unweighted", history[compare_epochs - 1]), ("weighted", result)):
    print(
        f"{name:>11}: sensitivity {row['val_sensitivity']:.3f}  specificity {row['val_specificity']:.3f}  "
        f"AUC {row['val_auc']:.4f}"
    )
