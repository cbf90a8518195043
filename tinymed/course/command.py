"""The ``tinymed course`` command (also ``python -m tinymed.course``).

::

    tinymed course list                      the chapters, their objectives and times
    tinymed course list --markdown           the outline in tutorials/README.md
    tinymed course notebooks [DIR]           the chapters as .ipynb, with their solutions
    tinymed course release OUT               the student version: solutions replaced by stubs
    tinymed course check CHAPTER [--path D]  grade a student's chapter; exit 0 when all pass

:func:`add_course_parser` adds the command to the ``tinymed`` parser; each sub-command sets
``run``, the function :func:`tinymed.cli.main` calls. A mistake a user can make raises a
:class:`~tinymed.course.chapters.CourseError`, which ``main`` prints as one line
``tinymed: error: ...`` before exiting with status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinymed.course.chapters import CHAPTERS, outline_markdown
from tinymed.course.check import check
from tinymed.course.notebook import write_notebooks
from tinymed.course.release import release

__all__ = ["add_course_parser"]


def _list(args: argparse.Namespace) -> int:
    if args.markdown:
        print(outline_markdown())
        return 0
    for c in CHAPTERS:
        status = "" if c.exists() else "  (not written yet)"
        needs = "".join([", GPU optional" if c.gpu else "", ", real data optional" if c.real_data else ""])
        after = f"after {', '.join(map(str, c.prerequisites))}" if c.prerequisites else "no prerequisites"
        print(f"{c.number:2d}. {c.title}{status}\n    {c.file_name}, {c.minutes} min, {after}{needs}")
        for objective in c.objectives:
            print(f"    - {objective}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    for path in write_notebooks(args.dir, overwrite=args.overwrite):
        print(path)
    return 0


def _release(args: argparse.Namespace) -> int:
    for path in release(args.out, overwrite=args.overwrite):
        print(path)
    return 0


def _check(args: argparse.Namespace) -> int:
    return check(args.chapter, args.path)


def add_course_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``course`` and its sub-commands to ``subparsers`` (what ``add_subparsers`` returned)."""
    course = subparsers.add_parser(
        "course",
        help="the course: list, notebooks, release, check",
        description="The tinymed course: thirteen chapters with exercises that grade themselves.",
    )
    commands = course.add_subparsers(dest="course_command", metavar="WHAT", required=True)
    listing = commands.add_parser("list", help="the chapters in order, with objectives and times")
    listing.add_argument(
        "--markdown", action="store_true", help="print the outline of the instructor's guide (Markdown)"
    )
    listing.set_defaults(run=_list)
    notebooks = commands.add_parser(
        "notebooks", help="write every chapter, solutions included, as a Jupyter notebook (.ipynb)"
    )
    notebooks.add_argument("dir", nargs="?", type=Path, default=Path("notebooks"), help="where (default: notebooks)")
    notebooks.add_argument("--overwrite", action="store_true", help="replace notebooks already in DIR")
    notebooks.set_defaults(run=_notebooks)
    releasing = commands.add_parser("release", help="write the student version (.py and .ipynb) into OUT")
    releasing.add_argument("out", type=Path, help="the folder to write (created if missing)")
    releasing.add_argument(
        "--overwrite", action="store_true", help="replace chapters already in OUT (and any answers written in them)"
    )
    releasing.set_defaults(run=_release)
    checking = commands.add_parser("check", help="grade your answers to a chapter's exercises")
    checking.add_argument("chapter", help="the chapter's number or name, e.g. 1 or 01_autograd")
    checking.add_argument("--path", type=Path, default=Path("."), help="the folder with your chapter (default: .)")
    checking.set_defaults(run=_check)
    return course
