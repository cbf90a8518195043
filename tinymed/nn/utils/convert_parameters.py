"""Parameters as one flat vector and back (``torch.nn.utils.convert_parameters``)."""

from __future__ import annotations

from collections.abc import Iterable

from tinymed.autograd import no_grad
from tinymed.ops.shape import cat
from tinymed.tensor import Tensor


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and joined, in order: a 1-D Tensor of ``sum(p.numel())``
    elements (differentiable, like ``cat``)."""
    params = list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: got no parameters")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into ``parameters``, in order, each reshaped
    to its parameter's shape and cast to its dtype; ``vec`` must have exactly
    ``sum(p.numel())`` elements. (PyTorch makes the parameters views of ``vec``; tinymed
    copies, so later changes to ``vec`` do not reach them.)"""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected a Tensor, but got {type(vec).__name__}")
    params = list(parameters)
    sizes = [p.numel() for p in params]
    if vec.ndim != 1 or vec.shape[0] != sum(sizes):
        raise ValueError(
            f"vector_to_parameters: vec must be 1-D with {sum(sizes)} elements (the parameters' total), "
            f"got shape {vec.shape}"
        )
    start = 0
    with no_grad():
        for p, size in zip(params, sizes):
            p.copy_(vec[start : start + size].reshape(p.shape))
            start += size
