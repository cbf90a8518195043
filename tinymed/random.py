"""The one source of randomness in tinymed.

Every random draw (weight initialisation, dropout masks, ``randn``, data shuffling defaults)
comes from one NumPy ``Generator`` on the host, so ``tm.manual_seed(n)`` makes a whole run
reproducible, and the same seed gives the same numbers whichever backend the tensors use
(they are drawn on the host, then moved)."""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed tinymed's generator; returns it (PyTorch returns its generator too)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """The generator every random draw in tinymed uses."""
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The generator's state as plain JSON-able data (checkpoints store it to resume)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state taken by :func:`get_rng_state`."""
    _generator.bit_generator.state = state
