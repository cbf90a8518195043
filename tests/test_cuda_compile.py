"""The CUDA C kernels compile, without a GPU; the CuPy backend says why it cannot run here.

Every ``kernels/cuda/*.cu`` is compiled by NVRTC, the run-time compiler CuPy itself uses,
through ``cuda-bindings`` and the ``nvidia-cuda-nvrtc`` wheel; neither needs a GPU, and with
the options CuPy really passes (``CUPY_OPTIONS``: ``-ftz=true`` among them). Each file
is compiled twice: to PTX for the oldest architecture CUDA 13 supports, where every kernel
name the CuPy backend looks up must appear for float and for double, and to machine code
for the H100 (``sm_90``), which also runs the assembler (ptxas) and so catches a kernel that
asks for more registers or shared memory than a block may have. A warning fails too.
Whether the kernels compute the right numbers is tested against the NumPy reference in
tests/test_backends.py, on a machine with a GPU.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

import tinymed.backends as backends
from tinymed.backends import cupy_cuda, launch
from tinymed.kernels import NVRTC_OPTIONS, cuda_source

CUDA_SOURCES = resources.files("tinymed.kernels").joinpath("cuda")
FAMILIES = sorted(path.name.removesuffix(".cu") for path in CUDA_SOURCES.iterdir() if path.name.endswith(".cu"))
TARGETS = ("compute_75", "sm_90")

# What cupy.RawModule hands NVRTC besides the caller's options (CuPy 14:
# cupy/_core/core.pyx assemble_cupy_compiler_options, cupy/cuda/compiler.py
# _compile_with_cache_cuda and _compile_using_nvrtc_no_warning). It puts include paths for
# its own and the CUDA headers first (the kernels include none, so they are left out here),
# then appends these after the caller's options, then -arch. NVRTC obeys the last of two
# contradicting options, so a caller cannot undo -ftz=true: the kernels must give the right
# answer with subnormal float32 values flushed to zero.
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


@pytest.fixture(scope="module")
def nvrtc():
    """NVRTC's Python bindings; a test that compiles is skipped, saying why, where
    cuda-bindings is missing or cannot load the NVRTC library itself."""
    bindings = pytest.importorskip(
        "cuda.bindings.nvrtc",
        reason="cuda-bindings is not installed (pip install 'tinymed[test]' adds it and nvidia-cuda-nvrtc)",
    )
    try:
        bindings.nvrtcVersion()
    except RuntimeError as error:  # cuda-bindings raises this when libnvrtc cannot be loaded
        pytest.skip(f"NVRTC cannot be loaded ({error}); pip install nvidia-cuda-nvrtc")
    return bindings


def _ok(nvrtc, result_and_values: tuple):
    """The values of an NVRTC call, after checking that it succeeded."""
    result, *values = result_and_values
    assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"NVRTC call failed: {result}"
    return values[0] if len(values) == 1 else values


def _bytes_of(nvrtc, program, size_function, get_function) -> bytes:
    """Read one of NVRTC's variable-size outputs (the log, the PTX, the machine code)."""
    size = _ok(nvrtc, size_function(program))
    buffer = b" " * size
    _ok(nvrtc, get_function(program, buffer))
    return buffer.rstrip(b"\0")


def compile_family(nvrtc, family: str, target: str) -> tuple[str, dict[str, str], bytes]:
    """Compile ``kernels/cuda/<family>.cu`` for ``target`` as CuPy would: the text
    :func:`cuda_source` gives it, with its headers pasted in.

    Returns the compiler log, each name expression's lowered (mangled) name, and the PTX
    (for a ``compute_XX`` target) or machine code (for ``sm_XX``). Fails, printing the log,
    if the source does not compile.
    """
    source = cuda_source(family).encode()
    program = _ok(nvrtc, nvrtc.nvrtcCreateProgram(source, f"{family}.cu".encode(), 0, [], []))
    try:
        expressions = cupy_cuda.name_expressions(family)
        for expression in expressions:
            _ok(nvrtc, nvrtc.nvrtcAddNameExpression(program, expression.encode()))
        options = [*NVRTC_OPTIONS, *CUPY_OPTIONS, f"--gpu-architecture={target}", "--ptxas-options=-v"]
        (result,) = nvrtc.nvrtcCompileProgram(program, len(options), [o.encode() for o in options])
        log = _bytes_of(nvrtc, program, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog).decode()
        print(log)  # pytest shows it when the test fails; -s shows registers and shared memory
        assert result == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"{family}.cu does not compile for {target}:\n{log}"
        lowered = {e: _ok(nvrtc, nvrtc.nvrtcGetLoweredName(program, e.encode())).decode() for e in expressions}
        if target.startswith("compute_"):
            code = _bytes_of(nvrtc, program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
        else:
            code = _bytes_of(nvrtc, program, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
        return log, lowered, code
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def test_every_cuda_source_is_a_family_of_the_backend():
    assert FAMILIES == sorted(cupy_cuda.KERNELS), (
        f"kernels/cuda holds {FAMILIES}; tinymed.backends.cupy_cuda.KERNELS names {sorted(cupy_cuda.KERNELS)}"
    )


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_source_compiles_with_every_kernel_for_float_and_double(nvrtc, family, target):
    log, lowered, code = compile_family(nvrtc, family, target)
    assert "warning" not in log.lower(), f"{family}.cu compiles with warnings for {target}:\n{log}"
    assert set(lowered) == {f"{k}<{t}>" for k in cupy_cuda.KERNELS[family] for t in ("float", "double")}
    if target.startswith("compute_"):
        ptx = code.decode()
        for expression, name in lowered.items():
            assert re.search(rf"\.entry\s+{re.escape(name)}\s*\(", ptx), (
                f"{family}.cu: no kernel {expression} ({name}) in the PTX"
            )
    else:
        assert code.startswith(b"\x7fELF"), f"{family}.cu: NVRTC gave no machine code for {target}"


def _ptx_of_kernel(ptx: str, lowered_name: str) -> str:
    """The body of one ``.entry`` of a PTX file (its device functions are inlined into it)."""
    start = re.search(rf"\.entry\s+{re.escape(lowered_name)}\s*\(", ptx).start()
    return ptx[start : ptx.index("\n}", start)]


def test_max_pool_argmax_is_immune_to_flush_to_zero(nvrtc):
    """With -ftz=true a float32 ``setp`` compares flushed values: 1e-45 > 0 is false, and a
    2x2 window of zeros with 1e-45 last would point at its first zero where the reference
    points at the subnormal. The forward kernel must make no flushing comparison."""
    _, lowered, code = compile_family(nvrtc, "pool", "compute_75")
    body = _ptx_of_kernel(code.decode(), lowered["max_pool2d_forward<float>"])
    flushing = [line.strip() for line in body.splitlines() if re.search(r"\bsetp\.\w+\.ftz\.", line)]
    assert not flushing, f"max_pool2d_forward<float> compares floats as -ftz=true flushes them: {flushing}"


def _int_constants(family: str) -> dict[str, int]:
    """The ``constexpr int NAME = value;`` lines of a CUDA source."""
    source = CUDA_SOURCES.joinpath(f"{family}.cu").read_text()
    return {name: int(value) for name, value in re.findall(r"constexpr int (\w+) = (\d+);", source)}


def test_launch_constants_match_the_kernels():
    """The launcher sizes its grids from constants that must equal the kernels' own."""
    conv, gemm, attention = _int_constants("conv"), _int_constants("gemm"), _int_constants("attention")
    assert conv["CHANNELS_PER_THREAD"] == cupy_cuda.CHANNELS_PER_THREAD
    assert conv["GRAD_WEIGHT_THREADS"] == cupy_cuda.GRAD_WEIGHT_THREADS
    assert conv["BLOCK_THREADS"] == cupy_cuda.THREADS_PER_BLOCK  # their __launch_bounds__
    assert gemm["GEMM_TILE"] == cupy_cuda.GEMM_TILE
    assert gemm["GEMM_K_STEP"] == cupy_cuda.GEMM_K_STEP
    assert gemm["GEMM_THREADS_SIDE"] ** 2 == cupy_cuda.THREADS_PER_BLOCK  # gemm_tiled's block
    assert attention["MAX_HEAD_DIM"] == launch.MAX_HEAD_DIM
    assert attention["WARP"] == cupy_cuda.WARP
    source = CUDA_SOURCES.joinpath("attention.cu").read_text()
    for c_type, rows in re.findall(r"struct AttentionTile<(\w+)> \{\s*static constexpr int ROWS = (\d+);", source):
        dtype = next(d for d, t in cupy_cuda.C_TYPES.items() if t == c_type)
        assert cupy_cuda.ATTENTION_ROWS[dtype] == int(rows), f"AttentionTile<{c_type}>::ROWS"
    assert set(cupy_cuda.ATTENTION_ROWS) == set(cupy_cuda.C_TYPES) == set(launch.FLOAT_DTYPES)


def test_unavailable_cupy_backend_says_why_and_is_not_listed():
    reason = cupy_cuda.unavailable_reason()
    if reason is None:
        pytest.skip("CuPy and a GPU are available here")
    with pytest.raises(backends.BackendUnavailableError) as raised:
        backends.get("cupy")
    message = str(raised.value)
    assert "'cupy'" in message and reason in message
    # It says what is missing: CuPy (and how to install it), or a usable GPU and driver.
    assert "pip install 'tinymed[cuda]'" in reason or "GPU" in reason or "driver" in reason
    assert "cupy" not in backends.available()
