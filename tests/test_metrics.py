"""tinymed.metrics against hand-computed cases, brute-force definitions and closed forms."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymed import metrics
from tinymed.metrics import (
    accuracy,
    confusion_matrix,
    frechet_distance,
    frechet_distance_from_features,
    predictions,
    roc_auc_score,
    roc_curve,
    sensitivity,
    specificity,
)


def mann_whitney_auc(y_true, y_score):
    """The AUC's definition, a loop over every (positive, negative) pair, ties worth 1/2."""
    pos = [s for s, y in zip(y_score, y_true) if y == 1]
    neg = [s for s, y in zip(y_score, y_true) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


# ---- ROC curve and AUC -------------------------------------------------------------------


def test_roc_curve_hand_computed():
    # scikit-learn's documentation example, labels {1, 2} written as {0, 1}.
    fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    assert roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_roc_curve_ties_become_one_diagonal_step():
    # Scores 0.5 are shared by one positive and one negative: a single threshold, and the
    # curve moves diagonally from (0, 1/3) to (1/2, 2/3).
    y = [0, 0, 1, 1, 1]
    s = [0.1, 0.5, 0.5, 0.9, 0.2]
    fpr, tpr, thresholds = roc_curve(y, s)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.5, 0.2, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    # Pairs (pos, neg): (.5,.1)=1 (.5,.5)=1/2 (.9,.1)=1 (.9,.5)=1 (.2,.1)=1 (.2,.5)=0 -> 4.5/6
    assert roc_auc_score(y, s) == pytest.approx(0.75)


def test_auc_all_scores_tied_is_one_half():
    assert roc_auc_score([0, 1, 0, 1, 1], [0.3] * 5) == 0.5


def test_auc_perfect_and_reversed():
    assert roc_auc_score([0, 0, 1], [0.1, 0.2, 0.9]) == 1.0
    assert roc_auc_score([0, 0, 1], [0.9, 0.8, 0.1]) == 0.0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=40).filter(
        lambda pairs: len({y for y, _ in pairs}) == 2
    )
)
def test_auc_equals_mann_whitney_with_ties(pairs):
    # Scores from 0..4 force many ties.
    y_true, y_score = zip(*pairs)
    assert roc_auc_score(y_true, np.array(y_score, float)) == pytest.approx(mann_whitney_auc(y_true, y_score))


def test_auc_binary_two_column_scores_use_the_positive_column():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([[0], [1], [1], [0]])  # MedMNIST's (N, 1) labels
    assert roc_auc_score(y, scores) == roc_auc_score(y[:, 0], scores[:, 1]) == 0.75
    assert roc_auc_score(y, scores[:, 1:]) == 0.75  # one sigmoid output per sample, (N, 1)


def test_auc_multiclass_one_vs_rest_macro():
    y = np.array([0, 1, 2, 2])
    s = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.2, 0.2, 0.6]])
    # class 0: positive 0.6 vs negatives .5 .1 .2 -> 1; class 1: 0.4 vs .3 .5 .2 -> 2/3;
    # class 2: positives .4 .6 vs negatives .1 .1 -> 1.
    assert roc_auc_score(y, s) == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_auc_multilabel_is_the_mean_over_columns():
    y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    s = np.array([[0.2, 0.9], [0.7, 0.1], [0.4, 0.3], [0.5, 0.2]])
    expected = (mann_whitney_auc(y[:, 0], s[:, 0]) + mann_whitney_auc(y[:, 1], s[:, 1])) / 2
    assert roc_auc_score(y, s) == pytest.approx(expected)


@pytest.mark.parametrize(
    "y_true, y_score, message",
    [
        ([0, 1, 1], [0.1, 0.2], "different lengths"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
        ([0, 2, 1], [0.1, 0.2, 0.3], "only the labels 0 and 1"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 3], [[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], "class indices in 0..2"),
        (np.zeros((2, 3)), np.zeros((2, 2)), "same shape"),
    ],
)
def test_auc_errors(y_true, y_score, message):
    with pytest.raises(ValueError, match=message):
        roc_auc_score(y_true, y_score)


def test_roc_curve_single_class_error():
    with pytest.raises(ValueError, match="only one class"):
        roc_curve([0, 0], [0.1, 0.2])


# ---- accuracy and hard predictions ------------------------------------------------------


def test_predictions_and_accuracy_binary_threshold_is_strict():
    # MedMNIST predicts 1 only when the positive score is > 0.5.
    np.testing.assert_array_equal(predictions([0.2, 0.5, 0.51]), [0, 0, 1])
    np.testing.assert_array_equal(predictions([[0.5, 0.5], [0.3, 0.7]]), [0, 1])
    assert accuracy([0, 1, 1, 0], [0.2, 0.5, 0.9, 0.7]) == 0.5


def test_accuracy_multiclass_argmax():
    s = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    np.testing.assert_array_equal(predictions(s), [1, 0, 2])
    assert accuracy([1, 2, 2], s) == pytest.approx(2 / 3)


def test_accuracy_multilabel_mean_over_columns():
    y = np.array([[1, 0], [0, 0]])
    s = np.array([[0.9, 0.6], [0.1, 0.2]])  # column 0 all right, column 1 half right
    assert accuracy(y, s) == 0.75


# ---- confusion matrix, sensitivity, specificity -----------------------------------------


def test_confusion_matrix_binary_layout():
    y_true = [0, 0, 0, 1, 1, 1, 1]
    y_pred = [0, 1, 0, 1, 1, 0, 1]
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), [[2, 1], [1, 3]])  # [[TN, FP], [FN, TP]]
    assert sensitivity(y_true, y_pred) == 3 / 4
    assert specificity(y_true, y_pred) == 2 / 3


def test_confusion_matrix_multiclass_and_num_classes():
    cm = confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], num_classes=4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[1, 2] = expected[2, 2] = expected[2, 1] = 1
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(confusion_matrix([0, 0], [0, 0]), [[2, 0], [0, 0]])


def test_sensitivity_one_vs_rest_for_a_multiclass_label():
    assert sensitivity([0, 2, 2, 1], [0, 2, 1, 2], pos_label=2) == 0.5
    assert specificity([0, 2, 2, 1], [0, 2, 1, 2], pos_label=2) == 0.5


def test_classification_errors():
    with pytest.raises(ValueError, match="different lengths"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="non-negative integer"):
        confusion_matrix([0, 0.5], [0, 1])
    with pytest.raises(ValueError, match="no sample of the positive label"):
        sensitivity([0, 0], [0, 1])
    with pytest.raises(ValueError, match="no negative sample"):
        specificity([1, 1], [0, 1])


# ---- Frechet distance --------------------------------------------------------------------


def random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_frechet_diagonal_covariances_closed_form():
    # For commuting covariances Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(l1) - sqrt(l2))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 1 + 0 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    q = random_orthogonal(rng, 5)
    l1, l2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(l1) @ q.T, mu2, q @ np.diag(l2) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_one_dimension_and_identity():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2 with s the standard deviations.
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4))
    sigma = a @ a.T
    assert frechet_distance(np.ones(4), sigma, np.ones(4), sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_non_commuting_is_symmetric_and_matches_scipy_when_present():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 3))
    s1, s2 = a @ a.T, b @ b.T  # s2 is rank 3: singular, as features of few samples give
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    d12, d21 = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    # The tolerance is set by the conditioning, not by one machine's rounding. s2 is singular,
    # so sqrt(s1) s2 sqrt(s1) (or, in the other order, sqrt(s2) s1 sqrt(s2)) has D - rank = 3
    # zero eigenvalues, which rounding moves by up to about D eps ||s1|| ||s2||. The square root
    # is not Lipschitz at 0: it turns a move of delta into sqrt(delta), and d counts each root
    # twice. So the two orders, or two BLAS libraries, may differ by up to
    # 2 (D - rank) sqrt(D eps ||s1|| ||s2||): about 3e-6 here, 1e-7 of d (with NumPy's
    # OpenBLAS 0.3.31 the orders differ by 3.3e-7, past the former rel=1e-8).
    D, rank = 6, 3
    conditioning = D * np.finfo(np.float64).eps * np.linalg.norm(s1, 2) * np.linalg.norm(s2, 2)
    assert d12 == pytest.approx(d21, rel=0, abs=2 * (D - rank) * np.sqrt(conditioning))
    assert d12 > 0
    linalg = pytest.importorskip("scipy.linalg", reason="scipy gives an independent sqrtm")
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert d12 == pytest.approx(expected, rel=1e-6)


def test_frechet_from_features():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((50, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    # Same covariance, means apart by shift: the distance is ||shift||^2.
    assert frechet_distance_from_features(f, f + shift) == pytest.approx(shift @ shift)
    g = rng.standard_normal((30, 4)) * 2.0
    expected = frechet_distance(f.mean(0), np.cov(f, rowvar=False), g.mean(0), np.cov(g, rowvar=False))
    assert frechet_distance_from_features(f, g) == pytest.approx(expected)


def test_frechet_errors():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="different feature sizes"):
        frechet_distance_from_features(np.zeros((4, 3)), np.zeros((5, 2)))


def test_balanced_accuracy_and_accuracy_at_a_prior_on_a_hand_counted_matrix():
    # TN 6, FP 2, FN 1, TP 11: sensitivity 11/12, specificity 6/8, ACC 17/20.
    y_true = np.array([0] * 8 + [1] * 12)
    y_pred = np.array([0] * 6 + [1] * 2 + [0] * 1 + [1] * 11)
    assert metrics.balanced_accuracy(y_true, y_pred) == pytest.approx((11 / 12 + 6 / 8) / 2)
    # At the sample's own balance (8 of 20 negative) it is the ACC; at 37.5 % another mix.
    assert metrics.accuracy_at_prior(11 / 12, 6 / 8, 8 / 20) == pytest.approx(17 / 20)
    assert metrics.accuracy_at_prior(11 / 12, 6 / 8, 0.375) == pytest.approx(0.375 * 0.75 + 0.625 * 11 / 12)
    # Three classes: the mean of the recalls 1/2, 1, 2/3.
    assert metrics.balanced_accuracy([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0]) == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="one class only"):
        metrics.balanced_accuracy([1, 1], [1, 0])
    with pytest.raises(ValueError, match="negative_fraction must be in"):
        metrics.accuracy_at_prior(0.9, 0.9, 1.5)
