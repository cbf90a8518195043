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
    checkpoint_split,
    image_at,
    output_path,
    training_config,
    write_json_report,
)
from tinymed.data import ImageDataset
from tinymed.data.medmnist import SPLITS
from tinymed.explain import attention_map, gradcam
from tinymed.models import CLASSIFIERS
from tinymed.train.classifier import (
    DEFAULT_EPOCHS,
    FALLBACK_EPOCHS,
    RESUMABLE,
    TrainConfig,
    check_every_class,
    classification_metrics,
    evaluation_loader,
    input_normalization,
    load_classifier,
    predict,
    train_classifier,
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
        "--no-augment", action="store_true", help="train without augmentation (rotation, shift, brightness/contrast)"
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


def train(args: argparse.Namespace) -> None:
    """Train the classifier the options describe (see :func:`train_classifier`)."""
    config = TrainConfig(**training_config(args), model=args.model, augment=not args.no_augment)
    train_classifier(config, resume=args.resume, overwrite=args.overwrite)


# ---------------------------------------------------------------------- tinymed evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed evaluate``'s arguments."""
    add_checkpoint_argument(parser, "classifier")
    parser.add_argument("--split", default="test", choices=SPLITS, help="(default: test)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write acc, auc, sensitivity, specificity, confusion_matrix, n to this file"
    )
    add_common_options(parser, None)


def evaluate(args: argparse.Namespace) -> None:
    """Print the checkpoint's ACC, AUC, sensitivity, specificity and confusion matrix on a split."""
    json_out = args.json and output_path(args.json, "--json", [args.checkpoint, args.data])
    model, metadata = load_classifier(args.checkpoint, args.backend)
    dataset = classifier_split(args, model, metadata)
    check_every_class(dataset, args.split)
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
    if json_out:
        write_json_report(json_out, report)


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
