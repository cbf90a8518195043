"""The benchmark's plots, as PNG files: time against size, ratios to PyTorch, the roofline.

Each function draws one figure with Matplotlib's object interface (no ``pyplot`` state, so it
runs without a display) from the rows the benchmark also writes to its JSON, and returns the
paths it wrote. A row is one part (forward, a gradient) of one layer at one batch size, timed
in each implementation; see benchmarks/__main__.py for its keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

# One colour per implementation in every figure.
COLOURS = {
    "tinymed numpy": "tab:blue",
    "tinymed cupy": "tab:purple",
    "tinymed numba": "tab:red",
    "torch cpu": "tab:orange",
    "torch cuda": "tab:brown",
    "tinygrad CPU": "tab:green",
}
MARKERS = {"conv2d": "o", "conv_transpose2d": "s", "max_pool2d": "v", "linear": "D", "attention": "*"}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _implementations(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Every implementation named in the rows, in first-seen order, with its colour."""
    names = dict.fromkeys(name for row in rows for name in row["ms"])
    return [(name, COLOURS.get(name, "tab:gray")) for name in names]


def time_vs_size(rows: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """One figure per device and op, a panel per part: ms per call against GFLOP per call,
    log-log, one line per layer through its sizes, one colour per implementation."""
    paths = []
    for device, op in dict.fromkeys((row["device"], row["op"]) for row in rows):
        mine = [row for row in rows if row["device"] == device and row["op"] == op]
        parts = list(dict.fromkeys(row["part"] for row in mine))
        names = _implementations(mine)
        fig = Figure(figsize=(4.2 * len(parts), 4), layout="constrained")
        for ax, part in zip(fig.subplots(1, len(parts), squeeze=False)[0], parts):
            for name, colour in names:
                for layer in dict.fromkeys(row["layer"] for row in mine):
                    points = sorted(
                        (row["flops"] / 1e9, row["ms"][name])
                        for row in mine
                        if row["part"] == part and row["layer"] == layer and name in row["ms"]
                    )
                    if points:
                        x, y = zip(*points)
                        ax.plot(x, y, marker="o", markersize=3, color=colour, alpha=0.7)
                ax.plot([], [], color=colour, label=name)
            ax.set(xscale="log", yscale="log", xlabel="GFLOP per call", ylabel="ms per call", title=f"{op} {part}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{op} on {device}: time against work, every layer and size")
        paths.append(_save(fig, out / f"time_vs_size-{device}-{op}.png"))
    return paths


def ratios(layers: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Bars of time relative to PyTorch on the same device (1 = as fast; lower is faster):
    each layer's forward + backward, and each whole training step."""
    fig = Figure(figsize=(11, 0.28 * max(len(layers), 8) + 1.5), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    for ax, entries, title in ((left, layers, "forward + backward per layer"), (right, steps, "training step")):
        labels = [entry["label"] for entry in entries]
        names = _implementations([{"ms": entry["ratio_to_torch"]} for entry in entries])
        height = 0.8 / max(len(names), 1)
        for i, (name, colour) in enumerate(names):
            values = [entry["ratio_to_torch"].get(name, math.nan) for entry in entries]
            ax.barh(np.arange(len(entries)) + i * height, values, height=height, color=colour, label=name)
        ax.set_yticks(np.arange(len(entries)) + 0.4 - height / 2, labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set(xscale="log", xlabel="time / PyTorch's time (log)", title=title)
        ax.legend(fontsize=8)
    fig.suptitle("Relative to PyTorch on the same device")
    return _save(fig, path)


def roofline(peaks: Mapping[str, float], rows: Sequence[Mapping[str, Any]], device: str, path: Path) -> Path:
    """The machine's roofline (``min(peak, intensity * bandwidth)``) with every row placed at
    its arithmetic intensity (FLOP per byte) and the GFLOP/s each implementation reached."""
    peak, bandwidth = peaks["peak_gflops"], peaks["bandwidth_gbs"]
    intensity = np.array([row["flops"] / row["bytes"] for row in rows])
    x = np.logspace(math.log10(min(intensity.min(), 0.05)), math.log10(max(intensity.max(), 4 * peak / bandwidth)), 200)
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, np.minimum(peak, x * bandwidth), color="black", label=f"roof: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s")
    for name, colour in _implementations(rows):
        for op, marker in MARKERS.items():
            points = [
                (row["flops"] / row["bytes"], row["gflops"][name])
                for row in rows
                if row["op"] == op and name in row["ms"]
            ]
            if points:
                ax.scatter(*zip(*points), color=colour, marker=marker, s=18, alpha=0.75)
        ax.scatter([], [], color=colour, label=name)
    for op, marker in MARKERS.items():
        ax.scatter([], [], color="gray", marker=marker, label=op)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte)", ylabel="GFLOP/s")
    ax.set_title(f"Roofline of {device}: each kernel part at the table's batch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    return _save(fig, path)
