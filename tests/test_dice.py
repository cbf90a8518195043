"""The soft Dice loss (F.dice_loss, nn.DiceLoss) and the Dice and IoU scores of binary masks
(tinymed.metrics): hand-computed values, the empty-mask conventions, gradcheck, and PyTorch
written out as the oracle of the loss."""

import numpy as np
import pytest

import tinymed as tm
import tinymed.functional as F
from tinymed import nn
from tinymed.gradcheck import gradcheck
from tinymed.metrics import dice_score, iou_score

# Two 4x4 masks: A is a 2x2 square at the top left, B the 2x2 square one pixel down and right.
# |A| = |B| = 4, |A n B| = 1, |A u B| = 7: Dice = 2/8, IoU = 1/7.
A = np.zeros((4, 4), dtype=bool)
A[:2, :2] = True
B = np.zeros((4, 4), dtype=bool)
B[1:3, 1:3] = True
EMPTY = np.zeros((4, 4), dtype=bool)


# ------------------------------------------------------------------ dice_score, iou_score


def test_scores_of_hand_computed_masks():
    assert dice_score(A, B) == pytest.approx(2 / 8) and iou_score(A, B) == pytest.approx(1 / 7)
    assert dice_score(A, A) == 1.0 and iou_score(A, A) == 1.0
    assert dice_score(A, ~A) == 0.0 and iou_score(A, ~A) == 0.0
    # 0/1 integers score as bools; the argument order does not matter.
    assert dice_score(A.astype(np.uint8), B.astype(np.int64)) == dice_score(B, A)
    assert isinstance(dice_score(A, B), float) and isinstance(iou_score(A, B), float)


def test_the_empty_mask_convention():
    # Both empty: nothing to find and nothing found scores 1, not 0/0.
    assert dice_score(EMPTY, EMPTY) == 1.0 and iou_score(EMPTY, EMPTY) == 1.0
    # One empty and the other not: no overlap, 0, whichever side is empty.
    for truth, predicted in [(EMPTY, A), (A, EMPTY)]:
        assert dice_score(truth, predicted) == 0.0 and iou_score(truth, predicted) == 0.0


def test_per_image_scores_with_axis():
    truth = np.stack([A, A, EMPTY, EMPTY])
    predicted = np.stack([B, A, EMPTY, A])
    np.testing.assert_allclose(dice_score(truth, predicted, axis=(1, 2)), [2 / 8, 1, 1, 0])
    np.testing.assert_allclose(iou_score(truth, predicted, axis=(1, 2)), [1 / 7, 1, 1, 0])
    # Without axis the batch is one mask: 1 + 4 pixels overlap, the truth has 8 and the prediction 12.
    assert dice_score(truth, predicted) == pytest.approx(2 * 5 / (8 + 12))


def test_iou_is_dice_over_two_minus_dice_on_random_masks():
    rng = np.random.default_rng(0)
    truth, predicted = rng.random((2, 50, 9, 9)) < rng.random((2, 50, 1, 1))
    dice, iou = dice_score(truth, predicted, axis=(1, 2)), iou_score(truth, predicted, axis=(1, 2))
    np.testing.assert_allclose(iou, dice / (2 - dice))
    loop = [2 * (t & p).sum() / (t.sum() + p.sum()) if t.any() or p.any() else 1.0 for t, p in zip(truth, predicted)]
    np.testing.assert_allclose(dice, loop)


def test_score_errors_name_the_function_and_the_problem():
    with pytest.raises(ValueError, match=r"dice_score: y_pred must be a binary mask .*threshold probabilities"):
        dice_score(A, np.full((4, 4), 0.7))
    with pytest.raises(
        ValueError, match=r"iou_score: y_true and y_pred must have the same shape, got \(4, 4\) and \(3, 4\)"
    ):
        iou_score(A, B[:3])


# ------------------------------------------------------------------ dice_loss, DiceLoss


def _soft_dice_by_loops(p: np.ndarray, g: np.ndarray, eps: float) -> np.ndarray:
    losses = []
    for pn, gn in zip(p, g):
        overlap = sum(a * b for a, b in zip(pn.ravel(), gn.ravel()))
        losses.append(1 - (2 * overlap + eps) / (pn.sum() + gn.sum() + eps))
    return np.array(losses)


def test_dice_loss_of_hand_computed_masks():
    g = tm.tensor(np.stack([A, EMPTY])[:, None].astype(np.float64))
    perfect, missed = g, tm.zeros(2, 1, 4, 4, dtype=tm.float64)
    # A perfect prediction: 1 - (2*4 + 1)/(8 + 1) = 0 for A, 1 - 1/1 = 0 for the empty mask.
    np.testing.assert_allclose(F.dice_loss(perfect, g, reduction="none").numpy(), [0.0, 0.0])
    # Predicting nothing: 1 - 1/(4 + 1) = 0.8 for A, 0 for the empty mask; the mean is 0.4.
    np.testing.assert_allclose(F.dice_loss(missed, g, reduction="none").numpy(), [0.8, 0.0])
    assert F.dice_loss(missed, g).item() == pytest.approx(0.4)
    assert F.dice_loss(missed, g, reduction="sum").item() == pytest.approx(0.8)
    # B predicted for A with eps = 1: 1 - (2*1 + 1)/(4 + 4 + 1) = 2/3.
    b, a = (tm.tensor(m[None, None].astype(np.float64)) for m in (B, A))
    assert F.dice_loss(b, a).item() == pytest.approx(2 / 3)
    # A false positive of S pixels on an empty mask costs S / (S + eps).
    assert F.dice_loss(a, tm.zeros(1, 1, 4, 4, dtype=tm.float64), eps=2.0).item() == pytest.approx(4 / 6)


def test_dice_loss_is_per_sample_then_averaged_on_soft_values():
    rng = np.random.default_rng(1)
    p, g = rng.random((3, 2, 5, 5)), (rng.random((3, 2, 5, 5)) < 0.3).astype(np.float64)
    for eps in (1.0, 1e-5):
        want = _soft_dice_by_loops(p, g, eps)
        got = F.dice_loss(tm.tensor(p), tm.tensor(g), eps=eps, reduction="none").numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)
        module = nn.DiceLoss(eps=eps)
        assert module(tm.tensor(p), tm.tensor(g)).item() == pytest.approx(want.mean(), rel=1e-12)
    # (N, H, W) works as well as (N, C, H, W): the sums run over every dim but the first.
    np.testing.assert_allclose(
        F.dice_loss(tm.tensor(p[:, 0]), tm.tensor(g[:, 0]), reduction="none").numpy(),
        _soft_dice_by_loops(p[:, 0], g[:, 0], 1.0),
    )


def test_dice_loss_gradcheck():
    rng = np.random.default_rng(2)
    p = tm.tensor(rng.uniform(0.05, 0.95, (3, 1, 4, 4)), requires_grad=True)
    g = tm.tensor((rng.random((3, 1, 4, 4)) < 0.4).astype(np.float64))
    g.data[2] = 0.0  # one empty mask
    for reduction in ("mean", "sum", "none"):
        assert gradcheck(lambda x, reduction=reduction: F.dice_loss(x, g, reduction=reduction), [p])
    soft_target = tm.tensor(rng.random((3, 1, 4, 4)), requires_grad=True)
    assert gradcheck(lambda x, t: F.dice_loss(x, t, eps=1e-3), [p, soft_target])


def test_dice_loss_against_torch_written_out():
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install torch to compare")
    rng = np.random.default_rng(3)
    p, g = rng.random((4, 1, 6, 6)).astype(np.float32), (rng.random((4, 1, 6, 6)) < 0.2).astype(np.float32)
    x = tm.tensor(p, requires_grad=True)
    F.dice_loss(x, tm.tensor(g), eps=1.0).backward()
    tx = torch.tensor(p, requires_grad=True)
    tg = torch.tensor(g)
    overlap, sizes = (tx * tg).sum((1, 2, 3)), tx.sum((1, 2, 3)) + tg.sum((1, 2, 3))
    loss = (1 - (2 * overlap + 1.0) / (sizes + 1.0)).mean()
    loss.backward()
    assert F.dice_loss(tm.tensor(p), tm.tensor(g)).item() == pytest.approx(loss.item(), rel=1e-6)
    np.testing.assert_allclose(np.asarray(x.grad), tx.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "input, target, kwargs, message",
    [
        (np.full((2, 3), 1.5), np.zeros((2, 3)), {}, "dice_loss: all elements of input must be between 0 and 1"),
        (np.zeros((2, 3)), np.zeros((2, 4)), {}, r"dice_loss: target shape \(2, 4\) must equal input shape \(2, 3\)"),
        (np.zeros(3), np.zeros(3), {}, r"dice_loss: input must be \(N, ...\).*got shape \(3,\)"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"eps": 0.0}, "dice_loss: eps must be positive"),
        (np.zeros((2, 3)), np.zeros((2, 3)), {"reduction": "avg"}, "dice_loss: reduction must be one of"),
    ],
    ids=["logits", "shapes", "no-batch", "eps", "reduction"],
)
def test_dice_loss_errors(input, target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.dice_loss(tm.tensor(input), tm.tensor(target), **kwargs)
