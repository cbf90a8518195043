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
# # Chapter 5 · Self-attention
#
# A convolution looks at a few pixels at a time (chapter 2), and pooling widens that window
# step by step (chapter 3). A radiologist does something else: to decide whether a white patch
# low in one lung is pneumonia, they compare it with the same place in the *other* lung, half
# an image away. How can a network let every part of an image look at every other part, in
# one step, with weights that depend on what the image shows?
#
# **Self-attention** does it. Each piece of the image (a *token*) asks a question, compares
# it with what every other token offers, and takes a weighted average of what they carry:
#
# $$\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V .$$
#
# This chapter builds that line from a loop over one query, to matrices, to tinymed's
# `F.scaled_dot_product_attention`; adds the masks and the several heads that real models use;
# draws where tinymed's CNN attends on an X-ray; and ends inside the fused GPU kernel, whose
# "online" softmax never stores the matrix of weights at all.
#
# **Learning objectives.** After this chapter you can:
#
# - Compute softmax(QK^T / sqrt(d_k)) V step by step and check it against tinymed.
# - Apply padding and causal masks.
# - Split attention into heads and put them back together.
# - Draw attention maps over an X-ray's feature map.
# - Explain the online softmax behind the fused kernel.
#
# **You need** chapter 3 (the affine layer $y = Wx + b$ as a matrix product) and chapter 4
# (gradient checks). **Time**: about two hours with the exercises. Run it as a script (`python
# tutorials/05_attention.py`, figures go to `tutorials/figures/05_attention/`) or as a notebook
# (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it runs in seconds on less
# data.

# %%
import functools
import inspect
import math
import time
from importlib import resources
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import tinymed as tm
import tinymed.functional as F
from tinymed import course, explain, nn, plots
from tinymed.data import Compose, DataLoader, Normalize, chest_xray_augmentation
from tinymed.metrics import roc_auc_score
from tinymed.models import MedCNN

print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")

# %% [markdown]
# ## 1. An X-ray as a sequence of tokens
#
# Attention works on a set of vectors called **tokens**. In a language model a token is a
# piece of a word; for an image the simplest token is a patch of pixels. We cut a 28×28 X-ray
# into a 7×7 grid of 4×4 patches and flatten each patch: 49 tokens of 16 numbers, numbered
# row by row. (The X-ray is a positive case, the one with the most contrast among the first
# sixteen.) First with a loop you can check by hand, then with one `reshape`: the image's
# axes (row, column) are split into (patch row, row inside the patch, patch column, column
# inside the patch), and the two "inside" axes are moved to the end.

# %%
val = course.xray_dataset("val", n=course.pick(256, 64))
candidates = val.images[np.flatnonzero(val.labels == 1)[:16], 0] / 255.0  # the first 16 positives, in [0, 1]
image = candidates[np.argmax(candidates.std(axis=(1, 2)))]  # the one with the most contrast
P_SIZE, GRID = 4, 7  # 4x4 pixels per patch, 7x7 patches

tokens_loop = np.array(
    [
        image[r * P_SIZE : (r + 1) * P_SIZE, c * P_SIZE : (c + 1) * P_SIZE].ravel()
        for r in range(GRID)
        for c in range(GRID)
    ]
)
tokens = image.reshape(GRID, P_SIZE, GRID, P_SIZE).transpose(0, 2, 1, 3).reshape(GRID * GRID, P_SIZE * P_SIZE)
assert np.array_equal(tokens, tokens_loop)
print("image", image.shape, "-> tokens", tokens.shape, "(49 patches of 4x4 = 16 pixels)")

# %% [markdown]
# The tokens drawn on the image, with their numbers. We will follow two of them, chosen by what
# they show rather than by number (which token lands where depends on the X-ray): the darkest
# patch inside the chest, away from the image's border, which lies in a lung, and the
# brightest, which lies on the spine and heart in the middle.

# %%
fig = Figure(figsize=(4.6, 4.6), layout="constrained")
ax = fig.subplots()
ax.imshow(image, cmap="gray", vmin=0, vmax=1)
for t in range(GRID * GRID):
    r, c = divmod(t, GRID)
    ax.add_patch(Rectangle((c * P_SIZE - 0.5, r * P_SIZE - 0.5), P_SIZE, P_SIZE, fill=False, color="yellow", lw=0.4))
    ax.text(c * P_SIZE + 1.5, r * P_SIZE + 1.5, str(t), color="yellow", ha="center", va="center", fontsize=6)
ax.set(title="49 tokens: 4×4 patches, numbered row by row", xlabel="pixel column", ylabel="pixel row")
course.show(fig, "tokens")

interior = [r * GRID + c for r in range(1, GRID - 1) for c in range(1, GRID - 1)]  # off the image's border
lung = min(interior, key=lambda t: tokens[t].mean())  # the darkest patch inside the chest
spine = max(interior, key=lambda t: tokens[t].mean())  # the brightest
for name, t in (("lung", lung), ("spine", spine)):
    print(f"{name}: token {t} (row {t // GRID}, column {t % GRID}), mean brightness {tokens[t].mean():.2f}")

# %% [markdown]
# ## 2. Attention for one query, by hand
#
# Each token plays three parts. As a **query** $q_i$ it asks "who is like me?"; as a **key**
# $k_j$ it answers; as a **value** $v_j$ it carries what it hands over. The query of token $i$
# scores every key by a dot product, the scores become weights by a softmax (positive, summing
# to 1), and the output is the weighted average of the values:
#
# $$s_{ij} = \frac{q_i \cdot k_j}{\sqrt{d_k}}, \qquad
#   a_{ij} = \frac{e^{s_{ij}}}{\sum_{j'} e^{s_{ij'}}}, \qquad
#   o_i = \sum_j a_{ij}\, v_j .$$
#
# $d_k$ is the length of a query and of a key (section 4 explains the $\sqrt{d_k}$). In a
# trained network, queries, keys and values are three learned linear maps of the tokens
# (section 6). For now we use the tokens themselves, standardised so that a pixel darker than
# the image's mean is negative: $q_i = k_i = v_i = x_i$. A dark lung patch then scores high
# against other dark patches, and low against the bright spine. The loop below follows the
# formula for the lung's token as the query, one key at a time.

# %%
X = (tokens - tokens.mean()) / tokens.std()  # (49, 16), standardised pixels
d_k = X.shape[1]
query = lung
scores = np.zeros(GRID * GRID)
for j in range(GRID * GRID):
    scores[j] = sum(X[query, m] * X[j, m] for m in range(d_k)) / math.sqrt(d_k)
total = sum(math.exp(s) for s in scores)
weights = np.array([math.exp(s) / total for s in scores])
output = sum(weights[j] * X[j] for j in range(GRID * GRID))
for j in np.argsort(weights)[::-1][:5]:
    print(f"key {j:2d} (row {j // GRID}, column {j % GRID}): score {scores[j]:6.3f}, weight {weights[j]:.3f}")
print(f"weights sum to {weights.sum():.6f}; output o_{query} has {output.shape[0]} numbers, like a value")
assert math.isclose(weights.sum(), 1.0)
assert tokens[np.argmax(weights)].mean() < tokens[query].mean()  # the favourite key is darker than the query
favourites = np.argsort(weights)[::-1][:5]
assert tokens[favourites].mean() < np.quantile(tokens.mean(axis=1), 0.25)  # and the top five are among the darkest

# %% [markdown]
# Look up those keys on the figure of section 1. The lung's query did not pick its twin in the
# other lung: it picked the *darkest* patches of the image, wherever they are, the image's
# border included (the last assert checks that its five favourites are darker than three
# quarters of the patches). A dot product grows
# with the length of a vector as well as with its direction, and after standardising, the
# darkest patches are the longest vectors pointing the "dark" way. What "alike" should mean is
# exactly what the learned projections of section 6 let a network choose. The mechanism is
# what matters here: one query against every key of the image, near or far, in one step, and
# weights that sum to 1.
#
# ## 3. All queries at once, and tinymed
#
# Stacking the 49 queries as the rows of $Q$ and the keys as the rows of $K$, all the scores
# are one matrix product, $S = QK^\top/\sqrt{d_k}$ of shape (49, 49), row $i$ holding query
# $i$'s scores. The softmax runs along each row, and $O = AV$ averages the values.
#
# One detail before the code. $e^{s}$ overflows for $s > 709$ in float64 and $s > 88$ in
# float32, and then the softmax is `inf / inf = nan`. Subtracting the row's maximum $m$ from
# every score changes nothing, since the factor $e^{-m}$ cancels between numerator and
# denominator, and makes every exponent $\le 0$:
#
# $$\frac{e^{s_j}}{\sum_{j'} e^{s_{j'}}} = \frac{e^{s_j - m}}{\sum_{j'} e^{s_{j'} - m}},
#   \qquad m = \max_{j'} s_{j'} .$$

# %%
big = np.array([80.0, 90.0, 100.0], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum()
shifted = np.exp(big - big.max()) / np.exp(big - big.max()).sum()
print("float32 scores", big, "\n  naive softmax  ", naive, "\n  shifted softmax", shifted)
assert np.isnan(naive).any() and np.allclose(shifted.sum(), 1.0)


# %% [markdown]
# The whole of attention in NumPy, then in tinymed. `F.scaled_dot_product_attention` takes
# query, key and value with any leading (batch, head) dimensions, `(..., L, d_k)`, and must
# agree with both the matrices and the loop.


# %%
def softmax_rows(S):
    """softmax along the last axis, shifted by each row's maximum."""
    A = np.exp(S - S.max(axis=-1, keepdims=True))
    return A / A.sum(axis=-1, keepdims=True)


S = X @ X.T / math.sqrt(d_k)  # (49, 49): every query against every key
A = softmax_rows(S)  # (49, 49): each row sums to 1
O = A @ X  # (49, 16): one weighted average of the values per query
x = tm.tensor(X)  # float64, from NumPy
out = F.scaled_dot_product_attention(x, x, x)
print("scores", S.shape, " weights", A.shape, " output", O.shape, " tinymed", out.shape)
assert np.allclose(A[query], weights) and np.allclose(O[query], output)
assert np.allclose(out.numpy(), O)

# %% [markdown]
# Where it lives: the first file holds `scaled_dot_product_attention` (argument checks, masks,
# the autograd Function with its backward); the second is the NumPy reference that every GPU
# kernel is held to. Open them and find $S$, the shifted softmax, and $AV$.

# %%
package_root = Path(tm.__file__).parent.parent
for fn in (F.scaled_dot_product_attention, tm.backends.numpy_ref.attention_forward):
    lines, first = inspect.getsourcelines(fn)
    where = Path(inspect.getsourcefile(fn)).relative_to(package_root)
    print(f"{where}, line {first}: {fn.__name__} ({len(lines)} lines)")
print(inspect.getdoc(tm.backends.numpy_ref.attention_forward))

# %% [markdown]
# That Function's backward is code like any other, so chapter 4's check applies to it: the
# gradients with respect to the query, the key and the value at once, against central
# differences in float64, with and without the causal mask of section 5. (Its formulas are in
# the first file printed above, beside the forward.)

# %%
q, k, v = (tm.randn(2, 5, 4, dtype=tm.float64, requires_grad=True) for _ in range(3))
for causal in (False, True):
    checked = tm.gradcheck(functools.partial(F.scaled_dot_product_attention, is_causal=causal), [q, k, v])
    print(f"gradcheck of F.scaled_dot_product_attention, is_causal={causal}: {checked}")

# %% [markdown]
# The weights drawn: the whole 49×49 matrix $A$, then two of its rows laid back on the image.
# Each row is a 7×7 grid of weights, one per patch, drawn over the X-ray: the lung's query (a
# dark patch) looks at the dark patches, the spine's (a bright one) at the bright ones.


# %%
def draw_row(ax, fig, row, title, marked=None):
    """One query's 49 weights as a 7x7 heatmap over the X-ray, the query's own patch boxed."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    overlay = ax.imshow(np.kron(row.reshape(GRID, GRID), np.ones((P_SIZE, P_SIZE))), cmap="jet", alpha=0.4)
    if marked is not None:
        r, c = divmod(marked, GRID)
        ax.add_patch(Rectangle((c * P_SIZE - 0.5, r * P_SIZE - 0.5), P_SIZE, P_SIZE, fill=False, color="white", lw=2))
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(overlay, ax=ax, fraction=0.046, label="attention weight")


fig = Figure(figsize=(13, 4), layout="constrained")
axes = fig.subplots(1, 3)
shown = axes[0].imshow(A, cmap="viridis")
axes[0].set(title="all weights A (row = query)", xlabel="key j", ylabel="query i")
fig.colorbar(shown, ax=axes[0], fraction=0.046, label="weight")
draw_row(axes[1], fig, A[lung], f"query {lung} (lung) looks at...", marked=lung)
draw_row(axes[2], fig, A[spine], f"query {spine} (spine) looks at...", marked=spine)
course.show(fig, "weights")

# %% [markdown]
# ## 4. Why divide by $\sqrt{d_k}$
#
# Suppose the entries of $q$ and $k$ are independent, with mean 0 and variance 1 (roughly
# what a network's initialisation gives). Then $q\cdot k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of
# $d_k$ independent terms of variance 1, so
#
# $$\operatorname{Var}(q \cdot k) = d_k, \qquad \operatorname{Var}\!\left(\frac{q \cdot k}{\sqrt{d_k}}\right) = 1 .$$
#
# Unscaled scores spread further apart as $d_k$ grows; a softmax over widely spread scores
# gives nearly all the weight to the largest one. That is bad for learning, because the
# softmax's derivative
#
# $$\frac{\partial a_i}{\partial s_j} = a_i(\delta_{ij} - a_j)$$
#
# vanishes when $a$ is one-hot (each term has a factor $a_i \approx 0$ or $1 - a_j \approx 0$):
# the gradient stops flowing into the queries and keys. We measure all three: the variance of
# the dot products, the largest weight in a row of 49 keys, and the size (Frobenius norm) of
# the softmax's Jacobian matrix $J_{ij} = a_i(\delta_{ij} - a_j)$.

# %%
rng = np.random.default_rng(0)
dims, n_pairs = [4, 16, 64, 256, 1024], course.pick(4000, 1000)
table = []
for d in dims:
    q, k = rng.standard_normal((2, n_pairs, d))
    dots = (q * k).sum(axis=1)
    row = {"d_k": d, "var": dots.var(), "var_scaled": (dots / math.sqrt(d)).var()}
    queries, keys = rng.standard_normal((200, d)), rng.standard_normal((49, d))
    for name, scale in (("raw", 1.0), ("scaled", 1 / math.sqrt(d))):
        a = softmax_rows(scale * queries @ keys.T)  # (200 queries, 49 keys)
        jacobian = a[:, :, None] * (np.eye(49) - a[:, None, :])  # J[r, i, j] = a_i (delta_ij - a_j)
        row[f"max_{name}"] = a.max(axis=1).mean()
        row[f"jac_{name}"] = np.linalg.norm(jacobian, axis=(1, 2)).mean()
    table.append(row)
print("  d_k   var(q.k)  var(q.k/sqrt d)   max weight raw/scaled   |J| raw/scaled")
for r in table:
    print(
        f"{r['d_k']:5d} {r['var']:9.1f} {r['var_scaled']:12.3f} {r['max_raw']:15.3f} / {r['max_scaled']:.3f}"
        f" {r['jac_raw']:13.4f} / {r['jac_scaled']:.4f}"
    )
assert all(abs(r["var"] / r["d_k"] - 1) < 0.15 and abs(r["var_scaled"] - 1) < 0.15 for r in table)
assert table[-1]["max_raw"] > 0.9 > 0.5 > table[-1]["max_scaled"]

# %%
fig = Figure(figsize=(11, 3.8), layout="constrained")
left, right = fig.subplots(1, 2)
left.loglog(dims, [r["var"] for r in table], "o-", label="q·k")
left.loglog(dims, [r["var_scaled"] for r in table], "s-", label="q·k / √d_k")
left.set(title="the spread of the scores", xlabel="d_k", ylabel="variance over random q, k")
for key, label, style in (("raw", "unscaled", "o-"), ("scaled", "scaled by 1/√d_k", "s-")):
    right.semilogx(dims, [r[f"max_{key}"] for r in table], style, label=f"largest weight, {label}")
    right.semilogx(dims, [r[f"jac_{key}"] for r in table], style, alpha=0.5, label=f"‖Jacobian‖, {label}")
right.set(title="a softmax over 49 keys", xlabel="d_k", ylabel="mean over 200 queries")
for ax in (left, right):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
course.show(fig, "scaling")

# %% [markdown]
# Unscaled, at $d_k = 1024$ the largest key takes almost all the weight and the Jacobian has
# nearly vanished; scaled, the weights stay spread and the gradient keeps its size, whatever
# $d_k$.
#
# ## 5. Masks: who may look at whom
#
# Often a query must not see some keys.
#
# - **Padding.** A batch holds sequences of different lengths: one patient has five images in
#   a study, another three. The short sequence is padded with filler tokens to the common
#   length, and no query may give those any weight.
# - **Causality.** A model that generates a sequence one token at a time (a report word by
#   word, an image row by row) must not let token $i$ look at tokens after $i$: at generation
#   time they do not exist yet. Token $i$ sees keys $0, \dots, i$.
#
# A mask $M$ is added to the scores before the softmax, $0$ where a key is kept and $-\infty$
# where it is removed, since $e^{-\infty} = 0$ exactly:
#
# $$a_{ij} = \frac{e^{s_{ij} + M_{ij}}}{\sum_{j'} e^{s_{ij'} + M_{ij'}}}, \qquad M_{ij} \in \{0, -\infty\} .$$
#
# tinymed, like PyTorch, takes that **additive** float mask, or a **boolean** one in which
# `True` means *may attend* (`F.scaled_dot_product_attention`'s convention; `nn.MultiheadAttention`
# uses the opposite sense, see section 6). A padding mask comes from the lengths of the
# sequences: key $j$ of sequence $n$ is real when $j < \text{length}_n$.

# %%
rng = np.random.default_rng(1)
lengths, L, d = np.array([5, 3]), 5, 8
studies = rng.standard_normal((2, L, d))
studies[1, 3:] = 0.0  # study 2 has 3 tokens, padded with zeros to 5
keep_loop = np.zeros((2, L), dtype=bool)
for n in range(2):
    for j in range(L):
        keep_loop[n, j] = j < lengths[n]
keep = np.arange(L)[None, :] < lengths[:, None]  # (N, L): True for a real key
assert np.array_equal(keep, keep_loop)
print(keep)

# %% [markdown]
# With the mask shaped `(N, 1, L)` it broadcasts over the queries of each study. The test of
# a padding mask: study 2's real tokens must come out exactly as if study 2 had been run
# alone, unpadded. The additive spelling must give the same result. And to *see* the weights,
# a trick: with $V$ the identity matrix, $AV = A$, so attention hands back its own weights.

# %%
s = tm.tensor(studies)
masked = F.scaled_dot_product_attention(s, s, s, attn_mask=tm.tensor(keep[:, None, :]))
alone = F.scaled_dot_product_attention(*[tm.tensor(studies[1, :3])] * 3)
additive = tm.tensor(np.where(keep, 0.0, -np.inf)[:, None, :])
assert np.allclose(masked.numpy()[1, :3], alone.numpy())
assert np.allclose(F.scaled_dot_product_attention(s, s, s, attn_mask=additive).numpy(), masked.numpy())
identity = tm.tensor(np.eye(L))
unmasked_weights = F.scaled_dot_product_attention(s, s, identity).numpy()
padded_weights = F.scaled_dot_product_attention(s, s, identity, attn_mask=tm.tensor(keep[:, None, :])).numpy()
causal_weights = F.scaled_dot_product_attention(s, s, identity, is_causal=True).numpy()
print(f"without the mask, study 2's first query gives {unmasked_weights[1, 0, 3:].sum():.0%} of its weight to padding")
print(f"with it: {padded_weights[1, 0, 3:].sum():.0%}")

# %%
fig = Figure(figsize=(11, 3.8), layout="constrained")
panels = [
    (unmasked_weights[1], "study 2, no mask"),
    (padded_weights[1], "study 2, padding mask"),
    (causal_weights[0], "study 1, causal mask"),
]
for ax, (weights_, title) in zip(fig.subplots(1, 3), panels):
    shown = ax.imshow(weights_, cmap="viridis", vmin=0, vmax=1)
    for (i, j), w_ in np.ndenumerate(weights_):
        ax.text(j, i, f"{w_:.2f}", ha="center", va="center", fontsize=7, color="white" if w_ < 0.5 else "black")
    ax.set(title=title, xlabel="key j", ylabel="query i", xticks=range(L), yticks=range(L))
fig.colorbar(shown, ax=fig.axes, fraction=0.02, label="attention weight")
course.show(fig, "masks")

# %% [markdown]
# The causal weights are lower-triangular: query $i$ sees keys $0..i$ only, and query 0 sees
# nothing but itself. (Exercise 5.2 builds that mask.) The padded queries 3 and 4 of study 2
# still produce outputs; they are filler, and whatever reads the output must ignore them too.
#
# One edge case needs care: a query with *no* key left (say, a padded query under a mask that
# also hides padded queries). Its row of scores is all $-\infty$, its maximum is $-\infty$, and
# the shifted softmax computes $-\infty - (-\infty) = $ `nan`. tinymed, like current PyTorch
# (2.13, the version tinymed's tests compare with; older releases returned `nan`), returns
# zeros for such a row instead.

# %%
row = np.full(3, -np.inf)
with np.errstate(invalid="ignore"):
    print("shifted softmax of a row with no key left:", np.exp(row - row.max()) / np.exp(row - row.max()).sum())
none_left = np.ones((L, L), dtype=bool)
none_left[0] = False  # query 0 may look at nothing
out = F.scaled_dot_product_attention(s[0], s[0], s[0], attn_mask=tm.tensor(none_left)).numpy()
print("tinymed, the same row:", out[0])
assert np.all(out[0] == 0) and np.isfinite(out).all()

# %% [markdown]
# ## 6. Several heads
#
# One softmax gives each query one weighted average: one notion of "similar". **Multi-head
# attention** runs $H$ attentions side by side. Head $h$ has its own projections
# $W^Q_h, W^K_h, W^V_h$ from the token size $E$ down to $d = E/H$; the heads' outputs are
# concatenated back to $E$ numbers per token and mixed by one more linear map $W^O$:
#
# $$\text{head}_h = \operatorname{softmax}\!\left(\frac{(XW^Q_h)(XW^K_h)^\top}{\sqrt{d}}\right) XW^V_h,
#   \qquad \operatorname{MHA}(X) = \big[\text{head}_1, \dots, \text{head}_H\big]\, W^O .$$
#
# (Each $XW$ is chapter 3's affine layer, with a bias.) $H$ heads of $d = E/H$ cost about what
# one head of $E$ would. `nn.MultiheadAttention` keeps PyTorch's weights: `in_proj_weight`
# `(3E, E)` stacks the query, key and value projections, in that order, and head $h$ owns rows
# $hd$ to $(h+1)d$ of each; `out_proj` is $W^O$. (Like PyTorch's `Linear`, tinymed stores a
# weight as (out, in) and computes $xW^\top + b$.) We read its weights out and compute the same
# thing with a loop over heads.

# %%
E, H = 16, 4
head_dim = E // H
tm.manual_seed(0)
mha = nn.MultiheadAttention(E, H, batch_first=True, dtype=tm.float64)  # inputs (N, L, E)
W_in, b_in = mha.in_proj_weight.detach().numpy(), mha.in_proj_bias.detach().numpy()
W_out, b_out = mha.out_proj.weight.detach().numpy(), mha.out_proj.bias.detach().numpy()
(Wq, Wk, Wv), (bq, bk, bv) = np.split(W_in, 3), np.split(b_in, 3)

heads = []
for h in range(H):
    rows = slice(h * head_dim, (h + 1) * head_dim)
    q, k, v = X @ Wq[rows].T + bq[rows], X @ Wk[rows].T + bk[rows], X @ Wv[rows].T + bv[rows]
    heads.append(softmax_rows(q @ k.T / math.sqrt(head_dim)) @ v)  # (49, head_dim)
out_loop = np.concatenate(heads, axis=1) @ W_out.T + b_out  # (49, E)
print(
    f"{H} heads, each (49, {head_dim}); concatenated {np.concatenate(heads, axis=1).shape}; projected {out_loop.shape}"
)

# %% [markdown]
# The loop over heads becomes two reshapes: project once to $E$ numbers, split the last axis
# into (head, $d$), move the head axis to the front so that it acts as a batch axis, attend,
# and undo the move.


# %%
def split_heads(Y):
    return Y.reshape(len(Y), H, head_dim).transpose(1, 0, 2)  # (49, E) -> (49, H, d) -> (H, 49, d)


q, k, v = split_heads(X @ Wq.T + bq), split_heads(X @ Wk.T + bk), split_heads(X @ Wv.T + bv)
A_heads = softmax_rows(q @ k.transpose(0, 2, 1) / math.sqrt(head_dim))  # (H, 49, 49)
merged = (A_heads @ v).transpose(1, 0, 2).reshape(len(X), E)  # (H, 49, d) -> (49, H, d) -> (49, E)
out_vec = merged @ W_out.T + b_out
out_mha, A_mha = mha(x[None], x[None], x[None], average_attn_weights=False)  # a batch of one
for name, value in [("q split", q), ("weights", A_heads), ("merged", merged), ("nn.MultiheadAttention", out_mha)]:
    print(f"{name:>22}: {value.shape}")
assert np.allclose(out_vec, out_loop) and np.allclose(out_mha.numpy()[0], out_vec)
assert np.allclose(A_mha.numpy()[0], A_heads)

# %% [markdown]
# `nn.MultiheadAttention` takes its masks in the **opposite** sense to the functional op, as
# PyTorch's module does: in `key_padding_mask`, `True` marks a padded key to hide. The test is
# the one of section 5: pad our 49 tokens with 7 zero tokens, hide them, and the 49 real outputs
# must not change.

# %%
padded = tm.tensor(np.concatenate([X, np.zeros((7, E))])[None])  # (1, 56, E)
hidden = tm.tensor(np.arange(56)[None] >= 49)  # True = padding, hide it
out_padded, _ = mha(padded, padded, padded, key_padding_mask=hidden)
assert np.allclose(out_padded.numpy()[0, :49], out_mha.numpy()[0])
print("key_padding_mask (True = hide): the 49 real tokens' outputs are unchanged by 7 padded ones")
print("where the module lives:", Path(inspect.getsourcefile(nn.MultiheadAttention)).relative_to(package_root))

# %% [markdown]
# ## 7. Attention over a CNN's feature map
#
# Raw pixels make crude tokens: two patches of lung look alike only if their pixels do.
# tinymed's `MedCNN` attends over something better. Its convolution blocks turn a 28×28 X-ray
# into a 7×7 grid of feature vectors (chapter 2's feature maps, 32 or 128 of them), and its
# `SpatialSelfAttention` block treats the 49 positions as 49 tokens, each a vector of
# channels. Its output is added back to its input, scaled by a learned number $\gamma$ that
# starts at 0: $x + \gamma\,\operatorname{MHA}(x)$. The network starts as a plain CNN and takes
# as much attention as training asks for.
#
# We train a small MedCNN (8, 16 and 32 channels, 2 heads) for a short while. Chapter 8
# takes the training loop apart; here it is a tool, and the numbers depend on the data and on
# fast mode. Three of its pieces in one line each: `tinymed.data.DataLoader` serves an image
# data set in shuffled batches of NumPy arrays, augmented and normalised by its `transform`
# (chapter 8 uses PyTorch's general `tinymed.utils.data.DataLoader` instead, and augments in
# its loop); `AdamW` is Adam (chapter 8) that also shrinks every weight a little at each step
# (weight decay); and `train()`/`eval()` switch layers that behave differently while training,
# such as dropout, which MedCNN applies before its head: it zeroes a random fifth of the
# features at each training step, so that no single feature can carry the decision.

# %%
train = course.xray_dataset("train", n=course.pick(1500, 128))
pixels = train.images / 255.0
normalise = Normalize(pixels.mean(), pixels.std())
loader = DataLoader(
    train, batch_size=64, shuffle=True, seed=0, transform=Compose([chest_xray_augmentation(), normalise])
)
x_val = tm.tensor(normalise((val.images / 255.0).astype(np.float32)))
tm.manual_seed(0)
model = MedCNN(channels=(8, 16, 32), num_heads=2)
optimizer = tm.optim.AdamW(model.parameters(), lr=3e-3)
start = time.perf_counter()
for epoch in range(course.pick(2, 1)):
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(tm.tensor(images)), tm.tensor(labels))
        loss.backward()
        optimizer.step()
    model.eval()
    with tm.no_grad():
        p_val = F.softmax(model(x_val), dim=1).numpy()[:, 1]
    auc = roc_auc_score(val.labels, p_val)
    print(f"epoch {epoch + 1}: loss {loss.item():.3f}, val AUC {auc:.3f}, gamma {model.attention.gamma.item():+.3f}")
print(f"trained in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# `tinymed.explain.attention_map` draws how much attention each position *receives*: the
# column means of the 49×49 weight matrix (averaged over the heads and over the queries),
# upsampled to 28×28 and divided by its maximum. We rebuild it by hand: catch the block's
# input (its tokens) with `explain.capture`, ask the block for its weights, average, resize.
# The figure draws our map *before* the division by the maximum, on one colour scale for all
# four images: a block that attended evenly would give every position $1/49 \approx 0.02$,
# and "divided by its maximum" would paint that flat map bright red everywhere.

# %%
picks = np.concatenate([np.flatnonzero(val.labels == c)[:2] for c in (0, 1)])
x_pick = tm.tensor(x_val.numpy()[picks])
maps = explain.attention_map(model, x_pick)  # (4, 28, 28) in [0, 1]
block = model.attention
with explain.capture(block) as record, tm.no_grad():
    model(x_pick)
features = record.inputs[0]  # (4, 32, 7, 7): the 49 tokens of 32 channels each
A_cnn = block.attention_weights(features).numpy()  # (4, 49, 49), averaged over the heads
received = A_cnn.mean(axis=1).reshape(-1, GRID, GRID)  # mean over the queries: what each key receives
ours = explain.resize_bilinear(received, (28, 28))
assert np.allclose(ours / ours.max(axis=(1, 2), keepdims=True), maps, atol=1e-6)
print("features", features.shape, "-> weights", A_cnn.shape, "-> maps", maps.shape)

# %%
fig = Figure(figsize=(12, 6.2), layout="constrained")
axes = fig.subplots(2, 4)
for c, (n, heat) in enumerate(zip(picks, ours)):
    name = val.info.labels[val.labels[n]]
    axes[0, c].imshow(val.images[n, 0], cmap="gray")
    axes[0, c].set_title(f"{name}, p({val.info.labels[1]}) {p_val[n]:.2f}", fontsize=9)
    axes[1, c].imshow(val.images[n, 0], cmap="gray")
    overlay = axes[1, c].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=ours.max())
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
fig.colorbar(overlay, ax=axes[1].tolist(), fraction=0.02, label="mean weight received (even = 1/49)")
fig.suptitle("MedCNN's attention block: where its 49 queries look, on average")
course.show(fig, "medcnn-attention")

# %% [markdown]
# Each head has its own pattern. For the last X-ray above, the weights that one position in
# the lung on the image's left (feature-map row 3, column 1) gives every position, head by head,
# beside the average over all queries:

# %%
tokens_cnn = block.tokens(features)  # (4, 49, 32)
with tm.no_grad():
    _, per_head = block.attention(tokens_cnn, tokens_cnn, tokens_cnn, average_attn_weights=False)
per_head = per_head.numpy()[-1, :, 3 * GRID + 1]  # (heads, 49): what position (3, 1) gives each key
heatmaps = {
    f"head {h + 1}, from (3, 1)": np.kron(w_.reshape(GRID, GRID) / w_.max(), np.ones((4, 4)))
    for h, w_ in enumerate(per_head)
}
heatmaps["received, mean of queries"] = maps[-1]
fig = plots.plot_explanation(
    val.images[picks[-1], 0] / 255.0,
    heatmaps,
    title="per head (each scaled to max 1)",
    label="attention weight / largest",
)
course.show(fig, "medcnn-heads")

# %% [markdown]
# What you see depends on the data and on how long the network trained. In our full runs, on
# PneumoniaMNIST (validation AUC about 0.96 after two epochs) the block spread its attention
# almost evenly over the normal X-rays and gathered it onto a few positions of the pneumonia
# cases; on the phantoms, whose faint opacities the network had barely begun to find (AUC
# about 0.6), it looked mostly at the edge of the image. The two heads often agree.
#
# Read these maps with care. They say where the block *looked*, not what changed the diagnosis:
# the block's output is scaled by $\gamma$ (printed above, still small after a short training),
# then added to features that already carry the convolutions' evidence. Chapter 9 asks
# properly which pixels the diagnosis depends on.
#
# ## 8. The online softmax behind the fused kernel
#
# The weight matrix has $L^2$ entries per head and per image. For our 49 tokens that is
# nothing; for a 512×512 CT slice cut into 8×8 patches, $L = 4096$ and the scores of one head
# of one image take 64 MB in float32, written to GPU memory, read back, and kept for the
# backward pass. The **fused kernel** never stores them. It streams the keys and values past
# each query in tiles, keeping three running quantities per query: the largest score so far
# $m$, the sum $l = \sum_j e^{s_j - m}$ over the keys seen so far, and the matching weighted
# sum of values. When a new tile of scores $s_j$ arrives:
#
# $$m' = \max\!\big(m, \max_{j \in \text{tile}} s_j\big), \qquad
#   l' = l\, e^{m - m'} + \sum_{j \in \text{tile}} e^{s_j - m'} .$$
#
# The factor $e^{m - m'}$ is the whole trick: the old terms were shifted by $m$, and
# $e^{s_j - m}\,e^{m - m'} = e^{s_j - m'}$ moves them to the new shift. After the last tile,
# $l\,e^{m} = \sum_j e^{s_j}$: the softmax's denominator, found without ever holding a full
# row, and $\log\sum_j e^{s_j} = m + \log l$ (the **log-sum-exp**, *lse*). Here is the running
# pair $(m, l)$ for the 49 scores of the lung's query, in tiles of 8 keys.

# %%
row, tile = S[query], 8
m, l = -np.inf, 0.0  # nothing seen yet: e^(m - m') = 0 wipes the empty sum on the first tile
steps = []
for start in range(0, len(row), tile):
    s_tile = row[start : start + tile]
    m_new = max(m, s_tile.max())
    rescale = math.exp(m - m_new)
    l = l * rescale + np.exp(s_tile - m_new).sum()
    m = m_new
    steps.append((start, m, l))
    print(
        f"keys {start:2d}-{start + len(s_tile) - 1:2d}: tile max {s_tile.max():6.3f}   m {m:6.3f}   rescale {rescale:.3f}   l {l:7.3f}"
    )
lse = m + math.log(l)
print(f"log-sum-exp online {lse:.6f}, from the whole row {row.max() + np.log(np.exp(row - row.max()).sum()):.6f}")
assert np.allclose(np.exp(row - m) / l, A[query])

# %%
fig = Figure(figsize=(11, 3.8), layout="constrained")
left, right = fig.subplots(1, 2)
left.plot(range(len(row)), row, "o", ms=4, label="score s_j")
left.step(
    [st for st, *_ in steps] + [len(row)],
    [mm for _, mm, _ in steps] + [steps[-1][1]],
    where="post",
    color="C3",
    label="running max m",
)
for st, *_ in steps[1:]:
    left.axvline(st - 0.5, color="grey", ls="--", lw=0.8)
left.set(title=f"query {query}'s scores, streamed in tiles of 8", xlabel="key j", ylabel="score")
right.bar(range(1, len(steps) + 1), [ll for *_, ll in steps], color="C2")
right.axhline(np.exp(row - row.max()).sum(), color="k", ls="--", label="Σ e^(s - max s), all keys at once")
right.set(title="running sum l after each tile", xlabel="tiles seen", ylabel="l")
for ax in (left, right):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
course.show(fig, "online-softmax")

# %% [markdown]
# The weighted sum of values is rescaled by the same factor $e^{m - m'}$, and divided by $l$ at
# the end: exercise 5.3 writes it. Why keep the *lse*? Backward needs the weights again, and
# $a_{ij} = e^{s_{ij} - \text{lse}_i}$ rebuilds them from the scores without another pass over
# the row. So the reference backend returns it beside the output, and tinymed's autograd
# Function saves it for backward. Ours must match the reference's:

# %%
_, lse_ref = tm.backends.numpy_ref.attention_forward(X[None], X[None], X[None], None, 1 / math.sqrt(d_k), False)
print(f"reference lse for query {query}: {lse_ref[0, query]:.6f}")
assert math.isclose(lse_ref[0, query], lse)

# %% [markdown]
# The fused kernel in CUDA C (`kernels/cuda/attention.cu`, which chapter 7's way of reading
# kernels opens up; `kernels/numba/attention.py` is its Numba twin) keeps exactly these
# running quantities in registers. Its opening comment:

# %%
kernel_file = resources.files("tinymed.kernels") / "cuda" / "attention.cu"
source = kernel_file.read_text().splitlines()
begin = next(i for i, text in enumerate(source) if "online softmax, never storing" in text)
end = next(i for i in range(begin, len(source)) if not source[i].startswith("//"))
print(f"tinymed.kernels: cuda/attention.cu, lines {begin + 1}-{end}")
print("\n".join(source[begin:end]))

# %% [markdown]
# What it saves: memory, for the scores, from $L^2$ numbers per head to a tile's worth; and
# the trips to memory to write and read them back, which on a GPU cost more than the
# arithmetic. What it does not save: arithmetic. Every query is still scored against every
# key, $L^2 d_k$ multiplications.

# %%
print("  tokens L    scores L*L (float32)    running state per query (m, l, 64 values)")
for L_, where in [(49, "28x28, 4x4 patches"), (196, "224x224, 16x16 patches"), (4096, "512x512, 8x8 patches")]:
    print(f"{L_:9d}    {L_ * L_ * 4 / 2**20:12.2f} MB            {L_ * 66 * 4 / 2**20:8.3f} MB    ({where})")

# %% [markdown]
# ## 9. Honest limits
#
# - **Quadratic cost.** $L^2$ scores per head: doubling an image's side quadruples $L$ and
#   multiplies the work by 16. The fused kernel removes the memory, not the arithmetic.
# - **No sense of position.** Attention treats its tokens as a *set*: shuffle them and the
#   outputs come out shuffled the same way (checked below). Nothing in the formula knows that
#   token 22 sits left of token 24. MedCNN's tokens know their place only through what the
#   convolutions saw (the image's edge, say); transformers add a *positional encoding* to
#   each token for that reason.
# - **Attention weights are not explanations.** A map says where a block looked, not whether
#   looking there mattered. In MedCNN the block's output is multiplied by $\gamma$; and even a
#   large weight may carry a value that changes little. Chapter 9 tests explanations
#   properly, with sanity checks.
# - **Tiny tokens.** 4×4 patches of a 28×28 thumbnail, and 7×7 feature maps, are far from the
#   resolution a radiologist reads; at full resolution the quadratic cost is what bites.

# %%
perm = np.random.default_rng(2).permutation(len(X))
shuffled = F.scaled_dot_product_attention(*[tm.tensor(X[perm])] * 3).numpy()
assert np.allclose(shuffled, O[perm])
print("attention(shuffled tokens) == shuffled attention(tokens): the order of the tokens means nothing to it")

# %% [markdown]
# ## Exercises
#
# Exercises 5.1 to 5.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 5            # in the folder holding your 05_attention.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` and prints PASS or FAIL with a hint for each.
# Exercises 5.4 and 5.5 are for you and your instructor.
#
# **Exercise 5.1 (attention with a mask).** Write `attention(q, k, v, mask=None)` in NumPy:
# `q` `(..., Lq, d_k)`, `k` `(..., Lk, d_k)`, `v` `(..., Lk, d_v)`, any leading (batch, head)
# dimensions, and `mask` `None` or boolean, broadcastable to `(..., Lq, Lk)`, `True` where a
# query may attend. Return `softmax(q k^T / sqrt(d_k) + mask) v` of shape `(..., Lq, d_v)` and
# `q`'s dtype. It must not overflow for scores in the thousands, and a query with no key left
# gets zeros, not `nan` (section 5). The grader compares it with tinymed's op, and reads your
# weights back with the identity-matrix trick of section 5.

# %% tags=["exercise"]
import numpy as np


def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k) + mask) v over the last two axes; mask True = may attend."""
    # BEGIN SOLUTION
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isneginf(top), 0.0, top)  # a row with no key left: shift by 0, not -inf
    weights = np.exp(scores - top)
    total = weights.sum(axis=-1, keepdims=True)
    return (weights / np.where(total == 0, 1.0, total) @ v).astype(q.dtype)
    # END SOLUTION


# %% [markdown]
# **Exercise 5.2 (a causal mask).** Write `causal_mask(lq, lk)`: a boolean array
# `(lq, lk)`, `True` where query `i` may attend to key `j`, that is for $j \le i$. When
# `lq != lk` it is aligned at the top left, as `is_causal=True` in tinymed and PyTorch: row
# `i` keeps keys `0..i` whatever the lengths. The grader holds it to `is_causal=True`.

# %% tags=["exercise"]
import numpy as np


def causal_mask(lq, lk):
    """Boolean (lq, lk): True where key j <= query i."""
    # BEGIN SOLUTION
    return np.tril(np.ones((lq, lk), dtype=bool))
    # END SOLUTION


# %% [markdown]
# **Exercise 5.3 (the online softmax).** Write `online_attention(q, kv_tiles, scale=None)`,
# attention computed the way the fused kernel does. `q` is `(Lq, d_k)`; `kv_tiles` yields
# pairs `(k_tile, v_tile)` of shapes `(t, d_k)` and `(t, d_v)`, tile after tile (the sizes
# `t` may differ); `scale` defaults to $1/\sqrt{d_k}$. Keep, for every query at once, the
# running max `m` `(Lq,)`, the running sum `l` `(Lq,)` and the running weighted sum of values
# `(Lq, d_v)`; fold each tile in as section 8 does (the values are rescaled by the same
# factor as `l`). Return `(out, lse)`: `out` `(Lq, d_v)` and `lse` `(Lq,)`, the log-sum-exp
# of each query's scaled scores. Like the kernel's shared memory, the grader reuses each
# tile's buffer for the next tile: fold a tile in before asking for the next one.

# %% tags=["exercise"]
import numpy as np


def online_attention(q, kv_tiles, scale=None):
    """Attention over keys and values streamed in tiles; returns (out (Lq, d_v), lse (Lq,))."""
    # BEGIN SOLUTION
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    m = np.full(len(q), -np.inf)
    l = np.zeros(len(q))
    acc = 0.0
    for k_tile, v_tile in kv_tiles:
        s = scale * (q @ k_tile.T)  # (Lq, t): this tile's scores only
        m_new = np.maximum(m, s.max(axis=1))
        rescale = np.exp(m - m_new)  # 0 on the first tile, where m = -inf
        p = np.exp(s - m_new[:, None])
        l = l * rescale + p.sum(axis=1)
        acc = acc * rescale[:, None] + p @ v_tile
        m = m_new
    return acc / l[:, None], m + np.log(l)
    # END SOLUTION


# %% [markdown]
# **Exercise 5.4 (in words).** Section 9 showed that attention ignores the order of its
# tokens. (a) Suppose you shuffled the 49 positions of MedCNN's 7×7 feature map just before
# its attention block, and shuffled them back just after. Would the diagnosis change? Why?
# (b) What if you did not shuffle them back? (MedCNN averages the 49 positions next.)
# (c) Then where does MedCNN's knowledge that a patch lies in the *left* lung come from, and
# what would you add to give the attention block itself that knowledge?
#
# **Exercise 5.5 (experiment).** The cell below measures, for random queries and keys of
# growing $d_k$, the largest attention weight and the size of the gradient of the output with
# respect to the queries, through tinymed's autograd. It scales the scores by
# $d_k^{-\text{power}}$; the chapter's choice is `power = 0.5`. *Predict* both curves for
# `power = 0` (no scaling) and `power = 1` (dividing by $d_k$) before you run them: which one
# saturates the softmax, which one makes every weight nearly equal, and what happens to the
# gradient in each case? Then change `power`, run, and explain what you see with section 4's
# variance argument.

# %%
power = 0.5
harness_rng = np.random.default_rng(5)
rows_ = []
for d in [4, 16, 64, 256, 1024]:
    q_ = tm.tensor(harness_rng.standard_normal((49, d)), requires_grad=True)
    k_, v_ = (tm.tensor(harness_rng.standard_normal((49, d))) for _ in range(2))
    out_ = F.scaled_dot_product_attention(q_, k_, v_, scale=d**-power)
    (out_ * tm.tensor(harness_rng.standard_normal(out_.shape))).sum().backward()
    weights_ = F.softmax(q_.detach() @ k_.T * d**-power, dim=-1).numpy()
    rows_.append(
        {"epoch": d, "max": weights_.max(axis=1).mean(), "grad": np.linalg.norm(np.asarray(q_.grad)) / np.sqrt(d)}
    )
fig = plots.plot_curves(
    rows_,
    [
        plots.Panel("largest weight per query", "mean over 49 queries", {"largest weight": "max"}, ylim=(0, 1.05)),
        plots.Panel("gradient reaching the queries", "‖d loss / dQ‖ / √d_k", {"gradient": "grad"}),
    ],
    title=f"scores scaled by d_k^-{power}",
)
for ax in fig.axes:
    ax.set(xscale="log", xlabel="d_k")
fig.axes[1].set_ylim(bottom=0)  # from 0, so that small changes look small
course.show(fig, "experiment-scale")
