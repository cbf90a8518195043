"""Reading ``.npz`` files that may be malformed or hostile: every array's size is checked
before it is allocated.

``np.load`` trusts each member's ``.npy`` header: one claiming 10^12 float64 values asks for
8 TB before a byte of data is read, and a ``.npy`` file renamed ``.npz`` comes back as an
array instead of an archive. :func:`read_npz` opens the zip itself and, for each member,
parses the header and refuses it unless

* it is a ``.npy`` array of a plain dtype (an object dtype could only be restored by
  unpickling, which could run code);
* the bytes its shape and dtype need are exactly the bytes the member holds; and
* the member can hold them: a stored member's bytes lie inside the file, and a deflated one
  claims at most :data:`DEFLATE_MAX_RATIO` times its compressed size.

Only then is the array allocated and filled; the zip's CRC is checked as its last byte is read.
"""

from __future__ import annotations

import math
import os
import tokenize
import zipfile
import zlib
from collections.abc import Iterable
from typing import IO

import numpy as np

__all__ = ["NpzError", "DEFLATE_MAX_RATIO", "read_npz"]

# Deflate codes 258 bytes in at best 2 bits (RFC 1951), so no deflate stream expands more than
# 1032-fold; a member that claims more than that of its compressed size is lying.
DEFLATE_MAX_RATIO = 1032

_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class NpzError(ValueError):
    """An ``.npz`` file is not a readable archive of arrays; the message says why, and the
    caller wraps it in its own error type with what the file was for."""


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int) -> np.ndarray:
    name = info.filename
    stored = info.compress_type == zipfile.ZIP_STORED
    if info.header_offset + info.compress_size > file_size or (stored and info.compress_size != info.file_size):
        raise NpzError(f"{name} claims {info.compress_size} bytes beyond the end of the file; it is truncated")
    if not stored and info.file_size > DEFLATE_MAX_RATIO * info.compress_size:
        raise NpzError(f"{name} claims {info.file_size} bytes from {info.compress_size} compressed ones")
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version not in _HEADERS:
                raise ValueError(f"format version {version[0]}.{version[1]}, tinymed reads 1.0 and 2.0")
            shape, fortran_order, dtype = _HEADERS[version](member)
        # A header that is not a Python literal gets past ast.literal_eval's SyntaxError (which
        # NumPy turns into a ValueError) to NumPy's Python 2 fallback, whose tokenizer raises
        # its own TokenError; a literal of unhashable keys raises TypeError, a deep one RecursionError.
        except (ValueError, TypeError, tokenize.TokenError, RecursionError) as e:
            raise NpzError(f"{name} is not a .npy array ({e})") from e
        if dtype.hasobject:
            raise NpzError(f"{name} holds Python objects ({dtype}), which only unpickling could read")
        count = math.prod(shape)
        needed, held = count * dtype.itemsize, info.file_size - member.tell()
        if needed != held:
            raise NpzError(f"{name} claims shape {shape} of {dtype} ({needed} bytes) but holds {held} bytes")
        array = np.empty(count, dtype)
        filled = member.readinto(memoryview(array.view(np.uint8))) if needed else 0
        if filled != needed or member.read(1):
            raise NpzError(f"{name} ends after {filled} of its {needed} bytes")
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def read_npz(file: str | os.PathLike | IO[bytes], names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` file ``file`` (a path or a seekable binary file object) by
    name (the member names without ``.npy``), every one, or those of ``names`` the file holds.
    Raises :class:`NpzError` for a file that is not a zip of ``.npy`` arrays whose sizes add up
    (see the module docstring), and ``OSError`` if it cannot be opened."""
    # A member's bytes must lie inside the file; for a file object, inside what it holds.
    size = os.path.getsize(file) if isinstance(file, (str, os.PathLike)) else file.seek(0, os.SEEK_END)
    try:
        with zipfile.ZipFile(file) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            wanted = list(members) if names is None else [name for name in names if name in members]
            return {name: _read_member(archive, members[name], size) for name in wanted}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise NpzError(f"not a readable zip archive ({type(e).__name__}: {e})") from e
