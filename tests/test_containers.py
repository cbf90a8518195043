"""Sequential, ModuleList and ModuleDict against torch.nn's: the same edits (append, extend,
insert, pop, del, slicing, +, +=, update, clear) leave the same children under the same
names, and so the same state-dict keys."""

from collections import OrderedDict

import pytest

import tinymed as tm
import tinymed.nn as nn


def layout(container):
    """The children by name and kind, and the state-dict keys."""
    return [(name, type(m).__name__) for name, m in container.named_children()], list(container.state_dict())


def edit_list(lib_nn, make):
    blocks = make([lib_nn.Linear(2, 2), lib_nn.ReLU(), lib_nn.Linear(2, 3)])
    blocks.append(lib_nn.Tanh())
    blocks.extend([lib_nn.Linear(3, 1), lib_nn.Sigmoid()])
    blocks.insert(1, lib_nn.BatchNorm1d(2))
    popped = blocks.pop(2)
    del blocks[-1]
    del blocks[0:1]
    blocks[0] = lib_nn.LayerNorm(2)
    return blocks, popped


@pytest.mark.parametrize("kind", ["ModuleList", "Sequential"])
def test_list_edits_match_torch(torch, kind):
    def make(nn_lib):
        cls = getattr(nn_lib, kind)
        return lambda modules: cls(modules) if kind == "ModuleList" else cls(*modules)

    ours, popped = edit_list(nn, make(nn))
    theirs, popped_t = edit_list(torch.nn, make(torch.nn))
    assert layout(ours) == layout(theirs)
    assert type(popped).__name__ == type(popped_t).__name__ == "ReLU"
    assert layout(ours[1:3]) == layout(theirs[1:3]) and type(ours[1:3]) is type(ours)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs]


def test_module_list_add_and_iadd_match_torch(torch):
    def edit(lib_nn):
        first = lib_nn.ModuleList([lib_nn.Linear(2, 2)])
        both = first + lib_nn.ModuleList([lib_nn.ReLU(), lib_nn.Linear(2, 1)])
        first += [lib_nn.Tanh()]
        return layout(both), layout(first)

    assert edit(nn) == edit(torch.nn)


def test_sequential_keeps_names_and_renumbers_after_del(torch):
    def edit(lib_nn):
        seq = lib_nn.Sequential(OrderedDict(conv=lib_nn.Linear(2, 2), act=lib_nn.ReLU(), out=lib_nn.Linear(2, 1)))
        seq[1] = lib_nn.Tanh()
        sliced = layout(seq[1:])
        del seq[0]
        return sliced, layout(seq)

    assert edit(nn) == edit(torch.nn)


def test_module_dict_matches_torch(torch):
    def edit(lib_nn):
        heads = lib_nn.ModuleDict([("a", lib_nn.Linear(2, 1)), ("b", lib_nn.Linear(2, 2))])
        heads.update({"c": lib_nn.Linear(2, 3), "a": lib_nn.Linear(2, 4)})
        heads.update([("d", lib_nn.ReLU())])
        popped = type(heads.pop("b")).__name__
        seen = (list(heads.keys()), [type(v).__name__ for v in heads.values()], [k for k, _ in heads.items()])
        assert "c" in heads and "b" not in heads and len(heads) == 3
        before = layout(heads)
        heads.clear()
        return popped, seen, before, len(heads), list(heads.parameters())

    assert edit(nn) == edit(torch.nn)


def test_index_errors_name_the_container():
    with pytest.raises(IndexError, match=r"ModuleList: index 3 is out of range for 1 modules"):
        nn.ModuleList([nn.ReLU()])[3]
    with pytest.raises(IndexError, match=r"Sequential: index -2 is out of range"):
        del nn.Sequential(nn.ReLU())[-2]
    with pytest.raises(KeyError):
        nn.ModuleDict()["missing"]


def test_a_sequential_runs_after_edits():
    seq = nn.Sequential(nn.Linear(2, 3))
    seq.insert(0, nn.Linear(4, 2))
    seq.extend([nn.ReLU(), nn.Linear(3, 1)])
    assert seq(tm.randn(5, 4)).shape == (5, 1)
