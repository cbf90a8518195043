"""docs/architecture.md cannot rot: every path it names exists, every name in its tables is
defined where the table says, and the formula tables list every backend primitive, every CUDA C
and Numba kernel, and every autograd Function of tinymed/ops.

How the tables are read: a code span in a column header that names a file or folder is that
column's base. Under a file, a cell's span is a name defined in it (``conv2d_forward``, or
dotted, ``_Conv2d.backward``); under a folder, ``file:name`` (``conv.cu:conv2d_forward``). In a
column with no base a span is a repository path (``tinymed/train/run.py``) or a public call
(``F.conv2d``, ``nn.Conv2d``, ``tm.Tensor.to``). Any other span in a table fails the test, so
no name can sit in a table unchecked.
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

from tinymed import backends

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
# The first word of a public call, and the module it stands for.
PUBLIC = {"tm": "tinymed", "F": "tinymed.functional", "nn": "tinymed.nn", "optim": "tinymed.optim"}
# A span that starts like this is a path in the repository.
REPO_PATH = re.compile(
    r"^(tinymed|kernels|tests|benchmarks|tutorials|docs|\.ci)/[\w./-]*$|^(setup\.py|pyproject\.toml)$"
)
# A kernel or device function: the qualifier, anything but the opening of its parameters (except
# a __launch_bounds__(...) annotation), then its name.
CUDA_FUNCTION = re.compile(
    r"__(global|device)__(?:[^;{(]|__launch_bounds__\([^)]*\))*?\b(?!__launch_bounds__)(\w+)\s*\("
)
CUDA_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)


def _spans(text: str) -> list[str]:
    """The inline code spans of Markdown ``text`` (fenced code blocks are not spans)."""
    return re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL))


def _cells(line: str) -> list[str]:
    """The cells of a table row; a ``|`` inside a code span does not split."""
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return [*cells, current.strip()]


def _tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table: its header row, then its body rows (the ``---`` row dropped)."""
    tables, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append(_cells(line))
        elif rows:
            tables.append([rows[0], *rows[2:]])
            rows = []
    return tables


def _python_defines(path: Path, dotted: str) -> bool:
    """Whether ``path`` defines ``dotted``: a top-level function, class or assignment, then
    (after each dot) a function or class defined inside the previous one."""
    body = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        found = None
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part:
                found = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == part for t in targets):
                    found = node
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


def _cuda_functions(path: Path) -> dict[str, str]:
    """The functions of a CUDA C file, each ``"global"`` (a kernel) or ``"device"``; comments,
    which talk about kernels too, are removed first."""
    code = CUDA_COMMENT.sub("", path.read_text())
    return {match.group(2): match.group(1) for match in CUDA_FUNCTION.finditer(code)}


def _defines(path: Path, name: str) -> bool:
    if path.suffix == ".py":
        return _python_defines(path, name)
    return name in _cuda_functions(path)


def _public(name: str) -> bool:
    """Whether a public call such as ``F.conv2d`` or ``tm.Tensor.to`` exists."""
    first, _, rest = name.partition(".")
    if first not in PUBLIC or not rest:
        return False
    target = importlib.import_module(PUBLIC[first])
    for attribute in rest.split("."):
        if not hasattr(target, attribute):
            return False
        target = getattr(target, attribute)
    return True


def _check(span: str, base: Path | None) -> tuple[Path, str] | None:
    """Resolve one table span; returns the ``(file, name)`` it names, or None for a path or a
    public call. Fails the test when the span names nothing that exists."""
    if base is not None and base.is_file():
        path, name = base, span
    elif base is not None:
        file, sep, name = span.partition(":")
        assert sep and name, f"{span!r}: under {base.relative_to(ROOT)}/ a cell names file:name"
        path = base / file
    elif REPO_PATH.match(span.partition(":")[0]):
        file, _, name = span.partition(":")
        path = ROOT / file
    else:
        assert _public(span), f"{span!r} is neither a repository path nor a public call that exists"
        return None
    assert path.exists(), f"{span!r}: {path.relative_to(ROOT)} does not exist"
    if not name:
        return None
    assert _defines(path, name), f"{span!r}: {path.relative_to(ROOT)} defines no {name!r}"
    return path, name


def _named() -> dict[Path, set[str]]:
    """Check every span of every table; return, per file, the names the tables give in it."""
    named: dict[Path, set[str]] = {}
    for header, *rows in _tables(DOC.read_text()):
        bases = []
        for cell in header:
            paths = [ROOT / span for span in _spans(cell) if REPO_PATH.match(span)]
            assert all(path.exists() for path in paths), f"header {cell!r} names a path that does not exist"
            bases.append(paths[0] if paths else None)
        for row in rows:
            assert len(row) == len(header), f"row {row} has {len(row)} cells, its header {len(header)}"
            for cell, base in zip(row, bases):
                for span in _spans(cell):
                    found = _check(span, base)
                    if found:
                        named.setdefault(found[0], set()).add(found[1].split(".")[0])
    return named


@pytest.fixture(scope="module")
def named() -> dict[Path, set[str]]:
    return _named()


def test_every_path_the_page_names_exists():
    missing = [span for span in _spans(DOC.read_text()) if REPO_PATH.match(span) and not (ROOT / span).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_name_in_the_tables_exists(named):
    # The fixture has checked every span; this also says that it found the formula tables.
    assert named.get(ROOT / "tinymed/backends/numpy_ref.py"), "no table with a NumPy reference column"


def test_a_name_that_does_not_exist_fails_the_check():
    with pytest.raises(AssertionError, match="defines no"):
        _check("conv.cu:conv2d_forwards", ROOT / "kernels" / "cuda")
    with pytest.raises(AssertionError, match="defines no"):
        _check("_Conv2d.sideways", ROOT / "tinymed" / "ops" / "conv.py")
    with pytest.raises(AssertionError, match="public call"):
        _check("F.conv3d", None)


def test_every_primitive_is_in_the_numpy_column(named):
    missing = set(backends.PRIMITIVES) - named.get(ROOT / "tinymed/backends/numpy_ref.py", set())
    assert not missing, f"primitives missing from the formula table: {sorted(missing)}"


def test_every_cuda_kernel_is_in_a_table(named):
    kernels = {
        (path, name)
        for path in sorted((ROOT / "kernels" / "cuda").glob("*.cu"))
        for name, kind in _cuda_functions(path).items()
        if kind == "global"
    }
    assert kernels, "found no __global__ kernel in kernels/cuda"
    missing = sorted(f"{path.name}:{name}" for path, name in kernels if name not in named.get(path, set()))
    assert not missing, f"CUDA kernels missing from the formula table: {missing}"


def _is_kernel_decorator(node: ast.expr) -> bool:
    """``@cuda.jit`` on its own (``@cuda.jit(device=True)`` marks a helper, not a kernel)."""
    return isinstance(node, ast.Attribute) and ast.unparse(node) == "cuda.jit"


def test_every_numba_kernel_is_in_a_table(named):
    kernels = set()
    for path in sorted((ROOT / "kernels" / "numba").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            # A kernel, or a builder that returns one (a kernel defined inside it).
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(inner, ast.FunctionDef) and any(map(_is_kernel_decorator, inner.decorator_list))
                for inner in ast.walk(node)
            ):
                kernels.add((path, node.name))
    assert kernels, "found no kernel in kernels/numba"
    missing = sorted(f"{path.name}:{name}" for path, name in kernels if name not in named.get(path, set()))
    assert not missing, f"Numba kernels missing from the formula table: {missing}"


def test_every_autograd_function_of_the_ops_is_in_a_table(named):
    functions = {
        (path, node.name)
        for path in sorted((ROOT / "tinymed" / "ops").glob("*.py"))
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ClassDef) and any(ast.unparse(base) == "Function" for base in node.bases)
    }
    assert functions, "found no Function in tinymed/ops"
    missing = sorted(f"{path.name}:{name}" for path, name in functions if name not in named.get(path, set()))
    assert not missing, f"autograd Functions missing from the formula tables: {missing}"


@pytest.mark.parametrize("path", ["README.md", "tinymed/__init__.py"])
def test_the_readme_and_the_package_point_to_the_page(path):
    assert "docs/architecture.md" in (ROOT / path).read_text(), f"{path} does not point to docs/architecture.md"
