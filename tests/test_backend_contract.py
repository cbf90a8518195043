"""The backend contract, tinymed.backends.Backend, against all three backend modules.

Every module imports on every machine (CuPy and a GPU are needed only to run, not to import),
so this runs everywhere: each module must define every member of the Protocol, each function
with the Protocol's parameter names, kinds and defaults."""

import importlib
import inspect

import pytest

from tinymed import backends

MEMBERS = {name: value for name, value in vars(backends.Backend).items() if not name.startswith("_")}
ATTRIBUTES = tuple(backends.Backend.__annotations__)


def _parameters(function) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(function).parameters.values())
    return [(p.name, p.kind, p.default) for p in params if p.name != "self"]


def test_the_protocol_lists_every_primitive_and_the_contract_extras():
    assert set(backends.PRIMITIVES) <= set(MEMBERS)
    assert set(MEMBERS) - set(backends.PRIMITIVES) == {"unavailable_reason", "asarray", "to_numpy"}
    assert set(ATTRIBUTES) == {"name", "xp"}


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_module_matches_the_protocol(name):
    module = importlib.import_module(backends.MODULES[name])
    missing = [member for member in (*MEMBERS, *ATTRIBUTES) if not hasattr(module, member)]
    assert not missing, f"{module.__name__} lacks {missing}"
    assert module.name == name
    for member, specified in MEMBERS.items():
        assert _parameters(getattr(module, member)) == _parameters(specified), (
            f"{module.__name__}.{member}{inspect.signature(getattr(module, member))} differs from "
            f"Backend.{member}{inspect.signature(specified)}"
        )


def test_a_module_with_a_wrong_signature_is_caught():
    def gemm(a, b, bias=None, trans_b=False, trans_a=False):
        """The two flags swapped: a call by position would transpose the wrong operand."""

    assert _parameters(gemm) != _parameters(backends.Backend.gemm)
