"""Training and evaluating a CNN classifier (``tinymed train cnn``, ``tinymed evaluate``).

The recipe for radiographs (every MedMNIST data set; the phantoms keep the lighter one of
``PHANTOM_RECIPE``) was chosen by a study that reads recipes on what predicts unseen patients,
not on validation decimals (``benchmarks/classifier_study.py``; its table is in the README):
over two seeds it had the best shift-proxy AUC (0.989 against the earlier recipe's 0.985) and
the best accuracy at the test split's class balance on the shift proxy (0.932 against 0.879),
and its spread between seeds was the smallest. Its pieces:

* **strong augmentation** that mirrors how radiographs from other scanners and sites differ
  (``augment="strong"``, :func:`~tinymed.data.chest_xray_augmentation`): rotation up to 10
  degrees, shifts up to 2 pixels, zoom, contrast up to 30 %, gamma and blur; ``"light"``
  keeps rotation, shift and 10 % brightness and contrast. Never a horizontal flip, which
  would move the heart to the wrong side;
* **normalisation** by the training images' own mean and standard deviation, stored in the
  checkpoint so evaluation normalises exactly as training did;
* **AdamW** (Adam with decoupled weight decay, Loshchilov and Hutter 2019) under a
  **one-cycle** schedule (Smith 2018) over 30 epochs (the study ranked 30 above 20 on every
  shift-proxy figure but specificity): the learning rate warms up for 30 % of the steps to
  ``lr``, then anneals to nearly zero;
* **weight averaging** (``ema_decay=0.99``; 0 turns it off): an exponential moving average of
  the weights and BatchNorm statistics after every step
  (:class:`~tinymed.optim.swa_utils.AveragedModel`), which is what is validated and kept;
* the **last epoch** is kept as ``best.npz`` (``selection="last"``; ``"best"`` keeps the best
  epoch by validation AUC, MedMNIST's rule). A validation split drawn like the training split
  saturates (AUC 0.99 on PneumoniaMNIST), and choosing among epochs by its last decimals picks
  noise, while the one-cycle schedule's annealed end, averaged, is a choice made before
  seeing any data;
* optionally **class weights** (``class_weight="balanced"``): the cross-entropy weighs class k
  by ``n / (K n_k)`` (scikit-learn's "balanced", given as ``F.cross_entropy``'s ``weight``), so
  each class counts alike whatever the training split's balance. The study measured it: it
  moves the operating point past the test split's balance (37.5 % normal), buying specificity
  with more sensitivity than it gains, so it is off by default.

At the end the kept model is also read on the shift-proxy validation (the validation split
under the acquisition changes of :mod:`tinymed.data.shift`), written to ``metrics.json`` under
``shift``, with the class-balanced figures of :mod:`tinymed.train.classifier_evaluation`.

A run writes to its output directory: ``best.npz`` and ``last.npz`` (checkpoints, see
:mod:`tinymed.train.checkpoint`), ``history.csv`` (one row per epoch), ``metrics.json``,
``timings.json``, and the plots ``curves.png`` (loss and AUC per epoch), ``roc.png`` and
``confusion_matrix.png`` (the kept model on the validation split).

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
from tinymed import distributed as dist
from tinymed import optim, plots
from tinymed.data import AUGMENTATIONS, Compose, DataLoader, ImageDataset, chest_xray_augmentation, load_dataset
from tinymed.errors import DatasetError, TrainingError
from tinymed.models import build_model, model_spec
from tinymed.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tinymed.train.checkpoint import Checkpoint, check_metadata
from tinymed.train.classifier_evaluation import (
    check_every_class,
    classification_loss,
    classification_metrics,
    evaluation_loader,
    input_normalization,
    load_classifier,
    predict,
    shift_evaluation,
)
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
    "RADIOGRAPH_RECIPE",
    "PHANTOM_RECIPE",
    "RECIPE_BY_DATASET",
    "CLASS_WEIGHTS",
    "SELECTIONS",
    "train_classifier",
    "class_weights",
    "load_classifier",
]

# The recipe by data set where it differs from the radiographs' (see the module docstring).
# The study behind the radiographs' recipe did not cover the synthetic phantoms, so they keep
# the recipe their figures were measured with. Their faint opacities take the network a few
# epochs to find at all (the loss sits near log 2 first), so their 2000 images get 10 passes:
# with 8, some seeds had not found them yet.
PHANTOM_RECIPE = {"epochs": 10, "augment": "light", "ema_decay": 0.0, "selection": "best"}
RECIPE_BY_DATASET = {"phantoms": PHANTOM_RECIPE}
RADIOGRAPH_RECIPE = {"epochs": 30, "augment": "strong", "ema_decay": 0.99, "selection": "last"}
DEFAULT_EPOCHS = {name: recipe["epochs"] for name, recipe in RECIPE_BY_DATASET.items()}
FALLBACK_EPOCHS = RADIOGRAPH_RECIPE["epochs"]

# TrainConfig.class_weight: None (every sample counts alike) or "balanced" (every class does).
CLASS_WEIGHTS = ("balanced",)

# TrainConfig.selection: the epoch kept as best.npz, by validation AUC or the last one.
SELECTIONS = ("best", "last")


@dataclass
class TrainConfig:
    """Everything that decides a training run (``tinymed train cnn``'s options).

    epochs, augment, ema_decay and selection None mean the data set's recipe
    (``RECIPE_BY_DATASET.get(dataset, RADIOGRAPH_RECIPE)``); out None means
    ``runs/cnn-<dataset>``. model_config is passed to the model's constructor on top of the
    data set's ``in_channels`` and ``num_classes`` (e.g. ``{"channels": [8, 16, 32]}``).
    divergence_factor: how far above its start the loss may climb before the run is stopped
    (see :mod:`tinymed.train.divergence`). augment: one of ``AUGMENTATIONS`` (none, light,
    strong); class_weight: None or ``"balanced"``; ema_decay: the decay of the weights' moving
    average in [0, 1), 0 for none; selection: one of ``SELECTIONS`` (see the module docstring).
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
    augment: str | None = None
    class_weight: str | None = None
    ema_decay: float | None = None
    selection: str | None = None
    seed: int = 0
    out: str | None = None
    divergence_factor: float = DEFAULT_FACTOR

    def __post_init__(self) -> None:
        for name, value in RECIPE_BY_DATASET.get(self.dataset, RADIOGRAPH_RECIPE).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.out is None:
            self.out = os.path.join("runs", f"cnn-{self.dataset}")
        check_options("train cnn", self, ("epochs", "batch_size"))
        for name, allowed in (
            ("augment", AUGMENTATIONS),
            ("class_weight", (None, *CLASS_WEIGHTS)),
            ("selection", SELECTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise TrainingError(
                    f"train cnn: {name} must be one of {', '.join(map(str, allowed))}, got {getattr(self, name)!r}"
                )
        if not (type(self.ema_decay) in (int, float) and 0.0 <= self.ema_decay < 1.0):
            raise TrainingError(f"train cnn: ema_decay (--ema-decay) must be in [0, 1), got {self.ema_decay!r}")


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


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The "balanced" class weights ``w_k = n / (K n_k)`` (scikit-learn's
    ``compute_class_weight("balanced")``), float32 ``(K,)``: with them as cross-entropy's
    ``weight``, every class carries the same total weight, n / K. labels ``(n,)`` in 0..K-1."""
    counts = np.bincount(labels, minlength=num_classes)
    if not counts.all():
        missing = [k for k in range(num_classes) if counts[k] == 0]
        raise DatasetError(
            f"train cnn --class-weight balanced: the train split has no sample of class {missing[0]}; "
            f"its weight n / (K n_k) is undefined"
        )
    return (len(labels) / (num_classes * counts)).astype(np.float32)


class _Run:
    """One training run: the objects it is made of, and what it has recorded so far."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None], resume: bool, overwrite: bool) -> None:
        self.config, self.log = config, log
        require_backend(config.backend)
        pieces = (*PIECES, "averaged") if config.ema_decay else PIECES
        self.directory = RunDirectory(
            config, "classifier", config.model, RESUMABLE, pieces, True, log, resume=resume, overwrite=overwrite
        )
        self.out = self.directory.path
        self.guard = DivergenceGuard(self.directory, "loss", config.divergence_factor)
        self.load_data()
        self.build_model()
        info = self.train_set.info
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

    def load_data(self) -> None:
        """The splits, checked; the normalisation, the loaders and the class weights."""
        config = self.config
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
        augment = chest_xray_augmentation(strength=config.augment)
        self.train_loader = DataLoader(
            self.train_set,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            drop_last=len(self.train_set) > config.batch_size,
            transform=Compose([*augment.transforms, normalize]),
        )
        check_batches_split("train cnn", self.train_loader)
        self.val_loader = evaluation_loader(self.val_set, self.normalization)
        self.weight = None
        if config.class_weight is not None:
            if self.multilabel:
                raise TrainingError(
                    f"train cnn --class-weight {config.class_weight}: {info.name} is multi-label; "
                    f"class weights are for one class per image"
                )
            weights = class_weights(self.train_set.labels, len(info.labels))
            self.weight = tinymed.tensor(weights).to(config.backend)

    def build_model(self) -> None:
        """The network (from the seed), its optimiser and schedule, and its weights' average."""
        config, info = self.config, self.train_set.info
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
        # BatchNorm's statistics are averaged too (use_buffers), so the average can be
        # evaluated as it is, without a pass to recompute them.
        self.averaged = (
            None
            if not config.ema_decay
            else AveragedModel(self.net, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        )

    @property
    def kept(self) -> Any:
        """The network that is validated and kept as ``best.npz``: the average, if there is one."""
        return self.net if self.averaged is None else self.averaged.module

    # ---------------------------------------------------------------- checkpoints
    def save(self, val_metrics: dict[str, Any], improved: bool, seconds: float) -> None:
        """``last.npz`` after every epoch, ``best.npz`` (the kept network) when the epoch is the
        one selected so far; ``seconds`` of training so far."""
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
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        best = {"model": self.kept.state_dict()} if improved else None
        self.directory.save(state, metadata, seconds, best=best)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``last.npz`` (checked by :meth:`RunDirectory.open`): every piece of
        state as it was after its epoch."""
        check_metadata(checkpoint.path, checkpoint.metadata, RESUME_FIELDS)
        self.net.load_state_dict(checkpoint.state["model"])
        self.optimizer.load_state_dict(checkpoint.state["optimizer"])
        self.scheduler.load_state_dict(checkpoint.state["scheduler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(checkpoint.state["averaged"])
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
                loss = classification_loss(logits, y, self.multilabel, self.weight)
                # The whole batch's loss, the same on every rank, so all stop alike if it diverges.
                value = dist.average_over_ranks({"loss": loss.item()})["loss"]
                # Before the update, so the weights stay those of the last good step.
                self.guard.check({"loss": value}, self.epoch, step)
                self.optimizer.zero_grad()
                loss.backward()
                reduce_gradients(self.model)
                self.optimizer.step()
                self.scheduler.step()
                if self.averaged is not None:
                    self.averaged.update_parameters(self.net)
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
            val = predict(
                self.model if self.averaged is None else self.averaged, self.val_loader, config.backend, self.multilabel
            )
            val_metrics = {"loss": val.loss, **classification_metrics(val.labels, val.scores, self.multilabel)}
            elapsed += time.perf_counter() - start
            improved = config.selection == "last" or val_metrics["auc"] > self.best["val_auc"]
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
                f"[{elapsed:.0f} s]{'  *best' if improved and config.selection == 'best' else ''}"
            )
        return self.report() if self.directory.writer else None

    # ---------------------------------------------------------------- results
    def report(self) -> dict[str, Any]:
        """Write history.csv, metrics.json and the plots, for the kept model on val and, in
        metrics.json, on the shift-proxy validation."""
        rows = self.directory.timed(self.history)
        with open(self.out / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        best_model, _ = load_classifier(self.out / "best.npz", self.config.backend)
        val = predict(best_model, self.val_loader, self.config.backend, self.multilabel)
        best_metrics = {"loss": val.loss, **classification_metrics(val.labels, val.scores, self.multilabel)}
        shift = shift_evaluation(best_model, self.val_set, self.normalization, self.config.backend)
        summary = {
            "dataset": self.config.dataset,
            "model": model_spec(self.net),
            "best_epoch": self.best["epoch"],
            "val": best_metrics,
            "shift": shift,
            "epochs": self.epoch,
            "seconds": self.directory.elapsed(),
            "tinymed_version": tinymed.__version__,
            "train_config": self.directory.options,
        }
        self.directory.write_metrics(summary)
        title = f"{self.config.model} on {self.config.dataset}"
        # With --selection last the kept epoch is simply the last: no "best epoch" to mark.
        marked = self.best["epoch"] if self.config.selection == "best" else None
        plots.plot_history(self.history, self.out / "curves.png", best_epoch=marked, title=title)
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
            f"{'best' if self.config.selection == 'best' else 'kept the last'} epoch {self.best['epoch']}: "
            f"val AUC {best_metrics['auc']:.4f}, val ACC {best_metrics['acc']:.4f}; "
            f"shift-proxy mean AUC {shift['mean']['auc']:.4f}, ACC {shift['mean']['acc']:.4f}; "
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
