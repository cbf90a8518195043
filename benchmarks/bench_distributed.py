"""Data-parallel training on MPI: measured on this machine, and modelled beyond it.

**Measured.** MedCNN (tinymed's default classifier, 28x28 images) training steps with
DistributedDataParallel, launched by ``mpiexec -n P`` with one thread per process
(OMP_NUM_THREADS=1 and the BLAS equivalents), on random data:

* P = 1 and P = 2 at the same per-worker batch b (weak scaling: efficiency
  ``T(1) / T(2)``, 1 when the communication costs nothing and the cores do not slow each
  other down);
* P = 1 at batch 2b, on one thread and on two: the global batch the two processes share,
  done by one process (the strong-scaling comparison, and the one a user of both cores
  without MPI would make).

Each step is timed in three parts on rank 0: forward and backward, ``reduce_gradients()``
(the all-reduce of the gradients, including any wait for the slower rank), and the SGD
step. Of ``--steps`` steps after two warm-up steps, the fastest is kept (as in
bench_cpu_ops.py: on a shared machine, load from elsewhere only ever adds time).

**Modelled.** A ring all-reduce of S bytes over p workers sends each worker's share around
the ring twice (reduce-scatter, then all-gather): ``2 (p - 1)`` messages of ``S / p`` bytes
each, so

    T_allreduce(p) = 2 (p - 1) alpha + 2 (p - 1) / p * S / beta

with beta the link bandwidth and alpha the latency of one message. S is MedCNN's gradient,
4 bytes per parameter. The compute time of a step is taken as proportional to the batch,
``T_compute(b) = b c``, with c measured here at batch b on one thread. A step takes
``T_compute(b) + T_allreduce(p)`` (tinymed averages after backward, without PyTorch's
overlap), its efficiency is ``T_compute(b) / (T_compute(b) + T_allreduce(p))``, and
efficiency stays at or above 80 % when ``T_compute(b) >= 4 T_allreduce(p)``, i.e. for
per-worker batches ``b >= 4 T_allreduce(p) / c``. A real step also has a fixed cost
(Python, per-layer overhead) that does not shrink with the batch, so this bound is
pessimistic at small batches. The latencies are assumptions, not measurements:
25 us a message on 10 Gbit/s Ethernet through TCP, 2 us on a 100 Gbit/s RDMA fabric
(InfiniBand, RoCE).

Writes ``distributed.json`` and ``distributed.png`` under ``--out``. Timings on a shared
machine are provisional: the load average is recorded before and after.

    python benchmarks/bench_distributed.py              # about a minute on an idle 2-core machine
    python benchmarks/bench_distributed.py --quick      # a smoke test of the whole pipeline
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORKERS = (8, 64, 512)
NETWORKS = {  # name: (bandwidth in bytes/s, latency of one message in s)
    "10 Gbit/s": (10e9 / 8, 25e-6),
    "100 Gbit/s": (100e9 / 8, 2e-6),
}
TARGET_EFFICIENCY = 0.8


# ----------------------------------------------------------------------------- the worker
def worker(batch: int, steps: int) -> None:
    """Time MedCNN training steps on this rank; rank 0 prints the fastest as one JSON line."""
    import tinymed
    import tinymed.distributed as dist
    import tinymed.functional as F
    from tinymed import optim
    from tinymed.models import MedCNN
    from tinymed.nn.parallel import DistributedDataParallel

    dist.init_process_group("mpi")
    tinymed.manual_seed(0)
    model = DistributedDataParallel(MedCNN())
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(dist.get_rank())
    x = tinymed.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = tinymed.from_numpy(rng.integers(0, 2, batch))
    parts: dict[str, list[float]] = {"compute": [], "reduce": [], "step": []}
    for i in range(2 + steps):
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        computed = time.perf_counter()
        model.reduce_gradients()
        reduced = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if i >= 2:
            parts["compute"].append(computed - start + end - reduced)
            parts["reduce"].append(reduced - computed)
            parts["step"].append(end - start)
    if dist.is_main_process():
        fastest = int(np.argmin(parts["step"]))
        best = {name: values[fastest] for name, values in parts.items()}
        parameters = sum(p.numel() for p in model.parameters())
        print(json.dumps({"world_size": dist.get_world_size(), "batch": batch, "parameters": parameters, **best}))


# ----------------------------------------------------------------------------- measuring
def measure(processes: int, batch: int, threads: int, steps: int) -> dict:
    """Run the worker under ``mpiexec -n processes`` with ``threads`` threads each."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    command = [shutil.which("mpiexec") or "mpiexec", "-n", str(processes), sys.executable, __file__]
    command += ["--worker", "--batch", str(batch), "--steps", str(steps)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    return {**row, "threads": threads}


# ----------------------------------------------------------------------------- the model
def allreduce_seconds(workers: np.ndarray | int, nbytes: float, bandwidth: float, latency: float) -> np.ndarray:
    """Ring all-reduce: ``2 (p - 1) alpha + 2 (p - 1) / p * S / beta`` seconds."""
    p = np.asarray(workers, dtype=np.float64)
    return 2 * (p - 1) * latency + 2 * (p - 1) / p * nbytes / bandwidth


def batch_for_efficiency(
    workers: np.ndarray | int, nbytes: float, bandwidth: float, latency: float, c: float
) -> np.ndarray:
    """The smallest per-worker batch with ``b c >= 4 T_allreduce(p)`` (80 % efficiency)."""
    ratio = TARGET_EFFICIENCY / (1 - TARGET_EFFICIENCY)
    needed = ratio * allreduce_seconds(workers, nbytes, bandwidth, latency) / c
    return np.maximum(1, np.ceil(needed))


def model(measured: dict[str, dict], batch: int) -> dict:
    """``c`` from one thread at batch b; predictions for 8, 64 and 512 workers."""
    one = measured["1 process, batch b"]
    c = one["compute"] / batch
    nbytes = 4 * one["parameters"]
    predictions = {}
    for name, (bandwidth, latency) in NETWORKS.items():
        rows = []
        for p in WORKERS:
            reduce = float(allreduce_seconds(p, nbytes, bandwidth, latency))
            compute = batch * c
            rows.append(
                {
                    "workers": p,
                    "allreduce_ms": 1e3 * reduce,
                    "step_ms": 1e3 * (compute + reduce),
                    "efficiency": compute / (compute + reduce),
                    "batch_for_80_percent": int(batch_for_efficiency(p, nbytes, bandwidth, latency, c)),
                }
            )
        predictions[name] = {"bandwidth_bytes_per_s": bandwidth, "latency_s": latency, "workers": rows}
    return {"gradient_bytes": nbytes, "seconds_per_sample": c, "predictions": predictions}


# ----------------------------------------------------------------------------- the plot
def plot(result: dict, path: Path) -> None:
    """Step time and efficiency against workers (model lines, measured points), and the
    per-worker batch that keeps 80 % efficiency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch, fit, measured = result["batch"], result["model"], result["measured"]
    nbytes, c = fit["gradient_bytes"], fit["seconds_per_sample"]
    p = np.unique(np.geomspace(1, 1024, 200).round())
    compute = batch * c
    fig, (ax_time, ax_eff, ax_batch) = plt.subplots(1, 3, figsize=(15, 4.5))
    for (name, (bandwidth, latency)), colour in zip(NETWORKS.items(), ("tab:red", "tab:blue")):
        reduce = allreduce_seconds(p, nbytes, bandwidth, latency)
        label = f"model, {name}, {latency * 1e6:g} us"
        ax_time.plot(p, 1e3 * (compute + reduce), color=colour, label=label)
        ax_eff.plot(p, compute / (compute + reduce), color=colour, label=label)
        ax_batch.plot(p, batch_for_efficiency(p, nbytes, bandwidth, latency, c), color=colour, label=label)
    ax_time.axhline(1e3 * compute, color="grey", linestyle=":", label="compute alone (model)")
    weak = [measured["1 process, batch b"], measured["2 processes, batch b each"]]
    ax_time.plot([1, 2], [1e3 * m["step"] for m in weak], "ko", label="measured here (shared memory)")
    ax_eff.plot([2], [weak[0]["step"] / weak[1]["step"]], "ko", label="measured here, T(1) / T(2)")
    ax_eff.axhline(TARGET_EFFICIENCY, color="grey", linestyle=":")
    ax_batch.axhline(batch, color="grey", linestyle=":", label=f"b = {batch} (measured)")
    for ax, ylabel in (
        (ax_time, "step time (ms)"),
        (ax_eff, "efficiency"),
        (ax_batch, "per-worker batch for 80 % efficiency"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_batch.set_yscale("log")
    ax_eff.set_ylim(0, 1.05)
    fig.suptitle(
        f"MedCNN ({result['measured']['1 process, batch b']['parameters']:,} parameters), data-parallel on MPI: "
        f"per-worker batch {batch}, one thread per worker, ring all-reduce after backward\n"
        f"measured on {result['cpus']} cores at load average {result['load_average_before'][0]:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="per-worker batch b (default 32)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 steps: a smoke test")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where the JSON and PNG go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.steps = 4, 2
    if args.worker:
        worker(args.batch, args.steps)
        return

    load_before = os.getloadavg()
    b = args.batch
    runs = {
        "1 process, batch b": (1, b, 1),
        "2 processes, batch b each": (2, b, 1),
        "1 process, batch 2b": (1, 2 * b, 1),
        "1 process, batch 2b, 2 threads": (1, 2 * b, 2),
    }
    measured = {}
    for name, (processes, batch, threads) in runs.items():
        measured[name] = measure(processes, batch, threads, args.steps)
        m = measured[name]
        print(
            f"{name:<32} step {1e3 * m['step']:8.1f} ms  (compute {1e3 * m['compute']:7.1f}, "
            f"all-reduce {1e3 * m['reduce']:6.2f})  {m['batch'] * m['world_size'] / m['step']:6.1f} samples/s"
        )
    result = {
        "batch": b,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "measured": measured,
        "weak_scaling_efficiency": measured["1 process, batch b"]["step"]
        / measured["2 processes, batch b each"]["step"],
        "speedup_over_one_thread": measured["1 process, batch 2b"]["step"]
        / measured["2 processes, batch b each"]["step"],
        "speedup_over_two_threads": measured["1 process, batch 2b, 2 threads"]["step"]
        / measured["2 processes, batch b each"]["step"],
        "model": model(measured, b),
    }
    print(
        f"weak-scaling efficiency at 2 processes: {result['weak_scaling_efficiency']:.2f}; global batch {2 * b} "
        f"on 2 processes is {result['speedup_over_one_thread']:.2f}x one thread and "
        f"{result['speedup_over_two_threads']:.2f}x one process on 2 threads"
    )
    print(
        f"model: {1e3 * result['model']['seconds_per_sample']:.2f} ms of compute per sample; gradient {result['model']['gradient_bytes'] / 1e6:.2f} MB"
    )
    for name, prediction in result["model"]["predictions"].items():
        for row in prediction["workers"]:
            print(
                f"  {name:>10}, {row['workers']:>3} workers: all-reduce {row['allreduce_ms']:6.2f} ms, "
                f"step {row['step_ms']:7.1f} ms, efficiency {row['efficiency']:.2f}, "
                f"80 % needs batch >= {row['batch_for_80_percent']} per worker"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "distributed.png")
    print(f"wrote {out / 'distributed.json'} and {out / 'distributed.png'} (load average {load_before} before)")


if __name__ == "__main__":
    main()
