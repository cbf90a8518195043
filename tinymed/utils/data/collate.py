"""Collation: a list of samples becomes one batch (``torch.utils.data.default_collate``).

The rule is PyTorch's, applied to the first sample's type and recursively into containers:

=======================  ===================================================
sample element           batch
=======================  ===================================================
Tensor ``(*S)``          ``stack``: a Tensor ``(B, *S)``
NumPy array ``(*S)``     a Tensor ``(B, *S)`` of the array's dtype
NumPy scalar             a Tensor ``(B,)`` of its dtype
float / int / bool       a Tensor ``(B,)``: float64 / int64 / bool
str / bytes              the list of them, unchanged
dict (any Mapping)       a dict of the same keys, each value collated
namedtuple               the same namedtuple, each field collated
tuple / list             a list (a list sample: a list), position by position
=======================  ===================================================
"""

from __future__ import annotations

import collections.abc
import copy
from typing import Any

import numpy as np

from tinymed.ops.shape import stack
from tinymed.tensor import Tensor, tensor


def _unsupported(what: Any) -> TypeError:
    return TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {what}"
    )


def _check_array(array: np.ndarray) -> None:
    """Arrays of strings or objects have no tensor form."""
    if array.dtype.kind not in "biuf":
        raise _unsupported(f"a numpy array of dtype {array.dtype}")


def default_collate(batch: list[Any]) -> Any:
    """The batch made from a list of samples (see the module docstring for the rule)."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if isinstance(elem, np.ndarray):
        _check_array(elem)
        return default_collate([tensor(a) for a in batch])
    if isinstance(elem, (np.bool_, np.number)):
        return tensor(np.asarray(batch))
    if isinstance(elem, float):
        # Through a float64 array: tensor reads a list of Python floats as float32 first.
        return tensor(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):  # bool included: a list of bools becomes a bool tensor
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([sample[key] for sample in batch]) for key in elem}
        if isinstance(elem, collections.abc.MutableMapping):
            # A copy keeps the mapping's own type and attributes (an OrderedDict, a defaultdict).
            clone = copy.copy(elem)
            clone.update(collated)
            return clone
        return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        collated = [default_collate(list(samples)) for samples in zip(*batch)]
        return type(elem)(collated) if isinstance(elem, list) else collated
    raise _unsupported(type(elem).__name__)


def default_convert(data: Any) -> Any:
    """One sample as the DataLoader yields it when it does not batch (``batch_size=None``):
    NumPy arrays and scalars become Tensors, inside dicts, namedtuples, tuples and lists too;
    everything else is left as it is."""
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind not in "biuf" else tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return {key: default_convert(value) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(value) for value in data))
    if isinstance(data, tuple):
        return [default_convert(value) for value in data]
    if isinstance(data, list):
        return [default_convert(value) for value in data]
    return data
