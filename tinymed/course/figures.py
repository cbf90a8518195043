"""Showing a chapter's figures: inline in a notebook, as PNG files when run as a script.

A chapter draws on a :class:`matplotlib.figure.Figure` of its own (the helpers of
:mod:`tinymed.plots` return one; never ``pyplot``, whose global state would show each figure
twice in a notebook) and hands it to :func:`show`. The PNG is rendered by Matplotlib's Agg
canvas in both cases, so no display and no GUI backend is ever needed.

Where the files go: ``$TINYMED_FIGURES`` when it is set, else ``figures/<chapter>/`` beside
the running script (``tutorials/figures/01_autograd/`` for ``python tutorials/01_autograd.py``).
A notebook saves only when ``TINYMED_FIGURES`` is set (the tests set it); otherwise its figures
live in the notebook.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["FIGURES_ENV_VAR", "in_notebook", "figures_dir", "show"]

FIGURES_ENV_VAR = "TINYMED_FIGURES"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, JupyterLab, VS Code, Colab), False in a script
    or a terminal IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def figures_dir() -> Path | None:
    """The folder :func:`show` saves into, or None in a notebook without ``TINYMED_FIGURES``."""
    if os.environ.get(FIGURES_ENV_VAR):
        return Path(os.environ[FIGURES_ENV_VAR]).expanduser()
    if in_notebook():
        return None
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.suffix != ".py":
        return Path("figures")
    return script.resolve().parent / "figures" / script.stem


def show(fig: Figure, name: str) -> Path | None:
    """Show ``fig`` inline in a notebook and save it as ``<figures_dir>/<name>.png``.

    Returns the saved path, or None when nothing was saved (a notebook without
    ``TINYMED_FIGURES``). ``name`` is a file stem such as ``"graph"``.
    """
    if not name or Path(name).name != name or Path(name).suffix:
        raise ValueError(f"show: name must be a file stem like 'graph', got {name!r}")
    FigureCanvasAgg(fig)  # render with Agg whatever backend pyplot would have chosen
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    if in_notebook():
        from IPython.display import Image, display  # present whenever a kernel runs this

        display(Image(data=png.getvalue()))
    folder = figures_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    path.write_bytes(png.getvalue())
    print(f"figure: {path}")
    return path
