"""tinymed.save / tinymed.load: what PyTorch users save round-trips exactly (values, dtypes,
structure), an optimizer resumes identically, and malformed files are refused clearly."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

# Equal structure, types, dtypes and bits: the checkpoint tests' comparison.
from helpers import assert_same

import tinymed as tm
import tinymed.nn as nn
import tinymed.optim as optim
from tinymed import backends
from tinymed.errors import SerializationError
from tinymed.serialization import load, save

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]


def nested():
    """One of everything save accepts."""
    rng = np.random.default_rng(0)
    return {
        "arrays": {np.dtype(d).name: (rng.standard_normal((2, 3)) * 10).astype(d) for d in DTYPES},
        "tensors": [tm.tensor(rng.standard_normal(4)), tm.tensor([1, 2, 3]), tm.zeros(2, 2, dtype=tm.float64)],
        "grad_leaf": tm.tensor([0.5, -1.5], requires_grad=True),
        "scalars": (np.float32(1.25), np.int64(7), np.bool_(True)),
        "numbers": [0.1, -3, True, float("inf"), None, "text", ""],
        "int_keys": {0: {"step": 3}, 5: "five"},
        "__reserved": [],
        "empty": {"list": [], "tuple": (), "dict": {}},
        "zero_d": np.array(2.5),
    }


def test_nested_structures_round_trip_through_a_path_and_a_file_object(tmp_path):
    obj = nested()
    path = tmp_path / "everything.pt"
    save(obj, path)
    assert load(path)["grad_leaf"].requires_grad and not load(path)["tensors"][0].requires_grad
    assert [p.name for p in tmp_path.iterdir()] == ["everything.pt"]  # the name as given, nothing left over
    assert_same(load(path), obj)
    buffer = io.BytesIO()
    save(obj, buffer)
    buffer.seek(0)
    assert_same(load(buffer), obj)


def test_bare_values_round_trip(tmp_path):
    for obj in (tm.tensor([[1.0, 2.0]], dtype=tm.float64), np.arange(3, dtype=np.uint8), 3, "name", None, [1, (2,)]):
        save(obj, tmp_path / "x")
        assert_same(load(tmp_path / "x"), obj)


def test_file_is_plain_npz_without_pickle(tmp_path):
    save({"w": tm.ones(2), "lr": 0.1}, tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["layout", "metadata", "obj/w"]
        assert json.loads(str(npz["layout"])) == {"w": {"__tensor__": "obj/w"}, "lr": 0.1}
        assert json.loads(str(npz["metadata"]))["format"] == "tinymed.save"


def test_model_and_optimizer_resume_identically(tmp_path):
    def make():
        tm.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        return model, optim.Adam(model.parameters(), lr=0.05, amsgrad=True)

    def train(model, optimizer, steps, seed):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            x = tm.tensor(rng.standard_normal((5, 3)), dtype=tm.float32)
            optimizer.zero_grad()
            (model(x) ** 2).mean().backward()
            optimizer.step()

    model, optimizer = make()
    train(model, optimizer, 3, seed=1)
    save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    train(model, optimizer, 2, seed=2)

    resumed, resumed_optimizer = make()
    checkpoint = load(tmp_path / "ckpt.pt")
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    assert checkpoint["epoch"] == 3 and checkpoint["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    train(resumed, resumed_optimizer, 2, seed=2)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[key], value)


def test_map_location_moves_tensors(tmp_path):
    if "numba" not in backends.available():
        pytest.skip("the numba backend is not available")
    save({"w": tm.tensor([1.0, 2.0], requires_grad=True)}, tmp_path / "f")
    loaded = load(tmp_path / "f", map_location="numba")["w"]
    assert loaded.backend == "numba" and loaded.is_leaf and loaded.requires_grad
    assert load(tmp_path / "f", map_location="cpu")["w"].backend == "numpy"


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="save: obj/s is a set"):
        save({"s": {1, 2}}, tmp_path / "f")
    with pytest.raises(TypeError, match="save: obj/0 is an object array"):
        save([np.array([None, 1])], tmp_path / "f")
    with pytest.raises(TypeError, match="key of type tuple"):
        save({(1, 2): 3}, tmp_path / "f")
    with pytest.raises(ValueError, match="two arrays would be stored under 'obj/a/b'"):
        save({"a/b": np.zeros(1), "a": {"b": np.zeros(1)}}, tmp_path / "f")
    assert not (tmp_path / "f").exists()


def write_entries(path, **entries):
    np.savez(path, **entries)
    return str(path) + ".npz"


def test_load_refuses_malformed_files(tmp_path):
    good = {"metadata": np.array(json.dumps({"format": "tinymed.save", "format_version": 1}))}
    with pytest.raises(FileNotFoundError, match="load: file not found: .*missing.pt"):
        load(tmp_path / "missing.pt")
    with pytest.raises(IsADirectoryError, match="load: .* is a directory; give the checkpoint file in it"):
        load(tmp_path)
    (tmp_path / "text.pt").write_text("not a zip at all")
    with pytest.raises(ValueError, match="text.pt is not a readable .npz file"):
        load(tmp_path / "text.pt")
    with pytest.raises(ValueError, match="not a tinymed.save file"):
        load(write_entries(tmp_path / "plain", weights=np.zeros(3)))
    other = np.array(json.dumps({"format": "tinymed-checkpoint", "format_version": 1}))
    with pytest.raises(ValueError, match="has format 'tinymed-checkpoint', not 'tinymed.save'"):
        load(write_entries(tmp_path / "other", metadata=other, layout=np.array("null")))
    future = np.array(json.dumps({"format": "tinymed.save", "format_version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        load(write_entries(tmp_path / "future", metadata=future, layout=np.array("null")))
    dangling = np.array(json.dumps({"w": {"__tensor__": "obj/w"}}))
    with pytest.raises(ValueError, match="is damaged: its layout does not match its arrays"):
        load(write_entries(tmp_path / "dangling", layout=dangling, **good))
    with pytest.raises(ValueError, match="not a readable .npz file"):
        load(write_entries(tmp_path / "pickled", layout=np.array([{"a": 1}], dtype=object), **good))

    save({"w": np.arange(1000.0)}, tmp_path / "whole")
    data = (tmp_path / "whole").read_bytes()
    (tmp_path / "truncated").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated is not a readable .npz file"):
        load(tmp_path / "truncated")
    with zipfile.ZipFile(tmp_path / "whole") as archive:
        offset = archive.getinfo("obj/w.npy").header_offset + 200
    (tmp_path / "flipped").write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :])
    with pytest.raises(ValueError, match="flipped is not a readable .npz file"):
        load(tmp_path / "flipped")


def test_the_same_object_is_the_same_bytes_in_a_file_of_the_umasks_mode(tmp_path):
    obj = nested()
    save(obj, tmp_path / "a")
    buffer = io.BytesIO()
    save(obj, buffer)
    assert (tmp_path / "a").read_bytes() == buffer.getvalue()
    mask = os.umask(0o027)
    try:
        save(obj, tmp_path / "sub" / "b")
    finally:
        os.umask(mask)
    assert (tmp_path / "sub" / "b").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "sub" / "b").read_bytes() == buffer.getvalue()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["b"], "no .part file is left behind"


def test_an_entry_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    save({"w": np.zeros(4)}, tmp_path / "f")
    # obj/w.npy rewritten, with a right CRC, to claim 10^12 float64 values (8 TB) in its header.
    lie = io.BytesIO()
    np.lib.format.write_array_header_1_0(lie, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(tmp_path / "f") as source, zipfile.ZipFile(tmp_path / "huge", "w") as target:
        for name in source.namelist():
            target.writestr(name, lie.getvalue() + bytes(32) if name == "obj/w.npy" else source.read(name))
    with pytest.raises(SerializationError, match="huge is not a readable .npz file.*claims shape"):
        load(tmp_path / "huge")
