"""Benchmarks a course can read: where tinymed's time goes, against PyTorch and tinygrad.

Run ``python -m benchmarks`` from the repository root (see ``benchmarks/__main__.py``). Each
module holds one idea: ``primitives`` the layers and the backend primitives they split into,
``implementations`` how each library runs them, ``steps`` whole training steps, ``timing`` how
a call is timed, ``machine`` what it ran on and its roofline, ``report`` the tables and
per-layer totals, ``figures`` the plots.
``bench_gpu_ops.py`` adds the GPU-only tables (naive against fused attention, Numba against
CuPy) and ``gpu_suite.sh`` runs everything on a GPU machine.
"""
