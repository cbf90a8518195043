"""The hints of chapter 13's graders: a typical wrong answer to each exercise (an all-reduce
that stops after the reduce-scatter, a sampler that hands out contiguous blocks, a ring that
sends p messages) is failed with the hint that names it. Running the chapter, and its graders
on the solutions and the released stubs, is tests/test_course.py's job."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("jupytext", reason="the course tests need the course extra (jupytext)")

from helpers import graded_with  # noqa: E402 - after the skip, as the course tests need jupytext

_GATHER = "            chunks[(r + 1) % p][c] = values\n"
_STEP = "    return compute_s / p + 2 * (p - 1) * latency + 2 * (p - 1) / p * gradient_bytes / bandwidth"


@pytest.mark.parametrize(
    "exercise, old, new, hint",
    [
        ("13.1", _GATHER, _GATHER.replace("= values", "+= values"), "the receiver OVERWRITES"),
        (
            "13.1",
            "    for step in range(p - 1):  # all-gather",
            "    for step in range(0):  # all-gather",
            "p - 1 more steps",
        ),
        ("13.1", "np.array(b, copy=True)", "b", "changed the input buffers"),
        (
            "13.1",
            "    return [np.concatenate(parts) for parts",
            "    return [np.concatenate(parts) / p for parts",
            "the mean",
        ),
        (
            "13.1",
            "    p = len(buffers)\n",
            "    p = len(buffers)\n    total = np.sum(buffers, axis=0)\n    return [total.copy() for _ in buffers], 2 * (p - 1)\n",
            "not added in a ring's order",
        ),
        (
            "13.2",
            "    return order[rank:total:world_size]",
            "    return order[rank * per_rank : (rank + 1) * per_rank]",
            "contiguous",
        ),
        (
            "13.2",
            "        per_rank = n // world_size",
            "        per_rank = math.ceil(n / world_size)",
            "the tail is cut",
        ),
        ("13.2", "order = [i % n for i in range(total)]", "order = list(range(n))", "pad from the start"),
        ("13.3", _STEP, _STEP.replace("2 * (p - 1) * latency", "p * latency"), "not p or 2p"),
        ("13.3", _STEP, _STEP.replace("2 * (p - 1) / p * gradient_bytes", "2 * gradient_bytes"), "not 2 S"),
        ("13.3", _STEP, _STEP.replace("compute_s / p", "compute_s"), "1/p of the global batch"),
    ],
    ids=[
        "ring-gather-adds",
        "ring-no-gather",
        "ring-in-place",
        "ring-mean",
        "ring-not-simulated",
        "shard-contiguous",
        "shard-drop-last-rounds-up",
        "shard-no-padding",
        "cost-p-messages",
        "cost-whole-gradient",
        "cost-no-split",
    ],
)
def test_chapter13_graders_hint_at_the_mistake(tmp_path: Path, exercise: str, old: str, new: str, hint: str) -> None:
    result = graded_with(tmp_path, 13, exercise, old, new)
    assert not result.passed and hint in result.message, result.message
