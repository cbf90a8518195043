"""Where a classifier looks: Grad-CAM, saliency and attention maps.

**Grad-CAM** (Selvaraju et al., 2017). Take a convolutional layer's output ``A`` of shape
``(K, h, w)`` and the score ``y_c`` of the class c being explained. Each channel k gets the
weight ``alpha_k = mean_{i,j} dy_c / dA_k[i, j]`` (how much the class score rises with that
channel, on average over the positions), and the map is::

    cam = ReLU( sum_k alpha_k A_k )          (h, w), then upsampled to the image's size

The ReLU keeps only the evidence *for* class c.

**Saliency** (Simonyan et al., 2014): ``|dy_c / dx|``, the largest over the channels, per
pixel: which pixels would change the score most.

**Attention map**: for a model with a :class:`~tinymed.models.medcnn.SpatialSelfAttention`
block, the attention each position of the feature map *receives*, averaged over the heads
and over the positions that attend: ``mean_i P[i, j]`` with ``P = softmax(Q K^T / sqrt(d))``.

Every map is scaled to [0, 1] per image (divided by its maximum) for display. The layer's
output is caught by a forward hook, which also asks autograd to keep that non-leaf
tensor's gradient (``Tensor.retain_grad``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import tinymed
from tinymed import functional as F
from tinymed import nn
from tinymed.models import ModelError
from tinymed.models.medcnn import SpatialSelfAttention
from tinymed.tensor import Tensor

__all__ = ["find_layer", "capture", "gradcam", "saliency", "attention_map", "resize_bilinear"]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()`` (e.g. ``"block3"``, ``"conv2"``)."""
    layers = dict(model.named_modules())
    if not name or name not in layers:
        raise ModelError(
            f"{type(model).__name__} has no layer {name!r}; its layers are: {', '.join(n for n in layers if n)}"
        )
    return layers[name]


class _Record:
    """What :func:`capture` saw: the layer's positional inputs and its output."""

    inputs: tuple[Any, ...]
    output: Tensor


@contextmanager
def capture(module: nn.Module) -> Iterator[_Record]:
    """Within the block, every call of ``module`` records its inputs and output, and the
    output keeps its gradient after ``backward()`` (a forward hook)."""
    record = _Record()

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        if output.requires_grad:
            output.retain_grad()
        record.inputs, record.output = inputs, output

    handle = module.register_forward_hook(hook)
    try:
        yield record
    finally:
        handle.remove()


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm's running statistics, no dropout) for the block, then back;
    the parameters' gradients from explaining are cleared afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        model.zero_grad()


def _backward_class_score(logits: Tensor, target: int | np.ndarray | None) -> np.ndarray:
    """Backpropagate the sum over the batch of each image's score ``logits[n, target[n]]``
    (the predicted class when target is None); returns the targets."""
    n, classes = logits.shape
    targets = logits.numpy().argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (n,))
    one_hot = np.zeros((n, classes), dtype=logits.dtype)
    one_hot[np.arange(n), targets] = 1
    (logits * tinymed.tensor(one_hot, device=logits.device)).sum().backward()
    return targets


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, H, W)``, sampling at pixel centres:
    :func:`tinymed.functional.interpolate` with ``mode="bilinear"``, as PyTorch's."""
    resized = F.interpolate(tinymed.tensor(maps[:, None]), size=tuple(size), mode="bilinear")
    return resized.numpy()[:, 0]


def _unit_scale(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0)


def gradcam(
    model: nn.Module, x: Tensor, target: int | np.ndarray | None = None, layer: str | None = None
) -> np.ndarray:
    """Grad-CAM maps ``(N, H, W)`` in [0, 1] for images x ``(N, C, H, W)``.

    target: the class to explain (an int, or one per image); default the predicted class.
    layer: a name from ``model.named_modules()``; default ``model.gradcam_layer``, the last
    convolution block. The model runs in eval mode."""
    layer = layer or getattr(model, "gradcam_layer", "")
    module = find_layer(model, layer)
    with _evaluating(model), capture(module) as record:
        _backward_class_score(model(x), target)
        activations = record.output.numpy()
        gradients = record.output.grad.numpy()
    if activations.ndim != 4:
        raise ModelError(
            f"gradcam: layer {layer!r} outputs shape {activations.shape}; Grad-CAM needs a "
            f"convolutional feature map (N, K, h, w)"
        )
    alpha = gradients.mean(axis=(2, 3), keepdims=True)
    cam = np.maximum((alpha * activations).sum(axis=1), 0)
    return _unit_scale(resize_bilinear(cam, x.shape[2:]))


def saliency(model: nn.Module, x: Tensor, target: int | np.ndarray | None = None) -> np.ndarray:
    """Saliency maps ``(N, H, W)`` in [0, 1]: ``max_c |d score / d x[c]|`` per pixel."""
    x = x.detach().requires_grad_()
    with _evaluating(model):
        _backward_class_score(model(x), target)
        gradient = x.grad.numpy()
    return _unit_scale(np.abs(gradient).max(axis=1))


def attention_map(model: nn.Module, x: Tensor) -> np.ndarray | None:
    """The attention each feature-map position receives, upsampled to ``(N, H, W)`` in [0, 1];
    None for a model with no :class:`SpatialSelfAttention` block."""
    blocks = [m for m in model.modules() if isinstance(m, SpatialSelfAttention)]
    if not blocks:
        return None
    with _evaluating(model), tinymed.no_grad(), capture(blocks[-1]) as record:
        model(x)
        features = record.inputs[0]
        weights = blocks[-1].attention_weights(features)
    h, w = features.shape[2:]
    received = weights.numpy().mean(axis=1).reshape(len(x), h, w)
    return _unit_scale(resize_bilinear(received, x.shape[2:]))
