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
# # Chapter 13 · Training on many machines
#
# Chapter 12 timed one training step on one machine and found where its time goes. A hospital
# network's archive holds millions of chest X-rays; one machine would take weeks to go through
# them a few times. With eight machines, can we train eight times faster, and will the model
# we get be the *same* model? This chapter answers both: yes, the same model, to round-off,
# if the machines average their gradients at every step; and eight times faster only while
# each machine has enough work to hide the cost of that averaging.
#
# **Learning objectives.** After this chapter you can:
#
# - Explain data-parallel training and all-reduce.
# - Run a data-parallel training step on several processes.
# - Check that it computes the same gradients as one process.
#
# **You need** chapter 8 (the training loop written out). MPI (`mpiexec` and mpi4py, from `pip
# install "tinymed[distributed]"`) for section 5; without it that section says so and the rest
# runs. **Time**: about 90 minutes with the exercises. Run it as a script (`python
# tutorials/13_distributed.py`, figures go to `tutorials/figures/13_distributed/`) or as a
# notebook (`tinymed course release DIR` writes both); `TINYMED_FAST=1` runs it in seconds.

# %%
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.distributed as dist
import tinymed.functional as F
from tinymed import course
from tinymed.models import LeNet
from tinymed.nn.parallel import DistributedDataParallel
from tinymed.utils.data import DistributedSampler

print(f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}")
print("MPI:", "mpi4py found" if dist.is_available() else "mpi4py missing", "|", "mpiexec", shutil.which("mpiexec"))

# %% [markdown]
# ## 1. Data parallelism: one batch, split
#
# Every machine (a **rank**, numbered $0 \dots p-1$) holds a whole copy of the model. Each
# step, the **global batch** of $B$ images is split into $p$ shares of $b = B/p$; each rank runs
# forward and backward on its share alone. The loss of a step is the mean over the global
# batch, and a mean over $B$ is the mean of the $p$ shares' means:
#
# $$\nabla_\theta \frac{1}{B}\sum_{i=1}^{B} \ell_i
#   = \frac{1}{p}\sum_{r=0}^{p-1} \underbrace{\nabla_\theta \frac{1}{b}\sum_{i \in \text{share } r} \ell_i}_{g_r} .$$
#
# So if the ranks **average their gradients** $g_r$ and every rank applies the same update,
# every copy stays equal to the one model a single process would train on the whole batch.
# Check yourself, in one process: the gradient of LeNet on 16 X-rays, against the average of
# the gradients on four shares of 4.

# %%
tm.manual_seed(0)
model = LeNet()
data = course.xray_dataset("train", n=course.pick(512, 64))
images = tm.tensor(data.images[:16].astype(np.float32) / 255.0)
labels = tm.tensor(data.labels[:16])


def gradients(x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [np.array(p.grad, dtype=np.float64) for p in model.parameters()]


whole = gradients(images, labels)
shares = [gradients(images[4 * r : 4 * r + 4], labels[4 * r : 4 * r + 4]) for r in range(4)]
averaged = [np.mean(parts, axis=0) for parts in zip(*shares)]
gap = max(np.abs(w - a).max() / (np.abs(w).max() + 1e-30) for w, a in zip(whole, averaged))
print(f"{len(whole)} gradient tensors; largest gap relative to the gradient's size: {gap:.1e}")
assert gap < 1e-5

# %% [markdown]
# Equal to round-off: float32 sums in a different order give results a few units of
# $10^{-7}$ apart, and nothing more. Two conditions hide in that equation: the shares must be
# equal in size (a share of 5 and one of 3 averaged with equal weights would overweight the
# smaller), and the loss must be a mean over independent samples. **BatchNorm** breaks the
# second: its statistics are over each rank's share, not the global batch, so a model with it
# is close to, not equal to, the single-process one (LeNet has none).
#
# ## 2. Who gets which images: sharding
#
# Two ways of splitting work appear in practice, and tinymed has both.
#
# - **A global batch, split contiguously** (`tinymed.distributed.shard`): every rank loads the
#   *same* global batch (same seed, same augmentation) and keeps rows $[rb, (r+1)b)$.
# - **The dataset, split by stride** (`DistributedSampler`, PyTorch's arithmetic): rank $r$
#   reads indices $r, r+p, r+2p, \dots$; when $N$ is not a multiple of $p$, the index list is
#   padded by repeating its start, so every rank gets $\lceil N/p\rceil$ (or, with
#   `drop_last`, the tail is cut and every rank gets $\lfloor N/p\rfloor$).

# %%
n, p = 10, 4
for drop_last in (False, True):
    ranks = [
        list(DistributedSampler(range(n), num_replicas=p, rank=r, shuffle=False, drop_last=drop_last)) for r in range(p)
    ]
    print(f"N={n}, p={p}, drop_last={drop_last}: " + " | ".join(f"rank {r}: {ix}" for r, ix in enumerate(ranks)))
print("dist.shard in a world of one keeps the whole batch:", dist.shard(np.arange(8))[0])

# %% [markdown]
# Without padding the ranks would disagree on how many steps an epoch has, and the one that
# finished first would wait for ever in its next all-reduce. The repeated indices mean that a
# few images count twice in an epoch: a small bias, usually harmless, and the reason
# validation under `DistributedSampler` is not exactly the single-process number.
#
# ## 3. All-reduce, and the ring
#
# After backward, every rank holds its gradient $g_r$ ($N$ numbers), and every rank needs
# $\sum_r g_r$. That collective is an **all-reduce**. The naive way (everyone sends everything
# to rank 0, which sums and sends back) puts $2(p-1)N$ numbers through rank 0's link. The
# **ring all-reduce** keeps every link equally busy. Cut each gradient into $p$ chunks, and
# arrange the ranks in a ring, each sending to the next:
#
# 1. **Reduce-scatter**, $p-1$ steps: at step $s$ ($s = 0, 1, \dots, p-2$), rank $r$ sends chunk
#    $(r - s) \bmod p$ to rank $r+1$, which adds it to its own copy of that chunk. After $p-1$ steps, rank $r$ holds the
#    complete sum of chunk $(r+1) \bmod p$.
# 2. **All-gather**, $p-1$ more steps: the complete chunks travel round the ring once more,
#    each rank overwriting its copy, until every rank has every summed chunk.
#
# $2(p-1)$ steps in all, each rank sending one chunk of $N/p$ numbers per step:
#
# $$\text{bytes sent per rank} = 2\,(p-1)\,\frac{N}{p}\cdot 4 \;\longrightarrow\; 2N \cdot 4
#   \quad\text{as } p \to \infty,$$
#
# about *twice the gradient*, whatever the number of ranks. The reduce-scatter half, literally,
# for 4 ranks, recording which rank holds how many contributions to each chunk:

# %%
p, N = 4, 8
rng = np.random.default_rng(0)
buffers = [rng.integers(0, 10, N).astype(np.float64) for _ in range(p)]
chunks = [np.array_split(b.copy(), p) for b in buffers]
count = np.ones((p, p), dtype=int)  # count[r, c]: how many ranks' values rank r's chunk c holds
history = [count.copy()]
for step in range(p - 1):
    sent = [(r, (r - step) % p, chunks[r][(r - step) % p].copy()) for r in range(p)]  # all send at once
    for r, c, values in sent:
        chunks[(r + 1) % p][c] += values
        count[(r + 1) % p, c] += count[r, c]
    history.append(count.copy())
total = np.sum(buffers, axis=0)
for r in range(p):
    c = (r + 1) % p
    print(f"rank {r} holds the full sum of chunk {c}: {chunks[r][c]} (sum {np.array_split(total, p)[c]})")
    assert count[r, c] == p and np.array_equal(chunks[r][c], np.array_split(total, p)[c])

# %% [markdown]
# Drawn: each panel is one moment, ranks as rows and chunks as columns, the number in a cell
# how many ranks' gradients that piece of memory has summed. A chunk is complete at $p$ (dark).
# The all-gather that follows (exercise 13.1) copies each complete chunk around the ring.

# %%
fig = Figure(figsize=(3.1 * len(history), 3.2), layout="constrained")
for s, (ax, table) in enumerate(zip(fig.subplots(1, len(history)), history)):
    image = ax.imshow(table, cmap="Blues", vmin=0, vmax=p)
    for r in range(p):
        for c in range(p):
            ax.text(c, r, table[r, c], ha="center", va="center", color="white" if table[r, c] == p else "black")
    ax.set(xticks=range(p), yticks=range(p), xlabel="chunk", ylabel="rank")
    ax.set_title("start" if s == 0 else f"after step {s - 1}: r sent chunk (r-{s - 1}) mod {p}", fontsize=9)
fig.colorbar(image, ax=fig.axes, label="ranks summed into the chunk", shrink=0.8)
fig.suptitle(f"Ring reduce-scatter, {p} ranks: {p - 1} steps; then {p - 1} all-gather steps")
course.show(fig, "ring-reduce-scatter")

# %% [markdown]
# ## 4. tinymed.distributed
#
# tinymed's collectives run on **MPI**, what clusters already use: `mpiexec -n 4 python
# train.py` starts four copies of a program, and MPI tells each its rank and the world size.
# The API mirrors `torch.distributed`: `init_process_group("mpi")`, `get_rank()`,
# `all_reduce(tensor, op)`, `broadcast`, `all_gather`, `barrier`. MPI's own all-reduce picks
# its algorithm (a ring, or a tree for small messages) by size. Every collective first checks
# that all ranks called the same thing with the same shape, and has a timeout, so that a
# mistake is an error on every rank rather than a hang.
#
# `DistributedDataParallel` (DDP) wraps a model. At construction it broadcasts rank 0's
# parameters, so all copies start equal. It differs from PyTorch's in one visible line: the
# average is explicit, `reduce_gradients()` after `backward()` (PyTorch hides it in hooks that
# overlap it with the backward pass). The file, and the step as its docstring writes it:

# %%
source = Path(inspect.getsourcefile(DistributedDataParallel))
print(source.relative_to(Path(tm.__file__).parent.parent), "and", Path(inspect.getsourcefile(dist.all_reduce)).name)
print(textwrap.indent(inspect.getdoc(DistributedDataParallel.reduce_gradients).split("\n\n")[0], "    "))
docstring = inspect.getdoc(sys.modules[DistributedDataParallel.__module__])
print(docstring[docstring.index("    loss = F.cross_entropy") :].split("\n\n")[0])

# %% [markdown]
# ## 5. Two processes, one model
#
# The script below trains LeNet for a few steps with DDP. Both ranks draw the same global
# batches (same seed); `dist.shard` keeps each rank's half; after backward, `reduce_gradients()`
# averages. Rank 0 saves the parameters. We run it under `mpiexec -n 2`, then train the same
# model on the same global batches in this process, and compare. (The training command does
# the same wiring: `mpiexec -n 2 tinymed train cnn` trains the pneumonia CNN data-parallel.)

# %%
SCRIPT = """
import sys
import numpy as np
import tinymed as tm
import tinymed.distributed as dist
import tinymed.functional as F
from tinymed import optim
from tinymed.models import LeNet
from tinymed.nn.parallel import DistributedDataParallel

steps, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
launched = dist.is_mpi_launched()
if launched:
    dist.init_process_group("mpi")
tm.manual_seed(0)
model = DistributedDataParallel(LeNet()) if launched else LeNet()
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
rng = np.random.default_rng(1)
for step in range(steps):
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 2, batch)
    x, y = dist.shard(x, y)
    optimizer.zero_grad()
    F.cross_entropy(model(tm.from_numpy(x)), tm.from_numpy(y)).backward()
    if launched:
        model.reduce_gradients()
    optimizer.step()
if dist.is_main_process():
    np.savez(out, **{k: np.asarray(v) for k, v in model.state_dict().items()})
    print(f"world size {dist.get_world_size() if launched else 1}: {steps} steps of {batch} images saved to {out}")
"""
folder = Path(tempfile.mkdtemp(prefix="tinymed-ddp-"))
(folder / "ddp_lenet.py").write_text(SCRIPT)
steps, global_batch = course.pick(5, 2), 16
env = {**os.environ, "PYTHONPATH": str(Path(tm.__file__).parent.parent), "OMP_NUM_THREADS": "1"}
env["OPENBLAS_NUM_THREADS"] = "1"


def run(*launcher, out):
    command = [*launcher, sys.executable, str(folder / "ddp_lenet.py"), str(steps), str(global_batch), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    print(done.stdout.strip() or done.stderr.strip()[-2000:])
    return done.returncode == 0


# %%
mpiexec = shutil.which("mpiexec")
if mpiexec and dist.is_available():
    assert run(mpiexec, "-n", "2", out=folder / "two.npz") and run(out=folder / "one.npz"), "a run failed (above)"
    two, one = np.load(folder / "two.npz"), np.load(folder / "one.npz")
    gaps = {k: float(np.abs(two[k] - one[k]).max()) for k in one.files}
    print(f"largest parameter difference, 2 processes vs 1: {max(gaps.values()):.1e} ({max(gaps, key=gaps.get)})")
    assert max(gaps.values()) < 1e-4
else:
    print("skipped: this section needs mpiexec and mpi4py (pip install 'tinymed[distributed]')")

# %% [markdown]
# The two runs end apart by round-off only (the difference printed above, around $10^{-8}$ here)
# after several steps of SGD with momentum: float32 sums taken in another order, which the
# training does not amplify over a few steps (over thousands it can; then the runs are equally
# good, not bitwise equal). Inside one MPI job the ranks are *bitwise* equal to each other,
# since they all apply the same averaged gradient; `tinymed.nn.parallel.verify_in_sync` checks
# exactly that, once an epoch.
#
# ## 6. How far does it scale?
#
# Data parallelism divides the compute and adds the all-reduce. For a global batch $B$ on $p$
# ranks, with $c$ seconds of compute per image, a gradient of $S$ bytes, links of bandwidth
# $\beta$ and a latency $\alpha$ per message:
#
# $$T(p) = \frac{B\,c}{p} + \underbrace{2(p-1)\,\alpha + \frac{2(p-1)}{p}\,\frac{S}{\beta}}_{\text{ring all-reduce}},
#   \qquad \text{efficiency}(p) = \frac{T(1)}{p\,T(p)} .$$
#
# (tinymed averages after backward; PyTorch overlaps the all-reduce with the backward pass,
# which hides part of it.) The compute per image measured here, on this CPU:

# %%
batch = course.pick(32, 8)
x = tm.tensor(data.images[:batch].astype(np.float32) / 255.0)
y = tm.tensor(data.labels[:batch])
seconds = []
for _ in range(course.pick(5, 2)):
    start = time.perf_counter()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    seconds.append(time.perf_counter() - start)
c = float(np.median(seconds)) / batch
S = 4 * sum(p_.numel() for p_ in model.parameters())
print(f"compute {1e3 * c:.2f} ms per image; LeNet's gradient is {S / 1e6:.2f} MB")

# %% [markdown]
# The network: 10 Gbit/s Ethernet, $\beta = 1.25$ GB/s and $\alpha = 25\,\mu$s per message
# through TCP (assumptions, stated: the same ones `benchmarks/bench_distributed.py` uses). The
# efficiency for a few global batch sizes, against the number of ranks:

# %%
beta, alpha = 1.25e9, 25e-6
ranks = np.array([1, 2, 4, 8, 16, 32, 64, 128])


def step_seconds(B, p_):
    return B * c / p_ + 2 * (p_ - 1) * alpha + 2 * (p_ - 1) / p_ * S / beta


fig = Figure(figsize=(7.5, 4.5), layout="constrained")
ax = fig.add_subplot()
for B in (64, 256, 1024, 4096):
    efficiency = step_seconds(B, 1) / (ranks * step_seconds(B, ranks))
    ax.plot(ranks, efficiency, "o-", label=f"global batch {B}")
ax.axhline(0.8, color="gray", ls=":", label="80%")
ax.set(xscale="log", xlabel="ranks p", ylabel="efficiency T(1) / (p T(p))", ylim=(0, 1.05))
ax.set_xticks(ranks, [str(p_) for p_ in ranks])  # the rank counts themselves, not powers of ten
ax.set_title(f"LeNet on 10 Gbit/s Ethernet ({1e3 * c:.1f} ms of compute per image, this CPU)")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
course.show(fig, "scaling")

# %% [markdown]
# Efficiency stays above 80% while the all-reduce costs at most a quarter of each rank's
# compute: $T_\text{all-reduce}(p) \le \tfrac14\,Bc/p$, that is a **per-rank batch** of at least
# $b = B/p \ge 4\,T_\text{all-reduce}(p)/c$. LeNet is small (a quarter of a megabyte of
# gradient) and this CPU is slow, so the communication is cheap next to the compute; on a GPU,
# $c$ is a hundred times smaller and the same network needs a per-rank batch a hundred times
# larger. That is why large models are trained with large batches.

# %%
for p_ in (8, 64):
    allreduce = step_seconds(0, p_)
    print(f"p = {p_:>3}: all-reduce {1e3 * allreduce:.2f} ms -> per-rank batch >= {4 * allreduce / c:.1f} for 80%")
    for B in (64, 1024):
        print(f"         global batch {B:>5}: efficiency {step_seconds(B, 1) / (p_ * step_seconds(B, p_)):.0%}")

# %% [markdown]
# `python benchmarks/bench_distributed.py` times real training steps of MedCNN (a larger model
# than this chapter's LeNet) with one and with two processes on one machine, and compares them
# with this model; its results, where they were committed:

# %%
results = course.chapters_dir().parent / "benchmarks" / "results" / "distributed.json"
if results.is_file():
    bench = json.loads(results.read_text())
    print(f"{bench['cpus']} CPUs, load average {bench['load_average_before'][0]:.1f} before the run")
    for name, row in bench["measured"].items():
        print(f"  {name:>32}: step {1e3 * row['step']:6.1f} ms, of which all-reduce {1e3 * row['reduce']:5.1f} ms")
    print(f"weak-scaling efficiency (2 processes vs 1): {bench['weak_scaling_efficiency']:.0%}")
else:
    print("no committed benchmarks/results/distributed.json here (it comes with a git clone of tinymed)")

# %% [markdown]
# Two processes on one 2-core machine reach the efficiency printed above: 95% in the committed
# run, made on an idle machine, and 70% in an earlier run while other programs were using it.
# The all-reduce between them is cheap (shared memory), but two processes compete for the same
# memory bandwidth and caches, and each waits for the slower one at every all-reduce, which
# another program on the machine makes slower still.
#
# ## 7. Honest limits
#
# - **The model is a model.** It leaves out the fixed cost of a step (Python, launches), the
#   slowest rank (every all-reduce waits for it: one busy machine slows them all), and the
#   overlap PyTorch gets from hooks. Measure before buying machines.
# - **Same model, not same training.** Scaling $p$ at a fixed per-rank batch grows the global
#   batch; a larger batch needs a retuned learning rate (often scaled with it, after a
#   warm-up: a few hundred steps whose learning rate climbs from small to the full value), and
#   past some size it generalises worse. Efficiency is about seconds per step,
#   not about how many steps a good model takes.
# - **BatchNorm and padding** make the data-parallel run differ slightly from one process
#   (sections 1 and 2).
# - **One machine is not a cluster.** Section 5 ran two processes on one machine: it checks
#   correctness, not speed. MPI over a network has the latencies of section 6, and failures:
#   tinymed's collectives time out rather than hang, and the job is aborted.
# - **Privacy is not solved by this.** Every rank sees its share of the images; training
#   across hospitals without moving images (federated learning) is another method, with its
#   own problems.
#
# ## Exercises
#
# Exercises 13.1 to 13.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 13           # in the folder holding your 13_distributed.py or .ipynb
# ```
#
# It runs only the cells tagged `exercise` and prints PASS or FAIL with a hint for each.
# Exercises 13.4 and 13.5 are for you and your instructor.
#
# **Exercise 13.1 (ring all-reduce).** Write `ring_all_reduce(buffers)`: `buffers` is a list of $p$
# 1-D NumPy arrays of the same length, one per rank. Simulate the ring: split each into $p$
# chunks (`np.array_split`, so the length need not divide by $p$), do the $p-1$ reduce-scatter
# steps of section 3, then the $p-1$ all-gather steps, in each step every rank sending exactly
# one chunk to the next rank. Return `(results, steps)`: a list of $p$ new arrays, each the
# elementwise sum, and the number of steps taken. Leave the inputs unchanged.


# %% tags=["exercise"]
def ring_all_reduce(buffers):
    import numpy as np

    # BEGIN SOLUTION
    p = len(buffers)
    chunks = [np.array_split(np.array(b, copy=True), p) for b in buffers]
    steps = 0
    for step in range(p - 1):  # reduce-scatter: rank r ends with the sum of chunk (r + 1) % p
        sent = [(r, (r - step) % p, chunks[r][(r - step) % p].copy()) for r in range(p)]
        for r, c, values in sent:
            chunks[(r + 1) % p][c] += values
        steps += 1
    for step in range(p - 1):  # all-gather: the complete chunks go round once more
        sent = [(r, (r + 1 - step) % p, chunks[r][(r + 1 - step) % p].copy()) for r in range(p)]
        for r, c, values in sent:
            chunks[(r + 1) % p][c] = values
        steps += 1
    return [np.concatenate(parts) for parts in chunks], steps
    # END SOLUTION


# %% [markdown]
# **Exercise 13.2 (DistributedSampler's arithmetic).** Write `shard_indices(n, rank, world_size,
# drop_last=False)`: the list of indices (of a dataset of `n`, not shuffled) that rank `rank`
# of `world_size` reads, as section 2 describes: pad by repeating from the start to a multiple
# of `world_size`, or with `drop_last` cut the tail to one; then every `world_size`-th index
# from position `rank`.


# %% tags=["exercise"]
def shard_indices(n, rank, world_size, drop_last=False):
    import math

    # BEGIN SOLUTION
    if drop_last:
        per_rank = n // world_size
    else:
        per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    order = [i % n for i in range(total)] if n else []
    return order[rank:total:world_size]
    # END SOLUTION


# %% [markdown]
# **Exercise 13.3 (the cost model).** Write `predicted_step_time(compute_s, p, gradient_bytes,
# bandwidth, latency)`: the step time $T(p)$ of section 6, with `compute_s` the compute time of
# the whole global batch on one rank ($Bc$), bandwidth in bytes per second, latency in seconds
# per message. One rank communicates nothing.


# %% tags=["exercise"]
def predicted_step_time(compute_s, p, gradient_bytes, bandwidth, latency):
    # BEGIN SOLUTION
    return compute_s / p + 2 * (p - 1) * latency + 2 * (p - 1) / p * gradient_bytes / bandwidth
    # END SOLUTION


# %% [markdown]
# **Exercise 13.4 (in words): why not a tree, and why not a parameter server?** Rank 0 could gather every
# gradient, sum, and broadcast the result. Count the bytes through rank 0's link and the number
# of steps, against the ring's. Then look at the ring's $2(p-1)\alpha$ term: for what gradient
# sizes is a tree (about $2\log_2 p$ steps) better? Which would you pick for LeNet's 0.24 MB on
# 64 ranks over 10 Gbit/s Ethernet, and for a 400 MB model?
#
# **Exercise 13.5 (experiment): shares of unequal size.** In section 1, split the 16 images into shares
# of 6, 6 and 4 and average the three gradients with equal weights. Predict first: larger or
# smaller gap than before, and by how much? Run it, then fix the average by weighting each
# share by its size. What does this say about `dist.shard` refusing a batch that does not
# divide evenly, and about the last, smaller batch of an epoch (`drop_last=True`)?
