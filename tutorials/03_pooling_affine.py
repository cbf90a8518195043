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
# # Chapter 3 · Pooling and the affine layer
#
# In chapter 2's last experiment the CNN's score changed when an X-ray moved by three pixels:
# its convolutions moved their feature maps along, but the layer on top read every pixel of
# them at a fixed place. Most CNNs put a **pooling** layer between their
# convolutions: it keeps only the largest value of each small window and throws the other
# three of four away. Why would throwing information away help a network, what does it cost,
# and how does a gradient get back through a `max`, which has no derivative where two values
# tie? And at the top of every classifier sits an **affine layer**, $y = Wx + b$, chapter 1's
# logistic regression with many outputs: its gradients turn out to be three matrix products.
#
# **Learning objectives.** After this chapter you can:
#
# - Compute max pooling and route its gradient through the argmax of each window.
# - Derive the three gradients of y = Wx + b as matrix products.
# - Explain what pooling buys a CNN and what it throws away.
#
# **You need** chapters 1 (gradients, `backward`) and 2 (convolution, feature maps, stride).
# **Time**: about 90 minutes with the exercises. Run it as a script (`python
# tutorials/03_pooling_affine.py`, figures go to `tutorials/figures/03_pooling_affine/`) or as a
# notebook (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it runs on less
# data.

# %%
import inspect
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import tinymed as tm
import tinymed.functional as F
from tinymed import course, plots
from tinymed.backends import numpy_ref
from tinymed.gradcheck import GradcheckError
from tinymed.models import LeNet

rng = np.random.default_rng(0)
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. Max pooling, by hand
#
# Cut the image into $K\times K$ windows and keep the largest value of each. With windows that
# start every $S$ pixels (the **stride**, by default $S = K$, so the windows do not overlap):
#
# $$y[i, j] = \max_{0 \le p, q < K} x[iS + p,\; jS + q] .$$
#
# For the backward pass we will also need **where** each maximum was, its *argmax*. tinymed
# (like PyTorch's `return_indices=True`) records it as the flat position $h \cdot W + w$ of the
# winning pixel in the input plane. The literal loop, for one plane and $S = K$:


# %%
def max_pool_loop(x, K):
    """One plane (H, W), K x K windows with stride K: the maxima y and the flat index h*W + w of each."""
    H, W = x.shape
    y, where = np.empty((H // K, W // K)), np.empty((H // K, W // K), dtype=np.int64)
    for i, j in np.ndindex(y.shape):
        best = (i * K, j * K)  # the window's first pixel
        for p, q in np.ndindex(K, K):
            if x[i * K + p, j * K + q] > x[best]:  # strictly greater: on a tie the first one stays
                best = (i * K + p, j * K + q)
        y[i, j], where[i, j] = x[best], best[0] * W + best[1]
    return y, where


x = rng.integers(0, 10, size=(4, 6)).astype(np.float64)
pooled, where = max_pool_loop(x, 2)
print("x:\n", x, "\nmax over 2x2 windows:\n", pooled, "\nargmax as h*W + w:\n", where)

# %% [markdown]
# Six windows, six winners; of the 24 numbers, 18 are gone. Check by eye that `where` points
# at each winner: $h = $ `where // 6`, $w = $ `where % 6`.
#
# ## 2. Vectorised, then tinymed
#
# When the windows tile the image exactly, NumPy can cut them out with a reshape: row $h$
# becomes (window row $i$, offset $p$) and column $w$ becomes ($j$, $q$). Gathering each
# window's $K^2$ pixels in the last axis, `max` and `argmax` do the rest (`argmax`, too,
# returns the first of equal values).


# %%
def max_pool_reshape(x, K):
    """The same as max_pool_loop, for H and W multiples of K, without a loop."""
    H, W = x.shape
    windows = x.reshape(H // K, K, W // K, K).transpose(0, 2, 1, 3).reshape(H // K, W // K, K * K)
    k = windows.argmax(axis=-1)  # position inside the window, p*K + q
    rows, cols = np.ogrid[: H // K, : W // K]
    return windows.max(axis=-1), (rows * K + k // K) * W + (cols * K + k % K)


big = rng.standard_normal((28, 28))
for a, b in zip(max_pool_loop(big, 2), max_pool_reshape(big, 2)):
    assert np.array_equal(a, b)
y_t, where_t = F.max_pool2d(tm.tensor(big[None, None]), 2, return_indices=True)
assert np.array_equal(y_t.numpy()[0, 0], max_pool_loop(big, 2)[0])
assert np.array_equal(where_t.numpy()[0, 0], max_pool_loop(big, 2)[1])
print("loop == reshape == F.max_pool2d, values and indices;", big.shape, "->", tuple(y_t.shape[2:]))

# %% [markdown]
# Where it lives: `F.max_pool2d` (forward with its argmax, and backward beside it), and the
# reference arithmetic, which handles any stride, padding and dilation with a running maximum
# over the $K^2$ taps:

# %%
package_root = Path(tm.__file__).parent.parent
for fn in (F.max_pool2d, numpy_ref.max_pool2d_forward, numpy_ref.max_pool2d_backward):
    print(f"{Path(inspect.getsourcefile(fn)).relative_to(package_root)}: {fn.__name__}")
print("\n" + inspect.getdoc(numpy_ref.max_pool2d_forward).split("\n\n")[0])

# %% [markdown]
# A classic CNN alternates the two layers: a convolution finds a pattern everywhere, pooling
# keeps, for each small region, how strongly it was found. tinymed's LeNet-5, the 1998 network
# that read handwritten cheques, does it twice before its affine layers:

# %%
print(inspect.getsource(LeNet.forward_features))

# %% [markdown]
# ## 3. Pooling an X-ray's edges
#
# To see what survives, take chapter 2's Sobel edge detector, keep the size of its response
# ($|{\rm response}|$: an edge in either direction), and pool it twice. (We pad the image by
# repeating its border pixels rather than with zeros, so that the frame of the image does not
# show up as the strongest edge of all: chapter 2's honest limits.) The X-rays come from
# PneumoniaMNIST when it is on this machine and from tinymed's phantoms otherwise; the next line
# says which. For comparison, **average pooling** (the mean of each window, `F.avg_pool2d`)
# on the last panel.

# %%
val = course.xray_dataset("val", n=course.pick(None, 100))
xrays = val.images.astype(np.float64) / 255.0  # (N, 1, 28, 28)
sobel = tm.tensor(np.array([[[[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]]]))
repeated_border = np.pad(xrays, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")  # (N, 1, 30, 30)
edges = F.conv2d(tm.tensor(repeated_border), sobel).abs()  # (N, 1, 28, 28): strength of vertical edges
pool14 = F.max_pool2d(edges, 2)
pool7 = F.max_pool2d(pool14, 2)
average7 = F.avg_pool2d(edges, 4)
print("edges", tuple(edges.shape), "-> max pool", tuple(pool14.shape), "-> max pool", tuple(pool7.shape))


# %%
def draw(ax, image, title, cmap="gray", vmin=None, vmax=None, label=""):
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])
    ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, label=label)


k = int(np.flatnonzero(val.labels == 1)[0])
top = edges.numpy()[k, 0].max()
fig = Figure(figsize=(15, 3.2), layout="constrained")
axes = fig.subplots(1, 5)
draw(axes[0], xrays[k, 0], f"X-ray ({val.info.labels[val.labels[k]]})", label="brightness")
for ax, t, title in zip(
    axes[1:],
    [edges, pool14, pool7, average7],
    ["|edges| 28x28", "max pool 2 -> 14x14", "max pool 2 again -> 7x7", "average pool 4 -> 7x7"],
):
    draw(ax, t.numpy()[k, 0], title, "magma", 0, top, "edge strength")
fig.suptitle("pooling keeps how strong an edge was in each window, not where in the window it was")
course.show(fig, "pooling-xray")

# %% [markdown]
# Max pooling keeps every strong, thin edge at full strength (a one-pixel line of contrast
# still fills its 7×7 cell); average pooling dilutes it with the flat pixels around it. Both
# forget *where inside the window* the edge was.
#
# ## 4. What pooling buys: small shifts stop mattering
#
# That forgetting is the point. Move an X-ray one pixel to the right: its thin edge map changes
# almost everywhere, since edges one pixel wide no longer sit on themselves. After pooling, an
# edge that stays inside its window gives the same maximum. We measure, over the images, the
# relative change $\lVert f(\text{shifted}) - f(\text{original}) \rVert / \lVert
# f(\text{original}) \rVert$ for shifts of 0 to 6 pixels, with no pooling, 2×2 and 4×4 max
# pooling.


# %%
def shifted(t, s):
    """t moved s pixels to the right, black entering on the left."""
    out = np.zeros_like(t)
    out[..., s:] = t[..., : t.shape[-1] - s]
    return out


def relative_change(f, maps, shifts):
    base = f(maps).reshape(len(maps), -1)
    changes = [np.linalg.norm(f(shifted(maps, s)).reshape(len(maps), -1) - base, axis=1) for s in shifts]
    return [float(np.mean(c / (np.linalg.norm(base, axis=1) + 1e-12))) for c in changes]


edge_maps, shifts = edges.numpy(), range(7)
poolings = {
    "no pooling": lambda m: m,
    "max pool 2x2": lambda m: F.max_pool2d(tm.tensor(m), 2).numpy(),
    "max pool 4x4": lambda m: F.max_pool2d(tm.tensor(m), 4).numpy(),
}
changes = {name: relative_change(f, edge_maps, shifts) for name, f in poolings.items()}
for name, c in changes.items():
    print(f"{name:>13}:", " ".join(f"{v:.2f}" for v in c))

# %%
history = [{"epoch": s, **{name: c[s] for name, c in changes.items()}} for s in shifts]
fig = plots.plot_curves(
    history,
    [plots.Panel("how much a shift changes the map", "relative change", {name: name for name in changes})],
    title="pooling forgives shifts smaller than its window",
)
fig.axes[0].set_xlabel("shift (pixels to the right)")
course.show(fig, "shift")

# %% [markdown]
# A shift of one pixel changes the unpooled map by more than half, the 4×4-pooled map by about
# a fifth. The larger the shift, the less pooling helps: once it reaches the window's size,
# whole cells of the pooled map have moved too. So pooling makes a CNN tolerant of the small
# displacements real X-rays have (a patient standing a little to the left), not of large
# ones, and it shrinks the maps, so the next convolution's 3×3 kernel covers twice the
# distance. Check yourself: at a shift of one pixel the ordering must hold.

# %%
assert changes["max pool 4x4"][1] < changes["max pool 2x2"][1] < changes["no pooling"][1]

# %% [markdown]
# What it costs is the other side of the same coin. Two different images can pool to the same
# thing: below, a bright spot at the top-left or the bottom-right of the window, two clinically
# different findings on a fine enough scale, are the same after pooling.

# %%
spot_top_left, spot_bottom_right = np.zeros((4, 4)), np.zeros((4, 4))
spot_top_left[0, 0] = spot_bottom_right[1, 1] = 1.0
a, b = (F.max_pool2d(tm.tensor(s[None, None]), 2).numpy()[0, 0] for s in (spot_top_left, spot_bottom_right))
print("pooled top-left spot:\n", a, "\npooled bottom-right spot:\n", b)
assert np.array_equal(a, b)

# %% [markdown]
# ## 5. The gradient of a maximum
#
# $y = \max(x_1, \dots, x_k)$ equals one of its inputs, the winner $x_a$. Nudge the winner and
# $y$ moves with it; nudge any other input a little and $y$ does not move at all. So
#
# $$\frac{\partial y}{\partial x_m} = \begin{cases} 1 & m = a \text{ (the argmax)} \\ 0 &
#   \text{otherwise,} \end{cases} \qquad\text{and by the chain rule}\qquad
#   \frac{\partial L}{\partial x[h, w]} = \sum_{(i,j):\ \text{argmax}(i,j) = (h,w)}
#   \frac{\partial L}{\partial y[i,j]} .$$
#
# Each output sends its whole gradient to the one pixel that won its window, and nothing to
# the others. A pixel that wins two overlapping windows receives both gradients (the sum).
# That is why the forward pass keeps `where`. As a loop:


# %%
def max_pool_backward_loop(grad_y, where, shape):
    """dL/dx of one plane (shape (H, W)): each output's gradient added to the pixel that won its window."""
    grad_x = np.zeros(shape)
    for (i, j), g in np.ndenumerate(grad_y):
        h, w = divmod(int(where[i, j]), shape[1])
        grad_x[h, w] += g
    return grad_x


grad_y = rng.standard_normal(y_t.shape[2:])
x_t = tm.tensor(big[None, None], requires_grad=True)
F.max_pool2d(x_t, 2).backward(tm.tensor(grad_y[None, None]))
by_loop = max_pool_backward_loop(grad_y, where_t.numpy()[0, 0], big.shape)
assert np.array_equal(by_loop, np.asarray(x_t.grad)[0, 0])
print(f"loop == autograd; {np.count_nonzero(by_loop)} of {by_loop.size} pixels receive a gradient")

# %% [markdown]
# Drawn: with every $\partial L/\partial y = 1$, the gradient a pixel receives counts the
# windows it won. Left, 2×2 windows with stride 2: one winner per window (highlighted), the
# other three pixels get exactly zero. Middle, 3×3 windows with stride 2 overlap: a pixel on a
# shared border can win several windows (the 100 at row 2, column 2 lies in four and wins all
# four). Right, on an X-ray's edge map, the pixels through which any gradient flows back.


# %%
def routed(x, K, S):
    """How much gradient each pixel of x receives from a max pool whose every dL/dy is 1."""
    t = tm.tensor(x[None, None], requires_grad=True)
    F.max_pool2d(t, K, S).sum().backward()
    return np.asarray(t.grad)[0, 0]


def draw_routing(ax, x, K, S):
    counts = routed(x, K, S)
    shown = ax.imshow(counts, cmap="Reds", vmin=0, vmax=4)
    for (h, w), v in np.ndenumerate(x):
        ax.text(w, h, f"{v:.0f}", ha="center", va="center", fontsize=9, color="w" if counts[h, w] > 2 else "k")
    windows = list(np.ndindex((x.shape[0] - K) // S + 1, (x.shape[1] - K) // S + 1))
    for n, (i, j) in enumerate(windows):
        inset = 0.06 + 0.1 * ((i + j) % 2)  # overlapping windows drawn a little apart
        corner = (j * S - 0.5 + inset, i * S - 0.5 + inset)
        ax.add_patch(Rectangle(corner, K - 2 * inset, K - 2 * inset, fill=False, ec=f"C{n % 10}", lw=1.5))
    ax.set(title=f"K={K}, stride {S}: {len(windows)} windows", xticks=[], yticks=[])
    return shown


# %%
grid = rng.integers(0, 100, size=(7, 7)).astype(np.float64)
grid[2, 2] = 100.0  # a pixel on the border of four overlapping 3x3 windows
fig = Figure(figsize=(14, 4.4), layout="constrained")
axes = fig.subplots(1, 3)
draw_routing(axes[0], grid[:6, :6], 2, 2)
shown = draw_routing(axes[1], grid, 3, 2)
fig.colorbar(shown, ax=axes[:2], fraction=0.03, label="gradient received (windows won)")
receives = routed(edge_maps[k, 0], 2, 2) > 0
axes[2].imshow(edge_maps[k, 0], cmap="gray")
axes[2].imshow(np.ma.masked_where(~receives, receives), cmap="autumn", alpha=0.8, interpolation="nearest")
axes[2].set(title="X-ray edge map: pixels that receive gradient (red)", xticks=[], yticks=[])
fig.suptitle("max pooling routes each output's gradient to the one pixel that won its window")
course.show(fig, "routing")

# %% [markdown]
# The X-ray panel makes the cost of max pooling's backward visible: on every training step
# only a quarter of the pixels under a 2×2 pool get any gradient, the others learn nothing from
# that image.
#
# ## 6. Ties
#
# What if two pixels of a window share the maximum? A uint8 X-ray has only 256 grey levels, a
# flat region or a saturated white area has many equal neighbours, and after a ReLU every
# negative value becomes the same 0. Ties are common:

# %%
planes = val.images[:, 0, :28, :28].reshape(-1, 14, 2, 14, 2).transpose(0, 1, 3, 2, 4).reshape(-1, 4)
tied = (planes == planes.max(axis=1, keepdims=True)).sum(axis=1) > 1
print(f"{tied.mean():.1%} of the 2x2 windows of these {len(val)} X-rays have a tied maximum")

# %% [markdown]
# At a tie the maximum has no derivative: raise either tied pixel and $y$ rises with it, lower
# one and $y$ stays where the other holds it. Any split of the gradient between the tied pixels
# is a valid "subgradient". tinymed, like PyTorch, gives all of it to the **first** maximum in
# row-major order (the strict `>` of our loop). A central difference, which looks both ways,
# sees half a step for each tied pixel: $(y(x_a + h) - y(x_a - h)) / 2h = (h - 0)/2h = 1/2$.

# %%
window = np.array([[[[5.0, 5.0], [1.0, 0.0]]]])
t = tm.tensor(window, requires_grad=True)
F.max_pool2d(t, 2).backward(tm.tensor(np.ones((1, 1, 1, 1))))
h, central = 1e-6, np.zeros((2, 2))
for p, q in np.ndindex(2, 2):
    nudged = [window.copy(), window.copy()]
    nudged[0][0, 0, p, q] += h
    nudged[1][0, 0, p, q] -= h
    central[p, q] = (nudged[0].max() - nudged[1].max()) / (2 * h)
print("autograd:", np.asarray(t.grad)[0, 0].tolist(), "  central differences:", central.round(6).tolist())

# %% [markdown]
# So a gradient check at a tie fails, though nothing is wrong. `tm.gradcheck` says so, naming
# the element where the two disagree most (it multiplies the output by a random number before
# differentiating, which is why its numbers are not 1/2; chapter 4 explains how to read it):

# %%
try:
    tm.gradcheck(lambda v: F.max_pool2d(v, 2), [t])
except GradcheckError as error:
    print(error)
else:
    raise AssertionError("a tie should make the finite differences disagree")

# %% [markdown]
# The convention does not hurt training: over many images and steps, which of two equal
# pixels learns makes no measurable difference. It does matter to a test. Gradient checks of
# max pooling use inputs without ties (random floats), and a GPU kernel must break ties exactly
# as the reference does to be compared with it (chapter 6).
#
# ## 7. The affine layer
#
# At the top of a CNN the feature maps are flattened into one vector $x$ of `in_features`
# numbers, and an **affine** (or "linear", or "fully connected") layer computes every output as
# its own weighted sum plus a bias:
#
# $$y_i = \sum_k W_{ik}\, x_k + b_i, \qquad y = W x + b,\qquad W: (\text{out}, \text{in}),\;
#   b: (\text{out}) .$$
#
# Chapter 1's logistic regression was one with a single output; chapter 2's CNN ended in one
# from 784 features to 1 logit. For a batch, tinymed and PyTorch store the samples as the
# **rows** of $X$ $(N, \text{in})$, so the same layer reads $Y = X W^{\top} + b$, with $b$ added
# to every row. Loop, vectorised, tinymed:


# %%
def linear_loop(x, W, b):
    """y[n, i] = sum_k W[i, k] x[n, k] + b[i]: x (N, in), W (out, in), b (out,) -> y (N, out)."""
    y = np.zeros((x.shape[0], W.shape[0]))
    for n, i in np.ndindex(y.shape):
        y[n, i] = b[i] + sum(W[i, k] * x[n, k] for k in range(x.shape[1]))
    return y


X, W, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
Y = linear_loop(X, W, b)
assert np.allclose(Y, X @ W.T + b)
assert np.allclose(Y, F.linear(tm.tensor(X), tm.tensor(W), tm.tensor(b)).numpy())
print("X", X.shape, "W", W.shape, "b", b.shape, "-> Y", Y.shape, ": loop == X @ W.T + b == F.linear")

# %% [markdown]
# ## 8. Its three gradients, as matrix products
#
# Backward receives $G = \partial L/\partial Y$, shape $(N, \text{out})$, and must return the
# gradients of $X$, $W$ and $b$. One entry of the forward pass,
# $Y_{ni} = \sum_k X_{nk} W_{ik} + b_i$, tells everything: $X_{nk}$ enters every output of row
# $n$ with factor $W_{ik}$; $W_{ik}$ enters output $i$ of every row $n$ with factor $X_{nk}$;
# $b_i$ enters output $i$ of every row with factor 1. The chain rule sums over those uses:
#
# $$\frac{\partial L}{\partial X_{nk}} = \sum_i G_{ni} W_{ik}, \qquad
#   \frac{\partial L}{\partial W_{ik}} = \sum_n G_{ni} X_{nk}, \qquad
#   \frac{\partial L}{\partial b_i} = \sum_n G_{ni} .$$
#
# Each sum is a matrix product:
#
# $$\frac{\partial L}{\partial X} = G\,W \;(N,\text{in}), \qquad
#   \frac{\partial L}{\partial W} = G^{\top} X \;(\text{out},\text{in}), \qquad
#   \frac{\partial L}{\partial b} = \textstyle\sum_{\text{rows}} G \;(\text{out}) .$$
#
# A memory aid: every gradient has the shape of its variable, and there is only one way to
# multiply $G$ $(N, \text{out})$ with $W$ $(\text{out}, \text{in})$ or with $X$
# $(N, \text{in})$ to get it. First the sums as loops, then the products:

# %%
G = rng.standard_normal(Y.shape)  # plays dL/dY
gX, gW, gb = np.zeros_like(X), np.zeros_like(W), np.zeros_like(b)
for n, i, k in np.ndindex(X.shape[0], W.shape[0], X.shape[1]):
    gX[n, k] += G[n, i] * W[i, k]
    gW[i, k] += G[n, i] * X[n, k]
for n, i in np.ndindex(G.shape):
    gb[i] += G[n, i]
assert np.allclose(gX, G @ W) and np.allclose(gW, G.T @ X) and np.allclose(gb, G.sum(axis=0))
print("dL/dX", gX.shape, " dL/dW", gW.shape, " dL/db", gb.shape, ": loops == G @ W, G.T @ X, G.sum(0)")

# %% [markdown]
# And against tinymed: its autograd (which calls the same three products in `F.linear`'s
# backward), and `tm.gradcheck`, which compares them with central differences in float64.

# %%
Xt, Wt, bt = (tm.tensor(a, requires_grad=True) for a in (X, W, b))
F.linear(Xt, Wt, bt).backward(tm.tensor(G))
for name, ours, theirs in [("X", G @ W, Xt.grad), ("W", G.T @ X, Wt.grad), ("b", G.sum(axis=0), bt.grad)]:
    assert np.allclose(ours, np.asarray(theirs)), name
print("matrix products == tinymed's autograd")
print("gradcheck of F.linear:", tm.gradcheck(F.linear, [Xt, Wt, bt]))
print("gradcheck of max pooling (random floats, no ties):", tm.gradcheck(lambda v: F.max_pool2d(v, 2), [x_t]))

# %% [markdown]
# ## 9. What the gradient of $W$ looks like
#
# $\partial L/\partial W = G^\top X$ says: the gradient of the weights of output $i$ is a
# weighted sum of the inputs, each input weighted by how much the loss wants output $i$ to
# change for it. For a layer that reads whole X-rays that is literally an image. Take logistic
# regression on the 784 pixels, weights at zero: then every prediction is $p = 0.5$, the
# binary cross-entropy's $G_n = (p_n - y_n)/N$ is $+\frac{1}{2N}$ for a normal image and
# $-\frac{1}{2N}$ for a pneumonia, and the first gradient step, $-\partial L/\partial W$, adds
# the pneumonia X-rays and subtracts the normal ones: it moves the weights towards what raises
# the pneumonia score on pneumonia images.

# %%
train = course.xray_dataset("train", n=course.pick(None, 400))
images, labels = train.batch(np.arange(len(train)))
images = images.astype(np.float64)
pixels = tm.tensor(images.reshape(len(images), -1))
weight = tm.zeros(1, 28 * 28, dtype=tm.float64, requires_grad=True)
logits = F.linear(pixels, weight, tm.zeros(1, dtype=tm.float64)).flatten()
F.binary_cross_entropy_with_logits(logits, tm.tensor(labels.astype(np.float64))).backward()
step = -np.asarray(weight.grad).reshape(28, 28)
means = [images[labels == c, 0].mean(axis=0) for c in (0, 1)]
balance = (labels == 0).mean(), (labels == 1).mean()
assert np.allclose(step, (balance[1] * means[1] - balance[0] * means[0]) / 2)
print("-dL/dW == (share of pneumonia * their mean X-ray - share of normal * their mean X-ray) / 2")

# %%
fig = Figure(figsize=(16, 3.5), layout="constrained")
axes = fig.subplots(1, 4)
draw(axes[0], means[0], f"mean {train.info.labels[0]} X-ray", vmin=0, vmax=1, label="brightness")
draw(axes[1], means[1], f"mean {train.info.labels[1]} X-ray", vmin=0, vmax=1, label="brightness")
limit = np.abs(step).max()
draw(axes[2], step, "-dL/dW: the first gradient step", "RdBu_r", -limit, limit, "weight change")
difference = means[1] - means[0]
limit = np.abs(difference).max()
draw(axes[3], difference, "the step with balanced classes:\nmean difference", "RdBu_r", -limit, limit, "brightness")
fig.suptitle("the gradient of an affine layer's weights is a weighted sum of its inputs")
course.show(fig, "weight-gradient")

# %% [markdown]
# The step is dominated by whichever class is more common (on PneumoniaMNIST three of four
# training images are pneumonia, on the phantoms about half), and by brightness as a whole: its
# sign over most of the image just says which class is more frequent. With the classes
# balanced, the step would be the difference of the mean images (last panel), where the
# finding shows: pneumonia and the phantoms' opacities make the lungs brighter. Either way, the
# first step of a classifier learns an average difference between the classes, no more. Where
# the step is red, a brighter pixel will push the score towards "pneumonia".
#
# ## 10. Honest limits
#
# - **Pooling forgets where.** A network that pools down to a few cells can say "opacity
#   present" but not "right lower lobe"; the finding's position, which a radiologist reports,
#   must be recovered some other way (chapter 9's heatmaps, chapter 10's segmentation).
# - **Invariance is only approximate.** Pooling forgives shifts smaller than its window, and
#   only on average: a one-pixel shift can still carry an edge across a window border and
#   change that cell completely. Rotation and scale it does not forgive at all.
# - **Sparse gradients.** Max pooling trains only the winning pixels of each window on each
#   step. Average pooling spreads the gradient evenly but dilutes thin, strong features; many
#   modern networks replace pooling by strided convolutions (chapter 2's CNN), which learn how
#   to shrink.
# - **Ties are broken by convention.** Reported gradients at ties are a choice (first in
#   row-major order), not mathematics; a test that compares implementations must make the same
#   choice or avoid ties.
# - **The affine layer has no notion of space.** Every input gets its own weight: 784 inputs to
#   one output is 784 weights, an image of them (section 9), and a shifted X-ray meets
#   different weights. That is why it comes last, after convolutions and pooling have turned
#   "where" into "how much".

# %% [markdown]
# ## Exercises
#
# Exercises 3.1 to 3.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 3            # in the folder holding your 03_pooling_affine.py or .ipynb
# ```
#
# They work on NumPy arrays; each cell imports what it needs.
#
# **Exercise 3.1 (max pooling forward).** Write `max_pool2d_forward(x, kernel_size,
# stride=None, padding=0)` for a batch $x$ $(N, C, H, W)$ and square windows. `stride=None`
# means `stride = kernel_size`; `padding` adds that many rows and columns of $-\infty$ on every
# side (never zeros: why?). Return `(y, indices)`, both $(N, C, H_{out}, W_{out})$ with
# $H_{out} = \lfloor (H + 2P - K)/S \rfloor + 1$: `y` the maxima in `x`'s dtype, `indices`
# (int64) the flat position $h \cdot W + w$ of each maximum in its **unpadded** $(H, W)$ plane,
# the first one in row-major order on a tie, exactly as `F.max_pool2d(..., return_indices=True)`.

# %% tags=["exercise"]
import numpy as np


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """Max pooling of x (N, C, H, W): the maxima and the flat index h*W + w of each, both (N, C, OH, OW)."""
    # BEGIN SOLUTION
    N, C, H, W = x.shape
    K, P = kernel_size, padding
    S = K if stride is None else stride
    OH, OW = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)), constant_values=-np.inf)
    y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    indices = np.zeros((N, C, OH, OW), dtype=np.int64)
    for p in range(K):
        for q in range(K):
            tap = x_pad[:, :, p : p + S * (OH - 1) + 1 : S, q : q + S * (OW - 1) + 1 : S]
            rows, cols = np.arange(OH)[:, None] * S + p - P, np.arange(OW) * S + q - P  # unpadded position
            better = tap > y  # strictly: a tie keeps the earlier tap, and padding (-inf) never wins
            y = np.where(better, tap, y)
            indices = np.where(better, rows * W + cols, indices)
    return y, indices
    # END SOLUTION


# %% [markdown]
# **Exercise 3.2 (max pooling backward).** Write `max_pool2d_backward(grad_output, indices,
# input_shape)`: `grad_output` and `indices` are $(N, C, H_{out}, W_{out})$ (the indices as
# `F.max_pool2d` returns them), `input_shape` is $(N, C, H, W)$. Return $\partial L/\partial x$:
# each output's gradient added to the pixel its window picked. Windows that overlap can pick
# the same pixel; it must receive the sum. (If you vectorise, beware: NumPy's
# `a[idx] += v` adds only once for an index that repeats.)

# %% tags=["exercise"]
import numpy as np


def max_pool2d_backward(grad_output, indices, input_shape):
    """dL/dx (N, C, H, W) of max pooling: each output gradient added to the pixel at its flat index h*W + w."""
    # BEGIN SOLUTION
    N, C, H, W = input_shape
    grad_x = np.zeros((N * C, H * W), dtype=grad_output.dtype)
    planes = np.arange(N * C)[:, None]
    np.add.at(grad_x, (planes, indices.reshape(N * C, -1)), grad_output.reshape(N * C, -1))
    return grad_x.reshape(N, C, H, W)
    # END SOLUTION


# %% [markdown]
# **Exercise 3.3 (the affine layer's backward).** Write `linear_backward(x, weight,
# grad_output)` for $y = x W^\top + b$ where $x$ may have **any number of leading axes**, like
# `F.linear`: $x$ $(\dots, \text{in})$, weight $(\text{out}, \text{in})$, `grad_output`
# $(\dots, \text{out})$ with the same leading axes (for example $(N, T, \text{in})$, a batch
# of sequences, as chapter 5's attention uses, or just $(\text{in},)$, one vector). Return the
# tuple `(grad_input, grad_weight, grad_bias)` with the shapes of $x$, $W$ and $b$. Hint: all
# leading axes are "rows".


# %% tags=["exercise"]
def linear_backward(x, weight, grad_output):
    """(dL/dx, dL/dW, dL/db) of y = x @ weight.T + b, for x (..., in) and dL/dy (..., out)."""
    # BEGIN SOLUTION
    rows_x = x.reshape(-1, x.shape[-1])  # every leading axis is a row: (rows, in)
    rows_g = grad_output.reshape(-1, grad_output.shape[-1])  # (rows, out)
    grad_input = (rows_g @ weight).reshape(x.shape)
    return grad_input, rows_g.T @ rows_x, rows_g.sum(axis=0)
    # END SOLUTION


# %% [markdown]
# **Exercise 3.4 (in words).** (a) In exercise 3.1, why must padding be $-\infty$ and not 0?
# Give a window where 0 would change both the maximum and the argmax. (b) A colleague replaces
# every 2×2 max pool of a CNN by keeping only the top-left pixel of each window (a stride-2
# subsampling). The output has the same size. Say what changes in the forward pass (which
# features survive) and in the backward pass (which pixels get gradient), and which network you
# expect to be more tolerant of one-pixel shifts. (c) Would a radiologist accept a pooling
# network's "pneumonia: yes" without a location? What would you add?
#
# **Exercise 3.5 (experiment).** Section 4 measured how much a shift changes a max-pooled edge
# map. *Predict* how **average** pooling of the same window size compares: more tolerant of a
# one-pixel shift, or less? And for a shift of 4 pixels? Write your prediction down, then set
# `kind = "avg"` below, run, and compare with the max-pooling curve. Then try `size = 7`.
# Explain both results with what each pooling keeps of a thin, strong edge.

# %%
kind, size = "max", 4  # try kind = "avg", then size = 7
pool = {"max": F.max_pool2d, "avg": F.avg_pool2d}[kind]
experiment = relative_change(lambda m: pool(tm.tensor(m), size).numpy(), edge_maps, shifts)
print(f"{kind} pool {size}x{size}:", " ".join(f"{v:.2f}" for v in experiment))
print("max pool 4x4: ", " ".join(f"{v:.2f}" for v in changes["max pool 4x4"]))
