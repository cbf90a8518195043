"""The ``tinymed`` command (also ``python -m tinymed``).

::

    tinymed train cnn --dataset phantoms                 train the default classifier
    mpiexec -n 2 tinymed train cnn --dataset phantoms    the same, data-parallel on 2 processes
    tinymed evaluate runs/cnn-phantoms/best.npz          ACC, AUC, sensitivity, specificity
    tinymed explain runs/cnn-phantoms/best.npz --image 3 Grad-CAM and attention overlay

Each command is one :class:`Command` in :data:`COMMANDS`: its words, its help, the function
that adds all its arguments to an ``argparse`` parser, and the function that runs it; both
live in :mod:`tinymed.cli.classifier` or :mod:`tinymed.cli.gan`, and take the options several
commands share from :mod:`tinymed.cli.arguments`. A command of two words (``train cnn``)
appears under a group (``train``). Adding a command is adding one entry.

Every failure leaves through :func:`main`, on one line of standard error:

* a usage mistake (an unknown option, a value out of its range) prints
  ``tinymed: error: ...`` and exits with status 2, as argparse does, but without the usage
  block;
* a mistake in what the command was given (a missing or malformed data file or checkpoint, an
  output path that cannot be written, a loss that diverges, a backend this machine lacks)
  raises one of :data:`USER_ERRORS`, or an ``OSError`` from the system (a full disk, a
  permission), and prints ``tinymed: error: MESSAGE`` with exit status 1 (a TinymedError's
  ``exit_status``: 2 for the course command's, since ``tinymed course check`` exits 1 when an
  exercise fails);
* anything else is a bug in tinymed: one line names the exception and where to report it,
  exit status 1.

A reader that stops reading (``tinymed course list | head -1``) ends the command quietly with
exit status 141, as a Unix tool killed by SIGPIPE does.

``--debug`` (on any command) or the environment variable ``TINYMED_DEBUG=1`` lets the
exception propagate with its traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import tinymed
from tinymed.cli import classifier, gan
from tinymed.course.command import add_course_parser
from tinymed.errors import TinymedError

__all__ = ["Command", "COMMANDS", "USER_ERRORS", "DEBUG_ENV_VAR", "BROKEN_PIPE_STATUS", "build_parser", "main"]

# Every error a user can cause derives from TinymedError (a missing backend included).
USER_ERRORS: tuple[type[Exception], ...] = (TinymedError,)
DEBUG_ENV_VAR = "TINYMED_DEBUG"
REPORT_TO = "the tinymed issue tracker"


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
        "generate images with a GAN checkpoint into an .npz (images uint8, as MedMNIST stores them)",
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


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (``tinymed: error: ...``, status 2)
    pointing at ``--help``, instead of the usage block followed by the message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"tinymed: error: {message}; see '{self.prog} --help'\n")


def _add_debug_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a sub-command's default must not overwrite a --debug given before it.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show the full traceback of an error (also: {DEBUG_ENV_VAR}=1)",
    )


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The ``tinymed`` parser with one sub-command per entry of ``commands``."""
    parser = OneLineParser(
        prog="tinymed",
        description="tinymed: deep learning for medical images, "
        "from scratch. Run 'tinymed COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tinymed {tinymed.__version__}")
    _add_debug_option(parser)
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
        _add_debug_option(sub)
        sub.set_defaults(run=command.run)
    add_course_parser(top)
    return parser


def describe(error: BaseException) -> str:
    """The one line :func:`main` prints for ``error``: a user error's own message, a system
    error's reason and file, and for anything else the exception and where to report it."""
    if isinstance(error, USER_ERRORS):
        message = str(error)
    elif isinstance(error, OSError):
        where = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        message = f"{error.strerror or error}{f': {where}' if where else ''}"
    elif isinstance(error, MemoryError):
        message = f"out of memory ({error or 'an allocation failed'}); try a smaller --batch-size or model"
    else:
        message = (
            f"unexpected {type(error).__name__}: {error}. This is a bug in tinymed {tinymed.__version__}; "
            f"please report it to {REPORT_TO} with the command and its output under --debug"
        )
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


# 128 + SIGPIPE: what a shell reports for a tool whose reader closed the pipe.
BROKEN_PIPE_STATUS = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit status
    (0 done, 1 error, 2 usage error, 130 interrupted, 141 standard output closed)."""
    try:
        try:
            return _run(argv)
        finally:
            # Output still buffered would otherwise meet a closed pipe at exit, past any handler.
            sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout once more at exit; pointing it at /dev/null keeps that quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0")
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("tinymed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as e:
        if debug:
            raise
        print(f"tinymed: error: {describe(e)}", file=sys.stderr)
        return e.exit_status if isinstance(e, TinymedError) else 1
