"""tinymed's DCGAN recipe against PyTorch's standard one, given the same wall time.

For each seed, on one data set file (``--data``, PneumoniaMNIST in the MedMNIST layout):

1. ``tinymed train gan`` with its defaults (a time budget, the EMA generator; ``--minutes``
   to shorten the budget, ``--width`` for both networks' ``--ngf`` and ``--ndf``), in a
   process of its own with ``--threads`` BLAS threads;
2. the same DCGAN architecture in PyTorch (:func:`benchmarks.steps.torch_twin` of tinymed's
   own model source, so its initialisation too) trained with the standard recipe of
   pytorch/examples' ``dcgan/main.py`` (Adam lr 2e-4, betas (0.5, 0.999), batch 64 reshuffled
   each epoch with the last partial batch kept, BCE with real label 1 and fake label 0, one D
   step then one G step on the same ``G(z)``, no EMA, the last step's generator) with
   ``torch.set_num_threads(--threads)``, for as many seconds as tinymed's run trained, then
   written as a tinymed GAN checkpoint with that run's metadata, so :func:`load_gan` reads it;
3. both scored by ``tinymed evaluate-gan`` with the same classifier (``--classifier``): the
   Frechet distance of its features to the validation images, and k-NN precision and recall.

Each seed's two rows go to ``--out``/seedN/rows.json as soon as it is scored; ``results.json``
and ``results.md`` (a row per seed and library, then the means) are then written from every
seed in ``--out``, so seeds run by separate invocations (say, one per core, each with
``--threads 1``) end in one table. Run from the repository root::

    python -m benchmarks.gan_same_time --data pneumoniamnist.npz --classifier runs/cnn/best.npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.steps import gan_step, torch_twin
from tinymed.cli import main as tinymed_main
from tinymed.data import load_dataset
from tinymed.models.dcgan import DCGAN
from tinymed.train.checkpoint import load_checkpoint, save_checkpoint
from tinymed.train.gan import NORMALIZATION

ROOT = Path(__file__).resolve().parents[1]
# pytorch/examples dcgan/main.py: --batchSize 64, --lr 0.0002, --beta1 0.5 (beta2 PyTorch's 0.999).
TORCH_RECIPE = {"batch_size": 64, "lr": 2e-4, "betas": (0.5, 0.999)}
# What a same-time run keeps from the tinymed run's checkpoint metadata, so both load alike.
SHARED_METADATA = ("kind", "model", "dataset", "normalization")
# The BLAS libraries NumPy may use, each reading its own thread-count variable.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def train_tinymed(args: argparse.Namespace, seed: int, out: Path) -> dict[str, Any]:
    """``tinymed train gan`` with its defaults (and ``--minutes``, ``--width`` if given) into
    ``out``; returns its epochs, optimiser steps and seconds of training from ``metrics.json``,
    and the seconds the whole command took (``command_seconds``: what a user waits)."""
    command = [sys.executable, "-m", "tinymed", "train", "gan", "--dataset", args.dataset, "--data", args.data]
    command += ["--seed", str(seed), "--out", str(out), "--overwrite"]
    command += [] if args.minutes is None else ["--minutes", str(args.minutes)]
    command += [] if args.width is None else ["--ngf", str(args.width), "--ndf", str(args.width)]
    env = {**os.environ, **{name: str(args.threads) for name in THREAD_VARIABLES}}
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    command_seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    return {**{key: metrics[key] for key in ("epochs", "steps", "seconds")}, "command_seconds": command_seconds}


def train_torch(
    torch: ModuleType, args: argparse.Namespace, seed: int, seconds: float, like: Path, out: Path
) -> dict[str, Any]:
    """PyTorch's DCGAN recipe (see the module docstring) on the architecture of the tinymed
    checkpoint ``like`` for ``seconds``; its networks go to ``out/last.npz`` with ``like``'s
    metadata. Returns the epochs (begun), steps and seconds it trained."""
    metadata = load_checkpoint(like, kind="gan").metadata
    torch.manual_seed(seed)
    torch.set_num_threads(args.threads)
    gan = torch_twin(DCGAN, torch)(**metadata["model"]["config"])
    train = load_dataset(args.dataset, "train", data_file=args.data)
    mean, std = NORMALIZATION["mean"][0], NORMALIZATION["std"][0]
    images = torch.from_numpy((train.batch(np.arange(len(train)))[0] - mean) / std).float()
    optimizers = tuple(
        torch.optim.Adam(net.parameters(), lr=TORCH_RECIPE["lr"], betas=TORCH_RECIPE["betas"])
        for net in (gan.generator, gan.discriminator)
    )
    batch, epochs, steps, start = TORCH_RECIPE["batch_size"], 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        epochs += 1
        for indices in torch.randperm(len(images)).split(batch):
            # BatchNorm cannot normalise a batch of one (a last partial batch of a tiny set).
            if len(indices) < 2 or time.perf_counter() - start >= seconds:
                continue
            real, z = images[indices], torch.randn(len(indices), gan.latent_dim)
            ones, zeros = torch.ones(len(indices)), torch.zeros(len(indices))
            gan_step(torch.nn.functional, gan, optimizers, real, z, ones, zeros)
            steps += 1
    trained = time.perf_counter() - start
    state = {
        name: {key: value.detach().cpu().numpy() for key, value in getattr(gan, name).state_dict().items()}
        for name in ("generator", "discriminator")
    }
    recipe = {"library": f"torch {torch.__version__}", "recipe": "pytorch/examples dcgan", **TORCH_RECIPE}
    written = {key: metadata[key] for key in SHARED_METADATA}
    save_checkpoint(out / "last.npz", state, {**written, "epoch": epochs, "train_config": {**recipe, "seed": seed}})
    return {"epochs": epochs, "steps": steps, "seconds": trained}


def score(args: argparse.Namespace, checkpoint: Path, raw: bool = False) -> dict[str, float]:
    """``tinymed evaluate-gan CHECKPOINT --classifier CNN`` on ``--data``: FD, precision, recall,
    also written to ``evaluate-gan.json`` beside the checkpoint (with ``raw``, the raw
    generator's, ``--raw-generator``, to ``evaluate-gan-raw.json``)."""
    report = checkpoint.parent / ("evaluate-gan-raw.json" if raw else "evaluate-gan.json")
    argv = ["evaluate-gan", str(checkpoint), "--classifier", args.classifier, "--data", args.data]
    if raw:
        argv.append("--raw-generator")
    if tinymed_main([*argv, "--json", str(report)]) != 0:
        raise RuntimeError(f"tinymed evaluate-gan {checkpoint} failed")
    scores = json.loads(report.read_text())
    return {key: scores[key] for key in ("fd", "precision", "recall")}


def table(rows: list[dict[str, Any]], means: list[dict[str, Any]]) -> str:
    """The rows and the means over seeds as a markdown table."""
    columns = ("seed", "framework", "epochs", "steps", "seconds", "fd", "precision", "recall")
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in [*rows, *means]:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per framework, the mean of every number over the seeds."""
    means = []
    for framework in dict.fromkeys(row["framework"] for row in rows):
        mine = [row for row in rows if row["framework"] == framework]
        numbers = ("epochs", "steps", "seconds", "fd", "precision", "recall")
        means.append(
            {"seed": "mean", "framework": framework, **{k: float(np.mean([r[k] for r in mine])) for k in numbers}}
        )
    return means


def run(args: argparse.Namespace, torch: ModuleType) -> dict[str, Any]:
    """Both libraries for every seed of ``args.seeds``, scored; then results.json and results.md
    of every seed in ``--out`` (see the module docstring)."""
    out = Path(args.out)
    for seed in args.seeds:
        ours, theirs = out / f"seed{seed}" / "tinymed", out / f"seed{seed}" / "torch"
        theirs.mkdir(parents=True, exist_ok=True)
        tinymed_run = train_tinymed(args, seed, ours)
        torch_run = train_torch(torch, args, seed, tinymed_run["seconds"], ours / "last.npz", theirs)
        rows = [
            {"seed": seed, "framework": framework, **trained, **score(args, directory / "last.npz")}
            for framework, trained, directory in (("tinymed", tinymed_run, ours), ("torch", torch_run, theirs))
        ]
        (out / f"seed{seed}" / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    seeds = sorted(out.glob("seed*/rows.json"), key=lambda path: int(path.parent.name.removeprefix("seed")))
    rows = [row for path in seeds for row in json.loads(path.read_text())]
    results = {"data": args.data, "classifier": args.classifier, "threads": args.threads, "rows": rows}
    results["means"] = mean_rows(rows)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(rows, results["means"]))
    print(table(rows, results["means"]), end="")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gan_same_time", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, metavar="FILE.npz", help="the data set file, MedMNIST layout")
    parser.add_argument("--dataset", default="pneumoniamnist", help="its MedMNIST name (default: pneumoniamnist)")
    parser.add_argument(
        "--classifier", required=True, metavar="CNN_CHECKPOINT", help="tinymed classifier to score with"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    parser.add_argument(
        "--minutes", type=float, help="tinymed's --minutes (default: tinymed train gan's own default budget)"
    )
    parser.add_argument(
        "--width", type=int, help="tinymed's --ngf and --ndf, so both libraries' (default: tinymed train gan's own)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of both (default: all cores)")
    parser.add_argument("--out", default="benchmarks/results/gan-same-time", help="(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch  # only this benchmark needs PyTorch; tinymed never imports it

    run(parse_args(argv), torch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
