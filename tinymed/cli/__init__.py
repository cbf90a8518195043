"""The ``tinymed`` command (also ``python -m tinymed``).

::

    tinymed train cnn --dataset phantoms                 train the default classifier
    tinymed evaluate runs/cnn-phantoms/best.npz          ACC, AUC, sensitivity, specificity
    tinymed explain runs/cnn-phantoms/best.npz --image 3 Grad-CAM and attention overlay

Each command is one :class:`Command` in :data:`COMMANDS`: its words, its help, the function
that adds all its arguments to an ``argparse`` parser, and the function that runs it; both
live in :mod:`tinymed.cli.classifier` or :mod:`tinymed.cli.gan`, and take the options several
commands share from :mod:`tinymed.cli.arguments`. A command of two words (``train cnn``)
appears under a group (``train``). Adding a command is adding one entry.

Mistakes a user can make (an unknown data set, a missing or damaged file, a checkpoint of
another kind, a loss that diverges, a backend this machine lacks) raise one of
:data:`USER_ERRORS`; :func:`main` prints their one-line message and exits with status 1.
Anything else is a bug in tinymed, and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tinymed
from tinymed.backends import BackendUnavailableError
from tinymed.cli import classifier, gan
from tinymed.course.command import add_course_parser
from tinymed.data import DatasetError
from tinymed.models import ModelError
from tinymed.repair import RepairError
from tinymed.train.checkpoint import CheckpointError
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


COMMANDS: tuple[Command, ...] = (
    Command(
        "train cnn",
        "train a CNN classifier and write checkpoints, metrics and plots",
        classifier.add_train_arguments,
        classifier.train,
    ),
    Command(
        "evaluate",
        "evaluate a classifier checkpoint: ACC, AUC, sensitivity, specificity, confusion matrix",
        classifier.add_evaluate_arguments,
        classifier.evaluate,
    ),
    Command(
        "explain",
        "draw Grad-CAM and attention maps of one image over the X-ray",
        classifier.add_explain_arguments,
        classifier.explain,
    ),
    Command(
        "train gan",
        "train a DCGAN that generates images; writes a checkpoint, sample grids and loss curves",
        gan.add_train_arguments,
        gan.train,
    ),
    Command(
        "sample",
        "generate images with a GAN checkpoint into a MedMNIST-layout .npz",
        gan.add_sample_arguments,
        gan.sample,
    ),
    Command(
        "evaluate-gan",
        "score a GAN: Frechet distance and precision/recall on a classifier's features",
        gan.add_evaluate_arguments,
        gan.evaluate,
    ),
    Command(
        "repair",
        "inpaint a masked region of an image by optimising the GAN's latent vector",
        gan.add_repair_arguments,
        gan.repair,
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
    add_course_parser(top)
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
