"""Fast mode: the same chapter on less data and fewer steps.

CI and the tests set the environment variable ``TINYMED_FAST=1`` so that every chapter runs
top to bottom in seconds; a student leaves it unset and gets the full run. A chapter never
tests the variable itself: it writes ``course.pick(full, fast)`` where a size is chosen, so
the two sizes stand side by side in the text.
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["FAST_ENV_VAR", "fast", "pick"]

FAST_ENV_VAR = "TINYMED_FAST"

T = TypeVar("T")


def fast() -> bool:
    """True when ``TINYMED_FAST`` is set to anything but ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(FAST_ENV_VAR, "").strip().lower() not in ("", "0", "false", "no")


def pick(full: T, fast_value: T) -> T:
    """``fast_value`` in fast mode, else ``full`` (e.g. ``epochs = course.pick(10, 1)``)."""
    return fast_value if fast() else full
