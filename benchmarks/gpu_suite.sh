#!/usr/bin/env bash
# The GPU suite: one command for a machine with an NVIDIA GPU. Not part of CI (CI has no GPU).
#
#   bash benchmarks/gpu_suite.sh            # results in $OUT if set, else benchmarks/results/
#
# 1. installs tinymed from this checkout without the network (the machine already has
#    cupy-cuda13x, numba-cuda, numpy, torch, pytest and hypothesis);
# 2. runs the first-contact check (benchmarks/gpu_check.py: every primitive at the course's
#    shapes against the float64 reference, bit-identity, CUDA-event times, subnormal probe);
# 3. runs the tests that exercise the GPU backends: tests/test_backends.py (every kernel of
#    every available backend against the NumPy reference), tests/test_cuda_compile.py, and
#    any other test module that mentions CuPy or the list of available backends;
# 4. runs the benchmark command (python -m benchmarks: every primitive on the CPU and the
#    GPU against PyTorch, training steps, roofline; JSON and plots) and the GPU-only tables
#    (python -m benchmarks.bench_gpu_ops: naive vs fused attention, Numba vs CuPy).
# Every step runs even if an earlier one fails; the exit status is 1 if any failed.
set -uo pipefail

cd "$(dirname "$0")/.."
results="${OUT:-benchmarks/results}"
mkdir -p "$results"
python=python3
status=0

echo "== install"
"$python" -m pip install --no-deps --no-build-isolation -e . >"$results/pip_install.txt" 2>&1 || {
    cat "$results/pip_install.txt"
    status=1
}
nvidia-smi >"$results/nvidia-smi.txt" 2>&1 || true
head -n 12 "$results/nvidia-smi.txt"
"$python" -c "import tinymed.backends as b; print('available backends:', b.available())" || status=1

echo "== first-contact check"
"$python" benchmarks/gpu_check.py --out "$results" 2>&1 | tee "$results/gpu_check.txt" || status=1

echo "== GPU tests"
# sort -u: test_backends.py also mentions CuPy, so it would otherwise be listed twice.
mapfile -t tests < <(printf '%s\n' tests/test_backends.py tests/test_cuda_compile.py \
    $(grep -l -E "cupy|backends\.available" tests/test_*.py) | sort -u)
"$python" -m pytest "${tests[@]}" -q -rs --durations=10 \
    --junitxml="$results/gpu_tests.xml" 2>&1 | tee "$results/gpu_tests.txt" || status=1

echo "== benchmarks"
"$python" -m benchmarks --out "$results/benchmarks" 2>&1 | tee "$results/benchmarks.txt" || status=1

echo "== GPU op benchmarks"
"$python" -m benchmarks.bench_gpu_ops --out "$results" 2>&1 | tee "$results/bench_gpu_ops.txt" || status=1

echo "== results in $results (status $status)"
exit "$status"
