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
# # Chapter 12 · CPU versus GPU
#
# Chapters 6 and 7 wrote GPU kernels and held them to the NumPy reference: they give the same
# numbers. Do they give them sooner? "The GPU is faster" is true for a batch of 256 X-rays and
# false for a batch of one, and a benchmark table full of milliseconds does not say why. This
# chapter reads those tables, measures this machine, and builds the two small models that
# explain every row: **where the time goes** (arithmetic, memory traffic, launches and copies)
# and the **roofline**, which says how fast an op *could* run before you time it.
#
# **Learning objectives.** After this chapter you can:
#
# - Read the benchmark results and plots.
# - Say where the time goes: arithmetic, copies, launches.
# - Place an op on a roofline and predict its ceiling.
#
# **You need** chapters 6 and 7 (what a kernel launch is) and the convolution of chapter 2. No
# GPU: the GPU side is read from results and from a model with its numbers stated. **Time**:
# about 90 minutes with the exercises. Run it as a script (`python tutorials/12_benchmarks.py`,
# figures go to `tutorials/figures/12_benchmarks/`) or as a notebook (`tinymed course
# notebooks`); with `TINYMED_FAST=1` it runs in seconds on smaller arrays and fewer repeats (the
# timings are then rougher still).

# %%
import inspect
import json
import os
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.functional as F
from tinymed import course, optim
from tinymed.models import LeNet
from tinymed.profiler import profile

# The benchmark package sits beside tutorials/ in a source checkout (it is not installed with tinymed).
checkout = course.chapters_dir().parent
if (checkout / "benchmarks" / "primitives.py").is_file() and str(checkout) not in sys.path:
    sys.path.insert(0, str(checkout))
try:
    from benchmarks import primitives
except ImportError:
    primitives = None
print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}, {os.cpu_count()} CPUs")
print("benchmarks package:", "found" if primitives else "not found (it comes with a git clone of tinymed)")

# %% [markdown]
# ## 1. What the benchmark writes
#
# `python -m benchmarks` (from the repository root; `--quick` for a smoke test of a few seconds)
# times every layer of LeNet, MedCNN and the DCGAN, split into the primitives a training step
# runs (a convolution's forward, its input gradient, its weight gradient), in tinymed and in
# PyTorch on the same device, and writes one folder per machine under `benchmarks/results/`:
# `benchmark.json` with every figure, `tables.md`, and the plots. The JSON opens with the
# machine, because a time means nothing without the machine it came from.

# %%
results_dir = checkout / "benchmarks" / "results"
runs = sorted(results_dir.glob("*/benchmark.json")) if results_dir.is_dir() else []
print("committed results:", [str(p.relative_to(checkout)) for p in runs] or "none")
bench = json.loads(runs[0].read_text()) if runs else None
if bench:
    m = bench["machine"]
    print(f"machine: {m['cpu']}, {m['logical_cpus']} CPUs, GPU {m['gpu']}, BLAS {m['blas'].get('name')}")
    print(f"command: {bench['settings']['command']}; medians of {bench['settings']['repeat']} repeats")
    print(f"load average {m['load_average_before']:.1f} before, {m['load_average_after']:.1f} after")
    print("roofline:", {k: round(v, 1) for k, v in bench["roofline"]["cpu"].items()})

# %% [markdown]
# Each entry of `primitives` is one part of one layer at one batch size. Its fields: `op` and
# `part` (which primitive), `shape`, `flops` (floating-point operations the part must do) and
# `bytes` (the least memory it must read and write), `ms` per implementation (median of the
# repeats), and three figures derived from those: `gflops` = flops / time, `gbs` = bytes /
# time, and `ratio_to_torch` (below 1: faster than PyTorch). `error_vs_torch` says the answers
# agreed before anything was timed.

# %%
if bench:
    row = next(r for r in bench["primitives"] if r["layer"] == "LeNet conv2" and r["batch"] == 128)
    for key in ("op", "part", "shape", "flops", "bytes", "ms", "gflops", "ratio_to_torch", "error_vs_torch"):
        value = row[key]
        shown = {k: f"{v:.3g}" for k, v in value.items()} if isinstance(value, dict) else value
        print(f"{key:>15}: {shown}")

# %% [markdown]
# The plot a benchmark is read from first: time against batch size, one line per
# implementation, on log-log axes. A line of slope 1 means time proportional to work; a line
# that stays flat at small batches is paying a fixed cost per call that has nothing to do with
# the work. We redraw it from the JSON for LeNet's second convolution.

# %%
if bench:
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    conv2 = [r for r in bench["primitives"] if r["layer"] == "LeNet conv2"]
    for ax, part in zip(fig.subplots(1, 3), ("forward", "grad_input", "grad_weight")):
        mine = sorted((r for r in conv2 if r["part"] == part), key=lambda r: r["batch"])
        for name in mine[0]["ms"]:
            ax.plot([r["batch"] for r in mine], [r["ms"][name] for r in mine], "o-", label=name)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="ms per call", title=f"conv2 {part}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"LeNet conv2 on {bench['machine']['cpu']} (committed results, one run)")
    course.show(fig, "committed-conv2")

# %% [markdown]
# Read it with suspicion, as the note committed beside it asks (`NOTE.md` in the same folder):
# that run was made on a nearly idle machine (the load averages printed above), and still single
# rows of a few milliseconds move by large factors between runs (NOTE.md's example: one ratio
# to PyTorch was 0.25 in one run and 3.17 in the next), because a scheduler tick or another
# process waking costs as much as the work. A line that jumps up and down between batch sizes
# is that noise, not the library. Section 6 comes back to this; the rest of the chapter measures
# for itself.
#
# ## 2. Where the time goes in one training step
#
# Before any op can be made faster we must know which ops matter. `tinymed.profiler.profile`
# wraps every autograd op's `forward` and `backward` with a clock for the duration of a `with`
# block, and calls everything else (the autograd engine's bookkeeping, the optimiser, Python)
# **framework overhead**:
#
# $$t_\text{overhead} = t_\text{total} - \sum_\text{ops} (t_\text{forward} + t_\text{backward}) .$$
#
# One LeNet training step on random images, after one warm-up step (the first call of anything
# pays for memory allocation and caches).

# %%
tm.manual_seed(0)
batch = course.pick(64, 16)
model, rng = LeNet(), np.random.default_rng(0)
optimizer = optim.SGD(model.parameters(), lr=0.01)
images = tm.tensor(rng.standard_normal((batch, 1, 28, 28), dtype=np.float32))
labels = tm.tensor(rng.integers(0, 2, batch))


def train_step(images, labels):
    optimizer.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


train_step(images, labels)
with profile() as prof:
    train_step(images, labels)
print(prof.table())

# %%
fig = prof.plot(f"LeNet, one training step, batch {batch}")
course.show(fig, "profile-lenet")
phase = {p: sum(r.seconds for r in prof.records.values() if r.phase == p) for p in ("forward", "backward")}
conv = {p: prof.records[("_Conv2d", p)].seconds for p in ("forward", "backward")}
print(
    {p: f"{1e3 * s:.1f} ms" for p, s in phase.items()},
    f"all ops: backward / forward = {phase['backward'] / phase['forward']:.2f};",
    f"the convolutions alone: {conv['backward'] / conv['forward']:.2f}",
)
print(f"profiler source: {Path(inspect.getsourcefile(profile)).relative_to(checkout)}")
assert abs(prof.op_seconds + prof.overhead_seconds - prof.total_seconds) < 1e-9

# %% [markdown]
# Three things to read off. The convolutions and the pooling take nearly all of it; the three
# linear layers, a few percent. A convolution's backward does twice the forward's FLOPs (the
# gradient with respect to the input, and the one with respect to the weight); whether it also
# takes twice the time depends on how well each is implemented: the convolutions' ratio
# printed above says, for tinymed on this machine (and it moves with the load; the ratio over
# all ops is lower, because max pooling's backward is far cheaper than its forward). And the overhead
# outside the ops is small at this batch: Python's cost per op is paid once per call, whatever
# the batch. At a batch of one it is not small any more (section 5).
#
# ## 3. Counting the work: FLOPs and bytes
#
# An op has two costs: arithmetic and memory traffic. For a convolution of an input
# $(N, C, H, W)$ with $O$ filters $C\times K_H\times K_W$, each output value is a sum of
# $C K_H K_W$ products, a multiply and an add each, so
#
# $$\text{FLOPs}_\text{conv} = 2\,N\,O\,H_\text{out}W_\text{out}\,C\,K_H K_W,\qquad
#   H_\text{out} = \left\lfloor\frac{H + 2P - K_H}{S}\right\rfloor + 1 .$$
#
# The least memory it can move is reading the input and the weight once and writing the output
# once: $\text{bytes} = 4\,(NCHW + OCK_HK_W + NOH_\text{out}W_\text{out})$ in float32. A
# matrix product $(M\times K)(K\times N)$ does $2MNK$ FLOPs on $4(MK + KN + MN)$ bytes.
#
# Check yourself on a tiny convolution: a literal loop that counts every multiply-add as it
# goes must land on the formula, and give `F.conv2d`'s answer.

# %%
x = rng.standard_normal((1, 2, 5, 5))
w = rng.standard_normal((3, 2, 3, 3))
padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
y, counted = np.zeros((1, 3, 5, 5)), 0
for o in range(3):
    for i in range(5):
        for j in range(5):
            for c in range(2):
                for p in range(3):
                    for q in range(3):
                        y[0, o, i, j] += w[o, c, p, q] * padded[0, c, i + p, j + q]
                        counted += 2  # one multiply, one add
formula = 2 * 1 * 3 * 5 * 5 * 2 * 3 * 3
print(f"counted {counted} FLOPs, formula {formula}")
assert counted == formula
assert np.allclose(y, F.conv2d(tm.tensor(x), tm.tensor(w), padding=1).numpy())

# %% [markdown]
# The benchmark counts the same way (`benchmarks/primitives.py`); check yourself against its
# LeNet conv2 row when the package is here.

# %%
if primitives:
    case = primitives.conv2d(np.random.default_rng(0), 128, 6, 14, 16, 5, 1, 0)
    forward = case.parts[0]
    ours = 2 * 128 * 16 * 10 * 10 * 6 * 5 * 5, 4 * (128 * 6 * 14 * 14 + 16 * 6 * 5 * 5 + 128 * 16 * 10 * 10)
    print(f"benchmarks/primitives.py: {forward.flops:.4g} FLOPs, {forward.bytes:.4g} bytes; ours: {ours}")
    assert (forward.flops, forward.bytes) == ours

# %% [markdown]
# ## 4. The roofline
#
# Divide the two: the **arithmetic intensity** $I = \text{FLOPs}/\text{bytes}$ says how much
# arithmetic an op does per byte it moves. A machine has two ceilings: its peak arithmetic rate
# $P$ (GFLOP/s) and its memory bandwidth $\beta$ (GB/s). An op that does $I$ FLOPs per byte
# cannot compute faster than memory feeds it, $I\beta$, nor faster than the peak:
#
# $$\text{attainable GFLOP/s} = \min(P,\; I\,\beta) .$$
#
# Plotted on log-log axes that is a slanted roof that meets a flat one at the **ridge point**
# $I = P/\beta$. Left of the ridge an op is *memory-bound*: more arithmetic units would not
# help, less traffic would. Right of it, *compute-bound*. Here are the four kinds of op in a CNN:


# %%
def intensity(flops, nbytes):
    return flops / nbytes


n, b, adds = 128, course.pick(64, 16), course.pick(22, 20)
ops = {
    f"GEMM {n}x400 @ 400x120": (2 * n * 400 * 120, 4 * (n * 400 + 400 * 120 + n * 120)),
    f"conv2d {b}x6x14x14, 16@5x5": (2 * b * 16 * 10 * 10 * 6 * 25, 4 * (b * 6 * 196 + 16 * 6 * 25 + b * 16 * 100)),
    f"max_pool2d {b}x6x28x28, k2": (b * 6 * 14 * 14 * 4, 4 * (b * 6 * 784 + b * 6 * 196) + 8 * b * 6 * 196),
    f"add of 2^{adds} floats": (2**adds, 4 * 3 * 2**adds),
}
for name, (flops, nbytes) in ops.items():
    print(f"{name:>28}: {flops / 1e6:8.2f} MFLOP, {nbytes / 1e6:6.2f} MB, I = {intensity(flops, nbytes):6.2f} FLOP/B")

# %% [markdown]
# Pooling and addition do about one operation per element while reading and writing four
# bytes each: $I \ll 1$. The GEMM and the convolution reuse every input value many times
# (in an $(M \times K)(K \times N)$ product each entry of the first matrix serves $N$ outputs
# and each of the second $M$; in a convolution each input value serves $O K_H K_W$): $I$ in
# the tens.
#
# Now the two ceilings of *this* machine, measured the way the benchmark measures them
# (`benchmarks/machine.py`): the peak from a large float32 matrix product, the bandwidth from
# copying a large array (a read and a write of 4 bytes per value). Both take the *best* of a
# few runs, because a ceiling is what the machine reaches at its quietest.

# %%
size, floats = course.pick(1024, 384), course.pick(2**25, 2**22)
a = rng.standard_normal((size, size), dtype=np.float32)
c = np.empty_like(a)
src, dst = np.ones(floats, dtype=np.float32), np.empty(floats, dtype=np.float32)
np.matmul(a, a, out=c), np.copyto(dst, src)  # warm-up
gemm_s = min(timeit.repeat(lambda: np.matmul(a, a, out=c), number=1, repeat=5))
copy_s = min(timeit.repeat(lambda: np.copyto(dst, src), number=1, repeat=5))
peak, bandwidth = 2 * size**3 / gemm_s / 1e9, 8 * floats / copy_s / 1e9
print(f"peak {peak:.1f} GFLOP/s ({size}x{size} GEMM), bandwidth {bandwidth:.1f} GB/s ({4 * floats >> 20} MiB copy)")
print(f"ridge point at I = {peak / bandwidth:.1f} FLOP/byte")

# %% [markdown]
# Where do the four ops land? We time each with tinymed (no autograd: the forward only),
# taking the **median** of a few repeats after a warm-up, and place each at its intensity and
# the GFLOP/s it reached.


# %%
def median_seconds(fn, repeat):
    fn()  # warm-up: allocation, caches, thread pools
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeat))


repeat = course.pick(7, 3)
t = {k: tm.tensor(rng.standard_normal(s, dtype=np.float32)) for k, s in [("x", (n, 400)), ("w", (120, 400))]}
t |= {
    k: tm.tensor(rng.standard_normal(s, dtype=np.float32)) for k, s in [("cx", (b, 6, 14, 14)), ("cw", (16, 6, 5, 5))]
}
t |= {"px": tm.tensor(rng.standard_normal((b, 6, 28, 28), dtype=np.float32)), "u": tm.randn(2**adds)}
calls = [lambda: F.linear(t["x"], t["w"]), lambda: F.conv2d(t["cx"], t["cw"])]
calls += [lambda: F.max_pool2d(t["px"], 2, return_indices=True), lambda: t["u"] + t["u"]]
with tm.no_grad():
    reached = {name: flops / median_seconds(call, repeat) / 1e9 for (name, (flops, _)), call in zip(ops.items(), calls)}
for name, (flops, nbytes) in ops.items():
    bound = min(peak, intensity(flops, nbytes) * bandwidth)
    print(
        f"{name:>28}: {reached[name]:7.2f} GFLOP/s of a ceiling of {bound:7.2f} ({100 * reached[name] / bound:5.1f}%)"
    )

# %%
fig = Figure(figsize=(7.5, 5), layout="constrained")
ax = fig.add_subplot()
grid = np.logspace(-2, 3, 200)
ax.plot(grid, np.minimum(peak, grid * bandwidth), "k-", label=f"roof: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s")
ax.axvline(peak / bandwidth, color="gray", ls=":", label=f"ridge point I = {peak / bandwidth:.1f}")
for (name, (flops, nbytes)), marker in zip(ops.items(), "Dosv"):
    ax.scatter(intensity(flops, nbytes), reached[name], marker=marker, s=60, label=name)
ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte)", ylabel="GFLOP/s")
ax.set_title("Roofline of this CPU, with tinymed's forward ops placed under it")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
course.show(fig, "roofline")

# %% [markdown]
# Reading the picture. The add sits close to its slanted roof: it is memory-bound, and NumPy's
# add is about as good as an add gets. No kernel, on any device, will do an element-wise op
# faster than the memory delivers it; on a GPU the slanted roof is 10 to 50 times higher
# (HBM moves 1.5 to 3.35 TB/s, the H100's being the latter), which is most of a GPU's advantage
# on such ops. The GEMM gets
# closest to the flat roof (it *is* what the roof was measured with, at another size). The
# convolution sits far below its ceiling: tinymed's im2col (chapter 2) first *writes* a
# matrix $K_HK_W$ times larger than its input and reads it back, traffic the minimal byte count
# does not include, and its small GEMM pays a fixed cost per call. The pooling is far below
# its roof too: its NumPy forward walks the window's taps in Python-level steps. The distance
# from a point to the roof above it is what a better kernel could win; the roof is what no
# kernel can beat. (An add that lands a little *above* its roof is not a mistake: its arrays
# fit partly in the CPU's caches, which are faster than the main memory the copy measured. A
# full roofline has one slanted roof per level of memory.)
#
# ## 5. Why a GPU wins on a large batch and loses on a small one
#
# A GPU runs an op with three costs a CPU does not have, or not as much:
#
# - **a launch**: every kernel costs a few microseconds to start, however little it does;
# - **transfers**: data in host memory must cross PCIe to the GPU and the result come back;
# - **the work itself**, under a roofline whose roofs are far higher than the CPU's.
#
# A simple model with stated numbers, for an op of batch $B$ that launches $k$ kernels:
#
# $$t_\text{GPU}(B) = k\,t_\text{launch}
#   + \max\!\left(\frac{\text{FLOPs}(B)}{P_\text{GPU}}, \frac{\text{bytes}(B)}{\beta_\text{GPU}}\right)
#   \;\Bigl[+\, 2\,t_\text{copy} + \frac{\text{in} + \text{out bytes}}{\beta_\text{PCIe}}
#   \text{ when the data lives on the host}\Bigr] .$$
#
# The numbers: $t_\text{launch} = 5\,\mu$s (CUDA launches take 3 to 10); $P_\text{GPU} = 2$
# TFLOP/s, a tenth of an A100's float32 peak (a thirtieth of an H100's), about what small untuned kernels like
# tinymed's reach; $\beta_\text{GPU} = 1.5$ TB/s (HBM); PCIe 4.0 x16 moves about
# $\beta_\text{PCIe} = 25$ GB/s and each copy costs $t_\text{copy} = 10\,\mu$s to start. The CPU
# side is not modelled but measured: tinymed's NumPy backend on this machine, for a
# memory-bound op (the ReLU after LeNet's first convolution) and a compute-bound one (LeNet's
# second convolution).

# %%
GPU = {"launch_s": 5e-6, "flops": 2e12, "hbm": 1.5e12, "pcie": 25e9, "copy_s": 10e-6}


def gpu_seconds(flops, nbytes, moved, kernels, on_host):
    seconds = kernels * GPU["launch_s"] + np.maximum(flops / GPU["flops"], nbytes / GPU["hbm"])
    return seconds + on_host * (2 * GPU["copy_s"] + moved / GPU["pcie"])


def relu_work(B):  # (FLOPs, bytes touched, bytes in + out): one op per element, read and write
    n = B * 6 * 28 * 28
    return n, 8 * n, 8 * n


def conv2_work(B):
    flops = 2 * B * 16 * 10 * 10 * 6 * 25
    return flops, 4 * (B * 6 * 196 + 16 * 6 * 25 + B * 16 * 100), 4 * (B * 6 * 196 + B * 16 * 100)


batches = course.pick([1, 4, 16, 64, 256], [1, 4, 16])
cpu_ms = {"relu": [], "conv2d": []}
with tm.no_grad():
    for B in batches:
        r, cx = tm.randn(B, 6, 28, 28), tm.randn(B, 6, 14, 14)
        cpu_ms["relu"].append(1e3 * median_seconds(lambda r=r: F.relu(r), repeat))
        cpu_ms["conv2d"].append(1e3 * median_seconds(lambda cx=cx: F.conv2d(cx, t["cw"]), repeat))
print({op: {B: f"{ms:.3f}" for B, ms in zip(batches, v)} for op, v in cpu_ms.items()}, "(CPU, ms)")

# %%
fig = Figure(figsize=(11, 4.2), layout="constrained")
grid_b = np.logspace(0, np.log10(batches[-1]), 50)
for ax, (op, work, kernels) in zip(fig.subplots(1, 2), [("relu", relu_work, 1), ("conv2d", conv2_work, 1)]):
    flops, nbytes, moved = work(grid_b)
    ax.plot(batches, cpu_ms[op], "o-", color="tab:blue", label="CPU, measured (tinymed NumPy)")
    ax.plot(
        grid_b, 1e3 * gpu_seconds(flops, nbytes, moved, kernels, False), color="tab:red", label="GPU, data on the GPU"
    )
    ax.plot(
        grid_b,
        1e3 * gpu_seconds(flops, nbytes, moved, kernels, True),
        "--",
        color="tab:red",
        label="GPU, copied over PCIe",
    )
    ax.axhline(1e3 * kernels * GPU["launch_s"], color="gray", ls=":", label=f"{kernels} launch(es) alone")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="ms per call",
        title=f"{op}: CPU measured, GPU modelled",
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
course.show(fig, "cpu-vs-gpu-model")
for op, work, kernels in [("relu", relu_work, 1), ("conv2d", conv2_work, 1)]:
    gpu_ms = [1e3 * gpu_seconds(*work(B), kernels, True) for B in batches]
    print(
        f"{op:>7}, data copied each call: GPU/CPU time at B = {batches}: {np.round(np.divide(gpu_ms, cpu_ms[op]), 2)}"
    )
relu_gbs = relu_work(batches[-1])[1] / (cpu_ms["relu"][-1] / 1e3) / 1e9
print(f"tinymed's CPU ReLU at B = {batches[-1]}: {relu_gbs:.1f} GB/s; PCIe in the model: {GPU['pcie'] / 1e9:.0f} GB/s")

# %% [markdown]
# Read the two panels from the left. At a batch of one the GPU's time is its launch floor (with
# data on the host, plus two copies' fixed cost): a floor no batch size lowers. The CPU has a
# fixed cost per call too, NumPy's and tinymed's Python, about the first measured point of the
# ReLU; a CPU library with less of it (PyTorch's ReLU takes a microsecond or two) undercuts a
# 5 µs launch, and then the CPU wins at small batches even with the data on the GPU. As the
# batch grows the GPU's line stays nearly flat while the CPU's climbs, and the GPU wins by the
# ratio of the roofs. But look at the dashed line of the ReLU: when every call must first copy
# its input over PCIe, the GPU can never stream faster than PCIe's 25 GB/s, about what a CPU
# reads from its own memory. Against a CPU ReLU that streams at that speed (PyTorch's comes
# close), a memory-bound op gains nothing from the trip, and loses at small batches to the
# launch and copy costs. tinymed's NumPy ReLU is not such a CPU ReLU: the last line printed
# above gives its speed, a fraction of its memory's (one thread, and a second pass over the
# input for the mask its backward would need: see tinymed/ops/activation.py), which is why the
# modelled GPU still comes out ahead of it in the printed ratios.
# That is a verdict on tinymed's ReLU, not on the CPU. The convolution does enough arithmetic
# per byte to pay for the trip whatever the CPU.
#
# A training step is a few dozen such calls (the profiler counted them in section 2), so a
# GPU step has a floor of a few dozen launches however small the batch. Two habits follow:
# **batch** on a GPU, and fuse kernels so that there are fewer launches (chapter 5's fused
# attention is one kernel where the naive one is three); and **keep data on the device** (copy
# each batch once; never bring intermediate results back). Where a GPU machine ran
# `benchmarks/gpu_suite.sh`, its results folder is named `gpu-<model>` and its JSON has a
# `cuda` device: its rows measure what this section models.
#
# ## 6. Honest limits: measuring on a shared laptop
#
# Everything above was measured on a machine that other programs were using. Here is what that
# does to one small op, timed many times: the spread of the times, with the minimum, median and
# mean marked.

# %%
small = tm.randn(64, 6, 14, 14)
with tm.no_grad():
    F.max_pool2d(small, 2)
    samples = 1e3 * np.array(timeit.repeat(lambda: F.max_pool2d(small, 2), number=1, repeat=course.pick(200, 40)))
summary = {"min": samples.min(), "median": np.median(samples), "mean": samples.mean(), "max": samples.max()}
print({k: f"{v:.3f} ms" for k, v in summary.items()}, f"load average {os.getloadavg()[0]:.1f}")
fig = Figure(figsize=(7, 3.6), layout="constrained")
ax = fig.add_subplot()
ax.hist(samples, bins=40, color="lightgray", edgecolor="gray")
for (k, v), colour in zip(list(summary.items())[:3], ("tab:green", "tab:blue", "tab:red")):
    ax.axvline(v, color=colour, label=f"{k} {v:.3f} ms")
ax.set(xlabel="ms per call", ylabel="calls", title=f"{len(samples)} timings of one max_pool2d call")
ax.legend()
course.show(fig, "noise")

# %% [markdown]
# The times are skewed: another process, a page fault or a CPU frequency change only ever
# *adds* time, so a few calls are very slow and the mean is dragged towards them. The **median**
# moves little when a few runs are slow: it is the figure for "how long does this take", and
# `benchmarks/timing.py` reports it. The **minimum** is the figure for "what can this machine
# do at best", which is why the ceilings of section 4 used it. What no statistic fixes:
#
# - **Load changes between the two sides of a comparison.** tinymed and PyTorch are timed one
#   after the other; if a test suite starts in between, the ratio is wrong. Record the load
#   average (the benchmark JSON does), repeat the run, and distrust a single odd row.
# - **Turbo and thermals.** A laptop runs faster for the first seconds and slower once hot.
# - **Threads.** NumPy's BLAS and PyTorch use every core; on 2 shared cores they wait on each
#   other. `OPENBLAS_NUM_THREADS=1` makes small products faster here, large ones slower.
# - **Small sizes mislead.** At LeNet's sizes, fixed costs (Python, launches) dominate; a
#   library that wins there can lose at a batch of 256, and the other way round.
# - **The model of section 5 is a model.** Its five numbers are assumptions; it explains the
#   shape of the curves, not where exactly they cross on your GPU.
#
# ## Exercises
#
# Exercises 12.1 to 12.4 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 12           # in the folder holding your 12_benchmarks.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` and prints PASS or FAIL with a hint for each.
# Exercises 12.5 and 12.6 are for you and your instructor.
#
# **Exercise 12.1 (counting a convolution).** Write `conv2d_cost(x_shape, weight_shape, stride=1,
# padding=0, itemsize=4)`, returning `(flops, nbytes)` for `F.conv2d` of an input of shape
# `(N, C, H, W)` with a weight `(O, C, KH, KW)`: two FLOPs per multiply-add, and the bytes of
# the input, the weight and the output, each once.


# %% tags=["exercise"]
def conv2d_cost(x_shape, weight_shape, stride=1, padding=0, itemsize=4):
    # BEGIN SOLUTION
    N, C, H, W = x_shape
    O, _, KH, KW = weight_shape
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    flops = 2 * N * O * OH * OW * C * KH * KW
    nbytes = itemsize * (N * C * H * W + O * C * KH * KW + N * O * OH * OW)
    return flops, nbytes
    # END SOLUTION


# %% [markdown]
# **Exercise 12.2 (counting a matrix product).** Write `gemm_cost(m, n, k, itemsize=4)`, returning
# `(flops, nbytes)` for the product of an `(m, k)` and a `(k, n)` matrix into an `(m, n)` one.


# %% tags=["exercise"]
def gemm_cost(m, n, k, itemsize=4):
    # BEGIN SOLUTION
    return 2 * m * n * k, itemsize * (m * k + k * n + m * n)
    # END SOLUTION


# %% [markdown]
# **Exercise 12.3 (the roofline bound).** Write `roofline(flops, nbytes, peak_gflops, bandwidth_gbs)`,
# returning `(intensity, attainable_gflops)`: the arithmetic intensity in FLOP per byte and
# $\min(P, I\beta)$. It must work on NumPy arrays of ops as well as on numbers.


# %% tags=["exercise"]
def roofline(flops, nbytes, peak_gflops, bandwidth_gbs):
    # BEGIN SOLUTION
    import numpy as np

    intensity = np.asarray(flops, dtype=np.float64) / np.asarray(nbytes, dtype=np.float64)
    return intensity, np.minimum(peak_gflops, intensity * bandwidth_gbs)
    # END SOLUTION


# %% [markdown]
# **Exercise 12.4 (a timing helper).** Write `median_time(fn, repeat=5, warmup=1, clock=None)`: call `fn`
# `warmup` times untimed, then `repeat` times, each timed with `clock()` (a function returning
# seconds; `time.perf_counter` when `clock` is None), and return the median of the `repeat`
# durations. `repeat < 1` is a `ValueError`. (The grader hands you a fake clock, so that it
# knows exactly what each call "took".)


# %% tags=["exercise"]
def median_time(fn, repeat=5, warmup=1, clock=None):
    import statistics
    import time

    # BEGIN SOLUTION
    if repeat < 1:
        raise ValueError(f"median_time: repeat must be at least 1, got {repeat}")
    clock = time.perf_counter if clock is None else clock
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(repeat):
        start = clock()
        fn()
        durations.append(clock() - start)
    return statistics.median(durations)
    # END SOLUTION


# %% [markdown]
# **Exercise 12.5 (in words): which roof?** MedCNN's attention (chapter 5) computes
# $\mathrm{softmax}(QK^\top/\sqrt{d})V$ over $L = 49$ positions with $d = 32$. Count its FLOPs
# and the bytes of $Q, K, V$ and the output, and place it against this machine's ridge point.
# Is it memory- or compute-bound? The naive implementation also writes the $L\times L$ score
# matrix to memory and reads it back: how does that move the point, and how long must the
# sequence be before that traffic outweighs the rest? What does that say about fusing the
# kernel?
#
# **Exercise 12.6 (experiment): one thread.** Predict first: with `OPENBLAS_NUM_THREADS=1` set before
# NumPy is imported, which points of section 4's roofline move, and which way: the GEMM, the
# convolution, the pooling, the add? Run the chapter again with it (`OPENBLAS_NUM_THREADS=1
# python tutorials/12_benchmarks.py`; copy the figures of the first run elsewhere first, as the
# second overwrites them) and compare the roofline figures and section 5's measured CPU points. Explain what moved with what each op spends its time on, and what the load average
# printed in section 6 had to do with it.
