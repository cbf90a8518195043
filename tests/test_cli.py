"""The ``tinymed`` command: train, evaluate and explain, and one-line errors for user mistakes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import write_tiny_phantoms

from tinymed import backends
from tinymed.cli import BROKEN_PIPE_STATUS, COMMANDS, main
from tinymed.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet trained for one epoch on tiny phantoms through the command line."""
    root = tmp_path_factory.mktemp("cli")
    data = write_tiny_phantoms(root / "tiny.npz")
    code = main(
        [
            "train",
            "cnn",
            "--dataset",
            "phantoms",
            "--data",
            str(data),
            "--model",
            "lenet",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(root / "run"),
        ]
    )
    assert code == 0
    return root


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command.name.split()[0] in out


def test_train_prints_each_epoch_and_writes_its_outputs(trained, capsys):
    assert (trained / "run" / "best.npz").is_file() and (trained / "run" / "roc.png").is_file()
    # --resume on a finished run trains nothing more and reports again.
    assert (
        main(
            [
                "train",
                "cnn",
                "--dataset",
                "phantoms",
                "--data",
                str(trained / "tiny.npz"),
                "--model",
                "lenet",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--out",
                str(trained / "run"),
                "--resume",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train loss" not in out and "best epoch 1: val AUC" in out


def test_evaluate_prints_and_writes_the_metrics(trained, capsys):
    report = trained / "eval.json"
    data = str(trained / "tiny.npz")
    assert (
        main(["evaluate", str(trained / "run" / "best.npz"), "--split", "val", "--data", data, "--json", str(report)])
        == 0
    )
    out = capsys.readouterr().out
    for label in ("ACC", "AUC", "sensitivity", "specificity", "confusion matrix"):
        assert label in out
    result = json.loads(report.read_text())
    assert set(result) == {
        "acc",
        "auc",
        "balanced_acc",
        "sensitivity",
        "specificity",
        "acc_at_prior",
        "confusion_matrix",
        "n",
    }
    assert result["balanced_acc"] == pytest.approx((result["sensitivity"] + result["specificity"]) / 2)
    assert result["n"] == 32 and np.sum(result["confusion_matrix"]) == 32
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert result["auc"] == pytest.approx(metrics["val"]["auc"])


def test_evaluate_shift_prints_a_row_per_perturbation_and_writes_them(trained, capsys):
    report = trained / "shift.json"
    data = str(trained / "tiny.npz")
    checkpoint = str(trained / "run" / "best.npz")
    assert main(["evaluate", checkpoint, "--split", "val", "--data", data, "--shift", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "shift-proxy" in out and "gamma 0.6" in out and "noise 0.06" in out
    shift = json.loads(report.read_text())["shift"]
    assert len(shift["conditions"]) == 10 and shift["prior_negative_fraction"] == 0.375
    assert shift["mean"]["auc"] == pytest.approx(np.mean([row["auc"] for row in shift["conditions"]]))
    # The run wrote the same figures for the checkpoint it kept.
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert metrics["shift"]["mean"] == pytest.approx(shift["mean"])


def test_train_cnn_recipe_options_reach_the_config(tmp_path, capsys):
    data = str(write_tiny_phantoms(tmp_path / "tiny.npz"))
    out = tmp_path / "run"
    args = ["train", "cnn", "--dataset", "phantoms", "--data", data, "--epochs", "1", "--batch-size", "16"]
    args += ["--augment", "strong", "--class-weight", "balanced", "--ema-decay", "0.9", "--selection", "last"]
    assert main([*args, "--channels", "4,8,8", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    options = metrics["train_config"]
    assert (options["augment"], options["class_weight"], options["ema_decay"]) == ("strong", "balanced", 0.9)
    assert options["selection"] == "last" and options["model_config"] == {"channels": [4, 8, 8]}
    assert main([*args, "--model", "lenet", "--channels", "4,8,8", "--out", str(tmp_path / "lenet")]) == 1
    assert "--channels sets medcnn's widths; --model lenet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--channels", "4,8", "--out", str(tmp_path / "bad")])
    assert "expected three positive integers" in capsys.readouterr().err


def test_evaluate_defaults_to_the_test_split_and_asks_for_the_file_it_was_trained_on(trained, capsys):
    # The checkpoint names its data file by MD5 only; the phantoms made in memory are other data.
    assert main(["evaluate", str(trained / "run" / "last.npz")]) == 1
    err = capsys.readouterr().err
    assert "was trained on a phantoms file with MD5" in err and "--data" in err
    assert main(["evaluate", str(trained / "run" / "last.npz"), "--data", str(trained / "tiny.npz")]) == 0
    assert "test split, 32 images" in capsys.readouterr().out


def test_explain_draws_the_overlay(trained, capsys):
    out = trained / "explain.png"
    assert (
        main(
            [
                "explain",
                str(trained / "run" / "best.npz"),
                "--image",
                "3",
                "--split",
                "val",
                "--data",
                str(trained / "tiny.npz"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "val image 3: true" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"


def _user_error_cases(root):
    best = str(root / "run" / "best.npz")
    data = ["--data", str(root / "tiny.npz")]
    (root / "garbage.npz").write_bytes(b"this is not a checkpoint")
    save_checkpoint(root / "gan.npz", {}, {"kind": "gan", "model": {"name": "dcgan", "config": {}}})
    cases = {
        "unknown data set": (["train", "cnn", "--dataset", "nosuchmnist"], "unknown data set 'nosuchmnist'"),
        "missing data file": (["train", "cnn", "--data", str(root / "none.npz")], "not found"),
        "missing checkpoint": (["evaluate", str(root / "none.npz")], "checkpoint not found"),
        "corrupted checkpoint": (["evaluate", str(root / "garbage.npz")], "not a readable checkpoint"),
        "checkpoint of another kind": (["explain", str(root / "gan.npz"), "--image", "0"], "gan checkpoint"),
        "image out of range": (["explain", best, "--image", "99", "--split", "val", *data], "out of range"),
        "unknown layer": (["explain", best, "--image", "0", "--layer", "conv9", *data], "no layer 'conv9'"),
        "other data set's shape": (
            ["evaluate", best, "--dataset", "bloodmnist", "--data", str(root / "tiny.npz")],
            "channel",
        ),
        "resuming another model": (
            [
                "train",
                "cnn",
                "--data",
                str(root / "tiny.npz"),
                "--model",
                "medcnn",
                "--out",
                str(root / "run"),
                "--resume",
            ],
            "holds a 'lenet' model, expected 'medcnn'",
        ),
        "resuming nothing": (
            ["train", "cnn", "--data", str(root / "tiny.npz"), "--out", str(root / "empty"), "--resume"],
            "checkpoint not found",
        ),
    }
    return cases


def _cupy_runs_here():
    try:
        backends.get("cupy")
    except backends.BackendUnavailableError:
        return False
    return True


@pytest.mark.parametrize(
    "case",
    [
        "unknown data set",
        "missing data file",
        "missing checkpoint",
        "corrupted checkpoint",
        "checkpoint of another kind",
        "image out of range",
        "unknown layer",
        "other data set's shape",
        "resuming another model",
        "resuming nothing",
        "backend missing",
    ],
)
def test_user_errors_are_one_line_without_traceback(trained, capsys, case):
    if case == "backend missing":
        if _cupy_runs_here():
            pytest.skip("the cupy backend runs on this machine")
        argv, message = ["train", "cnn", "--backend", "cupy"], "backend 'cupy' cannot run here"
    else:
        argv, message = _user_error_cases(trained)[case]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinymed: error: ") and err.count("\n") == 1, err
    assert message in err


def test_python_dash_m_exits_non_zero_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "tinymed", "train", "cnn", "--dataset", "nosuchmnist"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("tinymed: error: unknown data set") and "Traceback" not in result.stderr


# argparse itself ignores a failed write of --help, and exits 0.
@pytest.mark.parametrize("argv, status", [(["course", "list"], BROKEN_PIPE_STATUS), (["--help"], 0)])
def test_a_closed_standard_output_ends_quietly(argv, status):
    """``tinymed course list | head -1``: the reader is gone before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tinymed", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert result.returncode == status and result.stderr == ""
