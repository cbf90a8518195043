"""Module: the base class of every layer and model (mirrors ``torch.nn.Module``).

A module owns three kinds of state, each in its own dict so it can be found again:

* ``_parameters``: :class:`Parameter` objects, what an optimiser updates;
* ``_buffers``: tensors that are saved but not learnt (BatchNorm's running statistics);
* ``_modules``: child modules, so a model is a tree and every walk (``parameters()``,
  ``state_dict()``, ``train()``) recurses through it.

Plain attribute assignment fills them: ``__setattr__`` looks at the value's type, which is
why subclasses must call ``super().__init__()`` before assigning anything.

A state dict maps dotted names (``"features.0.weight"``) to arrays. tinymed's holds NumPy
arrays (copies, so a saved state does not change as training goes on; PyTorch's shares
memory with the model), and ``load_state_dict`` accepts arrays or tensors, so a PyTorch
state dict converted with ``.numpy()`` loads unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from tinymed.autograd import no_grad
from tinymed.device import parse_to
from tinymed.nn.parameter import Parameter
from tinymed.tensor import Tensor


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class RemovableHandle:
    """Returned by ``register_forward_hook``; ``handle.remove()`` takes the hook out again."""

    _next_id = 0

    def __init__(self, hooks: dict[int, Callable]) -> None:
        self.hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        self.hooks.pop(self.id, None)


def _addindent(text: str, spaces: int) -> str:
    """Indent every line of a child's repr but the first (which follows ``(name): ``)."""
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


class Module:
    """Base class for layers and models: subclass it, assign layers and Parameters in
    ``__init__`` (after ``super().__init__()``), and write ``forward``.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return F.relu(self.fc(x))
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ would look for these dicts.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_pre_hooks", {})
        object.__setattr__(self, "_forward_hooks", {})

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``forward``, with any registered hooks around it."""
        for hook in list(self._forward_pre_hooks.values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            changed = hook(self, args, output)
            if changed is not None:
                output = changed
        return output

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, args)`` before every forward; a non-None result replaces args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward (Grad-CAM grabs
        activations this way); a non-None result replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        # A Parameter or Module value is registered (a plain Tensor becomes a buffer only
        # through register_buffer); assigning to a name already registered as a parameter,
        # child or buffer must keep its kind, or be None ("this layer has no bias").
        for kind, store_name, what in (
            (Parameter, "_parameters", "parameter"),
            (Module, "_modules", "child module"),
            (Tensor, "_buffers", "buffer"),
        ):
            store = self.__dict__.get(store_name)
            if isinstance(value, kind) and kind is not Tensor:
                if store is None:
                    raise AttributeError(f"cannot assign {type(value).__name__} {name!r} before Module.__init__() call")
                self._forget(name, store)
                store[name] = value
                return
            if store is not None and name in store:
                if value is not None and not isinstance(value, kind):
                    raise TypeError(
                        f"cannot assign {type(value).__name__} as {what} {name!r} ({kind.__module__}.{kind.__name__} or None expected)"
                    )
                store[name] = value
                return
        object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: dict) -> None:
        """Drop ``name`` from every place it may be registered but ``keep``, the store it is
        about to be (re-)registered in: replacing an entry there keeps its position, so
        ``model[0] = layer`` stays first."""
        self.__dict__.pop(name, None)
        for store in (self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails. Read the dicts through __dict__: during
        # copy.deepcopy the object exists before its dicts do.
        for store in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(store)
            if found is not None and name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def _check_new_name(self, kind: str, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")
        known = name in self._parameters or name in self._buffers or name in self._modules
        if hasattr(self, name) and not known:
            raise KeyError(f"attribute {name!r} already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or ``None``: "this layer has no bias") under ``name``."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_new_name("parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign {type(param).__name__} object to parameter {name!r} (tinymed.nn.Parameter or None required)"
            )
        self._forget(name, self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a tensor that is state but not learnt (e.g. BatchNorm's running mean).
        ``persistent=False`` keeps it out of ``state_dict``."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_new_name("buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign {type(tensor).__name__} object to buffer {name!r} (tinymed.Tensor or None required)"
            )
        self._forget(name, self._buffers)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module under ``name`` (what ``self.name = module`` does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_new_name("module", name)
        self._forget(name, self._modules)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """The module at dotted path ``target`` (``"features.0"``); ``""`` is self."""
        module = self
        for part in target.split(".") if target else []:
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{module._get_name()} has no submodule {part!r} (looking up {target!r})")
            module = child
        return module

    # ------------------------------------------------------------------ walking the tree
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """Every module in the tree, self first, as ``(dotted name, module)``; a module
        reached twice is yielded once unless ``remove_duplicate`` is False."""
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(
        self, store: str, prefix: str, recurse: bool, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        # A tensor shared by two modules (tied weights) is yielded once, so an optimiser
        # does not step it twice. Sets compare tensors by identity.
        seen: set[int] = set()
        owners = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for owner_prefix, module in owners:
            for name, tensor in getattr(module, store).items():
                if tensor is None or id(tensor) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(tensor))
                yield owner_prefix + ("." if owner_prefix else "") + name, tensor

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` for every parameter, in registration order."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter (what an optimiser is given)."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every child (recursively), then on self; e.g. custom weight init."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout drops, BatchNorm uses batch statistics) for the whole tree."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode is expected to be a bool, got {type(mode).__name__}")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Switch gradient recording on or off for every parameter (freezing a backbone)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (``None``, or zeros in place)."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    # ------------------------------------------------------------------ moving and casting
    def to(self, *args: Any, device: Any = None, dtype: Any = None) -> Module:
        """Move every parameter and buffer to a device and/or cast the floating-point ones to a
        dtype, as PyTorch: ``to("cuda")``, ``to(tm.float64)``, ``to("cpu", tm.float64)``,
        ``to(device=..., dtype=...)`` (any spelling :class:`tinymed.device` accepts). In place:
        the Parameter objects stay the same, so an optimiser built before still holds them."""
        target, dtype = parse_to("Module.to", *args, device=device, dtype=dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dtype}")

        def move(t: Tensor) -> Tensor:
            return t.to(target, dtype if t.dtype.kind == "f" else None)

        return self._apply(move)

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def _apply(self, fn: Callable[[Tensor], Tensor]) -> Module:
        for module in self.modules():
            for store in (module._parameters, module._buffers):
                for tensor in store.values():
                    if tensor is not None:
                        _replace_in_place(tensor, fn)
        return self

    # ------------------------------------------------------------------ saving and loading
    def state_dict(
        self, *, destination: dict | None = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """Every parameter and persistent buffer by dotted name, as NumPy arrays (copies);
        ``keep_vars=True`` gives the tensors themselves."""
        if destination is None:
            destination = OrderedDict()
        for name, tensor in self._parameters.items():
            if tensor is not None:
                destination[prefix + name] = tensor if keep_vars else np.array(tensor.numpy(), copy=True)
        for name, tensor in self._buffers.items():
            if tensor is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = tensor if keep_vars else np.array(tensor.numpy(), copy=True)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (or tensors) into the parameters and buffers of the same names.

        Nothing is copied unless every entry fits: a shape mismatch is always an error, and
        with ``strict`` so are missing and unexpected keys; the error lists all of them.
        Values are cast to each parameter's dtype. An entry a module can do without
        (:meth:`_state_defaults`) is not missing. Returns the skipped keys."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"load_state_dict: state_dict must be a mapping of names to arrays or tensors (what "
                f"state_dict() returns), got {type(state_dict).__name__}"
            )
        own = self.state_dict(keep_vars=True)
        # PyTorch's state dicts say which version of each module's layout they hold.
        versions = getattr(state_dict, "_metadata", {})
        state_dict = dict(state_dict)
        for name, module in self.named_modules():
            version = versions.get(name, {}).get("version")
            for key, value in module._state_defaults(name + "." if name else "", version).items():
                state_dict.setdefault(key, value)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        arrays = {key: _host_array(state_dict[key]) for key in own if key in state_dict}
        errors = []
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        for key, array in arrays.items():
            if array.shape != own[key].shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {array.shape} from checkpoint, "
                    f"the shape in current model is {own[key].shape}."
                )
        if errors:
            raise ValueError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t" + "\n\t".join(errors))
        with no_grad():  # loading is not a step of the model's computation
            for key, array in arrays.items():
                own[key].copy_(array)
        return IncompatibleKeys(missing, unexpected)

    def _state_defaults(self, prefix: str, version: int | None) -> dict[str, Any]:
        """Entries (keyed ``prefix + name``) that this module fills in, keeping their current
        values, when a state dict lacks them: none, unless a layer's layout grew an entry
        later (BatchNorm's ``num_batches_tracked``). ``version`` is the layout's version the
        state dict declares in PyTorch's ``_metadata`` (None when it declares none)."""
        return {}

    # ------------------------------------------------------------------ printing
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The layer's settings, shown inside its repr (``in_features=4, ...``)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))


def _host_array(value: Any) -> np.ndarray:
    """A state-dict value as a NumPy array: tensors are brought to the host, anything
    array-like (a NumPy array, a CPU ``torch.Tensor``) goes through ``np.asarray``."""
    return value.numpy() if isinstance(value, Tensor) else np.asarray(value)


def _replace_in_place(tensor: Tensor, fn: Callable[[Tensor], Tensor]) -> None:
    """Give ``tensor`` the array of ``fn(tensor)`` (and its gradient the same treatment),
    keeping the object: optimisers and other modules hold references to it."""
    moved = fn(tensor.detach())
    grad = None if tensor.grad is None else fn(tensor.grad)
    tensor.grad = None  # the new gradient may have another dtype or device than the old tensor
    tensor.set_(moved)
    tensor.grad = grad
