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
    tinymed Tensor, ``__scalar__`` for a NumPy scalar) to the entry where it is stored;
``model/block1.0.weight``, ``optimizer/state/3/exp_avg``, ...
    the arrays, each under the path that leads to it in ``state``.

Nothing is pickled, so loading a checkpoint can never run code. Writing goes to a temporary
file in the same directory that is renamed over the target only once complete: ``os.replace``
is atomic on one file system, so a run killed mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinymed
from tinymed import nn
from tinymed.models import build_model
from tinymed.tensor import Tensor

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

# Markers in the layout JSON. Dict keys starting with "__" are reserved for them, which is
# why a dict holding such a key (or a non-string key, as optimizer states do) is written as
# a list of [key, value] pairs instead.
_TENSOR, _ARRAY, _SCALAR, _TUPLE, _ITEMS = "__tensor__", "__array__", "__scalar__", "__tuple__", "__items__"


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


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """The JSON skeleton of ``value``; its arrays go to ``arrays`` under paths from ``key``."""
    if isinstance(value, (Tensor, np.ndarray, np.generic)):
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"save_checkpoint: {key} is an object array, which cannot be stored without pickling")
        if key in arrays:
            raise ValueError(f"save_checkpoint: two arrays would be stored under {key!r}; rename a key")
        arrays[key] = array
        marker = _TENSOR if isinstance(value, Tensor) else _ARRAY if isinstance(value, np.ndarray) else _SCALAR
        return {marker: key}
    if isinstance(value, Mapping):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: _encode(v, f"{key}/{k}", arrays) for k, v in value.items()}
        for k in value:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(
                    f"save_checkpoint: {key} has a key of type {type(k).__name__}; keys must be str, int, float or bool"
                )
        return {_ITEMS: [[k, _encode(v, f"{key}/{k}", arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"save_checkpoint: {key} is a {type(value).__name__}; a checkpoint stores dicts, "
        f"lists, tuples, numbers, strings, arrays and tensors"
    )


def _decode(skeleton: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Rebuild the structure :func:`_encode` flattened."""
    if isinstance(skeleton, list):
        return [_decode(v, arrays) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if _TENSOR in skeleton:
        return tinymed.from_numpy(arrays[skeleton[_TENSOR]])
    if _ARRAY in skeleton:
        return arrays[skeleton[_ARRAY]]
    if _SCALAR in skeleton:
        return arrays[skeleton[_SCALAR]][()]
    if _TUPLE in skeleton:
        return tuple(_decode(v, arrays) for v in skeleton[_TUPLE])
    if _ITEMS in skeleton:
        return {k: _decode(v, arrays) for k, v in skeleton[_ITEMS]}
    return {k: _decode(v, arrays) for k, v in skeleton.items()}


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
    layout = {name: _encode(value, name, arrays) for name, value in state.items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "tinymed_version": tinymed.__version__, **metadata}
    entries = {"metadata": np.array(json.dumps(header)), "layout": np.array(json.dumps(layout)), **arrays}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def _read_entries(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the file, read now: a zip entry's CRC is checked as it is read, so a
    damaged file fails here with a clear message instead of later with wrong weights."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint, it may be truncated or corrupted ({type(e).__name__}: {e})"
        ) from e


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
    entries = _read_entries(path)
    try:
        metadata = json.loads(str(entries.pop("metadata")))
        layout = json.loads(str(entries.pop("layout")))
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a tinymed checkpoint (no valid metadata entry)") from e
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinymed checkpoint (its metadata has no format {FORMAT!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {metadata.get('format_version')}; this tinymed "
            f"{tinymed.__version__} reads version {FORMAT_VERSION}"
        )
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(f"{path} is a {metadata.get('kind')} checkpoint, not a {kind} checkpoint")
    model_name = metadata.get("model", {}).get("name")
    if model is not None and model_name not in _names(model):
        raise CheckpointError(f"{path} holds a {model_name!r} model, expected {' or '.join(map(repr, _names(model)))}")
    try:
        state = {name: _decode(skeleton, entries) for name, skeleton in layout.items()}
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
