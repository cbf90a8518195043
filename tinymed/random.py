"""Random number generators: ``tm.Generator``, ``tm.manual_seed``, and the one global generator.

Every random draw (weight initialisation, dropout masks, ``randn``, data shuffling) comes from a
:class:`Generator`: the one passed as ``generator=``, or ``tm.default_generator``, which
``tm.manual_seed(n)`` reseeds, so one seed makes a whole run reproducible. Draws happen on the
host, then move, so a seed gives the same numbers whichever backend the tensors use.

A Generator wraps a NumPy ``Generator`` (PCG64), so tinymed's numbers differ from PyTorch's for
the same seed, and ``get_state()`` is the bit generator's state as JSON-able data (PyTorch gives a
ByteTensor); what goes out of ``get_state`` goes back into ``set_state``, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _fresh_seed() -> int:
    """A non-deterministic 63-bit seed from the operating system's entropy."""
    return int(np.random.SeedSequence().entropy) % 2**63


class Generator:
    """``torch.Generator``: a source of random numbers with a seed and a state of its own.
    ``device`` is accepted for PyTorch's signature; every draw happens on the host."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device
        self.manual_seed(_fresh_seed())

    def manual_seed(self, seed: int) -> Generator:
        """Restart from ``seed`` (a non-negative int); returns the generator."""
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
        self._initial_seed = int(seed)
        self.numpy_generator = np.random.default_rng(self._initial_seed)
        return self

    def seed(self) -> int:
        """Restart from a non-deterministic seed, and return that seed."""
        seed = _fresh_seed()
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        """The seed this generator last started from."""
        return self._initial_seed

    def get_state(self) -> dict[str, Any]:
        """The state, as plain JSON-able data (checkpoints store it to resume)."""
        return self.numpy_generator.bit_generator.state

    def set_state(self, new_state: dict[str, Any]) -> Generator:
        """Restore a state taken by :meth:`get_state`; returns the generator."""
        self.numpy_generator.bit_generator.state = new_state
        return self


default_generator = Generator()


def generator(source: Generator | None = None, op: str = "generator") -> np.random.Generator:
    """The NumPy generator that draws for ``source`` (``tm.default_generator`` when None);
    ``op`` names the caller in the TypeError for anything else."""
    if source is None:
        return default_generator.numpy_generator
    if not isinstance(source, Generator):
        raise TypeError(f"{op}: generator must be a tinymed.Generator or None, got {type(source).__name__}")
    return source.numpy_generator


def manual_seed(seed: int) -> Generator:
    """Reseed the global generator; returns it (``tm.default_generator``), as PyTorch does."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Reseed the global generator non-deterministically; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    """The seed the global generator last started from."""
    return default_generator.initial_seed()


def get_rng_state() -> dict[str, Any]:
    """The global generator's state as plain JSON-able data (checkpoints store it to resume)."""
    return default_generator.get_state()


def set_rng_state(new_state: dict[str, Any]) -> None:
    """Restore a state taken by :func:`get_rng_state`."""
    default_generator.set_state(new_state)
