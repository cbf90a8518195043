"""``python -m benchmarks.gan_study``: which DCGAN recipe makes the best X-rays for its time,
by the Frechet distance of ``tinymed evaluate-gan``.

Every recipe (:data:`RECIPES`, each a set of :class:`GANConfig` overrides) trains the same
number of epochs over the same seeds, each run on the data set file ``--data``, and is scored
by ``tinymed evaluate-gan`` with the classifier ``--classifier``: the Frechet distance of its
features between generated and validation images (lower is better), and k-NN precision and
recall. A recipe with an EMA generator has its raw generator scored too (``raw G's FD``): the
same run with and without the average. Five recipes train 10 epochs, so that many can be
compared; the others train the 24 epochs of a default run, to check that the short runs' order
holds there, and to try batch sizes and learning rates over that length. The default is then
compared with PyTorch at the full time budget by :mod:`benchmarks.gan_same_time`. Recipes with
other costs per epoch (a smaller batch takes more, smaller steps) are compared by their
training seconds, also in the table.

Each run trains in its own directory, ``OUT/RECIPE/seed-N``; one already scored
(``evaluate-gan.json``) is read, not trained again, and one that was killed is resumed from its
``last.npz``. The results: ``study.json``, ``study.md`` and ``study.png``
(:mod:`benchmarks.study`).

    python -m benchmarks.gan_study --data pneumoniamnist.npz --classifier runs/cnn/best.npz --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import study
from benchmarks.gan_same_time import score
from tinymed.train.gan import GANConfig, train_gan

__all__ = ["RECIPES", "FIGURES", "run_study", "main"]

# The recipes, by name: GANConfig overrides, written out in full. "pytorch" is pytorch/examples'
# DCGAN recipe (the one benchmarks.gan_same_time trains in PyTorch); "ema" adds the averaged
# generator; the next three change one thing of "ema" each, at 10 epochs. The rest train about
# the 24 epochs the default 9-minute budget fits on one core of the 2-core development machine, to
# see whether what the short runs rank holds to the end of a default run.
PYTORCH = {"epochs": 10, "lr": 2e-4, "batch_size": 64, "label_smoothing": 0.0, "ema_decay": 0.0}
EMA = {**PYTORCH, "ema_decay": 0.999}
RECIPES: dict[str, dict[str, Any]] = {
    "pytorch": PYTORCH,
    "ema": EMA,
    "ema-lr-4e-4": {**EMA, "lr": 4e-4},
    "ema-batch-32": {**EMA, "batch_size": 32},
    "ema-smoothing-0.1": {**EMA, "label_smoothing": 0.1},
    "ema-24-epochs": {**EMA, "epochs": 24},
    "ema-lr-4e-4-24-epochs": {**EMA, "lr": 4e-4, "epochs": 24},
    # Batch 32 did well at 10 epochs: does it hold over a default run's length, at its lr?
    "ema-lr-4e-4-batch-32-24-epochs": {**EMA, "lr": 4e-4, "batch_size": 32, "epochs": 24},
    # It did. Smaller still, at the same learning rate per image (single runs of tinymed train gan
    # at batch 16 with lr 4e-4 and 1e-4, and at batch 8 with 1e-4, each scored worse; see the README).
    "ema-lr-2e-4-batch-16-24-epochs": {**EMA, "lr": 2e-4, "batch_size": 16, "epochs": 24},
}

# Overrides for --quick: one epoch of narrow networks, a smoke test in seconds.
QUICK = {"epochs": 1, "batch_size": 8, "ngf": 4, "ndf": 4}

FIGURES: study.Figures = {
    "fd": (("scores", "fd"), "Frechet distance"),
    "fd_raw": (("raw_scores", "fd"), "raw G's FD"),
    "precision": (("scores", "precision"), "precision"),
    "recall": (("scores", "recall"), "recall"),
    "epochs": (("metrics", "epochs"), "epochs"),
    "seconds": (("metrics", "seconds"), "train s"),
}


def _train(
    recipe: str, overrides: Mapping[str, Any], seed: int, run_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Train (or resume) one run and score it, or read it back if scored already; returns
    ``{"metrics": its metrics.json, "scores": its evaluate-gan.json, "raw_scores": ...}``, the
    last the raw generator's (``evaluate-gan-raw.json``): the same run with and without the
    EMA. A run without EMA has only the raw generator, scored once."""
    scores_path, raw_path = run_dir / "evaluate-gan.json", run_dir / "evaluate-gan-raw.json"
    if scores_path.exists():
        print(f"{recipe} seed {seed}: done already, reading {scores_path}")
    else:
        config = GANConfig(
            dataset=args.dataset, data_file=args.data, backend=args.backend, seed=seed, out=str(run_dir), **overrides
        )
        resume = (run_dir / "last.npz").exists()
        print(f"{recipe} seed {seed}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
        train_gan(config, resume=resume, progress=False, log=lambda line: print(f"  {line}", flush=True))
        score(args, run_dir / "last.npz")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    has_ema = bool(metrics["train_config"]["ema_decay"])
    if has_ema and not raw_path.exists():
        score(args, run_dir / "last.npz", raw=True)
    scores = json.loads(scores_path.read_text())
    raw_scores = json.loads(raw_path.read_text()) if has_ema else scores
    return {"metrics": metrics, "scores": scores, "raw_scores": raw_scores}


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    """Every recipe of ``args.recipes`` over ``args.seeds`` (see the module docstring); writes
    and returns the study."""
    return study.run_study(args, RECIPES, QUICK, _train, FIGURES, "GANConfig", {"classifier": args.classifier})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gan_study", description=__doc__.split("\n")[0])
    study.add_arguments(parser, RECIPES, "benchmarks/results/gan-study", (0, 1))
    parser.add_argument(
        "--classifier", required=True, metavar="CNN_CHECKPOINT", help="tinymed classifier to score with"
    )
    run_study(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
