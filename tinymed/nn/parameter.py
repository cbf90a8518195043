"""Parameter: a tensor that a :class:`~tinymed.nn.Module` learns (mirrors ``torch.nn.Parameter``).

Assigning a Parameter to a module attribute (``self.weight = Parameter(...)``) registers it,
so ``module.parameters()`` hands it to an optimiser and ``state_dict()`` saves it. A plain
tensor assigned the same way is just an attribute: the class is the signal."""

from __future__ import annotations

from typing import Any

from tinymed.autograd import TensorBase
from tinymed.tensor import Tensor


class Parameter(Tensor):
    """A learnable tensor: ``requires_grad`` is True unless asked otherwise.

    ``Parameter(tensor)`` shares ``tensor``'s array (no copy), as in PyTorch."""

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        source = data if isinstance(data, Tensor) else Tensor(data if data is not None else [])
        TensorBase.__init__(self, source.array, source.device)
        self.requires_grad_(requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
