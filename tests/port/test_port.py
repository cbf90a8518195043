"""The porting suite: PyTorch scripts that run on tinymed with only their imports changed.

Each script in ``scripts/`` is written once, for PyTorch (see README.md here). The test:

1. ports it: :func:`port` rewrites each import of ``torch`` (and of ``medmnist``) to import
   tinymed's module of the same role under the same name (``import torch`` becomes
   ``import tinymed as torch``), and checks that no other line changed;
2. loads the original and the port as two modules;
3. builds the model(s) in both and copies PyTorch's initial weights into tinymed's through
   ``load_state_dict`` (the initialisations draw different random numbers);
4. runs both, each in its own folder, and compares what they return: numbers to a float32
   training tolerance, everything else exactly.

The data in the scripts come from NumPy with fixed seeds and are never shuffled, so the two
runs see the same numbers. When the ``medmnist`` package is not installed, the PyTorch run
of the MedMNIST script uses tinymed's medmnist API for the data (its DataLoader, model,
loss and optimiser stay PyTorch's).
"""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import write_medmnist_file

SCRIPTS = Path(__file__).parent / "scripts"

# The whole port, as (pattern, replacement) on import lines.
TORCH_TO_TINYMED = [
    (r"^import torch$", "import tinymed as torch"),
    (r"^import torch\.(\S+) as (\w+)$", r"import tinymed.\1 as \2"),
    (r"^from torch(\.\S+)? import ", r"from tinymed\1 import "),
]
MEDMNIST_TO_TINYMED = [
    (r"^import medmnist$", "import tinymed.data as medmnist"),
    (r"^from medmnist import ", "from tinymed.data import "),
]

# float32 training over a few steps: summation orders differ, and the differences grow a little
# with each step.
TOLERANCE = {"rtol": 2e-4, "atol": 2e-5}


def port(source: str, rules: list[tuple[str, str]]) -> str:
    """``source`` with ``rules`` applied to its import lines; every other line is left as is,
    and the result says so by failing if anything else changed."""
    lines = []
    for line in source.splitlines(keepends=True):
        for pattern, replacement in rules:
            line = re.sub(pattern, replacement, line.rstrip("\n")) + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    ported = "".join(lines)
    changed = [new for old, new in zip(source.splitlines(), ported.splitlines()) if old != new]
    assert all(re.match(r"(import|from) \S+", line) for line in changed), changed
    return ported


def load(name: str, source: str, path: Path) -> types.ModuleType:
    """``source`` run as a module named ``name`` (its classes and functions are then ready)."""
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def copy_weights(theirs: Any, ours: Any) -> None:
    """PyTorch's initial parameters and buffers into tinymed's model(s), by name."""
    pairs = zip(theirs, ours) if isinstance(theirs, tuple) else [(theirs, ours)]
    for model_t, model_m in pairs:
        state = {key: value.detach().numpy() for key, value in model_t.state_dict().items()}
        assert tuple(model_m.load_state_dict(state)) == ([], []), "the two models have different layouts"


def assert_same_results(got: Any, expected: Any, where: str = "results") -> None:
    """Same structure; floats within TOLERANCE; everything else equal."""
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{where}: keys {list(got)}, PyTorch {list(expected)}"
        for key in expected:
            assert_same_results(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), f"{where}: {len(got)} entries, PyTorch {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected)):
            assert_same_results(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        np.testing.assert_allclose(got, expected, **TOLERANCE, err_msg=where)
    else:
        assert type(got) is type(expected) and got == expected, f"{where}: {got!r}, PyTorch {expected!r}"


def torch_rules() -> list[tuple[str, str]]:
    """Nothing to change for the PyTorch run, but medmnist's data where the package is absent."""
    return [] if importlib.util.find_spec("medmnist") else MEDMNIST_TO_TINYMED


def workdir(tmp_path: Path, name: str, script: str) -> Path:
    """An empty folder for one run; the MedMNIST script finds its (synthetic) data there."""
    folder = tmp_path / name
    folder.mkdir()
    if script == "medmnist_getting_started.py":
        write_medmnist_file(folder / "pneumoniamnist.npz", n=24)
    return folder


SCRIPT_NAMES = sorted(path.name for path in SCRIPTS.glob("*.py"))


def test_there_are_six_scripts_at_least():
    assert len(SCRIPT_NAMES) >= 6, SCRIPT_NAMES


@pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's notes on its own deprecated paths
@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_script_runs_on_tinymed_with_only_its_imports_changed(torch, script, tmp_path):
    path = SCRIPTS / script
    source = path.read_text()
    on_torch = load(f"on_torch_{path.stem}", port(source, torch_rules()), path)
    on_tinymed = load(f"on_tinymed_{path.stem}", port(source, TORCH_TO_TINYMED + MEDMNIST_TO_TINYMED), path)
    assert on_tinymed.torch.__name__ == "tinymed"

    models_t, models_m = on_torch.build(), on_tinymed.build()
    copy_weights(models_t, models_m)
    expected = on_torch.run(models_t, workdir(tmp_path, "torch", script))
    got = on_tinymed.run(models_m, workdir(tmp_path, "tinymed", script))
    assert_same_results(got, expected)


def test_the_port_changes_import_lines_only():
    source = "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\nx = torch.zeros(1)\n"
    assert port(source, TORCH_TO_TINYMED) == (
        "import tinymed as torch\nimport tinymed.nn as nn\nfrom tinymed.utils.data import DataLoader\nx = torch.zeros(1)\n"
    )
    with pytest.raises(AssertionError):
        port("x = 1\n", [(r"^x = 1$", "x = 2")])
