"""The arguments several commands share, each defined once, and what they select.

Every command adds its arguments in one function of its own (``add_*_arguments``), which
reads top to bottom as the command's ``--help``. What more than one command takes comes from
here:

* :func:`add_common_options` (every command): the data set and where its file is, the
  backend, and the seed;
* :func:`add_training_options` (``train cnn`` and ``train gan``): epochs, batch size,
  learning rate, the output directory and ``--resume``; :func:`training_config` turns them,
  with the common options, into the fields both trainers' configs share;
* :func:`add_checkpoint_argument` (the commands that read a checkpoint), with
  :func:`checkpoint_split`, the data the checkpoint was trained on unless the options name
  other data, and :func:`add_image_options` with :func:`image_at`, one image of it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinymed import backends
from tinymed.data import DATASETS, DatasetError, ImageDataset, load_dataset
from tinymed.data.medmnist import SPLITS

__all__ = [
    "positive",
    "add_common_options",
    "add_training_options",
    "training_config",
    "add_checkpoint_argument",
    "checkpoint_split",
    "add_image_options",
    "image_at",
    "write_json_report",
]

# The checkpoint a command reads, by its kind: the metavar and help of its argument.
CHECKPOINTS = {
    "classifier": ("CHECKPOINT", "a classifier checkpoint (best.npz or last.npz)"),
    "gan": ("GAN_CHECKPOINT", "a GAN checkpoint (last.npz of tinymed train gan)"),
}


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` (int or float) greater than zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_common_options(
    parser: argparse.ArgumentParser, dataset: str | None, data: bool = True, seed: str | None = None
) -> None:
    """``--dataset`` (default ``dataset``; None: the checkpoint's) and ``--data-dir`` or
    ``--data`` when the command reads ``data``; ``--backend``; and ``--seed`` (default 0) when
    the command draws random numbers, ``seed`` saying what it decides."""
    if data:
        default = f"default: {dataset}" if dataset else "default: the checkpoint's"
        parser.add_argument(
            "--dataset",
            default=dataset,
            metavar="NAME",
            help=f"phantoms (built in, offline) or a 2D MedMNIST flag ({default}); one of: {', '.join(DATASETS)}",
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--data-dir",
            metavar="DIR",
            help="where MedMNIST files live as FLAG.npz, downloaded if missing (default: ~/.medmnist)",
        )
        source.add_argument("--data", metavar="FILE.npz", help="read this file in the MedMNIST layout instead")
    parser.add_argument(
        "--backend",
        default="numpy",
        choices=backends.NAMES,
        help="where the arrays live and the kernels run (default: numpy)",
    )
    if seed:
        parser.add_argument("--seed", type=int, default=0, metavar="N", help=f"{seed} (default: 0)")


def add_training_options(
    parser: argparse.ArgumentParser,
    defaults: Any,
    epochs: Mapping[str, int],
    fallback_epochs: int,
    lr_help: str,
    out: str,
    resumable: Iterable[str],
) -> None:
    """A trainer's ``--epochs`` (default by data set: ``epochs``, else ``fallback_epochs``),
    ``--batch-size`` and ``--lr`` (defaults from the config ``defaults``), ``--out`` (default
    ``out``) and ``--resume``, which may change only the options ``resumable`` names."""
    by_dataset = ", ".join(f"{n} for {name}" for name, n in epochs.items())
    parser.add_argument(
        "--epochs",
        type=positive(int),
        metavar="N",
        help=f"passes over the training set (default: {by_dataset}, {fallback_epochs} otherwise)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive(int),
        default=defaults.batch_size,
        metavar="N",
        help=f"images per step (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--lr", type=positive(float), default=defaults.lr, metavar="X", help=f"{lr_help} (default: {defaults.lr})"
    )
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {out})")
    may_change = ", ".join(f"--{name.replace('_', '-')}" for name in resumable)
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run in --out from its last.npz, with the options it was started with (only {may_change} may differ)",
    )


def training_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields every trainer takes, from the common and training options."""
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "data_file": args.data,
        "backend": args.backend,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "out": args.out,
    }


def add_checkpoint_argument(parser: argparse.ArgumentParser, kind: str) -> None:
    """The positional ``checkpoint`` argument of a command that reads a ``kind`` checkpoint."""
    metavar, help = CHECKPOINTS[kind]
    parser.add_argument("checkpoint", metavar=metavar, help=help)


def checkpoint_split(args: argparse.Namespace, metadata: Mapping[str, Any], split: str) -> ImageDataset:
    """The ``split`` of the data set (and file) the checkpoint was trained on, unless the
    options name another data set or file."""
    trained_on = metadata["dataset"]
    name = args.dataset or trained_on["name"]
    data_dir, data_file = args.data_dir, args.data
    if name == trained_on["name"] and data_dir is None and data_file is None:
        data_dir, data_file = trained_on.get("data_dir"), trained_on.get("data_file")
    return load_dataset(name, split, data_dir=data_dir, data_file=data_file)


def add_image_options(parser: argparse.ArgumentParser, split: str) -> None:
    """``--image N`` (required) and ``--split`` (default ``split``): one image of the data."""
    parser.add_argument("--image", type=int, required=True, metavar="N", help="index of the image in the split")
    parser.add_argument("--split", default=split, choices=SPLITS, help=f"(default: {split})")


def image_at(dataset: ImageDataset, index: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``--image index`` of ``dataset``: its images ``(1, C, H, W)`` in [0, 1] and labels."""
    if not 0 <= index < len(dataset):
        raise DatasetError(
            f"--image {index} is out of range: the {split} split of {dataset.info.name} "
            f"has {len(dataset)} images, 0 to {len(dataset) - 1}"
        )
    return dataset.batch(np.array([index]))


def write_json_report(path: str, report: Mapping[str, Any]) -> None:
    """``--json PATH``: the report as JSON, and a line saying where it went."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
