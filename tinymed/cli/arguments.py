"""The arguments several commands share, each defined once, and what they select.

Every command adds its arguments in one function of its own (``add_*_arguments``), which
reads top to bottom as the command's ``--help``. What more than one command takes comes from
here:

* :func:`add_common_options` (every command): the data set and where its file is, the
  backend, and the seed;
* :func:`add_training_options` (``train cnn`` and ``train gan``): epochs, batch size,
  learning rate, the output directory and ``--resume``; :func:`training_config` turns them,
  with the common options, into the fields both trainers' configs share;
  :func:`add_time_budget_option`, ``--minutes``, for a trainer whose config has ``minutes``;
* :func:`add_checkpoint_argument` (the commands that read a checkpoint), with
  :func:`checkpoint_split`, the data the options name, or else the data set the checkpoint
  was trained on, checked against the checkpoint; and :func:`add_image_options` with
  :func:`image_at`, one image of it;
* :func:`output_path`, which every command applies to each file it will write before it
  starts its work, and :func:`write_json_report`.

A checkpoint never chooses a path: it names its data by data set name and MD5, and the data
is read from where the options (or the defaults) say.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase

from tinymed.data import DATASETS, DatasetError, ImageDataset, load_dataset
from tinymed.data.medmnist import SPLITS
from tinymed.device import KERNELS
from tinymed.errors import OutputError
from tinymed.outputs import atomic_write, check_output
from tinymed.train.checkpoint import is_checkpoint
from tinymed.train.divergence import DEFAULT_FACTOR

__all__ = [
    "at_least",
    "positive",
    "FIGURE_SUFFIXES",
    "add_common_options",
    "add_training_options",
    "add_time_budget_option",
    "training_config",
    "add_checkpoint_argument",
    "checkpoint_split",
    "add_image_options",
    "image_at",
    "output_path",
    "write_json_report",
]

# The file types matplotlib draws figures into (--out of explain and repair), by suffix.
FIGURE_SUFFIXES = tuple(f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes())

# The checkpoint a command reads, by its kind: the metavar and help of its argument.
CHECKPOINTS = {
    "classifier": ("CHECKPOINT", "a classifier checkpoint (best.npz or last.npz)"),
    "gan": ("GAN_CHECKPOINT", "a GAN checkpoint (last.npz of tinymed train gan)"),
}


def at_least(kind: type, low: float, strict: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite number of ``kind`` (int or float) at least ``low`` (above it
    when ``strict``)."""
    expected = f"expected a finite {kind.__name__} {'above' if strict else 'of at least'} {low}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if not (math.isfinite(value) and (value > low if strict else value >= low)):
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number of ``kind`` (int or float) greater than zero."""
    return at_least(kind, 0, strict=True)


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
        choices=KERNELS,
        help="where the arrays live and the kernels run (default: numpy)",
    )
    if seed:
        parser.add_argument("--seed", type=at_least(int, 0), default=0, metavar="N", help=f"{seed} (default: 0)")


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
        help=f"images per step, split evenly across the processes under mpiexec (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--lr", type=positive(float), default=defaults.lr, metavar="X", help=f"{lr_help} (default: {defaults.lr})"
    )
    parser.add_argument(
        "--divergence-factor",
        type=at_least(float, 1, strict=True),
        default=DEFAULT_FACTOR,
        metavar="X",
        help=f"stop when a loss exceeds X times where it began, max(first loss, 1) (default: {DEFAULT_FACTOR:g})",
    )
    parser.add_argument("--out", metavar="DIR", help=f"output directory (default: {out})")
    may_change = ", ".join(f"--{name.replace('_', '-')}" for name in resumable)
    run = parser.add_mutually_exclusive_group()
    run.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run in --out from its last.npz, with the options, data and number of processes it "
        f"was started with (only {may_change} and where the data and --out are may differ)",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace the checkpoints of an earlier run in --out, if it holds any"
    )


def add_time_budget_option(parser: argparse.ArgumentParser, fallback_minutes: float, fixed: Iterable[str]) -> None:
    """``--minutes M``: a budget of training time (see :meth:`tinymed.train.run.RunDirectory.fits_in`),
    by default ``fallback_minutes`` when ``--epochs`` is not given, except on the data sets
    ``fixed``, which train a fixed number of epochs."""
    parser.add_argument(
        "--minutes",
        type=positive(float),
        metavar="M",
        help=f"a budget of M minutes of training (counted across --resume): start another epoch only while the "
        f"mean epoch says it ends in time; --epochs is then an upper bound (default: {fallback_minutes:g} when "
        f"--epochs is not given, none for {', '.join(fixed)})",
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
        "divergence_factor": args.divergence_factor,
    }


def add_checkpoint_argument(parser: argparse.ArgumentParser, kind: str) -> None:
    """The positional ``checkpoint`` argument of a command that reads a ``kind`` checkpoint."""
    metavar, help = CHECKPOINTS[kind]
    parser.add_argument("checkpoint", metavar=metavar, help=help)


def checkpoint_split(
    args: argparse.Namespace, metadata: Mapping[str, Any], split: str, channels: int, classes: int | None = None
) -> ImageDataset:
    """The ``split`` of the data set the options name (default: the one the checkpoint
    ``args.checkpoint`` was trained on), read from where they say (default: the data set's
    default place), checked against the checkpoint: images of its size with ``channels``
    channels (and ``classes`` classes, when given); and, when the options name no file, the
    file the checkpoint was trained on, by its MD5."""
    trained_on, checkpoint = metadata["dataset"], args.checkpoint
    name = args.dataset or trained_on["name"]
    dataset = load_dataset(name, split, data_dir=args.data_dir, data_file=args.data)
    info, md5 = dataset.info, trained_on["md5"]
    if args.data is None and name == trained_on["name"] and md5 is not None and dataset.md5 != md5:
        found = "is generated in memory" if dataset.md5 is None else f"in its default place has MD5 {dataset.md5}"
        raise DatasetError(
            f"{checkpoint} was trained on a {name} file with MD5 {md5}; the {name} data {found}. "
            f"Give that file with --data FILE.npz"
        )
    shape = (info.n_channels, *dataset.image_size)
    if shape != (channels, *trained_on["image_size"]):
        raise DatasetError(
            f"{checkpoint} holds a model for {channels}x{'x'.join(map(str, trained_on['image_size']))} images "
            f"(channels x height x width); the {split} split of {name} has {'x'.join(map(str, shape))} images"
        )
    if classes is not None and len(info.labels) != classes:
        raise DatasetError(f"{checkpoint} holds a model for {classes} classes; {name} has {len(info.labels)}")
    for stat in ("mean", "std"):
        if len(metadata["normalization"][stat]) not in (1, channels):
            raise DatasetError(
                f"{checkpoint}: its normalization {stat} has {len(metadata['normalization'][stat])} values "
                f"for {channels}-channel images"
            )
    return dataset


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


def output_path(
    path: str | Path, what: str, inputs: Iterable[str | None] = (), suffixes: Iterable[str] | None = None
) -> Path:
    """``path``, checked before the command's work (see :func:`tinymed.outputs.check_output`):
    writable, not a directory, none of ``inputs`` (the files the command reads; None for an
    option not given), not a tinymed checkpoint, and ending in one of ``suffixes`` when given.
    ``what`` names it in the message (``"--json"``)."""
    out = check_output(path, what, [source for source in inputs if source is not None])
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise OutputError(f"{what} {out}: the name must end in one of {', '.join(suffixes)}, which say its format")
    if is_checkpoint(out):
        raise OutputError(f"{what} {out} is a tinymed checkpoint; writing it would destroy it, choose another path")
    return out


def write_json_report(path: Path, report: Mapping[str, Any]) -> None:
    """``--json PATH`` (checked by :func:`output_path`): the report as JSON, and a line saying
    where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(json.dumps(report, indent=2).encode() + b"\n")
    print(f"wrote {path}")
