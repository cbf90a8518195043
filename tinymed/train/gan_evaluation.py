"""Evaluating a trained DCGAN (``tinymed evaluate-gan``).

The score is the Frechet distance (the FID formula, :func:`tinymed.metrics.frechet_distance`)
between Gaussians fitted to features of real and generated images, where the features are the
penultimate layer of a trained tinymed classifier (``forward_features``) rather than
Inception's, plus k-nearest-neighbour precision and recall on the same features
(:func:`tinymed.metrics.knn_precision_recall`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinymed
from tinymed import nn
from tinymed.data import ImageDataset
from tinymed.metrics import frechet_distance_from_features, knn_precision_recall
from tinymed.models.dcgan import DCGAN
from tinymed.train.checkpoint import CheckpointError
from tinymed.train.classifier_evaluation import evaluation_loader
from tinymed.train.gan import generate, select_label, to_uint8

__all__ = ["classifier_features", "evaluate_gan"]


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
