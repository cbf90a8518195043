"""The GAN's commands: ``tinymed train gan``, ``sample``, ``evaluate-gan`` and ``repair``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinymed
from tinymed import plots
from tinymed.cli.arguments import (
    FIGURE_SUFFIXES,
    add_checkpoint_argument,
    add_common_options,
    add_image_options,
    add_time_budget_option,
    add_training_options,
    at_least,
    checkpoint_split,
    image_at,
    output_path,
    positive,
    training_config,
    write_json_report,
)
from tinymed.outputs import atomic_write
from tinymed.repair import MASKS, inpaint, make_mask
from tinymed.train.checkpoint import CheckpointError
from tinymed.train.classifier_evaluation import load_classifier
from tinymed.train.gan import (
    DEFAULT_EPOCHS,
    FALLBACK_EPOCHS,
    FALLBACK_MINUTES,
    RESUMABLE,
    GANConfig,
    generate,
    load_gan,
    to_uint8,
    train_gan,
)
from tinymed.train.gan_evaluation import evaluate_gan

__all__ = [
    "add_train_arguments",
    "train",
    "add_sample_arguments",
    "sample",
    "add_evaluate_arguments",
    "evaluate",
    "add_repair_arguments",
    "repair",
]

# ---------------------------------------------------------------------- tinymed train gan


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed train gan``'s arguments."""
    defaults = GANConfig()
    add_common_options(parser, defaults.dataset, seed="makes the run reproducible")
    parser.add_argument(
        "--label",
        default="all",
        metavar="all|K",
        help="train on one class only (its index, e.g. 0 for normal) or on all (default: all)",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional GAN (with --label all) that generates a chosen class",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        metavar="X",
        help="one-sided label smoothing: real images' target is 1 - X (default: 0, try 0.1)",
    )
    sizes = {"ngf": "generator width", "ndf": "discriminator width", "latent_dim": "length of the latent vector z"}
    for name, what in sizes.items():
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=positive(int),
            default=default,
            metavar="N",
            help=f"{what} (default: {default})",
        )
    add_training_options(
        parser,
        defaults,
        DEFAULT_EPOCHS,
        FALLBACK_EPOCHS,
        lr_help="Adam's learning rate for both networks",
        out="runs/gan-DATASET",
        resumable=RESUMABLE,
    )
    add_time_budget_option(parser, FALLBACK_MINUTES, DEFAULT_EPOCHS)
    parser.add_argument(
        "--ema-decay",
        type=at_least(float, 0),
        default=defaults.ema_decay,
        metavar="X",
        help=f"decay of the moving average of the generator's weights, the generator a user gets "
        f"(with a warm-up, see tinymed.train.gan; 0: none, the last step's) (default: {defaults.ema_decay:g})",
    )


def train(args: argparse.Namespace) -> None:
    """Train the GAN the options describe (see :func:`train_gan`)."""
    config = GANConfig(
        **training_config(args),
        minutes=args.minutes,
        ema_decay=args.ema_decay,
        label=args.label,
        conditional=args.conditional,
        label_smoothing=args.label_smoothing,
        latent_dim=args.latent_dim,
        ngf=args.ngf,
        ndf=args.ndf,
    )
    train_gan(config, resume=args.resume, overwrite=args.overwrite)


# ---------------------------------------------------------------------- tinymed sample


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed sample``'s arguments."""
    add_checkpoint_argument(parser, "gan")
    parser.add_argument("--n", type=positive(int), required=True, metavar="N", help="how many images to generate")
    parser.add_argument(
        "--label",
        type=int,
        metavar="K",
        help="for a conditional GAN, generate only class K (default: the training set's class mix)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.npz",
        help="images uint8 (N, 28, 28) under 'images' (and 'labels' (N, 1) when conditional)",
    )
    add_common_options(parser, None, data=False, seed="picks the latent vectors")


def sample(args: argparse.Namespace) -> None:
    """Generate ``--n`` images into an ``.npz`` at exactly ``--out`` (``images`` uint8 as
    MedMNIST stores them, ``labels`` when conditional; no split keys: it is not a data set)."""
    out = output_path(args.out, "--out", [args.checkpoint], (".npz",))
    gan, metadata = load_gan(args.checkpoint, args.backend)
    classes = metadata["dataset"]["labels"]
    if args.label is not None and not (gan.num_classes and 0 <= args.label < gan.num_classes):
        raise CheckpointError(
            f"--label {args.label}: {args.checkpoint} is an unconditional GAN"
            if not gan.num_classes
            else f"--label {args.label} is not one of the GAN's classes 0..{gan.num_classes - 1}"
        )
    tinymed.manual_seed(args.seed)
    labels = None
    if gan.num_classes:
        if args.label is not None:
            labels = np.full(args.n, args.label, np.int64)
        else:
            counts = np.asarray(metadata["dataset"]["class_counts"], np.float64)
            labels = tinymed.random.generator().choice(gan.num_classes, size=args.n, p=counts / counts.sum())
    z = tinymed.randn(args.n, gan.latent_dim).numpy()
    images = to_uint8(generate(gan.generator, z, labels, args.backend))
    images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels.astype(np.uint8)[:, None]}
    out.parent.mkdir(parents=True, exist_ok=True)
    # Through a file object: given a name, np.savez_compressed would add .npz to it.
    with atomic_write(out) as f:
        np.savez_compressed(f, **arrays)
    mix = "" if labels is None else ", " + ", ".join(f"{np.sum(labels == i)} {c}" for i, c in enumerate(classes))
    print(f"wrote {args.n} generated images{mix} to {out}")


# ---------------------------------------------------------------------- tinymed evaluate-gan


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed evaluate-gan``'s arguments."""
    add_checkpoint_argument(parser, "gan")
    parser.add_argument(
        "--classifier",
        required=True,
        metavar="CNN_CHECKPOINT",
        help="a trained tinymed classifier (best.npz of tinymed train cnn) whose features are compared",
    )
    parser.add_argument("--json", metavar="PATH", help="also write fd, fd_floor, fd_untrained, precision, recall here")
    parser.add_argument(
        "--raw-generator",
        action="store_true",
        help="score the raw generator the run trained, not its moving average (the same run with and without "
        "the EMA; a run without EMA has only the raw one)",
    )
    add_common_options(parser, None, seed="picks the latent vectors")


def evaluate(args: argparse.Namespace) -> None:
    """Print (and with ``--json`` write) the GAN's scores from :func:`evaluate_gan`."""
    json_out = args.json and output_path(args.json, "--json", [args.checkpoint, args.classifier, args.data])
    gan, metadata = load_gan(args.checkpoint, args.backend, raw=args.raw_generator)
    which = "its raw" if args.raw_generator else "the user's (its EMA where it kept one)"
    classifier, classifier_metadata = load_classifier(args.classifier, args.backend)
    train_set, val_set = (
        checkpoint_split(args, metadata, split, gan.config["channels"], gan.num_classes or None)
        for split in ("train", "val")
    )
    report = evaluate_gan(gan, metadata, classifier, classifier_metadata, train_set, val_set, args.backend, args.seed)
    print(
        f"{args.checkpoint}: DCGAN trained on {metadata['dataset']['name']} (label {metadata['dataset']['label']}, "
        f"epoch {metadata['epoch']}), scoring {which} generator"
    )
    print(
        f"features: {report['feature_dim']} from {classifier_metadata['model']['name']} ({args.classifier}); "
        f"{report['n_generated']} generated, {report['n_train']} train, {report['n_val']} val images"
    )
    for key, label in (
        ("fd", "Frechet distance to val, generated"),
        ("fd_floor", "Frechet distance to val, train (floor)"),
        ("fd_untrained", "Frechet distance to val, untrained G"),
        ("precision", f"precision (k={report['k']})"),
        ("recall", f"recall (k={report['k']})"),
    ):
        print(f"  {label:<40} {report[key]:.4f}")
    if json_out:
        write_json_report(json_out, {**report, "raw_generator": args.raw_generator})


# ---------------------------------------------------------------------- tinymed repair


def add_repair_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed repair``'s arguments."""
    add_checkpoint_argument(parser, "gan")
    add_image_options(parser, split="val")
    parser.add_argument(
        "--mask",
        default="box",
        choices=MASKS,
        help="box: a square hole; random: scattered missing pixels (default: box)",
    )
    parser.add_argument(
        "--box-size", type=positive(int), default=10, metavar="PX", help="side of the box hole (default: 10)"
    )
    parser.add_argument(
        "--missing",
        type=float,
        default=0.6,
        metavar="P",
        help="fraction of pixels missing for --mask random (default: 0.6)",
    )
    parser.add_argument(
        "--steps", type=positive(int), default=300, metavar="N", help="optimisation steps (default: 300)"
    )
    parser.add_argument(
        "--out",
        metavar="PNG",
        help="the figure, .png, .pdf, .svg, ... (default: CHECKPOINT_DIR/repair-SPLIT-N-MASK.png)",
    )
    add_common_options(parser, None, seed="places the mask and the start latents")


def repair(args: argparse.Namespace) -> None:
    """Inpaint a masked region of one image (see :func:`tinymed.repair.inpaint`) and draw it."""
    default = Path(args.checkpoint).parent / f"repair-{args.split}-{args.image}-{args.mask}.png"
    out = output_path(args.out or default, "--out", [args.checkpoint, args.data], FIGURE_SUFFIXES)
    gan, metadata = load_gan(args.checkpoint, args.backend)
    dataset = checkpoint_split(args, metadata, args.split, gan.config["channels"], gan.num_classes or None)
    images, labels = image_at(dataset, args.image, args.split)
    image = images[0]
    tinymed.manual_seed(args.seed)
    known = make_mask(
        args.mask, image.shape[1:], tinymed.random.generator(), box_size=args.box_size, missing=args.missing
    )
    label = int(labels[0]) if gan.num_classes else None
    result = inpaint(gan, image, known, label=label, steps=args.steps, backend=args.backend)
    hole = ~known
    error = np.abs(result.repaired - image)[:, hole].mean()
    baseline = np.abs(image[:, known].mean() - image)[:, hole].mean()
    masked = np.where(known, image, 0.5)
    panels = [masked, result.generated, result.repaired, image]
    titles = ["masked input", "G(z*), generated", "repaired", "truth"]
    pictures = np.stack([p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0) for p in panels])
    plots.plot_image_grid(
        pictures,
        out,
        nrow=len(panels),
        titles=titles,
        title=f"{dataset.info.name} {args.split} image {args.image}, {args.mask} mask "
        f"({hole.sum()} of {hole.size} pixels missing)",
    )
    print(
        f"repaired {hole.sum()} missing pixels of {dataset.info.name} {args.split} image {args.image}: mean absolute "
        f"error in the hole {error:.4f} (filling with the mean known pixel: {baseline:.4f})"
    )
    print(f"wrote {out}")
