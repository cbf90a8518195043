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

Nothing is pickled, so loading a file can never run code, and every dtype comes back as it
was saved. This layout is the one ``tinymed.train.checkpoint`` files use for their state.
Differences from PyTorch: Tensors come back on the CPU (NumPy backend) unless
``map_location`` names another device; a saved Parameter comes back as a Tensor (with its
``requires_grad``); two tensors saved as views of one storage come back as two copies.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

import tinymed

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

File = str | os.PathLike | IO[bytes]


def encode(value: Any, key: str, arrays: dict[str, np.ndarray], op: str = "save") -> Any:
    """The JSON skeleton of ``value`` (see the module docstring); its arrays go into ``arrays``
    under paths from ``key``. ``op`` names the caller in error messages."""
    if isinstance(value, (tinymed.Tensor, np.ndarray, np.generic)):
        array = value.numpy() if isinstance(value, tinymed.Tensor) else np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"{op}: {key} is an object array, which cannot be stored without pickling")
        if key in arrays:
            raise ValueError(f"{op}: two arrays would be stored under {key!r}; rename a key")
        arrays[key] = array
        if isinstance(value, tinymed.Tensor):
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


def decode(layout: Any, arrays: Mapping[str, np.ndarray], map_location: Any = None) -> Any:
    """Rebuild the structure :func:`encode` flattened. Tensors are made on the NumPy backend,
    or moved to ``map_location`` (a device name such as ``"cuda"``) when it is given."""
    if isinstance(layout, list):
        return [decode(v, arrays, map_location) for v in layout]
    if not isinstance(layout, dict):
        return layout
    if _TENSOR in layout:
        tensor = tinymed.from_numpy(arrays[layout[_TENSOR]])
        if map_location is not None:
            tensor = tensor.to(map_location)
        return tensor.requires_grad_(bool(layout.get("requires_grad", False)))
    if _ARRAY in layout:
        return arrays[layout[_ARRAY]]
    if _SCALAR in layout:
        return arrays[layout[_SCALAR]][()]
    if _TUPLE in layout:
        return tuple(decode(v, arrays, map_location) for v in layout[_TUPLE])
    if _ITEMS in layout:
        return {k: decode(v, arrays, map_location) for k, v in layout[_ITEMS]}
    return {k: decode(v, arrays, map_location) for k, v in layout.items()}


def write_npz(f: File, entries: Mapping[str, np.ndarray]) -> None:
    """Write ``entries`` as an uncompressed ``.npz`` to a path or a binary file object.

    A path is written through a temporary file in the same directory, renamed over the
    target only once complete (``os.replace`` is atomic on one file system), so a run killed
    mid-write leaves the previous file whole. The name is used as given (``np.savez`` alone
    would append ``.npz``)."""
    if not isinstance(f, (str, os.PathLike)):
        np.savez(f, **entries)
        return
    directory = os.path.dirname(os.path.abspath(f))
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(f)}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **entries)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, f)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def read_npz(f: File, op: str = "load") -> dict[str, np.ndarray]:
    """Every entry of an ``.npz`` file, read now with ``allow_pickle=False``: a zip entry's CRC
    is checked as it is read, so a damaged file fails here with a clear ValueError instead of
    later with wrong weights. A missing path raises FileNotFoundError."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", type(f).__name__)
    if isinstance(f, (str, os.PathLike)) and not os.path.isfile(f):
        raise FileNotFoundError(f"{op}: file not found: {name}")
    try:
        with np.load(f, allow_pickle=False) as npz:
            return {entry: npz[entry] for entry in npz.files}
    except (OSError, ValueError, EOFError, KeyError, AttributeError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(
            f"{op}: {name} is not a readable .npz file; it may be truncated, corrupted or of another format "
            f"({type(e).__name__}: {e})"
        ) from e


def write_file(f: File, metadata: Mapping[str, Any], layout: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a file of the module docstring's layout: the ``metadata`` and ``layout`` JSON
    entries beside ``arrays`` (see :func:`write_npz`)."""
    write_npz(f, {"metadata": np.array(json.dumps(metadata)), "layout": np.array(json.dumps(layout)), **arrays})


def read_layout(
    entries: dict[str, np.ndarray], name: str, format: str, format_version: int, what: str, op: str
) -> tuple[dict[str, Any], Any]:
    """Take the ``metadata`` and ``layout`` entries out of ``entries`` (read by :func:`read_npz`
    from the file ``name``) and return them parsed, after checking that the metadata names
    ``format`` at ``format_version``. ``what`` says in errors what the file should have been
    (``"file written by tinymed.save"``); every refusal is a ValueError."""
    try:
        metadata = json.loads(str(entries.pop("metadata")))
        layout = json.loads(str(entries.pop("layout")))
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{op}: {name} is not a {what} (no valid metadata and layout entries)") from e
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if found != format:
        raise ValueError(f"{op}: {name} is not a {what} (its metadata has format {found!r}, not {format!r})")
    if metadata.get("format_version") != format_version:
        raise ValueError(
            f"{op}: {name} has format version {metadata.get('format_version')!r}; "
            f"this tinymed {tinymed.__version__} reads version {format_version}"
        )
    return metadata, layout


def save(obj: Any, f: File) -> None:
    """Save ``obj`` (dicts, lists, tuples, Tensors, arrays, numbers, strings, None, nested) to
    ``f``, a path or a binary file object, in the format of the module docstring."""
    arrays: dict[str, np.ndarray] = {}
    layout = encode(obj, "obj", arrays)
    write_file(
        f, {"format": FORMAT, "format_version": FORMAT_VERSION, "tinymed_version": tinymed.__version__}, layout, arrays
    )


def load(f: File, map_location: Any = None, weights_only: bool | None = None) -> Any:
    """The object :func:`save` wrote to ``f`` (a path or a binary file object).

    ``map_location``: the device the Tensors go to (the NumPy backend when None).
    ``weights_only`` is accepted for PyTorch code: tinymed never unpickles, so every load is
    weights-only whatever its value. A file that is not a tinymed save file, or whose layout
    names an entry it does not hold, raises ValueError."""
    arrays = read_npz(f, "load")
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else "the file"
    _, layout = read_layout(arrays, name, FORMAT, FORMAT_VERSION, "file written by tinymed.save", "load")
    try:
        return decode(layout, arrays, map_location)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"load: {name} is damaged: its layout does not match its arrays ({type(e).__name__}: {e})"
        ) from e
