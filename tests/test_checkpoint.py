"""Checkpoints: exact round trips, atomic writes, and clear errors for bad files."""

import json
import os

import numpy as np
import pytest
from helpers import assert_same, complete_metadata

import tinymed as tm
from tinymed import optim
from tinymed.models import build_model
from tinymed.train import checkpoint
from tinymed.train.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint

META = {"kind": "classifier", "model": {"name": "lenet", "config": {}}}


def test_round_trip_keeps_every_type_exactly(tmp_path):
    state = {
        "model": {
            "conv.weight": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        },
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones(2, np.float64)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}],
        },
        "odd keys": {"__array__": 1.5, "a/b": "slash", 2.5: None},
        "rng": tm.get_rng_state(),  # 128-bit integers
        "scalars": [np.float32(1.25), np.int64(-4), float("nan"), float("inf"), True, None, "text"],
        "tensor": tm.tensor([[1.0, 2.0]]),
    }
    path = save_checkpoint(tmp_path / "c.npz", state, META)
    loaded = load_checkpoint(path)
    assert_same(loaded.state, state)
    assert loaded.metadata["kind"] == "classifier"
    assert loaded.metadata["tinymed_version"] == tm.__version__
    assert loaded.metadata["format"] == checkpoint.FORMAT


def test_file_is_plain_npz_without_pickles(tmp_path):
    save_checkpoint(tmp_path / "c.npz", {"model": {"w": np.zeros(3)}}, META)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert "model/w" in npz.files
        assert json.loads(str(npz["metadata"]))["model"]["name"] == "lenet"


def test_objects_that_need_pickling_are_refused(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        save_checkpoint(tmp_path / "c.npz", {"x": np.array([{}, None], dtype=object)}, META)
    with pytest.raises(TypeError, match="set"):
        save_checkpoint(tmp_path / "c.npz", {"x": {1, 2}}, META)
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "c.npz", {}, {"kind": "other"})


def test_optimizer_and_scheduler_resume_exactly(tmp_path):
    tm.manual_seed(0)
    model = build_model("lenet")
    params = list(model.parameters())
    opt = optim.AdamW(params, lr=1e-2)
    sched = optim.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    for _ in range(2):
        for p in params:
            p.grad = tm.full(p.shape, 0.5, dtype=p.dtype)
        opt.step()
        sched.step()
    save_checkpoint(
        tmp_path / "c.npz",
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
        META,
    )

    loaded = load_checkpoint(tmp_path / "c.npz").state
    tm.manual_seed(1)
    model2 = build_model("lenet")
    model2.load_state_dict(loaded["model"])
    opt2 = optim.AdamW(list(model2.parameters()), lr=1e-2)
    sched2 = optim.OneCycleLR(opt2, max_lr=1e-2, total_steps=10)
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    for o, s, ps in ((opt, sched, params), (opt2, sched2, list(model2.parameters()))):
        for p in ps:
            p.grad = tm.full(p.shape, -0.25, dtype=p.dtype)
        o.step()
        s.step()
    for a, b in zip(params, model2.parameters()):
        assert np.array_equal(a.numpy(), b.numpy())
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", {"model": {"w": np.zeros(3)}}, META)
    before = path.read_bytes()

    def broken_write_array(member, array, **kwargs):
        member.write(b"\x93NUMPY half an array")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np.lib.format, "write_array", broken_write_array)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": np.ones(3)}}, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_damaged_file_gives_a_clear_error(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.npz", {"model": {"w": np.arange(1000.0)}}, META)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a zip file at all")
    else:  # one byte inside the stored array: the zip CRC catches it
        data[200] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.npz"):
        load_checkpoint(path)


def test_wrong_files_are_refused_with_their_reason(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a tinymed checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    save_checkpoint(tmp_path / "gan.npz", {}, {"kind": "gan", "model": {"name": "dcgan", "config": {}}})
    with pytest.raises(CheckpointError, match="gan checkpoint, not a classifier"):
        load_checkpoint(tmp_path / "gan.npz", kind="classifier")
    save_checkpoint(tmp_path / "lenet.npz", {}, complete_metadata())
    with pytest.raises(CheckpointError, match="'lenet' model, expected 'medcnn'"):
        load_checkpoint(tmp_path / "lenet.npz", model="medcnn")
    assert load_checkpoint(tmp_path / "lenet.npz", kind="classifier", model=("medcnn", "lenet")).state == {}


def test_load_model_rebuilds_from_the_metadata_alone(tmp_path):
    tm.manual_seed(0)
    config = {"channels": [4, 8, 8], "num_heads": 2}
    model = build_model("medcnn", config).eval()
    meta = complete_metadata(model={"name": "medcnn", "config": config})
    save_checkpoint(tmp_path / "c.npz", {"model": model.state_dict(), "first": model.block1.state_dict()}, meta)
    rebuilt, metadata = load_model(tmp_path / "c.npz", kind="classifier")
    assert not rebuilt.training and metadata["model"]["config"] == config
    x = tm.randn(2, 1, 28, 28)
    assert np.array_equal(rebuilt(x).numpy(), model(x).numpy())
    # A piece of state can fill one submodule (a GAN's generator and discriminator do so).
    part, _ = load_model(tmp_path / "c.npz", kind="classifier", weights={"first": "block1"})
    assert np.array_equal(part.block1[0].weight.numpy(), model.block1[0].weight.numpy())

    meta["model"] = {"name": "medcnn", "config": {"channels": [4, 8, 16], "num_heads": 2}}
    save_checkpoint(tmp_path / "wrong.npz", {"model": model.state_dict()}, meta)
    with pytest.raises(CheckpointError, match="weights do not fit a medcnn model"):
        load_model(tmp_path / "wrong.npz", kind="classifier")
