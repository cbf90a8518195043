"""Graders of chapter 1, Autograd from scratch.

1.1 ``tanh(x)`` for the chapter's scalar ``Value``: its value, and a gradient that reaches x
    (checked through the student's own engine, against central differences).
1.2 ``iterative_topological_order(root)``: every node once, each after its parents, on graphs
    with shared nodes and on a chain far deeper than Python's recursion limit.
1.3 ``Softplus``, a tinymed ``Function``: values against NumPy's ``logaddexp`` (at x = +-800
    too), dtype and shape kept, gradients by :func:`tinymed.gradcheck`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import tinymed as tm
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck, need

__all__ = ["EXERCISES"]


def _central_difference(f: Callable[[float], float], x: float, h: float = 1e-6) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


def _grade_tanh(ns: Mapping[str, Any]) -> None:
    tanh, Value = ns["tanh"], need(ns, "Value")
    x = Value(0.5)
    y = tanh(x)
    expect(
        isinstance(y, Value),
        f"tanh must return a Value, built as Value(data, parents, local_grads); it returned {type(y).__name__}",
    )
    expect_close(y.data, math.tanh(0.5), "tanh(Value(0.5)).data", "the forward value is math.tanh(x.data)")
    expect(
        len(y.parents) == 1 and y.parents[0] is x,
        "the result's parents must be (x,): x itself, not a copy or x.data, or backward cannot reach x",
    )
    for point in (-2.0, 0.0, 0.5, 3.0):
        x = Value(point)
        tanh(x).backward()
        expect_close(
            x.grad,
            _central_difference(math.tanh, point),
            f"d tanh(x)/dx at x = {point}",
            "the local derivative of tanh is 1 - tanh(x)**2",
            rtol=1e-6,
        )
    x = Value(-0.7)
    tanh(x * x + x).backward()
    expect_close(
        x.grad,
        _central_difference(lambda v: math.tanh(v * v + v), -0.7),
        "d tanh(x*x + x)/dx at x = -0.7",
        "inside a larger expression the local derivative must be multiplied by the gradient arriving from above",
        rtol=1e-6,
    )
    x = Value(400.0)
    overflow_hint = "use math.tanh: (e^2x - 1) / (e^2x + 1) overflows for large x"
    try:
        y = tanh(x)
        y.backward()
    except OverflowError:
        raise Fail(f"tanh(Value(400.0)) raised OverflowError; {overflow_hint}") from None
    expect_close(
        (y.data, x.grad),
        (1.0, 0.0),
        "tanh(Value(400.0)) and its gradient",
        overflow_hint,
    )


class _Node:
    """A graph node for 1.2: only ``parents``, as the exercise promises."""

    def __init__(self, name: str, *parents: _Node) -> None:
        self.name, self.parents = name, parents

    def __repr__(self) -> str:
        return self.name


def _check_order(order: Any, root: _Node, nodes: list[_Node], graph: str) -> None:
    expect(isinstance(order, list), f"return a list of nodes, got {type(order).__name__} ({graph})")
    expect(
        all(isinstance(n, _Node) for n in order), f"the list must hold the nodes themselves, not their data ({graph})"
    )
    seen = [id(n) for n in order]
    expect(
        len(seen) == len(set(seen)),
        f"a node appears more than once in your order ({graph}); remember which nodes you have visited",
    )
    expect(
        set(seen) == {id(n) for n in nodes},
        f"your order has {len(set(seen))} nodes, the graph has {len(nodes)} ({graph}); "
        "visit every parent of every node, starting from the root",
    )
    position = {id(n): i for i, n in enumerate(order)}
    for node in nodes:
        for parent in node.parents:
            expect(
                position[id(parent)] < position[id(node)],
                f"{parent!r} comes after {node!r}, which is computed from it ({graph}); a node may be placed only "
                "when all its parents are",
            )
    expect(order[-1] is root, f"the root must come last ({graph})")


def _grade_topological_order(ns: Mapping[str, Any]) -> None:
    order_of = ns["iterative_topological_order"]
    a = _Node("a")
    _check_order(order_of(a), a, [a], "a graph of one node")
    b, c = _Node("b"), _Node("c")
    square = _Node("a*a", a, a)
    root = _Node("a*a + b*c", square, _Node("b*c", b, c))
    _check_order(order_of(root), root, [a, b, c, square, root.parents[1], root], "a*a + b*c, a used twice")
    ladder, nodes = _Node("x0"), []
    nodes.append(ladder)
    for k in range(1, 13):  # twelve diamonds in a row: 4096 paths from the root to x0
        left, right = _Node(f"l{k}", ladder), _Node(f"r{k}", ladder)
        ladder = _Node(f"x{k}", left, right)
        nodes += [left, right, ladder]
    _check_order(order_of(ladder), ladder, nodes, "a ladder of 12 diamonds")
    chain = [_Node("c0")]
    for k in range(1, 10_000):
        chain.append(_Node(f"c{k}", chain[-1]))
    try:
        order = order_of(chain[-1])
    except RecursionError:
        raise Fail(
            "RecursionError on a chain of 10,000 nodes: Python stops at about 1,000 nested calls; keep your own "
            "stack (a list) of the nodes still to visit instead of calling yourself"
        ) from None
    _check_order(order, chain[-1], chain, "a chain of 10,000 nodes")


def _grade_softplus(ns: Mapping[str, Any]) -> None:
    Softplus = ns["Softplus"]
    expect(
        isinstance(Softplus, type) and issubclass(Softplus, tm.Function),
        "Softplus must be a class deriving from tm.Function",
    )
    points = np.array([-800.0, -30.0, -1.0, 0.0, 0.5, 3.0, 30.0, 800.0])
    y = Softplus.apply(tm.tensor(points))
    expect(isinstance(y, tm.Tensor), f"Softplus.apply must return a Tensor, got {type(y).__name__}")
    values = y.numpy()
    expect(
        values.shape == points.shape and bool(np.all(np.isfinite(values))),
        f"Softplus at x = {points.tolist()} gave {values.tolist()}: log(1 + exp(x)) overflows at x = 800; "
        "use np.logaddexp(0, x), which is log(e^0 + e^x) computed safely",
    )
    expect_close(values, np.logaddexp(0.0, points), "Softplus values", "softplus(x) = log(1 + e^x)")
    for shape in ((), (2, 3)):
        x32 = tm.randn(*shape, dtype=tm.float32)
        y32 = Softplus.apply(x32)
        expect(
            y32.shape == x32.shape and y32.dtype == tm.float32,
            f"a float32 input of shape {x32.shape} gave {y32.dtype} of shape {y32.shape}; keep the input's "
            "shape and dtype (compute with self.xp on the array you are given)",
        )
    points = np.array([-1.0, 0.0, 2.0])
    x = tm.tensor(points, requires_grad=True)
    Softplus.apply(x).backward(tm.tensor(np.full(3, 3.0)))
    expect(
        not np.allclose(np.asarray(x.grad, dtype=np.float64), 1 / (1 + np.exp(-points))),
        "with grad_output 3 everywhere, backward returned the local derivative sigmoid(x) itself; multiply it by "
        "grad_output, the gradient arriving from above (the chain rule)",
    )
    tm.manual_seed(0)
    x = (3 * tm.randn(3, 4, dtype=tm.float64)).requires_grad_()
    expect_gradcheck(Softplus.apply, [x], "Softplus", "the derivative of log(1 + e^x) is 1 / (1 + e^-x)")
    x = tm.tensor([-800.0, 800.0], requires_grad=True)
    Softplus.apply(x).sum().backward()
    grad = np.asarray(x.grad, dtype=np.float64)
    expect(
        bool(np.all(np.isfinite(grad))),
        f"the gradient at x = -800 and 800 is {grad.tolist()}: exp(x) / (1 + exp(x)) is inf/inf at x = 800; "
        "use 1 / (1 + exp(-x)), or the saved output y as 1 - exp(-y)",
    )
    expect_close(grad, [0.0, 1.0], "the gradient at x = -800 and 800", "the derivative is sigmoid(x)")


EXERCISES = (
    Exercise(
        "1.1",
        "tanh",
        "tanh of a Value: its value, its parent x and its local derivative",
        _grade_tanh,
    ),
    Exercise(
        "1.2",
        "iterative_topological_order",
        "list every node once, each after its parents, with a stack instead of recursion",
        _grade_topological_order,
    ),
    Exercise(
        "1.3",
        "Softplus",
        "softplus(x) = log(1 + e^x) without overflow, and its backward",
        _grade_softplus,
    ),
)
