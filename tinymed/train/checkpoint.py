"""Checkpoints: everything a training run needs to be rebuilt or resumed, in one ``.npz`` file.

A checkpoint holds named pieces of state, each a nested structure of dicts, lists and arrays,
exactly what ``state_dict()`` methods return::

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": tm.get_rng_state()}

A GAN checkpoint simply names more of them (``"generator"``, ``"discriminator"``, ...).
Beside the state sits a JSON ``metadata`` entry that says what the file is: its ``kind``
(``"classifier"`` or ``"gan"``), the model's registry name and config (enough to rebuild it
with :func:`tinymed.models.build_model`), the data set, the normalisation, the epoch, the
metrics, and the tinymed version that wrote it.

The file layout, readable with plain ``np.load(path, allow_pickle=False)``:

``metadata``
    a 0-d string array holding the metadata JSON;
``layout``
    a 0-d string array holding the JSON skeleton of ``state``: dicts, lists and numbers as
    they are, each array replaced by a reference ``{"__array__": key}`` (``__tensor__`` for a
    tinymed Tensor, ``__scalar__`` for a NumPy scalar) to the entry where it is stored (the
    layout of :mod:`tinymed.serialization`, whose code writes and reads it);
``model/block1.0.weight``, ``optimizer/state/3/exp_avg``, ...
    the arrays, each under the path that leads to it in ``state``.

Nothing is pickled, so loading a checkpoint can never run code. Writing goes to a temporary
file in the same directory that is renamed over the target only once complete: ``os.replace``
is atomic on one file system, so a run killed mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinymed
from tinymed import nn
from tinymed.models import build_model
from tinymed.serialization import decode, encode, read_layout, read_npz, write_file

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "FORMAT",
    "FORMAT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]

FORMAT = "tinymed-checkpoint"
FORMAT_VERSION = 1
KINDS = ("classifier", "gan")


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, corrupted, or of another kind or model.

    The message is one line, so the command line can print it alone."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: its metadata and its named pieces of state (arrays as NumPy,
    tensors as tinymed Tensors on the NumPy backend)."""

    path: Path
    metadata: dict[str, Any]
    state: dict[str, Any]


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], metadata: Mapping[str, Any]) -> Path:
    """Write ``state`` (named pieces, see the module docstring) and ``metadata`` to ``path``.

    metadata must say its ``kind`` (``"classifier"`` or ``"gan"``) and be JSON-able; the
    format name, format version and tinymed version are added. The file appears at ``path``
    complete or not at all. Returns the path.
    """
    path = Path(path)
    if metadata.get("kind") not in KINDS:
        raise ValueError(
            f"save_checkpoint: metadata['kind'] must be one of {', '.join(KINDS)}, got {metadata.get('kind')!r}"
        )
    arrays: dict[str, np.ndarray] = {}
    layout = {name: encode(value, name, arrays, "save_checkpoint") for name, value in state.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "tinymed_version": tinymed.__version__, **metadata}
    write_file(path, header, layout, arrays)
    return path


def _names(expected: str | Iterable[str]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else tuple(expected)


def load_checkpoint(
    path: str | os.PathLike, kind: str | None = None, model: str | Iterable[str] | None = None
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``allow_pickle=False``).

    ``kind`` and ``model`` (one registry name or several), when given, are checked against
    the metadata, so a GAN checkpoint handed to the classifier's ``evaluate`` is refused with
    a clear message. Raises :class:`CheckpointError` for a missing, corrupted or mismatched file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        entries = read_npz(path, "load_checkpoint")
    except ValueError as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint, it may be truncated or corrupted ({e.__cause__})"
        ) from e
    try:
        metadata, layout = read_layout(
            entries, str(path), FORMAT, FORMAT_VERSION, "tinymed checkpoint", "load_checkpoint"
        )
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(f"{path} is a {metadata.get('kind')} checkpoint, not a {kind} checkpoint")
    model_name = metadata.get("model", {}).get("name")
    if model is not None and model_name not in _names(model):
        raise CheckpointError(f"{path} holds a {model_name!r} model, expected {' or '.join(map(repr, _names(model)))}")
    try:
        state = {name: decode(skeleton, entries) for name, skeleton in layout.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} is damaged: its layout names an entry it does not hold ({e})") from e
    return Checkpoint(path=path, metadata=metadata, state=state)


def load_model(
    path: str | os.PathLike,
    kind: str,
    model: str | Iterable[str] | None = None,
    weights: Mapping[str, str] | None = None,
    backend: str = "numpy",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint holds from its metadata alone (``metadata["model"]``'s
    registry name and config), load its weights, and return ``(model, metadata)`` in eval
    mode on ``backend``.

    weights maps each piece of state holding a state dict to the submodule it belongs to
    (``""`` the model itself): ``{"model": ""}`` by default, ``{"generator": "generator",
    "discriminator": "discriminator"}`` for a GAN. kind and model are checked as by
    :func:`load_checkpoint`.
    """
    checkpoint = load_checkpoint(path, kind=kind, model=model)
    spec = checkpoint.metadata.get("model", {})
    built = build_model(spec.get("name", ""), spec.get("config"))
    try:
        for piece, submodule in (weights or {"model": ""}).items():
            built.get_submodule(submodule).load_state_dict(checkpoint.state[piece])
    except (KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"{path}: its weights do not fit a {spec.get('name')} model with config {spec.get('config')} ({e})"
        ) from e
    return built.to(backend).eval(), checkpoint.metadata
