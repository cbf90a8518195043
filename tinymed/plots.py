"""The figures a training run and its evaluation write, as PNG files.

Each function draws one figure with Matplotlib's object interface (a ``Figure`` of its own, no
``pyplot`` state), so it works on a machine with no display and never touches figures the
caller has open. Each returns the path it wrote. Constrained layout fits the labels in one
drawing pass (``bbox_inches="tight"`` would draw every figure twice).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tinymed.metrics import roc_curve

__all__ = [
    "Panel",
    "plot_curves",
    "plot_history",
    "plot_roc",
    "plot_confusion_matrix",
    "plot_explanation",
    "plot_image_grid",
    "plot_gan_history",
]


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


@dataclass(frozen=True)
class Panel:
    """One axes of :func:`plot_curves`: a curve per entry of ``series`` (legend label ->
    history key), an optional y range and a dashed reference level."""

    title: str
    ylabel: str
    series: Mapping[str, str]
    ylim: tuple[float, float] | None = None
    reference: float | None = None


def plot_curves(
    history: Sequence[Mapping[str, float]],
    panels: Sequence[Panel],
    path: str | os.PathLike,
    best_epoch: int | None = None,
    title: str = "",
) -> Path:
    """Per-epoch curves, one panel beside the other. history: one row per epoch, each with
    the key ``epoch`` and the keys the panels name; best_epoch gets a dotted marker line."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(5 * len(panels), 3.8), layout="constrained")
    for ax, panel in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        for (label, key), style in zip(panel.series.items(), ("o-", "s-", "^-", "v-")):
            ax.plot(epochs, [row[key] for row in history], style, label=label)
        if panel.reference is not None:
            ax.axhline(panel.reference, color="grey", linestyle="--", lw=1)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set(xlabel="epoch", ylabel=panel.ylabel, title=panel.title)
        if panel.ylim is not None:
            ax.set_ylim(panel.ylim)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_history(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, best_epoch: int | None = None, title: str = ""
) -> Path:
    """A classifier's loss curves (train and val) and its val AUC and ACC, per epoch.

    history: the rows of ``history.csv``, with the keys ``epoch``, ``train_loss``,
    ``val_loss``, ``val_auc`` and ``val_acc``; best_epoch gets a marker line.
    """
    panels = [
        Panel("loss", "loss", {"train": "train_loss", "val": "val_loss"}),
        Panel("validation", "score", {"val AUC": "val_auc", "val ACC": "val_acc"}),
    ]
    return plot_curves(history, panels, path, best_epoch=best_epoch, title=title)


def plot_roc(y_true: np.ndarray, y_score: np.ndarray, path: str | os.PathLike, title: str = "ROC curve") -> Path:
    """The ROC curve of a binary classifier (y_score the positive-class score), with its AUC."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(fpr, tpr, lw=2, label=f"AUC = {np.trapezoid(tpr, fpr):.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=1, label="chance")
    ax.set(
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "confusion matrix"
) -> Path:
    """The counts ``matrix[true, predicted]``, each cell labelled with its count."""
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    fig = Figure(figsize=(1.2 * k + 2.5, 1.2 * k + 2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    threshold = matrix.max() / 2
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > threshold else "black",
            )
    return _save(fig, path)


def plot_explanation(
    image: np.ndarray, heatmaps: Mapping[str, np.ndarray], path: str | os.PathLike, title: str = ""
) -> Path:
    """The image alone, then each heatmap (values in [0, 1], the image's size) overlaid on it.

    image ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, values in [0, 1]; heatmaps maps a panel
    title (e.g. ``"Grad-CAM (block3)"``) to its ``(H, W)`` map.
    """
    panels = 1 + len(heatmaps)
    fig = Figure(figsize=(3.2 * panels, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels))
    gray = dict(cmap="gray", vmin=0, vmax=1) if image.ndim == 2 else {}
    axes[0].imshow(image, **gray)
    axes[0].set_title("image")
    for ax, (name, heatmap) in zip(axes[1:], heatmaps.items()):
        ax.imshow(image, **gray)
        overlay = ax.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    if heatmaps:
        fig.colorbar(overlay, ax=list(axes), fraction=0.02)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_image_grid(
    images: np.ndarray, path: str | os.PathLike, nrow: int = 8, titles: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Images side by side, ``nrow`` to a row (a GAN's samples, a repair's steps).

    images ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB with values in [0, 1]; titles, when
    given, one per image. The images are tiled into one picture (one ``imshow``, not one
    axes per image, which is what keeps a grid of 64 fast to draw).
    """
    images = np.asarray(images, dtype=np.float64)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"plot_image_grid: {len(titles)} titles for {len(images)} images")
    n, h, w = images.shape[:3]
    cols = min(nrow, n)
    rows = -(-n // cols)
    gap = max(1, h // 14)
    canvas = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, *images.shape[3:]))
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    width = (1.0 if titles is None else 2.2) * cols
    height = width * canvas.shape[0] / canvas.shape[1]
    fig = Figure(figsize=(width, height + (0.5 if title or titles else 0)))
    ax = fig.add_axes((0, 0, 1, height / (height + (0.5 if title or titles else 0))))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for i, text in enumerate(titles or ()):
        r, c = divmod(i, cols)
        ax.text(c * (w + gap) + w / 2, r * (h + gap) - gap, text, ha="center", va="bottom", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gan_history(history: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str = "") -> Path:
    """A GAN's training per epoch: the two losses, and the discriminator's mean outputs.

    history: one row per epoch with the keys ``epoch``, ``loss_d``, ``loss_g``, ``d_real``
    (mean D(x) on real images) and ``d_fake`` (mean D(G(z)) before D's step); the dashed line
    marks 1/2, where D can no longer tell the two apart.
    """
    panels = [
        Panel("losses", "BCE loss", {"discriminator": "loss_d", "generator": "loss_g"}),
        Panel(
            "discriminator outputs",
            "mean probability 'real'",
            {"D(x), real": "d_real", "D(G(z)), generated": "d_fake"},
            ylim=(0, 1),
            reference=0.5,
        ),
    ]
    return plot_curves(history, panels, path, title=title)
