"""What the test modules share: the tolerance table, the GPU backends to test and how to run
one, the comparison with PyTorch, array makers, and the tiny data file the trainer tests train on.

Test modules import from here (``from helpers import ...``; pytest puts ``tests/`` on the path),
never from one another. Hypothesis strategies live in :mod:`strategies`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinymed as tm
from tinymed.course import find_chapter
from tinymed.course.check import grade_file
from tinymed.course.graders import exercises_of
from tinymed.data import make_phantoms, medmnist
from tinymed.train import classifier, classifier_evaluation

# float32 keeps about 7 digits; 1e-4 leaves room for the different summation orders of
# tinymed's and PyTorch's kernels over the small sums of the tests. float64 results agree to
# a few ulps of the sums' terms.
TOLERANCE = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def tolerance(dtype: Any) -> dict[str, float]:
    """``rtol`` and ``atol`` for results of ``dtype`` (a NumPy dtype, type or name)."""
    return TOLERANCE[np.dtype(dtype)]


def assert_close(actual: Any, expected: Any, what: str = "", dtype: Any = None) -> None:
    """Same shape and dtype, and equal within the tolerance of ``dtype`` (by default the
    expected array's own float dtype; integers and booleans exactly), NaN where NaN. Tensors
    are compared as their arrays."""
    actual, expected = (np.asarray(a.numpy() if isinstance(a, tm.Tensor) else a) for a in (actual, expected))
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    if dtype is None and expected.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    np.testing.assert_allclose(
        actual, expected, equal_nan=True, err_msg=what, **tolerance(expected.dtype if dtype is None else dtype)
    )


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Windows along one axis: ``(size + 2 padding - dilation (kernel - 1) - 1) // stride + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# --------------------------------------------------------------------------- the GPU backends


def gpu_backend_params() -> list:
    """Every backend but the reference, as pytest parameters: one that cannot run here is
    skipped, saying why."""
    params = []
    for name in tm.backends.NAMES:
        if name == "numpy":
            continue
        try:
            tm.backends.get(name)
        except tm.backends.BackendUnavailableError as error:
            params.append(pytest.param(name, marks=pytest.mark.skip(reason=str(error))))
        else:
            params.append(name)
    return params


def run_on(backend: Any, primitive: str, *args: Any) -> Any:
    """``backend.primitive(*args)`` with every NumPy array moved onto the backend; the result
    (or each of a tuple of results) back as a NumPy array."""
    moved = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    result = getattr(backend, primitive)(*moved)
    if isinstance(result, tuple):
        return tuple(backend.to_numpy(r) for r in result)
    return backend.to_numpy(result)


# --------------------------------------------------------------------------- PyTorch, the oracle


class Fixed:
    """An argument both frameworks receive without requires_grad (targets, masks, buffers)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _gradient(tensor: Any) -> np.ndarray:
    """A tinymed or torch tensor's gradient as an array, zeros where none arrived."""
    grad = tensor.grad
    if grad is None:
        return np.zeros(tuple(tensor.shape), np.dtype(str(tensor.dtype).removeprefix("torch.")))
    return grad.numpy() if hasattr(grad, "numpy") else np.asarray(grad)


def matches_torch(
    torch: Any, ours: Callable, theirs: Callable, *args: Any, upstream_seed: int = 0, tol: dict | None = None
) -> tuple[Any, Any]:
    """Run ``ours`` (tinymed) and ``theirs`` (PyTorch) on the same arrays and compare them.

    NumPy float arrays become tensors that require grad, ``Fixed`` arrays and integer or
    boolean arrays tensors that do not, anything else is passed as is. Checks the outputs'
    shape, dtype and values, then backpropagates the same random upstream gradient and
    checks the gradient of every argument that requires grad (dtype and values). When both
    callables are Modules, their parameters' gradients and, afterwards, their state dicts
    (BatchNorm's running statistics) are compared by name too. ``tol`` overrides the
    tolerance of the output's dtype. Returns both outputs."""

    def build(make: Callable, value: Any) -> Any:
        if isinstance(value, Fixed):
            return make(value.array)
        if isinstance(value, np.ndarray):
            return make(value, requires_grad=value.dtype.kind == "f")
        return value

    ours_args = [build(tm.tensor, a) for a in args]
    theirs_args = [build(torch.tensor, a) for a in args]
    out, expected = ours(*ours_args), theirs(*theirs_args)
    if tol is None:
        tol = tolerance(out.dtype) if out.dtype.kind == "f" else {}
    assert out.shape == tuple(expected.shape), f"forward: shape {out.shape}, torch {tuple(expected.shape)}"
    assert out.dtype == np.dtype(str(expected.dtype).removeprefix("torch.")), f"forward: dtype {out.dtype}"
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), **tol, err_msg="forward")
    if not expected.requires_grad:
        return out, expected
    upstream = np.random.default_rng(upstream_seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(upstream)
    expected.backward(torch.tensor(upstream))
    pairs = [
        (f"argument {i}", m, t) for i, (m, t) in enumerate(zip(ours_args, theirs_args)) if isinstance(t, torch.Tensor)
    ]
    if isinstance(ours, tm.nn.Module):
        theirs_parameters = dict(theirs.named_parameters())
        pairs += [(name, p, theirs_parameters[name]) for name, p in ours.named_parameters()]
    for name, mine, reference in pairs:
        if reference.requires_grad:
            got, want = _gradient(mine), _gradient(reference)
            assert got.dtype == want.dtype, f"gradient of {name}: dtype {got.dtype}, torch {want.dtype}"
            np.testing.assert_allclose(got, want, **tol, err_msg=f"gradient of {name}")
    if isinstance(ours, tm.nn.Module):
        theirs_state = theirs.state_dict()
        for name, value in ours.state_dict().items():
            np.testing.assert_allclose(value, theirs_state[name].numpy(), **tol, err_msg=f"state {name} after forward")
    return out, expected


# --------------------------------------------------------------------------- array makers


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """Standard-normal values of ``shape`` in ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)


def values(seed: int, shape: tuple[int, ...], domain: str = "real") -> np.ndarray:
    """float64 values of ``shape``: ``real`` N(0, 1); ``positive`` in [0.5, 2];
    ``nonzero`` of either sign with |x| in [0.5, 2] (away from the poles of 1/x and log)."""
    rng = np.random.default_rng(seed)
    if domain == "real":
        return rng.standard_normal(shape)
    magnitude = rng.uniform(0.5, 2.0, shape)
    return magnitude if domain == "positive" else magnitude * rng.choice([-1.0, 1.0], shape)


def assert_same(a: Any, b: Any) -> None:
    """Equal structure, types and bits (NaN equal to NaN)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.array_equal(a, b, equal_nan=True)
    elif isinstance(a, tm.Tensor):
        assert_same(a.numpy(), b.numpy())
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def write_tiny_phantoms(path: Any, n_train: int = 64, n_eval: int = 32) -> Any:
    """A phantoms file in the MedMNIST layout, small enough for a training run in a test."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        phantoms = make_phantoms(n, rng)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = phantoms.images, phantoms.labels
    np.savez(path, **arrays)
    return path


# ---- data files, checkpoints and trainer faults shared by the data, checkpoint and CLI tests


def write_medmnist_file(path, splits=("train", "val", "test"), n=6, seed=0):
    """A small file in the official layout; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    arrays, content = {}, {}
    for split in splits:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 2, (n, 1), dtype=np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
        content[split] = (images, labels)
    np.savez_compressed(path, **arrays)
    return content


def publish(served, monkeypatch, md5=None):
    """Puts a pneumoniamnist.npz on the server and makes the table expect md5 (default: its own)."""
    content = write_medmnist_file(served / "pneumoniamnist.npz")
    actual = hashlib.md5((served / "pneumoniamnist.npz").read_bytes()).hexdigest()
    flag = dataclasses.replace(medmnist.FLAGS["pneumoniamnist"], md5=md5 or actual)
    monkeypatch.setitem(medmnist.FLAGS, "pneumoniamnist", flag)
    return content


def complete_metadata(kind="classifier", model=None, **changes):
    """Metadata with every field the schema of ``kind`` asks for (28x28 grayscale phantoms),
    ``model`` the ``{"name", "config"}`` spec (LeNet's by default), ``changes`` on top."""
    metadata = {
        "kind": kind,
        "model": model or {"name": "lenet", "config": {}},
        "epoch": 1,
        "dataset": {"name": "phantoms", "labels": ["normal", "opacity"], "image_size": [28, 28], "md5": None},
        "normalization": {"mean": [0.5], "std": [0.5]},
    }
    if kind == "gan":
        metadata["dataset"].update(label="all", class_counts=[24, 24])
    return {**metadata, **changes}


def write_untrained_classifier(path):
    """An untrained LeNet saved as a classifier checkpoint: features to score a GAN with."""
    from tinymed.models import model_spec
    from tinymed.models.lenet import LeNet
    from tinymed.train.checkpoint import save_checkpoint

    model = LeNet()
    return save_checkpoint(path, {"model": model.state_dict()}, complete_metadata(model=model_spec(model)))


def fail_at_call(monkeypatch, n, make_failure):
    """Make the trainer's n-th loss computation (1-based, validation batches included) fail:
    ``make_failure(loss)`` is returned or raised instead of the loss."""
    calls = []
    original = classifier_evaluation.classification_loss

    def loss(*args):
        calls.append(1)
        value = original(*args)
        return make_failure(value) if len(calls) == n else value

    # Training calls it from the trainer's module, validation from the evaluation's.
    monkeypatch.setattr(classifier, "classification_loss", loss)
    monkeypatch.setattr(classifier_evaluation, "classification_loss", loss)


# ---- the course


def graded_with(tmp_path: Path, number: int, exercise_id: str, old: str, new: str):
    """The result of exercise ``exercise_id`` on chapter ``number`` with ``old`` replaced by ``new``."""
    chapter = find_chapter(number)
    text = chapter.path().read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {chapter.file_name}"
    path = tmp_path / chapter.file_name
    path.write_text(text.replace(old, new))
    return next(r for r in grade_file(path, exercises_of(chapter)) if r.exercise.id == exercise_id)
