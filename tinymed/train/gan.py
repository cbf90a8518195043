"""Training a DCGAN (``tinymed train gan``), and generating images with it.

The game (Goodfellow et al., 2014): the discriminator D learns to tell real images x from
generated ones G(z); the generator G learns to make D say "real". Each step, on a batch of
real images and a batch of latent vectors z ~ N(0, I)::

    D step:  loss_D = BCE(D(x), 1 - smoothing) + BCE(D(G(z)), 0)       G held fixed (G(z) detached)
    G step:  loss_G = BCE(D(G(z)), 1)                                   D held fixed

both with the logits version of binary cross-entropy (:func:`F.binary_cross_entropy_with_logits`),
which never takes the log of a sigmoid that rounded to 0 or 1. The generator minimises
``-log D(G(z))`` (the "non-saturating" loss) rather than ``log(1 - D(G(z)))``: early on D rejects
every sample, and only the first still has a gradient then. ``smoothing`` is one-sided label
smoothing (Salimans et al., 2016): real targets of 0.9 instead of 1 keep D from becoming
overconfident; fake targets stay 0. Both optimisers are Adam with the DCGAN paper's betas
(0.5, 0.999): a smaller beta1 lets the momentum follow the opponent's moves. :class:`GANTrainer`
and ``tinymed train gan`` keep the paper's learning rate, 2e-4 (:data:`DEFAULT_LR`), though
``tinymed train gan`` takes batches of 16, a quarter of the paper's (:data:`DEFAULT_BATCH_SIZE`),
and networks 32 wide, half the DCGAN tutorial's 64 (:data:`DEFAULT_WIDTH`).

The generator a user gets is not the one the last step left but an exponential moving average
of its weights (Yazici et al., 2019), updated after every G step by
:class:`~tinymed.optim.swa_utils.AveragedModel` with BatchNorm's running statistics averaged
too (``use_buffers=True``)::

    G_ema <- decay_t * G_ema + (1 - decay_t) * G        decay_t = min(decay, (1 + t) / (10 + t))

after the ``t``-th update (:func:`~tinymed.optim.swa_utils.get_ema_warmup_multi_avg_fn`). The game
keeps moving G around a good generator; the average sits nearer its middle and gives steadier
samples. The warm-up keeps a short run's average from being dominated by the random initial
weights: ``decay ** t`` of them would remain, 17% after 1800 steps at 0.999 (24 epochs of PneumoniaMNIST at batch 64).
``--ema-decay 0`` turns it off (the raw G is then the user's).

How long: a fixed number of epochs on the phantoms; on a MedMNIST data set, unless ``--epochs``
is given, a time budget of training (``--minutes``, see :meth:`RunDirectory.fits_in`), with
``--epochs`` as its upper bound: the recipe gains with every epoch, so it trains as many as
the budget allows, and stops at an epoch boundary saying why.

A run writes to its output directory: ``last.npz`` (both networks, both optimisers, the
EMA generator ``generator_ema``, the random state and the fixed latent batch, see
:mod:`tinymed.train.checkpoint`), a grid of the EMA generator's samples per epoch from that
fixed latent batch (``samples_epoch_NNN.png``, so the epochs are
comparable), ``losses.png``, ``metrics.json`` and ``timings.json``. Before any work it checks
the output directory (:class:`~tinymed.train.run.RunDirectory`) and that the discriminator
takes the training images (one is passed through it).

Reproducibility, as for the classifier: tinymed's generator is seeded at the start (weights,
the fixed batch, every z) and its state is saved in each checkpoint; the DataLoader derives
each epoch's order from ``(seed, epoch)``, and the EMA and its update count are saved; so
``--resume`` ends with the weights of an uninterrupted run of as many epochs. A budgeted
run's epochs depend on the machine's speed: its budget counts the training time of all the
runs resumed from one another (``--minutes`` may change on resume, to extend it).

Data-parallel (``mpiexec -n N tinymed train gan``, see :mod:`tinymed.distributed`): each
network is wrapped on its own, every rank loads the same global batch of real images and
draws the same global batch of z from the shared generator, and trains on its N-th share of
both; after each of the two backward passes that network's gradients are averaged over the
ranks. BatchNorm normalises each rank's share with its own statistics, as PyTorch's DDP does,
so the run is not one process's to round-off, but its global batch and learning rate are.
Rank 0 alone writes the checkpoint, the sample grids and the plots.

Scoring a trained GAN: :mod:`tinymed.train.gan_evaluation`; the commands: :mod:`tinymed.cli.gan`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinymed
import tinymed.functional as F
from tinymed import distributed as dist
from tinymed import nn, optim, plots
from tinymed.data import DataLoader, DatasetError, ImageDataset, Normalize, load_dataset
from tinymed.models import build_model, model_spec
from tinymed.models.dcgan import DCGAN
from tinymed.optim.swa_utils import AveragedModel, get_ema_warmup_multi_avg_fn
from tinymed.tensor import Tensor
from tinymed.train.checkpoint import Checkpoint, build_from_checkpoint, load_checkpoint
from tinymed.train.divergence import DEFAULT_FACTOR, DivergenceGuard
from tinymed.train.run import (
    RunDirectory,
    TrainingError,
    check_batches_split,
    check_images_fit,
    check_minutes,
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
    "GANConfig",
    "GANTrainer",
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WIDTH",
    "FALLBACK_EPOCHS",
    "FALLBACK_MINUTES",
    "RESUMABLE",
    "train_gan",
    "load_gan",
    "select_label",
    "generate",
    "to_uint8",
]

# The phantoms train a fixed number of epochs: 2000 images need few passes, and stay quick.
DEFAULT_EPOCHS = {"phantoms": 10}
# A MedMNIST data set trains, unless --epochs is given, for a time budget with this many epochs
# at most: the recipe still gains at 91 epochs (the FD PyTorch's DCGAN reaches in 10 minutes),
# so the budget, not the epochs, ends the default run.
FALLBACK_EPOCHS = 100
# The default budget, in minutes of training: the whole command should finish within 10
# minutes on 2 cores. Around the training come start-up, a sample grid and a checkpoint per
# epoch and the final plots (8 s of a 534 s default run on the 2-core AMD EPYC machine), and the
# last epoch may run longer than the mean that let it start: 9 minutes leaves a minute for those.
FALLBACK_MINUTES = 9.0
# Batch 16, a quarter of PyTorch's DCGAN batch, at the DCGAN paper's learning rate 2e-4: the same
# learning rate per image as the batch 32 at 4e-4 it replaces, in four times PyTorch's steps per
# epoch at about the same time per epoch. Over the 24 epochs of a default run benchmarks.gan_study
# measured Frechet distance 0.50, 0.55 and 0.49 on seeds 0, 1 and 2, against 0.62 and 0.67 at
# batch 32 (lr 4e-4) and 1.22 and 0.86 at batch 64 (lr 4e-4); at batch 16, lr 4e-4 scored 1.01 and
# 1e-4 0.72 (seed 0). The study's table is in the README.
DEFAULT_LR = 2e-4
DEFAULT_BATCH_SIZE = 16
# The EMA's decay (with its warm-up, see the module docstring): the usual 0.999, which the
# warm-up (1 + t) / (10 + t) caps until t = 8990, near the end of the default runs measured on
# the 2-core machines (6762 to 9408 steps at width 64, 8820 to 10290 at width 32, batch 16): the
# warm-up, not the decay, decides the average for all or most of a run.
DEFAULT_EMA_DECAY = 0.999
# Both networks' width (--ngf, --ndf), half the DCGAN tutorial's 64: a step costs ~2.5x less, so a
# budget trains that many more epochs, and in minutes epochs beat width (benchmarks.gan_same_time,
# one core, seed 0: FD 0.53 after 31 epochs against 0.98 after 13 at 64; the README's table).
DEFAULT_WIDTH = 32

# tanh's range [-1, 1] is the generator's output; images in [0, 1] map onto it.
NORMALIZATION = {"mean": [0.5], "std": [0.5]}


@dataclass
class GANConfig:
    """Everything a GAN run is a function of. ``label`` is ``"all"`` or one class index;
    ``conditional`` trains a class-conditional pair (needs ``label="all"``);
    ``divergence_factor`` as :class:`~tinymed.train.classifier.TrainConfig`'s. ``minutes``: the
    time budget of training (None: none), ``epochs`` then an upper bound; with neither given,
    the data set's default (see :data:`DEFAULT_EPOCHS`, :data:`FALLBACK_MINUTES`).
    ``ema_decay``: the generator EMA's decay (0: no EMA)."""

    dataset: str = "phantoms"
    data_dir: str | None = None
    data_file: str | None = None
    label: str = "all"
    conditional: bool = False
    backend: str = "numpy"
    epochs: int | None = None
    minutes: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    betas: tuple[float, float] = (0.5, 0.999)
    label_smoothing: float = 0.0
    latent_dim: int = 100
    ngf: int = DEFAULT_WIDTH
    ndf: int = DEFAULT_WIDTH
    seed: int = 0
    out: str | None = None
    divergence_factor: float = DEFAULT_FACTOR
    ema_decay: float = DEFAULT_EMA_DECAY

    def __post_init__(self) -> None:
        if self.epochs is None and self.minutes is None and self.dataset not in DEFAULT_EPOCHS:
            self.minutes = FALLBACK_MINUTES
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.dataset, FALLBACK_EPOCHS)
        if self.out is None:
            suffix = "" if self.label == "all" else f"-label{self.label}"
            self.out = os.path.join("runs", f"gan-{self.dataset}{suffix}")
        check_options("train gan", self, ("epochs", "batch_size", "latent_dim", "ngf", "ndf"))
        check_minutes("train gan", self.minutes)
        if not (type(self.ema_decay) in (int, float) and 0.0 <= self.ema_decay < 1.0):
            raise TrainingError(f"train gan: ema_decay (--ema-decay) must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise TrainingError(f"train gan: label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.conditional and self.label != "all":
            raise TrainingError(f"train gan: a conditional GAN learns every class; use --label all, not {self.label}")


# Options a resumed run may change besides where it reads and writes: where it runs, when it
# would stop, and how many epochs or minutes in all (Adam has no schedule that depends on them).
RESUMABLE = ("backend", "epochs", "minutes", "divergence_factor")

# The pieces of state in last.npz, besides the random generator's; with an EMA, also
# "generator_ema" (the EMA generator's state dict) and "ema_updates" (its update count t).
PIECES = ("generator", "discriminator", "optimizer_g", "optimizer_d", "fixed_z")
EMA_PIECES = ("generator_ema", "ema_updates")


# ---------------------------------------------------------------------- the training step


class GANTrainer:
    """The two networks of ``gan``, their Adam optimisers, and one step of the game.

    ``generator`` and ``discriminator`` are what train the networks: ``gan``'s own, or in a
    distributed run each wrapped in DistributedDataParallel (made here, so on every rank).
    ``ema``: the generator's EMA (see the module docstring) with decay ``ema_decay``, updated
    after every G step; None when ``ema_decay`` is 0. ``user_generator`` is the EMA's
    generator, or the raw one without an EMA: the generator a user gets."""

    def __init__(
        self,
        gan: DCGAN,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        label_smoothing: float = 0.0,
        ema_decay: float = 0.0,
    ) -> None:
        self.gan = gan
        self.label_smoothing = label_smoothing
        self.generator, self.discriminator = data_parallel(gan.generator), data_parallel(gan.discriminator)
        self.optimizer_g = optim.Adam(self.generator.parameters(), lr=lr, betas=tuple(betas))
        self.optimizer_d = optim.Adam(self.discriminator.parameters(), lr=lr, betas=tuple(betas))
        self.ema = (
            AveragedModel(gan.generator, multi_avg_fn=get_ema_warmup_multi_avg_fn(ema_decay), use_buffers=True)
            if ema_decay
            else None
        )

    @property
    def user_generator(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.gan.generator

    def discriminator_loss(
        self, real: Tensor, fake: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``BCE(D(x), 1 - smoothing) + BCE(D(fake), 0)``; returns the loss and both logit
        vectors ``(N,)``."""
        discriminator = self.discriminator
        real_logits, fake_logits = discriminator(real, labels), discriminator(fake, labels)
        real_target = tinymed.full(
            real_logits.shape, 1.0 - self.label_smoothing, dtype=real_logits.dtype, backend=real_logits.backend
        )
        fake_target = tinymed.zeros(*fake_logits.shape, dtype=fake_logits.dtype, backend=fake_logits.backend)
        loss = F.binary_cross_entropy_with_logits(real_logits, real_target) + F.binary_cross_entropy_with_logits(
            fake_logits, fake_target
        )
        return loss, real_logits, fake_logits

    def generator_loss(self, fake: Tensor, labels: Tensor | None = None) -> Tensor:
        """The non-saturating loss ``BCE(D(G(z)), 1) = -log sigmoid(D(G(z)))``."""
        logits = self.discriminator(fake, labels)
        target = tinymed.ones(*logits.shape, dtype=logits.dtype, backend=logits.backend)
        return F.binary_cross_entropy_with_logits(logits, target)

    def step(self, real: Tensor, z: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """One D step then one G step on the same generated batch ``G(z, labels)``.

        Returns the two losses and ``d_real``/``d_fake``, the mean probability D gave the
        real and the generated images before its step (1/2 both when D is fooled), averaged
        over the ranks of a distributed run (each trains on its share of the batch)."""
        generator, discriminator = self.generator, self.discriminator
        fake = generator(z, labels)
        # Detached: the D step must not push gradients into G.
        loss_d, real_logits, fake_logits = self.discriminator_loss(real, fake.detach(), labels)
        self.optimizer_d.zero_grad()
        loss_d.backward()
        reduce_gradients(discriminator)
        self.optimizer_d.step()
        # D is the fixed judge while G learns; freezing it also skips its weight gradients.
        discriminator.requires_grad_(False)
        try:
            loss_g = self.generator_loss(fake, labels)
            self.optimizer_g.zero_grad()
            loss_g.backward()
            reduce_gradients(generator)
            self.optimizer_g.step()
            if self.ema is not None:
                self.ema.update_parameters(self.gan.generator)
        finally:
            discriminator.requires_grad_(True)
        return dist.average_over_ranks(
            {
                "loss_d": loss_d.item(),
                "loss_g": loss_g.item(),
                "d_real": F.sigmoid(real_logits.detach()).mean().item(),
                "d_fake": F.sigmoid(fake_logits.detach()).mean().item(),
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """Both networks, both optimisers and the EMA (:data:`EMA_PIECES`), under the names a
        GAN checkpoint uses."""
        state = {
            "generator": self.gan.generator.state_dict(),
            "discriminator": self.gan.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
        }
        if self.ema is not None:
            # The averaged generator's own state dict, loadable into a Generator as it is.
            state["generator_ema"] = self.ema.module.state_dict()
            state["ema_updates"] = self.ema.n_averaged.numpy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gan.generator.load_state_dict(state["generator"])
        self.gan.discriminator.load_state_dict(state["discriminator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["generator_ema"])
            self.ema.n_averaged.fill_(int(state["ema_updates"]))


# ---------------------------------------------------------------------- data and samples


def select_label(dataset: ImageDataset, label: str | int) -> ImageDataset:
    """The images of one class (``label`` an index or its string), or all of them (``"all"``)."""
    if str(label) == "all":
        return dataset
    names = dataset.info.labels
    if dataset.info.multilabel:
        raise DatasetError(f"{dataset.info.name} is a multi-label data set; a GAN trains on --label all of it")
    try:
        index = int(label)
    except ValueError:
        index = -1
    if not 0 <= index < len(names):
        choices = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
        raise DatasetError(f"--label {label!r} is not a class of {dataset.info.name}; choose all or one of: {choices}")
    keep = dataset.labels == index
    if not keep.any():
        raise DatasetError(
            f"{dataset.info.name} has no images of class {index} ({names[index]}) in this split; nothing to train on"
        )
    images = dataset.images[keep].transpose(0, 2, 3, 1)  # back to MedMNIST's (N, H, W, C)
    return ImageDataset(images, dataset.labels[keep], dataset.info)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 pixels 0..255, as image files and MedMNIST store them."""
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def generate(
    generator: nn.Module, z: np.ndarray, labels: np.ndarray | None = None, backend: str = "numpy", batch_size: int = 512
) -> np.ndarray:
    """``G(z, labels)`` in eval mode (BatchNorm's running statistics, so an image does not
    depend on the rest of its batch), as float32 ``(N, C, 28, 28)`` in [-1, 1]."""
    generator.eval()
    out = []
    with tinymed.no_grad():
        for start in range(0, len(z), batch_size):
            zb = tinymed.from_numpy(np.ascontiguousarray(z[start : start + batch_size], np.float32)).to(backend)
            lb = None if labels is None else tinymed.from_numpy(labels[start : start + batch_size]).to(backend)
            out.append(generator(zb, lb).numpy())
    return np.concatenate(out)


def _grid(images: np.ndarray, path: Path, title: str) -> None:
    """Save a grid of generated images (N, C, H, W) in [-1, 1] to ``path``."""
    pictures = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    plots.plot_image_grid((pictures + 1.0) / 2.0, path, nrow=int(math.ceil(math.sqrt(len(images)))), title=title)


def load_gan(path: str | os.PathLike, backend: str = "numpy", raw: bool = False) -> tuple[DCGAN, dict[str, Any]]:
    """Rebuild the DCGAN a checkpoint holds from its metadata, in eval mode on ``backend``,
    with the generator a user gets (the EMA generator ``generator_ema`` where the run kept
    one; the raw ``generator`` of a run without EMA, or written before tinymed had it) and the
    discriminator. ``raw``: the raw generator the run trained even where it kept an EMA, to
    measure what the average does on the same run. Returns ``(gan, metadata)``; a classifier
    checkpoint is refused with a :class:`CheckpointError`."""
    checkpoint = load_checkpoint(path, kind="gan", model="dcgan")
    generator = "generator_ema" if "generator_ema" in checkpoint.state and not raw else "generator"
    return build_from_checkpoint(checkpoint, {generator: "generator", "discriminator": "discriminator"}, backend)


# ---------------------------------------------------------------------- a training run


class _GANRun:
    """One GAN training run: data, networks, trainer, and what it has recorded so far."""

    def __init__(self, config: GANConfig, log: Callable[[str], None], resume: bool, overwrite: bool) -> None:
        self.config, self.log = config, log
        require_backend(config.backend)
        pieces = PIECES + (EMA_PIECES if config.ema_decay else ())
        self.directory = RunDirectory(
            config, "gan", "dcgan", RESUMABLE, pieces, False, log, resume=resume, overwrite=overwrite
        )
        self.out = self.directory.path
        self.guard = DivergenceGuard(self.directory, "GAN losses", config.divergence_factor)
        full = load_dataset(config.dataset, "train", data_dir=config.data_dir, data_file=config.data_file)
        check_not_empty(full, "train")
        self.train_set = select_label(full, config.label)
        info = self.train_set.info
        if len(self.train_set) < 2:
            raise DatasetError(
                f"{info.name} --label {config.label}: {len(self.train_set)} training image(s); "
                f"a GAN needs at least 2 (BatchNorm normalises over the batch)"
            )
        self.loader = DataLoader(
            self.train_set,
            batch_size=min(config.batch_size, len(self.train_set)),
            shuffle=True,
            seed=config.seed,
            drop_last=True,
            transform=Normalize(**NORMALIZATION),
        )
        check_batches_split("train gan", self.loader)

        tinymed.manual_seed(config.seed)
        num_classes = len(info.labels) if config.conditional else 0
        self.gan = build_model(
            "dcgan",
            {
                "latent_dim": config.latent_dim,
                "ngf": config.ngf,
                "ndf": config.ndf,
                "channels": info.n_channels,
                "num_classes": num_classes,
            },
        ).to(config.backend)
        check_images_fit(self.gan.discriminator, self.train_set, "DCGAN discriminator", config.backend, num_classes > 0)
        self.trainer = GANTrainer(self.gan, config.lr, config.betas, config.label_smoothing, config.ema_decay)
        # One latent batch for every epoch's picture, so the pictures show the same samples improving.
        grid = 64
        self.fixed_z = tinymed.randn(grid, config.latent_dim).numpy()
        self.fixed_labels = np.arange(grid) % num_classes if num_classes else None
        counts = np.bincount(self.train_set.labels, minlength=len(info.labels)) if not info.multilabel else None
        self.dataset_meta = {
            "name": info.name,
            "task": info.task,
            "labels": list(info.labels),
            "label": config.label,
            "class_counts": None if counts is None else counts.tolist(),
            "image_size": list(self.train_set.image_size),
            "md5": self.train_set.md5,
        }
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.stop_reason = ""

    # ---------------------------------------------------------------- checkpoints
    def save(self, seconds: float) -> None:
        """``last.npz``: both networks, both optimisers and the fixed latent batch;
        ``seconds`` of training so far."""
        metadata = {
            "model": model_spec(self.gan),
            "dataset": self.dataset_meta,
            "normalization": NORMALIZATION,
            "epoch": self.epoch,
            "metrics": self.history[-1] if self.history else {},
            "history": self.history,
        }
        state = {**self.trainer.state_dict(), "fixed_z": self.fixed_z}
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels
        self.directory.save(state, metadata, seconds)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``last.npz`` (checked by :meth:`RunDirectory.open`)."""
        self.trainer.load_state_dict(checkpoint.state)
        self.fixed_z = checkpoint.state["fixed_z"]
        self.fixed_labels = checkpoint.state.get("fixed_labels")
        self.history, self.epoch = checkpoint.metadata["history"], checkpoint.metadata["epoch"]
        # The loader numbers epochs from 0: the next one to run is epoch `self.epoch + 1`.
        self.loader.set_epoch(self.epoch)

    # ---------------------------------------------------------------- training
    def train_epoch(self, progress: bool) -> dict[str, float]:
        """One pass over the training images; returns the epoch's mean losses and D outputs."""
        config, gan = self.config, self.gan
        gan.train()
        totals = {"loss_d": 0.0, "loss_g": 0.0, "d_real": 0.0, "d_fake": 0.0}
        with progress_bar(self.loader, self.epoch, config.epochs, progress) as bar:
            for step, (x, y) in enumerate(bar, start=1):
                # The whole batch's z on every rank, from generators that stay equal; then each rank's share.
                z = tinymed.randn(len(x), config.latent_dim).numpy()
                x, y, z = dist.shard(x, y, z)
                real = tinymed.from_numpy(x).to(config.backend)
                labels = tinymed.from_numpy(y).to(config.backend) if gan.num_classes else None
                result = self.trainer.step(real, tinymed.from_numpy(z).to(config.backend), labels)
                self.guard.check({"D": result["loss_d"], "G": result["loss_g"]}, self.epoch, step)
                for key in totals:
                    totals[key] += result[key]
                bar.set_postfix(
                    {
                        "loss_D": f"{totals['loss_d'] / step:.3f}",
                        "loss_G": f"{totals['loss_g'] / step:.3f}",
                        "D(x)": f"{totals['d_real'] / step:.2f}",
                        "D(G(z))": f"{totals['d_fake'] / step:.2f}",
                    }
                )
        return {key: total / len(self.loader) for key, total in totals.items()}

    def _stop(self) -> bool:
        """Whether the run stops before another epoch; if so, log and keep why."""
        config = self.config
        if self.epoch >= config.epochs:
            self.stop_reason = f"all {config.epochs} epochs done"
        elif not self.directory.fits_in(config.minutes):
            self.stop_reason = (
                f"time budget reached after {self.epoch} epochs: {self.directory.elapsed():.0f} s of training, "
                f"and another epoch would pass --minutes {config.minutes:g}"
            )
        else:
            return False
        self.log(self.stop_reason)
        return True

    def run(self, progress: bool) -> dict[str, Any] | None:
        config = self.config
        what = "conditional DCGAN" if self.gan.num_classes else "DCGAN"
        budget = "" if config.minutes is None else f" (at most; or --minutes {config.minutes:g} of training)"
        ema = f"EMA decay {config.ema_decay:g}" if config.ema_decay else "no EMA"
        self.log(
            f"training a {what} on {config.dataset} (label {config.label}): {len(self.train_set)} images, "
            f"{config.epochs} epochs{budget}, batch {self.loader.batch_size}, {ema}, backend {config.backend}, "
            f"out {self.out}"
        )
        elapsed = self.directory.elapsed()
        while not self._stop():
            self.epoch += 1
            start = time.perf_counter()
            row = self.train_epoch(progress)
            verify_in_sync(self.trainer.generator)
            verify_in_sync(self.trainer.discriminator)
            self.guard.check_weights(self.gan.named_parameters(), self.epoch)
            elapsed += time.perf_counter() - start
            self.history.append({"epoch": self.epoch, **row})
            if self.directory.writer:
                images = generate(self.trainer.user_generator, self.fixed_z, self.fixed_labels, config.backend)
                _grid(
                    images,
                    self.out / f"samples_epoch_{self.epoch:03d}.png",
                    title=f"{config.dataset}, epoch {self.epoch}",
                )
            self.save(elapsed)
            self.log(
                f"epoch {self.epoch:>3}/{config.epochs}  loss D {row['loss_d']:.4f}  loss G {row['loss_g']:.4f}  "
                f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}  [{elapsed:.0f} s]"
            )
        return self.report() if self.directory.writer else None

    def report(self) -> dict[str, Any]:
        """Write metrics.json and losses.png."""
        history = self.directory.timed(self.history)
        summary = {
            "dataset": self.dataset_meta,
            "model": model_spec(self.gan),
            "epochs": self.epoch,
            # Each network's optimiser steps: every epoch is the loader's batches (the last, partial one dropped).
            "steps": self.epoch * len(self.loader),
            "seconds": self.directory.elapsed(),
            "stop_reason": self.stop_reason,
            "final": history[-1],
            "history": history,
            "tinymed_version": tinymed.__version__,
            "train_config": self.directory.options,
        }
        self.directory.write_metrics(summary)
        plots.plot_gan_history(
            self.history, self.out / "losses.png", title=f"DCGAN on {self.config.dataset} (label {self.config.label})"
        )
        self.log(f"wrote {self.out}/last.npz, metrics.json, losses.png and samples_epoch_*.png")
        return summary


def train_gan(
    config: GANConfig,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> dict[str, Any] | None:
    """Train (or with ``resume``, continue; with ``overwrite``, replace) the GAN run ``config``
    describes; returns the summary written to ``metrics.json``. Started by an MPI launcher,
    trains data-parallel (see the module docstring); only rank 0 logs, shows progress, writes
    and returns the summary (the other ranks return None)."""
    with dist.launched_process_group():
        run = _GANRun(config, main_process_log(log), resume, overwrite)
        with run.directory.open(run.dataset_meta, run.restore):
            return run.run(progress and dist.is_main_process())
