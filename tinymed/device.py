"""Where a tensor lives: :class:`device`, as ``torch.device``, plus the kernel family that runs there.

PyTorch names a place: ``"cpu"``, ``"cuda"``, ``"cuda:0"``. tinymed also teaches three ways of
writing the same formulas, and a student picks which one runs. So a device here is a pair:

* the place, ``.type`` (``"cpu"`` or ``"cuda"``) and ``.index`` (``None`` or the GPU number), as
  in PyTorch;
* the kernel family, ``.kernels``: ``"numpy"`` (the NumPy reference, on the CPU), ``"cupy"``
  (CUDA C kernels launched by CuPy) or ``"numba"`` (Numba CUDA kernels; on a machine without a
  GPU they run in Numba's CUDA simulator, on NumPy arrays).

Every spelling goes through one canonicaliser, ``device(...)``::

    "cpu",  "numpy"           -> cpu, NumPy reference          str: "cpu"
    "cuda", "cuda:N", "cupy"  -> cuda, CUDA C through CuPy      str: "cuda", "cuda:N"
    "numba", "numba:N"        -> cuda, Numba CUDA kernels       str: "numba", "numba:N"

so PyTorch code (``.to("cuda")``, ``device="cpu"``) runs unchanged, and the kernel families stay
selectable by name (``.to("numba")``). A device is immutable and hashable; it equals an equal
device and its canonical string (``device("numpy") == "cpu"``).

The kernels themselves are the backend modules of :mod:`tinymed.backends`, each implementing
the contract :class:`tinymed.backends.Backend`. A device is the only way the layers above reach
one: ``device.backend`` imports the module on first use and raises, in one line, what is
missing and what to install when it cannot run here. Creating a device never fails for a
known name (as in PyTorch, ``device("cuda")`` exists on a machine without a GPU); using it
does.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from tinymed import backends

# Kernel family -> the place it runs; a family's name is also a spelling of its device.
_PLACE = {"numpy": "cpu", "cupy": "cuda", "numba": "cuda"}
# The kernel families, NumPy first: the device names a command line offers (--backend).
KERNELS: tuple[str, ...] = tuple(_PLACE)
# Place -> the family PyTorch's plain name means.
_DEFAULT_KERNELS = {"cpu": "numpy", "cuda": "cupy"}


class device:
    """A place and the kernel family that runs there; see the module docstring.

    ``device("cuda:0")``, ``device("numba")``, ``device(other_device)``, or PyTorch's
    ``device("cuda", 0)``. Attributes ``type``, ``index``, ``kernels``; ``backend`` is the
    kernel module (imported on first use).
    """

    __slots__ = ("_type", "_index", "_kernels")

    def __init__(self, spec: Any, index: int | None = None) -> None:
        if isinstance(spec, device):
            kind, number = spec.kernels, spec.index
        elif isinstance(spec, str):
            kind, _, suffix = spec.partition(":")
            number = _index(spec, suffix) if suffix else None
        else:
            raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', or a device, got {spec!r}")
        if index is not None:
            if number is not None:
                raise ValueError(f"device: index given twice, in {spec!r} and as index={index}")
            number = _index(spec, str(index))
        kernels = _DEFAULT_KERNELS.get(kind, kind)
        if kernels not in _PLACE:
            raise ValueError(
                f"device: unknown backend {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or a kernel family "
                f"({', '.join(map(repr, KERNELS))})"
            )
        if _PLACE[kernels] == "cpu" and number not in (None, 0):
            raise ValueError(f"device: the cpu has no index, got {spec!r}")
        object.__setattr__(self, "_type", _PLACE[kernels])
        object.__setattr__(self, "_index", None if _PLACE[kernels] == "cpu" else number)
        object.__setattr__(self, "_kernels", kernels)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"device is immutable; cannot set {name!r}")

    @property
    def type(self) -> str:
        """``"cpu"`` or ``"cuda"``: the place, as in PyTorch."""
        return self._type

    @property
    def index(self) -> int | None:
        """The GPU number, or ``None`` (the cpu, or the current GPU)."""
        return self._index

    @property
    def kernels(self) -> str:
        """The kernel family that runs here: ``"numpy"``, ``"cupy"`` or ``"numba"``."""
        return self._kernels

    @property
    def backend(self) -> ModuleType:
        """The kernel module (a :class:`tinymed.backends.Backend`); raises ``DeviceUnavailableError``
        with what is missing and what to install when it cannot run here."""
        if self._index not in (None, 0):
            raise DeviceUnavailableError(
                f"device {str(self)!r}: tinymed launches its kernels on the current GPU only; use "
                f"{self._type if self._kernels == 'cupy' else self._kernels!r} or index 0"
            )
        return _backend(self._kernels)

    def __str__(self) -> str:
        name = self._type if _DEFAULT_KERNELS[self._type] == self._kernels else self._kernels
        return name if self._index is None else f"{name}:{self._index}"

    def __repr__(self) -> str:
        index = "" if self._index is None else f", index={self._index}"
        return f"device(type={self._type!r}{index}, kernels={self._kernels!r})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, device):
            return (self._kernels, self._index) == (other.kernels, other.index)
        if isinstance(other, str):
            return str(self) == other
        return NotImplemented

    def __hash__(self) -> int:
        # Equal to its canonical string, so it hashes like it.
        return hash(str(self))

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return device, (str(self),)


class DeviceUnavailableError(backends.BackendUnavailableError):
    """A known device that cannot run on this machine (no GPU, CuPy or Numba missing)."""


def _index(spec: Any, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"device: the index in {spec!r} must be a non-negative int, got {text!r}")
    return int(text)


@functools.cache
def _backend(kernels: str) -> ModuleType:
    # Cached: every op asks its device for the backend. An unavailable one raises each time
    # (functools.cache keeps only results).
    try:
        return backends.get(kernels)
    except backends.BackendUnavailableError as error:
        raise DeviceUnavailableError(str(error)) from None


def parse_to(op: str, *args: Any, device: Any = None, dtype: Any = None) -> tuple[Any, np.dtype | None]:
    """The ``(device, dtype)`` that ``.to(...)`` asks for, either of them ``None``.

    PyTorch's forms: ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` and the keywords
    ``device=`` and ``dtype=``. A string that names no device and is no dtype raises a TypeError
    naming ``op``.
    """
    found_device, found_dtype = None if device is None else _device_type(device), None
    for value in (*args, dtype):
        if value is None:
            continue
        if isinstance(value, (str, _device_type)):
            try:
                found_device = _device_type(value)
                continue
            except ValueError:
                pass
        try:
            found_dtype = np.dtype(value)
        except TypeError:
            raise TypeError(
                f"{op}: {value!r} is neither a dtype nor a backend; expected a backend or device "
                f"({', '.join(KERNELS)}, 'cpu', 'cuda', 'cuda:N') or a dtype"
            ) from None
    return found_device, found_dtype


# parse_to's keyword is PyTorch's ``device``, which hides the class inside it.
_device_type = device
