"""Element types: ``tm.float32`` and friends, the default dtype, and PyTorch's promotion rule.

tinymed's dtypes are NumPy dtypes (``tm.float32 is np.dtype("float32")``), so arrays and
tensors agree on them without translation. What is PyTorch's own is the rule for mixing them:
promotion goes by category first (bool < integer < floating), so ``int64 * float32`` is float32
(NumPy would say float64), and Python floats become the default dtype, float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
uint8 = np.dtype(np.uint8)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)
# PyTorch's aliases, so `tm.half`, `tm.long` read as they do in PyTorch code.
half, double, long = float16, float64, int64

_default_dtype = float32


def get_default_dtype() -> np.dtype:
    """The dtype Python floats become (float32, as in PyTorch)."""
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Make Python floats become ``dtype`` (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (float32, float64):
        raise TypeError(f"set_default_dtype: dtype must be float32 or float64, got {dtype}")
    _default_dtype = dtype


def is_floating(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating-point type (the only kind that carries gradients)."""
    return np.dtype(dtype).kind == "f"


# The category of each NumPy dtype kind: bool, unsigned or signed integer, floating.
CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}


def promote(dtypes: Sequence[np.dtype]) -> np.dtype:
    """The dtype that holds all of ``dtypes``: the highest category wins, then the largest size."""
    top = max(CATEGORY[d.kind] for d in dtypes)
    return np.result_type(*[d for d in dtypes if CATEGORY[d.kind] == top])


def result_type(shaped: Sequence[np.dtype], zero_dim: Sequence[np.dtype]) -> np.dtype:
    """The dtype of an op on tensors with dims (``shaped``) and 0-d tensors (``zero_dim``), by
    PyTorch's rule: tensors with dims decide, unless a 0-d tensor is of a higher category
    (``int_tensor * tm.tensor(2.5)`` is float32). Python numbers count as 0-d tensors."""
    if shaped and not (zero_dim and CATEGORY[promote(zero_dim).kind] > CATEGORY[promote(shaped).kind]):
        return promote(shaped)
    return promote([*shaped, *zero_dim])
