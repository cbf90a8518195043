"""The autograd engine against PyTorch's behaviour: in-place writes and version counters, a second
backward through freed buffers, ``autograd.grad``, grad modes, and gradients as Tensors.

Each scenario is PyTorch code written once against ``lib`` (``tinymed`` or ``torch``, which share
the names) and run on both: either both raise, with PyTorch's key phrase in both messages, or
neither does and the gradients agree.
"""

import numpy as np
import pytest
from helpers import assert_close

import tinymed as tm


def leaf(lib, values=(1.0, 2.0, 3.0)):
    return lib.tensor(list(values), requires_grad=True)


def issue_repro(lib):
    a = leaf(lib)
    y = (a * a).sum()
    with lib.no_grad():
        a.fill_(10.0)
    y.backward()
    return [a.grad]


def output_saved_then_written(lib):
    x = leaf(lib)
    y = x.exp()
    y.add_(1)
    y.sum().backward()
    return [x.grad]


def input_saved_then_written_through_detach(lib):
    x = leaf(lib)
    y = x * 1
    z = (y * y).sum()
    y.detach().zero_()  # detach shares the version counter
    z.backward()
    return [x.grad]


def written_through_data_is_not_seen(lib):
    x = leaf(lib)
    y = x.exp()
    y.data.zero_()  # .data has a counter of its own: autograd does not see the write
    y.sum().backward()
    return [x.grad]


def earlier_consumer_keeps_its_gradient(lib):
    x = leaf(lib)
    y = x * 3
    z = y + 1
    y.mul_(2)
    (z.sum() + (y * y).sum()).backward()
    return [x.grad]


def in_place_with_an_operand_that_requires_grad(lib):
    x, w = leaf(lib), leaf(lib, (0.5, -1.0, 2.0))
    y = x * 3
    y.mul_(w)
    y += w
    y.sub_(w, alpha=2)
    (y * y).sum().backward()
    return [x.grad, w.grad]


def leaf_written_under_grad(lib):
    x = leaf(lib)
    x.add_(1)


def leaf_augmented_assignment(lib):
    x = leaf(lib)
    x += 1


def leaf_setitem(lib):
    x = leaf(lib)
    x[0] = 5.0


def view_of_a_leaf_written(lib):
    x = leaf(lib)
    x[0:2].add_(1)


def leaf_written_under_no_grad(lib):
    x = leaf(lib)
    with lib.no_grad():
        x.mul_(2)
        x[0] = 5.0
        x.clamp_(max=4.5)
    (x * x).sum().backward()
    return [x.grad, x.detach()]


def second_backward(lib):
    x = leaf(lib)
    y = (x * x).sum()
    y.backward()
    y.backward()


def second_backward_retained(lib):
    x = leaf(lib)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    return [x.grad]


def second_backward_through_nothing_saved(lib):
    x = leaf(lib)
    y = (x + 1).sum() + x.mean() + x.reshape(3, 1).sum()
    y.backward()
    y.backward()
    return [x.grad]


def optimizer_step_between_forward_and_backward(lib):
    w = leaf(lib)
    optimizer = lib.optim.SGD([w], lr=0.1)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    optimizer.step()
    loss.backward()


def integer_tensor_cannot_hold_a_float_result(lib):
    lib.tensor([1, 2]).add_(0.5)


def clone_then_write(lib):
    x = leaf(lib)
    y = x.clone()
    y.mul_(2)
    y.sum().backward()
    return [x.grad]


SCENARIOS = {
    "issue_repro": (issue_repro, "modified by an inplace operation"),
    "output_saved_then_written": (output_saved_then_written, "modified by an inplace operation"),
    "written_through_detach": (input_saved_then_written_through_detach, "modified by an inplace operation"),
    "written_through_data": (written_through_data_is_not_seen, None),
    "earlier_consumer": (earlier_consumer_keeps_its_gradient, None),
    "operand_requires_grad": (in_place_with_an_operand_that_requires_grad, None),
    "leaf_under_grad": (leaf_written_under_grad, "a leaf Variable that requires grad is being used in an in-place"),
    "leaf_iadd": (leaf_augmented_assignment, "a leaf Variable that requires grad is being used in an in-place"),
    "leaf_setitem": (leaf_setitem, "a leaf Variable that requires grad is being used in an in-place"),
    "view_of_leaf": (view_of_a_leaf_written, "a view of a leaf Variable that requires grad"),
    "leaf_under_no_grad": (leaf_written_under_no_grad, None),
    "second_backward": (second_backward, "Trying to backward through the graph a second time"),
    "second_backward_retained": (second_backward_retained, None),
    "second_backward_nothing_saved": (second_backward_through_nothing_saved, None),
    "optimizer_step": (optimizer_step_between_forward_and_backward, "modified by an inplace operation"),
    "integer_add_float": (integer_tensor_cannot_hold_a_float_result, "can't be cast to the desired output type"),
    "clone_then_write": (clone_then_write, None),
}


def run(lib, scenario):
    """("raised", message) or ("ran", the arrays the scenario returned)."""
    try:
        result = scenario(lib)
    except RuntimeError as error:
        return "raised", str(error)
    return "ran", [np.asarray(t.detach().numpy() if hasattr(t, "detach") else t) for t in result or []]


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_behaves_as_in_pytorch(torch, name):
    scenario, phrase = SCENARIOS[name]
    (ours, ours_value), (theirs, theirs_value) = run(tm, scenario), run(torch, scenario)
    assert ours == theirs, f"tinymed {ours} ({ours_value}), PyTorch {theirs} ({theirs_value})"
    if ours == "raised":
        assert phrase in ours_value and phrase in theirs_value, (ours_value, theirs_value)
    else:
        assert len(ours_value) == len(theirs_value)
        for got, want in zip(ours_value, theirs_value):
            assert_close(got, want, name)


def test_the_version_error_names_the_tensor_and_both_versions():
    x = leaf(tm)
    y = x.exp()
    y.add_(1)
    y.mul_(2)
    with pytest.raises(RuntimeError, match=r"output 0 of Exp, is at version 2; expected version 0 instead"):
        y.sum().backward()


def test_versions_count_writes_as_in_pytorch(torch):
    def versions(lib):
        x = lib.zeros(3)
        seen = [x._version]
        for write in (
            lambda: x.add_(1),
            lambda: x.__iadd__(1),
            lambda: x.__setitem__(0, 2.0),
            lambda: x.copy_(lib.ones(3)),
            lambda: x.fill_(3.0),
            lambda: x.zero_(),
            lambda: x.detach().mul_(2),  # shares the counter
            lambda: x.data.mul_(2),  # has its own
            lambda: x.normal_(),
            lambda: x.uniform_(),
            lambda: x.masked_fill_(x > 0, 1.0),
            lambda: x.clamp_(0, 1),
        ):
            write()
            seen.append(x._version)
        return seen

    assert versions(tm) == versions(torch)


def test_a_view_shares_its_base_version_counter():
    x = tm.zeros(2, 3)
    row, flat = x[0], x.reshape(-1)
    row.add_(1)
    assert x._version == row._version == flat._version == 1 and x.numpy()[0].tolist() == [1.0, 1.0, 1.0]


def test_an_expanded_tensor_cannot_be_written_in_place(torch):
    for lib in (tm, torch):
        with pytest.raises(RuntimeError, match="more than one element"):
            lib.zeros(3).expand(2, 3).add_(1)


def test_a_recorded_write_into_a_view_of_a_non_leaf_is_refused_with_a_way_out():
    """PyTorch re-records the view's base (CopySlices); tinymed does not, so it says so."""
    x = leaf(tm)
    y = x * 3
    with pytest.raises(RuntimeError, match=r"mul_: tinymed cannot record an in-place write into a view"):
        y[0:2].mul_(2)
    with tm.no_grad():
        y[0:2].mul_(2)  # outside the graph it is allowed
    assert y.numpy().tolist() == [6.0, 12.0, 9.0]


# --------------------------------------------------------------------------- autograd.grad


def test_autograd_grad_matches_torch_and_leaves_grad_untouched(torch):
    def grads(lib):
        x, y = leaf(lib), leaf(lib, (0.5, -1.0, 2.0))
        h = x * y
        out = (h * h).sum() + y.exp().sum()
        gx, gy, gh = lib.autograd.grad(out, [x, y, h], retain_graph=True)
        (vector,) = lib.autograd.grad(h * 3, x, grad_outputs=lib.tensor([1.0, 2.0, 3.0]))
        assert x.grad is None and y.grad is None
        return [g.numpy() for g in (gx, gy, gh, vector)]

    for got, want in zip(grads(tm), grads(torch)):
        assert_close(got, want, "autograd.grad")


def test_autograd_grad_unused_inputs_and_errors(torch):
    for lib in (tm, torch):
        x, unused, constant = leaf(lib), leaf(lib), lib.ones(3)
        out = (x * x).sum()
        with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
            lib.autograd.grad(out, [x, unused], retain_graph=True)
        gx, none = lib.autograd.grad(out, [x, unused], allow_unused=True, retain_graph=True)
        assert none is None and gx.numpy().tolist() == [2.0, 4.0, 6.0]
        with pytest.raises(RuntimeError, match="does not require grad"):
            lib.autograd.grad(out, [constant])
        lib.autograd.grad(out, [x])  # frees the graph, as backward does
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            out.backward()


def test_autograd_grad_runs_only_the_part_of_the_graph_it_needs():
    x = leaf(tm)
    h = x.exp()
    out = (h * h).sum()
    tm.autograd.grad(out, [h])  # walks from out to h only: Exp keeps its saved values
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()
    h.sum().backward()
    assert_close(x.grad.numpy(), np.exp(np.float32([1.0, 2.0, 3.0])), "exp after grad")


def test_double_backward_is_refused_clearly():
    x = leaf(tm)
    out = (x * x).sum()
    with pytest.raises(NotImplementedError, match=r"create_graph=True \(double backward\) is not supported"):
        tm.autograd.grad(out, [x], create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        out.backward(create_graph=True)


def test_next_functions_lead_from_a_grad_fn_to_its_inputs():
    x = leaf(tm)
    y = x * 2
    z = y + tm.ones(3)
    assert z.grad_fn.next_functions == (y.grad_fn, None) and y.grad_fn.next_functions == (x, None)
    assert y.retains_grad is False
    y.retain_grad()
    assert y.retains_grad and z.grad_fn.next_functions[0] is y.grad_fn


def test_autograd_namespace_is_pytorchs():
    assert tm.autograd.Function is tm.Function and callable(tm.autograd.backward)
    x = leaf(tm)
    tm.autograd.backward([(x * 2).sum(), (x * x).sum()])
    assert x.grad.numpy().tolist() == [4.0, 6.0, 8.0]


# --------------------------------------------------------------------------- grad modes


def test_no_grad_and_inference_mode_as_decorators_with_and_without_parentheses(torch):
    def double(t):
        return t * 2

    for lib in (tm, torch):
        x = leaf(lib)
        # What ``@lib.no_grad`` and ``@lib.no_grad()`` above a def do.
        bare, called = lib.no_grad(double), lib.no_grad()(double)
        inferred, inferred_called = lib.inference_mode(double), lib.inference_mode()(double)
        assert not bare(x).requires_grad and not called(x).requires_grad and lib.is_grad_enabled()
        assert inferred(x).is_inference() and inferred_called(x).is_inference() and not x.is_inference()
        assert (x * 2).requires_grad


def test_inference_tensors_keep_out_of_graphs_as_in_pytorch(torch):
    for lib in (tm, torch):
        x = leaf(lib)
        plain = lib.ones(3)
        with lib.inference_mode():
            y = x * 2
            plain.add_(1)  # a normal tensor may be written inside
            assert not lib.is_grad_enabled() and lib.is_inference_mode_enabled()
        assert lib.is_grad_enabled() and not lib.is_inference_mode_enabled()
        assert y.is_inference() and not y.requires_grad and plain._version == 1
        with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
            y * x
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
            y.add_(1)
        assert (y.clone() * x).requires_grad


# --------------------------------------------------------------------------- gradients as Tensors


def test_gradients_are_tensors_with_pytorchs_vocabulary(torch):
    def use(lib):
        p = leaf(lib, (1.0, -2.0, 3.0))
        (p * p * p).sum().backward()
        g = p.grad
        assert isinstance(g, lib.Tensor) and g.is_leaf and not g.requires_grad and g.dtype == p.dtype
        values = [g.norm(), g.abs().mean(), g.data.norm(1), g.norm(float("inf"))]
        (p * p).sum().backward()  # accumulates into the same Tensor
        assert g is p.grad
        values.append(g.clone())
        p.grad.zero_()
        values.append(p.grad)
        return [v.numpy() for v in values]

    for got, want in zip(use(tm), use(torch)):
        assert_close(got, want, "gradient vocabulary")
    p = leaf(tm)
    (p * 2).sum().backward()
    assert isinstance(p.grad.array, np.ndarray) and p.grad.data.array is p.grad.array


def test_assigning_a_gradient_checks_it_as_pytorch_does(torch):
    for lib in (tm, torch):
        p = leaf(lib)
        with pytest.raises(TypeError, match="assigned grad expected to be a Tensor or None"):
            p.grad = np.ones(3, np.float32)
        with pytest.raises(RuntimeError, match="attempting to assign a gradient of size"):
            p.grad = lib.ones(2)
        p.grad = lib.full((3,), 2.0)
        p.grad = None


def test_data_is_a_tensor_sharing_storage_outside_autograd(torch):
    for lib in (tm, torch):
        p = leaf(lib)
        d = p.data
        assert isinstance(d, lib.Tensor) and not d.requires_grad and d.is_leaf
        d.mul_(2)  # no leaf error: .data is outside autograd
        assert p.detach().numpy().tolist() == [2.0, 4.0, 6.0] and p._version == 0
        p.data = lib.zeros(3)
        assert p.requires_grad and p.detach().numpy().tolist() == [0.0, 0.0, 0.0]


def test_requires_grad_can_be_switched_off_only_on_leaves(torch):
    for lib in (tm, torch):
        y = leaf(lib) * 2
        with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
            y.requires_grad = False


def test_module_zero_grad_sets_none_by_default_as_pytorch_2():
    net = tm.nn.Linear(2, 1)
    net(tm.ones(1, 2)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_a_function_written_pytorchs_way_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"MyReLU: tinymed's Function has its own interface.*self.x = x"):

        class MyReLU(tm.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x

            @staticmethod
            def backward(ctx, grad):
                return grad
