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
# # Chapter 7 · CUDA C kernels through CuPy
#
# Chapter 6 wrote kernels in Python and ran them, slowly, in Numba's simulator. tinymed's main
# GPU backend is the same formulas written in CUDA C, NVIDIA's C++ dialect, compiled while
# the program runs by **NVRTC**, NVIDIA's run-time compiler, and launched by CuPy. A compiler
# sits between the source you read and what the GPU runs, and it decides things that matter:
# how many registers each thread gets, how much shared memory a block holds, and therefore how
# many blocks a multiprocessor can run at once. It can even change an answer: one flag that
# CuPy adds behind your back once made tinymed's max pooling pick a different pixel than the
# NumPy reference. What does the compiler make of a kernel, and how can you read it on a
# laptop with no GPU?
#
# **Learning objectives.** After this chapter you can:
#
# - Read conv.cu and gemm.cu and map them back to the formulas.
# - Compile a kernel with NVRTC on any machine and read its register and shared-memory use.
# - Launch the kernels through CuPy where a GPU exists and compare them with the reference.
#
# **You need** chapter 6 (threads, blocks, shared memory, tiling) and a little C: `for`, `if`,
# pointers as arrays. NVRTC comes as a Python wheel and needs no GPU (`pip install cuda-bindings
# nvidia-cuda-nvrtc`, which `tinymed[course]` includes); running the kernels needs an NVIDIA GPU
# and `pip install "tinymed[cuda]"`, and the cells that do are skipped, saying so, without one.
# **Time**: about two hours with the exercises. Run it as a script (`python
# tutorials/07_cuda_kernels.py`, figures go to `tutorials/figures/07_cuda_kernels/`) or as a
# notebook (`tinymed course release DIR` writes both); with `TINYMED_FAST=1` it compiles less.

# %%
import copy
import re
import time
from importlib import resources

import numpy as np
from matplotlib.figure import Figure

import tinymed as tm
import tinymed.nn as nn
from tinymed import course
from tinymed.backends import cupy_cuda
from tinymed.kernels import NVRTC_OPTIONS, cuda_source

try:
    from cuda.bindings import nvrtc
except ImportError as error:
    raise SystemExit(
        f"this chapter compiles with NVRTC: pip install cuda-bindings nvidia-cuda-nvrtc ({error})"
    ) from None

GPU = tm.cuda.is_available()
print(
    f"tinymed {tm.__version__}, fast mode {'on' if course.fast() else 'off'}; NVRTC {nvrtc.nvrtcVersion()[1:]}; "
    + ("a GPU runs the kernels" if GPU else "no GPU: kernels are compiled and read, not run")
)

# %% [markdown]
# ## 1. Reading conv.cu: the formula, one thread per output
#
# The CUDA C files ship inside tinymed as the package `tinymed.kernels` (folder `cuda/`). We
# read them from the installed files, with their own line numbers, so that what you see here
# is what runs. The convolution of chapter 2, with the padding and stride of its section 7,
#
# $$y_{n,o,i,j} = b_o + \sum_{c}\sum_{p,q} w_{o,c,p,q}\; x_{n,\,c,\; i S_h - P_h + p D_h,\; j S_w - P_w + q D_w},$$
#
# (stride $S$, padding $P$ and dilation $D$ along each axis, as in chapter 2; $p, q$ are the
# kernel's taps)
#
# is the kernel `conv2d_forward`. Its first lines are chapter 6's pattern, one thread per
# output, in C: the thread number from `blockIdx`, `blockDim` and `threadIdx`, the guard
# against the spare threads, the unflattening into $(n, \text{channel group}, i, j)$.

# %%
CUDA_FILES = resources.files("tinymed.kernels").joinpath("cuda")


def show_lines(file_name: str, first: str, last: str) -> None:
    """Print the lines of an installed CUDA file from the one containing `first` to the next containing `last`."""
    lines = CUDA_FILES.joinpath(file_name).read_text().splitlines()
    begin = next(k for k, line in enumerate(lines) if first in line)
    end = next(k for k in range(begin + 1, len(lines)) if last in lines[k])
    print(f"{file_name}, lines {begin + 1}-{end + 1}:")
    for k in range(begin, end + 1):
        print(f"{k + 1:4d} {lines[k]}")


show_lines("conv.cu", "template <typename T>", "const int n = t / (OW * OH * groups);")

# %% [markdown]
# Three things are new compared with chapter 6's Python:
#
# - `template <typename T>`: one source for `float` and `double`; the launcher asks NVRTC for
#   `conv2d_forward<float>` or `<double>` by name.
# - Arrays arrive as bare pointers (`const T* x`) with their sizes as separate integers: the
#   kernel computes every address itself, `x[((n*C + c)*H + h)*W + v]` for the NCHW layout.
# - `__launch_bounds__(BLOCK_THREADS, 4)` promises the compiler blocks of 256 threads and asks
#   it to leave room for 4 of them per multiprocessor. Section 5 shows what that costs.
#
# Then the sum itself. Each thread computes `CHANNELS_PER_THREAD = 4` output channels of its
# pixel, so that every input value it loads from global memory serves four multiply-adds from
# registers: the same trade as chapter 6's tiles, in a different shape.

# %%
show_lines("conv.cu", "T acc[CHANNELS_PER_THREAD];", "y[(((size_t)n * O + o0 + u)")

# %% [markdown]
# ## 2. Reading gemm.cu: chapter 6's tiles, in C
#
# `gemm_tiled` is the matrix product behind every `F.linear`, forward and backward (the
# convolution's gradients have kernels of their own in conv.cu). Its shared tiles are declared with `__shared__`, `__syncthreads()` is chapter 6's
# `cuda.syncthreads()`, and each thread keeps a $4\times4$ patch of sums in registers:

# %%
show_lines("gemm.cu", "__shared__ T a_slice", "__shared__ T b_slice")
show_lines("gemm.cu", "for (int k0 = k_begin; k0 < k_end; k0 += GEMM_K_STEP)", "__syncthreads();  // everyone")
constants = dict(re.findall(r"constexpr int (\w+) = (\d+);", CUDA_FILES.joinpath("gemm.cu").read_text()))
print({name: int(value) for name, value in constants.items()})

# %% [markdown]
# From those constants: two tiles of $16 \times (64 + 1)$ elements each, so the block's
# shared memory should be $2 \cdot 16 \cdot 65 \cdot 4 = 8320$ bytes in float32 and twice
# that in float64. The compiler will tell us whether we read it right.
#
# ## 3. Compiling with NVRTC, on any machine
#
# NVRTC is a library: give it the source text and a command line, and it returns a log and
# **PTX**, NVIDIA's portable assembly language, for a *virtual* architecture
# (`--gpu-architecture=compute_90`, the H100's). The driver turns PTX into the GPU's machine
# code when the kernel is loaded. Asked for a *real* architecture (`sm_90`) NVRTC runs that
# last step itself, the assembler `ptxas`, and `--ptxas-options=-v` makes `ptxas` report in
# the log what each kernel uses. None of this needs a GPU. The cell below is the whole
# procedure with `cuda-bindings`, NVIDIA's Python wrapper of the C API: create a program, name
# the template instances we want, compile, read the log, the PTX and the compiled names.

# %% tags=["used-by-exercises"]
from typing import NamedTuple

from cuda.bindings import nvrtc


class Compiled(NamedTuple):
    ok: bool  # NVRTC_SUCCESS
    log: str  # errors, warnings, and ptxas's report with --ptxas-options=-v
    ptx: str | None  # for a compute_XX target
    names: dict  # "kernel<float>" -> its name in the PTX (C++ "mangles" names to encode types)


def _nvrtc(call):
    """The values an NVRTC call returns after its status, which must be success."""
    status, *values = call
    if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"NVRTC failed: {status}")
    return values[0] if len(values) == 1 else values


def _nvrtc_text(program, size_of, read) -> str:
    buffer = b" " * _nvrtc(size_of(program))
    _nvrtc(read(program, buffer))
    return buffer.rstrip(b"\0").decode()


def nvrtc_compile(source: str, options, instantiate=(), file_name="kernel.cu") -> Compiled:
    """Compile CUDA C `source` with NVRTC's command line `options`, instantiating the templates `instantiate`."""
    program = _nvrtc(nvrtc.nvrtcCreateProgram(source.encode(), file_name.encode(), 0, [], []))
    try:
        for expression in instantiate:
            _nvrtc(nvrtc.nvrtcAddNameExpression(program, expression.encode()))
        (status,) = nvrtc.nvrtcCompileProgram(program, len(options), [o.encode() for o in options])
        log = _nvrtc_text(program, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog)
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            return Compiled(False, log, None, {})
        ptx = None
        if any("compute_" in option for option in options):
            ptx = _nvrtc_text(program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
        names = {e: _nvrtc(nvrtc.nvrtcGetLoweredName(program, e.encode())).decode() for e in instantiate}
        return Compiled(True, log, ptx, names)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


# CuPy compiles with the options tinymed gives it, then appends "-ftz=true" (section 4).
CUPY_OPTIONS = (*NVRTC_OPTIONS, "-ftz=true")

# %% [markdown]
# tinymed hands CuPy each file as `cuda_source(family)` (the `.cu` text with its `#include`d
# headers pasted in) and the options `NVRTC_OPTIONS` of `tinymed.kernels`; CuPy then adds `-ftz=true`
# after them (section 4 is about that flag). We do the same. First the PTX of the float
# instance of `gemm_tiled`: its entry point and its shared-memory declarations.

# %%
options = [*CUPY_OPTIONS, "--gpu-architecture=compute_90"]
start = time.perf_counter()
gemm = nvrtc_compile(cuda_source("gemm"), options, ["gemm_tiled<float>"], "gemm.cu")
print(f"compiled in {time.perf_counter() - start:.2f} s; {len(gemm.ptx.splitlines())} lines of PTX")
entry = gemm.names["gemm_tiled<float>"]
print("entry:", entry)
shared = re.findall(r"\.shared \.align \d+ \.b8 \w+?(\w_slice)\[(\d+)\]", gemm.ptx)
print("shared declarations:", shared)
assert sum(int(size) for _, size in shared) == 2 * 16 * 65 * 4  # check yourself: section 2's arithmetic

# %% [markdown]
# The PTX is readable once you know that `ld.global` loads from global memory, `ld.shared` and
# `st.shared` use shared memory, `fma` is a fused multiply-add (one rounding; `.ftz` because of
# section 4's flag), and `bar.sync` is `__syncthreads()`. Count them in the text of the kernel
# (the text, not how often they run: the loop over $k_0$ runs them again and again). The inner
# loop over the 16 rows of a slice has been unrolled completely: $16 \cdot (4 + 4)$ shared loads
# into registers and $16 \cdot 4 \cdot 4$ multiply-adds, written out one by one, for each
# pass of the loop over $k_0$.

# %%
body = gemm.ptx[gemm.ptx.index(f".entry {entry}") :]
counts = {
    name: len(re.findall(pattern, body))
    for name, pattern in [
        ("ld.global", r"ld\.global"),
        ("st.shared", r"st\.shared"),
        ("ld.shared", r"ld\.shared"),
        ("fma (float)", r"fma\.rn(?:\.ftz)?\.f32"),
        ("bar.sync", r"bar\.sync"),
        ("st.global", r"st\.global"),
    ]
}
for name, count in counts.items():
    print(f"{name:>12}: {count:4d} in the PTX of gemm_tiled<float>")
assert counts["fma (float)"] == 16 * 4 * 4 and counts["bar.sync"] == 2  # check yourself

# %% [markdown]
# Now ask `ptxas` for machine code and its report: registers per thread, shared memory per
# block, bytes spilled to slow "local" memory when the registers do not suffice. The report is
# in the log, one block of lines per kernel; we turn it into a table.

# %%
ENTRY = re.compile(r"Compiling entry function '(\w+)'")
SPILLS, USED = re.compile(r"(\d+) bytes spill stores"), re.compile(r"Used (\d+) registers(?:[^\n]*?(\d+) bytes smem)?")


def ptxas_report(log: str) -> dict:
    """{lowered kernel name: (registers per thread, shared bytes per block, bytes spilled)} from a ptxas -v log."""
    pieces = ENTRY.split(log)  # [before, name, its lines, name, its lines, ...]
    report = {}
    for name, lines in zip(pieces[1::2], pieces[2::2]):
        (registers, smem), spilled = USED.search(lines).groups(), SPILLS.search(lines).group(1)
        report[name] = (int(registers), int(smem or 0), int(spilled))  # no smem in the log means 0
    return report


def resources_used(family: str, types=("float", "double")) -> dict:
    """{'kernel<type>': (registers per thread, shared bytes per block, bytes spilled)} from ptxas's report for sm_90."""
    wanted = [f"{kernel}<{t}>" for kernel in cupy_cuda.KERNELS[family] for t in types]
    result = nvrtc_compile(
        cuda_source(family), [*CUPY_OPTIONS, "--gpu-architecture=sm_90", "--ptxas-options=-v"], wanted, f"{family}.cu"
    )
    assert result.ok and "spill stores" in result.log, result.log
    by_name = ptxas_report(result.log)
    return {expression: by_name[lowered] for expression, lowered in result.names.items()}


families = course.pick(["gemm", "conv", "pool"], ["gemm", "pool"])
used = {
    k: v for family in families for k, v in resources_used(family, course.pick(("float", "double"), ("float",))).items()
}
print(f"{'kernel':>32} {'registers':>9} {'shared bytes':>12} {'spilled bytes':>13}")
for expression, (registers, smem, spilled) in used.items():
    print(f"{expression:>32} {registers:>9} {smem:>12} {spilled:>13}")
assert used["gemm_tiled<float>"][1] == 8320  # check yourself: ptxas agrees with the PTX and with section 2

# %% [markdown]
# A double takes two 32-bit registers, and the double instances take twice the shared memory;
# where the compiler is free (`gemm_tiled`, the pooling kernels) they also take more
# registers. The convolution kernels are not free: in the full run they sit at or just under
# 64 registers in both precisions. That is `__launch_bounds__(256, 4)` at work, since
# $4 \times 256$ threads $\times\, 64$ registers is exactly the 65,536 registers of a
# multiprocessor: the compiler keeps fewer values in registers rather than exceed it.
#
# ## 4. One flag, two answers: flush-to-zero
#
# Floating-point numbers below $2^{-126} \approx 1.2\times10^{-38}$ in float32 are
# **subnormal**: they lose precision gradually down to $1.4\times10^{-45}$. GPUs can treat
# them as zero to save work, and CuPy compiles every kernel with `-ftz=true` ("flush to
# zero"), added after the caller's options, where it wins. Then every float32 instruction
# reads a subnormal as zero, **comparisons included**. Compile the one-line comparison
# `a > b` both ways and look at the instruction that differs:

# %%
compare = 'extern "C" __global__ void greater(const float* a, const float* b, bool* out) { *out = *a > *b; }'
setp = {}
for flags in ([], ["-ftz=true"]):
    ptx = nvrtc_compile(compare, [*flags, "--gpu-architecture=compute_90"]).ptx
    setp[" ".join(flags) or "(no flag)"] = re.search(r"setp\.\S+", ptx).group()
for flags, instruction in setp.items():
    print(f"{flags:>12}: {instruction}")
assert setp["-ftz=true"] == "setp.gt.ftz.f32" and setp["(no flag)"] == "setp.gt.f32"

# %% [markdown]
# `setp.gt.ftz.f32` asks "is $a > b$?" after flushing both to zero. For max pooling over a
# window holding $0$ and the subnormal $10^{-45}$, that decides the argmax. In NumPy, which
# never flushes, and in a flushing comparison emulated with NumPy:

# %%
window = np.array([0.0, 1e-45], dtype=np.float32)
tiny = np.finfo(np.float32).smallest_normal


def flushed(v):
    return np.where(np.abs(v) < tiny, np.float32(0), v)


best_ieee = best_ftz = 0
for k in range(1, window.size):
    best_ieee = k if window[k] > window[best_ieee] else best_ieee
    best_ftz = k if flushed(window[k]) > flushed(window[best_ftz]) else best_ftz
print(f"window {window}: argmax without flushing {best_ieee}, with flushing {best_ftz}")
assert best_ieee == int(np.argmax(window)) == 1 and best_ftz == 0

# %% [markdown]
# The reference (and PyTorch) route the gradient to pixel 1; a flushing kernel routes it to
# pixel 0. A rare case, but a kernel that disagrees with the reference on any input is wrong,
# and a test that draws inputs with hypothesis (chapter 6) finds such cases. tinymed's fix is in
# `float_bits.cuh`: compare the **bits**, as integers, which no float flag touches. An IEEE
# float is a sign bit and a magnitude whose bits order like the value, so
# $\text{ordered}(x) = \pm\,\text{magnitude}$ orders like $x$:

# %%
show_lines("float_bits.cuh", "__device__ __forceinline__ long long ordered(float x)", "}")

# %% [markdown]
# The same function in NumPy, checked on normal numbers, subnormals, zeros of both signs and
# infinities: sorting by `ordered` gives the order of the values.


# %%
def ordered(v: np.ndarray) -> np.ndarray:
    bits = v.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


values = np.array([-np.inf, -3.0, -1e-45, -0.0, 0.0, 1e-45, 1e-40, tiny, 2.5, np.inf], dtype=np.float32)
shuffled = np.random.default_rng(7).permutation(values)
print("ordered:", ordered(values))
assert np.array_equal(np.sort(shuffled), shuffled[np.argsort(ordered(shuffled), kind="stable")])  # same order
pool = nvrtc_compile(
    cuda_source("pool"), [*CUPY_OPTIONS, "--gpu-architecture=compute_90"], ["max_pool2d_forward<float>"], "pool.cu"
)
flushing = re.findall(r"setp\.\w+\.ftz\.f32", pool.ptx)
print("float comparisons that -ftz=true can change in pool.cu's max_pool2d_forward<float>:", flushing or "none")
assert not flushing

# %% [markdown]
# ## 5. Launch geometry and occupancy
#
# A launch needs two numbers per kernel: threads per block, and blocks in the grid. For one
# thread per output element and blocks of $T$ threads,
# $\text{blocks} = \lceil n / T \rceil$, computed in integers as $(n + T - 1) \,//\, T$.
# For a batch of 50 X-rays through chapter 2's first convolution (8 channels, $28\times28$):

# %%
N, O, OH, OW = 50, 8, 28, 28
threads_per_block = cupy_cuda.THREADS_PER_BLOCK
groups = (O + cupy_cuda.CHANNELS_PER_THREAD - 1) // cupy_cuda.CHANNELS_PER_THREAD
threads_needed = N * groups * OH * OW
blocks = (threads_needed + threads_per_block - 1) // threads_per_block
print(
    f"conv2d_forward: {threads_needed:,} threads (4 channels each) -> {blocks:,} blocks of {threads_per_block}, "
    f"{blocks * threads_per_block - threads_needed} spare"
)

# %% [markdown]
# Those blocks are spread over the H100's 132 **multiprocessors** (SMs). An SM runs several
# blocks at once, switching between their warps whenever one waits for memory: the more warps
# are resident, the better it hides that wait. How many blocks fit is the smallest of four
# limits, here for an H100 (compute capability 9.0, from NVIDIA's CUDA C Programming Guide and
# occupancy calculator):

# %% tags=["used-by-exercises"]
H100 = {
    "multiprocessors": 132,
    "warp_size": 32,
    "max_threads_per_block": 1024,
    "max_warps_per_sm": 64,  # 2048 threads
    "max_blocks_per_sm": 32,
    "registers_per_sm": 65536,  # 32-bit registers
    "max_registers_per_thread": 255,
    "register_allocation_unit": 256,  # registers are given to each warp in multiples of 256
    "shared_memory_per_sm": 233472,  # 228 KiB
    "max_shared_memory_per_block": 232448,  # 227 KiB
    "reserved_shared_memory_per_block": 1024,  # CUDA keeps 1 KiB of each block's share for itself
    "shared_allocation_unit": 128,  # bytes
}

# %% [markdown]
# For `gemm_tiled<float>`, with the registers and shared memory `ptxas` reported:
#
# - **warps**: a block of 256 threads is 8 warps; 64 warps per SM allow 8 blocks;
# - **registers**: a warp takes its 32 threads' registers, rounded up to a multiple of 256;
#   65,536 registers hold that many warps, in whole blocks;
# - **shared memory**: each block takes its bytes plus 1 KiB reserved, rounded up to 128;
# - **blocks**: at most 32.

# %%
registers, smem, _ = used["gemm_tiled<float>"]
warps = 256 // H100["warp_size"]
by_warps = H100["max_warps_per_sm"] // warps
unit = H100["register_allocation_unit"]
registers_per_warp = (registers * 32 + unit - 1) // unit * unit
by_registers = H100["registers_per_sm"] // registers_per_warp // warps
share = (smem + H100["reserved_shared_memory_per_block"] + 127) // 128 * 128
by_shared = H100["shared_memory_per_sm"] // share
limits = {"warps": by_warps, "registers": by_registers, "shared memory": by_shared, "blocks": 32}
resident = min(limits.values())
print(f"gemm_tiled<float>: {registers} registers, {smem} shared bytes; blocks per SM allowed by", limits)
print(
    f"-> {resident} blocks = {resident * warps} of 64 warps: occupancy {resident * warps / 64:.0%}, "
    f"limited by {min(limits, key=limits.get)}"
)

# %% [markdown]
# The picture shows the register limit for any kernel with blocks of 256 threads. Occupancy
# falls in steps as registers per thread grow; tinymed's float kernels are marked where
# `ptxas` put them (the table above has the doubles). More occupancy is not always faster:
# `gemm_tiled` gives up warps for its 16 sums per thread in registers, which for a matrix
# product usually pays more than extra warps would: fewer loads for every multiply-add.

# %%
per_thread = np.arange(16, 256)
per_warp = np.ceil(per_thread * 32 / unit) * unit
occupancy = np.minimum(H100["registers_per_sm"] // per_warp // warps, by_warps) * warps / 64
fig = Figure(figsize=(8, 4.2), layout="constrained")
ax = fig.add_subplot()
ax.step(per_thread, occupancy * 100, where="post", label="limit from registers (256-thread blocks)")
for expression, (r, *_) in ((e, v) for e, v in used.items() if e.endswith("<float>")):
    level = min(H100["registers_per_sm"] // ((r * 32 + unit - 1) // unit * unit) // warps, by_warps) * warps / 64
    ax.plot(r, level * 100, "o", label=f"{expression}: {r} registers")
ax.set(
    xlabel="registers per thread",
    ylabel="occupancy (% of 64 warps per SM)",
    ylim=(0, 105),
    title="H100: how registers per thread cap the warps an SM can hold",
)
ax.legend(loc="upper right", fontsize=8)
course.show(fig, "occupancy-registers")

# %% [markdown]
# ## 6. Running them, where a GPU exists
#
# On a machine with an NVIDIA GPU and `tinymed[cuda]`, `tm.device("cuda")` launches these
# kernels through CuPy (`cupy.RawModule`, which calls NVRTC as we did and caches the result
# on disk). The last cells move a small CNN there and compare it with the NumPy reference,
# then time a large matrix product. Without a GPU they say so and stop.

# %%
x_np = np.random.default_rng(7).random((8, 1, 28, 28), dtype=np.float32)
cpu_model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 2)
)
if GPU:
    reference = cpu_model(tm.tensor(x_np)).numpy()
    on_gpu = copy.deepcopy(cpu_model).to("cuda")(tm.tensor(x_np).to("cuda")).numpy()
    print("largest difference, CUDA C kernels vs NumPy reference:", np.abs(on_gpu - reference).max())
    assert np.allclose(on_gpu, reference, atol=1e-4)  # check yourself: same model, same numbers
else:
    print("skipped: no GPU here (tm.cuda.is_available() is False); the kernels were compiled and read above")

# %%
if GPU:
    import cupy  # there is a GPU, so CuPy is installed: its device synchronisation

    side = course.pick(4096, 1024)
    a, b = (tm.randn(side, side, device="cuda") for _ in range(2))
    (a @ b).numpy()  # the first call compiles gemm.cu (or loads it from CuPy's cache)
    times = []
    for _ in range(5):
        cupy.cuda.runtime.deviceSynchronize()
        start = time.perf_counter()
        a @ b
        cupy.cuda.runtime.deviceSynchronize()  # a launch returns at once: wait for the GPU to finish
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    print(f"{side} x {side} product: {seconds * 1e3:.2f} ms (median of 5), {2 * side**3 / seconds / 1e12:.1f} TFLOP/s")
else:
    print("skipped: no GPU here; chapter 12 models the GPU's costs")

# %% [markdown]
# ## 7. Honest limits
#
# - **Compiling is not running.** NVRTC and `ptxas` prove that a kernel compiles for the H100
#   and what it uses; they say nothing about whether it computes the right numbers. That is
#   tested against the NumPy reference on a GPU (tinymed's tests/test_backends.py), and
#   chapter 6's simulator cannot run CUDA C at all.
# - **The report is a count, not a speed.** Registers, shared memory and occupancy bound what
#   a kernel can do; the time also depends on memory traffic, caches and how the warps
#   interleave, which only a profiler on a GPU (Nsight Compute) measures. Chapter 12 reads the
#   benchmarks.
# - **Another GPU, other numbers.** The limits of section 5 are the H100's; an A100 (8.0) or a
#   laptop GPU has other register files, shared memory and SM counts, and `ptxas` may allocate
#   registers differently for `sm_80` than for `sm_90`. Compile for the GPU you run on.
# - **Compiler flags are part of the program.** `-ftz=true` changed an argmax; `-use_fast_math`
#   would change `exp` and division too. A kernel that must agree with a reference needs its
#   flags read as carefully as its code.
#
# ## Exercises
#
# Exercises 7.1 to 7.3 are graded. Write your answer in place of the
# `raise NotImplementedError(...)` line of each cell below, keep the function's name, and run
#
# ```bash
# tinymed course check 7            # in the folder holding your 07_cuda_kernels.py or .ipynb
# ```
#
# The grader compiles your kernel with NVRTC (no GPU needed; where there is one it also runs
# it). Exercises 7.4 and 7.5 are for you and your instructor.
#
# **Exercise 7.1 (a CUDA C kernel that -ftz cannot change).** Return, as a string, the CUDA C
# source of the kernel
# `extern "C" __global__ void leaky_relu(const float* x, float* y, float negative_slope, int n)`:
# $y_i = x_i$ where $x_i > 0$ and $\text{negative\_slope}\cdot x_i$ elsewhere, for
# $i < n$, with a grid-stride loop (chapter 6, exercise 6.1). The grader compiles it as CuPy
# would, **with** `-ftz=true`, and reads the PTX: the entry point and its parameters, the
# thread index, the test against `n`, and no float comparison that flushing can change (a
# subnormal $x_i > 0$ must count as positive: look at `__float_as_int`).


# %% tags=["exercise"]
def leaky_relu_source():
    """The CUDA C source of the leaky_relu kernel, as a string."""
    # BEGIN SOLUTION
    return r"""
extern "C" __global__ void leaky_relu(const float* x, float* y, float negative_slope, int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = x[i];
        // Positive exactly when the bits, read as a signed integer, are: subnormals included,
        // -0 excluded, and no float comparison for -ftz=true to flush.
        y[i] = __float_as_int(v) > 0 ? v : negative_slope * v;
    }
}
"""
    # END SOLUTION


# %% [markdown]
# **Exercise 7.2 (grid size).** Write `grid_size(n, threads_per_block)`: the number of blocks
# that gives every one of `n` elements a thread, as an exact integer. Raise `ValueError`
# (naming the argument) when `threads_per_block` is not between 1 and 1024 or `n` is negative,
# and when the grid would need more than $2^{31} - 1$ blocks, the most a 1-D grid may have.
# `n = 0` needs 0 blocks (a launcher then skips the launch).


# %% tags=["exercise"]
def grid_size(n, threads_per_block):
    """ceil(n / threads_per_block) blocks, checked against CUDA's limits."""
    # BEGIN SOLUTION
    if not 1 <= threads_per_block <= 1024:
        raise ValueError(f"grid_size: threads_per_block must be between 1 and 1024, got {threads_per_block}")
    if n < 0:
        raise ValueError(f"grid_size: n must be >= 0, got {n}")
    blocks = (n + threads_per_block - 1) // threads_per_block
    if blocks > 2**31 - 1:
        raise ValueError(f"grid_size: n = {n} needs {blocks} blocks, more than a grid's 2**31 - 1")
    return blocks
    # END SOLUTION


# %% [markdown]
# **Exercise 7.3 (occupancy).** Write `blocks_per_multiprocessor(threads_per_block,
# registers_per_thread, shared_bytes_per_block)`: how many blocks of a kernel an H100 SM holds
# at once, the smallest of the four limits of section 5, with the limits in `H100` (the
# rounding rules included: whole warps, registers per warp in multiples of 256, shared memory
# plus 1 KiB reserved in multiples of 128 bytes). Return 0 when a block cannot run at all
# (too many threads, registers or shared bytes for one block).


# %% tags=["exercise"]
def blocks_per_multiprocessor(threads_per_block, registers_per_thread, shared_bytes_per_block):
    """Resident blocks per H100 multiprocessor: the smallest of the warp, register, shared-memory and block limits."""
    # BEGIN SOLUTION
    if (
        threads_per_block > H100["max_threads_per_block"]
        or registers_per_thread > H100["max_registers_per_thread"]
        or shared_bytes_per_block > H100["max_shared_memory_per_block"]
    ):
        return 0
    warps = -(-threads_per_block // H100["warp_size"])
    unit = H100["register_allocation_unit"]
    per_warp = -(-registers_per_thread * H100["warp_size"] // unit) * unit
    by_registers = H100["registers_per_sm"] // per_warp // warps if per_warp else H100["max_blocks_per_sm"]
    share = shared_bytes_per_block + H100["reserved_shared_memory_per_block"]
    share = -(-share // H100["shared_allocation_unit"]) * H100["shared_allocation_unit"]
    by_shared = H100["shared_memory_per_sm"] // share
    return min(H100["max_warps_per_sm"] // warps, by_registers, by_shared, H100["max_blocks_per_sm"])
    # END SOLUTION


# %% [markdown]
# **Exercise 7.4 (in words).** `conv2d_forward` asks for `__launch_bounds__(256, 4)`. Say what
# the compiler must do to honour it when the loop over 4 output channels wants more than 64
# registers, what that costs (look for "spill" in `ptxas`'s report), and why the authors might
# still prefer 4 resident blocks. Then say why `gemm_tiled` makes the opposite choice.
#
# **Exercise 7.5 (experiment).** Double `GEMM_K_STEP` in gemm.cu's text (16 to 32) and
# recompile it with the cell below. *Predict* first: the shared memory per block (section 2's
# arithmetic), the registers (up, down, the same?), and the occupancy from section 5's
# limits. Then run it and explain what you got wrong, if anything. (The launcher's constants
# must match the kernel's, so this is an experiment on the text, not on tinymed.)

# %%
for k_step in course.pick((16, 32), (32,)):
    text = cuda_source("gemm").replace("GEMM_K_STEP = 16;", f"GEMM_K_STEP = {k_step};")
    result = nvrtc_compile(
        text, [*CUPY_OPTIONS, "--gpu-architecture=sm_90", "--ptxas-options=-v"], ["gemm_tiled<float>"], "gemm.cu"
    )
    ((registers, smem, spilled),) = ptxas_report(result.log).values()
    print(f"GEMM_K_STEP = {k_step}: {registers} registers, {smem} shared bytes per block, {spilled} bytes spilled")
