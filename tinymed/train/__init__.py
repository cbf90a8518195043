"""Trainers and their checkpoints: :mod:`~tinymed.train.classifier` trains a CNN,
:mod:`~tinymed.train.checkpoint` saves and restores any run."""

from tinymed.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from tinymed.train.classifier import TrainConfig, TrainingError, load_classifier, train_classifier

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
