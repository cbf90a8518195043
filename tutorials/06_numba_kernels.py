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
# # Chapter 6 · GPU kernels in Numba CUDA
#
# Chapters 2 and 3 reduced a CNN to a few formulas: a convolution that becomes one matrix
# product, a maximum over each pooling window, an affine layer $Y = XW^\top + b$. tinymed's
# NumPy reference computes them on the CPU, a handful of numbers at a time. A GPU such as
# NVIDIA's H100 has 132 multiprocessors of 128 arithmetic lanes each: almost 17,000 lanes.
# It does not run your Python loop on them. It runs one small function, a **kernel**, as
# thousands of **threads** at once, and each thread must work out from its own number which
# output is its own. How do you write such a function? Why does a fast one copy its inputs into
# a small on-chip memory first? And how can you know it is right on a laptop with no GPU?
#
# This chapter writes kernels in Python with Numba's CUDA compiler: ReLU one thread per
# element, a 2-D grid over an X-ray, a matrix product tiled through shared memory. It runs them
# in Numba's **CUDA simulator** when there is no GPU, reads tinymed's own kernels, and holds
# them to the NumPy reference with property-based tests.
#
# **Learning objectives.** After this chapter you can:
#
# - Map an array computation onto threads and blocks.
# - Use shared memory to tile a matrix product.
# - Run a kernel in the CUDA simulator on a laptop.
# - Hold a kernel to the NumPy reference with hypothesis.
#
# **You need** chapter 2 (convolution as a matrix product) and chapter 3 (max pooling and its
# argmax, the affine layer). No GPU: without one every kernel runs in the simulator, on tiny
# arrays. **Time**: about two and a half hours with the exercises. Run it as a script (`python
# tutorials/06_numba_kernels.py`, figures go to `tutorials/figures/06_numba_kernels/`) or as a
# notebook (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it runs in seconds.

# %% [markdown]
# Numba decides once, when it is first imported, whether `@cuda.jit` kernels go to a GPU or to
# its simulator, which it does when the environment variable `NUMBA_ENABLE_CUDASIM` is `1`. So
# the first cell looks for an NVIDIA GPU (its device file or its `nvidia-smi` tool) and sets the
# variable **before** anything imports Numba when there is none. Nothing else in the chapter
# changes: the same kernel code runs on both.

# %%
import copy
import inspect
import os
import shutil
import time

ON_GPU = os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None
if not ON_GPU:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # must precede the first `import numba`

import numba
import numpy as np
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from numba import cuda

import tinymed as tm
import tinymed.functional as F
import tinymed.nn as nn
from tinymed import course

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
rng = np.random.default_rng(6)
where = "Numba's CUDA simulator (no GPU found)" if SIMULATOR else "the GPU"
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}; kernels run on {where}")

# %% [markdown]
# ## 1. One thread per element
#
# Start with the simplest layer of a CNN, ReLU, $y_i = \max(x_i, 0)$, as the loop a CPU runs:


# %%
def relu_loop(x):
    y = np.empty_like(x)
    for i in range(x.size):
        y[i] = x[i] if x[i] > 0 else 0.0
    return y


x = rng.standard_normal(20).astype(np.float32)
print(np.round(relu_loop(x), 2))

# %% [markdown]
# Every iteration is independent of the others, so they can all run at once. A kernel is the
# **body** of that loop; the loop itself disappears into the launch. The GPU starts a **grid**
# of **blocks**, each of `blockDim.x` threads, and tells every thread two numbers: its block's
# place in the grid, `blockIdx.x`, and its own place in the block, `threadIdx.x`. From them the
# thread computes the element it owns,
#
# $$i = \texttt{blockIdx.x}\cdot\texttt{blockDim.x} + \texttt{threadIdx.x}\qquad(\texttt{cuda.grid(1)}) .$$
#
# Blocks have a fixed size (a multiple of 32, the **warp** of threads that the hardware steps
# together, on a real GPU), so the grid is rounded up to whole blocks,
# $\lceil n / \text{threads} \rceil$ of them, and the last one may have threads with nothing to
# do: the `if` keeps them from writing past the end of the array. The launch
# `kernel[blocks, threads](arguments)` takes the place of the `for`.


# %%
@cuda.jit
def relu_kernel(x, y):
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x  # what cuda.grid(1) returns
    if i < x.size:  # the last block has spare threads
        y[i] = x[i] if x[i] > 0 else 0


threads = 8
blocks = (x.size + threads - 1) // threads  # ceil(20 / 8) = 3 blocks, 24 threads
y = np.zeros_like(x)
relu_kernel[blocks, threads](x, y)
print(f"{blocks} blocks x {threads} threads = {blocks * threads} threads for {x.size} elements")
assert np.array_equal(y, relu_loop(x))  # check yourself: kernel == loop
assert np.array_equal(y, F.relu(tm.tensor(x)).numpy())  # == tinymed's F.relu
print("kernel == loop == F.relu")

# %% [markdown]
# Which thread computed which element? A kernel can tell us: let every thread write its block
# and thread numbers into the element it owns. The drawing is the formula above: blocks side by
# side, threads numbered from 0 inside each, and the spare threads of the last block (hatched),
# which run, test `i < n`, and stop.


# %%
@cuda.jit
def who_computes(block_of, thread_of):
    i = cuda.grid(1)
    if i < block_of.size:
        block_of[i] = cuda.blockIdx.x
        thread_of[i] = cuda.threadIdx.x


block_of, thread_of = np.full(x.size, -1), np.full(x.size, -1)
who_computes[blocks, threads](block_of, thread_of)
assert np.array_equal(block_of * threads + thread_of, np.arange(x.size))  # i = blockIdx * blockDim + threadIdx

fig = Figure(figsize=(11, 1.9), layout="constrained")
ax = fig.add_subplot()
colours = ["#9ecae1", "#fdae6b", "#a1d99b"]
for i in range(blocks * threads):
    spare = i >= x.size
    ax.add_patch(
        Rectangle(
            (i, 0),
            1,
            1,
            facecolor="white" if spare else colours[i // threads],
            edgecolor="black",
            hatch="//" if spare else None,
        )
    )
    ax.text(i + 0.5, 0.5, f"t{i % threads}", ha="center", va="center", fontsize=8)
for b in range(blocks):
    ax.text(b * threads + threads / 2, 1.25, f"block {b}", ha="center", fontsize=9)
ax.set(
    xlim=(0, blocks * threads),
    ylim=(0, 1.6),
    yticks=[],
    xlabel="element i = block * 8 + thread",
    title="ReLU on 20 elements: 3 blocks of 8 threads, 4 spare threads (hatched)",
)
ax.set_xticks(np.arange(blocks * threads) + 0.5, np.arange(blocks * threads), fontsize=7)
course.show(fig, "threads-1d")

# %% [markdown]
# ## 2. A 2-D grid over an X-ray: which thread computes which pixel
#
# Images are 2-D, and so can grids and blocks be: a block of $8\times 8$ threads owns an
# $8\times 8$ square of pixels, with
#
# $$\text{col} = \texttt{blockIdx.x}\cdot\texttt{blockDim.x} + \texttt{threadIdx.x},\qquad
#   \text{row} = \texttt{blockIdx.y}\cdot\texttt{blockDim.y} + \texttt{threadIdx.y} .$$
#
# By convention $x$ runs along a row (the last, contiguous axis), so the 32 threads of a warp
# read 32 neighbouring addresses, which the memory serves as one transaction.
#
# The per-pixel job is a radiologist's **window**: a viewer shows only the grey levels between
# $\text{level} - \text{width}/2$ and $\text{level} + \text{width}/2$, stretched to full
# contrast, $\;y = \operatorname{clip}\big((x - \text{level} + \text{width}/2)/\text{width},\,0,\,1\big)$.
# The X-ray comes from PneumoniaMNIST when it is on this machine, from tinymed's phantoms
# otherwise (the next line says which).

# %%
val = course.xray_dataset("val", n=4)
xray = val.images[0, 0].astype(np.float32) / 255.0  # (28, 28), grey levels in [0, 1]


@cuda.jit
def window_kernel(image, out, level, width, owner):
    col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if row < image.shape[0] and col < image.shape[1]:
        v = (image[row, col] - level + width / 2) / width
        out[row, col] = 0 if v < 0 else (1 if v > 1 else v)
        owner[row, col] = cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x  # for the drawing


block = (8, 8)  # (x, y): threads along a row, along a column
grid = ((xray.shape[1] + 7) // 8, (xray.shape[0] + 7) // 8)
windowed, owner = np.zeros_like(xray), np.full(xray.shape, -1)
window_kernel[grid, block](xray, windowed, 0.5, 0.4, owner)
assert np.allclose(windowed, np.clip((xray - 0.5 + 0.2) / 0.4, 0, 1))  # check yourself: == NumPy
print(f"image {xray.shape}, grid {grid} blocks of {block} threads = {grid[0] * grid[1] * 64} threads")

# %%
fig = Figure(figsize=(13, 4.2), layout="constrained")
axes = fig.subplots(1, 3)
shown = axes[0].imshow(xray, cmap="gray", vmin=0, vmax=1)
for edge in range(8, 28, 8):
    axes[0].axhline(edge - 0.5, color="yellow")
    axes[0].axvline(edge - 0.5, color="yellow")
fig.colorbar(shown, ax=axes[0], shrink=0.8, label="grey level")
shown = axes[1].imshow(owner, cmap=ListedColormap(colormaps["tab20"].colors[:16]), vmin=-0.5, vmax=15.5)
fig.colorbar(shown, ax=axes[1], shrink=0.8, ticks=range(0, 16, 3), label="block: blockIdx.y * 4 + blockIdx.x")
row, col = 13, 20
axes[1].plot(col, row, "k*", markersize=12)
axes[1].annotate(
    f"pixel ({row}, {col}):\nblock (x={col // 8}, y={row // 8})\nthread (x={col % 8}, y={row % 8})",
    (col, row),
    (1, 25),
    color="black",
    fontsize=9,
    backgroundcolor="white",
)
shown = axes[2].imshow(windowed, cmap="gray", vmin=0, vmax=1)
fig.colorbar(shown, ax=axes[2], shrink=0.8, label="windowed grey level")
titles = ["the X-ray, cut into 8x8 blocks", "which block computes each pixel", "windowed: level 0.5, width 0.4"]
for a, title in zip(axes, titles):
    a.set(title=title, xlabel="column (x)", ylabel="row (y)")
course.show(fig, "threads-2d")

# %% [markdown]
# The grid of $4\times4$ blocks covers $32\times32$ positions for a $28\times28$ image: the
# right and bottom blocks each have threads outside it, stopped by the `if` as before. Which
# block runs first, or at the same time as which, is not yours to know: blocks must not depend
# on one another. Threads **within** a block can cooperate, which is the next idea.
#
# ## 3. Global memory, shared memory, and why a matrix product waits on memory
#
# A GPU has three kinds of memory a kernel sees:
#
# | memory | where | size (H100) | speed | who sees it |
# | --- | --- | --- | --- | --- |
# | global (`x[i]`) | HBM chips beside the GPU | 80 GB | about 3.35 TB/s, hundreds of cycles away | every thread |
# | shared (`cuda.shared.array`) | on each multiprocessor | up to 228 KB per multiprocessor | tens of cycles, far closer than global memory | the threads of one block |
# | registers (local scalars) | in each multiprocessor | 64K 32-bit registers per multiprocessor | one cycle | one thread |
#
# The arithmetic is much faster than the global memory: the H100 does about 60 TFLOP/s in
# float32 (without its tensor cores) but reads 3.35 TB/s, so a kernel must do about
# $60/3.35 \approx 18$ floating-point operations per byte it reads, or its lanes sit waiting.
# The matrix product of chapter 3's affine layer, $c_{mn} = \sum_k a_{mk}\,b_{kn}$, written the
# obvious way, one thread per output, reads a row of $a$ and a column of $b$ for each output:
# two 4-byte loads for two operations (a multiply and an add), $0.25$ FLOP per byte.


# %%
@cuda.jit
def matmul_naive(a, b, c):
    col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    row = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if row < c.shape[0] and col < c.shape[1]:
        total = 0.0
        for k in range(a.shape[1]):
            total += a[row, k] * b[k, col]  # 2 global loads per multiply-add
        c[row, col] = total


def launch_matmul(kernel, a, b, side=4):
    """Run a matmul kernel on a grid of side x side blocks covering c (M, N); return c."""
    c = np.zeros((a.shape[0], b.shape[1]), np.float32)
    grid = ((c.shape[1] + side - 1) // side, (c.shape[0] + side - 1) // side)
    kernel[grid, (side, side)](a, b, c)
    return c


a, b = rng.standard_normal((7, 9)).astype(np.float32), rng.standard_normal((9, 6)).astype(np.float32)
assert np.allclose(launch_matmul(matmul_naive, a, b), a @ b, atol=1e-5)  # check yourself
print("naive kernel == a @ b for (7, 9) @ (9, 6)")

# %% [markdown]
# But the outputs of one row of $c$ all read the same row of $a$, and those of one column the
# same column of $b$. **Tiling** exploits that. A block of $T\times T$ threads owns a
# $T\times T$ tile of $c$ and walks along $k$ one tile at a time: at each step its threads copy a
# $T\times T$ tile of $a$ and one of $b$ from global memory into shared memory (one element per
# thread), then each thread does its $T$ multiply-adds from shared memory. Every element copied
# is then read $T$ times, so the global loads drop by a factor $T$:
#
# $$\text{loads}_\text{naive} = 2MNK, \qquad \text{loads}_\text{tiled} = \frac{2MNK}{T},
#   \qquad \text{FLOP per byte} = \frac{2MNK}{4\cdot 2MNK/T} = \frac{T}{4}\quad(\text{float32}).$$

# %%
M = N = K = 1024
print(f"{'tile T':>7} {'global loads':>14} {'FLOP/byte':>10}   (c = a @ b with M = N = K = {M}, float32)")
for T in (1, 4, 16, 32, 64):
    loads = 2 * M * N * K // T
    print(f"{T:>7} {loads:>14,} {2 * M * N * K / (4 * loads):>10.2f}")

# %% [markdown]
# $T = 64$ comes to 16 FLOP per byte, close to the 18 the H100 needs (doubling $T$ again would
# pass it, but two $128\times128$ float32 tiles take 128 KB of shared memory, room for only
# one block per multiprocessor);
# tinymed's CUDA kernels use 64, for that reason (section 7 shows how a block of 256 threads
# handles a $64\times64$ tile). Real GPUs
# also cache global memory, which blurs these numbers, but not the conclusion.
#
# ## 4. Tiling, step by step
#
# First the tiled product in NumPy, so that every step can be checked. Block $(i_0, j_0)$ owns
# the tile $c[i_0{:}i_0{+}T,\; j_0{:}j_0{+}T]$ and adds one small product per step along $k$:
#
# $$c_{\text{tile}} = \sum_{k_0 = 0, T, 2T, \dots} a[i_0{:}i_0{+}T,\; k_0{:}k_0{+}T]\;\,b[k_0{:}k_0{+}T,\; j_0{:}j_0{+}T] .$$
#
# Slices past the end of the matrices are simply shorter, which is the same as padding with
# zeros (a zero adds nothing to the sum).


# %%
def matmul_tiles_numpy(a, b, T):
    M, K = a.shape
    c = np.zeros((M, b.shape[1]), a.dtype)
    for i0 in range(0, M, T):  # one block per tile of c ...
        for j0 in range(0, b.shape[1], T):
            for k0 in range(0, K, T):  # ... walking along k one tile at a time
                c[i0 : i0 + T, j0 : j0 + T] += a[i0 : i0 + T, k0 : k0 + T] @ b[k0 : k0 + T, j0 : j0 + T]
    return c


for T in (1, 2, 4, 5):
    assert np.allclose(matmul_tiles_numpy(a, b, T), a @ b, atol=1e-5)  # check yourself
print("tiled sums == a @ b for tiles of 1, 2, 4 and 5 (5 does not divide 7, 9 or 6)")

# %% [markdown]
# Here are the tile loads of one block, drawn for $12\times12$ matrices and $T = 4$: $a$ on the
# left, $b$ on top, $c$ where their row and column meet. The block that owns the red tile of
# $c$ needs the pale row band of $a$ and column band of $b$; at step $s$ it copies the dark
# tiles, $a[\cdot,\, 4s{:}4s{+}4]$ and $b[4s{:}4s{+}4,\, \cdot]$, into shared memory.


# %%
def draw_tile_step(ax, step, tiles=3, T=4, owner=(1, 2)):
    n = tiles * T
    bi, bj = owner
    frames = {"a": (-n - 1, 0), "b": (0, -n - 1), "c": (0, 0)}
    for x0, y0 in frames.values():
        for t in range(tiles + 1):  # tile edges
            ax.plot([x0 + t * T] * 2, [y0, y0 + n], color="grey", lw=0.6)
            ax.plot([x0, x0 + n], [y0 + t * T] * 2, color="grey", lw=0.6)
    ax.text(-n / 2 - 1, n + 1.5, "a: rows m, columns k", ha="center", fontsize=10)
    ax.text(n / 2, n + 1.5, "c: rows m, columns n", ha="center", fontsize=10)
    ax.text(n + 0.8, -n / 2 - 1, "b: rows k, columns n", va="center", rotation=270, fontsize=10)
    ax.add_patch(Rectangle((-n - 1, bi * T), n, T, color="#c6dbef"))  # a's row band
    ax.add_patch(Rectangle((bj * T, -n - 1), T, n, color="#c6dbef"))  # b's column band
    ax.add_patch(Rectangle((-n - 1 + step * T, bi * T), T, T, color="#2171b5"))  # a tile loaded now
    ax.add_patch(Rectangle((bj * T, -n - 1 + step * T), T, T, color="#2171b5"))  # b tile loaded now
    ax.add_patch(Rectangle((bj * T, bi * T), T, T, color="#de2d26", alpha=0.3 + 0.7 * (step + 1) / tiles))
    ax.set(xlim=(-n - 2, n + 2.5), ylim=(n + 2.5, -n - 2), aspect="equal", xticks=[], yticks=[])
    ax.set_title(f"step {step}: k0 = {step * T}, c tile holds {step + 1} of {tiles} partial products", fontsize=9)


fig = Figure(figsize=(13, 4.6), layout="constrained")
for step, ax in enumerate(fig.subplots(1, 3)):
    draw_tile_step(ax, step)
fig.suptitle("Tiled matrix product: block (y=1, x=2) loads one tile of a and one of b per step (dark blue)")
course.show(fig, "tile-loads")

# %% [markdown]
# ## 5. The tiled kernel
#
# In the kernel, the block's $T\times T$ threads do the copying together: thread $(t_x, t_y)$
# copies $a[\text{row},\, k_0 + t_x]$ and $b[k_0 + t_y,\, \text{col}]$, zeros past the edges.
# `cuda.shared.array` declares the tiles: one copy per block, seen by all its threads, with a
# size that must be a constant when the kernel is compiled; so the kernel is built by a small
# function of $T$ (tinymed builds its kernels the same way, for each tile size and dtype). Then
# comes the one new rule of shared memory: `cuda.syncthreads()` is a **barrier**, where every
# thread of the block waits until all have arrived. Two are needed per step:
#
# 1. after the copy, so that no thread reads a tile element another thread has not written yet;
# 2. after the multiply-adds, so that no thread overwrites a tile (next step's copy) that a
#    slower thread is still reading.


# %%
def build_matmul_tiled(T):
    """The tiled kernel for T x T tiles and blocks (T is fixed when the kernel compiles)."""

    @cuda.jit
    def matmul_tiled(a, b, c):
        a_tile = cuda.shared.array((T, T), numba.float32)
        b_tile = cuda.shared.array((T, T), numba.float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row, col = cuda.blockIdx.y * T + ty, cuda.blockIdx.x * T + tx
        M, K = a.shape
        total = numba.float32(0)
        for k0 in range(0, K, T):
            a_tile[ty, tx] = a[row, k0 + tx] if row < M and k0 + tx < K else 0  # one element each
            b_tile[ty, tx] = b[k0 + ty, col] if k0 + ty < K and col < c.shape[1] else 0
            cuda.syncthreads()  # 1. both tiles are complete
            for k in range(T):
                total += a_tile[ty, k] * b_tile[k, tx]  # T multiply-adds from shared memory
            cuda.syncthreads()  # 2. everyone is done with them
        if row < M and col < c.shape[1]:
            c[row, col] = total

    return matmul_tiled


T = 4
matmul_tiled = build_matmul_tiled(T)
c = launch_matmul(matmul_tiled, a, b, side=T)
assert np.allclose(c, matmul_tiles_numpy(a, b, T), atol=1e-5)  # check yourself: == the NumPy tiles
assert np.allclose(c, (tm.tensor(a) @ tm.tensor(b)).numpy(), atol=1e-5)  # == tinymed (NumPy reference)
print("tiled kernel == tiled NumPy == tinymed's a @ b; largest difference from a @ b:", np.abs(c - a @ b).max())

# %% [markdown]
# The largest difference is not zero: the kernel adds its products in another order than
# NumPy's matrix product does, and float32 addition is not associative. Differences of a few
# units in the seventh digit are expected; that is why every check above uses a tolerance.
#
# ## 6. The simulator on a laptop, and why it is slow
#
# Without a GPU, Numba's simulator runs the very same kernel code with NumPy arrays: for each
# block, one Python thread per GPU thread, every statement interpreted by Python, a barrier
# implemented with Python's threading. What costs a GPU a nanosecond costs the simulator
# thousands of times more. Time ReLU for a growing number of elements (one thread each):

# %%
sizes = course.pick([32, 128, 512, 2048], [32, 128])
seconds, numpy_seconds = [], []
for n in sizes:
    xs = rng.standard_normal(n).astype(np.float32)
    ys = np.zeros_like(xs)
    start = time.perf_counter()
    relu_kernel[(n + 31) // 32, 32](xs, ys)
    seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    reference = np.maximum(xs, 0)
    numpy_seconds.append(time.perf_counter() - start)
    assert np.array_equal(ys, reference)
per_thread = seconds[-1] / sizes[-1]
print("elements:", sizes, " seconds:", [f"{s:.3f}" for s in seconds])
print(f"about {per_thread * 1e6:.0f} microseconds per thread on {'the simulator' if SIMULATOR else 'the GPU'}")

# %%
fig = Figure(figsize=(6, 4), layout="constrained")
ax = fig.add_subplot()
ax.loglog(sizes, seconds, "o-", label="ReLU kernel, " + ("simulator" if SIMULATOR else "GPU (first call compiles)"))
ax.loglog(sizes, numpy_seconds, "s--", label="np.maximum(x, 0)")
ax.set(xlabel="elements (= threads)", ylabel="seconds", title="One thread per element: what a launch costs")
ax.legend()
course.show(fig, "simulator-cost")

# %% [markdown]
# In the simulator the time grows in proportion to the number of threads: it really runs them
# all, one by one. At the rate printed above, the first convolution of chapter 2's CNN on a
# batch of 64 X-rays (64 images × 8 channels × 28 × 28 outputs, about 400,000 threads; chapter
# 2 trained on batches of 32, half that) would take minutes; on a GPU it takes well under a millisecond. So in the simulator we use tiny
# arrays and blocks, which is also what makes it good for testing: small shapes that still
# cross several block and tile edges. What the simulator is for is **correctness**: it runs
# your indexing, your guards and your barriers exactly as written, and it checks every index
# against the array's bounds (section 8 shows why that matters).
#
# ## 7. Reading tinymed's own kernels
#
# tinymed's Numba kernels are the files of `kernels/numba/` in the repository, one module per
# formula family, installed as the package `tinymed.kernels.numba`. Here is where the matrix
# product lives on this machine, and its inner loop, with the file's own line numbers:

# %%
from tinymed.kernels.numba import gemm as gemm_kernels
from tinymed.kernels.numba import pool as pool_kernels


def show_source(function, first: str, last: str) -> None:
    """Print the lines of `function` from the one containing `first` to the one containing `last`."""
    function = inspect.unwrap(function)  # past functools.cache, which builds the kernels once
    lines, start = inspect.getsourcelines(function)
    begin = next(k for k, line in enumerate(lines) if first in line)
    end = next(k for k, line in enumerate(lines) if k > begin and last in line)
    print(inspect.getsourcefile(function))
    for k in range(begin, end + 1):
        print(f"{start + k:4d} {lines[k].rstrip()}")


show_source(gemm_kernels.gemm_kernel, "def gemm_tiled", "cuda.syncthreads()  # everyone")

# %% [markdown]
# It is our `matmul_tiled` with three refinements:
#
# - **Several outputs per thread.** A block of $16\times16 = 256$ threads owns a $64\times64$
#   tile (on a GPU; tiny tiles in the simulator): each thread keeps a $4\times4$ patch of sums
#   in registers (`acc`), and loads 4 values of `a_slice` and 4 of `b_slice` into registers
#   (`a_reg`, `b_reg`) for 16 multiply-adds: the tiling idea once more, one level down, from
#   shared memory to registers.
# - **A padding column** (`padded = tile + 1`): shared memory is split into 32 banks, and
#   threads of a warp that hit the same bank wait for one another; the extra column shifts each
#   row to a different bank.
# - **Split-K**, for thin products with a long $k$: several blocks each sum a chunk of $k$, and a
#   second kernel adds the chunks in a fixed order.
#
# Max pooling (chapter 3) is one thread per output, each walking its own window. The thread
# unflattens its number $i$ into $(n, c, i, j)$, the reverse of how NumPy lays the array out:

# %%
show_source(pool_kernels.max_pool2d_forward_kernel, "idx = cuda.grid(1)", "c = nc % C")
print(
    "launch shapes tinymed uses here:",
    {k: getattr(tm.device("numba").backend, k) for k in ("THREADS_PER_BLOCK", "GEMM_TILE", "GEMM_THREADS_SIDE")},
)

# %% [markdown]
# Its backward is worth reading too (`max_pool2d_backward_kernel`, same file): instead of one
# thread per output *adding* its gradient into the input pixel its window picked (two windows
# that picked the same pixel would collide, chapter 3's `np.add.at` problem), it runs one
# thread per **input** pixel that gathers from the few windows covering it, in a fixed order,
# so that every run gives the same bits.
#
# ## 8. Holding a kernel to the reference with hypothesis
#
# A kernel's bugs hide at the edges: a size that is not a multiple of the block, a single
# element, a tile that sticks out of the matrix. Writing those cases by hand, you test the ones
# you thought of. **Property-based testing** draws them: the library `hypothesis` generates
# inputs from a description ("three sizes from 1 to 9"), checks a property on each ("the kernel
# agrees with NumPy"), and when one fails it **shrinks** it to the simplest failing input.
# First our tiled kernel, on shapes drawn by hypothesis (few of them: each is a simulator run):

# %%
shapes = st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
tried = []


@settings(max_examples=course.pick(25, 4), deadline=None, database=None)
@given(shapes)
def test_matmul_tiled_matches_numpy(shape):
    m, k, n = shape
    a = np.random.default_rng(m * 100 + k * 10 + n).standard_normal((m, k)).astype(np.float32)
    b = np.random.default_rng(n).standard_normal((k, n)).astype(np.float32)
    np.testing.assert_allclose(launch_matmul(matmul_tiled, a, b, side=T), a @ b, rtol=1e-5, atol=1e-5)
    tried.append(shape)


test_matmul_tiled_matches_numpy()
print(f"the tiled kernel agrees with a @ b on {len(tried)} shapes (M, K, N), e.g. {tried[:6]}")

# %% [markdown]
# Now a bug to find. Drop the guard from the ReLU kernel, so that the spare threads of the last
# block write past the end of the array. On a GPU that write lands in whatever memory follows
# the array: nothing may crash, and the damage shows up later, somewhere else. The simulator
# checks every index, so the stray write raises an `IndexError`, and `hypothesis.find` searches
# for the simplest array length where the kernel fails:


# %%
@cuda.jit
def relu_unguarded(x, y):
    i = cuda.grid(1)
    y[i] = x[i] if x[i] > 0 else 0  # no `if i < x.size`


def relu_fails(n: int) -> bool:
    xs = np.linspace(-1, 1, n).astype(np.float32)
    ys = np.zeros_like(xs)
    try:
        relu_unguarded[(n + 7) // 8, 8](xs, ys)
    except IndexError:
        return True
    return not np.array_equal(ys, np.maximum(xs, 0))


try:
    smallest = find(st.integers(1, 40), relu_fails, settings=settings(max_examples=course.pick(20, 10), database=None))
    print(f"hypothesis: the unguarded kernel fails; simplest failing length n = {smallest}")
    print(f"(n = {smallest} launches {(smallest + 7) // 8 * 8} threads; the multiples of 8 pass)")
except NoSuchExample:
    print("hypothesis found no failing length: on a GPU, stray writes past an array go unnoticed")

# %% [markdown]
# tinymed's own tests do the same for every kernel, with the NumPy reference as the oracle:
# hypothesis draws shapes, strides, paddings and dtypes, and each Numba and CUDA C kernel must
# agree with `tinymed.backends.numpy_ref` (tests/test_backends.py in the repository).
#
# ## 9. A whole model on `tm.device("numba")`
#
# Kernels are launched for you when tensors live on the Numba device: `model.to("numba")`
# moves the parameters, `x.to("numba")` the input, and every conv, pool and matrix product then
# runs tinymed's Numba kernels (in the simulator here, so the image is small). The same model
# on the CPU is the reference: outputs and gradients must agree.

# %%
size, channels, count = course.pick(28, 8), course.pick(4, 2), course.pick(2, 1)
images = tm.tensor(val.images[:count, :, :size, :size].astype(np.float32) / 255.0)
labels = tm.tensor(val.labels[:count])
cpu_model = nn.Sequential(
    nn.Conv2d(1, channels, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(channels * (size // 2) ** 2, 2),
)
gpu_model = copy.deepcopy(cpu_model).to("numba")
results = {}


def host(parameter):
    """A parameter's gradient (an array on the parameter's device) as a NumPy array."""
    return parameter.grad.numpy()


for name, model, inputs, targets in [
    ("cpu", cpu_model, images, labels),
    ("numba", gpu_model, images.to("numba"), labels.to("numba")),
]:
    start = time.perf_counter()
    logits = model(inputs)
    F.cross_entropy(logits, targets).backward()
    results[name] = (logits.numpy(), host(model[0].weight), time.perf_counter() - start)
    print(f"{name:>5}: logits on {logits.device}, forward + backward {results[name][2]:.3f} s")

# %%
(cpu_logits, cpu_grad, _), (numba_logits, numba_grad, _) = results["cpu"], results["numba"]
print(
    "largest difference, logits:",
    np.abs(cpu_logits - numba_logits).max(),
    " conv weight gradient:",
    np.abs(cpu_grad - numba_grad).max(),
)
assert np.allclose(numba_logits, cpu_logits, atol=1e-5)  # check yourself: same model, same numbers
assert np.allclose(numba_grad, cpu_grad, atol=1e-5)

# %% [markdown]
# Equal to float32 rounding, not bit for bit, for the reason of section 5: the kernels add in
# their own order. That is the contract of every tinymed backend: the NumPy reference is right
# by definition, and a kernel is right when it agrees with it within a tolerance set by the
# dtype.
#
# ## 10. Honest limits
#
# - **The simulator is not a GPU.** Its timings say nothing about a GPU's. It runs the threads
#   of a block as Python threads, interleaved however the operating system likes, so a missing
#   `syncthreads` (a race) may well give right answers in the simulator and wrong ones on a GPU,
#   or the reverse. Passing in the simulator shows the indexing is right, not the
#   synchronisation.
# - **Memory effects are invisible.** Coalesced reads, bank conflicts, caches and occupancy
#   decide a kernel's speed on a GPU; the simulator has none of them. Chapter 7 reads what the
#   compiler makes of a kernel, and chapter 12 models their costs and reads GPU benchmark
#   results where a GPU has run them.
# - **Arithmetic differs in the last bits.** The GPU compiler fuses `a * b + c` into one
#   instruction with one rounding (FMA); NumPy rounds twice. A test that demands bit equality
#   between a GPU kernel and NumPy fails for no fault of the kernel.
# - **Property tests are only as good as their strategy.** Our shapes stopped at 9; a bug that
#   needs a tile count past 2 or a size over 1000 (index overflow, shared memory limits) would
#   never be drawn; such cases need tests of their own, written by hand.
# - **Small kernels are not fast kernels.** Our `matmul_tiled` is right and teaches the idea;
#   tinymed's adds register tiles, padding and split-K for speed on a GPU, and NVIDIA's cuBLAS
#   goes further still.
#
# ## Exercises
#
# Exercises 6.1 and 6.2 are graded. Write each kernel in place of the
# `raise NotImplementedError(...)` line of its cell below, keep its name, and run
#
# ```bash
# tinymed course check 6            # in the folder holding your 06_numba_kernels.py or .ipynb
# ```
#
# The grader runs your kernels in Numba's simulator on tiny arrays (it sets
# `NUMBA_ENABLE_CUDASIM=1` itself), so that an index past the end of an array is caught and
# named. Exercises 6.3 and 6.4 are for you and your instructor.
#
# **Exercise 6.1 (ReLU's backward, on any launch).** Write the kernel
# `relu_backward(x, grad_output, grad_input)` for 1-D arrays of one length $n$:
# $\partial L/\partial x_i = \partial L/\partial y_i$ where $x_i > 0$ and $0$ elsewhere (also at
# $x_i = 0$, as tinymed and PyTorch do). The grader launches it with more threads than
# elements **and with fewer**: then each thread must handle several elements, $i,\; i + G,\;
# i + 2G, \dots$ where $G$ = `cuda.gridsize(1)` is the number of threads in the grid (a
# **grid-stride loop**).

# %% tags=["exercise"]
from numba import cuda


@cuda.jit
def relu_backward(x, grad_output, grad_input):
    """dL/dx of ReLU: grad_output where x > 0, 0 elsewhere, for every element, however many threads run."""
    # BEGIN SOLUTION
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        grad_input[i] = grad_output[i] if x[i] > 0 else 0
    # END SOLUTION


# %% [markdown]
# **Exercise 6.2 (a max-pooling kernel).** Write `max_pool2d_kernel(x, y, indices, kernel_size,
# stride)`: chapter 3's max pooling without padding, one thread per output element
# `y[n, c, i, j]` in a 1-D grid (launched with at least `y.size` threads, possibly more). Each
# thread unflattens its number into $(n, c, i, j)$ as tinymed's kernel does (section 7), walks
# its window in row-major order, and writes the maximum into `y` and its flat position
# $h\cdot W + w$ in the $(H, W)$ input plane into `indices` (int64). On a tie keep the first
# maximum. `y` and `indices` are given to you allocated with the right shapes.

# %% tags=["exercise"]
import math

from numba import cuda


@cuda.jit
def max_pool2d_kernel(x, y, indices, kernel_size, stride):
    """y[n,c,i,j] = max of x[n, c, i*stride : i*stride+k, j*stride : j*stride+k]; indices: its h*W + w."""
    # BEGIN SOLUTION
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    idx = cuda.grid(1)
    if idx >= N * C * OH * OW:
        return
    j = idx % OW
    i = (idx // OW) % OH
    c = (idx // (OW * OH)) % C
    n = idx // (OW * OH * C)
    best, best_index = -math.inf, -1
    for p in range(kernel_size):
        for q in range(kernel_size):
            h, w = i * stride + p, j * stride + q
            if best_index < 0 or x[n, c, h, w] > best:
                best, best_index = x[n, c, h, w], h * W + w
    y[n, c, i, j] = best
    indices[n, c, i, j] = best_index
    # END SOLUTION


# %% [markdown]
# **Exercise 6.3 (in words).** Delete the *second* `cuda.syncthreads()` of `matmul_tiled`
# (section 5). Describe, with two threads of one block and the steps $k_0 = 0$ and $k_0 = T$,
# an order of events on a GPU in which the result is wrong. Then run the kernel without it in
# the simulator: does hypothesis (section 8) catch it? What does your answer say about what a
# simulator run can prove?
#
# **Exercise 6.4 (experiment).** The tile size $T$ sets how many global loads the tiled kernel
# makes (section 3). *Predict* how the simulator's time for one $12\times12$ product changes as
# $T$ goes from 1 to 2, 4, 8 and 12, and how a GPU's would. Then run the cell below, which
# rebuilds the kernel for each $T$ (a tile size must be a constant when a kernel compiles) and
# times it (on a GPU run it twice: a kernel's first call includes compiling it), and explain
# the gap between the simulator's times and your GPU prediction.

# %%
side = course.pick(12, 8)
a_sq, b_sq = rng.standard_normal((side, side)).astype(np.float32), rng.standard_normal((side, side)).astype(np.float32)
for tile in course.pick([1, 2, 4, 8, 12], [4, 8]):
    kernel = build_matmul_tiled(tile)
    start = time.perf_counter()
    assert np.allclose(launch_matmul(kernel, a_sq, b_sq, side=tile), a_sq @ b_sq, atol=1e-4)
    loads = 2 * side**3 // tile
    print(f"T = {tile:2d}: {loads:5d} global loads, {time.perf_counter() - start:.3f} s for a {side} x {side} product")
