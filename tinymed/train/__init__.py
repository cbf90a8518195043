"""Trainers and their checkpoints: :mod:`~tinymed.train.classifier` trains a CNN,
:mod:`~tinymed.train.gan` a DCGAN; both write through :mod:`~tinymed.train.run` (the run
directory, resuming) and stop through :mod:`~tinymed.train.divergence`;
:mod:`~tinymed.train.checkpoint` saves and restores any run."""

from tinymed.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from tinymed.train.classifier import TrainConfig, load_classifier, train_classifier
from tinymed.train.run import TrainingError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "TrainConfig",
    "TrainingError",
    "load_classifier",
    "train_classifier",
]
