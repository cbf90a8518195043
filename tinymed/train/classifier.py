"""Training and evaluating a CNN classifier (``tinymed train cnn``, ``tinymed evaluate``).

The recipe, chosen to beat MedMNIST's reference (Adam 1e-3, batch 128, 100 epochs, no
augmentation, normalised with mean 0.5 / std 0.5, best epoch by val AUC):

* **augmentation** that mirrors how real radiographs vary: rotation up to 10 degrees, shifts
  up to 2 pixels, brightness and contrast up to 10 % (:func:`~tinymed.data.chest_xray_augmentation`);
  no horizontal flip, which would move the heart to the wrong side;
* **normalisation** by the training images' own mean and standard deviation, stored in the
  checkpoint so evaluation normalises exactly as training did;
* **AdamW** (Adam with decoupled weight decay, Loshchilov and Hutter 2019) under a
  **one-cycle** schedule (Smith 2018): the learning rate warms up for 30 % of the steps to
  ``lr``, then anneals to nearly zero, which trains in few epochs;
* the **best epoch by validation AUC** (MedMNIST's selection rule) is kept as ``best.npz``.

A run writes to its output directory: ``best.npz`` and ``last.npz`` (checkpoints, see
:mod:`tinymed.train.checkpoint`), ``history.csv`` (one row per epoch), ``metrics.json``,
``timings.json``, and the plots ``curves.png`` (loss and AUC per epoch), ``roc.png`` and
``confusion_matrix.png`` (the best model on the validation split).

Before any work the run checks what it was given: the output directory (see
:class:`~tinymed.train.run.RunDirectory`), non-empty splits, training images that are not
all one value (their standard deviation normalises them), every class in the validation
split (its AUC chooses the best epoch), and images the model can take (one is passed
through it).

Reproducibility: the run is a function of its seed. The weights are initialised and dropout
drawn from tinymed's generator (seeded at the start, its state saved in every checkpoint),
and the DataLoader derives each epoch's order and augmentation from ``(seed, epoch)``. So
``resume`` (model, optimizer, schedule and generator restored from ``last.npz``, the loader
set to the next epoch) ends with exactly the weights of an uninterrupted run.

Data-parallel (``mpiexec -n N tinymed train cnn``, see :mod:`tinymed.distributed`): every
rank loads the same global batch of ``batch_size`` images (the loader is seeded alike, so
augmentation included) and trains on its N-th share; the ranks' gradients are averaged
before each step, so the update is the one a single process makes on the whole batch,
with the same batch size and learning rate. Every rank evaluates the whole validation set
and checks, at the end of each epoch, that all hold rank 0's parameters; rank 0 alone
writes and logs. The result equals one process's up to float round-off when the model has
neither BatchNorm nor dropout (LeNet). MedCNN has both: BatchNorm normalises each rank's
share with its own statistics (as PyTorch's DDP does without SyncBatchNorm), and the ranks'
generators, which stay equal so that any rank can resume from rank 0's saved state, draw
the same dropout masks for their shares.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

import tinymed
import tinymed.functional as F
from tinymed import distributed as dist
from tinymed import metrics, nn, optim, plots
from tinymed.data import Compose, DataLoader, ImageDataset, Normalize, chest_xray_augmentation, load_dataset
from tinymed.errors import DatasetError
from tinymed.models import build_model, model_spec
from tinymed.train.checkpoint import Checkpoint, check_metadata, load_model
from tinymed.train.divergence import DEFAULT_FACTOR, DivergenceGuard
from tinymed.train.run import (
    RunDirectory,
    check_batches_split,
    check_images_fit,
    check_not_empty,
    check_options,
    data_parallel,
    main_process_log,
    progress_bar,
    reduce_gradients,
    require_backend,
    verify_in_sync,
)

__all__ = [
    "TrainConfig",
    "DEFAULT_EPOCHS",
    "train_classifier",
    "predict",
    "classification_metrics",
    "load_classifier",
    "input_normalization",
    "evaluation_loader",
    "check_every_class",
]

# Epochs by data set, where the default differs. PneumoniaMNIST (4708 training images)
# reaches its best validation AUC within 15 epochs. The phantoms' faint opacities take the
# network a few epochs to find at all (the loss sits near log 2 first), so their 2000 images
# get 10 passes: with 8, some seeds had not found them yet.
DEFAULT_EPOCHS = {"phantoms": 10}
FALLBACK_EPOCHS = 15


@dataclass
class TrainConfig:
    """Everything that decides a training run (``tinymed train cnn``'s options).

    epochs None means ``DEFAULT_EPOCHS.get(dataset, FALLBACK_EPOCHS)``; out None means
    ``runs/cnn-<dataset>``. model_config is passed to the model's constructor on top of the
    data set's ``in_channels`` and ``num_classes`` (e.g. ``{"channels": [8, 16, 32]}``).
    divergence_factor: how far above its start the loss may climb before the run is stopped
    (see :mod:`tinymed.train.divergence`).
    """

    dataset: str = "phantoms"
    data_dir: str | None = None
    data_file: str | None = None
    model: str = "medcnn"
    model_config: dict[str, Any] | None = None
    backend: str = "numpy"
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 1e-2
    augment: bool = True
    seed: int = 0
    out: str | None = None
    divergence_factor: float = DEFAULT_FACTOR

    def __post_init__(self) -> None:
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.dataset, FALLBACK_EPOCHS)
        if self.out is None:
            self.out = os.path.join("runs", f"cnn-{self.dataset}")
        check_options("train cnn", self, ("epochs", "batch_size"))


# Options a resumed run may change without changing its result (where it runs, and when it
# would stop), besides where it reads and writes; not the epochs, which set the length of the
# one-cycle schedule.
RESUMABLE = ("backend", "divergence_factor")

# The pieces of state in last.npz, besides the random generator's.
PIECES = ("model", "optimizer", "scheduler")

# What resuming reads from last.npz's metadata besides what every run's holds.
RESUME_FIELDS = {
    "best.epoch": ("an integer", lambda v: type(v) is int),
    "best.val_auc": ("a number", lambda v: type(v) in (int, float)),
}


def input_normalization(normalization: dict[str, list[float]]) -> Normalize:
    """The transform that turns images in [0, 1] into the network's input, from the
    ``normalization`` entry a checkpoint stores."""
    return Normalize(normalization["mean"], normalization["std"])


def evaluation_loader(dataset: ImageDataset, normalization: dict[str, list[float]]) -> DataLoader:
    """Every image of ``dataset`` in order, normalised, without augmentation."""
    return DataLoader(dataset, batch_size=512, transform=input_normalization(normalization))


def _normalization(train: ImageDataset) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation of the training images, in [0, 1] units."""
    pixels = train.images.astype(np.float64) / 255.0
    std = pixels.std(axis=(0, 2, 3))
    if not std.all():
        channel = int(np.argmin(std))
        raise DatasetError(
            f"the training images of {train.info.name} are all one value in channel {channel} "
            f"(every pixel {train.images[0, channel, 0, 0]}); there is nothing to learn from"
        )
    return {"mean": pixels.mean(axis=(0, 2, 3)).tolist(), "std": std.tolist()}


def check_every_class(dataset: ImageDataset, split: str) -> None:
    """Refuse a split whose AUC is undefined: one lacking a class (for a multi-label task, a
    label always 0 or always 1)."""
    info = dataset.info
    if info.multilabel:
        counts = dataset.labels.sum(axis=0)
        lacking = [
            f"{name} always {0 if n == 0 else 1}" for name, n in zip(info.labels, counts) if n in (0, len(dataset))
        ]
    else:
        counts = np.bincount(dataset.labels, minlength=len(info.labels))
        lacking = [f"no {k} ({name})" for k, (name, n) in enumerate(zip(info.labels, counts)) if n == 0]
    if lacking:
        raise DatasetError(
            f"the {split} split of {info.name} has {', '.join(lacking[:3])}{' ...' if len(lacking) > 3 else ''}; "
            f"its AUC needs every class"
        )


def _loss(logits: tinymed.Tensor, labels: np.ndarray, multilabel: bool) -> tinymed.Tensor:
    """Cross-entropy of the class logits; binary cross-entropy per label for multi-label tasks."""
    target = tinymed.tensor(labels.astype(np.float32) if multilabel else labels).to(logits.backend)
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)


@dataclass
class Predictions:
    """A model's outputs on a data set: labels as stored, scores the class probabilities
    ``(N, K)`` (softmax; sigmoid per label for multi-label), and the mean loss."""

    labels: np.ndarray
    scores: np.ndarray
    loss: float


def predict(model: nn.Module, loader: DataLoader, backend: str = "numpy", multilabel: bool = False) -> Predictions:
    """Run the model in eval mode over every batch of ``loader`` (no gradients)."""
    model.eval()
    scores, labels, total = [], [], 0.0
    with tinymed.no_grad():
        for x, y in loader:
            logits = model(tinymed.from_numpy(x).to(backend))
            total += _loss(logits, y, multilabel).item() * len(y)
            probabilities = F.sigmoid(logits) if multilabel else F.softmax(logits, dim=1)
            scores.append(probabilities.numpy())
            labels.append(y)
    labels_all = np.concatenate(labels)
    return Predictions(labels_all, np.concatenate(scores).astype(np.float64), total / len(labels_all))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, multilabel: bool = False) -> dict[str, Any]:
    """MedMNIST's ACC and AUC, plus for a binary task sensitivity, specificity and the
    confusion matrix ``[[TN, FP], [FN, TP]]`` (for multi-class, the K x K matrix)."""
    result: dict[str, Any] = {
        "acc": metrics.accuracy(labels, scores),
        "auc": metrics.roc_auc_score(labels, scores),
        "n": int(len(labels)),
    }
    if multilabel:
        return result
    predicted = metrics.predictions(scores)
    if scores.shape[1] == 2:
        result["sensitivity"] = metrics.sensitivity(labels, predicted)
        result["specificity"] = metrics.specificity(labels, predicted)
    result["confusion_matrix"] = metrics.confusion_matrix(labels, predicted, num_classes=scores.shape[1]).tolist()
    return result


def load_classifier(path: str | os.PathLike, backend: str = "numpy") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier a checkpoint holds from its metadata alone, with its weights,
    in eval mode on ``backend``. Returns ``(model, metadata)``."""
    return load_model(path, kind="classifier", backend=backend)


class _Run:
    """One training run: the objects it is made of, and what it has recorded so far."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None], resume: bool, overwrite: bool) -> None:
        self.config, self.log = config, log
        require_backend(config.backend)
        self.directory = RunDirectory(
            config, "classifier", config.model, RESUMABLE, PIECES, True, log, resume=resume, overwrite=overwrite
        )
        self.out = self.directory.path
        self.guard = DivergenceGuard(self.directory, "loss", config.divergence_factor)
        source = dict(data_dir=config.data_dir, data_file=config.data_file)
        self.train_set = load_dataset(config.dataset, "train", **source)
        self.val_set = load_dataset(config.dataset, "val", **source)
        check_not_empty(self.train_set, "train")
        check_not_empty(self.val_set, "val")
        check_every_class(self.val_set, "val")
        if self.val_set.image_size != self.train_set.image_size:
            raise DatasetError(
                f"{config.dataset}: the val images are {'x'.join(map(str, self.val_set.image_size))}, the train "
                f"images {'x'.join(map(str, self.train_set.image_size))}; a model takes one size"
            )
        info = self.train_set.info
        self.multilabel = info.multilabel
        self.normalization = _normalization(self.train_set)
        normalize = input_normalization(self.normalization)
        augment = Compose([chest_xray_augmentation(), normalize]) if config.augment else normalize
        self.train_loader = DataLoader(
            self.train_set,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            drop_last=len(self.train_set) > config.batch_size,
            transform=augment,
        )
        check_batches_split("train cnn", self.train_loader)
        self.val_loader = evaluation_loader(self.val_set, self.normalization)

        tinymed.manual_seed(config.seed)
        model_config = {"in_channels": info.n_channels, "num_classes": len(info.labels), **(config.model_config or {})}
        # `net` is the network itself, what checkpoints hold; `model` what trains it, the
        # network or, in a distributed run, its DistributedDataParallel wrapper.
        self.net = build_model(config.model, model_config).to(config.backend)
        check_images_fit(self.net, self.train_set, config.model, config.backend)
        self.model = data_parallel(self.net)
        self.optimizer = optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = optim.OneCycleLR(
            self.optimizer, max_lr=config.lr, total_steps=config.epochs * len(self.train_loader)
        )
        # The data by name and MD5, never by path: `tinymed evaluate` is told where it is.
        self.dataset_meta = {
            "name": info.name,
            "task": info.task,
            "labels": list(info.labels),
            "image_size": list(self.train_set.image_size),
            "md5": self.train_set.md5,
        }
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"epoch": 0, "val_auc": -math.inf}
        self.epoch = 0

    # ---------------------------------------------------------------- checkpoints
    def save(self, val_metrics: dict[str, Any], improved: bool, seconds: float) -> None:
        """``last.npz`` after every epoch, ``best.npz`` when the epoch improved val AUC;
        ``seconds`` of training so far."""
        metadata = {
            "model": model_spec(self.net),
            "dataset": self.dataset_meta,
            "normalization": self.normalization,
            "epoch": self.epoch,
            "metrics": val_metrics,
            "best": self.best,
            "history": self.history,
        }
        state = {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        best = {"model": state["model"]} if improved else None
        self.directory.save(state, metadata, seconds, best=best)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``last.npz`` (checked by :meth:`RunDirectory.open`): every piece of
        state as it was after its epoch."""
        check_metadata(checkpoint.path, checkpoint.metadata, RESUME_FIELDS)
        self.net.load_state_dict(checkpoint.state["model"])
        self.optimizer.load_state_dict(checkpoint.state["optimizer"])
        self.scheduler.load_state_dict(checkpoint.state["scheduler"])
        self.history, self.best = checkpoint.metadata["history"], checkpoint.metadata["best"]
        self.epoch = checkpoint.metadata["epoch"]
        # The loader numbers epochs from 0: the next one to run is epoch `self.epoch + 1`.
        self.train_loader.set_epoch(self.epoch)

    # ---------------------------------------------------------------- training
    def train_epoch(self, progress: bool) -> float:
        """One pass over the training set; returns the mean training loss."""
        self.model.train()
        total, seen = 0.0, 0
        with progress_bar(self.train_loader, self.epoch, self.config.epochs, progress) as bar:
            for step, (x, y) in enumerate(bar, start=1):
                batch = len(y)
                x, y = dist.shard(x, y)  # this rank's share of the global batch
                logits = self.model(tinymed.from_numpy(x).to(self.config.backend))
                loss = _loss(logits, y, self.multilabel)
                # The whole batch's loss, the same on every rank, so all stop alike if it diverges.
                value = dist.average_over_ranks({"loss": loss.item()})["loss"]
                # Before the update, so the weights stay those of the last good step.
                self.guard.check({"loss": value}, self.epoch, step)
                self.optimizer.zero_grad()
                loss.backward()
                reduce_gradients(self.model)
                self.optimizer.step()
                self.scheduler.step()
                total, seen = total + value * batch, seen + batch
                bar.set_postfix(loss=f"{total / seen:.4f}")
        return total / seen

    def run(self, progress: bool) -> dict[str, Any] | None:
        config = self.config
        processes = dist.rank_and_world_size()[1]
        self.log(
            f"training {config.model} on {config.dataset}: {len(self.train_set)} train / {len(self.val_set)} val "
            f"images, {config.epochs} epochs, batch {config.batch_size}, backend {config.backend}, out {self.out}"
            + (f", {processes} processes of {config.batch_size // processes} images each" if processes > 1 else "")
        )
        elapsed = self.directory.elapsed()
        while self.epoch < config.epochs:
            self.epoch += 1
            start = time.perf_counter()
            train_loss = self.train_epoch(progress)
            verify_in_sync(self.model)
            self.guard.check_weights(self.net.named_parameters(), self.epoch)
            val = predict(self.model, self.val_loader, config.backend, self.multilabel)
            val_metrics = {"loss": val.loss, **classification_metrics(val.labels, val.scores, self.multilabel)}
            elapsed += time.perf_counter() - start
            improved = val_metrics["auc"] > self.best["val_auc"]
            if improved:
                self.best = {"epoch": self.epoch, "val_auc": val_metrics["auc"]}
            self.history.append(
                {
                    "epoch": self.epoch,
                    "train_loss": train_loss,
                    "val_loss": val.loss,
                    "val_acc": val_metrics["acc"],
                    "val_auc": val_metrics["auc"],
                    "lr": self.scheduler.get_last_lr()[0],
                }
            )
            self.save(val_metrics, improved, elapsed)
            self.log(
                f"epoch {self.epoch:>3}/{config.epochs}  train loss {train_loss:.4f}  val loss {val.loss:.4f}  "
                f"val ACC {val_metrics['acc']:.4f}  val AUC {val_metrics['auc']:.4f}  "
                f"[{elapsed:.0f} s]{'  *best' if improved else ''}"
            )
        return self.report() if self.directory.writer else None

    # ---------------------------------------------------------------- results
    def report(self) -> dict[str, Any]:
        """Write history.csv, metrics.json and the plots, for the best model on val."""
        rows = self.directory.timed(self.history)
        with open(self.out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        best_model, _ = load_classifier(self.out / "best.npz", self.config.backend)
        val = predict(best_model, self.val_loader, self.config.backend, self.multilabel)
        best_metrics = {"loss": val.loss, **classification_metrics(val.labels, val.scores, self.multilabel)}
        summary = {
            "dataset": self.config.dataset,
            "model": model_spec(self.net),
            "best_epoch": self.best["epoch"],
            "val": best_metrics,
            "epochs": self.epoch,
            "seconds": self.directory.elapsed(),
            "tinymed_version": tinymed.__version__,
            "train_config": self.directory.options,
        }
        self.directory.write_metrics(summary)
        title = f"{self.config.model} on {self.config.dataset}"
        plots.plot_history(self.history, self.out / "curves.png", best_epoch=self.best["epoch"], title=title)
        if not self.multilabel:
            names = self.dataset_meta["labels"]
            plots.plot_confusion_matrix(
                np.array(best_metrics["confusion_matrix"]),
                names,
                self.out / "confusion_matrix.png",
                title=f"{title}, val, epoch {self.best['epoch']}",
            )
            if len(names) == 2:
                plots.plot_roc(
                    val.labels,
                    val.scores[:, 1],
                    self.out / "roc.png",
                    title=f"ROC, {title}, val, epoch {self.best['epoch']}",
                )
        self.log(
            f"best epoch {self.best['epoch']}: val AUC {best_metrics['auc']:.4f}, val ACC {best_metrics['acc']:.4f}; "
            f"wrote {self.out}/best.npz, last.npz, history.csv, metrics.json and plots"
        )
        return summary


def train_classifier(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> dict[str, Any] | None:
    """Train (or with ``resume``, continue; with ``overwrite``, replace) the run ``config``
    describes; returns the summary written to ``metrics.json``. Raises TrainingError if the
    loss diverges (see :mod:`tinymed.train.divergence`; ``last.npz`` is then the last epoch
    that finished well). Started by an MPI launcher, trains data-parallel (see the module
    docstring); only rank 0 logs, shows progress, writes and returns the summary (the other
    ranks return None)."""
    with dist.launched_process_group():
        run = _Run(config, main_process_log(log), resume, overwrite)
        with run.directory.open(run.dataset_meta, run.restore):
            return run.run(progress and dist.is_main_process())
