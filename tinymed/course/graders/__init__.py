"""One module of graders per chapter, ``chNN.py``, each listing its ``EXERCISES``.

They ship in the package, so a student who installed tinymed (no repository) can run
``tinymed course check``. See :mod:`tinymed.course.grading` for what a grader is.
"""

from __future__ import annotations

import importlib

from tinymed.course.chapters import Chapter
from tinymed.course.grading import Exercise

__all__ = ["exercises_of"]


def exercises_of(chapter: Chapter) -> tuple[Exercise, ...]:
    """The graded exercises of ``chapter``, in order; empty when it has no grader module yet."""
    name = f"{__name__}.ch{chapter.number:02d}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:  # the grader module exists but imports something missing
            raise
        return ()
    return tuple(module.EXERCISES)
