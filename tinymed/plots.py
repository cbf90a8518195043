"""The figures of a training run, its evaluation and the course's chapters.

Each function draws one figure with Matplotlib's object interface (a ``Figure`` of its own, no
``pyplot`` state), so it works on a machine with no display and never touches figures the
caller has open. Each returns the ``Figure``, and also writes it as a PNG file when given a
``path`` (a chapter shows it with :func:`tinymed.course.show` instead). Constrained layout fits
the labels in one drawing pass (``bbox_inches="tight"`` would draw every figure twice).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.ticker import MaxNLocator

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
    "plot_graph",
]


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    """Write ``fig`` to ``path`` as a PNG when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


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
    path: str | os.PathLike | None = None,
    best_epoch: int | None = None,
    title: str = "",
) -> Figure:
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5 on a short run
        if panel.ylim is not None:
            ax.set_ylim(panel.ylim)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_history(
    history: Sequence[Mapping[str, float]],
    path: str | os.PathLike | None = None,
    best_epoch: int | None = None,
    title: str = "",
) -> Figure:
    """A classifier's loss curves (train and val) and its val AUC and ACC, per epoch.

    history: the rows of ``history.csv``, with the keys ``epoch``, ``train_loss``,
    ``val_loss``, ``val_auc`` and ``val_acc``; best_epoch gets a marker line.
    """
    panels = [
        Panel("loss", "loss", {"train": "train_loss", "val": "val_loss"}),
        Panel("validation", "score", {"val AUC": "val_auc", "val ACC": "val_acc"}),
    ]
    return plot_curves(history, panels, path, best_epoch=best_epoch, title=title)


def plot_roc(
    y_true: np.ndarray, y_score: np.ndarray, path: str | os.PathLike | None = None, title: str = "ROC curve"
) -> Figure:
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
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike | None = None,
    title: str = "confusion matrix",
) -> Figure:
    """The counts ``matrix[true, predicted]``, each cell labelled with its count."""
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    fig = Figure(figsize=(1.2 * k + 2.5, 1.2 * k + 2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, label="images")
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
    image: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    path: str | os.PathLike | None = None,
    title: str = "",
    label: str = "map value (0 to 1)",
) -> Figure:
    """The image alone, then each heatmap (values in [0, 1], the image's size) overlaid on it.

    image ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, values in [0, 1]; heatmaps maps a panel
    title (e.g. ``"Grad-CAM (block3)"``) to its ``(H, W)`` map; ``label`` names the colour bar.
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
        fig.colorbar(overlay, ax=list(axes), fraction=0.02, label=label)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_image_grid(
    images: np.ndarray,
    path: str | os.PathLike | None = None,
    nrow: int = 8,
    titles: Sequence[str] | None = None,
    title: str = "",
) -> Figure:
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
    # Between rows, room for the next row's titles (a line of text is about a sixth of an image).
    row_gap = gap if titles is None else max(gap, h // 5)
    canvas = np.ones((rows * (h + row_gap) - row_gap, cols * (w + gap) - gap, *images.shape[3:]))
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + row_gap) : r * (h + row_gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    width = (1.0 if titles is None else 2.2) * cols
    height = width * canvas.shape[0] / canvas.shape[1]
    fig = Figure(figsize=(width, height + (0.5 if title or titles else 0)))
    ax = fig.add_axes((0, 0, 1, height / (height + (0.5 if title or titles else 0))))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for i, text in enumerate(titles or ()):
        r, c = divmod(i, cols)
        ax.text(c * (w + gap) + w / 2, r * (h + row_gap) - gap, text, ha="center", va="bottom", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_gan_history(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike | None = None, title: str = ""
) -> Figure:
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


def _graph_layout(parents: Mapping[Hashable, Sequence[Hashable]]) -> dict[Hashable, tuple[float, float]]:
    """(column, row) of every node: a computed node's column is the length of the longest
    path to it from an input, an input's is one before its first use; within a column, nodes sit in the order of their parents' mean row (which keeps
    edges from crossing in small graphs)."""
    nodes = list(dict.fromkeys([*parents, *(p for ps in parents.values() for p in ps)]))
    column: dict[Hashable, int] = {}
    for node in nodes:
        stack = [node]
        while stack:  # a depth-first walk that places a node once all its inputs are placed
            top = stack[-1]
            waiting = [p for p in parents.get(top, ()) if p not in column]
            if waiting:
                stack.extend(waiting)
                continue
            stack.pop()
            column[top] = 1 + max((column[p] for p in parents.get(top, ())), default=-1)
    for node in nodes:  # an input sits just before its first use, not at the far left
        if not parents.get(node):
            uses = [column[child] for child, inputs in parents.items() if node in inputs]
            column[node] = min(uses, default=1) - 1
    position: dict[Hashable, tuple[float, float]] = {}
    for c in range(max(column.values()) + 1):
        first_seen = [n for n in nodes if column[n] == c]
        members = sorted(
            first_seen,
            key=lambda n: np.mean([position[p][1] for p in parents.get(n, ())] or [first_seen.index(n)]),
        )
        for row, node in enumerate(members):
            position[node] = (float(c), row - (len(members) - 1) / 2)
    return position


def plot_graph(
    parents: Mapping[Hashable, Sequence[Hashable]],
    labels: Mapping[Hashable, str],
    path: str | os.PathLike | None = None,
    title: str = "",
) -> Figure:
    """A computational graph, drawn left to right: a box per node, an arrow from each input
    to the node computed from it.

    parents: each computed node's inputs (a node used twice is listed twice and gets two
    arrows); nodes with no entry, or ``()``, are inputs and drawn in blue. labels: each
    node's text, one to three short lines (e.g. ``"z = w*x\ndata 1.20\ngrad -0.31"``).
    """
    position = _graph_layout(parents)
    columns = 1 + max(x for x, _ in position.values())
    rows = max(sum(1 for x, _ in position.values() if x == c) for c in range(int(columns)))
    width, height = 1.0, 0.56  # of a box; columns are 1.5 apart, rows 1
    span_x, span_y = (columns - 1) * 1.5 + width + 0.3, (rows - 1) + height + 0.3
    fig = Figure(figsize=(1.25 * span_x, 1.25 * span_y + 0.4), layout="constrained")
    ax = fig.subplots()
    for node, (x, y) in position.items():
        is_input = not parents.get(node)
        box = FancyBboxPatch(
            (x * 1.5 - width / 2, -y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.03",
            facecolor="#dbe9f6" if is_input else "#f3f3f3",
            edgecolor="#4a78a8" if is_input else "#555555",
        )
        ax.add_patch(box)
        ax.text(x * 1.5, -y, labels.get(node, str(node)), ha="center", va="center", fontsize=8.5, family="monospace")
    for child, inputs in parents.items():
        for k, parent in enumerate(inputs):
            (xp, yp), (xc, yc) = position[parent], position[child]
            bend = 0.25 * (k - (len(inputs) - 1) / 2) if inputs.count(parent) > 1 else 0.0
            ax.add_patch(
                FancyArrowPatch(
                    (xp * 1.5 + width / 2 + 0.03, -yp),
                    (xc * 1.5 - width / 2 - 0.03, -yc),
                    arrowstyle="-|>",
                    mutation_scale=10,
                    connectionstyle=f"arc3,rad={bend}",
                    color="#555555",
                )
            )
    ax.set_xlim(-width / 2 - 0.15, (columns - 1) * 1.5 + width / 2 + 0.15)
    ax.set_ylim(-(rows - 1) / 2 - height / 2 - 0.15, (rows - 1) / 2 + height / 2 + 0.15)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or "computational graph (inputs in blue, arrows point from input to result)")
    return _save(fig, path)
