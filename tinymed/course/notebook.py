"""A chapter's file format: Jupytext percent-format Python, its cell tags and solution markers,
read and written with jupytext.

::

    # %% [markdown]                      prose (Markdown, LaTeX between $ signs)
    # %%                                 code
    # %% tags=["used-by-exercises"]      code the exercises build on (chapter 1's Value)
    # %% tags=["exercise"]               a graded function or class, self-contained (own imports)
    def tanh(x):
        # BEGIN SOLUTION
        ...                              replaced in the student version by
        # END SOLUTION                   raise NotImplementedError("Exercise 1.1: ...")

``tinymed course check`` runs only the cells tagged ``exercise`` or ``used-by-exercises``,
in file order, in a fresh namespace. The same cells are read from a ``.py`` file or from the
``.ipynb`` Jupyter saves, since jupytext keeps the tags as cell metadata.

jupytext comes with the ``course`` extra; every function here that needs it says so in one
line when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from tinymed.course.chapters import CHAPTERS, CourseError

__all__ = [
    "EXERCISE_TAG",
    "SUPPORT_TAG",
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "read_cells",
    "graded_cells",
    "write_ipynb",
    "write_notebooks",
]

EXERCISE_TAG = "exercise"
SUPPORT_TAG = "used-by-exercises"
BEGIN_SOLUTION = "# BEGIN SOLUTION"
END_SOLUTION = "# END SOLUTION"


def _jupytext() -> ModuleType:
    # jupytext is in the `course` extra, not a dependency of tinymed: import it when a
    # command needs it, so that `tinymed course list` and the chapters' helpers work without it.
    try:
        import jupytext
    except ImportError:
        raise CourseError("reading and writing notebooks needs jupytext: pip install 'tinymed[course]'") from None
    return jupytext


def read_cells(path: str | os.PathLike) -> list[Any]:
    """The cells of a chapter file, ``.py`` (percent format) or ``.ipynb``, as nbformat cells
    (``cell.cell_type``, ``cell.source``, ``cell.metadata``)."""
    path = Path(path)
    try:
        return list(_jupytext().read(path).cells)
    except (OSError, ValueError) as e:
        raise CourseError(f"cannot read {path} as a notebook: {e}") from e


def graded_cells(cells: list[Any]) -> list[Any]:
    """The code cells ``tinymed course check`` runs: those tagged exercise or used-by-exercises."""
    return [
        cell
        for cell in cells
        if cell.cell_type == "code" and {EXERCISE_TAG, SUPPORT_TAG} & set(cell.metadata.get("tags", ()))
    ]


def write_ipynb(text: str, path: str | os.PathLike) -> Path:
    """Write a chapter's percent-format ``text`` as the notebook ``path`` (no outputs)."""
    jupytext = _jupytext()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.reads(text, fmt="py:percent"), path, fmt="ipynb")
    return path


def refuse_to_overwrite(command: str, paths: list[Path], overwrite: bool) -> None:
    """Stop before writing anything when some of ``paths`` exist and ``overwrite`` is False:
    a folder of released chapters is where a student writes answers."""
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise CourseError(
            f"course {command}: {shown} already exist; writing would replace them, and any answers in them. "
            "Choose another folder, or pass --overwrite to replace them"
        )


def write_notebooks(out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """The instructor's notebooks: every written chapter as ``out_dir/NN_slug.ipynb``
    (existing files only with ``overwrite``, see :func:`refuse_to_overwrite`)."""
    targets = [(chapter, Path(out_dir) / f"{chapter.slug}.ipynb") for chapter in CHAPTERS if chapter.exists()]
    refuse_to_overwrite("notebooks", [path for _, path in targets], overwrite)
    return [write_ipynb(chapter.path().read_text(), path) for chapter, path in targets]
