"""Grad modes: whether new operations are recorded for backward (mirrors ``torch.autograd.grad_mode``).

``no_grad``, ``enable_grad``, ``set_grad_enabled`` and ``inference_mode`` are context managers
and decorators, as in PyTorch: ``with tm.no_grad():``, ``@tm.no_grad()`` and ``@tm.no_grad``.
``inference_mode`` is ``no_grad`` that also marks the tensors made inside as inference tensors,
which may never join a recorded graph (PyTorch's rule; it lets PyTorch skip version counting,
tinymed keeps the rule so code stays portable).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

_grad_enabled = True
_inference_enabled = False


def is_grad_enabled() -> bool:
    """Whether new operations are being recorded for backward."""
    return _grad_enabled


def is_inference_mode_enabled() -> bool:
    """Whether the code runs inside ``inference_mode()``."""
    return _inference_enabled


class _GradMode:
    """Context manager (and decorator) that sets grad recording to ``mode`` and inference mode to
    ``inference`` inside (``None`` leaves one as it is), and restores both at the end."""

    def __init__(self, mode: bool | None, inference: bool | None = None) -> None:
        self.mode = mode
        self.inference = inference

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # ``@tm.no_grad`` without parentheses hands the function to the class itself.
        if cls in (no_grad, enable_grad, inference_mode) and len(args) == 1 and callable(args[0]) and not kwargs:
            return cls()(args[0])
        return super().__new__(cls)

    def __enter__(self) -> None:
        global _grad_enabled, _inference_enabled
        self.previous = (_grad_enabled, _inference_enabled)
        if self.mode is not None:
            _grad_enabled = self.mode
        if self.inference is not None:
            _inference_enabled = self.inference

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled, _inference_enabled
        _grad_enabled, _inference_enabled = self.previous

    def clone(self) -> _GradMode:
        """A fresh manager with the same settings (each call of a decorated function needs its own)."""
        return _GradMode(self.mode, self.inference)

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.clone():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """``with tm.no_grad():`` runs without recording a graph (evaluation, weight updates)."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(_GradMode):
    """Turns recording back on inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)


class inference_mode(_GradMode):
    """``with tm.inference_mode():`` (or ``@tm.inference_mode()``) runs without recording, like
    ``no_grad``; tensors made inside are inference tensors (``t.is_inference()``), which an op
    that records a graph refuses, and which may be written in place only inside inference mode.
    ``inference_mode(False)`` switches inference mode off (and leaves grad mode as it is)."""

    def __init__(self, mode: bool = True) -> None:
        super().__init__(False if mode else None, bool(mode))


class set_grad_enabled(_GradMode):
    """``tm.set_grad_enabled(False)`` switches recording off at once (as in PyTorch); used in a
    ``with`` block, the previous mode comes back at its end."""

    def __init__(self, mode: bool) -> None:
        global _grad_enabled
        super().__init__(mode)
        self.previous = (_grad_enabled, _inference_enabled)
        _grad_enabled = mode

    def __enter__(self) -> None:
        pass  # already switched by __init__; self.previous holds the modes to restore

    def __call__(self, fn: Callable) -> Callable:
        global _grad_enabled
        _grad_enabled = self.previous[0]  # as a decorator it switches only while fn runs
        return super().__call__(fn)
