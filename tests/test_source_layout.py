"""The source tree's shape, as issue 9 set it: short files and functions, one-way imports.

Read by walking every module of tinymed/ with ``ast`` (kernels/ is another tree): no file over
600 lines; no function over 60 lines unless its docstring says why ("long because ...");
no import cycle among tinymed's modules (imports inside functions count, imports for type
checkers only do not); only the device and the backends package itself import
``tinymed.backends``; no private name imported from another module.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "tinymed").rglob("*.py"))
MAX_FILE_LINES = 60 * 10
MAX_FUNCTION_LINES = 60
LONG_REASON = "long because"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in SOURCES}


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs, wherever it is (blocks for type checkers only skipped)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking_block(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _imported_modules(path: Path) -> set[str]:
    """The tinymed modules ``path`` imports by name (``from tinymed import nn`` imports
    ``tinymed.nn``; ``from tinymed.tensor import Tensor`` imports ``tinymed.tensor``). The
    packages Python runs on the way to a submodule are not counted, as in every cycle check:
    ``tinymed/__init__.py`` imports nearly everything, for the user."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names = set()
    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        submodules = {f"{base}.{alias.name}" for alias in node.names} & set(MODULES)
        names.update(submodules)
        if len(submodules) < len(node.names):  # some names are defined in ``base`` itself
            names.add(base)
    return {name for name in names if name in MODULES}


def test_the_walk_finds_the_modules_and_their_imports():
    assert {"tinymed.tensor", "tinymed.autograd", "tinymed.ops.conv", "tinymed.device"} <= set(MODULES)
    assert "tinymed.autograd" in _imported_modules(MODULES["tinymed.tensor"])
    assert "tinymed.nn" in _imported_modules(MODULES["tinymed.models.lenet"])


@pytest.mark.parametrize("path", SOURCES, ids=_ids(SOURCES))
def test_no_source_file_is_over_600_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"


@pytest.mark.parametrize("path", SOURCES, ids=_ids(SOURCES))
def test_no_function_is_over_60_lines_without_a_reason(path):
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            reason = LONG_REASON in " ".join((ast.get_docstring(node) or "").lower().split())
            if lines > MAX_FUNCTION_LINES and not reason:
                long.append(f"{node.name} ({lines} lines)")
    assert not long, f"{path.relative_to(ROOT)}: {', '.join(long)}; split, or say why in the docstring"


def test_tinymed_modules_import_each_other_without_a_cycle():
    graph = {name: _imported_modules(path) - {name} for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = path[path.index(name) :] + [name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_only_the_device_reaches_the_backend_modules():
    allowed = {"tinymed", "tinymed.device"}
    importers = [
        name
        for name, path in MODULES.items()
        if not name.startswith("tinymed.backends")
        and name not in allowed
        and any(m == "tinymed.backends" or m.startswith("tinymed.backends.") for m in _imported_modules(path))
    ]
    assert not importers, f"{importers} import tinymed.backends; reach a backend through tinymed.device(...).backend"


def test_no_private_name_is_imported_from_another_module():
    crossings = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
        for path in SOURCES
        for node in _imports(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module != "__future__"
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not crossings, "\n".join(crossings)
