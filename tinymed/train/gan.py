"""Training, sampling and evaluating a DCGAN (``tinymed train gan``, ``sample``, ``evaluate-gan``).

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
overconfident; fake targets stay 0. Both optimisers are Adam(lr 2e-4, betas (0.5, 0.999)), the
DCGAN paper's: a smaller beta1 lets the momentum follow the opponent's moves.

A run writes to its output directory: ``last.npz`` (both networks, both optimisers, the
random state and the fixed latent batch, see :mod:`tinymed.train.checkpoint`), a grid of
samples per epoch from that fixed latent batch (``samples_epoch_NNN.png``, so the epochs are
comparable), ``losses.png`` and ``metrics.json``.

Reproducibility, as for the classifier: tinymed's generator is seeded at the start (weights,
the fixed batch, every z) and its state is saved in each checkpoint; the DataLoader derives
each epoch's order from ``(seed, epoch)``; so ``--resume`` ends with the weights of an
uninterrupted run.

Evaluation: the Frechet distance (the FID formula, :func:`tinymed.metrics.frechet_distance`)
between Gaussians fitted to features of real and generated images, where the features are the
penultimate layer of a trained tinymed classifier (``forward_features``) rather than
Inception's, plus k-nearest-neighbour precision and recall on the same features
(:func:`tinymed.metrics.knn_precision_recall`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinymed
import tinymed.functional as F
from tinymed import backends, nn, optim, plots
from tinymed.data import DataLoader, DatasetError, ImageDataset, Normalize, load_dataset
from tinymed.metrics import frechet_distance_from_features, knn_precision_recall
from tinymed.models import build_model, model_spec
from tinymed.models.dcgan import DCGAN
from tinymed.repair import MASKS, inpaint, make_mask
from tinymed.tensor import Tensor
from tinymed.train.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from tinymed.train.classifier import evaluation_loader, load_classifier
from tinymed.train.run import TrainingError

__all__ = [
    "GANConfig",
    "GANTrainer",
    "DEFAULT_EPOCHS",
    "train_gan",
    "load_gan",
    "select_label",
    "generate",
    "to_uint8",
    "classifier_features",
    "evaluate_gan",
    "add_train_arguments",
    "run_train",
    "add_sample_arguments",
    "run_sample",
    "add_evaluate_arguments",
    "run_evaluate",
    "add_repair_arguments",
    "run_repair",
]

# Epochs by data set where the default differs. PneumoniaMNIST's 4708 training images take
# 20 epochs (1460 steps) in about 9 minutes of one CPU core's time (measured: 515 s), inside
# the 15-minute budget for 2 cores; the 2000 phantoms need fewer passes.
DEFAULT_EPOCHS = {"phantoms": 10}
FALLBACK_EPOCHS = 20

# tanh's range [-1, 1] is the generator's output; images in [0, 1] map onto it.
NORMALIZATION = {"mean": [0.5], "std": [0.5]}


@dataclass
class GANConfig:
    """Everything a GAN run is a function of. ``label`` is ``"all"`` or one class index;
    ``conditional`` trains a class-conditional pair (needs ``label="all"``)."""

    dataset: str = "phantoms"
    data_dir: str | None = None
    data_file: str | None = None
    label: str = "all"
    conditional: bool = False
    backend: str = "numpy"
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    label_smoothing: float = 0.0
    latent_dim: int = 100
    ngf: int = 64
    ndf: int = 64
    seed: int = 0
    out: str | None = None

    def __post_init__(self) -> None:
        if self.epochs is None:
            self.epochs = DEFAULT_EPOCHS.get(self.dataset, FALLBACK_EPOCHS)
        if self.out is None:
            suffix = "" if self.label == "all" else f"-label{self.label}"
            self.out = os.path.join("runs", f"gan-{self.dataset}{suffix}")
        for name in ("epochs", "batch_size", "latent_dim", "ngf", "ndf"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TrainingError(f"train gan: {name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise TrainingError(f"train gan: lr must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise TrainingError(f"train gan: label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.conditional and self.label != "all":
            raise TrainingError(f"train gan: a conditional GAN learns every class; use --label all, not {self.label}")


# ---------------------------------------------------------------------- the training step


class GANTrainer:
    """The two networks of ``gan``, their Adam optimisers, and one step of the game."""

    def __init__(
        self, gan: DCGAN, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), label_smoothing: float = 0.0
    ) -> None:
        self.gan = gan
        self.label_smoothing = label_smoothing
        self.optimizer_g = optim.Adam(gan.generator.parameters(), lr=lr, betas=tuple(betas))
        self.optimizer_d = optim.Adam(gan.discriminator.parameters(), lr=lr, betas=tuple(betas))

    def discriminator_loss(
        self, real: Tensor, fake: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``BCE(D(x), 1 - smoothing) + BCE(D(fake), 0)``; returns the loss and both logit
        vectors ``(N,)``."""
        discriminator = self.gan.discriminator
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
        logits = self.gan.discriminator(fake, labels)
        target = tinymed.ones(*logits.shape, dtype=logits.dtype, backend=logits.backend)
        return F.binary_cross_entropy_with_logits(logits, target)

    def step(self, real: Tensor, z: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """One D step then one G step on the same generated batch ``G(z, labels)``.

        Returns the two losses and ``d_real``/``d_fake``, the mean probability D gave the
        real and the generated images before its step (1/2 both when D is fooled)."""
        generator, discriminator = self.gan.generator, self.gan.discriminator
        fake = generator(z, labels)
        # Detached: the D step must not push gradients into G.
        loss_d, real_logits, fake_logits = self.discriminator_loss(real, fake.detach(), labels)
        self.optimizer_d.zero_grad()
        loss_d.backward()
        self.optimizer_d.step()
        # D is the fixed judge while G learns; freezing it also skips its weight gradients.
        discriminator.requires_grad_(False)
        try:
            loss_g = self.generator_loss(fake, labels)
            self.optimizer_g.zero_grad()
            loss_g.backward()
            self.optimizer_g.step()
        finally:
            discriminator.requires_grad_(True)
        return {
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "d_real": F.sigmoid(real_logits.detach()).mean().item(),
            "d_fake": F.sigmoid(fake_logits.detach()).mean().item(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Both networks and both optimisers, under the names a GAN checkpoint uses."""
        return {
            "generator": self.gan.generator.state_dict(),
            "discriminator": self.gan.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gan.generator.load_state_dict(state["generator"])
        self.gan.discriminator.load_state_dict(state["discriminator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])


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


def _grid(images: np.ndarray, path: Path, title: str) -> Path:
    """A grid of generated images (N, C, H, W) in [-1, 1]."""
    pictures = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    return plots.plot_image_grid((pictures + 1.0) / 2.0, path, nrow=int(math.ceil(math.sqrt(len(images)))), title=title)


def load_gan(path: str | os.PathLike, backend: str = "numpy") -> tuple[DCGAN, dict[str, Any]]:
    """Rebuild the DCGAN a checkpoint holds from its metadata, with both networks' weights,
    in eval mode on ``backend``. Returns ``(gan, metadata)``; a classifier checkpoint is
    refused with a :class:`CheckpointError`."""
    return load_model(
        path, "gan", "dcgan", weights={"generator": "generator", "discriminator": "discriminator"}, backend=backend
    )


# ---------------------------------------------------------------------- a training run


class _GANRun:
    """One GAN training run: data, networks, trainer, and what it has recorded so far."""

    def __init__(self, config: GANConfig, log: Callable[[str], None]) -> None:
        self.config, self.log = config, log
        self.out = Path(config.out)
        backends.get(config.backend)  # a backend that cannot run here fails now, not mid-epoch
        full = load_dataset(config.dataset, "train", data_dir=config.data_dir, data_file=config.data_file)
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
        self.trainer = GANTrainer(self.gan, config.lr, config.betas, config.label_smoothing)
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
            "data_file": config.data_file,
            "data_dir": config.data_dir,
        }
        self.history: list[dict[str, float]] = []
        self.epoch = 0

    # ---------------------------------------------------------------- checkpoints
    def _train_config(self) -> dict[str, Any]:
        """The config as JSON gives it back (tuples become lists), so saved and current compare."""
        return json.loads(json.dumps(asdict(self.config)))

    def save(self) -> None:
        metadata = {
            "kind": "gan",
            "model": model_spec(self.gan),
            "dataset": self.dataset_meta,
            "normalization": NORMALIZATION,
            "epoch": self.epoch,
            "metrics": self.history[-1] if self.history else {},
            "history": self.history,
            "train_config": self._train_config(),
        }
        state = {**self.trainer.state_dict(), "rng": tinymed.get_rng_state(), "fixed_z": self.fixed_z}
        if self.fixed_labels is not None:
            state["fixed_labels"] = self.fixed_labels
        save_checkpoint(self.out / "last.npz", state, metadata)

    def resume(self) -> None:
        """Continue from ``out/last.npz`` with the options it was started with (only where it
        runs, where it writes, and how many epochs in all may change)."""
        path = self.out / "last.npz"
        checkpoint = load_checkpoint(path, kind="gan", model="dcgan")
        saved, current = checkpoint.metadata["train_config"], self._train_config()
        changed = [
            f"{name} {saved.get(name)!r} -> {current[name]!r}"
            for name in current
            if name not in ("backend", "out", "epochs") and saved.get(name) != current[name]
        ]
        if changed:
            raise TrainingError(
                f"--resume continues {path} with the options it was started with; these differ: {'; '.join(changed)}"
            )
        self.trainer.load_state_dict(checkpoint.state)
        tinymed.set_rng_state(checkpoint.state["rng"])
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
        bar = tqdm(
            self.loader,
            desc=f"epoch {self.epoch}/{config.epochs}",
            leave=False,
            disable=not progress,
            unit="batch",
            dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(bar, start=1):
            real = tinymed.from_numpy(x).to(config.backend)
            labels = tinymed.from_numpy(y).to(config.backend) if gan.num_classes else None
            z = tinymed.randn(len(x), config.latent_dim).to(config.backend)
            result = self.trainer.step(real, z, labels)
            if not (math.isfinite(result["loss_d"]) and math.isfinite(result["loss_g"])):
                bar.close()
                kept = self.out / "last.npz"
                keep = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written yet"
                raise TrainingError(
                    f"the GAN losses became D {result['loss_d']}, G {result['loss_g']} at epoch "
                    f"{self.epoch}, step {step}; training stopped ({keep}); try a smaller --lr"
                )
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

    def run(self, progress: bool) -> dict[str, Any]:
        config = self.config
        what = "conditional DCGAN" if self.gan.num_classes else "DCGAN"
        self.log(
            f"training a {what} on {config.dataset} (label {config.label}): {len(self.train_set)} images, "
            f"{config.epochs} epochs, batch {self.loader.batch_size}, backend {config.backend}, out {self.out}"
        )
        self.out.mkdir(parents=True, exist_ok=True)
        elapsed = self.history[-1]["seconds"] if self.history else 0.0
        while self.epoch < config.epochs:
            self.epoch += 1
            start = time.perf_counter()
            row = self.train_epoch(progress)
            elapsed += time.perf_counter() - start
            self.history.append({"epoch": self.epoch, **row, "seconds": elapsed})
            images = generate(self.gan.generator, self.fixed_z, self.fixed_labels, config.backend)
            _grid(
                images, self.out / f"samples_epoch_{self.epoch:03d}.png", title=f"{config.dataset}, epoch {self.epoch}"
            )
            self.save()
            self.log(
                f"epoch {self.epoch:>3}/{config.epochs}  loss D {row['loss_d']:.4f}  loss G {row['loss_g']:.4f}  "
                f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}  [{elapsed:.0f} s]"
            )
        return self.report()

    def report(self) -> dict[str, Any]:
        """Write metrics.json and losses.png."""
        summary = {
            "dataset": self.dataset_meta,
            "model": model_spec(self.gan),
            "epochs": self.epoch,
            "seconds": self.history[-1]["seconds"],
            "final": self.history[-1],
            "history": self.history,
            "tinymed_version": tinymed.__version__,
            "train_config": self._train_config(),
        }
        (self.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        plots.plot_gan_history(
            self.history, self.out / "losses.png", title=f"DCGAN on {self.config.dataset} (label {self.config.label})"
        )
        self.log(f"wrote {self.out}/last.npz, metrics.json, losses.png and samples_epoch_*.png")
        return summary


def train_gan(
    config: GANConfig, resume: bool = False, progress: bool = True, log: Callable[[str], None] = tqdm.write
) -> dict[str, Any]:
    """Train (or with ``resume``, continue) the GAN run ``config`` describes; returns the
    summary written to ``metrics.json``."""
    run = _GANRun(config, log)
    if resume:
        run.resume()
    elif (run.out / "last.npz").exists():
        log(f"note: starting over in {run.out}, replacing its checkpoint (--resume continues it)")
    return run.run(progress)


# ---------------------------------------------------------------------- evaluation


def classifier_features(
    model: nn.Module, dataset: ImageDataset, normalization: dict[str, list[float]], backend: str = "numpy"
) -> np.ndarray:
    """The classifier's penultimate features ``(N, D)`` (``model.forward_features``) of every
    image of ``dataset``, normalised as the classifier was trained."""
    model.eval()
    features = []
    with tinymed.no_grad():
        for x, _ in evaluation_loader(dataset, normalization):
            features.append(model.forward_features(tinymed.from_numpy(x).to(backend)).numpy())
    return np.concatenate(features).astype(np.float64)


def _generated_set(gan: DCGAN, n: int, labels: np.ndarray | None, info: Any, backend: str) -> ImageDataset:
    """n generated images (latents drawn with tinymed's random generator) as a uint8 data set,
    labelled with the conditioning labels (zeros for an unconditional GAN)."""
    z = tinymed.randn(n, gan.latent_dim).numpy()
    images = to_uint8(generate(gan.generator, z, labels, backend))
    return ImageDataset(images.transpose(0, 2, 3, 1), np.zeros(n, np.int64) if labels is None else labels, info)


def evaluate_gan(
    gan: DCGAN,
    gan_metadata: dict[str, Any],
    classifier: nn.Module,
    classifier_metadata: dict[str, Any],
    train_set: ImageDataset,
    val_set: ImageDataset,
    backend: str = "numpy",
    seed: int = 0,
    k: int = 3,
) -> dict[str, Any]:
    """The GAN's Frechet distance to the real validation images on the classifier's features,
    with its two reference points and k-NN precision/recall.

    ``fd``: generated vs val; ``fd_floor``: the real training images vs val (what a perfect
    generator would score with as many samples); ``fd_untrained``: a freshly initialised
    generator of the same config vs val. As many images are generated as the training set
    (restricted to the GAN's class) holds, since the distance's estimate depends on the sample
    sizes; precision and recall compare val with as many generated images as val holds.
    """
    label = gan_metadata["dataset"]["label"]
    train_set, val_set = select_label(train_set, label), select_label(val_set, label)
    channels = classifier_metadata["model"]["config"].get("in_channels")
    if channels != gan.config["channels"]:
        raise CheckpointError(
            f"the classifier reads {channels}-channel images, the GAN makes {gan.config['channels']}-channel ones"
        )
    normalization = classifier_metadata["normalization"]
    # Conditional: the same number of each class as the training images.
    labels = train_set.labels if gan.num_classes else None
    tinymed.manual_seed(seed)
    untrained = DCGAN(**gan.config).to(backend)
    fake = _generated_set(gan, len(train_set), labels, train_set.info, backend)
    fake_untrained = _generated_set(untrained, len(train_set), labels, train_set.info, backend)
    f_train, f_val, f_fake, f_untrained = (
        classifier_features(classifier, s, normalization, backend) for s in (train_set, val_set, fake, fake_untrained)
    )
    precision, recall = knn_precision_recall(f_val, f_fake[: len(f_val)], k=k)
    return {
        "fd": frechet_distance_from_features(f_val, f_fake),
        "fd_floor": frechet_distance_from_features(f_val, f_train),
        "fd_untrained": frechet_distance_from_features(f_val, f_untrained),
        "precision": precision,
        "recall": recall,
        "k": k,
        "n_generated": len(f_fake),
        "n_train": len(f_train),
        "n_val": len(f_val),
        "feature_dim": f_val.shape[1],
    }


# ---------------------------------------------------------------------- the commands
# Each command is add_*_arguments(parser) and run_*(args); the command line (tinymed.cli)
# registers them with its shared --dataset/--data-dir/--data and --backend options.


def _checkpoint_dataset(args: argparse.Namespace, metadata: dict[str, Any], split: str) -> ImageDataset:
    """The split of the data set the checkpoint was trained on (and its file), unless args name another."""
    trained_on = metadata["dataset"]
    name = args.dataset or trained_on["name"]
    data_dir, data_file = args.data_dir, args.data
    if name == trained_on["name"] and data_dir is None and data_file is None:
        data_dir, data_file = trained_on.get("data_dir"), trained_on.get("data_file")
    return load_dataset(name, split, data_dir=data_dir, data_file=data_file)


def _add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="GAN_CHECKPOINT", help="a GAN checkpoint (last.npz of tinymed train gan)")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """``tinymed train gan``'s own options (the data set and backend options come from the CLI)."""
    defaults = GANConfig()
    parser.add_argument(
        "--label",
        default="all",
        metavar="all|K",
        help="train on one class only (its index, e.g. 0 for normal) or on all (default: all)",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a class-conditional GAN (with --label all) that generates a chosen class",
    )
    epochs = ", ".join(f"{n} for {name}" for name, n in DEFAULT_EPOCHS.items())
    parser.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"passes over the training images (default: {epochs}, {FALLBACK_EPOCHS} otherwise)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        metavar="N",
        help=f"images per step (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=defaults.lr,
        metavar="X",
        help=f"Adam's learning rate for both networks (default: {defaults.lr})",
    )
    parser.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        metavar="X",
        help="one-sided label smoothing: real images' target is 1 - X (default: 0, try 0.1)",
    )
    parser.add_argument(
        "--ngf", type=int, default=defaults.ngf, metavar="N", help=f"generator width (default: {defaults.ngf})"
    )
    parser.add_argument(
        "--ndf", type=int, default=defaults.ndf, metavar="N", help=f"discriminator width (default: {defaults.ndf})"
    )
    parser.add_argument(
        "--latent-dim",
        type=int,
        default=defaults.latent_dim,
        metavar="N",
        help=f"length of the latent vector z (default: {defaults.latent_dim})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        metavar="N",
        help=f"makes the run reproducible (default: {defaults.seed})",
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (default: runs/gan-DATASET)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")


def run_train(args: argparse.Namespace) -> None:
    config = GANConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        data_file=args.data,
        label=args.label,
        conditional=args.conditional,
        backend=args.backend,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        label_smoothing=args.label_smoothing,
        latent_dim=args.latent_dim,
        ngf=args.ngf,
        ndf=args.ndf,
        seed=args.seed,
        out=args.out,
    )
    train_gan(config, resume=args.resume)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument("--n", type=int, required=True, metavar="N", help="how many images to generate")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="picks the latent vectors (default: 0)")
    parser.add_argument(
        "--label",
        type=int,
        metavar="K",
        help="for a conditional GAN, generate only class K (default: the training set's class mix)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.npz",
        help="images uint8 (N, 28, 28) under 'images' (and 'labels' (N, 1) when conditional)",
    )


def run_sample(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise DatasetError(f"--n must be at least 1, got {args.n}")
    gan, metadata = load_gan(args.checkpoint, args.backend)
    classes = metadata["dataset"]["labels"]
    if args.label is not None and not (gan.num_classes and 0 <= args.label < gan.num_classes):
        raise CheckpointError(
            f"--label {args.label}: {args.checkpoint} is an unconditional GAN"
            if not gan.num_classes
            else f"--label {args.label} is not one of the GAN's classes 0..{gan.num_classes - 1}"
        )
    tinymed.manual_seed(args.seed)
    labels = None
    if gan.num_classes:
        if args.label is not None:
            labels = np.full(args.n, args.label, np.int64)
        else:
            counts = np.asarray(metadata["dataset"]["class_counts"], np.float64)
            labels = tinymed.random.generator().choice(gan.num_classes, size=args.n, p=counts / counts.sum())
    z = tinymed.randn(args.n, gan.latent_dim).numpy()
    images = to_uint8(generate(gan.generator, z, labels, args.backend))
    images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels.astype(np.uint8)[:, None]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    mix = "" if labels is None else ", " + ", ".join(f"{np.sum(labels == i)} {c}" for i, c in enumerate(classes))
    print(f"wrote {args.n} generated images{mix} to {out}")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument(
        "--classifier",
        required=True,
        metavar="CNN_CHECKPOINT",
        help="a trained tinymed classifier (best.npz of tinymed train cnn) whose features are compared",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="picks the latent vectors (default: 0)")
    parser.add_argument("--json", metavar="PATH", help="also write fd, fd_floor, fd_untrained, precision, recall here")


def run_evaluate(args: argparse.Namespace) -> None:
    gan, metadata = load_gan(args.checkpoint, args.backend)
    classifier, classifier_metadata = load_classifier(args.classifier, args.backend)
    train_set, val_set = (_checkpoint_dataset(args, metadata, split) for split in ("train", "val"))
    report = evaluate_gan(gan, metadata, classifier, classifier_metadata, train_set, val_set, args.backend, args.seed)
    print(
        f"{args.checkpoint}: DCGAN trained on {metadata['dataset']['name']} (label {metadata['dataset']['label']}, "
        f"epoch {metadata['epoch']})"
    )
    print(
        f"features: {report['feature_dim']} from {classifier_metadata['model']['name']} ({args.classifier}); "
        f"{report['n_generated']} generated, {report['n_train']} train, {report['n_val']} val images"
    )
    for key, label in (
        ("fd", "Frechet distance to val, generated"),
        ("fd_floor", "Frechet distance to val, train (floor)"),
        ("fd_untrained", "Frechet distance to val, untrained G"),
        ("precision", f"precision (k={report['k']})"),
        ("recall", f"recall (k={report['k']})"),
    ):
        print(f"  {label:<40} {report[key]:.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


def add_repair_arguments(parser: argparse.ArgumentParser) -> None:
    _add_checkpoint_argument(parser)
    parser.add_argument("--image", type=int, required=True, metavar="N", help="index of the image in the split")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="(default: val)")
    parser.add_argument(
        "--mask",
        default="box",
        choices=MASKS,
        help="box: a square hole; random: scattered missing pixels (default: box)",
    )
    parser.add_argument("--box-size", type=int, default=10, metavar="PX", help="side of the box hole (default: 10)")
    parser.add_argument(
        "--missing",
        type=float,
        default=0.6,
        metavar="P",
        help="fraction of pixels missing for --mask random (default: 0.6)",
    )
    parser.add_argument("--steps", type=int, default=300, metavar="N", help="optimisation steps (default: 300)")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="places the mask and the start latents (default: 0)"
    )
    parser.add_argument("--out", metavar="PNG", help="the figure (default: CHECKPOINT_DIR/repair-SPLIT-N-MASK.png)")


def run_repair(args: argparse.Namespace) -> None:
    gan, metadata = load_gan(args.checkpoint, args.backend)
    dataset = _checkpoint_dataset(args, metadata, args.split)
    if not 0 <= args.image < len(dataset):
        raise DatasetError(
            f"--image {args.image} is out of range: the {args.split} split of {dataset.info.name} "
            f"has {len(dataset)} images, 0 to {len(dataset) - 1}"
        )
    images, labels = dataset.batch(np.array([args.image]))
    image = images[0]
    tinymed.manual_seed(args.seed)
    known = make_mask(
        args.mask, image.shape[1:], tinymed.random.generator(), box_size=args.box_size, missing=args.missing
    )
    label = int(labels[0]) if gan.num_classes else None
    result = inpaint(gan, image, known, label=label, steps=args.steps, backend=args.backend)
    hole = ~known
    error = np.abs(result.repaired - image)[:, hole].mean()
    baseline = np.abs(image[:, known].mean() - image)[:, hole].mean()
    masked = np.where(known, image, 0.5)
    panels = [masked, result.generated, result.repaired, image]
    titles = ["masked input", "G(z*), generated", "repaired", "truth"]
    out = (
        Path(args.out)
        if args.out
        else Path(args.checkpoint).parent / f"repair-{args.split}-{args.image}-{args.mask}.png"
    )
    pictures = np.stack([p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0) for p in panels])
    plots.plot_image_grid(
        pictures,
        out,
        nrow=len(panels),
        titles=titles,
        title=f"{dataset.info.name} {args.split} image {args.image}, {args.mask} mask "
        f"({hole.sum()} of {hole.size} pixels missing)",
    )
    print(
        f"repaired {hole.sum()} missing pixels of {dataset.info.name} {args.split} image {args.image}: mean absolute "
        f"error in the hole {error:.4f} (filling with the mean known pixel: {baseline:.4f})"
    )
    print(f"wrote {out}")
