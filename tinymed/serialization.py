"""Saving and loading without pickle: ``tinymed.save(obj, f)`` and ``tinymed.load(f)``.

What PyTorch users save goes in: state dicts, optimizer and scheduler state dicts, and any
nesting of dicts, lists and tuples holding Tensors, NumPy arrays and scalars, Python numbers,
strings and None. The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays), readable with plain
``np.load(f, allow_pickle=False)``:

``metadata``
    a 0-d string array: JSON ``{"format": "tinymed.save", "format_version": 1, ...}``;
``layout``
    a 0-d string array: the JSON skeleton of ``obj``. Dicts with string keys, lists, numbers,
    strings and None are written as they are; every array is replaced by a reference to the
    entry that holds it (``{"__tensor__": key}`` for a Tensor, with ``"requires_grad": true``
    when it does, ``{"__array__": key}`` for an ndarray, ``{"__scalar__": key}`` for a NumPy
    scalar); a tuple is ``{"__tuple__": [...]}``, and a dict whose keys are not all plain
    strings (an optimizer state dict's parameter numbers) is ``{"__items__": [[key, value], ...]}``;
``obj``, ``obj/state/0/exp_avg``, ...
    the arrays, each under the path that leads to it in ``obj``.

Nothing is pickled, so loading a file can never run code, every entry's size is checked
against the file before it is allocated (:mod:`tinymed.npz`), and every dtype comes back as it
was saved. A path is written through :func:`tinymed.outputs.atomic_write`, so the file appears
complete or not at all, and every zip entry has the same fixed timestamp, so the same object
is written as the same bytes. A file that cannot be read raises
:class:`~tinymed.errors.SerializationError` (a ``ValueError``) naming the file and why. This
layout, and this code, is what ``tinymed.train.checkpoint`` files use for their state.
Differences from PyTorch: Tensors come back on the CPU (NumPy backend) unless
``map_location`` names another device; a saved Parameter comes back as a Tensor (with its
``requires_grad``); two tensors saved as views of one storage come back as two copies.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from tinymed import npz
from tinymed.errors import SerializationError
from tinymed.outputs import atomic_write
from tinymed.tensor import Tensor, from_numpy
from tinymed.version import VERSION

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "save",
    "load",
    "encode",
    "decode",
    "write_file",
    "read_layout",
    "write_npz",
    "read_npz",
]

FORMAT = "tinymed.save"
FORMAT_VERSION = 1

# Markers in the layout JSON. Dict keys starting with "__" are reserved for them, which is
# why a dict holding such a key (or a non-string key) is written as a list of [key, value] pairs.
_TENSOR, _ARRAY, _SCALAR, _TUPLE, _ITEMS = "__tensor__", "__array__", "__scalar__", "__tuple__", "__items__"

# Every zip entry's timestamp: the zip format's earliest date, so that the same object saved
# at different times is the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

File = str | os.PathLike | IO[bytes]


def encode(value: Any, key: str, arrays: dict[str, np.ndarray], op: str = "save") -> Any:
    """The JSON skeleton of ``value`` (see the module docstring); its arrays go into ``arrays``
    under paths from ``key``. ``op`` names the caller in error messages."""
    if isinstance(value, (Tensor, np.ndarray, np.generic)):
        array = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"{op}: {key} is an object array, which cannot be stored without pickling")
        if key in arrays:
            raise SerializationError(f"{op}: two arrays would be stored under {key!r}; rename a key")
        arrays[key] = array
        if isinstance(value, Tensor):
            return {_TENSOR: key, "requires_grad": True} if value.requires_grad else {_TENSOR: key}
        return {_ARRAY if isinstance(value, np.ndarray) else _SCALAR: key}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, f"{key}/{k}", arrays, op) for k, v in value.items()}
        for k in value:
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(
                    f"{op}: {key} has a key of type {type(k).__name__}; keys must be str, int, float or bool"
                )
        return {_ITEMS: [[k, encode(v, f"{key}/{k}", arrays, op)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v, f"{key}/{i}", arrays, op) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{key}/{i}", arrays, op) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"{op}: {key} is a {type(value).__name__}; only dicts, lists, tuples, numbers, strings, "
        f"None, NumPy arrays and Tensors can be saved"
    )


def _decode(layout: Any, arrays: Mapping[str, np.ndarray], map_location: Any) -> Any:
    if isinstance(layout, list):
        return [_decode(v, arrays, map_location) for v in layout]
    if not isinstance(layout, dict):
        return layout
    if _TENSOR in layout:
        tensor = from_numpy(arrays[layout[_TENSOR]])
        if map_location is not None:
            tensor = tensor.to(map_location)
        return tensor.requires_grad_(bool(layout.get("requires_grad", False)))
    if _ARRAY in layout:
        return arrays[layout[_ARRAY]]
    if _SCALAR in layout:
        return arrays[layout[_SCALAR]][()]
    if _TUPLE in layout:
        return tuple(_decode(v, arrays, map_location) for v in layout[_TUPLE])
    if _ITEMS in layout:
        return {k: _decode(v, arrays, map_location) for k, v in layout[_ITEMS]}
    return {k: _decode(v, arrays, map_location) for k, v in layout.items()}


def decode(layout: Any, arrays: Mapping[str, np.ndarray], name: str = "the file", map_location: Any = None) -> Any:
    """Rebuild the structure :func:`encode` flattened. Tensors are made on the NumPy backend,
    or moved to ``map_location`` (a device name such as ``"cuda"``) when it is given. A layout
    that does not match ``arrays`` (read from the file ``name``) raises SerializationError."""
    try:
        return _decode(layout, arrays, map_location)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
        raise SerializationError(
            f"{name} is damaged: its layout does not match its arrays ({type(e).__name__}: {e})"
        ) from e


def _write_zip(f: IO[bytes], entries: Mapping[str, np.ndarray]) -> None:
    # np.savez's layout (one uncompressed .npy member per entry), with fixed timestamps.
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, array in entries.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def write_npz(f: File, entries: Mapping[str, np.ndarray]) -> None:
    """Write ``entries`` as an uncompressed ``.npz`` with fixed timestamps to a path or a
    binary file object. A path is written through :func:`tinymed.outputs.atomic_write` (its
    directory created if missing), so a run killed mid-write leaves the previous file whole.
    The name is used as given (``np.savez`` alone would append ``.npz``)."""
    if not isinstance(f, (str, os.PathLike)):
        _write_zip(f, entries)
        return
    path = Path(f)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        _write_zip(out, entries)


def read_npz(f: File, what: str = ".npz file", op: str = "load") -> dict[str, np.ndarray]:
    """Every entry of an ``.npz`` file, read now by :func:`tinymed.npz.read_npz`: each size is
    checked before it is allocated and each zip CRC as it is read, so a damaged file fails
    here with a SerializationError saying it is not a readable ``what`` instead of later with
    wrong weights. A missing path raises FileNotFoundError naming ``op``."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", type(f).__name__)
    if isinstance(f, (str, os.PathLike)) and os.path.isdir(f):
        raise IsADirectoryError(f"{op}: {name} is a directory; give the checkpoint file in it")
    if isinstance(f, (str, os.PathLike)) and not os.path.isfile(f):
        raise FileNotFoundError(f"{op}: file not found: {name}")
    try:
        return npz.read_npz(f)
    except (OSError, npz.NpzError) as e:
        raise SerializationError(
            f"{name} is not a readable {what}; it may be truncated, corrupted or of another format "
            f"({type(e).__name__}: {e})"
        ) from e


def write_file(f: File, metadata: Mapping[str, Any], layout: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a file of the module docstring's layout: the ``metadata`` and ``layout`` JSON
    entries beside ``arrays`` (see :func:`write_npz`)."""
    write_npz(f, {"metadata": np.array(json.dumps(metadata)), "layout": np.array(json.dumps(layout)), **arrays})


def read_layout(
    entries: dict[str, np.ndarray], name: str, format: str, format_version: int, what: str
) -> tuple[dict[str, Any], Any]:
    """Take the ``metadata`` and ``layout`` entries out of ``entries`` (read by :func:`read_npz`
    from the file ``name``) and return them parsed, after checking that the metadata names
    ``format`` at ``format_version``. ``what`` says in errors what the file should have been
    (``"tinymed.save file"``); every refusal is a SerializationError."""
    try:
        metadata = json.loads(str(entries.pop("metadata")))
        layout = json.loads(str(entries.pop("layout")))
    except (KeyError, ValueError, RecursionError) as e:
        raise SerializationError(f"{name} is not a {what} (no valid metadata and layout entries)") from e
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != format:
        raise SerializationError(f"{name} is not a {what} (its metadata has format {repr(found)[:40]}, not {format!r})")
    if metadata.get("format_version") != format_version:
        raise SerializationError(
            f"{name} has {what} format version {str(metadata.get('format_version'))[:40]}; "
            f"this tinymed {VERSION} reads version {format_version}"
        )
    return metadata, layout


def save(obj: Any, f: File) -> None:
    """Save ``obj`` (dicts, lists, tuples, Tensors, arrays, numbers, strings, None, nested) to
    ``f``, a path or a binary file object, in the format of the module docstring."""
    arrays: dict[str, np.ndarray] = {}
    layout = encode(obj, "obj", arrays)
    write_file(f, {"format": FORMAT, "format_version": FORMAT_VERSION, "tinymed_version": VERSION}, layout, arrays)


def load(f: File, map_location: Any = None, weights_only: bool | None = None) -> Any:
    """The object :func:`save` wrote to ``f`` (a path or a binary file object).

    ``map_location``: the device the Tensors go to (the NumPy backend when None).
    ``weights_only`` is accepted for PyTorch code: tinymed never unpickles, so every load is
    weights-only whatever its value. A file that is not a tinymed save file, or whose layout
    names an entry it does not hold, raises SerializationError (a ValueError)."""
    arrays = read_npz(f)
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else "the file"
    _, layout = read_layout(arrays, name, FORMAT, FORMAT_VERSION, "tinymed.save file")
    return decode(layout, arrays, name, map_location)
