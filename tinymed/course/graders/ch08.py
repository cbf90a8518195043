"""Graders of chapter 8, Diagnosing pneumonia.

8.1 ``sensitivity_specificity(matrix, positive)``: one class against the rest of a K x K
    confusion matrix, against :func:`tinymed.metrics.sensitivity` and ``specificity`` on labels
    drawn at random; the layout (rows true), and a ValueError where a rate is undefined.
8.2 ``roc_auc_by_ranks(y_true, y_score)``: against :func:`tinymed.metrics.roc_auc_score` with
    and without ties, at the extremes (all tied, perfect, reversed), and a ValueError for one class.
8.3 ``weighted_cross_entropy(logits, labels, weight)``: against ``F.cross_entropy(weight=...)``,
    the weighted mean's denominator, logits of +-1000, and its gradient by gradcheck.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import tinymed as tm
import tinymed.functional as F
from tinymed import metrics
from tinymed.course.grading import Exercise, Fail, expect, expect_close, expect_gradcheck

__all__ = ["EXERCISES"]


def _expect_value_error(call: Any, hint: str) -> None:
    try:
        call()
    except ValueError:
        return
    except ZeroDivisionError:
        raise Fail(f"ZeroDivisionError: {hint}") from None
    raise Fail(hint)


def _grade_sensitivity_specificity(ns: Mapping[str, Any]) -> None:
    rates = ns["sensitivity_specificity"]
    binary = np.array([[50, 10], [5, 35]])  # TN FP / FN TP
    got = rates(binary, 1)
    expect(
        isinstance(got, tuple) and len(got) == 2,
        f"return a pair (sensitivity, specificity), got {type(got).__name__}",
    )
    if np.allclose(got, (35 / 45, 50 / 55)):
        raise Fail(
            "on [[50, 10], [5, 35]] you returned TP/(TP+FP) and TN/(TN+FN), the predictive values: rows are the "
            "true class, so sensitivity divides by a row sum, matrix[positive, :].sum()"
        )
    if np.allclose(got, (50 / 60, 35 / 40)):
        raise Fail("on [[50, 10], [5, 35]] you returned the rates of class 0: use the class `positive` you are given")
    if np.isclose(got[0], 35 / 45):
        raise Fail(
            "on [[50, 10], [5, 35]] your sensitivity is 35/45 = TP/(TP+FP), the positive predictive value: rows are "
            "the true class, so divide TP by the row of the ill, matrix[positive, :].sum() = 40"
        )
    if np.isclose(got[1], 50 / 55):
        raise Fail(
            "on [[50, 10], [5, 35]] your specificity is 50/55 = TN/(TN+FN), the negative predictive value: divide "
            "TN by the rows of the healthy (every row but `positive`), here 50 + 10 = 60"
        )
    expect_close(got, (35 / 40, 50 / 60), "(sensitivity, specificity) of [[50, 10], [5, 35]] for class 1")
    expect_close(rates(binary, 0), (50 / 60, 35 / 40), "the same matrix for class 0", "class 0 is now the positive one")
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 4, 300)
    called = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 4, 300))
    matrix = metrics.confusion_matrix(truth, called, num_classes=4)
    for k in range(4):
        want = (metrics.sensitivity(truth, called, pos_label=k), metrics.specificity(truth, called, pos_label=k))
        expect_close(
            rates(matrix, k),
            want,
            f"class {k} of a 4 x 4 confusion matrix",
            "with K classes, the negatives are every row but `positive`: TN counts the images of other classes "
            "not called `positive`, whatever else they were called",
        )
    expect(
        all(isinstance(v, float) for v in rates(matrix, 2)),
        f"return Python floats, got {[type(v).__name__ for v in rates(matrix, 2)]} (wrap each in float())",
    )
    empty_row = np.array([[40, 2, 1], [0, 0, 0], [3, 4, 30]])
    _expect_value_error(
        lambda: rates(empty_row, 1),
        "class 1 of [[40, 2, 1], [0, 0, 0], [3, 4, 30]] has no image, so its sensitivity is 0/0: raise ValueError",
    )
    _expect_value_error(
        lambda: rates(np.array([[0, 0], [3, 7]]), 1),
        "in [[0, 0], [3, 7]] no image is of class 0, so the specificity is 0/0: raise ValueError",
    )


def _grade_roc_auc_by_ranks(ns: Mapping[str, Any]) -> None:
    auc = ns["roc_auc_by_ranks"]
    y = np.array([0, 0, 1, 1])
    expect_close(
        auc(y, np.array([0.1, 0.4, 0.35, 0.8])),
        0.75,
        "AUC of scores [0.1, 0.4, 0.35, 0.8], y [0, 0, 1, 1]",
        "rank 1 is the lowest score; subtract n_pos (n_pos + 1) / 2 from the positives' rank sum (the ranks the "
        "positives would have among themselves), then divide by n_pos n_neg",
    )
    got = auc(y, np.array([0.8, 0.1, 0.4, 0.35]))
    expect(isinstance(got, float), f"return a Python float, got {type(got).__name__}")
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(size=400) + labels
    expect_close(
        auc(labels, scores),
        metrics.roc_auc_score(labels, scores),
        "AUC of 400 distinct scores",
        "rank 1 is the lowest score and rank N the highest",
    )
    tied = np.round(scores)  # five or six distinct values: many ties, across the classes
    want = metrics.roc_auc_score(labels, tied)
    got = auc(labels, tied)
    if not np.isclose(got, want):
        raise Fail(
            f"AUC of 400 scores with ties: got {got:.6f}, expected {want:.6f}; tied scores must share the mean of "
            "the ranks they occupy (np.unique(..., return_inverse=True, return_counts=True) groups them), so that a "
            "positive tied with a negative counts one half"
        )
    expect_close(auc(labels, np.full(400, 0.3)), 0.5, "AUC when every score is the same", "all tied: one half")
    expect_close(auc(labels, labels * 2.0 - 1.0), 1.0, "AUC of a perfect ranking")
    expect_close(auc(labels, -scores), 1.0 - metrics.roc_auc_score(labels, scores), "AUC of the scores negated")
    expect_close(
        auc(labels.reshape(-1, 1), scores.reshape(-1, 1)),
        metrics.roc_auc_score(labels, scores),
        "AUC of labels and scores as (N, 1) columns, as MedMNIST stores them",
        "flatten the inputs first (np.ravel)",
    )
    _expect_value_error(
        lambda: auc(np.ones(5, np.int64), np.arange(5.0)), "y_true with only positives: raise ValueError"
    )


def _grade_weighted_cross_entropy(ns: Mapping[str, Any]) -> None:
    loss_fn = ns["weighted_cross_entropy"]
    rng = np.random.default_rng(8)
    logits_np = rng.normal(size=(12, 3))
    labels_np = np.array([0, 1, 2, 1, 1, 1, 0, 2, 1, 1, 1, 0])
    labels = tm.tensor(labels_np)
    weight = tm.tensor(np.array([2.0, 0.5, 1.0]))
    loss = loss_fn(tm.tensor(logits_np), labels, weight)
    expect(isinstance(loss, tm.Tensor), f"return a tinymed Tensor (so backward works), got {type(loss).__name__}")
    expect(loss.ndim == 0, f"return one number, a 0-d Tensor, got shape {tuple(loss.shape)}")
    plain = F.cross_entropy(tm.tensor(logits_np), labels).item()
    expect_close(
        loss_fn(tm.tensor(logits_np), labels, tm.tensor(np.ones(3))).item(),
        plain,
        "the loss with weights (1, 1, 1)",
        "equal weights must give the plain cross-entropy: -log softmax(z_i)[y_i], averaged",
    )
    want = F.cross_entropy(tm.tensor(logits_np), labels, weight=weight).item()
    got = loss.item()
    per_image = -(logits_np - np.log(np.exp(logits_np).sum(1, keepdims=True)))[np.arange(12), labels_np]
    if np.isclose(got, np.mean(np.array([2.0, 0.5, 1.0])[labels_np] * per_image)):
        raise Fail(
            f"weights (2, 0.5, 1): got {got:.6f}, expected {want:.6f}; you divided by the number of images, "
            "PyTorch divides by the sum of the weights used, sum_i w[y_i], so that weights (2, 2, 2) change nothing"
        )
    expect_close(got, want, "the loss with weights (2, 0.5, 1)", "weight each image by the weight of its true class")
    doubled = loss_fn(tm.tensor(logits_np), labels, tm.tensor(np.array([4.0, 1.0, 2.0]))).item()
    expect_close(doubled, want, "the loss with all weights doubled", "the weighted mean does not change")
    huge = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [0.0, 1000.0]])
    huge_labels = tm.tensor(np.array([1, 1, 0]))
    huge_weight = tm.tensor(np.array([1.0, 3.0]))
    value = loss_fn(tm.tensor(huge), huge_labels, huge_weight).item()
    expect(
        np.isfinite(value),
        f"logits of +-1000 gave {value}: exp(1000) overflows; take F.log_softmax(logits, dim=1), which subtracts "
        "each row's maximum first",
    )
    expect_close(value, F.cross_entropy(tm.tensor(huge), huge_labels, weight=huge_weight).item(), "logits of +-1000")
    single = loss_fn(tm.tensor(logits_np[:1]), tm.tensor(labels_np[:1]), weight).item()
    expect_close(
        single, per_image[0], "a batch of one image", "one image: its weight cancels, the loss is its own term"
    )
    x = tm.tensor(rng.normal(size=(5, 3)), requires_grad=True)
    expect_gradcheck(
        lambda z: loss_fn(z, tm.tensor(np.array([2, 0, 1, 1, 0])), weight),
        [x],
        "weighted_cross_entropy",
        "build the loss from tinymed operations on the logits (no .numpy() in between), so that backward reaches them",
    )


EXERCISES = (
    Exercise(
        "8.1",
        "sensitivity_specificity",
        "sensitivity and specificity of one class against the rest, from a K x K confusion matrix",
        _grade_sensitivity_specificity,
    ),
    Exercise(
        "8.2",
        "roc_auc_by_ranks",
        "ROC AUC from the ranks of the scores (Mann-Whitney), ties sharing their mean rank",
        _grade_roc_auc_by_ranks,
    ),
    Exercise(
        "8.3",
        "weighted_cross_entropy",
        "cross-entropy with a weight per class, divided by the sum of the weights used",
        _grade_weighted_cross_entropy,
    ),
)
