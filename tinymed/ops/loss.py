"""Losses: nll_loss, cross_entropy, binary_cross_entropy (and with logits), mse_loss, l1_loss.

Each returns the per-element loss reduced by PyTorch's ``reduction`` (``"mean"``, ``"sum"`` or
``"none"``), with PyTorch's weighting rules. The ones whose formula needs care to stay finite
(the binary cross-entropies, the negative log-likelihood with ignored targets) are Functions
with their derivatives beside them; the others are compositions of existing ops.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tinymed.autograd import Function, same_device
from tinymed.dtypes import is_floating
from tinymed.ops.activation import log_softmax, logistic
from tinymed.ops.arguments import float_tensor, parameter
from tinymed.ops.operands import constant
from tinymed.ops.shape import where
from tinymed.tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str, total: Any = None) -> Tensor:
    """Apply a loss's ``reduction``; ``total`` (an array) replaces the element count in the
    mean when the loss is weighted (PyTorch divides by the sum of the weights used)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if total is None:
        return loss.mean()
    return loss.sum() / constant(total, loss)


def _class_indices(op: str, input: Tensor, target: Tensor, ignore_index: int) -> Any:
    """Check integer class targets (N, d1, ...) against input (N, C, d1, ...); return the array."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices (an integer tensor), got dtype {target.dtype}")
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"{op}: target shape {target.shape} does not match input shape {input.shape}; class indices need shape {expected}"
        )
    classes, t = input.shape[1], target.array
    outside = (t != ignore_index) & ((t < 0) | (t >= classes))
    if bool(outside.any()):
        bad = int(t[outside].reshape(-1)[0])
        raise ValueError(
            f"{op}: target holds class {bad}, outside [0, {classes}) for input shape {input.shape} (ignore_index={ignore_index})"
        )
    return t


class _NLLLoss(Function):
    """loss[n, d...] = -w_t x[n, t, d...] with t = target[n, d...] and w_t its class weight;
    dloss/dx[n, c, d...] = -w_t where c == t, else 0.

    x (N, C, d...); ``target``, ``weights`` and ``used`` (N, d...) are constant arrays. An
    ignored target (``used`` False) has weight 0 and gets exactly 0 gradient, even when every
    target is ignored and the mean's 1/sum(w) is infinite (PyTorch's loss is then NaN and its
    gradient 0)."""

    def forward(self, x, target, weights, used):
        xp = self.xp
        self.shape, self.index = x.shape, xp.expand_dims(target, 1)
        self.weights, self.used = xp.expand_dims(weights, 1), xp.expand_dims(used, 1)
        return -(xp.take_along_axis(x, self.index, axis=1) * self.weights).squeeze(1)

    def backward(self, grad):
        xp = self.xp
        gx = xp.zeros(self.shape, dtype=grad.dtype)
        with np.errstate(invalid="ignore"):
            picked = xp.where(self.used, -self.weights * xp.expand_dims(grad, 1), 0)
        xp.put_along_axis(gx, self.index, picked, axis=1)
        return gx


def _nll_loss(
    op: str, input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str
) -> Tensor:
    """nll_loss for input (N, C, d...) and integer target (N, d...), checked under ``op``'s name."""
    same_device(op, (input, target))
    parameter(op, "weight", weight, input, (input.shape[1],))
    t = _class_indices(op, input, target, ignore_index)
    xp = input.device.backend.xp
    used = t != ignore_index
    safe = xp.where(used, t, 0)
    w = (used if weight is None else weight.array[safe] * used).astype(input.dtype)
    return _reduce(_NLLLoss.apply(input, target=safe, weights=w, used=used), reduction, w.sum())


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices: loss_n = -weight[t_n] * input[n, t_n].

    input (N, C, d1, ...) of log-probabilities or unbatched (C,); target (N, d1, ...) or ().
    Targets equal to ``ignore_index`` contribute 0; 'mean' divides by the summed weights of
    the targets used, as PyTorch. The options after ``weight`` are keyword-only here
    (PyTorch's deprecated ``size_average``/``reduce`` sit between them).
    """
    op = "nll_loss"
    float_tensor(op, "input", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    _check_reduction(op, reduction)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, C, ...) or (C,), got a 0-d tensor")
    if input.ndim == 1:
        loss = nll_loss(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index=ignore_index, reduction=reduction)
        return loss.squeeze(0) if reduction == "none" else loss
    return _nll_loss(op, input, target, weight, ignore_index, reduction)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of logits: nll_loss(log_softmax(input, 1), target), finite for any logits.

    input (N, C, d1, ...) or unbatched (C,). target either class indices (N, d1, ...)
    (integer; ``ignore_index`` skipped) or class probabilities of input's shape (float).
    ``label_smoothing`` eps mixes the target with the uniform distribution: for indices,
    (1 - eps) * nll + eps/C * sum_c -weight_c log p_c (PyTorch's weighting and mean);
    for probabilities, target * (1 - eps) + eps / C. The options after ``weight`` are
    keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` sit between them).
    """
    op = "cross_entropy"
    float_tensor(op, "input", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: target must be a Tensor, got {type(target).__name__}")
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError(f"{op}: input must be (N, C, ...) or (C,), got a 0-d tensor")
    if input.ndim == 1:
        loss = cross_entropy(
            input.unsqueeze(0),
            target.unsqueeze(0),
            weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
        )
        return loss.squeeze(0) if reduction == "none" else loss
    same_device(op, (input, target))
    classes = input.shape[1]
    parameter(op, "weight", weight, input, (classes,))
    class_weight = None if weight is None else weight.reshape(classes, *(1,) * (input.ndim - 2))
    log_p = log_softmax(input, 1)

    if is_floating(target.dtype):
        if target.shape != input.shape:
            raise ValueError(
                f"{op}: class-probability target shape {target.shape} must equal input shape {input.shape}"
            )
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        scores = log_p * target if class_weight is None else log_p * target * class_weight
        return _reduce(-scores.sum(1), reduction)

    nll = _nll_loss(op, log_p, target, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return nll
    smooth = _uniform_target_loss(log_p, target, weight, class_weight, ignore_index, reduction)
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def _uniform_target_loss(
    log_p: Tensor,
    target: Tensor,
    weight: Tensor | None,
    class_weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """sum_c -weight_c log p_c per used target, reduced with PyTorch's weighted mean: the term
    that label smoothing mixes in for class-index targets (times eps / C)."""
    xp = log_p.device.backend.xp
    used = target.array != ignore_index
    # where, not a product with 0/1: an infinite gradient (all ignored, mean 0/0) must give 0
    smooth = where(
        Tensor.wrap(used, log_p.device), -(log_p if class_weight is None else log_p * class_weight).sum(1), 0.0
    )
    total = used.sum() if weight is None else weight.array[xp.where(used, target.array, 0)][used].sum()
    return _reduce(smooth, reduction, total.astype(log_p.dtype))


def _same_shape(op: str, input: Tensor, target: Any) -> None:
    float_tensor(op, "target", target, input)
    if target.shape != input.shape:
        raise ValueError(f"{op}: target shape {target.shape} must equal input shape {input.shape}")


def _broadcast_weight(op: str, name: str, weight: Any, input: Tensor) -> Tensor | None:
    if weight is None:
        return None
    float_tensor(op, name, weight, input)
    try:
        fits = np.broadcast_shapes(weight.shape, input.shape) == input.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: {name} shape {weight.shape} does not broadcast to input shape {input.shape}")
    return weight


# PyTorch's floor on x (1 - x) in the gradient: the float32 constant 1e-12f, kept bit-exact.
_BCE_EPSILON = float(np.float32(1e-12))


class _BinaryCrossEntropy(Function):
    """loss = -(y log x + (1 - y) log(1 - x)), each log clamped at -100 as PyTorch (so x = 0
    or 1 gives 100, not inf);  dloss/dx = (x - y) / max(x (1 - x), 1e-12),
    dloss/dy = log(1 - x) - log x with the clamped logs (the derivative of the loss as
    computed; PyTorch leaves these logs unclamped and gives inf at x = 0 or 1)."""

    def forward(self, x, y):
        xp = self.xp
        with np.errstate(divide="ignore"):
            self.log_x = xp.maximum(xp.log(x), -100)
            self.log_1mx = xp.maximum(xp.log1p(-x), -100)
        self.x, self.y = x, y
        return -(y * self.log_x + (1 - y) * self.log_1mx)

    def backward(self, grad):
        gx = gy = None
        if self.needs_input_grad[0]:
            gx = grad * (self.x - self.y) / self.xp.maximum(self.x * (1 - self.x), _BCE_EPSILON)
        if self.needs_input_grad[1]:
            gy = grad * (self.log_1mx - self.log_x)
        return gx, gy


def binary_cross_entropy(
    input: Tensor, target: Tensor, weight: Tensor | None = None, *, reduction: str = "mean"
) -> Tensor:
    """-weight * (y log x + (1 - y) log(1 - x)) for probabilities x in [0, 1] (a sigmoid's
    output); logs clamped at -100 as PyTorch. ``weight`` broadcasts to input. ``reduction``
    is keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` precede it)."""
    op = "binary_cross_entropy"
    float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _broadcast_weight(op, "weight", weight, input)
    _check_reduction(op, reduction)
    x = input.array
    if bool(((x < 0) | (x > 1)).any()):
        raise ValueError(
            f"{op}: all elements of input must be between 0 and 1 (probabilities); use binary_cross_entropy_with_logits for logits"
        )
    y = target.array
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError(
            f"{op}: all elements of target must be between 0 and 1 (a label or its probability), "
            f"got values from {float(y.min())} to {float(y.max())}"
        )
    loss = _BinaryCrossEntropy.apply(input, target)
    return _reduce(loss if weight is None else loss * weight, reduction)


class _BinaryCrossEntropyWithLogits(Function):
    """BCE of sigmoid(x), written on the logit x so it never overflows. With l = 1 + (pos_weight - 1) y
    and softplus(-x) = log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|)::

        loss = (1 - y) x + l softplus(-x)      (= max(x, 0) - x y + log1p(e^-|x|) when l = 1)

    dloss/dx = (1 - y) - l sigmoid(-x), dloss/dy = -x + (pos_weight - 1) softplus(-x),
    dloss/dpos_weight = y softplus(-x).
    """

    def forward(self, x, y, pos_weight):
        xp = self.xp
        self.x, self.y, self.pos_weight = x, y, pos_weight
        self.softplus = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        self.l = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
        return (1 - y) * x + self.l * self.softplus

    def backward(self, grad):
        gx = gy = gp = None
        if self.needs_input_grad[0]:
            gx = grad * ((1 - self.y) - self.l * logistic(self.xp, -self.x))
        if self.needs_input_grad[1]:
            gy = grad * (-self.x if self.pos_weight is None else -self.x + (self.pos_weight - 1) * self.softplus)
        if self.needs_input_grad[2]:
            gp = grad * self.y * self.softplus
        return gx, gy, gp


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """binary_cross_entropy(sigmoid(input), target), computed stably from the logits.

    ``weight`` scales each element; ``pos_weight`` (broadcast along the last dims, e.g. one
    per class) scales the positive term y log sigmoid(x). ``reduction`` and ``pos_weight``
    are keyword-only here (PyTorch's deprecated ``size_average``/``reduce`` precede them)."""
    op = "binary_cross_entropy_with_logits"
    float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _broadcast_weight(op, "weight", weight, input)
    _broadcast_weight(op, "pos_weight", pos_weight, input)
    _check_reduction(op, reduction)
    loss = _BinaryCrossEntropyWithLogits.apply(input, target, pos_weight)
    return _reduce(loss if weight is None else loss * weight, reduction)


def _regression_loss(
    op: str, error: Any, input: Tensor, target: Tensor, reduction: str, weight: Tensor | None
) -> Tensor:
    """Shared checks and reduction of mse_loss and l1_loss; ``error`` maps input - target to the loss."""
    float_tensor(op, "input", input)
    float_tensor(op, "target", target, input)
    _check_reduction(op, reduction)
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(
            f"{op}: target shape {target.shape} does not broadcast with input shape {input.shape}"
        ) from None
    if target.shape != input.shape:
        warnings.warn(
            f"{op}: using a target size ({target.shape}) that is different to the input size ({input.shape}); "
            "it is broadcast, which is likely not what you want",
            stacklevel=3,
        )
    loss = error(input - target)
    if weight is None:
        return _reduce(loss, reduction)
    float_tensor(op, "weight", weight, input)
    if weight.shape != input.shape:
        raise ValueError(f"{op}: weight shape {weight.shape} must equal input shape {input.shape}")
    return _reduce(loss * weight, reduction, weight.array.sum())


def mse_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean squared error (x - y)^2; with ``weight``, 'mean' is sum(w (x - y)^2) / sum(w), as PyTorch."""
    return _regression_loss("mse_loss", lambda d: d * d, input, target, reduction, weight)


def l1_loss(input: Tensor, target: Tensor, *, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """Mean absolute error |x - y| (gradient sign(x - y), 0 at 0 as PyTorch); ``weight`` as mse_loss."""
    return _regression_loss("l1_loss", lambda d: d.abs(), input, target, reduction, weight)


def dice_loss(input: Tensor, target: Tensor, *, eps: float = 1.0, reduction: str = "mean") -> Tensor:
    """Soft Dice loss of probabilities against a mask, one value per sample (MONAI's DiceLoss;
    PyTorch has none)::

        loss[n] = 1 - (2 sum_i p_i g_i + eps) / (sum_i p_i + sum_i g_i + eps)

    the sums running over every element of sample n (all dims but the first). input ``(N, ...)``:
    probabilities in [0, 1] (a sigmoid's output); target: the same shape and dtype, the mask
    (0/1, or soft). ``eps > 0`` scores an empty prediction of an empty mask 0, not 0/0, and
    makes a false positive on an empty mask cost ``S / (S + eps)`` for a predicted mass
    ``S = sum p``: a cost that grows with S, where a tiny eps would jump to 1. ``reduction``: the mean over samples (default), their sum, or ``"none"``,
    the ``(N,)`` losses. A composition of existing ops, so autograd gives the gradient.
    """
    op = "dice_loss"
    float_tensor(op, "input", input)
    _same_shape(op, input, target)
    _check_reduction(op, reduction)
    if input.ndim < 2:
        raise ValueError(f"{op}: input must be (N, ...), a batch of at least 1-D samples, got shape {input.shape}")
    if not eps > 0:
        raise ValueError(f"{op}: eps must be positive (it defines the loss of an empty mask), got {eps}")
    if bool(((input.array < 0) | (input.array > 1)).any()):
        raise ValueError(
            f"{op}: all elements of input must be between 0 and 1 (probabilities); apply sigmoid to logits"
        )
    dims = tuple(range(1, input.ndim))
    overlap = (input * target).sum(dims)
    sizes = input.sum(dims) + target.sum(dims)
    return _reduce(1 - (2 * overlap + eps) / (sizes + eps), reduction)
