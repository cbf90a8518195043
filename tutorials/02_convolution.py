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
# # Chapter 2 · Convolution: the formula, the flip, and one matrix product
#
# At the end of chapter 1, logistic regression gave every pixel of a thumbnail its own weight,
# and on the phantoms it could not follow an opacity that moves around the lung. A radiologist
# does not learn "consolidation at pixel (12, 7)" and "consolidation at pixel (13, 7)" as two
# different things: a pattern is the same pattern wherever it sits. How can a network look for
# one small pattern at every position of an X-ray, with a handful of weights instead of one per
# pixel, and how does a computer do that fast?
#
# The answer is the **convolution**. This chapter writes it from its formula as literal loops,
# finds the difference between the formula mathematicians write and the one deep-learning
# frameworks compute (a flip of the kernel), turns it into a single matrix product (im2col),
# works out how stride, padding and dilation change the output's size, and finally lets a small
# network learn its own kernels on X-rays, and draws them.
#
# **Learning objectives.** After this chapter you can:
#
# - Compute a true convolution and a cross-correlation with literal loops, and relate them by a kernel flip.
# - Rewrite a convolution as im2col and one matrix product, and check it against the loops.
# - Predict output shapes from stride, padding and dilation.
# - Draw the learned filters and feature maps of a trained CNN.
#
# **You need** chapter 1 (gradients, `tm.Tensor`, `backward`). **Time**: about two hours with
# the exercises. Run it as a script (`python tutorials/02_convolution.py`, figures go to
# `tutorials/figures/02_convolution/`) or as a notebook (`tinymed course release DIR` writes
# both); with `TINYMED_FAST=1` it runs in seconds on less data and fewer training steps.

# %%
import inspect
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import tinymed as tm
import tinymed.functional as F
from tinymed import course, nn, optim
from tinymed.backends import numpy_ref
from tinymed.metrics import roc_auc_score

rng = np.random.default_rng(0)
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. The formula as written
#
# Signal processing defines the convolution of an image $x$ with a small **kernel** $w$ as
#
# $$y(m, n) = \sum_{i} \sum_{j} w(i, j)\; x(m - i,\, n - j) .$$
#
# (Some texts write it $y(x,y) = \sum_i\sum_j w(i,j)\,x(x-i, y-j)$, with $x$ both the image
# and a coordinate; we call the coordinates $m, n$.) Each output pixel is a weighted
# sum of the input pixels around it, and the **same** weights $w$ are used at every position:
# that is the whole trick, the pattern is looked for everywhere with one set of weights.
#
# Look at the signs: as the kernel index $i$ grows, the image index $m - i$ shrinks. The
# kernel is read **backwards**, bottom-right weight on the top-left pixel. Here is the formula as
# loops, for a $K\times K$ kernel with $i, j = 0, \dots, K-1$, keeping only the outputs whose sum
# stays inside the image (the "valid" part: $K-1 \le m < H$).


# %%
def convolve_loop(x, w):
    """True convolution, the formula as written: y(m, n) = sum_ij w(i, j) x(m - i, n - j)."""
    (H, W), K = x.shape, w.shape[0]
    y = np.zeros((H - K + 1, W - K + 1))
    for m in range(K - 1, H):  # the first m whose sum stays in the image is K - 1: output row 0
        for n in range(K - 1, W):
            for i in range(K):
                for j in range(K):
                    y[m - (K - 1), n - (K - 1)] += w[i, j] * x[m - i, n - j]
    return y


# %% [markdown]
# ## 2. Cross-correlation, and the flip that links the two
#
# Deep-learning frameworks (PyTorch, TensorFlow, tinymed) compute something slightly different,
# the **cross-correlation**: lay the kernel on the image, multiply what lies on top of each
# other, add up.
#
# $$y(m, n) = \sum_{i} \sum_{j} w(i, j)\; x(m + i,\, n + j) .$$
#
# The kernel is read forwards, and output $(m, n)$ is the window whose top-left corner is at
# $(m, n)$.


# %%
def correlate_loop(x, w):
    """Cross-correlation, what conv2d computes: y(m, n) = sum_ij w(i, j) x(m + i, n + j)."""
    (H, W), K = x.shape, w.shape[0]
    y = np.zeros((H - K + 1, W - K + 1))
    for m in range(H - K + 1):
        for n in range(W - K + 1):
            for i in range(K):
                for j in range(K):
                    y[m, n] += w[i, j] * x[m + i, n + j]
    return y


# %% [markdown]
# To see the difference, take a kernel that is zero except for a 1 in its top-left corner.
# Correlation copies the top-left pixel of every window; convolution, reading the kernel
# backwards, copies the bottom-right one. On a 6×6 image numbered 0 to 35 row by row:

# %%
x = np.arange(36.0).reshape(6, 6)
corner = np.zeros((3, 3))
corner[0, 0] = 1.0
print("image:\n", x)
print("cross-correlation with the corner kernel:\n", correlate_loop(x, corner))
print("true convolution with the corner kernel:\n", convolve_loop(x, corner))

# %% [markdown]
# Substituting $i' = K-1-i$ and $j' = K-1-j$ in the convolution turns $x(m-i, n-j)$ into
# $x\big(m-(K-1)+i',\, n-(K-1)+j'\big)$ and $w(i, j)$ into $w(K-1-i', K-1-j')$: a
# cross-correlation with the kernel **flipped** upside down and left to right,
# `w[::-1, ::-1]`. So the two are one operation, up to that flip:
#
# $$\operatorname{conv}(x, w) = \operatorname{corr}\big(x, \operatorname{flip}(w)\big).$$
#
# Check yourself, on random numbers:

# %%
image_small, kernel = rng.standard_normal((7, 9)), rng.standard_normal((3, 3))
flipped = kernel[::-1, ::-1]
print("kernel:\n", kernel.round(2), "\nflipped:\n", flipped.round(2))
assert np.allclose(convolve_loop(image_small, kernel), correlate_loop(image_small, flipped))
assert np.allclose(correlate_loop(image_small, kernel), convolve_loop(image_small, flipped))
print("conv(x, w) == corr(x, flip(w)), and the other way round")

# %% [markdown]
# Why do frameworks compute the correlation? In a network the kernel is **learned**. A network
# trained with true convolutions would learn the flipped kernels of one trained with
# correlations and make exactly the same predictions, so the flip buys nothing, and the
# correlation's indexing (the window starts at the output position) is simpler to write with
# stride and padding. Everyone still calls it "convolution". The flip matters when a kernel
# comes from outside the network: a filter copied from a signal-processing textbook, or weights
# moved between a library that flips and one that does not. tinymed correlates, like PyTorch, so
# weights move between the two unchanged. (For a kernel symmetric under the flip, a blur for
# instance, both give the same result.)
#
# ## 3. The flip on an X-ray
#
# A kernel built to find edges shows the flip best. The **Sobel** kernel below weighs the
# column to the right of the centre $+1, +2, +1$ and the column to the left $-1, -2, -1$:
# correlated with an image, it is large and positive where brightness *rises* from left to
# right (the lung's dark air meeting the bright edge of the heart, going right), large and
# negative where it falls. Flipped, it is its own negative, so the true convolution paints every
# edge in the opposite colour.
#
# The images are chest X-rays, from PneumoniaMNIST when it is on this machine and tinymed's
# synthetic phantoms when it is not; the next line says which.

# %%
val = course.xray_dataset("val")
xray = val.images[np.flatnonzero(val.labels == 1)[0], 0] / 255.0  # one image labelled pneumonia (or opacity)
sobel = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
by_correlation, by_convolution = correlate_loop(xray, sobel), convolve_loop(xray, sobel)
print("X-ray", xray.shape, "->", by_correlation.shape, "(valid part of a 3x3 kernel)")
assert np.allclose(by_convolution, -by_correlation)  # sobel[::-1, ::-1] == -sobel


# %% [markdown]
# A few lines of plotting draw the four pieces: the X-ray, the kernel, and the two results on
# one colour scale (red positive, blue negative, white zero).


# %%
def draw(ax, image, title, cmap="gray", limit=None, colorbar=True, label=""):
    """image on ax with a title and a colour bar; a symmetric range [-limit, limit] when given."""
    vmin, vmax = (-limit, limit) if limit is not None else (None, None)
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label=label)
    return shown


fig = Figure(figsize=(13, 3.4), layout="constrained")
axes = fig.subplots(1, 4)
draw(axes[0], xray, "X-ray", label="brightness")
draw(axes[1], sobel, "kernel w (Sobel)", cmap="RdBu_r", limit=2, label="weight")
limit = np.abs(by_correlation).max()
draw(
    axes[2],
    by_correlation,
    "cross-correlation with w\n(what conv2d computes)",
    cmap="RdBu_r",
    limit=limit,
    label="output",
)
draw(
    axes[3],
    by_convolution,
    "true convolution with w\n= correlation with flip(w)",
    cmap="RdBu_r",
    limit=limit,
    label="output",
)
fig.suptitle("the same kernel, read forwards and backwards")
course.show(fig, "flip")

# %% [markdown]
# ## 4. Channels, filters and batches: `F.conv2d`
#
# A layer of a network does three more things than our loop. Its input has several
# **channels** $c$ (one for a grey X-ray, three for a colour photograph, 8 or 64 for the
# feature maps of the previous layer), and a kernel has one $K_H\times K_W$ slice per input
# channel, summed over all of them. It has several kernels, called **filters** $o$, each giving
# one output channel, plus a **bias** $b[o]$. And it processes a **batch** of images $n$ at
# once. As a cross-correlation with stride 1 and no padding:
#
# $$y[n, o, i, j] = b[o] + \sum_{c}\sum_{p=0}^{K_H-1}\sum_{q=0}^{K_W-1} w[o, c, p, q]\;
#   x[n, c, i + p, j + q] .$$
#
# Shapes: $x$ is $(N, C, H, W)$, $w$ is $(O, C, K_H, K_W)$ (PyTorch's layout), $b$ is $(O,)$,
# and $y$ is $(N, O, H-K_H+1, W-K_W+1)$. The literal loop, one multiply-add at a time:


# %%
def conv2d_loop(x, w, b):
    """y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] x[n, c, i + p, j + q] (stride 1, no padding)."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    y = np.zeros((N, O, H - KH + 1, W - KW + 1))
    for n, o, i, j in np.ndindex(y.shape):
        y[n, o, i, j] = b[o]
        for c, p, q in np.ndindex(C, KH, KW):
            y[n, o, i, j] += w[o, c, p, q] * x[n, c, i + p, j + q]
    return y


x4, w4, b4 = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
by_loop = conv2d_loop(x4, w4, b4)
by_tinymed = F.conv2d(tm.tensor(x4), tm.tensor(w4), tm.tensor(b4)).numpy()
print("x", x4.shape, "* w", w4.shape, "->", by_loop.shape, " largest difference:", np.abs(by_loop - by_tinymed).max())
assert np.allclose(by_loop, by_tinymed)

# %% [markdown]
# Where it lives: `F.conv2d` checks its arguments and records the operation for autograd
# (forward and backward side by side); the arithmetic is done by the NumPy reference backend,
# the file every GPU kernel of chapters 6 and 7 is tested against. Open both.

# %%
package_root = Path(tm.__file__).parent.parent
for fn in (F.conv2d, numpy_ref.conv2d_forward):
    print(f"{Path(inspect.getsourcefile(fn)).relative_to(package_root)}: {fn.__name__}")
print("\n" + inspect.getdoc(numpy_ref.conv2d_forward))

# %% [markdown]
# Weight sharing is what makes this affordable. Compare a convolution layer with 8 filters of
# 5×5 on a 28×28 X-ray with a layer that would connect every input pixel to every pixel of the
# same 8 output maps by a weight of its own (chapter 3's affine layer):

# %%
conv_weights = 8 * 1 * 5 * 5 + 8
dense_weights = (28 * 28) * (8 * 28 * 28) + 8 * 28 * 28
print(f"convolution, 8 filters 5x5: {conv_weights:,} weights")
print(f"every pixel to every output: {dense_weights:,} weights ({dense_weights / conv_weights:,.0f} times more)")

# %% [markdown]
# ## 5. im2col: the whole sum as one matrix product
#
# The loop does $N\cdot O\cdot H_{out} W_{out}\cdot C K_H K_W$ multiply-adds one at a time in
# Python. Computers are fast at one thing above all: **matrix products**, for which BLAS
# libraries reach close to the processor's peak. The trick that turns the convolution into one:
# copy every window the kernel visits into a column of a matrix, `cols`. Row $(p, q)$ of `cols`
# holds the pixel that tap $(p, q)$ sees; column $(i, j)$ holds the window of output $(i, j)$:
#
# $$\text{cols}\big[(p,q),\,(i,j)\big] = x[i + p,\, j + q], \qquad
#   y[o, (i,j)] = \sum_{(p,q)} w[o, (p,q)]\;\text{cols}\big[(p,q), (i,j)\big] .$$
#
# The second formula is a matrix product: $Y = W_{\text{mat}}\,\text{cols}$ with
# $W_{\text{mat}}$ the filters flattened to rows, $(O, K^2)$. This is **im2col** ("image to
# columns"). For one image and one channel, as a loop:


# %%
def im2col_loop(x, K):
    """One image (H, W) -> cols (K*K, OH*OW): row p*K + q is tap (p, q), column i*OW + j is output (i, j)."""
    H, W = x.shape
    OH, OW = H - K + 1, W - K + 1
    cols = np.empty((K * K, OH * OW))
    for i, j, p, q in np.ndindex(OH, OW, K, K):
        cols[p * K + q, i * OW + j] = x[i + p, j + q]
    return cols


numbered = np.arange(25.0).reshape(5, 5)
print(im2col_loop(numbered, 3).astype(int))

# %% [markdown]
# Each column is one window read row by row: column 0 is the window at the top-left (pixels 0,
# 1, 2, 5, 6, 7, 10, 11, 12), the next column the same window moved one pixel right. A pixel
# appears in up to $K^2$ columns, which is the price of im2col: the matrix holds about $K^2$
# times as many numbers as the image. Drawn, with the window of output $(1, 2)$ and its column
# marked:


# %%
def draw_numbers(ax, values, title, xlabel, ylabel):
    ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(values.shape[1])), ax.set_yticks(range(values.shape[0]))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)


cols = im2col_loop(numbered, 3)
fig = Figure(figsize=(10, 4.3), layout="constrained")
left, right = fig.subplots(1, 2, width_ratios=(5, 9))
draw_numbers(left, numbered, "image 5x5: window of output (1, 2)", "column", "row")
left.add_patch(Rectangle((1.5, 0.5), 3, 3, fill=False, ec="tab:red", lw=2.5))
draw_numbers(right, cols, "im2col: 9 taps x 9 output positions", "output position i*3 + j", "tap p*3 + q")
right.add_patch(Rectangle((1 * 3 + 2 - 0.5, -0.5), 1, 9, fill=False, ec="tab:red", lw=2.5))
course.show(fig, "im2col")

# %% [markdown]
# Now the convolution of the X-ray with 8 random 3×3 filters as **one** matrix product (a
# *GEMM*, for "general matrix multiply", in the name BLAS libraries give it),
# $(8, 9) \times (9, 26\cdot 26)$, checked against the loop of section 2 filter by filter, and
# against `F.conv2d`:

# %%
filters = rng.standard_normal((8, 3, 3))
cols = im2col_loop(xray, 3)
maps = (filters.reshape(8, 9) @ cols).reshape(8, 26, 26)
print("filters (8, 9) @ cols", cols.shape, "->", maps.shape)
assert all(np.allclose(maps[o], correlate_loop(xray, filters[o])) for o in range(8))
by_tinymed = F.conv2d(tm.tensor(xray[None, None]), tm.tensor(filters[:, None])).numpy()[0]
assert np.allclose(maps, by_tinymed)
print("im2col + GEMM == loop == F.conv2d")

# %% [markdown]
# With channels and a batch the idea is the same: the rows become the taps $(c, p, q)$ and the
# columns the output positions $(n, i, j)$ of every image, so a whole batch is still one product
# $(O, C K_H K_W) \times (C K_H K_W,\, N H_{out} W_{out})$. tinymed's reference builds that
# matrix without a Python loop over pixels (exercise 2.2 asks you to write it).
#
# How much faster is it? We time 8 filters of 5×5 on X-rays: the literal loop of section 4 on
# one image, im2col by loop plus one product, and `F.conv2d` on a batch (per image).

# %%
batch = val.images[: course.pick(256, 16)].astype(np.float64) / 255.0
filters5, zero_bias = rng.standard_normal((8, 1, 5, 5)), np.zeros(8)
start = time.perf_counter()
conv2d_loop(batch[:1], filters5, zero_bias)
loop_s = time.perf_counter() - start
start = time.perf_counter()
filters5.reshape(8, 25) @ im2col_loop(batch[0, 0], 5)
im2col_s = time.perf_counter() - start
start = time.perf_counter()
F.conv2d(tm.tensor(batch), tm.tensor(filters5))
tinymed_s = (time.perf_counter() - start) / len(batch)
for name, s in [("literal loop", loop_s), ("im2col loop + GEMM", im2col_s), ("F.conv2d, per image", tinymed_s)]:
    print(f"{name:>22}: {s * 1e3:9.3f} ms per image  ({loop_s / s:8.0f}x the loop's speed)")

# %% [markdown]
# Most of the remaining time of our im2col is its Python loop that copies pixels; the product
# itself is almost free. `F.conv2d` copies with NumPy's strided views instead and does the whole
# batch in a few products. The cost is memory: for this layer the im2col matrix of one image
# holds 25 × 24 × 24 = 14,400 numbers where the image has 784.
#
# ## 6. The gradient is a matrix product too
#
# Training needs $\partial L/\partial w$. Since $Y = W_{\text{mat}}\,\text{cols}$, chapter 1's
# chain rule on one entry $Y_{o\ell} = \sum_k W_{ok}\,\text{cols}_{k\ell}$ gives
#
# $$\frac{\partial L}{\partial W_{ok}} = \sum_{\ell} \frac{\partial L}{\partial Y_{o\ell}}\,
#   \text{cols}_{k\ell}, \qquad\text{that is}\qquad
#   \frac{\partial L}{\partial W_{\text{mat}}} = \frac{\partial L}{\partial Y}\,\text{cols}^{\top} .$$
#
# A weight is used at every output position, so its gradient **sums over all of them**: weight
# sharing, seen from the backward side. We check it against tinymed's autograd with a random
# $\partial L/\partial Y$ (passing it to `backward` is how one asks for
# $\partial L/\partial w$ when $L$ is not written down).

# %%
x_t = tm.tensor(xray[None, None])
w_t = tm.tensor(filters[:, None], requires_grad=True)
y_t = F.conv2d(x_t, w_t)
grad_y = rng.standard_normal(y_t.shape)  # plays dL/dY, shape (1, 8, 26, 26)
y_t.backward(tm.tensor(grad_y))
by_hand = (grad_y.reshape(8, -1) @ cols.T).reshape(8, 1, 3, 3)
print("dL/dw", w_t.grad.shape, " largest difference from autograd:", np.abs(by_hand - np.asarray(w_t.grad)).max())
assert np.allclose(by_hand, np.asarray(w_t.grad))

# %% [markdown]
# The gradient with respect to the input goes the other way: $W_{\text{mat}}^\top\,
# \partial L/\partial Y$ gives, for every tap of every window, the gradient of the pixel that
# tap read, and adding each window back where it came from gives $\partial L/\partial x$. That
# operation is the **transposed convolution**, which chapter 10's U-Net and chapter 11's
# generator use to make images larger (`numpy_ref.conv2d_grad_input` in the reference).
#
# ## 7. Stride, padding, dilation
#
# Three settings change where the windows go:
#
# - **stride** $S$: the window moves $S$ pixels at a time, so the output is about $S$ times
#   smaller in each direction (a cheap way to shrink feature maps);
# - **padding** $P$: $P$ rows and columns of zeros are added around the input, so the border
#   pixels get full windows too and the output can keep the input's size;
# - **dilation** $D$: the kernel's taps are $D$ pixels apart, so a $3\times 3$ kernel with
#   $D = 2$ spans $5\times 5$ pixels with 9 weights.
#
# A dilated kernel spans $D(K-1)+1$ pixels; the padded input has $H + 2P$; a window fits at
# $H + 2P - D(K-1)$ start positions, of which every $S$-th is used:
#
# $$H_{\text{out}} = \left\lfloor \frac{H + 2P - D(K-1) - 1}{S} \right\rfloor + 1 .$$
#
# The general index in the formula of section 4 becomes $x_{\text{pad}}[n, c,\, iS + pD,\,
# jS + qD]$. Drawn on a 7×7 input with a 3×3 kernel: the pixels read by output $(0, 0)$ in
# blue, by its right neighbour $(0, 1)$ in orange (both: purple), padding hatched.


# %%
def draw_geometry(ax, size, K, S=1, P=0, D=1):
    """A size x size input padded by P; the taps of outputs (0, 0) and (0, 1) for kernel K, stride S, dilation D."""
    side = size + 2 * P
    taps = [{(i * S + p * D, j * S + q * D) for p in range(K) for q in range(K)} for i, j in ((0, 0), (0, 1))]
    for r, c in np.ndindex(side, side):
        padded = not (P <= r < P + size and P <= c < P + size)
        colour = {(1, 0): "tab:blue", (0, 1): "tab:orange", (1, 1): "tab:purple"}.get(
            ((r, c) in taps[0], (r, c) in taps[1]), "white"
        )
        ax.add_patch(Rectangle((c, side - 1 - r), 1, 1, fc=colour, ec="grey", hatch="//" if padded else None))
    out = (size + 2 * P - D * (K - 1) - 1) // S + 1
    ax.set(xlim=(0, side), ylim=(0, side), aspect="equal", xticks=[], yticks=[])
    ax.set_title(f"K={K} S={S} P={P} D={D}\noutput {out}x{out}", fontsize=10)


fig = Figure(figsize=(12, 3.4), layout="constrained")
settings = [dict(K=3), dict(K=3, S=2), dict(K=3, P=1), dict(K=3, D=2)]
for ax, setting in zip(fig.subplots(1, 4), settings):
    draw_geometry(ax, 7, **setting)
fig.suptitle("where the windows of outputs (0, 0) [blue] and (0, 1) [orange] read a 7x7 input")
course.show(fig, "geometry")

# %% [markdown]
# Check yourself: the formula against the shapes `F.conv2d` produces, for a few settings on a
# 28×28 X-ray. `padding="same"` asks tinymed (like PyTorch) to choose the padding that keeps
# the size, which for stride 1 and an odd span is $P = D(K-1)/2$.


# %%
def output_size(H, K, S=1, P=0, D=1):
    """H_out = floor((H + 2P - D(K-1) - 1) / S) + 1, along one axis."""
    return (H + 2 * P - D * (K - 1) - 1) // S + 1


one_xray = tm.tensor(xray[None, None])
print(" K  S  P  D   output   formula")
for K, S, P, D in [(3, 1, 0, 1), (5, 1, 2, 1), (3, 2, 1, 1), (4, 2, 1, 1), (3, 1, 0, 2), (5, 3, 0, 2), (28, 1, 0, 1)]:
    shape = F.conv2d(one_xray, tm.ones(1, 1, K, K, dtype=tm.float64), stride=S, padding=P, dilation=D).shape
    print(f"{K:2d} {S:2d} {P:2d} {D:2d}   {shape[2]:2d}x{shape[3]:<2d}   {output_size(28, K, S, P, D):2d}")
    assert shape[2] == output_size(28, K, S, P, D)
assert F.conv2d(one_xray, tm.ones(1, 1, 5, 5, dtype=tm.float64), padding="same").shape[2:] == (28, 28)

# %% [markdown]
# One more number describes a stack of layers: the **receptive field**, how many input pixels
# (along one axis) one output pixel depends on. One $K\times K$ layer sees $K$. A second layer
# sees $K$ cells of the first, and if the first had stride $S$ those cells are $S$ input pixels
# apart, so every layer adds $D(K-1)$ times the spacing ("jump") $J$ of the map it reads:
#
# $$r_\ell = r_{\ell-1} + D_\ell (K_\ell - 1)\, J_{\ell-1}, \qquad J_\ell = J_{\ell-1} S_\ell,
#   \qquad r_0 = J_0 = 1 .$$
#
# A deep stack sees a large part of the image with small kernels, which is how a CNN with 3×3
# kernels can judge a whole lung. Exercise 2.1 walks a stack with these formulas; section 8
# measures one receptive field with a gradient.
#
# ## 8. A CNN learns its own kernels
#
# The Sobel kernel was designed by hand. A **convolutional neural network** (CNN) learns its
# kernels from labelled images by gradient descent, exactly as chapter 1's logistic regression
# learned its weights. Ours is three convolution layers and chapter 1's logistic regression on
# top:
#
# - conv 5×5, 8 filters, padding 2: 8 feature maps of 28×28;
# - conv 3×3, 16 filters, stride 2, padding 1: 16 maps of 14×14;
# - conv 3×3, 16 filters, stride 2, padding 1: 16 maps of 7×7, flattened to 784 numbers;
# - a linear layer from those 784 numbers to one score (the logit of "pneumonia").
#
# Between the convolutions sits a **ReLU**, $\max(0, z)$ element by element. Without it, two
# convolutions in a row would be one convolution with a larger kernel (both are linear), and
# depth would buy nothing. (Chapter 3 explains the linear layer and the pooling layers real CNNs
# use to shrink their maps; here stride does that job.)

# %%
train = course.xray_dataset("train")
tm.manual_seed(0)
cnn = nn.Sequential(
    nn.Conv2d(1, 8, kernel_size=5, padding=2),
    nn.ReLU(),
    nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
    nn.ReLU(),
    nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1),
    nn.ReLU(),
    nn.Flatten(),
    nn.Linear(16 * 7 * 7, 1),
)
print(f"{sum(p.numel() for p in cnn.parameters()):,} weights; first layer {tuple(cnn[0].weight.shape)}")
initial_filters = cnn[0].weight.numpy().copy()

# %% [markdown]
# Training: random batches of 32 X-rays, the binary cross-entropy of chapter 1, and
# `optim.Adam`, a gradient descent that scales each weight's step by the size of its recent
# gradients (chapter 8 writes the whole training loop out and discusses it). The run is short,
# 600 steps, a few passes over the training set: enough to see the kernels change. Chapter 8
# trains properly and asks what the resulting numbers mean.
#
# The network reads each image **standardised**, as chapter 1's thumbnails were: minus the
# training images' mean brightness, divided by their standard deviation, so that its inputs
# are centred on 0 instead of all lying in $[0, 1]$. This is not a detail. With raw brightness
# every input is positive, so at each output pixel the gradients of all of a filter's weights
# have one sign, that pixel's: the weights can only move together, and descent zig-zags
# (LeCun and colleagues' *Efficient BackProp*, 1998, works this out for centred inputs). In one
# of our trial runs on the phantoms without this step (another seed), the loss ended the 600
# steps at $\log 2 \approx 0.69$, chance, with a validation AUC of 0.500: it had learned
# nothing.

# %%
mean, std = float(train.images.mean()) / 255.0, float(train.images.std()) / 255.0


def standardise(images):
    """Brightness in [0, 1] -> (brightness - mean) / std, the training images' mean and std."""
    return (images - mean) / std


print(f"training images: mean brightness {mean:.3f}, standard deviation {std:.3f}")
optimizer = optim.Adam(cnn.parameters(), lr=3e-3)
steps, losses, start = course.pick(600, 20), [], time.perf_counter()
for _ in range(steps):
    images, labels = train.batch(rng.integers(0, len(train), 32))
    logits = cnn(tm.tensor(standardise(images))).flatten()
    loss = F.binary_cross_entropy_with_logits(logits, tm.tensor(labels.astype(np.float32)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"{steps} steps in {time.perf_counter() - start:.1f} s; mean loss of the last 20: {np.mean(losses[-20:]):.3f}")

# %%
with tm.no_grad():
    val_images, val_labels = val.batch(np.arange(len(val)))
    val_scores = cnn(tm.tensor(standardise(val_images))).numpy().ravel()
print(f"validation AUC {roc_auc_score(val_labels, val_scores):.3f} on {len(val)} images")

# %% [markdown]
# In our full runs this small network reached a validation AUC of 0.992 on PneumoniaMNIST and
# 0.995 on the phantoms, after 600 steps. On the phantoms, whose faint opacity can lie anywhere
# in the lung, chapter 1's logistic regression stayed near 0.7: looking for the same kernels at
# every position is what the CNN can do and it could not. On PneumoniaMNIST chapter 1's model was
# already near 0.98. In fast mode 20 steps teach the network almost nothing. Whatever the
# number, it is a validation figure on a small, easy data set (chapter 8 asks what it would
# mean for patients).
#
# The 8 kernels of the first layer, before and after training, on one colour scale (red
# positive, blue negative):

# %%
learned_filters = cnn[0].weight.numpy()
limit = np.abs(np.concatenate([initial_filters, learned_filters])).max()
fig = Figure(figsize=(12, 3.6), layout="constrained")
axes = fig.subplots(2, 8)
for o in range(8):
    draw(axes[0, o], initial_filters[o, 0], f"filter {o}", "RdBu_r", limit, colorbar=False)
    shown = draw(axes[1, o], learned_filters[o, 0], "", "RdBu_r", limit, colorbar=False)
axes[0, 0].set_ylabel("at random"), axes[1, 0].set_ylabel(f"after {steps} steps")
fig.colorbar(shown, ax=axes, fraction=0.02, label="weight")
fig.suptitle("the first layer's 5x5 kernels")
course.show(fig, "filters")
print(f"each filter moved by {np.abs(learned_filters - initial_filters).mean():.3f} on average per weight")

# %% [markdown]
# A kernel alone says little; what it does to an X-ray says more. The **feature maps** of the
# first layer (after the ReLU: what the second layer reads) for one normal X-ray and one
# labelled pneumonia: bright where the filter's pattern is present. A map that is black
# everywhere, on both images, belongs to a filter that has "died": its output is negative at
# every pixel, the ReLU passes zero, and so does the gradient, so training can no longer revive
# it. Whether that happens here depends on the data and the seed.

# %%
examples = [np.flatnonzero(val.labels == c)[0] for c in (0, 1)]
with tm.no_grad():
    feature_maps = cnn[1](cnn[0](tm.tensor(standardise(val_images[examples])))).numpy()  # (2, 8, 28, 28)
relative = feature_maps / (feature_maps.max(axis=(0, 2, 3), keepdims=True) + 1e-12)  # each filter's largest = 1
fig = Figure(figsize=(14, 3.6), layout="constrained")
axes = fig.subplots(2, 9)
for row, k in enumerate(examples):
    draw(axes[row, 0], val_images[k, 0], val.info.labels[val.labels[k]], colorbar=False)
    for o in range(8):
        shown = draw(axes[row, o + 1], relative[row, o], f"map {o}" if row == 0 else "", "magma", 1, colorbar=False)
        shown.set_clim(0, 1)
fig.colorbar(shown, ax=axes, fraction=0.02, label="activation / the filter's largest")
fig.suptitle("first-layer feature maps: where each learned kernel responds")
course.show(fig, "feature-maps")

# %% [markdown]
# How much of the X-ray can one number of the last 7×7 map see? Its receptive field, measured:
# take the gradient of that one number with respect to the input image. The pixels with a
# nonzero gradient are exactly the pixels it depends on. (We use the network's own weights, so
# a pixel could have a gradient of exactly zero by coincidence, or because a ReLU is off; the
# footprint of all input pixels that *can* matter is the square drawn.)

# %%
image_t = tm.tensor(standardise(val_images[examples[1] : examples[1] + 1]), requires_grad=True)
last_maps = cnn[:6](image_t)  # (1, 16, 7, 7), after the third ReLU
centre = last_maps.shape[2] // 2
last_maps[0, :, centre, centre].sum().backward()
footprint = np.abs(np.asarray(image_t.grad)[0, 0]) > 0
rows, columns = np.flatnonzero(footprint.any(axis=1)), np.flatnonzero(footprint.any(axis=0))
print(
    f"map cell ({centre}, {centre}) depends on rows {rows.min()}-{rows.max()}, columns {columns.min()}-{columns.max()}"
)
field = rows.max() - rows.min() + 1
print(f"receptive field {field} x {columns.max() - columns.min() + 1} pixels of the 28 x 28 image")

# %% [markdown]
# Drawn: the square on the X-ray, and the size of the gradient inside it. The pixels near the
# centre reach the cell along many more paths through the three layers than those at the edge,
# so averaged over many images they weigh more: the *effective* receptive field is smaller than
# the square. On one image, as here, the picture is irregular: the ReLUs that are off for this
# image close some paths, and weights of opposite signs cancel along others.

# %%
fig = Figure(figsize=(9, 3.8), layout="constrained")
left, right = fig.subplots(1, 2)
draw(left, val_images[examples[1], 0], "X-ray and the receptive field", label="brightness")
draw(right, np.abs(np.asarray(image_t.grad)[0, 0]), f"|d cell ({centre}, {centre}) / d pixel|", "magma")
for ax in (left, right):
    ax.add_patch(Rectangle((columns.min() - 0.5, rows.min() - 0.5), len(columns), len(rows), fill=False, ec="c", lw=2))
fig.suptitle("what one cell of the last 7x7 feature map can see")
course.show(fig, "receptive-field")

# %% [markdown]
# With the formula of section 7: $r = 1 + 4\cdot 1 + 2\cdot 1 + 2\cdot 2 = 11$ pixels. One
# cell of the last map sees an 11×11 patch, about a sixth of the image's area; the linear layer
# on top combines the 49 cells to see it all.

# %%
assert field <= 1 + 4 + 2 + 4  # a ReLU that is off can only shrink the footprint
print("receptive field by the formula: 11; measured:", field)

# %% [markdown]
# ## 9. Honest limits
#
# - **What a convolution shares, and what it does not.** Moving the input moves the feature
#   maps (the convolution is *equivariant* to translation, up to the borders and the stride).
#   It knows nothing of rotation or scale: a rotated or larger pattern needs filters of its
#   own. And the linear layer on top is not equivariant at all (exercise 2.6).
# - **Borders.** Zero padding invents black pixels outside the image. A filter responds to that
#   artificial edge, as the first-layer maps above show along the frame.
# - **Drawn filters are not an explanation.** A 5×5 kernel after a few hundred steps looks
#   mostly like its random start, and deeper kernels mix 8 or 16 channels and cannot be drawn
#   as one picture at all. Feature maps show where a filter responded, not why the network
#   decided; chapter 9 asks that question properly, and a radiologist would still need to see
#   that the network looked at the lungs and not at a marker or the edge of the film.
# - **Data.** The learned kernels, maps and the AUC depend on the data (phantoms or
#   PneumoniaMNIST) and on the random seed. 28×28 thumbnails throw away most of what a
#   radiologist looks at.
# - **im2col's price.** Speed is paid for in memory: the im2col matrix is about $K^2$ times the
#   input (for a stride of 1), which is why tinymed builds it a chunk of the batch at a time,
#   and why GPU kernels (chapter 7) often compute the windows on the fly instead.

# %% [markdown]
# ## Exercises
#
# Exercises 2.1 to 2.4 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 2            # in the folder holding your 02_convolution.py or .ipynb
# ```
#
# Each cell is self-contained (it imports what it needs); 2.3 and 2.4 may call your `im2col`
# from 2.2. Work on NumPy arrays; no tinymed is needed inside them.
#
# **Exercise 2.1 (shapes and receptive fields of a stack).** Write `stack_geometry(size,
# layers)`. `size` is the height (= width) of a square input; `layers` is a list of dicts with
# the keys `kernel_size` and, optionally, `stride`, `padding`, `dilation` (defaults 1, 0, 1, as
# in PyTorch). Return a list with one `(output_size, receptive_field)` pair of ints per layer,
# using the formulas of section 7. If a layer's output size would be smaller than 1, raise a
# `ValueError` that names the layer's position in the list (counting from 0, as Python does).


# %% tags=["exercise"]
def stack_geometry(size, layers):
    """[(output size, receptive field)] after each layer of a stack of square convolutions."""
    # BEGIN SOLUTION
    result, field, jump = [], 1, 1
    for position, layer in enumerate(layers):
        k, s = layer["kernel_size"], layer.get("stride", 1)
        p, d = layer.get("padding", 0), layer.get("dilation", 1)
        size = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if size < 1:
            raise ValueError(f"layer {position}: the kernel does not fit (output size {size})")
        field, jump = field + d * (k - 1) * jump, jump * s
        result.append((size, field))
    return result
    # END SOLUTION


# %% [markdown]
# **Exercise 2.2 (im2col).** Write `im2col(x, kernel_size, stride=1, padding=0, dilation=1)`
# for a batch `x` of shape $(N, C, H, W)$ and a square kernel. Return the matrix of shape
# $(C K^2,\; N H_{out} W_{out})$ with
#
# $$\text{cols}\big[(c, p, q),\, (n, i, j)\big] = x_{\text{pad}}[n, c,\, iS + pD,\, jS + qD],$$
#
# rows in the order $(c, p, q)$ and columns in the order $(n, i, j)$ (the last index varying
# fastest, as `reshape` flattens), padding with zeros. Keep the input's dtype. A loop over the
# $K^2$ taps with NumPy slicing is fast enough; a loop over pixels works but is slow.

# %% tags=["exercise"]
import numpy as np


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (C*K*K, N*OH*OW): rows are the taps (c, p, q), columns the output positions (n, i, j)."""
    # BEGIN SOLUTION
    N, C, H, W = x.shape
    K, S, P, D = kernel_size, stride, padding, dilation
    OH, OW = (H + 2 * P - D * (K - 1) - 1) // S + 1, (W + 2 * P - D * (K - 1) - 1) // S + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    cols = np.empty((C, K, K, N, OH, OW), dtype=x.dtype)
    for p in range(K):
        for q in range(K):
            rows = x_pad[:, :, p * D : p * D + S * (OH - 1) + 1 : S, q * D : q * D + S * (OW - 1) + 1 : S]
            cols[:, p, q] = rows.transpose(1, 0, 2, 3)  # (N, C, OH, OW) -> (C, N, OH, OW)
    return cols.reshape(C * K * K, N * OH * OW)
    # END SOLUTION


# %% [markdown]
# **Exercise 2.3 (a convolution layer by one matrix product).** Write
# `conv2d_gemm(x, weight, bias=None, stride=1, padding=0, dilation=1)`: $x$ $(N, C, H, W)$,
# weight $(O, C, K, K)$, bias $(O,)$ or `None`, returning $y$ $(N, O, H_{out}, W_{out})$, the
# same numbers as `F.conv2d`. Use your `im2col` and **one** matrix product; the only work left
# is putting the result's axes in the right order.


# %% tags=["exercise"]
def conv2d_gemm(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """y (N, O, OH, OW) = conv2d(x (N, C, H, W), weight (O, C, K, K)) + bias (O,), by im2col and one GEMM."""
    # BEGIN SOLUTION
    N, _, H, W = x.shape
    O, _, K, _ = weight.shape
    OH = (H + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    OW = (W + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    y = weight.reshape(O, -1) @ im2col(x, K, stride, padding, dilation)  # (O, N*OH*OW)
    if bias is not None:
        y = y + bias[:, None]
    return y.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)
    # END SOLUTION


# %% [markdown]
# **Exercise 2.4 (the weight gradient).** Write
# `conv2d_weight_grad(x, grad_output, kernel_size, stride=1, padding=0, dilation=1)`: given the
# input $x$ $(N, C, H, W)$ of a convolution and $\partial L/\partial y$ of shape
# $(N, O, H_{out}, W_{out})$, return $\partial L/\partial w$ of shape $(O, C, K, K)$, the formula
# of section 6 for a whole batch. The trap: the columns of your im2col are ordered $(n, i, j)$;
# the columns of $\partial L/\partial Y$ must be in the same order.


# %% tags=["exercise"]
def conv2d_weight_grad(x, grad_output, kernel_size, stride=1, padding=0, dilation=1):
    """dL/dw (O, C, K, K) of a convolution, from its input x (N, C, H, W) and dL/dy (N, O, OH, OW)."""
    # BEGIN SOLUTION
    O, C = grad_output.shape[1], x.shape[1]
    grad_y = grad_output.transpose(1, 0, 2, 3).reshape(O, -1)  # (O, N*OH*OW), columns (n, i, j)
    cols = im2col(x, kernel_size, stride, padding, dilation)
    return (grad_y @ cols.T).reshape(O, C, kernel_size, kernel_size)
    # END SOLUTION


# %% [markdown]
# **Exercise 2.5 (in words).** A colleague trains this chapter's CNN in a library that computes
# *true* convolutions, with the same data and the same random initial weights. (a) Will the
# trained network's predictions differ from ours? Will its learned kernels? (b) She then loads
# our trained weights into her library unchanged. What happens to the predictions, and what is
# the one-line fix? (c) Give one situation in medical imaging where the flip matters even
# though nobody trains anything.
#
# **Exercise 2.6 (experiment).** A convolution is *equivariant* to translation: shift the
# input and the feature maps shift with it. *Predict* before running the cell below: when the
# X-ray moves 3 pixels to the right, (a) do the first-layer maps of the moved image equal the
# moved maps of the original everywhere, or only away from some places? (b) Does the network's
# score stay the same? Run it, then try a shift of 1 and of 6 pixels, and explain what you see
# in terms of padding, stride and the linear layer. (Chapter 3's pooling is one answer to (b).)

# %%
shift = 3  # pixels to the right; try 1 and 6
with tm.no_grad():
    raw = val_images[examples[1] : examples[1] + 1]
    raw_moved = np.roll(raw, shift, axis=3) * (np.arange(28) >= shift)  # black enters on the left
    original, moved = tm.tensor(standardise(raw)), tm.tensor(standardise(raw_moved))
    maps_original, maps_moved = (cnn[1](cnn[0](t)).numpy()[0] for t in (original, moved))
    score_original, score_moved = cnn(original).item(), cnn(moved).item()
difference = np.abs(maps_moved[:, :, shift:] - maps_original[:, :, : 28 - shift]).max(axis=(0, 1))
print("largest difference between moved maps and maps of the moved image, per column:")
print(difference.round(3))
print(f"score (logit): original {score_original:.3f}, moved {score_moved:.3f}")
