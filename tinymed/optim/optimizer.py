"""Optimizer: the base class of SGD, Adam and AdamW (mirrors ``torch.optim.Optimizer``).

An optimiser holds the parameters in ``param_groups`` (a list of dicts: ``"params"`` and
that group's options, e.g. a smaller ``lr`` for a pretrained backbone) and, in ``state``,
whatever each parameter's update rule remembers between steps (momentum buffers, Adam's
moment estimates). A subclass writes the rule for one parameter, :meth:`Optimizer._update`;
:meth:`step` applies it to every parameter that has a gradient.

Updates are written into the parameters' arrays in place, outside autograd, and counted on
each parameter's version (so a backward through a graph that saved the old values raises, as in
PyTorch): the Parameter objects stay the ones the model holds.

``state_dict()`` has PyTorch's structure: ``{"state": {index: {name: value}},
"param_groups": [{options..., "params": [index, ...]}]}``, with parameters numbered in
order across groups and arrays copied to NumPy, so a checkpoint resumes bit-identically.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tinymed.autograd import enable_grad
from tinymed.tensor import Tensor


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``, where ``params`` is an iterable of
    tensors or of dicts (parameter groups) and ``defaults`` the options a group gets when
    it does not set them."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        # Keyed by the parameter itself (tensors hash by identity).
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or dicts, got a Tensor")
        if callable(params):
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Tensors or dicts, got the method "
                f"{getattr(params, '__name__', params)!r} itself; call it: model.parameters()"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for group in groups if isinstance(groups[0], dict) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (e.g. unfreezing a layer)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{type(self).__name__}: a param group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor (shape {p.shape})")
        if len({id(p) for p in params}) < len(params):
            # PyTorch warns too: each step would move such a parameter once per appearance.
            warnings.warn(
                f"{type(self).__name__}: a parameter group holds the same parameter more than once; "
                "each step would update it that many times",
                stacklevel=3,
            )
        known = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in known for p in params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        group = {**self.defaults, **param_group, "params": params}
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every parameter's gradient before the next backward (which accumulates)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (recomputing the loss)
        is called first if given, and its result returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    # Only rules that remember something get a state entry (plain SGD has none).
                    state = self.state.get(p, {})
                    self._update(p, p.grad.array, state, group, p.device.backend.xp)
                    p.increment_version()
                    if state:
                        self.state[p] = state
        return loss

    def _update(self, param: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any], xp: Any) -> None:
        """Apply the update rule to one parameter, writing into ``param.array`` in place (for
        speed, on arrays of the array module ``xp``, outside autograd; :meth:`step` counts the
        write on the parameter's version); ``grad`` is ``param.grad.array``; ``state`` is this
        parameter's memory between steps."""
        raise NotImplementedError(f"{type(self).__name__} has no update rule")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [...]}`` with NumPy copies of arrays."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {
            index[id(p)]: {name: _to_host(p, value) for name, value in values.items()}
            for p, values in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and per-parameter state saved by :meth:`state_dict` onto this
        optimiser's parameters (matched by position); arrays go to each parameter's
        backend and dtype."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: parameter group {i} has {len(saved['params'])} parameters "
                    f"in the state dict but {len(group['params'])} in this optimizer"
                )
        by_index = {
            int(saved_index): p
            for saved, group in zip(saved_groups, self.param_groups)
            for saved_index, p in zip(saved["params"], group["params"])
        }
        self.state = {
            by_index[int(i)]: {name: _to_param(by_index[int(i)], value) for name, value in values.items()}
            for i, values in state_dict["state"].items()
        }
        self.param_groups = [
            {**saved, "params": group["params"]} for saved, group in zip(saved_groups, self.param_groups)
        ]

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"


def _to_host(param: Tensor, value: Any) -> Any:
    """A state value for a checkpoint: arrays as NumPy copies, numbers as they are."""
    if isinstance(value, (int, float)):
        return value
    return np.array(param.device.backend.to_numpy(value), copy=True)


def _to_param(param: Tensor, value: Any) -> Any:
    """A checkpoint's state value made usable for ``param``: floating arrays in its dtype,
    copied onto its device (so the checkpoint itself is never modified)."""
    if isinstance(value, (int, float)):
        return value
    array = np.array(value, copy=True)
    if array.dtype.kind == "f":
        array = array.astype(param.dtype)
    return param.device.backend.asarray(array)
