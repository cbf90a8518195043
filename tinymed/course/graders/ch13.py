"""Graders of chapter 13 (training on many machines): a ring all-reduce simulated in NumPy,
DistributedSampler's sharding arithmetic, and the data-parallel cost model.

The sum is checked against ``np.sum`` of the ranks' buffers, the sharding against tinymed's
:class:`~tinymed.utils.data.DistributedSampler` (PyTorch's arithmetic), and the step time
against the model's defining properties (one rank communicates nothing; the all-reduce's
latency and bandwidth terms) with the numbers the chapter states.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tinymed.course.grading import Exercise, Fail, expect, expect_close
from tinymed.utils.data import DistributedSampler


def _ring_order_sum(buffers: list[np.ndarray], offset: int) -> np.ndarray:
    """The buffers' sum, chunk by chunk, added in a ring's order: chunk ``c``'s sum starts at
    rank ``(c + offset) % p`` and each next rank round the ring adds its own copy. Floating-point
    addition is not associative, so that order shows in the last bits of the result."""
    p = len(buffers)
    parts = [np.array_split(b, p) for b in buffers]
    sums = []
    for c in range(p):
        start = (c + offset) % p
        total = parts[start][c].copy()
        for k in range(1, p):
            total = total + parts[(start + k) % p][c]
        sums.append(total)
    return np.concatenate(sums)


def _grade_ring_all_reduce(ns: Mapping[str, Any]) -> None:
    ring = ns["ring_all_reduce"]
    rng = np.random.default_rng(0)
    for p, n in ((4, 8), (3, 10), (5, 3), (2, 1), (1, 6)):
        buffers = [rng.standard_normal(n) for _ in range(p)]
        kept = [b.copy() for b in buffers]
        result = ring(buffers)
        expect(
            isinstance(result, tuple) and len(result) == 2,
            "ring_all_reduce must return a pair (results, steps)",
        )
        results, steps = result
        what = f"{p} ranks of {n} numbers"
        expect(
            all(np.array_equal(b, k) for b, k in zip(buffers, kept)),
            f"{what}: your function changed the input buffers; work on copies (np.array(b, copy=True))",
        )
        expect(
            isinstance(results, list) and len(results) == p,
            f"{what}: results must be a list with one array per rank ({p}), got {type(results).__name__}"
            + (f" of {len(results)}" if hasattr(results, "__len__") else ""),
        )
        total = np.sum(buffers, axis=0)
        for r, got in enumerate(results):
            got = np.asarray(got)
            if p > 1 and got.shape == total.shape and np.allclose(got, total / p):
                raise Fail(f"{what}: rank {r} holds the mean; an all-reduce with SUM returns the sum")
            if got.shape != total.shape and got.shape == np.array_split(total, p)[r].shape:
                raise Fail(
                    f"{what}: rank {r} holds one chunk; after the reduce-scatter, the all-gather must "
                    "send the complete chunks round the ring so every rank has them all"
                )
            own = (r + 1) % p
            if (
                p > 1
                and got.shape == total.shape
                and np.allclose(np.array_split(got, p)[own], np.array_split(total, p)[own])
                and not np.allclose(got, total)
            ):
                raise Fail(
                    f"{what}: rank {r} has the full sum of chunk {own} only, where the reduce-scatter ends; the "
                    "all-gather must then pass the complete chunks round the ring (p - 1 more steps), in which the receiver "
                    "OVERWRITES its copy of the chunk"
                )
            expect_close(
                got,
                total,
                f"{what}: rank {r}'s result",
                "each rank must end with the elementwise sum of every rank's buffer; in the reduce-scatter rank r "
                "sends chunk (r - step) % p to rank r + 1, which ADDS it; in the all-gather the receiver OVERWRITES",
            )
        if steps == p - 1 and p > 1:
            raise Fail(f"{what}: {steps} steps counts one phase; the reduce-scatter and the all-gather take p - 1 each")
        expect(
            steps == 2 * (p - 1),
            f"{what}: {steps} steps; a ring all-reduce takes 2(p - 1) = {2 * (p - 1)}, each rank sending one chunk per "
            "step",
        )
    _expect_ring_order(ring, rng)


def _expect_ring_order(ring: Any, rng: np.random.Generator) -> None:
    """Fail unless ``ring``'s sums were added in a ring's order (:func:`_ring_order_sum`), on
    values of very different sizes, so that the order of the additions shows in the last bits."""
    p = 4
    buffers = [rng.standard_normal(8) * 10.0 ** rng.uniform(-8, 8, 8) for _ in range(p)]
    results, _ = ring([b.copy() for b in buffers])
    ring_orders = [_ring_order_sum(buffers, offset) for offset in range(p)]
    for r, got in enumerate(results):
        expect(
            any(np.array_equal(np.asarray(got), want) for want in ring_orders),
            f"4 ranks of 8 numbers of very different sizes: rank {r}'s sums are right up to rounding, but their "
            "terms were not added in a ring's order. In a ring, chunk c's sum starts at one rank and each rank it "
            "reaches adds its own copy, so chunk c adds the ranks c, c + 1, c + 2, ... (mod p); summing all the "
            "buffers at once (np.sum) adds every chunk in the order 0, 1, 2, .... Simulate the steps, each rank "
            "sending one chunk to the next",
        )


def _grade_shard_indices(ns: Mapping[str, Any]) -> None:
    shard = ns["shard_indices"]
    for n, world in ((10, 4), (12, 4), (7, 3), (3, 4), (5, 1), (1, 2)):
        for drop_last in (False, True):
            if drop_last and n < world:
                continue
            for rank in range(world):
                want = list(
                    DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last)
                )
                got = [int(i) for i in shard(n, rank, world, drop_last)]
                what = f"n={n}, rank {rank} of {world}, drop_last={drop_last}"
                if got == list(range(n))[rank * len(want) : (rank + 1) * len(want)] and got != want:
                    raise Fail(
                        f"{what}: {got} is a contiguous block; the sampler strides, indices rank, rank + world, ..."
                    )
                expect(
                    len(got) == len(want),
                    f"{what}: {len(got)} indices, expected {len(want)}: every rank gets "
                    + ("floor(n / world) (the tail is cut)" if drop_last else "ceil(n / world) (pad from the start)"),
                )
                expect(
                    got == want,
                    f"{what}: got {got}, expected {want}; pad the list 0..n-1 by repeating it from its start "
                    "(or cut it, with drop_last) to a multiple of world_size, then take order[rank::world_size]",
                )


def _grade_predicted_step_time(ns: Mapping[str, Any]) -> None:
    step_time = ns["predicted_step_time"]
    compute, size, beta, alpha = 0.2, 636_812.0, 1.25e9, 25e-6
    got = step_time(compute, 8, 0.0, beta, 0.0)
    expect_close(got, compute / 8, "8 ranks with a free network", "each rank computes 1/p of the global batch")
    latency_only = step_time(0.0, 8, 0.0, beta, alpha)
    if np.isclose(latency_only, 2 * 8 * alpha) or np.isclose(latency_only, 8 * alpha):
        raise Fail(f"latency term for 8 ranks: {latency_only:.3g} s; there are 2(p - 1) = 14 messages, not p or 2p")
    expect_close(latency_only, 14 * alpha, "8 ranks, no compute, zero bytes", "the ring sends 2(p - 1) messages")
    bandwidth_only = step_time(0.0, 8, size, beta, 0.0)
    if np.isclose(bandwidth_only, 2 * size / beta):
        raise Fail("bandwidth term: each rank sends 2(p - 1) chunks of S/p bytes, 2(p - 1)/p * S, not 2 S")
    expect_close(bandwidth_only, 2 * 7 / 8 * size / beta, "8 ranks, no compute, no latency", "2(p - 1)/p * S / beta")
    expect_close(
        step_time(compute, 64, size, beta, alpha),
        compute / 64 + 126 * alpha + 2 * 63 / 64 * size / beta,
        "MedCNN's gradient on 64 ranks over 10 Gbit/s",
        "compute / p + 2(p - 1) latency + 2(p - 1)/p * bytes / bandwidth",
    )
    expect_close(
        step_time(compute, 1, size, beta, alpha), compute, "one rank", "one rank communicates nothing: T(1) = compute"
    )


EXERCISES = (
    Exercise(
        "13.1", "ring_all_reduce", "simulate a ring all-reduce: reduce-scatter, then all-gather", _grade_ring_all_reduce
    ),
    Exercise(
        "13.2", "shard_indices", "the indices one rank reads, as DistributedSampler chooses them", _grade_shard_indices
    ),
    Exercise("13.3", "predicted_step_time", "compute / p plus a ring all-reduce's time", _grade_predicted_step_time),
)
