"""Where a training step's time goes: the wall time of every autograd op, forward and backward.

In the spirit of ``torch.profiler``, kept to what a student needs::

    from tinymed.profiler import profile

    with profile() as prof:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    print(prof.table())          # ops sorted by time, then the time spent outside them
    prof.plot().savefig("profile.png")

Every op of tinymed is a subclass of :class:`tinymed.autograd.Function` with a ``forward`` and a
``backward``. On entering the block the profiler finds every such subclass (recursively,
through ``__subclasses__``, so it sees the ops wherever their modules live and whichever were
imported) and replaces its ``forward`` and ``backward`` with a wrapper that times the call;
on leaving it puts the originals back. The autograd engine itself is not touched, so what it
does between ops (building the graph, sorting it, accumulating gradients) and what the
optimiser and the Python code around the ops do shows up as the difference::

    framework overhead = total - sum over ops (forward + backward)

An op called from inside another op's forward or backward is charged to itself only: each
record is the op's own (exclusive) time, so the ops never add up to more than the total.
On a GPU, kernels run asynchronously: pass ``synchronize`` (for example
``cupy.cuda.runtime.deviceSynchronize``) to wait for each op's kernels before its clock
stops, else an op's time is the time it took to launch them. Not thread-safe: profile one
thread at a time.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from matplotlib.figure import Figure

from tinymed.autograd import Function

__all__ = ["OpRecord", "profile"]

PHASES = ("forward", "backward")


@dataclass
class OpRecord:
    """The calls of one op class in one phase: how many, and their summed exclusive time."""

    name: str
    phase: str
    calls: int = 0
    seconds: float = 0.0


def _function_classes() -> list[type]:
    """Every subclass of Function, at any depth, each once."""
    found: list[type] = []
    pending = [Function]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


class profile:  # noqa: N801 - PyTorch's name (torch.profiler.profile)
    """A context manager that times every autograd op's forward and backward inside it.

    After the block: ``records`` (one :class:`OpRecord` per op class and phase),
    ``total_seconds`` (the wall time of the block), ``op_seconds`` (their sum) and
    ``overhead_seconds`` (the rest); :meth:`table` and :meth:`plot` show them.
    """

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.synchronize = synchronize
        self.records: dict[tuple[str, str], OpRecord] = {}
        self.total_seconds = 0.0
        self._patched: list[tuple[type, str, Callable]] = []
        # One entry per op running right now: the time its nested ops took, to subtract.
        self._nested: list[float] = []
        self._start = 0.0

    def __enter__(self) -> profile:
        if self._patched:
            raise RuntimeError("profile: this profiler is already recording; use a new profile() for a nested block")
        for cls in _function_classes():
            for phase in PHASES:
                original = cls.__dict__.get(phase)
                # Only plain methods defined on this class: an inherited one is wrapped where
                # it is defined, and the wrapper names the class of the op that ran.
                if inspect.isfunction(original):
                    self._patched.append((cls, phase, original))
                    setattr(cls, phase, self._timed(original, phase))
        self._start = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.synchronize is not None:
            self.synchronize()
        self.total_seconds += time.perf_counter() - self._start
        for cls, phase, original in reversed(self._patched):
            setattr(cls, phase, original)
        self._patched.clear()

    def _timed(self, method: Callable, phase: str) -> Callable:
        @functools.wraps(method)
        def timed(op: Any, *args: Any, **kwargs: Any) -> Any:
            self._nested.append(0.0)
            start = time.perf_counter()
            try:
                return method(op, *args, **kwargs)
            finally:
                if self.synchronize is not None:
                    self.synchronize()
                elapsed = time.perf_counter() - start
                own = elapsed - self._nested.pop()
                if self._nested:
                    self._nested[-1] += elapsed
                name = type(op).__name__
                record = self.records.setdefault((name, phase), OpRecord(name, phase))
                record.calls += 1
                record.seconds += own

        return timed

    @property
    def op_seconds(self) -> float:
        """The summed time of every op's forward and backward."""
        return sum(record.seconds for record in self.records.values())

    @property
    def overhead_seconds(self) -> float:
        """Time in the block outside every op: the engine, the optimiser, Python."""
        return self.total_seconds - self.op_seconds

    def sorted_records(self) -> list[OpRecord]:
        """The records, most time first."""
        return sorted(self.records.values(), key=lambda record: record.seconds, reverse=True)

    def table(self) -> str:
        """The records as a text table, most time first, then the ops' sum, the overhead
        outside them and the total, each in ms and as a share of the total."""
        total = max(self.total_seconds, 1e-12)
        lines = [f"{'op':<32} {'phase':<9} {'calls':>6} {'ms':>10} {'%':>6} {'us/call':>9}"]
        for r in self.sorted_records():
            lines.append(
                f"{r.name:<32} {r.phase:<9} {r.calls:>6} {r.seconds * 1e3:>10.2f} "
                f"{100 * r.seconds / total:>6.1f} {r.seconds / r.calls * 1e6:>9.1f}"
            )
        for label, seconds in (
            ("all ops", self.op_seconds),
            ("outside ops (framework overhead)", self.overhead_seconds),
            ("total", self.total_seconds),
        ):
            lines.append(f"{label:<49} {seconds * 1e3:>10.2f} {100 * seconds / total:>6.1f}")
        return "\n".join(lines)

    def plot(self, title: str = "Where the time goes") -> Figure:
        """A horizontal bar per op class (forward and backward stacked), and one for the
        time outside the ops, in ms."""
        names = list(dict.fromkeys(r.name for r in self.sorted_records()))
        names.reverse()  # barh draws bottom-up: the most expensive op ends on top
        fig = Figure(figsize=(8, 0.3 * len(names) + 1.8), layout="constrained")
        ax = fig.add_subplot()
        left = [0.0] * len(names)
        for phase, colour in zip(PHASES, ("tab:blue", "tab:orange")):
            widths = [self.records.get((name, phase), OpRecord(name, phase)).seconds * 1e3 for name in names]
            ax.barh(names, widths, left=left, color=colour, label=phase)
            left = [a + b for a, b in zip(left, widths)]
        ax.barh(["outside ops"], [self.overhead_seconds * 1e3], color="tab:gray", label="framework overhead")
        ax.set(xlabel="ms", ylabel="op")
        ax.set_title(f"{title} (total {self.total_seconds * 1e3:.1f} ms)")
        ax.legend(loc="lower right")
        return fig
