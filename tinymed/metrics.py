"""Evaluation metrics for classifiers and generators, in plain NumPy.

Classification follows MedMNIST's evaluator (``medmnist/evaluator.py``), which is what the
MedMNIST papers report, so tinymed's figures can be compared with theirs:

* **binary** (one positive-class score per sample, or two class scores whose last column
  is the positive class): AUC of the positive-class score; ACC predicts 1 when that score
  is ``> 0.5``.
* **multi-class** (``(N, K)`` scores, ``K > 2``, labels ``(N,)`` in ``0..K-1``): AUC is the
  one-vs-rest macro average ``(1/K) sum_k AUC(y == k, score[:, k])``; ACC predicts the argmax.
* **multi-label** (labels and scores both ``(N, K)``, e.g. ChestMNIST): AUC and ACC are the
  averages over the K binary columns.

ROC AUC equals the Mann-Whitney statistic: the probability that a random positive scores
higher than a random negative, ties counting one half::

    AUC = (1 / (P * N)) * sum_{i positive} sum_{j negative} [s_i > s_j] + 0.5 [s_i == s_j]

It is computed, as scikit-learn does, as the trapezoid area under the ROC curve built over
the *distinct* score thresholds; a run of tied scores becomes one diagonal step of the curve,
whose trapezoid is exactly that half credit.

Segmentation compares a predicted binary mask B with the true mask A, pixel by pixel::

    Dice = 2 |A n B| / (|A| + |B|),      IoU = |A n B| / |A u B| = Dice / (2 - Dice)

Both are 1 for a perfect mask and 0 for masks that do not overlap, and, unlike pixel accuracy,
neither counts the background both masks agree on, so a small structure weighs as much as a
large one. When both masks are empty the fractions are 0/0; tinymed scores that 1 (nothing to
find, and nothing found), as MONAI's ``ignore_empty=False`` does. A mask found where the truth is
empty, or an empty prediction for a non-empty truth, scores 0.

The Frechet distance between Gaussians is the FID formula (Heusel et al., 2017).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "knn_precision_recall",
    "roc_curve",
    "roc_auc_score",
    "predictions",
    "accuracy",
    "confusion_matrix",
    "sensitivity",
    "specificity",
    "balanced_accuracy",
    "accuracy_at_prior",
    "frechet_distance",
    "frechet_distance_from_features",
    "dice_score",
    "iou_score",
]


def _squeeze_column(a: np.ndarray) -> np.ndarray:
    """MedMNIST stores labels as ``(N, 1)`` and a one-logit model scores ``(N, 1)``: read ``(N,)``."""
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def _as_binary_labels(name: str, y_true: np.ndarray) -> np.ndarray:
    """Checks that y_true holds only 0 and 1 and returns it as int64."""
    y = np.asarray(y_true)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(
            f"{name}: y_true must hold only the labels 0 and 1 for a binary task, "
            f"got the values {np.unique(y)[:10].tolist()}"
        )
    return y.astype(np.int64)


def _check_scores(name: str, y_score: np.ndarray) -> np.ndarray:
    scores = np.asarray(y_score, dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"{name}: y_score contains NaN")
    return scores


def _split_task(name: str, y_true, y_score) -> tuple[str, np.ndarray, np.ndarray]:
    """Decides the task from the shapes (see the module docstring) and validates them.

    Returns ``(task, y_true, y_score)`` with task ``"binary"`` (both 1-D: labels and the
    positive-class score), ``"multiclass"`` (labels ``(N,)``, scores ``(N, K)``) or
    ``"multilabel"`` (both ``(N, K)``). An ``(N, 1)`` array is read as ``(N,)``.
    """
    y_true = _squeeze_column(np.asarray(y_true))
    y_score = _squeeze_column(_check_scores(name, y_score))
    if y_true.ndim not in (1, 2) or y_score.ndim not in (1, 2):
        raise ValueError(
            f"{name}: y_true must be (N,) or (N, K) and y_score (N,) or (N, K), got {y_true.shape} and {y_score.shape}"
        )
    if y_true.shape[0] != y_score.shape[0]:
        raise ValueError(f"{name}: y_true and y_score have different lengths: {y_true.shape} and {y_score.shape}")
    if y_true.ndim == 2:
        if y_true.shape != y_score.shape:
            raise ValueError(
                f"{name}: multi-label y_true {y_true.shape} needs y_score of the same shape, got {y_score.shape}"
            )
        return "multilabel", _as_binary_labels(name, y_true), y_score
    if y_score.ndim == 1:
        return "binary", _as_binary_labels(name, y_true), y_score
    n_classes = y_score.shape[1]
    if n_classes == 2:
        return "binary", _as_binary_labels(name, y_true), y_score[:, -1]
    labels = y_true.astype(np.int64)
    if (labels != y_true).any() or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"{name}: y_true must hold class indices in 0..{n_classes - 1} for y_score of shape {y_score.shape}"
        )
    return "multiclass", labels, y_score


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of a binary classifier, as scikit-learn's with ``drop_intermediate=False``.

    y_true ``(N,)`` in {0, 1}; y_score ``(N,)``, higher meaning more likely positive.
    The thresholds are ``inf`` followed by the distinct scores in decreasing order; at
    threshold t a sample is called positive when ``score >= t``::

        tpr(t) = #{positives with score >= t} / P,   fpr(t) = #{negatives with score >= t} / N

    Returns ``(fpr, tpr, thresholds)``, each of length (number of distinct scores + 1),
    starting at (0, 0) and ending at (1, 1).
    """
    y_score = _check_scores("roc_curve", y_score)
    y_true = _as_binary_labels("roc_curve", y_true)
    if y_true.ndim != 1 or y_true.shape != y_score.shape:
        raise ValueError(
            f"roc_curve: y_true and y_score must be 1-D of the same length, got {y_true.shape} and {y_score.shape}"
        )
    n_pos = int(y_true.sum())
    if n_pos == 0 or n_pos == y_true.size:
        raise ValueError(
            "roc_curve: only one class present in y_true; the ROC curve needs both positives and negatives"
        )
    order = np.argsort(-y_score, kind="stable")
    scores, labels = y_score[order], y_true[order]
    # The last position of each run of equal scores: everything up to it is >= that score.
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_run]
    fps = last_of_run + 1 - tps
    fpr = np.r_[0.0, fps / (y_true.size - n_pos)]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return fpr, tpr, thresholds


def _binary_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr))


def roc_auc_score(y_true, y_score) -> float:
    """Area under the ROC curve, with MedMNIST's conventions for each task.

    binary: y_true ``(N,)`` (or ``(N, 1)``) in {0, 1} and y_score ``(N,)`` or ``(N, 2)``
    (the positive-class column is the last). multi-class: y_score ``(N, K)``, the one-vs-rest
    macro average. multi-label: y_true and y_score ``(N, K)``, the mean of the column AUCs.
    Ties get half credit, exactly as scikit-learn (see the module docstring). Raises
    ValueError when a class needed for an AUC has no sample.
    """
    task, y_true, y_score = _split_task("roc_auc_score", y_true, y_score)
    if task == "binary":
        return _binary_auc(y_true, y_score)
    if task == "multilabel":
        columns = [(y_true[:, k], y_score[:, k]) for k in range(y_score.shape[1])]
    else:
        columns = [((y_true == k).astype(np.int64), y_score[:, k]) for k in range(y_score.shape[1])]
    return float(np.mean([_binary_auc(t, s) for t, s in columns]))


def predictions(y_score, threshold: float = 0.5) -> np.ndarray:
    """MedMNIST's hard predictions from scores, as int64.

    ``(N,)`` (or ``(N, 1)``) scores or ``(N, 2)`` class scores: ``1`` where the positive-class score is
    ``> threshold``. ``(N, K)`` with ``K > 2``: the argmax. For multi-label scores apply the
    threshold yourself (``scores > threshold``), since the shape alone cannot tell them apart.
    """
    scores = _squeeze_column(_check_scores("predictions", y_score))
    if scores.ndim == 1:
        return (scores > threshold).astype(np.int64)
    if scores.ndim == 2 and scores.shape[1] == 2:
        return (scores[:, -1] > threshold).astype(np.int64)
    if scores.ndim == 2 and scores.shape[1] > 2:
        return scores.argmax(axis=1).astype(np.int64)
    raise ValueError(f"predictions: y_score must be (N,) or (N, K) with K >= 2, got {scores.shape}")


def accuracy(y_true, y_score, threshold: float = 0.5) -> float:
    """Fraction of correct predictions, MedMNIST's ACC.

    Shapes as :func:`roc_auc_score`; predictions as :func:`predictions` (threshold on the
    positive-class score for binary tasks, argmax for multi-class); for multi-label, the
    mean over the K columns of the thresholded accuracy.
    """
    task, y_true, y_score = _split_task("accuracy", y_true, y_score)
    y_pred = (y_score > threshold) if task == "multilabel" else predictions(y_score, threshold)
    return float(np.mean(y_pred == y_true))


def _check_pair(name: str, y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """Two 1-D integer label arrays of the same length (``(N, 1)`` read as ``(N,)``)."""
    arrays = []
    for arg, value in (("y_true", y_true), ("y_pred", y_pred)):
        a = _squeeze_column(np.asarray(value))
        if a.ndim != 1:
            raise ValueError(f"{name}: {arg} must be a 1-D array of class labels, got shape {a.shape}")
        labels = a.astype(np.int64)
        if (labels != a).any() or (labels < 0).any():
            raise ValueError(f"{name}: {arg} must hold non-negative integer class labels")
        arrays.append(labels)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"{name}: y_true and y_pred have different lengths: {arrays[0].shape} and {arrays[1].shape}")
    return arrays[0], arrays[1]


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class i predicted as class j (scikit-learn's layout).

    y_true, y_pred ``(N,)`` integer labels; num_classes defaults to ``max(label) + 1`` (at
    least 2). Returns an int64 ``(num_classes, num_classes)`` array; for binary labels
    ``[[TN, FP], [FN, TP]]``.
    """
    y_true, y_pred = _check_pair("confusion_matrix", y_true, y_pred)
    seen = max(int(y_true.max(initial=0)), int(y_pred.max(initial=0))) + 1
    if num_classes is None:
        num_classes = max(seen, 2)
    elif seen > num_classes:
        raise ValueError(
            f"confusion_matrix: a label is {seen - 1}, outside 0..{num_classes - 1} (num_classes={num_classes})"
        )
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _one_vs_rest_counts(name: str, y_true, y_pred, pos_label: int) -> tuple[int, int, int, int]:
    """(TP, FN, TN, FP) treating pos_label as positive and every other label as negative."""
    y_true, y_pred = _check_pair(name, y_true, y_pred)
    actual, called = y_true == pos_label, y_pred == pos_label
    return (
        int(np.sum(actual & called)),
        int(np.sum(actual & ~called)),
        int(np.sum(~actual & ~called)),
        int(np.sum(~actual & called)),
    )


def sensitivity(y_true, y_pred, pos_label: int = 1) -> float:
    """True positive rate (recall): ``TP / (TP + FN)``, the fraction of positives found.

    Raises ValueError when y_true has no sample of pos_label (the rate is undefined).
    """
    tp, fn, _, _ = _one_vs_rest_counts("sensitivity", y_true, y_pred, pos_label)
    if tp + fn == 0:
        raise ValueError(f"sensitivity: y_true has no sample of the positive label {pos_label}")
    return tp / (tp + fn)


def specificity(y_true, y_pred, pos_label: int = 1) -> float:
    """True negative rate: ``TN / (TN + FP)``, the fraction of negatives called negative.

    Raises ValueError when every sample of y_true is pos_label (no negatives).
    """
    _, _, tn, fp = _one_vs_rest_counts("specificity", y_true, y_pred, pos_label)
    if tn + fp == 0:
        raise ValueError(f"specificity: y_true has no negative sample (every label is {pos_label})")
    return tn / (tn + fp)


def balanced_accuracy(y_true, y_pred) -> float:
    """The mean over classes of each class's recall (scikit-learn's ``balanced_accuracy_score``);
    for two classes ``(sensitivity + specificity) / 2``. Unlike ACC it does not depend on the
    class balance of the sample, so a test set with other proportions has the same expectation.

    Raises ValueError when y_true has a single class (a rate is undefined).
    """
    y_true, y_pred = _check_pair("balanced_accuracy", y_true, y_pred)
    classes = np.unique(y_true)
    if len(classes) < 2:
        raise ValueError(f"balanced_accuracy: y_true holds one class only ({classes.tolist()})")
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in classes]))


def accuracy_at_prior(sensitivity: float, specificity: float, negative_fraction: float) -> float:
    """The accuracy the same operating point would have on a sample whose fraction of negatives
    is ``negative_fraction`` (pi): ``pi * specificity + (1 - pi) * sensitivity``.

    Accuracy is that mix of the two rates at the sample's own balance; the rates do not depend
    on the balance, so this reads a validation split as a test split of another balance would.
    """
    if not 0.0 <= negative_fraction <= 1.0:
        raise ValueError(f"accuracy_at_prior: negative_fraction must be in [0, 1], got {negative_fraction}")
    return negative_fraction * specificity + (1.0 - negative_fraction) * sensitivity


def _overlap(name: str, y_true, y_pred, axis) -> tuple[np.ndarray, np.ndarray]:
    """``(|A n B|, |A| + |B|)`` of two binary masks of the same shape, counted over ``axis``."""
    masks = []
    for arg, value in (("y_true", y_true), ("y_pred", y_pred)):
        a = np.asarray(value)
        if not np.isin(a, (0, 1)).all():
            raise ValueError(
                f"{name}: {arg} must be a binary mask (bool, or 0 and 1), got the values {np.unique(a)[:10].tolist()}; "
                "threshold probabilities first, e.g. y_pred > 0.5"
            )
        masks.append(a.astype(bool))
    if masks[0].shape != masks[1].shape:
        raise ValueError(
            f"{name}: y_true and y_pred must have the same shape, got {masks[0].shape} and {masks[1].shape}"
        )
    true, pred = masks
    intersection = np.sum(true & pred, axis=axis, dtype=np.int64)
    sizes = np.sum(true, axis=axis, dtype=np.int64) + np.sum(pred, axis=axis, dtype=np.int64)
    return intersection, sizes


def _score(ratio: np.ndarray, axis) -> float | np.ndarray:
    return float(ratio) if axis is None else ratio


def dice_score(y_true, y_pred, axis: int | tuple[int, ...] | None = None) -> float | np.ndarray:
    """Dice coefficient of binary masks: ``2 |A n B| / (|A| + |B|)``, 1 when both are empty.

    y_true, y_pred: masks of the same shape, bool or 0/1. ``axis=None`` scores the whole arrays
    as one mask and returns a float; ``axis=(1, 2)`` on ``(N, H, W)`` masks returns the ``(N,)``
    scores of the N images (average those for the usual "mean Dice"). See the module docstring
    for the empty-mask convention.
    """
    intersection, sizes = _overlap("dice_score", y_true, y_pred, axis)
    return _score(np.where(sizes == 0, 1.0, 2.0 * intersection / np.maximum(sizes, 1)), axis)


def iou_score(y_true, y_pred, axis: int | tuple[int, ...] | None = None) -> float | np.ndarray:
    """Intersection over union (Jaccard index) of binary masks: ``|A n B| / |A u B|``, 1 when
    both are empty. Arguments and result as :func:`dice_score`; ``IoU = Dice / (2 - Dice)``.
    """
    intersection, sizes = _overlap("iou_score", y_true, y_pred, axis)
    union = sizes - intersection
    return _score(np.where(union == 0, 1.0, intersection / np.maximum(union, 1)), axis)


def _sqrt_psd(name: str, matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition.

    ``M = V diag(w) V^T  =>  sqrt(M) = V diag(sqrt(w)) V^T``. Round-off can leave tiny
    negative eigenvalues; they are clipped to 0 (a covariance has none).
    """
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    if eigenvalues.min(initial=0.0) < -1e-6 * max(1.0, abs(eigenvalues).max()):
        raise ValueError(
            f"frechet_distance: {name} is not positive semi-definite (smallest eigenvalue {eigenvalues.min():.3g})"
        )
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)::

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    This is the FID formula (FID reports d^2, as here). ``(sigma1 sigma2)^(1/2)`` is not
    symmetric, but its trace equals that of ``(sqrt(sigma1) sigma2 sqrt(sigma1))^(1/2)``, the
    square root of a symmetric PSD matrix, which an eigendecomposition gives stably without
    SciPy. mu ``(D,)``, sigma ``(D, D)`` symmetric PSD; computed in float64.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: needs mu1, mu2 of shape (D,) and sigma1, sigma2 of "
            f"shape (D, D); got {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    root1 = _sqrt_psd("sigma1", sigma1)
    # A sigma2 that is not PSD makes this product indefinite, and is reported here.
    cross = _sqrt_psd("sqrt(sigma1) sigma2 sqrt(sigma1)", root1 @ sigma2 @ root1)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(cross))


def frechet_distance_from_features(features1, features2) -> float:
    """:func:`frechet_distance` between Gaussians fitted to two feature sets.

    features ``(N1, D)`` and ``(N2, D)``, one row per sample; the fit is the sample mean and
    the unbiased sample covariance (``np.cov``, divisor N - 1), as pytorch-fid does.
    """
    stats = []
    for name, features in (("features1", features1), ("features2", features2)):
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"frechet_distance_from_features: {name} must be (N, D) with N >= 2, got shape {f.shape}")
        stats.append((f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])))
    if stats[0][0].shape != stats[1][0].shape:
        raise ValueError(
            f"frechet_distance_from_features: features1 and features2 have different "
            f"feature sizes D: {np.shape(features1)} and {np.shape(features2)}"
        )
    (mu1, sigma1), (mu2, sigma2) = stats
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))``, from ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product)."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., 2019) of generated features.

    Each sample's neighbourhood is the ball reaching its k-th nearest neighbour within its own
    set; the union of the balls estimates that set's manifold. ``precision`` is the fraction
    of generated samples inside the real manifold (are the samples realistic?), ``recall``
    the fraction of real samples inside the generated manifold (is all of the data covered?).
    real ``(N, D)``, fake ``(M, D)``; k the paper's 3 by default.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"knn_precision_recall: real and fake must be (N, D) and (M, D), got {real.shape}, {fake.shape}"
        )
    if min(len(real), len(fake)) <= k:
        raise ValueError(
            f"knn_precision_recall: each set needs more than k={k} samples, got {len(real)} and {len(fake)}"
        )

    def radii(features: np.ndarray) -> np.ndarray:
        # Column 0 after sorting is the sample's distance to itself.
        return np.partition(_pairwise_distances(features, features), k, axis=1)[:, k]

    between = _pairwise_distances(real, fake)
    precision = (between <= radii(real)[:, None]).any(axis=0).mean()
    recall = (between <= radii(fake)[None, :]).any(axis=1).mean()
    return float(precision), float(recall)
