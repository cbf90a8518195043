"""Loss functions as modules. Each stores its options and calls the functional op of the
same name; ``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss per
element). Class weights and ``pos_weight`` are registered as buffers, as in PyTorch, so
they follow the module to another backend and appear in its state dict."""

from __future__ import annotations

from tinymed import functional as F
from tinymed.nn.module import Module
from tinymed.tensor import Tensor


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """``-log softmax(input)[target]`` per sample: input ``(N, C)`` (or ``(N, C, d1, ...)``)
    logits, target ``(N,)`` class indices or ``(N, C)`` class probabilities. ``weight``
    rescales each class, ``ignore_index`` targets are skipped, ``label_smoothing`` mixes
    the target with the uniform distribution."""

    def __init__(
        self,
        weight: Tensor | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """``-input[target]`` per sample, for log-probabilities (``LogSoftmax`` + ``NLLLoss`` is
    ``CrossEntropyLoss``)."""

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities: ``-(t log p + (1 - t) log(1 - p))``, the
    logarithms clamped at -100 (as PyTorch) so p = 0 or 1 stays finite."""

    def __init__(self, weight: Tensor | None = None, *, reduction: str = "mean") -> None:
        super().__init__(weight, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid and binary cross-entropy in one numerically stable step, on logits;
    ``pos_weight`` multiplies the positive term (for rare positive findings)."""

    def __init__(
        self, weight: Tensor | None = None, *, reduction: str = "mean", pos_weight: Tensor | None = None
    ) -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class MSELoss(_Loss):
    """Squared error ``(input - target)^2``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Absolute error ``|input - target|``."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class DiceLoss(_Loss):
    """Soft Dice loss of probabilities against a mask, per sample:
    ``1 - (2 sum p g + eps) / (sum p + sum g + eps)`` (MONAI's name; PyTorch has none).
    See :func:`tinymed.functional.dice_loss`."""

    def __init__(self, *, eps: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = eps

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.dice_loss(input, target, eps=self.eps, reduction=self.reduction)
