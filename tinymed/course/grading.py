"""What a grader is: the exercises of a chapter, each with a function that checks a student's
answer and fails with a hint the student can act on.

A chapter's graders are the module ``tinymed/course/graders/chNN.py``; it lists its
:class:`Exercise` entries in ``EXERCISES``. A grade function receives the namespace the
chapter's exercise cells defined, takes the student's function or class from it by the
exercise's ``name``, and checks behaviour: values against NumPy or tinymed's reference, gradients
with :func:`tinymed.gradcheck`, shapes, dtypes and edge cases. It raises :class:`Fail` with
the hint. It never holds the solution: it compares with a reference or a property (a
topological order is checked by "every node after its parents", not against another order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinymed.gradcheck import GradcheckError, gradcheck

__all__ = ["Exercise", "Fail", "expect", "expect_close", "expect_gradcheck", "need"]


class Fail(AssertionError):
    """The student's answer is wrong; the message is the hint to show them."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise.

    id: ``"1.2"`` (chapter.number). name: the function or class the student writes in an
    exercise cell. task: what to write, in one line; the released chapter's stub raises
    ``NotImplementedError(f"Exercise {id}: {task}")``. grade: checks the namespace the
    exercise cells defined and raises :class:`Fail` with a hint when the answer is wrong.
    """

    id: str
    name: str
    task: str
    grade: Callable[[Mapping[str, Any]], None]

    @property
    def stub_message(self) -> str:
        """What the released stub raises, and what ``tinymed course check`` recognises as unanswered."""
        return f"Exercise {self.id}: {self.task}"


def expect(condition: bool, hint: str) -> None:
    """Fail with ``hint`` unless ``condition``."""
    if not condition:
        raise Fail(hint)


def need(namespace: Mapping[str, Any], name: str) -> Any:
    """The object the exercise cells defined as ``name``; fails naming it when it is missing."""
    if name not in namespace:
        raise Fail(f"the exercise cells define no `{name}`; this exercise uses it, so keep its cell and its name")
    return namespace[name]


def expect_close(actual: Any, expected: Any, what: str, hint: str = "", rtol: float = 1e-7, atol: float = 1e-9) -> None:
    """Fail unless ``actual`` matches ``expected`` (numbers or arrays) in shape and value.

    The message names ``what`` was compared, shows both values (the worst element of an
    array, with its index) and ends with ``hint``."""
    tail = f"; {hint}" if hint else ""
    try:
        got = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected a number or an array, got {type(actual).__name__}{tail}") from None
    want = np.asarray(expected, dtype=np.float64)
    if got.shape != want.shape:
        raise Fail(f"{what}: shape {got.shape}, expected {want.shape}{tail}")
    wrong = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if not wrong.any():
        return
    if got.ndim == 0:
        raise Fail(f"{what}: got {float(got):.10g}, expected {float(want):.10g}{tail}")
    where = np.unravel_index(int(np.argmax(np.where(wrong, np.abs(got - want), -1.0))), got.shape)
    index = tuple(int(i) for i in where)
    raise Fail(
        f"{what}: {int(wrong.sum())} of {got.size} values differ; at index {index} got {got[where]:.10g}, "
        f"expected {want[where]:.10g}{tail}"
    )


def expect_gradcheck(fn: Callable[..., Any], inputs: Sequence[Any], what: str, hint: str = "") -> None:
    """Fail unless :func:`tinymed.gradcheck` agrees with ``fn``'s backward on ``inputs``."""
    try:
        gradcheck(fn, inputs)
    except GradcheckError as e:
        detail = str(e).removeprefix("gradcheck: ")
        raise Fail(
            f"{what}: backward disagrees with finite differences: {detail}" + (f"; {hint}" if hint else "")
        ) from None
