"""The backward walk: :func:`backward` accumulates gradients into the leaves' ``.grad``, and
:func:`grad` returns the gradients of some inputs without touching ``.grad`` (mirrors
``torch.autograd.backward`` and ``torch.autograd.grad``).

The graph is made of Functions, each holding the edges to where its inputs' gradients go: the
Function that made the input, or the leaf tensor itself. The walk visits them in reverse
topological order (every consumer of a value before the Function that made it), so a node's
gradient is complete, summed over all its uses, before its ``backward`` runs. It is iterative, so
depth is limited only by memory.

After a backward without ``retain_graph=True`` each Function's saved arrays are freed (memory is
what training runs out of first), and walking it again raises PyTorch's error; a Function that
kept nothing (``+``, ``sum``) can be walked again, as in PyTorch. Before each Function's backward
the versions of the tensors it saved are checked, so an in-place write since the forward raises
instead of giving a wrong gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tinymed.autograd.function import Function, sum_to_shape
from tinymed.autograd.tensor_base import TensorBase

SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they have "
    "already been freed). Saved intermediate values of the graph are freed when you call .backward() or "
    "autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time or "
    "if you need to access saved tensors after calling backward."
)


def backward(
    tensors: TensorBase | Sequence[TensorBase],
    grad_tensors: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
) -> None:
    """Accumulate d(sum_i <tensors_i, grad_tensors_i>)/d(leaf) into every leaf's ``.grad``.

    ``grad_tensors[i]`` is d(loss)/d(tensors[i]), of ``tensors[i]``'s shape; it may be omitted
    (``None``) for a one-element tensor, where 1 is used. ``retain_graph`` (default
    ``create_graph``) keeps the saved arrays for another backward."""
    roots = _roots("backward", tensors, grad_tensors, create_graph)
    _run(roots, bool(create_graph if retain_graph is None else retain_graph), targets=None)


def grad(
    outputs: TensorBase | Sequence[TensorBase],
    inputs: TensorBase | Sequence[TensorBase],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[TensorBase | None, ...]:
    """d(sum_i <outputs_i, grad_outputs_i>)/d(inputs_j) for each input, as a tuple of tensors of
    the inputs' shapes; ``.grad`` is left untouched. An input the outputs do not depend on raises,
    or gives ``None`` with ``allow_unused=True``. Only the part of the graph between the outputs
    and the inputs runs. ``create_graph=True`` (a graph of the gradient, for double backward) is
    not supported: tinymed's backwards compute on arrays, not on recorded tensors."""
    inputs = [inputs] if isinstance(inputs, TensorBase) else list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, TensorBase):
            raise TypeError(f"grad: inputs[{i}] must be a Tensor, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _roots("grad", outputs, grad_outputs, create_graph)
    targets = {id(t.grad_fn if t.grad_fn is not None else t): None for t in inputs}
    _run(roots, bool(create_graph if retain_graph is None else retain_graph), targets)
    found = [targets[id(t.grad_fn if t.grad_fn is not None else t)] for t in inputs]
    if not allow_unused and any(g is None for g in found):
        raise RuntimeError(
            "One of the differentiated Tensors appears to not have been used in the graph. "
            "Set allow_unused=True if this is the desired behavior."
        )
    return tuple(None if g is None else t.wrap(t.device.backend.xp.array(g), t.device) for t, g in zip(inputs, found))


def _roots(op: str, tensors: Any, gradients: Any, create_graph: bool) -> list[tuple[TensorBase, Any]]:
    """Each output paired with the gradient backward starts from, as an array of its shape and dtype."""
    if create_graph:
        raise NotImplementedError(
            f"{op}: create_graph=True (double backward) is not supported: tinymed's Functions compute their "
            "backward on arrays, so the gradient has no graph of its own"
        )
    if isinstance(tensors, TensorBase):
        tensors, gradients = [tensors], [gradients]
    else:
        tensors = list(tensors)
        gradients = [None] * len(tensors) if gradients is None else list(gradients)
    if len(gradients) != len(tensors):
        raise ValueError(f"{op}: got {len(gradients)} gradients for {len(tensors)} outputs")
    return [_root(op, i, t, g) for i, (t, g) in enumerate(zip(tensors, gradients))]


def _root(op: str, i: int, tensor: TensorBase, gradient: Any) -> tuple[TensorBase, Any]:
    if not tensor.requires_grad:
        raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
    if gradient is None:
        if tensor.array.size != 1:
            raise RuntimeError(
                f"{op}: grad can be implicitly created only for scalar outputs; pass a gradient of shape {tensor.shape}"
            )
        return tensor, tensor.device.backend.xp.ones_like(tensor.array)
    if isinstance(gradient, TensorBase):
        gradient = gradient.array
    else:
        gradient = tensor.device.backend.asarray(np.asarray(gradient))
    if tuple(gradient.shape) != tensor.shape:
        raise RuntimeError(
            f"{op}: Mismatch in shape: gradient shape {tuple(gradient.shape)} does not match tensor shape {tensor.shape}"
        )
    return tensor, gradient.astype(tensor.dtype, copy=False)


def _run(roots: list[tuple[TensorBase, Any]], retain_graph: bool, targets: dict[int, Any] | None) -> None:
    """Walk the graph from ``roots``. Without ``targets``, accumulate into the leaves' ``.grad``
    (and retained non-leaves'); with it, store in ``targets[id(node)]`` the gradient reaching each
    node named there, and run only the Functions that lead to one."""
    grads: dict[int, Any] = {}
    for tensor, gradient in roots:
        _add(grads, tensor.grad_fn if tensor.grad_fn is not None else tensor, gradient)
    order = _topological_order([t.grad_fn if t.grad_fn is not None else t for t, _ in roots])
    needed = None if targets is None else _leading_to(order, targets)
    for node in reversed(order):
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        if targets is not None and id(node) in targets:
            targets[id(node)] = grad
        if isinstance(node, TensorBase):
            if targets is None:
                _accumulate(node, grad)
            continue
        if needed is not None and id(node) not in needed:
            continue
        retained = node.retained() if node.retained is not None and targets is None else None
        if retained is not None:
            _accumulate(retained, grad)
        for edge_node, g in _input_grads(node, grad):
            _add(grads, edge_node, g)
        if not retain_graph:
            _release(node)


def _add(grads: dict[int, Any], node: Any, grad: Any) -> None:
    # A fresh sum, never in place: one gradient array may be handed to several inputs (x + x).
    grads[id(node)] = grad if id(node) not in grads else grads[id(node)] + grad


def _accumulate(tensor: TensorBase, grad: Any) -> None:
    """Add ``grad`` into ``tensor.grad`` (made on first use, as a copy: ``grad`` may be shared)."""
    if tensor.grad is None:
        tensor.grad = tensor.wrap(tensor.device.backend.xp.array(grad, dtype=tensor.dtype), tensor.device)
    else:
        tensor.grad.array += grad
        tensor.grad.increment_version()


def _topological_order(roots: list[Any]) -> list[Any]:
    """Every node ``roots`` lead to (Functions and leaf tensors), each after all the nodes its
    gradient flows to (iterative DFS)."""
    order: list[Any] = []
    visited: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False) for root in roots]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if isinstance(node, Function):
            stack.extend((e[0], False) for e in node.next_edges if e is not None and id(e[0]) not in visited)
    return order


def _leading_to(order: list[Any], targets: dict[int, Any]) -> set[int]:
    """The Functions in ``order`` from which some target is reached through their edges."""
    reaching: set[int] = set()
    for node in order:  # a node comes after every node its edges lead to
        if isinstance(node, Function) and any(
            e is not None and (id(e[0]) in targets or id(e[0]) in reaching) for e in node.next_edges
        ):
            reaching.add(id(node))
    return reaching


def _release(fn: Function) -> None:
    """Free the arrays ``fn`` kept for backward; a later walk through it raises."""
    saved = fn.saved_arrays()
    for name in saved:
        delattr(fn, name)
    fn.released = fn.released or bool(saved)


def _input_grads(fn: Function, grad: Any) -> Iterator[tuple[Any, Any]]:
    """Run ``fn.backward`` and pair each gradient with the node it flows to, summed back to the
    input's shape when broadcasting stretched it, and cast to the input's dtype. Any other shape
    is a bug in the Function (it would otherwise broadcast silently into a wrong ``.grad``)."""
    name = type(fn).__name__
    if fn.released:
        raise RuntimeError(SECOND_BACKWARD)
    for saved in fn.saved_values:
        saved.check()
    input_grads = fn.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    if len(input_grads) != len(fn.next_edges):
        raise RuntimeError(f"{name}.backward returned {len(input_grads)} gradients for {len(fn.next_edges)} inputs")
    for i, (edge, g) in enumerate(zip(fn.next_edges, input_grads)):
        if edge is None or g is None:
            continue
        node, shape, dtype = edge
        if tuple(g.shape) != shape:
            if not _broadcasts_to(shape, tuple(g.shape)):
                raise RuntimeError(
                    f"{name}.backward: the gradient of input {i} has shape {tuple(g.shape)}, but the input has shape {shape}"
                )
            g = sum_to_shape(g, shape)
        yield node, g if g.dtype == dtype else g.astype(dtype)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to exactly ``target``."""
    try:
        return tuple(np.broadcast_shapes(shape, target)) == target
    except ValueError:
        return False
