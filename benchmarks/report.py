"""What a benchmark run shows: the per-layer totals, and the rows as Markdown tables.

The tables print the rows at the table's batch (and the attention sweep, whose size is its
sequence length); every other size stays in the JSON and the time-against-size plots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def at_table_size(row: Mapping[str, Any], batch: int) -> bool:
    """Whether a primitive row belongs in the tables: the table's batch, or the attention sweep."""
    return row["batch"] == batch or row["model"] == "attention"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of equal keys as a Markdown table; floats to 3 significant figures."""
    if not rows:
        return "(no rows)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


def layer_totals(rows: Sequence[Mapping[str, Any]], batch: int) -> list[dict[str, Any]]:
    """Each layer's forward + backward (the sum of its parts' times) at the table's size, per
    implementation, and that time relative to PyTorch's on the same device."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if not at_table_size(row, batch):
            continue
        entry = totals.setdefault(
            (row["device"], row["layer"]),
            {"device": row["device"], "label": f"{row['layer']} ({row['device']})", "shape": row["shape"], "ms": {}},
        )
        for name, ms in row["ms"].items():
            entry["ms"][name] = entry["ms"].get(name, 0.0) + ms
    for entry in totals.values():
        reference = next(name for name in entry["ms"] if name.startswith("torch"))
        entry["ratio_to_torch"] = {
            name: ms / entry["ms"][reference] for name, ms in entry["ms"].items() if name != reference
        }
    return list(totals.values())


def primitives(rows: Sequence[Mapping[str, Any]], batch: int) -> list[dict[str, Any]]:
    """One line per part at the table's size, for the rows of one device: PyTorch's time, then
    each other implementation's time and ratio, and tinymed's GFLOP/s and GB/s."""
    shown = [row for row in rows if at_table_size(row, batch)]
    names = list(dict.fromkeys(name for row in shown for name in row["ms"]))
    reference = next((name for name in names if name.startswith("torch")), None)
    table = []
    for row in shown:
        line = {
            "layer": row["layer"],
            "part": row["part"],
            "shape": row["shape"],
            f"{reference} ms": row["ms"][reference],
        }
        for name in names:
            if name == reference:
                continue
            line[f"{name} ms"] = row["ms"].get(name, "-")
            line[f"{name} / torch"] = row["ratio_to_torch"].get(name, "-")
            if name.startswith("tinymed"):
                line[f"{name} GFLOP/s"] = row["gflops"][name]
                line[f"{name} GB/s"] = row["gbs"][name]
        table.append(line)
    return table


def layer_table(totals: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per layer: its shape and each implementation's forward + backward / PyTorch's."""
    return [
        {"layer": t["label"], "shape": t["shape"], **{f"{n} / torch": r for n, r in t["ratio_to_torch"].items()}}
        for t in totals
    ]


def step_table(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per model and backend: images per second on each side, and the time ratio."""
    return [
        {
            "model": s["label"],
            **{f"{n} images/s": v for n, v in s["images_per_s"].items()},
            **{f"{n} / torch": r for n, r in s["ratio_to_torch"].items()},
        }
        for s in steps
    ]
