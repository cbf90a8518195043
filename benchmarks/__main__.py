"""``python -m benchmarks``: where tinymed's time goes, against PyTorch and tinygrad, as tables, JSON and plots.

Three measurements, each on every device this machine has (the CPU; a CUDA GPU when PyTorch
sees one):

1. **Primitives.** Every layer of LeNet, MedCNN and the DCGAN (and attention over growing
   sequence lengths), split into the backend contract's primitives (forward, input gradient,
   weight gradient), timed in each tinymed backend that runs here (NumPy on the CPU; CuPy and
   Numba on a GPU, Numba never in its simulator, whose times mean nothing), in PyTorch on the
   same device, and in tinygrad's CPU device where it runs; over batch sizes 1 to 256. Every
   implementation's results are first checked against PyTorch's.
2. **Training steps.** A whole step (forward, loss, backward, optimiser) of each model, in
   tinymed and in the same model in PyTorch with the same weights and batch (see steps.py).
3. **The roofline.** The machine's peak GFLOP/s (a large matrix product) and memory bandwidth
   (a large copy), with each kernel placed under them.

Times are medians of ``--repeat`` interleaved rounds after a warm-up (timing.py). Everything
lands in one folder (default ``benchmarks/results/<device>-<host>/``): ``benchmark.json``
(the machine, the settings and every figure), ``tables.md`` (what is printed) and the PNG
plots. Wall times on a shared machine are slower and noisier: the load average is recorded.

    python -m benchmarks                      # the full run (a few minutes on 2 cores)
    python -m benchmarks --quick --out /tmp/b # a smoke test: tiny sizes, one repeat, seconds
    python -m benchmarks --profile medcnn     # where one tinymed training step spends its time
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import tinymed.backends as backends
from benchmarks import figures, implementations, machine, primitives, steps
from benchmarks import report as report_tables
from benchmarks.implementations import Implementation
from benchmarks.timing import median_ms

RESULTS = Path(__file__).parent / "results"
AGREEMENT = 1e-3  # largest relative difference from PyTorch before a row counts as wrong
FULL = {
    "models": ("LeNet", "MedCNN", "DCGAN G", "DCGAN D"),
    "batches": (1, 8, 32, 128, 256),
    "cpu_lengths": (64, 128, 256, 512, 1024),
    "gpu_lengths": (64, 256, 1024, 4096),
}
# The smoke test: layers of every op (LeNet's convolution, pooling and linear layers, the
# generator's transposed convolutions, attention), tiny sizes.
QUICK = {"models": ("LeNet", "DCGAN G"), "batches": (2,), "cpu_lengths": (16,), "gpu_lengths": (16,)}


@dataclass
class Device:
    """One device's column set: the implementations timed there (PyTorch's last, the
    reference of every ratio), how to wait for it, and what its roofline is measured with."""

    name: str
    implementations: list[Implementation]
    synchronize: Callable[[], None]
    xp: ModuleType
    lengths: Sequence[int]
    step_backends: list[str]
    torch_device: str
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> Implementation:
        return self.implementations[-1]


def _no_wait() -> None:
    """The CPU runs NumPy and PyTorch calls to completion before they return."""


def cpu_device(torch: ModuleType, sizes: dict, use_tinygrad: bool) -> Device:
    """NumPy's tinymed backend, tinygrad where it runs, and PyTorch on the CPU."""
    numpy_backend = backends.get("numpy")
    found = [implementations.tinymed(numpy_backend, "cpu")]
    skipped = {}
    reason = implementations.tinygrad_unavailable_reason() if use_tinygrad else "left out (--quick or --no-tinygrad)"
    if reason is None:
        found.append(implementations.tinygrad())
    else:
        skipped["tinygrad CPU"] = reason
    found.append(implementations.torch(torch, "cpu"))
    return Device("cpu", found, _no_wait, numpy_backend.xp, sizes["cpu_lengths"], ["numpy"], "cpu", skipped)


def gpu_device(torch: ModuleType, sizes: dict) -> Device | str:
    """tinymed's CuPy backend, its Numba backend where it runs, and PyTorch on the GPU; or
    why there is no GPU column. CuPy is required: its arrays are the GPU arrays of both
    backends, and the GPU roofline is measured with it."""
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA GPU (the baseline of every GPU ratio)"
    try:
        found = [implementations.tinymed(backends.get("cupy"), "cuda")]
    except backends.BackendUnavailableError as error:
        return str(error)
    skipped = {}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        skipped["tinymed numba"] = "NUMBA_ENABLE_CUDASIM=1: the simulator's times mean nothing"
    else:
        try:
            found.append(implementations.tinymed(backends.get("numba"), "cuda"))
        except backends.BackendUnavailableError as error:
            skipped["tinymed numba"] = str(error)
    torch.backends.cuda.matmul.allow_tf32 = False  # full float32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    found.append(implementations.torch(torch, "cuda"))
    step_backends = [impl.name.removeprefix("tinymed ") for impl in found[:-1]]
    xp = backends.get("cupy").xp
    return Device("cuda", found, torch.cuda.synchronize, xp, sizes["gpu_lengths"], step_backends, "cuda", skipped)


def primitive_rows(
    device: Device, layers: list[primitives.Layer], batches: Sequence[int], table_batch: int, repeat: int
):
    """Time every part of every layer at every size on ``device``: one row per part."""
    rows, mismatches = [], []
    reference = device.reference
    for layer in layers:
        print(f"{device.name}: {layer.model} {layer.name}", file=sys.stderr, flush=True)
        for batch in batches if layer.batched else (table_batch,):
            case = layer.build(np.random.default_rng(0), batch)
            impls = [impl for impl in device.implementations if impl.every_size or batch == table_batch]
            calls = {impl.name: impl.prepare(case) for impl in impls}
            for part in case.parts:
                present = [impl for impl in impls if part.name in calls[impl.name]]
                runs = {impl.name: calls[impl.name][part.name] for impl in present}
                expected = [reference.to_numpy(a) for a in implementations.results(runs[reference.name]())]
                errors = {}
                for impl in present:
                    got = [impl.to_numpy(a) for a in implementations.results(runs[impl.name]())]
                    errors[impl.name] = implementations.relative_error(got, expected)
                    if not errors[impl.name] < AGREEMENT:
                        mismatches.append(
                            f"{impl.name} {layer.model} {layer.name} {part.name}: {errors[impl.name]:.1e}"
                        )
                ms = median_ms(runs, device.synchronize, repeat)
                rows.append(
                    {
                        "device": device.name,
                        "model": layer.model,
                        "layer": f"{layer.model} {layer.name}",
                        "op": case.op,
                        "part": part.name,
                        "primitive": part.primitive,
                        "batch": batch,
                        "shape": case.shape,
                        "flops": part.flops,
                        "bytes": part.bytes,
                        "ms": ms,
                        "gflops": {name: part.flops / t / 1e6 for name, t in ms.items()},
                        "gbs": {name: part.bytes / t / 1e6 for name, t in ms.items()},
                        "ratio_to_torch": {name: t / ms[reference.name] for name, t in ms.items()},
                        "error_vs_torch": errors,
                    }
                )
    return rows, mismatches


def step_rows(device: Device, torch: ModuleType, models: Sequence[str], batch: int, repeat: int):
    """Each model's training step in each tinymed backend of ``device`` and in PyTorch."""
    rows, mismatches = [], []
    for model in models:
        for backend in device.step_backends:
            pair = steps.step_pair(model, batch, backend, torch, device.torch_device)
            ours, theirs = f"tinymed {backend}", f"torch {device.torch_device}"
            if not pair.error < AGREEMENT:
                mismatches.append(f"{ours} {model} training step: outputs differ by {pair.error:.1e}")
            ms = median_ms({ours: pair.tinymed, theirs: pair.torch}, device.synchronize, repeat)
            rows.append(
                {
                    "device": device.name,
                    "model": model,
                    "label": f"{model} ({ours})",
                    "batch": batch,
                    "ms": ms,
                    "images_per_s": {name: batch / t * 1e3 for name, t in ms.items()},
                    "ratio_to_torch": {ours: ms[ours] / ms[theirs]},
                    "error_vs_torch": pair.error,
                }
            )
    return rows, mismatches


def run_name() -> str:
    """``cpu-<host>`` or, on a GPU machine, ``gpu-<GPU model>``: results of different
    machines never overwrite each other."""
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-")
    try:
        import torch

        if torch.cuda.is_available():
            return "gpu-" + re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-")
    except ImportError:
        pass
    return f"cpu-{host}"


def profile_step(model: str, batch: int, out: Path) -> None:
    """``--profile MODEL``: one tinymed training step (NumPy backend) under
    :func:`tinymed.profiler.profile`, after a warm-up step; prints the table, writes the plot
    and the records."""
    from tinymed.profiler import profile

    step = steps.tinymed_step(model, batch)
    step()
    with profile() as prof:
        step()
    print(f"tinymed {model}, one training step at batch {batch} (NumPy backend)\n")
    print(prof.table())
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"profile-{model}.png"
    prof.plot(f"{model}, one training step, batch {batch}").savefig(png, dpi=110)
    records = [vars(record) for record in prof.sorted_records()]
    summary = {"model": model, "batch": batch, "total_s": prof.total_seconds, "overhead_s": prof.overhead_seconds}
    (out / f"profile-{model}.json").write_text(json.dumps({**summary, "ops": records}, indent=1) + "\n")
    print(f"\nwrote {png} and profile-{model}.json")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny sizes, one repeat, no tinygrad")
    parser.add_argument("--out", type=Path, help="the folder for the JSON and plots (default benchmarks/results/<run>)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per row; the median is kept (default 5)")
    parser.add_argument(
        "--batch", type=int, default=128, help="the batch of the tables and training steps (default 128)"
    )
    parser.add_argument("--no-tinygrad", action="store_true", help="leave out the tinygrad column")
    parser.add_argument("--profile", choices=steps.MODELS, help="only profile one tinymed training step of this model")
    parser.add_argument("--replot", type=Path, help="only redraw tables.md and the plots from DIR/benchmark.json")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def measure(args: argparse.Namespace, torch: ModuleType) -> dict[str, Any]:
    """Run the three measurements on every device; everything the outputs are drawn from."""
    sizes, repeat, batch = (QUICK, 1, 2) if args.quick else (FULL, args.repeat, args.batch)
    gemm_size, copy_floats = (128, 2**16) if args.quick else (2048, 2**25)
    devices = [cpu_device(torch, sizes, not (args.quick or args.no_tinygrad))]
    gpu = gpu_device(torch, sizes)
    if isinstance(gpu, Device):
        devices.append(gpu)
    results: dict[str, Any] = {
        "machine": machine.describe(torch, torch.cuda.get_device_name() if isinstance(gpu, Device) else None),
        "settings": {
            "command": " ".join(["python -m benchmarks", *args.argv]),
            "quick": args.quick,
            "repeat": repeat,
            "batch": batch,
            "batches": sizes["batches"],
        },
        "skipped": {"cuda": gpu} if isinstance(gpu, str) else {},
        "roofline": {},
        "primitives": [],
        "training_steps": [],
        "mismatches": [],
    }
    print(f"tinymed benchmarks on {results['machine']['cpu']} ({results['machine']['logical_cpus']} CPUs)")
    print(f"load average {results['machine']['load_average_before']:.2f}; median of {repeat} after a warm-up\n")
    started = time.perf_counter()
    for device in devices:
        results["skipped"].update(device.skipped)
        results["roofline"][device.name] = machine.roofline(device.xp, device.synchronize, gemm_size, copy_floats)
        layers = [layer for layer in primitives.model_layers() if layer.model in sizes["models"]]
        layers += primitives.attention_sweep(device.lengths)
        rows, bad = primitive_rows(device, layers, sizes["batches"], batch, repeat)
        results["primitives"] += rows
        results["mismatches"] += bad
        rows, bad = step_rows(device, torch, steps.MODELS, batch, repeat)
        results["training_steps"] += rows
        results["mismatches"] += bad
    results["layer_totals"] = report_tables.layer_totals(results["primitives"], batch)
    results["machine"]["load_average_after"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    return results


def write_outputs(results: dict[str, Any], out: Path) -> str:
    """tables.md and every plot, drawn from ``results`` alone (so ``--replot`` redraws them
    from a saved benchmark.json); returns the tables' text."""
    batch, described = results["settings"]["batch"], results["machine"]
    rows = results["primitives"]
    devices = list(dict.fromkeys(row["device"] for row in rows))
    sections = [
        (
            f"Primitives on {device}, batch {batch}",
            report_tables.primitives([r for r in rows if r["device"] == device], batch),
        )
        for device in devices
    ]
    sections.append(
        ("Forward + backward per layer, time / PyTorch's", report_tables.layer_table(results["layer_totals"]))
    )
    sections.append((f"Training step, batch {batch}", report_tables.step_table(results["training_steps"])))
    text = "".join(f"## {title}\n\n{report_tables.markdown(table)}\n" for title, table in sections)
    if results["skipped"]:
        text += "Skipped:\n" + "".join(f"- {name}: {why}\n" for name, why in results["skipped"].items())
    header = (
        f"# tinymed benchmarks: {described['cpu']}, {described['logical_cpus']} CPUs"
        + (f", {described['gpu']}" if described["gpu"] else "")
        + f"\n\nReproduce with `{results['settings']['command']}`. Load average"
        + f" {described['load_average_before']:.1f} before, {described['load_average_after']:.1f} after"
        + f" (on {described['logical_cpus']} CPUs); times are medians of {results['settings']['repeat']}"
        + " after a warm-up, in ms.\n\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text(header + text)
    figures.time_vs_size(rows, out)
    figures.ratios(results["layer_totals"], results["training_steps"], out / "ratio_to_torch.png")
    for device in devices:
        table_rows = [r for r in rows if r["device"] == device and report_tables.at_table_size(r, batch)]
        figures.roofline(results["roofline"][device], table_rows, device, out / f"roofline-{device}.png")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        write_outputs(json.loads((args.replot / "benchmark.json").read_text()), args.out or args.replot)
        print(f"redrew the tables and plots in {args.out or args.replot}")
        return 0
    out = args.out or RESULTS / run_name()
    if args.profile:
        profile_step(args.profile, 8 if args.quick else args.batch, out)
        return 0
    try:
        import torch
    except ImportError:
        sys.exit(
            "benchmarks: PyTorch is not installed; it is the baseline of every ratio (pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu, its CPU build)"
        )
    results = measure(args, torch)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(results, indent=1) + "\n")
    print(write_outputs(results, out))
    print(f"wrote {out}/benchmark.json, tables.md and the plots; measured in {results['seconds']:.0f} s")
    mismatches = results["mismatches"]
    if mismatches:
        print("results that differ from PyTorch's:\n" + "\n".join(mismatches), file=sys.stderr)
    # A peer's wrong result is its own bug, recorded in the JSON; tinymed's fails the run.
    return 1 if any(line.startswith("tinymed") for line in mismatches) else 0


if __name__ == "__main__":
    sys.exit(main())
