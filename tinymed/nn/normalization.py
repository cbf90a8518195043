"""Normalisation layers: BatchNorm1d/2d, InstanceNorm1d/2d, LayerNorm and GroupNorm.

All compute ``y = (x - mean) / sqrt(var + eps) * weight + bias``; they differ in which
elements share a mean and variance (see :func:`tinymed.functional.batch_norm`,
:func:`~tinymed.functional.instance_norm`, :func:`~tinymed.functional.layer_norm` and
:func:`~tinymed.functional.group_norm`). Batch and instance norm share their parameters and
running statistics (:class:`_NormBase`, as in PyTorch)."""

from __future__ import annotations

from typing import Any

from tinymed import functional as F
from tinymed.creation import ones, zeros
from tinymed.dtypes import int64
from tinymed.nn import init
from tinymed.nn.module import Module
from tinymed.nn.parameter import Parameter
from tinymed.tensor import Tensor, tensor


def _register_affine(module: Module, shape: tuple[int, ...], affine: bool, bias: bool, device: Any, dtype: Any) -> None:
    """Give ``module`` a ``weight`` of ones and a ``bias`` of zeros, both of ``shape``; each one
    left out (``affine=False``, or ``bias=False``) is registered as None."""
    module.register_parameter("weight", Parameter(ones(*shape, device=device, dtype=dtype)) if affine else None)
    module.register_parameter("bias", Parameter(zeros(*shape, device=device, dtype=dtype)) if affine and bias else None)


def _reset_affine(module: Module) -> None:
    """Put ``module``'s weight (if any) back to ones and its bias (if any) to zeros."""
    if module.weight is not None:
        init.ones_(module.weight)
    if module.bias is not None:
        init.zeros_(module.bias)


class _NormBase(Module):
    """Per-channel ``weight`` (ones) and ``bias`` (zeros) when ``affine``, and the running
    statistics ``running_mean``, ``running_var`` and ``num_batches_tracked`` when
    ``track_running_stats``: what batch and instance norm share."""

    _expected_dims: tuple[int, ...]

    def __init__(
        self,
        num_features: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        track_running_stats: bool,
        device: Any,
        dtype: Any,
        bias: bool,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _register_affine(self, (num_features,), affine, bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(num_features, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self)

    def _state_defaults(self, prefix: str, version: int | None) -> dict[str, Any]:
        """``num_batches_tracked`` came with version 2 of PyTorch's layout: a state dict saved
        before it, or one that declares no version (a plain dict of arrays, tinymed's own),
        may lack it, and loading keeps the current count, as PyTorch does."""
        if self.num_batches_tracked is None or (version is not None and version >= 2):
            return {}
        return {prefix + "num_batches_tracked": self.num_batches_tracked}

    def _check_input_dims(self, input: Tensor) -> None:
        if input.ndim not in self._expected_dims:
            wanted = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(f"{type(self).__name__}: expected {wanted} input (N, C, ...), got shape {input.shape}")

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )


def _check_channels(module: Module, input: Tensor, channels: int) -> None:
    """The input's dim 1 must hold the ``channels`` the layer was built for (else the error
    would come later, from a weight of the wrong size, and blame the weight)."""
    if input.ndim < 2 or input.shape[1] != channels:
        raise ValueError(
            f"{type(module).__name__}: built for {channels} channels, but the input's dim 1 "
            f"(N, C, ...) has {input.shape[1] if input.ndim > 1 else 'none'} (shape {input.shape})"
        )


class _BatchNorm(_NormBase):
    """Batch normalisation over every dim but the channel dim 1.

    In training it normalises with the batch's statistics and updates the running ones,
    ``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased), or
    with ``momentum=None`` their cumulative average over all batches seen so far
    (``momentum = 1 / num_batches_tracked``). In evaluation it uses the running statistics,
    so a single image gets the same answer whatever batch it comes in.
    ``weight`` starts at 1 and ``bias`` at 0 (``bias=False``: no shift)."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dims(input)
        _check_channels(self, input, self.num_features)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.item())
        # Without running statistics there is nothing else to normalise with, even in eval.
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)``: statistics per channel over N (and L)."""

    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)``: statistics per channel over N, H and W."""

    _expected_dims = (4,)


class _InstanceNorm(_NormBase):
    """Instance normalisation: each sample's channel normalised over its own positions.

    PyTorch's defaults differ from batch norm's: no affine parameters and no running
    statistics. With ``track_running_stats`` the running ones follow the batch's mean of
    the per-instance statistics in training and replace them in evaluation (``momentum=None``
    means 0 here, as PyTorch; ``num_batches_tracked`` is kept but not counted). An input
    without its batch dim is normalised as a batch of one."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dims(input)
        if input.ndim == self._expected_dims[0]:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        return F.instance_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
        )


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of ``(N, C, L)`` (or ``(C, L)``): statistics per sample and
    channel over L."""

    _expected_dims = (2, 3)


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of ``(N, C, H, W)`` (or ``(C, H, W)``): statistics per image and
    channel over H and W (style transfer, GAN generators)."""

    _expected_dims = (3, 4)


class LayerNorm(Module):
    """Normalises each sample over its last ``len(normalized_shape)`` dims (one mean and
    variance per token or per image, independent of the batch); ``weight`` (ones) and
    ``bias`` (zeros) have shape ``normalized_shape``."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        _register_affine(self, self.normalized_shape, elementwise_affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}"


class GroupNorm(Module):
    """Group normalisation: the ``num_channels`` channels form ``num_groups`` groups, and each
    sample's group is normalised over its channels and positions, then scaled and shifted
    per channel by ``weight`` (ones) and ``bias`` (zeros). Batch-size independent: the
    normalisation of choice when medical images come a few at a time."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        _register_affine(self, (num_channels,), affine, bias, device, dtype)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        _check_channels(self, input, self.num_channels)
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.bias is not None}"
