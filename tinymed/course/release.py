"""The student version of the course: every solution replaced by a stub that says what to write.

Between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` (both lines included) the instructor's
chapter holds a solution; the student version has, at the marker's indentation::

    raise NotImplementedError("Exercise 1.2: <the exercise's task>")

The exercise is the one of the chapter's graders whose ``name`` is the top-level function or
class the block sits in. Release writes, for every written chapter, ``NN_slug.py`` and
``NN_slug.ipynb`` (no outputs) and nothing else: no figures, no graders' files, no notebook
that was ever executed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from tinymed.course.chapters import CHAPTERS, CourseError
from tinymed.course.graders import exercises_of
from tinymed.course.grading import Exercise
from tinymed.course.notebook import BEGIN_SOLUTION, END_SOLUTION, EXERCISE_TAG, refuse_to_overwrite, write_ipynb

__all__ = ["student_version", "release"]

_TOP_LEVEL_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)")
_CELL = re.compile(r"^# %%")


def student_version(text: str, exercises: Sequence[Exercise], file_name: str = "chapter") -> str:
    """``text`` (a chapter in percent format) with each solution block replaced by its stub.

    Raises :class:`CourseError` for a marker without its partner, a solution outside an
    ``exercise`` cell, or one inside a definition no exercise names."""
    by_name = {exercise.name: exercise for exercise in exercises}
    out: list[str] = []
    cell_header, definition, begin = "", None, None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if begin is None and _CELL.match(line):
            cell_header, definition = line, None
        elif begin is None and _TOP_LEVEL_DEFINITION.match(line):
            definition = _TOP_LEVEL_DEFINITION.match(line).group(1)
        if stripped == BEGIN_SOLUTION:
            if begin is not None:
                raise CourseError(f"{file_name}:{number}: {BEGIN_SOLUTION} inside the solution begun at line {begin}")
            if f'"{EXERCISE_TAG}"' not in cell_header:
                raise CourseError(f'{file_name}:{number}: a solution outside a cell tagged ["{EXERCISE_TAG}"]')
            if definition not in by_name:
                raise CourseError(
                    f"{file_name}:{number}: this solution is in `{definition}`, which no exercise of the "
                    f"chapter's graders names (they name: {', '.join(by_name) or 'nothing'})"
                )
            begin = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError({json.dumps(by_name[definition].stub_message)})\n")
        elif stripped == END_SOLUTION:
            if begin is None:
                raise CourseError(f"{file_name}:{number}: {END_SOLUTION} without a {BEGIN_SOLUTION}")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise CourseError(f"{file_name}:{begin}: {BEGIN_SOLUTION} has no {END_SOLUTION}")
    return "".join(out)


def release(out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Write the student version of every written chapter into ``out_dir`` (.py and .ipynb);
    files already there (a student's answers) are replaced only with ``overwrite``."""
    out_dir = Path(out_dir)
    chapters = [chapter for chapter in CHAPTERS if chapter.exists()]
    targets = [out_dir / name for c in chapters for name in (c.file_name, f"{c.slug}.ipynb")]
    refuse_to_overwrite("release", targets, overwrite)
    written: list[Path] = []
    for chapter in chapters:
        text = student_version(chapter.path().read_text(), exercises_of(chapter), chapter.file_name)
        out_dir.mkdir(parents=True, exist_ok=True)
        script = out_dir / chapter.file_name
        script.write_text(text)
        written += [script, write_ipynb(text, out_dir / f"{chapter.slug}.ipynb")]
    return written
