"""Checkpoints: everything a training run needs to be rebuilt or resumed, in one ``.npz`` file.

A checkpoint holds named pieces of state, each a nested structure of dicts, lists and arrays,
exactly what ``state_dict()`` methods return::

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": tm.get_rng_state()}

A GAN checkpoint simply names more of them (``"generator"``, ``"discriminator"``, ...; with
an EMA, ``"generator_ema"``, the generator a user gets, see :func:`tinymed.train.gan.load_gan`).
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

Nothing is pickled, so loading a checkpoint can never run code, and every entry's size is
checked against the file before it is allocated. Writing goes through
:func:`tinymed.outputs.atomic_write`: a run killed mid-write leaves the previous checkpoint
whole. The zip is written with fixed timestamps and the metadata holds no wall-clock time, so
the same run writes the same bytes (all of which :mod:`tinymed.serialization` does).

A checkpoint is read by programs that trust nothing in it. Its metadata is checked against
:data:`SCHEMAS` before use: each field's type and range, with every integer of the model's
config at most :data:`MAX_CONFIG_INT`, so that rebuilding the model cannot ask for more memory
than a tinymed model needs; and its weights must be finite and stored in the model's dtypes.
A checkpoint names its data only by data set name and MD5 (``dataset.md5``), never by a path:
where to read and write is the command line's choice.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinymed
from tinymed import nn
from tinymed.errors import CheckpointError, SerializationError
from tinymed.models import build_model
from tinymed.serialization import decode, encode, read_layout, read_npz, write_file
from tinymed.tensor import Tensor

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CONFIG_INT",
    "SCHEMAS",
    "check_metadata",
    "save_checkpoint",
    "is_checkpoint",
    "load_checkpoint",
    "load_model",
    "build_from_checkpoint",
]

FORMAT = "tinymed-checkpoint"
FORMAT_VERSION = 1
KINDS = ("classifier", "gan")

# The largest integer a model config may hold. tinymed's models take 28x28 images and widths
# of at most a few hundred channels; at 1024 the largest (LeNet with image_size 1024) still
# fits in 0.5 GB, where 10^9 channels would ask for terabytes.
MAX_CONFIG_INT = 1024

# ---------------------------------------------------------------------- the metadata schema

# A field's check: what the value must be (for the message) and the test.
Check = tuple[str, Callable[[Any], bool]]


def _integer(low: int, high: int) -> Check:
    return f"an integer from {low} to {high}", lambda v: type(v) is int and low <= v <= high


def _number(positive: bool) -> Check:
    what = "a positive finite number" if positive else "a finite number"
    return what, lambda v: type(v) in (int, float) and math.isfinite(v) and (v > 0 or not positive)


def _list(item: Check, low: int, high: int) -> Check:
    what, test = item
    size = f"{low}" if low == high else f"{low} to {high}"
    return (
        f"a list of {size} items, each {what}",
        lambda v: type(v) is list and low <= len(v) <= high and all(test(x) for x in v),
    )


def _optional(check: Check) -> Check:
    what, test = check
    return f"{what}, or null", lambda v: v is None or test(v)


def _config_value(value: Any) -> bool:
    if type(value) is int:
        return 0 <= value <= MAX_CONFIG_INT
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return len(value) <= MAX_CONFIG_INT and all(_config_value(v) for v in value)
    if type(value) is dict:
        return all(_config_value(v) for v in value.values())
    return value is None or isinstance(value, (bool, str))


_STRING: Check = ("a string", lambda v: isinstance(v, str))
_CONFIG: Check = (
    f"an object of integers from 0 to {MAX_CONFIG_INT}, finite numbers, strings and lists of them",
    lambda v: type(v) is dict and _config_value(v),
)
_MD5: Check = (
    "an MD5 of 32 hexadecimal digits",
    lambda v: isinstance(v, str) and bool(re.fullmatch("[0-9a-f]{32}", v)),
)
_CLASS: Check = ("'all' or a class index", lambda v: v == "all" or (isinstance(v, (str, int)) and str(v).isdigit()))

# What the commands read from a checkpoint's metadata, by dotted path, for each kind.
_COMMON: dict[str, Check] = {
    "epoch": _integer(0, 10**9),
    "model.name": _STRING,
    "model.config": _CONFIG,
    "dataset.name": _STRING,
    "dataset.labels": _list(_STRING, 1, MAX_CONFIG_INT),
    "dataset.image_size": _list(_integer(1, MAX_CONFIG_INT), 2, 2),
    "dataset.md5": _optional(_MD5),
    "normalization.mean": _list(_number(positive=False), 1, MAX_CONFIG_INT),
    "normalization.std": _list(_number(positive=True), 1, MAX_CONFIG_INT),
}
SCHEMAS: dict[str, dict[str, Check]] = {
    "classifier": _COMMON,
    "gan": {
        **_COMMON,
        "dataset.label": _CLASS,
        "dataset.class_counts": _optional(_list(_integer(0, 10**12), 1, MAX_CONFIG_INT)),
    },
}


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_metadata(path: str | os.PathLike, metadata: Mapping[str, Any], fields: Mapping[str, Check]) -> None:
    """Raise a CheckpointError naming ``path`` and the first field of ``fields`` (dotted path
    to check) that ``metadata`` lacks or holds a value of the wrong type or range for."""
    for dotted, (what, test) in fields.items():
        value: Any = metadata
        for key in dotted.split("."):
            if not isinstance(value, dict) or key not in value:
                raise CheckpointError(
                    f"{path}: its metadata has no {dotted}; it was not written by this tinymed's trainers, or was edited"
                )
            value = value[key]
        if not test(value):
            raise CheckpointError(f"{path}: its metadata's {dotted} must be {what}, got {_shown(value)}")


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


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file holding a tinymed checkpoint's entries (read from the zip's
    directory alone), so that no command's output replaces one by accident."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {"metadata.npy", "layout.npy"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _names(expected: str | Iterable[str]) -> tuple[str, ...]:
    return (expected,) if isinstance(expected, str) else tuple(expected)


def load_checkpoint(
    path: str | os.PathLike, kind: str | None = None, model: str | Iterable[str] | None = None
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``allow_pickle=False``).

    ``kind`` and ``model`` (one registry name or several), when given, are checked against
    the metadata, so a GAN checkpoint handed to the classifier's ``evaluate`` is refused with
    a clear message; with ``kind``, so is the rest of the metadata, against ``SCHEMAS[kind]``.
    Raises :class:`CheckpointError` for a missing, corrupted, malformed or mismatched file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        entries = read_npz(path, "checkpoint")
        metadata, layout = read_layout(entries, str(path), FORMAT, FORMAT_VERSION, "tinymed checkpoint")
    except SerializationError as e:
        raise CheckpointError(str(e)) from e
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(f"{path} is a {str(metadata.get('kind'))[:40]} checkpoint, not a {kind} checkpoint")
    check_metadata(path, metadata, {"model.name": _STRING})
    model_name = metadata["model"]["name"]
    if model is not None and model_name not in _names(model):
        raise CheckpointError(f"{path} holds a {model_name!r} model, expected {' or '.join(map(repr, _names(model)))}")
    if kind is not None:
        check_metadata(path, metadata, SCHEMAS[kind])
    if not isinstance(layout, dict):
        raise CheckpointError(f"{path} is damaged: its layout is a {type(layout).__name__}, not an object")
    try:
        state = {name: decode(skeleton, entries, str(path)) for name, skeleton in layout.items()}
    except SerializationError as e:
        raise CheckpointError(str(e)) from e
    return Checkpoint(path=path, metadata=metadata, state=state)


# The dtypes a floating-point weight may be stored in: lower precision, integers, booleans or
# complex numbers would be cast silently into something other than what was trained.
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_weights(path: Path, piece: str, stored: Any, own: Mapping[str, Tensor]) -> None:
    """Refuse weights the model would silently cast or compute garbage from: non-arrays, a
    dtype of another kind or lower precision than the model's, and NaN or infinite values."""
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: its {piece!r} is not a state dict of weights")
    for key, value in stored.items():
        array = value.numpy() if isinstance(value, Tensor) else value
        if key not in own:
            continue  # load_state_dict names every unexpected key at once
        if not isinstance(array, np.ndarray):
            raise CheckpointError(f"{path}: {piece} weight {key} is a {type(value).__name__}, not an array")
        want = np.dtype(own[key].dtype)
        floats = np.issubdtype(want, np.floating)
        if floats:
            fits, expected = array.dtype in _FLOATS, "float32 or float64"
        elif want.kind in "iu":
            fits, expected = array.dtype.kind in "iu", "an integer dtype"
        else:
            fits, expected = array.dtype == want, want.name
        if not fits:
            raise CheckpointError(
                f"{path}: {piece} weight {key} is stored as {array.dtype}; the model holds {want}, so {expected} expected"
            )
        if floats and not np.isfinite(array).all():
            raise CheckpointError(
                f"{path}: {piece} weight {key} holds NaN or infinite values; the run that wrote it had diverged"
            )


def load_model(
    path: str | os.PathLike,
    kind: str,
    model: str | Iterable[str] | None = None,
    weights: Mapping[str, str] | None = None,
    backend: str = "numpy",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint holds from its metadata alone (``metadata["model"]``'s
    registry name and config), load its weights, and return ``(model, metadata)`` in eval
    mode on ``backend``: :func:`load_checkpoint` then :func:`build_from_checkpoint`.

    weights maps each piece of state holding a state dict to the submodule it belongs to
    (``""`` the model itself): ``{"model": ""}`` by default, ``{"generator": "generator",
    "discriminator": "discriminator"}`` for a GAN. kind and model are checked as by
    :func:`load_checkpoint`.
    """
    return build_from_checkpoint(load_checkpoint(path, kind=kind, model=model), weights, backend)


def build_from_checkpoint(
    checkpoint: Checkpoint, weights: Mapping[str, str] | None = None, backend: str = "numpy"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model a loaded ``checkpoint`` holds, with the weights of the pieces ``weights`` maps
    to its submodules (as :func:`load_model`'s), in eval mode on ``backend``; for a loader that
    looks at the checkpoint's pieces before it chooses which to load."""
    path, spec = checkpoint.path, checkpoint.metadata["model"]
    try:
        built = build_model(spec["name"], spec["config"])
    except MemoryError as e:
        raise CheckpointError(
            f"{path}: its model config {_shown(spec['config'])} needs more memory than there is"
        ) from e
    try:
        for piece, submodule in (weights or {"model": ""}).items():
            if piece not in checkpoint.state:
                raise KeyError(f"no {piece!r} in the checkpoint")
            target = built.get_submodule(submodule)
            _check_weights(checkpoint.path, piece, checkpoint.state[piece], target.state_dict(keep_vars=True))
            target.load_state_dict(checkpoint.state[piece])
    except (KeyError, ValueError, AttributeError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        message = " ".join(str(e).split())
        raise CheckpointError(
            f"{path}: its weights do not fit a {spec['name']} model with config {_shown(spec['config'])} ({message})"
        ) from e
    return built.to(backend).eval(), checkpoint.metadata
