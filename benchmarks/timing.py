"""How a benchmark times a call: the median of repeats, after a warm-up, one side at a time.

The median, not the best or the mean: one slow run (another process took the core, the
allocator asked the OS for memory) moves it little. Each side (tinymed, PyTorch, ...) runs its
warm-up and all its repeats in one block, as a training loop calls it, rather than in turns
with the others: the worker threads of a BLAS or OpenMP pool keep spinning for a while after
a call returns (OpenBLAS's for up to a tenth of a second), so on a machine with few cores a
call made right after another library's competes with that library's idle threads. On a GPU,
kernels are asynchronous: ``synchronize`` waits for them before each clock stops.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def median_ms(
    runs: Mapping[str, Callable[[], object]],
    synchronize: Callable[[], None],
    repeat: int,
    warmup: int = 1,
    statistic: Callable[[list[float]], float] = statistics.median,
) -> dict[str, float]:
    """The median wall time in ms of each of ``runs`` (name -> call) over ``repeat`` calls,
    after ``warmup`` untimed calls (compilation, caches, memory pools, waking thread pools).
    ``statistic=min`` gives the best time instead: what the machine can do at its quietest,
    the right figure for a peak."""
    if repeat < 1:
        raise ValueError(f"median_ms: repeat must be at least 1, got {repeat}")
    medians = {}
    for name, run in runs.items():
        seconds = []
        for call in range(warmup + repeat):
            synchronize()
            start = time.perf_counter()
            run()
            synchronize()
            if call >= warmup:
                seconds.append(time.perf_counter() - start)
        medians[name] = statistic(seconds) * 1e3
    return medians
