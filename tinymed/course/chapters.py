"""The course's chapters: one registry, read by the ``tinymed course`` command, the tests and the
instructor's guide (``tutorials/README.md``, whose outline is :func:`outline_markdown`).

A chapter is the Jupytext percent-format file ``tutorials/NN_slug.py``. In a source checkout
the chapters are read from ``tutorials/`` beside the package; in an installed tinymed they ship
as the package data ``tinymed.tutorials`` (see setup.py), so ``tinymed course release`` and
``tinymed course check`` work from a plain ``pip install``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import tinymed
from tinymed.errors import TinymedError

__all__ = ["Chapter", "CHAPTERS", "CourseError", "chapters_dir", "find_chapter", "outline_markdown"]


class CourseError(TinymedError, ValueError):
    """A mistake the course commands can name in one line (an unknown chapter, a missing file).

    The command exits with status 2 for it, as ``grep`` does for an error: ``tinymed course
    check`` exits with 1 when an exercise fails, which a script must be able to tell apart."""

    exit_status = 2


@dataclass(frozen=True)
class Chapter:
    """One chapter of the course.

    number: its place in the course (1-based). slug: the file stem, ``f"{number:02d}_{word}"``.
    objectives: what a student can do after it, as the chapter's opening lists them.
    prerequisites: the numbers of the chapters it builds on. minutes: class time to work
    through it, exercises included. gpu: it runs kernels on a GPU when there is one (the
    ``[cuda]`` extra) and in Numba's simulator or compile-only when there is not.
    real_data: it uses PneumoniaMNIST when present (the built-in phantoms otherwise).
    """

    number: int
    slug: str
    title: str
    objectives: tuple[str, ...]
    prerequisites: tuple[int, ...]
    minutes: int
    gpu: bool = False
    real_data: bool = False

    @property
    def file_name(self) -> str:
        """``NN_slug.py``, the chapter's file in the chapters folder and in a student's release."""
        return f"{self.slug}.py"

    def path(self) -> Path:
        """Where the instructor's version of this chapter is (it may not be written yet)."""
        return chapters_dir() / self.file_name

    def exists(self) -> bool:
        """Whether the chapter is written (its file is in the chapters folder)."""
        return self.path().is_file()


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(
        1,
        "01_autograd",
        "Autograd from scratch",
        (
            "Draw the computational graph of an expression and read its forward values off it.",
            "Apply the chain rule node by node, and explain why the gradients of a value used twice add up.",
            "Put a graph in topological order and say why backward visits it in reverse.",
            "Write a scalar autograd engine (a `Value` class) and give it a new operation.",
            "Find the same engine in tinymed (`Tensor.backward`, `tm.Function`) and check a new op with gradcheck.",
        ),
        (),
        90,
        real_data=True,
    ),
    Chapter(
        2,
        "02_convolution",
        "Convolution: the formula, the flip, and one matrix product",
        (
            "Compute a true convolution and a cross-correlation with literal loops, and relate them by a kernel flip.",
            "Rewrite a convolution as im2col and one matrix product, and check it against the loops.",
            "Predict output shapes from stride, padding and dilation.",
            "Draw the learned filters and feature maps of a trained CNN.",
        ),
        (1,),
        120,
        real_data=True,
    ),
    Chapter(
        3,
        "03_pooling_affine",
        "Pooling and the affine layer",
        (
            "Compute max pooling and route its gradient through the argmax of each window.",
            "Derive the three gradients of y = Wx + b as matrix products.",
            "Explain what pooling buys a CNN and what it throws away.",
        ),
        (1, 2),
        90,
        real_data=True,
    ),
    Chapter(
        4,
        "04_gradcheck",
        "Gradient checking",
        (
            "Estimate a gradient with central differences and bound its error.",
            "Explain why gradient checks run in float64.",
            "Read a failing check: which input, which element, by how much.",
            "Check an op you wrote with `tinymed.gradcheck`.",
        ),
        (1, 3),
        60,
        real_data=True,
    ),
    Chapter(
        5,
        "05_attention",
        "Self-attention",
        (
            "Compute softmax(QK^T / sqrt(d_k)) V step by step and check it against tinymed.",
            "Apply padding and causal masks.",
            "Split attention into heads and put them back together.",
            "Draw attention maps over an X-ray's feature map.",
            "Explain the online softmax behind the fused kernel.",
        ),
        (3, 4),
        120,
        real_data=True,
    ),
    Chapter(
        6,
        "06_numba_kernels",
        "GPU kernels in Numba CUDA",
        (
            "Map an array computation onto threads and blocks.",
            "Use shared memory to tile a matrix product.",
            "Run a kernel in the CUDA simulator on a laptop.",
            "Hold a kernel to the NumPy reference with hypothesis.",
        ),
        (2, 3),
        150,
        gpu=True,
        real_data=True,
    ),
    Chapter(
        7,
        "07_cuda_kernels",
        "CUDA C kernels through CuPy",
        (
            "Read conv.cu and gemm.cu and map them back to the formulas.",
            "Compile a kernel with NVRTC on any machine and read its register and shared-memory use.",
            "Launch the kernels through CuPy where a GPU exists and compare them with the reference.",
        ),
        (6,),
        120,
        gpu=True,
    ),
    Chapter(
        8,
        "08_pneumonia",
        "Diagnosing pneumonia",
        (
            "Describe the data: images, labels, class balance.",
            "Write the training loop out: batches, augmentation, loss, optimiser, validation.",
            "Read an ROC curve and a confusion matrix; compute sensitivity and specificity.",
            "Choose an operating point and say what it costs in missed cases and false alarms.",
            "Explain why validation and test figures differ.",
        ),
        (2, 3),
        180,
        real_data=True,
    ),
    Chapter(
        9,
        "09_explain",
        "Explaining a diagnosis",
        (
            "Compute Grad-CAM for a trained classifier.",
            "Compare Grad-CAM, attention maps and occlusion sensitivity on the same X-ray.",
            "Say what a heatmap can and cannot tell a radiologist.",
        ),
        (5, 8),
        90,
        real_data=True,
    ),
    Chapter(
        10,
        "10_segmentation",
        "Segmenting what the classifier only points at",
        (
            "Explain with numbers why pixel accuracy flatters a segmenter of small structures, and what Dice and IoU "
            "count instead.",
            "Build a small U-Net from transposed convolutions and skip connections.",
            "Train it with a Dice loss on the phantoms' masks.",
            "Measure Dice and IoU, and draw predicted masks over the images.",
        ),
        (8,),
        120,
    ),
    Chapter(
        11,
        "11_gan",
        "Generating and repairing X-rays",
        (
            "Find why the textbook DCGAN listing breaks, by shape arithmetic.",
            "Train the fixed DCGAN and read its training dynamics.",
            "Measure generated images with the Fréchet distance.",
            "Repair an image by optimising the latent code.",
        ),
        (2, 8),
        150,
        real_data=True,
    ),
    Chapter(
        12,
        "12_benchmarks",
        "CPU versus GPU",
        (
            "Read the benchmark results and plots.",
            "Say where the time goes: arithmetic, copies, launches.",
            "Place an op on a roofline and predict its ceiling.",
        ),
        (5, 6, 7),
        90,
    ),
    Chapter(
        13,
        "13_distributed",
        "Training on many machines",
        (
            "Explain data-parallel training and all-reduce.",
            "Run a data-parallel training step on several processes.",
            "Check that it computes the same gradients as one process.",
        ),
        (8,),
        90,
    ),
)


def chapters_dir() -> Path:
    """The folder holding the chapter files.

    A source checkout (``setup.py`` and ``tutorials/`` beside the package) uses its own
    ``tutorials/``, so a change to a chapter is seen before any re-install; otherwise the
    installed copy, ``tinymed.tutorials``.
    """
    root = Path(tinymed.__file__).resolve().parent.parent
    if (root / "setup.py").is_file() and (root / "tutorials").is_dir():
        return root / "tutorials"
    # tutorials/ has no __init__.py, so tinymed.tutorials is a namespace package: its folder is
    # its search location (importlib.resources would hand back a MultiplexedPath).
    spec = importlib.util.find_spec("tinymed.tutorials")
    if spec is None or not spec.submodule_search_locations:
        raise CourseError(
            "the course's chapters are not installed with this tinymed; reinstall it: pip install 'tinymed[course]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find_chapter(key: str | int) -> Chapter:
    """The chapter a user named: its number (``1``, ``"01"``), slug (``"01_autograd"``), the
    slug's word (``"autograd"``), or its file name."""
    text = str(key).strip().removesuffix(".py").removesuffix(".ipynb")
    for chapter in CHAPTERS:
        word = chapter.slug.split("_", 1)[1]
        if text in (chapter.slug, word) or (text.isdigit() and int(text) == chapter.number):
            return chapter
    names = ", ".join(f"{c.number} ({c.slug})" for c in CHAPTERS)
    raise CourseError(f"no chapter {key!r}; the chapters are: {names}")


def outline_markdown() -> str:
    """The registry as the instructor's guide prints it: a table of the chapters in order, then
    each chapter's objectives."""
    rows = [
        "| # | chapter | file | after | minutes | needs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in CHAPTERS:
        needs = [word for word, flag in (("GPU optional", c.gpu), ("real data optional", c.real_data)) if flag]
        rows.append(
            f"| {c.number} | {c.title} | `{c.file_name}` | {', '.join(map(str, c.prerequisites)) or '-'} | "
            f"{c.minutes} | {', '.join(needs) or '-'} |"
        )
    for c in CHAPTERS:
        rows += ["", f"**{c.number}. {c.title}.** After it a student can:", ""]
        rows += [f"- {objective}" for objective in c.objectives]
    return "\n".join(rows)
