"""The libraries a benchmark times, each able to run every part of an :class:`OpCase`.

An :class:`Implementation` turns an op case into one zero-argument call per part, on its own
arrays, already moved to its device: tinymed through a backend of the contract (``numpy``;
``cupy`` and ``numba`` on a GPU), PyTorch on ``cpu`` or ``cuda``, and tinygrad on its CPU
device. Moving the arrays happens once, outside the timed calls. ``to_numpy`` brings a result
back for the check that every library computed the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.primitives import OpCase


@dataclass(frozen=True)
class Implementation:
    """One library on one device: ``name`` (the column of the tables), ``device`` (``cpu``
    or ``cuda``; ratios compare implementations on the same device), ``prepare(case)`` ->
    part name -> call, ``to_numpy(result array)``, and ``every_size``: False for a library
    that compiles each new shape (seconds each), timed at the table's batch only."""

    name: str
    device: str
    prepare: Callable[[OpCase], dict[str, Callable[[], Any]]]
    to_numpy: Callable[[Any], np.ndarray]
    every_size: bool = True


def tinymed(backend: ModuleType, device: str) -> Implementation:
    """tinymed's primitives on ``backend`` (a module of tinymed.backends)."""

    def prepare(case: OpCase) -> dict[str, Callable[[], Any]]:
        arrays = [backend.asarray(a) for a in (*case.inputs, case.grad_output)]
        return case.tinymed(backend, *arrays)

    return Implementation(f"tinymed {backend.name}", device, prepare, backend.to_numpy)


def torch(torch_module: ModuleType, device: str) -> Implementation:
    """PyTorch on ``device``: the forward under ``no_grad``; a gradient part as
    ``torch.autograd.grad`` of the output with respect to the part's inputs, on a graph
    recorded once and kept (``retain_graph``) for every timed call."""
    functional = torch_module.nn.functional

    def prepare(case: OpCase) -> dict[str, Callable[[], Any]]:
        inputs = [torch_module.from_numpy(a).to(device) for a in case.inputs]
        grad_output = torch_module.from_numpy(case.grad_output).to(device)
        leaves = [t.clone().requires_grad_() for t in inputs]
        output = case.torch(functional, *leaves)

        def forward() -> Any:
            with torch_module.no_grad():
                return case.torch(functional, *inputs)

        def gradient(wrt: tuple[int, ...]) -> Callable[[], Any]:
            chosen = [leaves[i] for i in wrt]
            return lambda: torch_module.autograd.grad(output, chosen, grad_output, retain_graph=True)

        return {part.name: gradient(part.wrt) if part.wrt else forward for part in case.parts}

    return Implementation(f"torch {device}", device, prepare, lambda t: t.detach().cpu().numpy())


def tinygrad_unavailable_reason() -> str | None:
    """None when tinygrad's CPU device runs here, else why not (it compiles every kernel
    with clang, so it needs clang on the PATH)."""
    try:
        from tinygrad import Tensor
    except ImportError:
        return "tinygrad is not installed (pip install tinygrad)"
    try:
        Tensor([1.0, 2.0], device="CPU").sum().realize()
    except Exception as error:  # tinygrad raises whatever its compiler raises
        return f"tinygrad's CPU device cannot run here (it compiles kernels with clang): {error}"
    return None


def tinygrad() -> Implementation:
    """tinygrad on its CPU device. It is lazy: a call builds the graph, ``realize`` compiles
    (once per graph, cached) and runs it, and the device is synchronised so the clock sees
    the work done. Only ``forward`` and the gradients its graph gives are timed."""
    from tinygrad import Device, Tensor

    cpu = Device["CPU"]

    def prepare(case: OpCase) -> dict[str, Callable[[], Any]]:
        if case.tinygrad is None:
            return {}
        inputs = [Tensor(a, device="CPU").realize() for a in case.inputs]
        grad_output = Tensor(case.grad_output, device="CPU").realize()

        def forward() -> Any:
            result = case.tinygrad(*inputs).realize()
            cpu.synchronize()
            return result

        def gradient(wrt: tuple[int, ...]) -> Callable[[], Any]:
            def run() -> Any:
                grads = case.tinygrad(*inputs).gradient(*[inputs[i] for i in wrt], gradient=grad_output)
                Tensor.realize(*grads)
                cpu.synchronize()
                return grads

            return run

        return {part.name: gradient(part.wrt) if part.wrt else forward for part in case.parts}

    return Implementation("tinygrad CPU", "cpu", prepare, lambda t: t.numpy(), every_size=False)


def results(value: Any) -> list[Any]:
    """A call's result as a list of arrays (a primitive may return one or a tuple)."""
    return list(value) if isinstance(value, (tuple, list)) else [value]


def relative_error(ours: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """The largest ``|ours - reference|`` over the arrays both have, relative to the
    largest ``|reference|``: float32 sums in other orders differ by ~1e-6 of it."""
    worst = 0.0
    for a, b in zip(ours, reference):
        a, b = a.astype(np.float64), b.astype(np.float64)
        scale = max(float(np.abs(b).max(initial=0.0)), 1e-30)
        worst = max(worst, float(np.abs(a - b).max(initial=0.0)) / scale)
    return worst
