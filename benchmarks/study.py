"""A recipe study, whatever it trains: every recipe over the same seeds, each run's figures,
and per recipe their mean and standard deviation, as ``study.json``, a Markdown table
(``study.md``) and a plot (``study.png``).

A study is its recipes (name -> the training config's overrides, each written out in full so
the table keeps its meaning when the defaults change), its figures (name -> where a run's
results hold it and its label in the table) and a function that trains one run, or reads it
back when it has finished, and returns its results. Each run trains in its own directory,
``OUT/RECIPE/seed-N``, so a study can be stopped and restarted. :mod:`benchmarks.classifier_study`
and :mod:`benchmarks.gan_study` are two.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["Figures", "TrainRun", "read_figures", "summarise", "markdown", "plot", "add_arguments", "run_study"]

# name -> (the keys leading to it in a run's results, its label in the table)
Figures = Mapping[str, tuple[tuple[str, ...], str]]
# (recipe, its overrides, seed, run directory, the command line) -> that run's results
TrainRun = Callable[[str, Mapping[str, Any], int, Path, argparse.Namespace], Mapping[str, Any]]
# Figures that count whole things (seconds, epochs): shown without decimals.
WHOLE = ("seconds", "epochs")


def read_figures(results: Mapping[str, Any], figures: Figures) -> dict[str, float | None]:
    """The ``figures`` of one run's results (None where the run has none)."""
    found: dict[str, float | None] = {}
    for name, (keys, _) in figures.items():
        value: Any = results
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        found[name] = value
    return found


def summarise(runs: Sequence[Mapping[str, Any]], figures: Figures) -> list[dict[str, Any]]:
    """Per recipe, in the runs' order: the seeds, and each figure's mean and standard
    deviation over them (sample sd, ddof 1; 0 for one seed)."""
    rows = []
    for recipe in dict.fromkeys(run["recipe"] for run in runs):
        mine = [run for run in runs if run["recipe"] == recipe]
        row: dict[str, Any] = {"recipe": recipe, "seeds": [run["seed"] for run in mine]}
        for name in figures:
            values = np.array([run[name] for run in mine if run[name] is not None], dtype=np.float64)
            row[name] = {
                "mean": float(values.mean()) if values.size else None,
                "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            }
        rows.append(row)
    return rows


def markdown(summary: Sequence[Mapping[str, Any]], recipes: Mapping[str, Any], figures: Figures, config: str) -> str:
    """The summary as a Markdown table, mean ± sd, then each recipe's overrides of ``config``."""
    lines = [
        "| recipe | seeds | " + " | ".join(label for _, label in figures.values()) + " |",
        "| --- | --- |" + " --- |" * len(figures),
    ]
    for row in summary:
        cells = []
        for name in figures:
            mean, sd = row[name]["mean"], row[name]["sd"]
            digits = 0 if name in WHOLE else 4
            cells.append("n/a" if mean is None else f"{mean:.{digits}f} ± {sd:.{digits}f}")
        lines.append(f"| {row['recipe']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", f"Recipes ({config} overrides; every other field at its default):", ""]
    lines += [f"- `{name}`: `{json.dumps(overrides)}`" for name, overrides in recipes.items()]
    return "\n".join(lines) + "\n"


def plot(summary: Sequence[Mapping[str, Any]], figures: Figures, path: Path) -> None:
    """One panel per figure, four to a row: each recipe's mean with its sd as an error bar."""
    columns = min(4, len(figures))
    rows = math.ceil(len(figures) / columns)
    fig = Figure(figsize=(4 * columns, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    x = np.arange(len(summary))
    for ax, name in zip(axes, figures):
        means = [np.nan if row[name]["mean"] is None else row[name]["mean"] for row in summary]
        ax.errorbar(x, means, yerr=[row[name]["sd"] for row in summary], fmt="o", capsize=4)
        ax.set_title(figures[name][1])
        ax.set_xticks(x, [row["recipe"] for row in summary], rotation=35, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(figures) :]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)


def add_arguments(
    parser: argparse.ArgumentParser, recipes: Mapping[str, Any], out: str, seeds: Sequence[int]
) -> argparse.ArgumentParser:
    """A study's own options on ``parser``: the data, the seeds, which recipes, where, how."""
    parser.add_argument("--data", metavar="FILE.npz", required=True, help="the data set's file, MedMNIST layout")
    parser.add_argument("--dataset", default="pneumoniamnist", help="its name (default: pneumoniamnist)")
    default_seeds = " ".join(map(str, seeds))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(seeds), metavar="N", help=f"(default: {default_seeds})"
    )
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=list(recipes),
        choices=list(recipes),
        metavar="NAME",
        help=f"which recipes to run (default: all: {', '.join(recipes)})",
    )
    parser.add_argument("--out", default=out, help="(default: %(default)s)")
    parser.add_argument("--backend", default="numpy", help="(default: numpy)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: one epoch of a tiny network per run")
    return parser


def run_study(
    args: argparse.Namespace,
    recipes: Mapping[str, Mapping[str, Any]],
    quick: Mapping[str, Any],
    train: TrainRun,
    figures: Figures,
    config: str,
    about: Mapping[str, Any],
) -> dict[str, Any]:
    """Every recipe of ``args.recipes`` (with the ``quick`` overrides under ``--quick``) over
    ``args.seeds``, each trained (or read back) by ``train(recipe, overrides, seed, run_dir, args)``;
    writes to ``args.out`` and returns the study: ``about`` (what was studied), the data set,
    the recipes, every run's figures and the summary. ``config`` names what the recipes
    override, for the table."""
    out, chosen = Path(args.out), {name: {**recipes[name], **(quick if args.quick else {})} for name in args.recipes}
    runs = []
    for recipe, overrides in chosen.items():
        for seed in args.seeds:
            results = train(recipe, overrides, seed, out / recipe / f"seed-{seed}", args)
            runs.append({"recipe": recipe, "seed": seed, **read_figures(results, figures)})
    study = {"dataset": args.dataset, **about, "quick": args.quick, "recipes": chosen, "runs": runs}
    study["summary"] = summarise(runs, figures)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n")
    table = markdown(study["summary"], chosen, figures, config)
    (out / "study.md").write_text(table)
    plot(study["summary"], figures, out / "study.png")
    print(table)
    print(f"wrote {out / 'study.json'}, {out / 'study.md'} and {out / 'study.png'}")
    return study
