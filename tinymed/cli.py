"""The ``tinymed`` command (also ``python -m tinymed``).

::

    tinymed train cnn --dataset phantoms                 train the default classifier
    tinymed evaluate runs/cnn-phantoms/best.npz          ACC, AUC, sensitivity, specificity
    tinymed explain runs/cnn-phantoms/best.npz --image 3 Grad-CAM and attention overlay

Each command is one :class:`Command` in :data:`COMMANDS`: its words, its help, a function
that adds its arguments to an ``argparse`` parser, and a function that runs it. A command
of two words (``train cnn``) appears under a group (``train``). Adding a command is adding
one entry.

Mistakes a user can make (an unknown data set, a missing or damaged file, a checkpoint of
another kind, a loss that diverges, a backend this machine lacks) raise one of
:data:`USER_ERRORS`; :func:`main` prints their one-line message and exits with status 1.
Anything else is a bug in tinymed, and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinymed
import tinymed.functional as F
from tinymed import backends, explain, plots
from tinymed.backends import BackendUnavailableError
from tinymed.data import DATASETS, DatasetError, ImageDataset, load_dataset
from tinymed.data.medmnist import SPLITS
from tinymed.models import CLASSIFIERS, ModelError
from tinymed.repair import RepairError
from tinymed.train import gan
from tinymed.train.checkpoint import CheckpointError
from tinymed.train.classifier import (
    DEFAULT_EPOCHS,
    FALLBACK_EPOCHS,
    TrainConfig,
    classification_metrics,
    evaluation_loader,
    input_normalization,
    load_classifier,
    predict,
    train_classifier,
)
from tinymed.train.run import TrainingError

__all__ = ["Command", "COMMANDS", "USER_ERRORS", "build_parser", "main"]

USER_ERRORS: tuple[type[Exception], ...] = (
    DatasetError,
    CheckpointError,
    TrainingError,
    ModelError,
    BackendUnavailableError,
    RepairError,
)


@dataclass(frozen=True)
class Command:
    """One command: ``name`` is its words after ``tinymed`` (``"train cnn"``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


# ---------------------------------------------------------------------- shared arguments


def _positive(kind: type) -> Callable[[str], Any]:
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


def _add_data_arguments(parser: argparse.ArgumentParser, dataset_default: str | None) -> None:
    default = f"default: {dataset_default}" if dataset_default else "default: the checkpoint's"
    parser.add_argument(
        "--dataset",
        default=dataset_default,
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


def _add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        default="numpy",
        choices=backends.NAMES,
        help="where the arrays live and the kernels run (default: numpy)",
    )


def _checkpoint_split(args: argparse.Namespace, metadata: dict[str, Any]) -> ImageDataset:
    """The split args ask for, by default of the data set (and file) the checkpoint was
    trained on, checked against what the model takes."""
    trained_on = metadata["dataset"]
    name = args.dataset or trained_on["name"]
    data_dir, data_file = args.data_dir, args.data
    if name == trained_on["name"] and data_dir is None and data_file is None:
        data_dir, data_file = trained_on.get("data_dir"), trained_on.get("data_file")
    dataset = load_dataset(name, args.split, data_dir=data_dir, data_file=data_file)
    config = metadata["model"]["config"]
    if (dataset.info.n_channels, len(dataset.info.labels)) != (config["in_channels"], config["num_classes"]):
        raise CheckpointError(
            f"{args.checkpoint} holds a model for {config['in_channels']}-channel images and "
            f"{config['num_classes']} classes; {name} has {dataset.info.n_channels} channel(s) and "
            f"{len(dataset.info.labels)} classes"
        )
    return dataset


# ---------------------------------------------------------------------- tinymed train cnn


def _train_cnn_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    _add_data_arguments(parser, defaults.dataset)
    parser.add_argument(
        "--model", default=CLASSIFIERS[0], choices=CLASSIFIERS, help=f"the network (default: {CLASSIFIERS[0]})"
    )
    _add_backend_argument(parser)
    epochs = ", ".join(f"{n} for {name}" for name, n in DEFAULT_EPOCHS.items())
    parser.add_argument(
        "--epochs",
        type=_positive(int),
        metavar="N",
        help=f"passes over the training set (default: {epochs}, {FALLBACK_EPOCHS} otherwise)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive(int),
        default=defaults.batch_size,
        metavar="N",
        help=f"images per step (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--lr",
        type=_positive(float),
        default=defaults.lr,
        metavar="X",
        help=f"peak learning rate of AdamW's one-cycle schedule (default: {defaults.lr})",
    )
    parser.add_argument(
        "--no-augment", action="store_true", help="train without augmentation (rotation, shift, brightness/contrast)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        metavar="N",
        help=f"makes the run reproducible (default: {defaults.seed})",
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (default: runs/cnn-DATASET)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last.npz (same options as it was started with)",
    )


def _train_cnn(args: argparse.Namespace) -> None:
    config = TrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        data_file=args.data,
        model=args.model,
        backend=args.backend,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=not args.no_augment,
        seed=args.seed,
        out=args.out,
    )
    train_classifier(config, resume=args.resume)


# ---------------------------------------------------------------------- tinymed evaluate


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a classifier checkpoint (best.npz or last.npz)")
    _add_data_arguments(parser, None)
    parser.add_argument("--split", default="test", choices=SPLITS, help="(default: test)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write acc, auc, sensitivity, specificity, confusion_matrix, n to this file"
    )
    _add_backend_argument(parser)


def _evaluate(args: argparse.Namespace) -> None:
    model, metadata = load_classifier(args.checkpoint, args.backend)
    dataset = _checkpoint_split(args, metadata)
    loader = evaluation_loader(dataset, metadata["normalization"])
    result = predict(model, loader, args.backend, dataset.info.multilabel)
    scores = classification_metrics(result.labels, result.scores, dataset.info.multilabel)
    report = {
        "acc": scores["acc"],
        "auc": scores["auc"],
        "sensitivity": scores.get("sensitivity"),
        "specificity": scores.get("specificity"),
        "confusion_matrix": scores.get("confusion_matrix"),
        "n": scores["n"],
    }
    spec = metadata["model"]
    print(f"{args.checkpoint}: {spec['name']} trained on {metadata['dataset']['name']} (epoch {metadata['epoch']})")
    print(f"{dataset.info.name}, {args.split} split, {report['n']} images")
    for key, label in (("acc", "ACC"), ("auc", "AUC"), ("sensitivity", "sensitivity"), ("specificity", "specificity")):
        if report[key] is not None:
            print(f"  {label:<12} {report[key]:.4f}")
    if report["confusion_matrix"] is not None:
        matrix = report["confusion_matrix"]
        # Columns by class index, rows by index and (shortened) name: MedMNIST's class names
        # run to 70 characters.
        rows = [f"{i} {name[:24]}" for i, name in enumerate(dataset.info.labels)]
        label_width = max(len(r) for r in rows)
        cell = max(len(str(len(rows) - 1)), *(len(str(count)) for row in matrix for count in row)) + 2
        print("  confusion matrix (rows: true class, columns: predicted class)")
        print("  " + " " * label_width + "".join(f"{i:>{cell}}" for i in range(len(rows))))
        for label, row in zip(rows, matrix):
            print(f"  {label:<{label_width}}" + "".join(f"{count:>{cell}}" for count in row))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


# ---------------------------------------------------------------------- tinymed explain


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a classifier checkpoint (best.npz or last.npz)")
    parser.add_argument("--image", type=int, required=True, metavar="N", help="index of the image in the split")
    parser.add_argument("--split", default="test", choices=SPLITS, help="(default: test)")
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="Grad-CAM's target layer, a name from the model (default: its last convolution block)",
    )
    parser.add_argument("--out", metavar="PNG", help="the figure (default: CHECKPOINT_DIR/explain-SPLIT-N.png)")
    _add_data_arguments(parser, None)
    _add_backend_argument(parser)


def _explain(args: argparse.Namespace) -> None:
    model, metadata = load_classifier(args.checkpoint, args.backend)
    dataset = _checkpoint_split(args, metadata)
    if not 0 <= args.image < len(dataset):
        raise DatasetError(
            f"--image {args.image} is out of range: the {args.split} split of {dataset.info.name} "
            f"has {len(dataset)} images, 0 to {len(dataset) - 1}"
        )
    images, labels = dataset.batch(np.array([args.image]))
    x = tinymed.from_numpy(input_normalization(metadata["normalization"])(images)).to(args.backend)
    with tinymed.no_grad():
        logits = model(x)
        probabilities = (F.sigmoid(logits) if dataset.info.multilabel else F.softmax(logits, dim=1)).numpy()[0]
    layer = args.layer or model.gradcam_layer
    heatmaps = {f"Grad-CAM ({layer})": explain.gradcam(model, x, layer=layer)[0]}
    attention = explain.attention_map(model, x)
    if attention is not None:
        heatmaps["attention received"] = attention[0]
    names = dataset.info.labels
    predicted = int(probabilities.argmax())
    truth = ", ".join(n for n, y in zip(names, labels[0]) if y) if dataset.info.multilabel else names[int(labels[0])]
    title = (
        f"{dataset.info.name} {args.split} image {args.image}: true {truth or 'none'}, "
        f"predicted {names[predicted]} (p = {probabilities[predicted]:.3f})"
    )
    image = images[0, 0] if images.shape[1] == 1 else images[0].transpose(1, 2, 0)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"explain-{args.split}-{args.image}.png"
    plots.plot_explanation(image, heatmaps, out, title=title)
    print(title)
    print(f"wrote {out}")


# ---------------------------------------------------------------------- the GAN commands (tinymed.train.gan)


def _with_shared_arguments(
    add_arguments: Callable[[argparse.ArgumentParser], None], data: bool = True, dataset_default: str | None = None
) -> Callable[[argparse.ArgumentParser], None]:
    """A command's own arguments, plus the shared data set (when ``data``) and backend options."""

    def add(parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)
        if data:
            _add_data_arguments(parser, dataset_default)
        _add_backend_argument(parser)

    return add


COMMANDS: tuple[Command, ...] = (
    Command(
        "train cnn", "train a CNN classifier and write checkpoints, metrics and plots", _train_cnn_arguments, _train_cnn
    ),
    Command(
        "evaluate",
        "evaluate a classifier checkpoint: ACC, AUC, sensitivity, specificity, confusion matrix",
        _evaluate_arguments,
        _evaluate,
    ),
    Command("explain", "draw Grad-CAM and attention maps of one image over the X-ray", _explain_arguments, _explain),
    Command(
        "train gan",
        "train a DCGAN that generates images; writes a checkpoint, sample grids and loss curves",
        _with_shared_arguments(gan.add_train_arguments, dataset_default=gan.GANConfig().dataset),
        gan.run_train,
    ),
    Command(
        "sample",
        "generate images with a GAN checkpoint into a MedMNIST-layout .npz",
        _with_shared_arguments(gan.add_sample_arguments, data=False),
        gan.run_sample,
    ),
    Command(
        "evaluate-gan",
        "score a GAN: Frechet distance and precision/recall on a classifier's features",
        _with_shared_arguments(gan.add_evaluate_arguments),
        gan.run_evaluate,
    ),
    Command(
        "repair",
        "inpaint a masked region of an image by optimising the GAN's latent vector",
        _with_shared_arguments(gan.add_repair_arguments),
        gan.run_repair,
    ),
)

# Help for the first word of multi-word commands.
GROUPS = {"train": "train a model"}


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The ``tinymed`` parser with one sub-command per entry of ``commands``."""
    parser = argparse.ArgumentParser(
        prog="tinymed",
        description="tinymed: deep learning for medical images, "
        "from scratch. Run 'tinymed COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tinymed {tinymed.__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for command in commands:
        *group_words, word = command.name.split()
        where = top
        for depth in range(len(group_words)):
            key = " ".join(group_words[: depth + 1])
            if key not in groups:
                group = where.add_parser(group_words[depth], help=GROUPS.get(key, ""), description=GROUPS.get(key))
                groups[key] = group.add_subparsers(dest=key.replace(" ", "_"), metavar="WHAT", required=True)
            where = groups[key]
        sub = where.add_parser(word, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except USER_ERRORS as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"tinymed: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinymed: interrupted", file=sys.stderr)
        return 130
