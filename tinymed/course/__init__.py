"""The tinymed course: the helpers its chapters call, and the machinery that builds, releases
and grades it (the ``tinymed course`` command).

A chapter (``tutorials/NN_slug.py``) uses three helpers::

    from tinymed import course

    epochs = course.pick(10, 1)                 # 10, or 1 in fast mode (TINYMED_FAST=1)
    train = course.xray_dataset("train", n=course.pick(None, 256))   # PneumoniaMNIST or phantoms
    course.show(fig, "roc")                     # inline in a notebook, PNG from a script

The registry of chapters is :data:`CHAPTERS`; the file format and its tags are in
:mod:`tinymed.course.notebook`, what a grader is in :mod:`tinymed.course.grading`, the
graders in :mod:`tinymed.course.graders`.
"""

from tinymed.course.chapters import CHAPTERS, Chapter, CourseError, chapters_dir, find_chapter
from tinymed.course.data import xray_dataset
from tinymed.course.fastmode import fast, pick
from tinymed.course.figures import show

__all__ = ["CHAPTERS", "Chapter", "CourseError", "chapters_dir", "find_chapter", "xray_dataset", "fast", "pick", "show"]
