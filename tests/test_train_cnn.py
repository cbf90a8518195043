"""The CNN trainer on tiny phantom runs: its outputs, exact resume, and a diverging loss."""

import csv
import json

import numpy as np
import pytest
from helpers import assert_same, fail_at_call, write_tiny_phantoms

import tinymed as tm
from tinymed.train.checkpoint import load_checkpoint
from tinymed.train.classifier import TrainConfig, class_weights, load_classifier, train_classifier
from tinymed.train.classifier_evaluation import classification_loss
from tinymed.train.run import TrainingError

TINY = dict(
    dataset="phantoms", model="medcnn", model_config={"channels": [4, 8, 8], "num_heads": 2}, epochs=2, batch_size=16
)
STEPS_PER_EPOCH = 4  # 64 training images in batches of 16


@pytest.fixture
def tiny_data(tmp_path):
    return str(write_tiny_phantoms(tmp_path / "tiny.npz"))


def train(tiny_data, out, resume=False, **changes):
    config = TrainConfig(**{**TINY, **changes}, data_file=tiny_data, out=str(out))
    return train_classifier(config, resume=resume, progress=False, log=lambda line: None)


def test_a_run_writes_checkpoints_metrics_history_and_plots(tmp_path, tiny_data):
    summary = train(tiny_data, tmp_path / "run")
    run = tmp_path / "run"
    for name in (
        "best.npz",
        "last.npz",
        "metrics.json",
        "history.csv",
        "curves.png",
        "roc.png",
        "confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "val_acc", "val_auc", "lr", "seconds"}
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    best_row = rows[summary["best_epoch"] - 1]
    assert float(best_row["val_auc"]) == pytest.approx(summary["val"]["auc"])
    assert summary["val"]["n"] == 32 and np.sum(summary["val"]["confusion_matrix"]) == 32

    metadata = load_checkpoint(run / "best.npz").metadata
    assert metadata["kind"] == "classifier" and metadata["epoch"] == summary["best_epoch"]
    assert metadata["dataset"]["name"] == "phantoms" and metadata["dataset"]["labels"] == ["normal", "opacity"]
    assert set(metadata["normalization"]) == {"mean", "std"}
    model, _ = load_classifier(run / "best.npz")  # rebuilt from the metadata alone
    assert model.config["channels"] == [4, 8, 8]


def test_resume_after_an_interruption_equals_the_uninterrupted_run(tmp_path, tiny_data, monkeypatch):
    train(tiny_data, tmp_path / "straight")

    # Interrupt the second run in the middle of epoch 2 (epoch 1: 4 steps + 1 val batch).
    def interrupt(loss):
        raise KeyboardInterrupt

    fail_at_call(monkeypatch, STEPS_PER_EPOCH + 1 + 2, interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path / "resumed")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "resumed" / "last.npz").metadata["epoch"] == 1
    train(tiny_data, tmp_path / "resumed", resume=True)

    straight = load_checkpoint(tmp_path / "straight" / "last.npz")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.npz")
    # Model, optimizer, schedule and generator: every bit the same.
    assert_same(straight.state, resumed.state)

    def drop_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert drop_time(straight.metadata["history"]) == drop_time(resumed.metadata["history"])


def test_resume_refuses_changed_options(tmp_path, tiny_data):
    train(tiny_data, tmp_path / "run", epochs=1)
    with pytest.raises(TrainingError, match="lr 0.01 -> 0.1"):
        train(tiny_data, tmp_path / "run", resume=True, epochs=1, lr=0.1)


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch):
    fail_at_call(monkeypatch, STEPS_PER_EPOCH + 1 + 3, lambda loss: loss * float("nan"))
    with pytest.raises(TrainingError, match=r"nan at epoch 2, step 3.*last good checkpoint is .*last.npz"):
        train(tiny_data, tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "last.npz")
    assert last.metadata["epoch"] == 1
    assert all(np.isfinite(v).all() for v in last.state["model"].values())


@pytest.mark.parametrize(
    "flag,image_shape,make_labels",
    [
        ("bloodmnist", (28, 28, 3), lambda rng, n: (np.arange(n) % 8).astype(np.uint8)[:, None]),  # RGB, 8 classes
        ("chestmnist", (28, 28), lambda rng, n: rng.integers(0, 2, (n, 14), dtype=np.uint8)),  # 14 labels
    ],
)
def test_multi_class_and_multi_label_flags_train_and_evaluate(tmp_path, flag, image_shape, make_labels):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 32), ("val", 32)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = make_labels(rng, n)
    np.savez(tmp_path / "data.npz", **arrays)
    config = TrainConfig(
        dataset=flag,
        data_file=str(tmp_path / "data.npz"),
        model="lenet",
        epochs=1,
        batch_size=16,
        out=str(tmp_path / "run"),
    )
    summary = train_classifier(config, progress=False, log=lambda line: None)
    assert 0 <= summary["val"]["auc"] <= 1 and summary["val"]["n"] == 32
    model, _ = load_classifier(tmp_path / "run" / "best.npz")
    channels = image_shape[2] if len(image_shape) == 3 else 1
    assert (model.config["in_channels"], model.config["num_classes"]) == (channels, 8 if flag == "bloodmnist" else 14)
    assert ("confusion_matrix" in summary["val"]) == (flag == "bloodmnist")


def test_balanced_class_weights_are_pytorchs_weighted_cross_entropy(torch):
    labels = np.array([0, 1, 1, 1, 2, 2])
    weights = class_weights(labels, 3)
    np.testing.assert_allclose(weights, [6 / 3, 6 / 9, 6 / 6])  # n / (K n_k)
    logits = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    ours = classification_loss(tm.tensor(logits, requires_grad=True), labels, False, tm.tensor(weights))
    x = torch.tensor(logits, requires_grad=True)
    theirs = torch.nn.functional.cross_entropy(x, torch.tensor(labels), weight=torch.tensor(weights))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    with pytest.raises(ValueError, match="no sample of class 1"):
        class_weights(np.array([0, 0, 2]), 3)


def test_ema_keeps_the_averaged_weights_and_resumes_exactly(tmp_path, tiny_data, monkeypatch):
    options = dict(ema_decay=0.9, selection="last", augment="strong", class_weight="balanced")
    summary = train(tiny_data, tmp_path / "straight", **options)
    assert summary["best_epoch"] == 2 and summary["shift"]["mean"]["auc"] > 0
    last = load_checkpoint(tmp_path / "straight" / "last.npz")
    best = load_checkpoint(tmp_path / "straight" / "best.npz")
    averaged = {k.removeprefix("module."): v for k, v in last.state["averaged"].items() if k.startswith("module.")}
    assert_same(best.state["model"], averaged)
    assert not np.array_equal(best.state["model"]["fc.weight"], last.state["model"]["fc.weight"])

    def interrupt(loss):
        raise KeyboardInterrupt

    fail_at_call(monkeypatch, STEPS_PER_EPOCH + 1 + 2, interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path / "resumed", **options)
    monkeypatch.undo()
    train(tiny_data, tmp_path / "resumed", resume=True, **options)
    assert_same(last.state, load_checkpoint(tmp_path / "resumed" / "last.npz").state)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"augment": "heavy"}, "augment must be one of none, light, strong"),
        ({"class_weight": "inverse"}, "class_weight must be one of None, balanced"),
        ({"selection": "first"}, "selection must be one of best, last"),
        ({"ema_decay": 1.0}, r"ema_decay \(--ema-decay\) must be in \[0, 1\)"),
        ({"ema_decay": -0.5}, r"ema_decay \(--ema-decay\) must be in \[0, 1\)"),
    ],
)
def test_recipe_options_are_checked(change, message):
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**change)


def test_the_recipe_defaults_by_data_set_and_an_option_overrides_one_piece():
    """Radiographs get the recipe the study chose; the phantoms keep theirs; an option given
    changes only its own piece."""
    radiographs = TrainConfig(dataset="pneumoniamnist")
    assert (radiographs.epochs, radiographs.augment, radiographs.ema_decay, radiographs.selection) == (
        30,
        "strong",
        0.99,
        "last",
    )
    phantoms = TrainConfig(dataset="phantoms")
    assert (phantoms.epochs, phantoms.augment, phantoms.ema_decay, phantoms.selection) == (10, "light", 0.0, "best")
    no_average = TrainConfig(dataset="pneumoniamnist", ema_decay=0.0, epochs=3)
    assert (no_average.epochs, no_average.augment, no_average.ema_decay) == (3, "strong", 0.0)


@pytest.mark.parametrize(
    "selection, marked, summary", [("best", True, "best epoch"), ("last", False, "kept the last epoch 2")]
)
def test_only_a_best_selection_speaks_of_a_best_epoch(tmp_path, tiny_data, selection, marked, summary):
    lines = []
    config = TrainConfig(**TINY, selection=selection, data_file=tiny_data, out=str(tmp_path / "run"))
    train_classifier(config, progress=False, log=lines.append)
    assert any("*best" in line for line in lines) == marked
    assert any(line.startswith(summary) for line in lines)
