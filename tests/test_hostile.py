"""Hostile input and faults (issue 12): one test per defect found, each a clear one-line error
or the right result, and no good checkpoint ever replaced by accident; then malformed data
files and checkpoints drawn by hypothesis, which may only load or raise tinymed's own error.

Everything runs on 64 tiny phantoms, LeNet or a DCGAN 4 channels wide, and one epoch."""

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from helpers import fail_at_call, write_tiny_phantoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinymed
from tinymed import optim
from tinymed.cli import main
from tinymed.data import load_dataset
from tinymed.errors import TinymedError, TrainingError
from tinymed.train import run
from tinymed.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from tinymed.train.classifier import TrainConfig, train_classifier

CNN = ["--model", "lenet", "--epochs", "1", "--batch-size", "16"]
GAN = ["--dataset", "pneumoniamnist", "--ngf", "4", "--ndf", "4", "--latent-dim", "8", "--batch-size", "16"]
DEAD_PID = 999_999_999  # above any Linux pid_max: no process has it


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny data file, a LeNet run (``cnn/``) and a DCGAN run (``gan/``) made by the command."""
    root = tmp_path_factory.mktemp("hostile")
    data = str(write_tiny_phantoms(root / "tiny.npz"))
    assert main(["train", "cnn", "--data", data, *CNN, "--out", str(root / "cnn")]) == 0
    assert main(["train", "gan", "--data", data, *GAN, "--epochs", "1", "--out", str(root / "gan")]) == 0
    return root


def one_line_error(capsys, argv, *fragments, status=1):
    """Run the command: it must exit with ``status`` after one line ``tinymed: error: ...``
    holding every fragment."""
    if status == 2:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    else:
        assert main(argv) == status
    err = capsys.readouterr().err
    # What a terminal shows: a progress bar ends by returning to the start of its line and clearing it.
    lines = [line.split("\r")[-1] for line in err.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinymed: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


def edited_checkpoint(source, target, metadata=None, state=None):
    """``source`` rewritten to ``target`` with ``metadata(metadata)`` and ``state(state)``
    applied (each edits in place)."""
    checkpoint = load_checkpoint(source)
    if metadata:
        metadata(checkpoint.metadata)
    if state:
        state(checkpoint.state)
    save_checkpoint(target, checkpoint.state, checkpoint.metadata)
    return str(target)


def write_data(path, train_images=None, train_labels=None, val_images=None, val_labels=None):
    """The tiny phantoms with some splits' arrays replaced."""
    with np.load(write_tiny_phantoms(path)) as f:
        arrays = dict(f)
    changes = {"train_images": train_images, "train_labels": train_labels}
    changes.update(val_images=val_images, val_labels=val_labels)
    arrays.update({k: v for k, v in changes.items() if v is not None})
    np.savez(path, **arrays)
    return str(path)


# ====================================================================== data loss, silent wrong results


def test_1_sample_and_evaluate_never_replace_the_checkpoint_they_read(root, capsys):
    last, best = root / "gan" / "last.npz", root / "cnn" / "best.npz"
    before = {p: p.read_bytes() for p in (last, best)}
    one_line_error(capsys, ["sample", str(last), "--n", "4", "--out", str(last)], "input", "destroy")
    one_line_error(capsys, ["sample", str(last), "--n", "4", "--out", str(best)], "is a tinymed checkpoint")
    one_line_error(
        capsys, ["sample", str(last), "--n", "4", "--out", str(root / "fake.png")], "must end in one of .npz"
    )
    cnn_last = str(root / "cnn" / "last.npz")
    data = ["--data", str(root / "tiny.npz")]
    one_line_error(capsys, ["evaluate", cnn_last, "--split", "val", *data, "--json", cnn_last], "destroy")
    one_line_error(capsys, ["evaluate", cnn_last, *data, "--json", str(root / "tiny.npz")], "input")
    assert all(p.read_bytes() == content for p, content in before.items())


def test_2_a_directory_in_use_is_refused_and_a_stale_lock_taken_over(root, tmp_path, capsys):
    data = str(root / "tiny.npz")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getpid()} {run.socket.gethostname()}\n")
    one_line_error(capsys, ["train", "cnn", "--data", data, *CNN, "--out", str(out)], "in use by another run")
    assert not (out / "last.npz").exists()
    (out / ".lock").write_text(f"{DEAD_PID} {run.socket.gethostname()}\n")
    assert main(["train", "cnn", "--data", data, *CNN, "--out", str(out)]) == 0
    assert "stale lock" in capsys.readouterr().out and not (out / ".lock").exists()


def test_2_a_fresh_run_refuses_a_directory_holding_another_runs_checkpoints(root, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(root / "cnn", out)
    best = (out / "best.npz").read_bytes()
    argv = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--seed", "1", "--out", str(out)]
    one_line_error(capsys, argv, "holds the checkpoints of an earlier run", "--overwrite", "--resume")
    assert (out / "best.npz").read_bytes() == best
    assert main([*argv, "--overwrite"]) == 0
    assert load_checkpoint(out / "best.npz").metadata["train_config"]["seed"] == 1


def test_2_a_diverging_run_never_names_another_runs_checkpoint(root, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(root / "cnn", out)
    fail_at_call(monkeypatch, 2, lambda loss: loss * float("nan"))
    config = TrainConfig(model="lenet", data_file=str(root / "tiny.npz"), epochs=1, batch_size=16, out=str(out))
    with pytest.raises(TrainingError, match="no checkpoint of this run was written yet"):
        train_classifier(config, overwrite=True, progress=False, log=lambda line: None)


def test_3_a_checkpoint_never_chooses_where_data_is_read(root, tmp_path, monkeypatch, capsys):
    evil = tmp_path / "evil"

    def point_elsewhere(metadata):
        metadata["dataset"].update(name="pneumoniamnist", data_dir=str(evil / "tree"), data_file="../../etc/passwd")

    checkpoint = edited_checkpoint(root / "cnn" / "best.npz", tmp_path / "c.npz", metadata=point_elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINYMED_MEDMNIST_URL", f"file://{tmp_path}/nothing-here")
    for argv in (["evaluate", checkpoint], ["explain", checkpoint, "--image", "0"]):
        err = one_line_error(capsys, argv, str(tmp_path / "home" / ".medmnist"))
        assert "passwd" not in err
    assert not evil.exists()
    # Nor does a GAN checkpoint, nor any checkpoint, hold a path at all.
    for path in (root / "cnn" / "best.npz", root / "gan" / "last.npz"):
        metadata = load_checkpoint(path).metadata
        assert not {"data_dir", "data_file", "out"} & (set(metadata["dataset"]) | set(metadata["train_config"]))


def test_3_repair_runs_from_any_directory_with_the_data_named(root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["repair", str(root / "gan" / "last.npz"), "--image", "0", "--steps", "2", "--out", "r.png"]
    assert main([*argv, "--data", str(root / "tiny.npz")]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "case,labels,fragment",
    [
        ("4: float labels", np.full((64, 1), 0.9), "labels must be integer class indices, got float64"),
        ("float labels with NaN", np.full((64, 1), np.nan), "got float64"),
        ("string labels", np.full((64, 1), "normal"), "got <U6"),
    ],
)
def test_4_labels_that_are_not_class_indices_are_refused(tmp_path, capsys, case, labels, fragment):
    data = write_data(tmp_path / "d.npz", train_labels=labels)
    one_line_error(capsys, ["train", "cnn", "--data", data, *CNN, "--out", str(tmp_path / "run")], fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("size", [(64, 64), (28, 20)])
def test_5_a_checkpoint_is_refused_on_images_of_another_size(root, tmp_path, capsys, size):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (8, *size), dtype=np.uint8) for s in ("val", "test")}
    arrays.update({f"{s}_labels": (np.arange(8) % 2)[:, None].astype(np.uint8) for s in ("val", "test")})
    np.savez(tmp_path / "other.npz", **arrays)
    best, other = str(root / "cnn" / "best.npz"), ["--data", str(tmp_path / "other.npz")]
    shape = f"1x{size[0]}x{size[1]} images"
    one_line_error(capsys, ["evaluate", best, *other], "1x28x28 images", shape)
    one_line_error(capsys, ["explain", best, "--image", "0", *other, "--out", str(tmp_path / "e.png")], shape)


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.float16, np.complex64])
def test_6_weights_stored_in_another_dtype_are_refused(root, tmp_path, capsys, dtype):
    def recast(state):
        state["model"]["fc1.weight"] = state["model"]["fc1.weight"].astype(dtype)

    checkpoint = edited_checkpoint(root / "cnn" / "best.npz", tmp_path / "c.npz", state=recast)
    data = ["--data", str(root / "tiny.npz")]
    one_line_error(capsys, ["evaluate", checkpoint, *data], f"fc1.weight is stored as {np.dtype(dtype)}")


@pytest.mark.parametrize(
    "command,argv",
    [("train cnn", [*CNN, "--lr", "100"]), ("train gan", [*GAN, "--epochs", "1", "--lr", "1e6"])],
)
def test_7_a_learning_rate_far_too_large_stops_the_run(root, tmp_path, capsys, command, argv):
    argv = [*command.split(), "--data", str(root / "tiny.npz"), *argv, "--out", str(tmp_path / "run")]
    one_line_error(capsys, argv, "more than 10000 times where", "try a smaller --lr")


# ====================================================================== tracebacks that are one line now


@pytest.mark.parametrize(
    "case",
    ["empty train", "empty val", "val of one class", "images too small", "npy renamed npz", "all-zero images"],
)
def test_bad_data_files_give_one_line(tmp_path, capsys, case):
    images = np.zeros((0, 28, 28), np.uint8)
    small = np.zeros((64, 8, 8), np.uint8) + np.arange(8, dtype=np.uint8)
    path = tmp_path / "d.npz"
    data, fragment = {
        "empty train": (lambda: write_data(path, images, np.zeros((0, 1), np.uint8)), "train split"),
        "empty val": (lambda: write_data(path, val_images=images, val_labels=np.zeros((0, 1), np.uint8)), "no images"),
        "val of one class": (lambda: write_data(path, val_labels=np.zeros((32, 1), np.uint8)), "no 1 (opacity)"),
        "images too small": (
            lambda: write_data(path, small, None, small[:32]),
            "1x8x8 do not fit the lenet model",
        ),
        "npy renamed npz": (
            lambda: np.save(tmp_path / "d.npy", np.zeros(3)) or os.rename(tmp_path / "d.npy", path),
            "zip",
        ),
        "all-zero images": (lambda: write_data(path, np.zeros((64, 28, 28), np.uint8)), "all one value"),
    }[case]
    data()
    one_line_error(capsys, ["train", "cnn", "--data", str(path), *CNN, "--out", str(tmp_path / "run")], fragment)


def test_bad_options_give_one_line(root, tmp_path, monkeypatch, capsys):
    data = ["--data", str(root / "tiny.npz")]
    one_line_error(capsys, ["train", "cnn", *data, "--seed", "-1"], "--seed", status=2)
    for steps in ("-5", "0"):
        one_line_error(capsys, ["repair", "x.npz", "--image", "0", "--steps", steps], "--steps", status=2)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TINYMED_MEDMNIST_URL", "notaurl")
    argv = ["train", "cnn", "--dataset", "pneumoniamnist", "--out", str(tmp_path / "run")]
    one_line_error(capsys, argv, "TINYMED_MEDMNIST_URL='notaurl'")
    monkeypatch.delenv("TINYMED_MEDMNIST_URL")
    for data_dir in (root / "tiny.npz" / "under-a-file", "/proc/tinymed-data"):
        argv = ["train", "cnn", "--dataset", "pneumoniamnist", "--data-dir", str(data_dir)]
        one_line_error(capsys, [*argv, "--out", str(tmp_path / "run")], "cannot create the data directory")


def test_bad_outputs_give_one_line_before_any_work(root, tmp_path, capsys):
    train = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_error(capsys, [*train, "--out", str(a_file)], "is a file")
    one_line_error(capsys, [*train, "--out", str(a_file / "run")], "which is a file")
    one_line_error(capsys, [*train, "--out", "/proc/tinymed-run"], "cannot create the directory")
    checkpoint, data = str(root / "cnn" / "best.npz"), ["--data", str(root / "tiny.npz")]
    one_line_error(capsys, ["evaluate", checkpoint, *data, "--json", str(tmp_path)], "is a directory")
    one_line_error(capsys, ["explain", checkpoint, "--image", "0", *data, "--out", str(tmp_path / "fig.txt")], ".png")


def test_a_full_disk_while_saving_gives_one_line_and_keeps_the_last_checkpoint(root, tmp_path, monkeypatch, capsys):
    saves, original = [], run.save_checkpoint

    def save_on_a_full_disk(path, state, metadata):
        saves.append(path)
        if len(saves) <= 2:  # epoch 1: best.npz and last.npz
            return original(path, state, metadata)

        def no_space(member, array, **kwargs):
            member.write(b"\x93NUMPY")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(np.lib.format, "write_array", no_space)
        return original(path, state, metadata)

    monkeypatch.setattr(run, "save_checkpoint", save_on_a_full_disk)
    argv = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--epochs", "2", "--out", str(tmp_path / "run")]
    one_line_error(capsys, argv, "No space left on device")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "last.npz").metadata["epoch"] == 1
    assert not list((tmp_path / "run").glob(".*.part"))


def _without(*dotted):
    def edit(metadata):
        *parents, key = dotted[0].split(".")
        for name in parents:
            metadata = metadata[name]
        if len(dotted) == 1:
            del metadata[key]
        else:
            metadata[key] = dotted[1]

    return edit


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (_without("dataset"), "has no dataset.name"),
        (_without("epoch"), "has no epoch"),
        (_without("normalization"), "has no normalization.mean"),
        (_without("model.config"), "has no model.config"),
        (_without("dataset", ["pneumoniamnist"]), "has no dataset.name"),
        (_without("epoch", "3"), "epoch must be an integer"),
        (_without("normalization.std", [0.0]), "normalization.std must be a list"),
        (_without("normalization.mean", "abc"), "normalization.mean must be a list"),
        (_without("model.config", {"in_channels": 10**9}), "model.config must be an object of integers from 0 to"),
        (_without("dataset.image_size", [28]), "dataset.image_size must be a list of 2 items"),
    ],
)
def test_malformed_checkpoint_metadata_gives_one_line(root, tmp_path, capsys, edit, fragment):
    checkpoint = edited_checkpoint(root / "cnn" / "best.npz", tmp_path / "c.npz", metadata=edit)
    one_line_error(capsys, ["evaluate", checkpoint, "--data", str(root / "tiny.npz")], fragment)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_give_one_line(root, tmp_path, capsys, value):
    def spoil(state):
        state["model"]["conv1.weight"][0, 0, 0, 0] = value

    checkpoint = edited_checkpoint(root / "cnn" / "best.npz", tmp_path / "c.npz", state=spoil)
    one_line_error(capsys, ["evaluate", checkpoint, "--data", str(root / "tiny.npz")], "NaN or infinite")


def test_an_entry_claiming_a_trillion_floats_gives_one_line(root, tmp_path, capsys):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(root / "cnn" / "best.npz") as source, zipfile.ZipFile(tmp_path / "c.npz", "w") as target:
        for name in source.namelist():
            content = source.read(name)
            target.writestr(name, header.getvalue() + b"\0" * 16 if name == "model/fc1.weight.npy" else content)
    one_line_error(capsys, ["evaluate", str(tmp_path / "c.npz")], "claims shape (1000000000000,)")


def test_weights_that_turn_non_finite_in_a_one_step_epoch_stop_the_run(root, tmp_path, monkeypatch, capsys):
    step = optim.AdamW.step

    def overflowing_step(self):
        step(self)
        self.param_groups[0]["params"][0].numpy()[...] = np.inf

    monkeypatch.setattr(optim.AdamW, "step", overflowing_step)
    argv = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--batch-size", "64", "--out", str(tmp_path / "r")]
    one_line_error(capsys, argv, "weights became NaN or infinite during epoch 1", "no checkpoint of this run")
    assert not (tmp_path / "r" / "last.npz").exists()


def test_resuming_from_a_copy_of_best_gives_one_line(root, tmp_path, capsys):
    shutil.copytree(root / "cnn", tmp_path / "run")
    shutil.copy(tmp_path / "run" / "best.npz", tmp_path / "run" / "last.npz")
    argv = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--out", str(tmp_path / "run"), "--resume"]
    one_line_error(capsys, argv, "lacks optimizer, scheduler", "copy of best.npz")


def test_a_gan_checkpoint_without_its_label_gives_one_line(root, tmp_path, capsys):
    checkpoint = edited_checkpoint(root / "gan" / "last.npz", tmp_path / "g.npz", metadata=_without("dataset.label"))
    classifier = str(root / "cnn" / "best.npz")
    argv = ["evaluate-gan", checkpoint, "--classifier", classifier, "--data", str(root / "tiny.npz")]
    one_line_error(capsys, argv, "has no dataset.label")


# ====================================================================== smaller defects


def test_sample_writes_exactly_the_path_it_reports(root, tmp_path, capsys):
    out = tmp_path / "fakes.npz"  # np.savez would have written fakes.npz.npz
    assert main(["sample", str(root / "gan" / "last.npz"), "--n", "3", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["fakes.npz"]
    with np.load(out) as f:
        assert f["images"].shape == (3, 28, 28)


def test_resume_accepts_the_same_data_by_another_path_and_refuses_other_data(root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(root)
    out = str(tmp_path / "run")
    assert main(["train", "cnn", "--data", "tiny.npz", *CNN, "--out", out]) == 0
    assert main(["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--out", out, "--resume"]) == 0
    other = write_data(tmp_path / "other.npz", val_labels=(np.arange(32) % 2)[::-1, None].astype(np.uint8))
    one_line_error(capsys, ["train", "cnn", "--data", other, *CNN, "--out", out, "--resume"], "data md5")


def test_a_gan_resume_with_fewer_epochs_is_refused(root, tmp_path, capsys):
    out = str(tmp_path / "gan")
    argv = ["train", "gan", "--data", str(root / "tiny.npz"), *GAN, "--out", out]
    assert main([*argv, "--epochs", "2"]) == 0
    one_line_error(capsys, [*argv, "--epochs", "1", "--resume"], "trained 2 epochs already; --epochs 1 is fewer")


def test_part_files_of_killed_writers_are_removed_at_the_next_run(root, tmp_path, monkeypatch, capsys):
    shutil.copytree(root / "cnn", tmp_path / "run")
    dead = tmp_path / "run" / f".last.npz.{DEAD_PID}.abcdefgh.part"
    old_style = tmp_path / "run" / ".best.npz.abcdefgh.part"  # before the pid was in the name
    alive = tmp_path / "run" / f".last.npz.{os.getpid()}.abcdefgh.part"
    for part in (dead, old_style, alive):
        part.write_bytes(b"PK half")
    argv = ["train", "cnn", "--data", str(root / "tiny.npz"), *CNN, "--out", str(tmp_path / "run"), "--resume"]
    assert main(argv) == 0
    assert not dead.exists() and not old_style.exists() and alive.exists()
    # A download's, likewise, when the next download starts.
    data_dir = tmp_path / "medmnist"
    data_dir.mkdir()
    stale = data_dir / f".pneumoniamnist.npz.{DEAD_PID}.abcdefgh.part"
    stale.write_bytes(b"half")
    monkeypatch.setenv("TINYMED_MEDMNIST_URL", f"file://{tmp_path}/nothing-here")
    argv = ["train", "cnn", "--dataset", "pneumoniamnist", "--data-dir", str(data_dir), "--out", str(tmp_path / "r")]
    one_line_error(capsys, argv, "download")
    assert os.listdir(data_dir) == []


def test_outputs_follow_the_umask_and_checkpoints_are_byte_reproducible(root, tmp_path):
    mask = os.umask(0o027)
    try:
        config = dict(model="lenet", data_file=str(root / "tiny.npz"), epochs=1, batch_size=16)
        for out in ("a", "b"):
            train_classifier(TrainConfig(**config, out=str(tmp_path / out)), progress=False, log=lambda line: None)
    finally:
        os.umask(mask)
    for name in ("best.npz", "last.npz", "metrics.json", "timings.json"):
        assert (tmp_path / "a" / name).stat().st_mode & 0o777 == 0o640, name
    for name in ("best.npz", "last.npz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "timings.json").read_text())["seconds"][0] > 0


# ====================================================================== the one place errors leave


def test_an_unexpected_error_is_one_line_naming_the_bug_and_debug_shows_the_traceback(root, monkeypatch, capsys):
    def broken(*args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("tinymed.cli.classifier.load_classifier", broken)
    argv = ["evaluate", str(root / "cnn" / "best.npz")]
    one_line_error(capsys, argv, "unexpected ZeroDivisionError: boom", "bug in tinymed", "report it to", "--debug")
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *argv])
    with pytest.raises(ZeroDivisionError):
        main([*argv, "--debug"])
    monkeypatch.setenv("TINYMED_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(argv)


def test_usage_errors_are_one_line_with_status_2(capsys):
    one_line_error(capsys, ["train", "cnn", "--epochs", "0"], "--epochs", "tinymed train cnn --help", status=2)
    one_line_error(capsys, ["train", "cnn", "--resume", "--overwrite"], "not allowed with", status=2)
    one_line_error(capsys, ["nosuchcommand"], "invalid choice", status=2)


def test_the_installed_command_prints_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tinymed", "evaluate", str(tmp_path / "none.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "header",
    [
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,",  # NumPy's tokenizer: TokenError
        b"{['descr']: '<f8'}",  # unhashable key: TypeError
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}",  # a key too many: ValueError
    ],
)
def test_a_npy_header_that_is_no_dict_literal_gives_one_line(tmp_path, capsys, header):
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(24)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        archive.writestr("train_images.npy", npy)
        archive.writestr("train_labels.npy", npy)
    data = ["--data", str(tmp_path / "bad.npz")]
    one_line_error(capsys, ["train", "cnn", *data, *CNN, "--out", str(tmp_path / "run")], "is not a .npy array")


# ====================================================================== malformed files, drawn

DTYPES = [np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64, np.dtype("<U3")]
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
arrays = st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, shapes))
damage = st.one_of(st.none(), st.floats(0, 1), st.integers(0, 10**6))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def damaged(path, how):
    """``how``: None leaves the file whole; a fraction truncates it there; an integer flips the
    byte at that position (modulo the size)."""
    content = bytearray(path.read_bytes())
    if isinstance(how, float):
        content = content[: int(len(content) * how)]
    elif isinstance(how, int) and content:
        content[how % len(content)] ^= 0xFF
    path.write_bytes(bytes(content))


@SETTINGS
@given(
    entries=st.dictionaries(st.sampled_from(["train_images", "train_labels", "val_images", "other"]), arrays),
    how=damage,
)
def test_a_malformed_data_file_loads_or_raises_a_tinymed_error(tmp_path, entries, how):
    path = tmp_path / "drawn.npz"
    np.savez(path, **entries)
    damaged(path, how)
    try:
        dataset = load_dataset("phantoms", "train", data_file=path)
    except TinymedError:
        return
    assert dataset.images.dtype == np.uint8 and dataset.images.ndim == 4 and dataset.labels.dtype == np.int64


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# Not "kind": save_checkpoint refuses to write a file without a valid one.
FIELDS = ["model", "model.name", "model.config", "epoch", "dataset", "dataset.name", "dataset.labels"]
FIELDS += ["dataset.image_size", "dataset.md5", "normalization", "normalization.mean", "normalization.std"]


@pytest.fixture(scope="module")
def small_checkpoint(root):
    return root / "cnn" / "best.npz"


@SETTINGS
@given(
    field=st.sampled_from(FIELDS),
    value=st.one_of(st.just("delete"), JSON),
    weight=st.one_of(st.none(), st.sampled_from(["conv1.weight", "fc3.bias", "nothing"])),
    array=arrays,
    how=damage,
)
def test_a_malformed_checkpoint_loads_or_raises_a_tinymed_error(
    small_checkpoint, tmp_path, field, value, weight, array, how
):
    path = tmp_path / "drawn.npz"

    def edit_metadata(metadata):
        *parents, key = field.split(".")
        for name in parents:
            metadata = metadata[name]
        if value == "delete":
            del metadata[key]
        else:
            metadata[key] = value

    def edit_state(state):
        if weight is not None:
            state["model"][weight] = array

    edited_checkpoint(small_checkpoint, path, metadata=edit_metadata, state=edit_state)
    damaged(path, how)
    try:
        model, metadata = load_model(path, kind="classifier")
    except TinymedError:
        return
    assert isinstance(model, tinymed.nn.Module) and metadata["kind"] == "classifier"
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())
