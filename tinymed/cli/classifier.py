"""The classifier's commands: ``tinymed train cnn``, ``evaluate`` and ``explain``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import tinymed
import tinymed.functional as F
from tinymed import plots
from tinymed.cli.arguments import (
    FIGURE_SUFFIXES,
    add_checkpoint_argument,
    add_common_options,
    add_image_options,
    add_training_options,
    at_least,
    checkpoint_split,
    image_at,
    output_path,
    training_config,
    write_json_report,
)
from tinymed.data import AUGMENTATIONS, ImageDataset
from tinymed.data.medmnist import SPLITS
from tinymed.data.shift import SHIFTS
from tinymed.errors import TrainingError
from tinymed.explain import attention_map, gradcam
from tinymed.models import CLASSIFIERS
from tinymed.train.classifier import (
    CLASS_WEIGHTS,
    DEFAULT_EPOCHS,
    FALLBACK_EPOCHS,
    PHANTOM_RECIPE,
    RADIOGRAPH_RECIPE,
    RESUMABLE,
    SELECTIONS,
    TrainConfig,
    train_classifier,
)
from tinymed.train.classifier_evaluation import (
    PRIOR_NEGATIVE_FRACTION,
    check_every_class,
    classification_metrics,
    evaluation_loader,
    input_normalization,
    load_classifier,
    predict,
    shift_evaluation,
)

__all__ = [
    "add_train_arguments",
    "train",
    "add_evaluate_arguments",
    "evaluate",
    "add_explain_arguments",
    "explain",
]


def classifier_split(args: argparse.Namespace, model: Any, metadata: dict[str, Any]) -> ImageDataset:
    """``--split`` of the data (see :func:`checkpoint_split`), checked against the images and
    classes the checkpoint's ``model`` takes."""
    return checkpoint_split(args, metadata, args.split, model.config["in_channels"], model.config["num_classes"])


# ---------------------------------------------------------------------- tinymed train cnn


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed train cnn``'s arguments."""
    defaults = TrainConfig()
    add_common_options(parser, defaults.dataset, seed="makes the run reproducible")
    parser.add_argument(
        "--model", default=CLASSIFIERS[0], choices=CLASSIFIERS, help=f"the network (default: {CLASSIFIERS[0]})"
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="light: rotation, shift, brightness/contrast; strong: also zoom, gamma, blur and more contrast "
        f"(default: {RADIOGRAPH_RECIPE['augment']}; {PHANTOM_RECIPE['augment']} on the phantoms)",
    )
    parser.add_argument(
        "--class-weight",
        choices=CLASS_WEIGHTS,
        help="weigh the cross-entropy of class k by n / (K n_k), so each class counts alike (default: none)",
    )
    parser.add_argument(
        "--ema-decay",
        type=at_least(float, 0),
        metavar="D",
        help="validate and keep an exponential moving average of the weights, decay D in [0, 1), 0 for none "
        f"(default: {RADIOGRAPH_RECIPE['ema_decay']:g}; none on the phantoms)",
    )
    parser.add_argument(
        "--selection",
        choices=SELECTIONS,
        help="the epoch kept as best.npz: best by val AUC, or the last "
        f"(default: {RADIOGRAPH_RECIPE['selection']}; {PHANTOM_RECIPE['selection']} on the phantoms)",
    )
    parser.add_argument(
        "--channels",
        type=_widths,
        metavar="C1,C2,C3",
        help="medcnn's block widths (default: 32,64,128)",
    )
    add_training_options(
        parser,
        defaults,
        DEFAULT_EPOCHS,
        FALLBACK_EPOCHS,
        lr_help="peak learning rate of AdamW's one-cycle schedule",
        out="runs/cnn-DATASET",
        resumable=RESUMABLE,
    )


def _widths(text: str) -> list[int]:
    """``--channels``: three positive integers separated by commas."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        widths = []
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers such as 32,64,128, got {text!r}")
    return widths


def train(args: argparse.Namespace) -> None:
    """Train the classifier the options describe (see :func:`train_classifier`)."""
    if args.channels is not None and args.model != "medcnn":
        raise TrainingError(f"train cnn --channels sets medcnn's widths; --model {args.model} has none to set")
    config = TrainConfig(
        **training_config(args),
        model=args.model,
        model_config=None if args.channels is None else {"channels": args.channels},
        augment=args.augment,
        class_weight=args.class_weight,
        ema_decay=args.ema_decay,
        selection=args.selection,
    )
    train_classifier(config, resume=args.resume, overwrite=args.overwrite)


# ---------------------------------------------------------------------- tinymed evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed evaluate``'s arguments."""
    add_checkpoint_argument(parser, "classifier")
    parser.add_argument("--split", default="test", choices=SPLITS, help="(default: test)")
    parser.add_argument(
        "--shift",
        action="store_true",
        help=f"also evaluate the split under each acquisition perturbation ({', '.join(SHIFTS)}; "
        "the shift-proxy validation, see tinymed.data.shift)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write acc, auc, balanced_acc, sensitivity, specificity, acc_at_prior, confusion_matrix, n "
        "(and with --shift, shift) to this file",
    )
    add_common_options(parser, None)


# The figures evaluate prints, by key, with their labels.
FIGURES = {
    "acc": "ACC",
    "auc": "AUC",
    "balanced_acc": "balanced ACC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "acc_at_prior": f"ACC at {PRIOR_NEGATIVE_FRACTION:.1%} negative",
}


def evaluate(args: argparse.Namespace) -> None:
    """Print the checkpoint's figures (:data:`FIGURES`) and confusion matrix on a split and,
    with ``--shift``, a table of them under each perturbation of the shift-proxy validation."""
    json_out = args.json and output_path(args.json, "--json", [args.checkpoint, args.data])
    model, metadata = load_classifier(args.checkpoint, args.backend)
    dataset = classifier_split(args, model, metadata)
    check_every_class(dataset, args.split)
    loader = evaluation_loader(dataset, metadata["normalization"])
    result = predict(model, loader, args.backend, dataset.info.multilabel)
    scores = classification_metrics(result.labels, result.scores, dataset.info.multilabel)
    report: dict[str, Any] = {key: scores.get(key) for key in (*FIGURES, "confusion_matrix", "n")}
    spec = metadata["model"]
    print(f"{args.checkpoint}: {spec['name']} trained on {metadata['dataset']['name']} (epoch {metadata['epoch']})")
    print(f"{dataset.info.name}, {args.split} split, {report['n']} images")
    for key, label in FIGURES.items():
        if report[key] is not None:
            print(f"  {label:<22} {report[key]:.4f}")
    if report["confusion_matrix"] is not None:
        _print_confusion_matrix(report["confusion_matrix"], dataset.info.labels)
    if args.shift:
        report["shift"] = shift_evaluation(model, dataset, metadata["normalization"], args.backend)
        _print_shift_table(report["shift"], args.split)
    if json_out:
        write_json_report(json_out, report)


def _print_confusion_matrix(matrix: list[list[int]], names: tuple[str, ...]) -> None:
    # Columns by class index, rows by index and (shortened) name: MedMNIST's class names
    # run to 70 characters.
    rows = [f"{i} {name[:24]}" for i, name in enumerate(names)]
    label_width = max(len(r) for r in rows)
    cell = max(len(str(len(rows) - 1)), *(len(str(count)) for row in matrix for count in row)) + 2
    print("  confusion matrix (rows: true class, columns: predicted class)")
    print("  " + " " * label_width + "".join(f"{i:>{cell}}" for i in range(len(rows))))
    for label, row in zip(rows, matrix):
        print(f"  {label:<{label_width}}" + "".join(f"{count:>{cell}}" for count in row))


def _print_shift_table(shift: dict[str, Any], split: str) -> None:
    """One row per perturbation and strength, then their mean; a column per figure it has."""
    keys = [key for key in FIGURES if key in shift["mean"]]
    headers = {"acc": "ACC", "auc": "AUC", "balanced_acc": "bal ACC", "sensitivity": "sens", "specificity": "spec"}
    headers["acc_at_prior"] = f"ACC@{PRIOR_NEGATIVE_FRACTION:.1%}"
    print(f"  shift-proxy: the {split} split under acquisition perturbations (seed {shift['seed']})")
    print(f"  {'perturbation':<20}" + "".join(f"{headers[key]:>11}" for key in keys))
    for row in shift["conditions"]:
        name = f"{row['perturbation']} {row['strength']:g}"
        print(f"  {name:<20}" + "".join(f"{row[key]:>11.4f}" for key in keys))
    print(f"  {'mean':<20}" + "".join(f"{shift['mean'][key]:>11.4f}" for key in keys))


# ---------------------------------------------------------------------- tinymed explain


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed explain``'s arguments."""
    add_checkpoint_argument(parser, "classifier")
    add_image_options(parser, split="test")
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="Grad-CAM's target layer, a name from the model (default: its last convolution block)",
    )
    parser.add_argument(
        "--out", metavar="PNG", help="the figure, .png, .pdf, .svg, ... (default: CHECKPOINT_DIR/explain-SPLIT-N.png)"
    )
    add_common_options(parser, None)


def explain(args: argparse.Namespace) -> None:
    """Draw Grad-CAM (and, for a model with attention, the attention received) over one image."""
    default = Path(args.checkpoint).parent / f"explain-{args.split}-{args.image}.png"
    out = output_path(args.out or default, "--out", [args.checkpoint, args.data], FIGURE_SUFFIXES)
    model, metadata = load_classifier(args.checkpoint, args.backend)
    dataset = classifier_split(args, model, metadata)
    images, labels = image_at(dataset, args.image, args.split)
    x = tinymed.from_numpy(input_normalization(metadata["normalization"])(images)).to(args.backend)
    with tinymed.no_grad():
        logits = model(x)
        probabilities = (F.sigmoid(logits) if dataset.info.multilabel else F.softmax(logits, dim=1)).numpy()[0]
    layer = args.layer or model.gradcam_layer
    heatmaps = {f"Grad-CAM ({layer})": gradcam(model, x, layer=layer)[0]}
    attention = attention_map(model, x)
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
    plots.plot_explanation(image, heatmaps, out, title=title)
    print(title)
    print(f"wrote {out}")
