"""Evaluating a classifier (``tinymed evaluate``, and the trainer's validation).

The figures are MedMNIST's ACC and AUC (:mod:`tinymed.metrics`), and for a binary task the
operating point's sensitivity and specificity, with two readings that do not depend on the
validation split's class balance:

* balanced accuracy, ``(sensitivity + specificity) / 2``;
* the accuracy at another class prior, ``pi * specificity + (1 - pi) * sensitivity``, here at
  PneumoniaMNIST's official test balance, pi = 234 / 624 = 37.5 % normal (its validation and
  training splits hold about 26 %).

:func:`shift_evaluation` gives the same figures on the shift-proxy validation
(:mod:`tinymed.data.shift`): the split under each acquisition perturbation, and their mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

import tinymed
import tinymed.functional as F
from tinymed import metrics, nn
from tinymed.data import DataLoader, ImageDataset, Normalize
from tinymed.data.shift import SHIFT_SEED, shifted_splits
from tinymed.errors import DatasetError
from tinymed.train.checkpoint import load_model

__all__ = [
    "PRIOR_NEGATIVE_FRACTION",
    "input_normalization",
    "evaluation_loader",
    "check_every_class",
    "classification_loss",
    "Predictions",
    "predict",
    "classification_metrics",
    "shift_evaluation",
    "load_classifier",
]

# The fraction of negatives (class 0, "normal") in PneumoniaMNIST's official test split,
# 234 of 624 images: the prior at which "acc_at_prior" reads the operating point.
PRIOR_NEGATIVE_FRACTION = 0.375

# The figures averaged over the shift-proxy conditions.
SHIFT_FIGURES = ("auc", "acc", "sensitivity", "specificity", "balanced_acc", "acc_at_prior")


def input_normalization(normalization: dict[str, list[float]]) -> Normalize:
    """The transform that turns images in [0, 1] into the network's input, from the
    ``normalization`` entry a checkpoint stores."""
    return Normalize(normalization["mean"], normalization["std"])


def evaluation_loader(dataset: ImageDataset, normalization: dict[str, list[float]]) -> DataLoader:
    """Every image of ``dataset`` in order, normalised, without augmentation."""
    return DataLoader(dataset, batch_size=512, transform=input_normalization(normalization))


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


def classification_loss(
    logits: tinymed.Tensor, labels: np.ndarray, multilabel: bool, weight: tinymed.Tensor | None = None
) -> tinymed.Tensor:
    """Cross-entropy of the class logits ``(N, K)`` (with class weights ``weight`` ``(K,)``, as
    ``F.cross_entropy``'s: a weighted mean); binary cross-entropy per label for multi-label."""
    target = tinymed.tensor(labels.astype(np.float32) if multilabel else labels).to(logits.backend)
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target, weight)


@dataclass
class Predictions:
    """A model's outputs on a data set: labels as stored, scores the class probabilities
    ``(N, K)`` (softmax; sigmoid per label for multi-label), and the mean loss."""

    labels: np.ndarray
    scores: np.ndarray
    loss: float


def predict(model: nn.Module, loader: DataLoader, backend: str = "numpy", multilabel: bool = False) -> Predictions:
    """Run the model in eval mode over every batch of ``loader`` (no gradients); the loss is
    the unweighted one."""
    model.eval()
    scores, labels, total = [], [], 0.0
    with tinymed.no_grad():
        for x, y in loader:
            logits = model(tinymed.from_numpy(x).to(backend))
            total += classification_loss(logits, y, multilabel).item() * len(y)
            probabilities = F.sigmoid(logits) if multilabel else F.softmax(logits, dim=1)
            scores.append(probabilities.numpy())
            labels.append(y)
    labels_all = np.concatenate(labels)
    return Predictions(labels_all, np.concatenate(scores).astype(np.float64), total / len(labels_all))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, multilabel: bool = False) -> dict[str, Any]:
    """MedMNIST's ACC and AUC; for a single-label task the balanced accuracy and the confusion
    matrix (``[[TN, FP], [FN, TP]]`` for two classes, else K x K); for a binary task also
    sensitivity, specificity and ``acc_at_prior``, the accuracy at
    :data:`PRIOR_NEGATIVE_FRACTION` negatives (see the module docstring)."""
    result: dict[str, Any] = {
        "acc": metrics.accuracy(labels, scores),
        "auc": metrics.roc_auc_score(labels, scores),
        "n": int(len(labels)),
    }
    if multilabel:
        return result
    predicted = metrics.predictions(scores)
    result["balanced_acc"] = metrics.balanced_accuracy(labels, predicted)
    if scores.shape[1] == 2:
        result["sensitivity"] = metrics.sensitivity(labels, predicted)
        result["specificity"] = metrics.specificity(labels, predicted)
        result["acc_at_prior"] = metrics.accuracy_at_prior(
            result["sensitivity"], result["specificity"], PRIOR_NEGATIVE_FRACTION
        )
    result["confusion_matrix"] = metrics.confusion_matrix(labels, predicted, num_classes=scores.shape[1]).tolist()
    return result


def shift_evaluation(
    model: nn.Module,
    dataset: ImageDataset,
    normalization: dict[str, list[float]],
    backend: str = "numpy",
    seed: int = SHIFT_SEED,
) -> dict[str, Any]:
    """The model on the shift-proxy validation of ``dataset`` (see :mod:`tinymed.data.shift`):
    ``conditions``, one row per perturbation and strength with :func:`classification_metrics`'
    figures (no confusion matrix), and ``mean``, each figure averaged over the rows."""
    multilabel = dataset.info.multilabel
    conditions = []
    for name, strength, perturbed in shifted_splits(dataset, seed):
        result = predict(model, evaluation_loader(perturbed, normalization), backend, multilabel)
        figures = classification_metrics(result.labels, result.scores, multilabel)
        figures.pop("confusion_matrix", None)
        conditions.append({"perturbation": name, "strength": strength, **figures})
    mean = {key: float(np.mean([row[key] for row in conditions])) for key in SHIFT_FIGURES if key in conditions[0]}
    return {"seed": seed, "prior_negative_fraction": PRIOR_NEGATIVE_FRACTION, "conditions": conditions, "mean": mean}


def load_classifier(path: str | os.PathLike, backend: str = "numpy") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the classifier a checkpoint holds from its metadata alone, with its weights,
    in eval mode on ``backend``. Returns ``(model, metadata)``."""
    return load_model(path, kind="classifier", backend=backend)
