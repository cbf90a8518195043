"""``tinymed course check``: grade a student's chapter, one line per exercise.

It finds the student's copy of the chapter (the ``.ipynb`` when it is at least as new as the
``.py``, else the ``.py``), runs only its cells tagged ``exercise`` or ``used-by-exercises``,
in file order, in one fresh namespace (printing nothing they print), and runs each grader of
the chapter against it. Every outcome is one line a student can act on: PASS, or FAIL with
the grader's hint, "not attempted yet" for a stub still raising ``NotImplementedError``, or
the error the student's code raised with the line of the cell it came from; never a bare
traceback.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import os
import re
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinymed.course.chapters import Chapter, CourseError, find_chapter
from tinymed.course.graders import exercises_of
from tinymed.course.grading import Exercise, Fail
from tinymed.course.notebook import graded_cells, read_cells

__all__ = ["Result", "student_file", "grade_file", "check"]

_DEFINITION = re.compile(r"^(?:async\s+def|def|class)\s+(\w+)", re.MULTILINE)
_STUB = re.compile(r"^Exercise (\d+\.\d+):")


@dataclass(frozen=True)
class Result:
    """How one exercise fared: ``passed``, and the message to print after PASS or FAIL."""

    exercise: Exercise
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class _Cell:
    label: str  # the file name compile() records, so a traceback points into the cell
    source: str
    names: tuple[str, ...]  # the top-level functions and classes it defines

    def describe(self) -> str:
        return f"the cell defining {', '.join(self.names)}" if self.names else "an exercise cell"


def student_file(chapter: Chapter, folder: str | os.PathLike) -> Path:
    """The student's copy of ``chapter`` in ``folder``: the ``.ipynb`` if it is at least as new
    as the ``.py`` (a notebook saved in Jupyter), else the ``.py``."""
    folder = Path(folder)
    script, notebook = folder / chapter.file_name, folder / f"{chapter.slug}.ipynb"
    found = [p for p in (notebook, script) if p.is_file()]
    if not found:
        raise CourseError(f"no {script.name} or {notebook.name} in {folder.resolve()}; pass the folder with --path")
    return max(found, key=lambda p: p.stat().st_mtime)  # max keeps the first (the notebook) on a tie


def _load(path: Path) -> list[_Cell]:
    cells = []
    for k, cell in enumerate(graded_cells(read_cells(path)), start=1):
        label = f"<{path.name}: exercise cell {k}>"
        lines = cell.source.splitlines(keepends=True)
        linecache.cache[label] = (len(cell.source), None, lines, label)  # lets tracebacks quote the line
        cells.append(_Cell(label, cell.source, tuple(_DEFINITION.findall(cell.source))))
    return cells


def _describe_error(error: BaseException, cells: Sequence[_Cell]) -> str:
    """``error`` in one line, with the line of the student's cell it was raised from."""
    by_label = {cell.label: cell for cell in cells}
    what = f"{type(error).__name__}: {error}"
    if isinstance(error, SyntaxError) and error.filename in by_label:
        return f"{type(error).__name__}: {error.msg}, at line {error.lineno} of {by_label[error.filename].describe()}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename in by_label]
    if not frames:
        return f"checking your answer raised {what}; does it return what the exercise asks for?"
    frame = frames[-1]
    return f"{what}, at line {frame.lineno} of {by_label[frame.filename].describe()}: `{(frame.line or '').strip()}`"


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Hide what student code prints and warns (NumPy's overflow warnings): the grader's
    one line per exercise is the report."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _run_cells(cells: Sequence[_Cell]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run the cells in one namespace; returns it, and for each name a failed cell should
    have defined, that cell's error."""
    namespace: dict[str, Any] = {"__name__": "__course_exercises__"}
    errors: dict[str, str] = {}
    for cell in cells:
        try:
            code = compile(cell.source, cell.label, "exec")
            with _quietly():
                exec(code, namespace)
        except Exception as e:  # the student's code: any error is theirs to see, in one line
            errors.update(dict.fromkeys(cell.names, _describe_error(e, cells)))
    return namespace, errors


def _grade(exercise: Exercise, namespace: dict[str, Any], errors: dict[str, str], cells: Sequence[_Cell]) -> Result:
    if exercise.name in errors:
        return Result(exercise, False, f"your exercise cell did not run: {errors[exercise.name]}")
    if exercise.name not in namespace:
        return Result(
            exercise,
            False,
            f"no `{exercise.name}` in the exercise cells; keep the cell tagged exercise and the name the exercise gives",
        )
    try:
        with _quietly():
            exercise.grade(namespace)
    except Fail as e:
        return Result(exercise, False, str(e))
    except NotImplementedError as e:
        stub = _STUB.match(str(e))
        if stub and stub.group(1) == exercise.id:
            return Result(exercise, False, "not attempted yet (it still raises NotImplementedError)")
        if stub:
            return Result(exercise, False, f"it uses your answer to Exercise {stub.group(1)}: do that one first")
        return Result(exercise, False, _describe_error(e, cells))
    except Exception as e:  # the student's code, run by the grader: report, never crash
        return Result(exercise, False, _describe_error(e, cells))
    return Result(exercise, True)


def grade_file(path: str | os.PathLike, exercises: Sequence[Exercise]) -> list[Result]:
    """Grade ``exercises`` against the student's chapter file ``path`` (.py or .ipynb)."""
    cells = _load(Path(path))
    namespace, errors = _run_cells(cells)
    return [_grade(exercise, namespace, errors, cells) for exercise in exercises]


def check(key: str | int, folder: str | os.PathLike = ".") -> int:
    """Grade the chapter ``key`` (number or slug) found in ``folder`` and print one line per
    exercise; returns the exit status, 0 only when every exercise passes."""
    chapter = find_chapter(key)
    path = student_file(chapter, folder)
    exercises = exercises_of(chapter)
    if not exercises:
        raise CourseError(f"chapter {chapter.number} ({chapter.slug}) has no graded exercises yet")
    print(f"Chapter {chapter.number}: {chapter.title} ({path})")
    results = grade_file(path, exercises)
    width = max(len(r.exercise.name) for r in results)
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        print(f"  {verdict}  {r.exercise.id:>5}  {r.exercise.name:<{width}}  {r.message}".rstrip())
    passed = sum(r.passed for r in results)
    print(f"{passed} of {len(results)} exercises pass." + ("" if passed < len(results) else " Well done."))
    return 0 if passed == len(results) else 1
