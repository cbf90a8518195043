"""Modules that hold other modules: Sequential, ModuleList, ModuleDict (as ``torch.nn``).

A Python list of layers would hide them from ``parameters()`` and ``state_dict()``; these
containers register each one as a child, named by its position (``"0"``, ``"1"``, ...) or
its key, which is where state-dict keys such as ``"features.0.weight"`` come from. Sequential
and ModuleList are both lists of modules and share that behaviour (:class:`_ModuleSequence`):
indexing, slicing, ``append``/``extend``/``insert``/``pop``, and ``del``, after which the
children are numbered again from 0, as PyTorch numbers them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tinymed.nn.module import Module


class _ModuleSequence(Module):
    """An ordered list of child modules; subclasses say how a slice is rebuilt."""

    def _position(self, index: int) -> int:
        """``index`` (negative counts from the end) as a position in the list."""
        length = len(self._modules)
        if not isinstance(index, int) or not -length <= index < length:
            raise IndexError(f"{type(self).__name__}: index {index!r} is out of range for {length} modules")
        return index % length

    def _from_slice(self, items: list[tuple[str, Module]]) -> Module:
        raise NotImplementedError(f"{type(self).__name__} does not say how to rebuild a slice")

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return self._from_slice(items[index])
        return items[self._position(index)][1]

    def __setitem__(self, index: int, module: Module) -> None:
        key = list(self._modules)[self._position(index)]
        self.add_module(key, module)

    def __delitem__(self, index: int | slice) -> None:
        keys = list(self._modules)
        for key in keys[index] if isinstance(index, slice) else [keys[self._position(index)]]:
            del self._modules[key]
        modules = list(self._modules.values())
        self._modules.clear()
        self._modules.update((str(i), module) for i, module in enumerate(modules))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> _ModuleSequence:
        return self.extend(modules)

    def append(self, module: Module) -> _ModuleSequence:
        """Add ``module`` at the end, named by its position."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> _ModuleSequence:
        """Append each of ``modules`` in turn."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Put ``module`` before position ``index`` (as ``list.insert``); those after it move up one."""
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._modules.clear()
        for i, child in enumerate(modules):
            self.add_module(str(i), child)

    def pop(self, index: int) -> Module:
        """Remove the module at ``index`` and return it."""
        module = self[index]
        del self[index]
        return module


class Sequential(_ModuleSequence):
    """Modules applied one after the other: ``forward(x)`` is ``m_n(...m_1(m_0(x)))``.

    ``Sequential(a, b, c)`` names them ``"0"``, ``"1"``, ``"2"``;
    ``Sequential(OrderedDict(conv=a, act=b))`` keeps the given names (a slice keeps them too)."""

    def __init__(self, *args: Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(args):
                self.add_module(str(index), module)

    def _from_slice(self, items: list[tuple[str, Module]]) -> Sequential:
        return Sequential(OrderedDict(items))

    def forward(self, input: Any) -> Any:
        for module in self:
            input = module(input)
        return input


class ModuleList(_ModuleSequence):
    """A list of modules, each registered as a child (``"0"``, ``"1"``, ...); it has no
    forward: the owner decides how to call them. ``a + b`` is a new list of both."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _from_slice(self, items: list[tuple[str, Module]]) -> ModuleList:
        return ModuleList(module for _, module in items)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])


class ModuleDict(Module):
    """A dict of modules, each registered as a child under its key, in insertion order."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def clear(self) -> None:
        """Remove every module."""
        self._modules.clear()

    def pop(self, key: str) -> Module:
        """Remove the module under ``key`` and return it."""
        module = self[key]
        del self[key]
        return module

    def keys(self) -> Iterable[str]:
        return self._modules.keys()

    def items(self) -> Iterable[tuple[str, Module]]:
        return self._modules.items()

    def values(self) -> Iterable[Module]:
        return self._modules.values()

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add (or replace) modules from a mapping or from ``(key, module)`` pairs, in order."""
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module
