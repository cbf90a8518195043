"""The course: every written chapter runs as a script and as a notebook, its graders pass on the
solutions and fail on the released stubs, the release gives no solution away, and the
``tinymed course`` commands behave as an instructor and a student need.

Chapters run in fast mode (TINYMED_FAST=1) with their figures in a temporary folder; the
tests are parametrized over the registry, so a new chapter is tested as soon as its file exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import graded_with

from tinymed import cli, plots
from tinymed.course import CHAPTERS, CourseError, fast, find_chapter, pick, show, xray_dataset
from tinymed.course.check import grade_file, student_file
from tinymed.course.graders import exercises_of
from tinymed.course.grading import Exercise
from tinymed.course.notebook import (
    BEGIN_SOLUTION,
    END_SOLUTION,
    EXERCISE_TAG,
    graded_cells,
    read_cells,
    write_notebooks,
)
from tinymed.course.release import release, student_version

jupytext = pytest.importorskip("jupytext", reason="the course tests need the course extra (jupytext)")
nbclient = pytest.importorskip("nbclient", reason="the course tests need the course extra (nbclient)")

ROOT = Path(__file__).resolve().parent.parent
WRITTEN = [c for c in CHAPTERS if c.exists()]
PNG = b"\x89PNG\r\n\x1a\n"


def main(argv: list[str]) -> int:
    """``tinymed course ARGV...``; returns the exit status."""
    return cli.main(["course", *argv])


@pytest.fixture
def chapter_env(tmp_path, monkeypatch):
    """Fast mode, figures in tmp_path/figures, and this checkout's tinymed first on the path
    (for subprocesses and Jupyter kernels alike). One BLAS thread: fast mode's products are
    tiny, and on a loaded 2-core machine threaded BLAS spends seconds waiting on them."""
    monkeypatch.setenv("TINYMED_FAST", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("TINYMED_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return tmp_path


def _pngs(folder: Path) -> list[Path]:
    pngs = sorted(folder.glob("*.png"))
    assert pngs, f"no figures in {folder}"
    for png in pngs:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000, f"{png.name} is not a drawn PNG"
    return pngs


def _solution_lines(text: str) -> set[str]:
    """The lines only a solution holds: inside the markers, and nowhere else in the chapter."""
    inside, outside, solving = set(), set(), False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in (BEGIN_SOLUTION, END_SOLUTION):
            solving = stripped == BEGIN_SOLUTION
        elif stripped:
            (inside if solving else outside).add(stripped)
    return inside - outside


# ------------------------------------------------------------------ every written chapter


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_chapter_runs_as_a_script(chapter, chapter_env):
    done = subprocess.run(
        [sys.executable, str(chapter.path())], capture_output=True, text=True, timeout=600, cwd=chapter_env
    )
    assert done.returncode == 0, f"{chapter.file_name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "data: " in done.stdout or not chapter.real_data, "a chapter on X-rays says which data it uses"
    _pngs(chapter_env / "figures")


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_chapter_runs_as_a_notebook(chapter, chapter_env):
    notebook = jupytext.read(chapter.path())
    nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(chapter_env)}}
    ).execute()
    inline = [
        output["data"]["image/png"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    saved = _pngs(chapter_env / "figures")
    assert len(inline) == len(saved), "every figure shown inline is the one saved"
    assert all(len(png) > 1000 for png in inline)


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_chapter_follows_the_format(chapter):
    text = chapter.path().read_text()
    cells = read_cells(chapter.path())
    opening = cells[0].source
    assert cells[0].cell_type == "markdown" and opening.startswith(f"# Chapter {chapter.number} · {chapter.title}")
    for objective in chapter.objectives:
        assert f"- {objective}" in opening, f"the opening lists the registry's objective {objective!r}"
    assert any(c.cell_type == "markdown" and "## Exercises" in c.source for c in cells), "ends with Exercises"
    exercises = exercises_of(chapter)
    assert exercises, f"{chapter.slug} has no graders: add tinymed/course/graders/ch{chapter.number:02d}.py"
    assert [e.id for e in exercises] == [f"{chapter.number}.{k}" for k in range(1, len(exercises) + 1)]
    exercise_cells = [c.source for c in cells if EXERCISE_TAG in c.metadata.get("tags", ())]
    for exercise in exercises:
        defining = [s for s in exercise_cells if re.search(rf"^(def|class) {exercise.name}\b", s, re.MULTILINE)]
        assert len(defining) == 1, f"exercise {exercise.id}: one cell tagged exercise defines `{exercise.name}`"
        assert BEGIN_SOLUTION in defining[0], f"exercise {exercise.id} has no solution between the markers"
    student_version(text, exercises, chapter.file_name)  # raises on a stray or unpaired marker


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_graders_pass_on_the_solutions(chapter):
    results = grade_file(chapter.path(), exercises_of(chapter))
    failed = [f"{r.exercise.id} {r.exercise.name}: {r.message}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    return out, release(out)


@pytest.mark.parametrize("write", [release, write_notebooks], ids=["release", "notebooks"])
def test_writing_the_chapters_again_keeps_a_students_answers_unless_told(write, tmp_path):
    answer = tmp_path / f"{WRITTEN[1].slug}.ipynb"
    answer.write_text("my answers")
    with pytest.raises(CourseError, match=rf"{answer.name} already exist.*pass --overwrite to replace them"):
        write(tmp_path)
    assert answer.read_text() == "my answers" and sorted(tmp_path.iterdir()) == [answer]
    assert answer in write(tmp_path, overwrite=True) and answer.read_text() != "my answers"


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
@pytest.mark.parametrize("suffix", [".py", ".ipynb"])
def test_graders_fail_on_the_released_stubs(chapter, suffix, released):
    out, _ = released
    for result in grade_file(out / f"{chapter.slug}{suffix}", exercises_of(chapter)):
        assert not result.passed, f"exercise {result.exercise.id} passes without an answer"
        assert result.message.startswith("not attempted yet"), result.message


def test_release_writes_the_chapters_and_no_solution(released):
    out, written = released
    assert sorted(p.name for p in out.iterdir()) == sorted(
        name for c in WRITTEN for name in (c.file_name, f"{c.slug}.ipynb")
    )
    assert sorted(written) == sorted(out.iterdir())
    for chapter in WRITTEN:
        secret = _solution_lines(chapter.path().read_text())
        assert secret, f"{chapter.slug}: no solution lines found"
        sources = [(out / chapter.file_name).read_text()]
        sources += [c.source for c in read_cells(out / f"{chapter.slug}.ipynb")]
        for source in sources:
            assert "BEGIN SOLUTION" not in source and "END SOLUTION" not in source
            leaked = [line for line in source.splitlines() if line.strip() in secret]
            assert not leaked, f"{chapter.slug}: the release shows solution lines {leaked}"
        notebook = jupytext.read(out / f"{chapter.slug}.ipynb")
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "no outputs shipped"


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_the_student_version_runs_top_to_bottom(chapter, released, chapter_env):
    """Nothing outside an exercise cell calls an exercise, so a student can run the whole
    released chapter before answering anything."""
    out, _ = released
    done = subprocess.run(
        [sys.executable, str(out / chapter.file_name)], capture_output=True, text=True, timeout=600, cwd=chapter_env
    )
    assert done.returncode == 0, f"released {chapter.file_name} failed:\n{done.stderr[-3000:]}"


# ------------------------------------------------------------------ chapter 1's graders fail for the right reason


def _chapter1_with(tmp_path: Path, old: str, new: str) -> Path:
    text = find_chapter(1).path().read_text()
    assert old in text
    path = tmp_path / "01_autograd.py"
    path.write_text(text.replace(old, new))
    return path


def _chapter1_result(path: Path, exercise_id: str):
    return next(r for r in grade_file(path, exercises_of(find_chapter(1))) if r.exercise.id == exercise_id)


_RECURSIVE = "    order, visited, stack = [], set(), [(root, False)]"


@pytest.mark.parametrize(
    "exercise, old, new, hint",
    [
        ("1.1", "(1.0 - t * t,)", "(1.0 - t,)", "1 - tanh(x)**2"),
        ("1.1", "t = math.tanh(x.data)\n", "t = math.sinh(x.data)\n", "tanh(Value(0.5)).data"),
        ("1.1", 'return Value(t, (x,), (1.0 - t * t,), "tanh")', "return t", "must return a Value"),
        (
            "1.1",
            "t = math.tanh(x.data)\n",
            "t = (math.exp(2 * x.data) - 1) / (math.exp(2 * x.data) + 1)\n",
            "use math.tanh",
        ),
        (
            "1.1",
            'return Value(t, (x,), (1.0 - t * t,), "tanh")',
            "return Value(t, (Value(x.data),), (1 - t * t,))",
            "x itself",
        ),
        ("1.2", _RECURSIVE, "    return topological_order(root)\n" + _RECURSIVE, "RecursionError on a chain of 10,000"),
        ("1.2", "elif node not in visited:", "elif True:", "more than once"),
        ("1.3", "self.xp.logaddexp(0.0, x)", "self.xp.log(1 + self.xp.exp(x))", "np.logaddexp"),
        ("1.3", "grad_output * -self.xp.expm1(-self.out)", "grad_output * self.out", "backward disagrees with finite"),
        ("1.3", "grad_output * -self.xp.expm1(-self.out)", "-self.xp.expm1(-self.out)", "multiply it by grad_output"),
    ],
    ids=[
        "tanh-derivative",
        "tanh-value",
        "tanh-returns-a-float",
        "tanh-overflow",
        "tanh-copies-x",
        "order-recursive",
        "order-duplicates",
        "softplus-overflow",
        "softplus-backward",
        "softplus-ignores-grad-output",
    ],
)
def test_graders_hint_at_the_mistake(tmp_path, exercise, old, new, hint):
    result = _chapter1_result(_chapter1_with(tmp_path, old, new), exercise)
    assert not result.passed and hint in result.message, result.message


# ------------------------------------------------------------------ chapters 5 and 9: graders fail for the right reason


_CAUSAL = "np.tril(np.ones((lq, lk), dtype=bool))"
_CHAPTER5_MISTAKES = [
    pytest.param(
        "5.1",
        "scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])",
        "scores = q @ k.T / np.sqrt(q.shape[-1])",
        "np.swapaxes(k, -1, -2)",
        id="attention-transposes-every-axis",
    ),
    pytest.param(
        "5.1",
        "scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])",
        "scores = q @ np.swapaxes(k, -1, -2)",
        "sqrt(d_k)",
        id="attention-unscaled",
    ),
    pytest.param(
        "5.1",
        "weights.sum(axis=-1, keepdims=True)",
        "weights.sum(axis=-2, keepdims=True)",
        "the last axis",
        id="attention-wrong-axis",
    ),
    pytest.param(
        "5.1",
        "weights = np.exp(scores - top)",
        "weights = np.exp(scores)",
        "subtract each row's maximum",
        id="attention-overflow",
    ),
    pytest.param(
        "5.1",
        "np.where(mask, scores, -np.inf)",
        "np.where(mask, -np.inf, scores)",
        "wrong way round",
        id="attention-mask-inverted",
    ),
    pytest.param(
        "5.1", "np.where(mask, scores, -np.inf)", "scores + mask", "still gets weight", id="attention-mask-added"
    ),
    pytest.param(
        "5.1",
        "    top = np.where(np.isneginf(top), 0.0, top)",
        "    pass",
        "no key left gives nan",
        id="attention-empty-row",
    ),
    pytest.param("5.1", ".astype(q.dtype)", "", "return q's dtype", id="attention-dtype"),
    pytest.param("5.2", _CAUSAL, _CAUSAL.replace("tril", "triu"), "upper triangle", id="causal-upper"),
    pytest.param("5.2", _CAUSAL, _CAUSAL[:-1] + ", k=-1)", "keep the diagonal", id="causal-no-diagonal"),
    pytest.param("5.2", _CAUSAL, "~" + _CAUSAL, "inverted", id="causal-inverted"),
    pytest.param("5.2", _CAUSAL, "np.tril(np.ones((lq, lk)))", "boolean NumPy array", id="causal-float"),
    pytest.param("5.2", _CAUSAL, _CAUSAL[:-1] + ", k=lk - lq)", "aligned at the top left", id="causal-bottom-right"),
    pytest.param(
        "5.3",
        "acc = acc * rescale[:, None] + p @ v_tile",
        "acc = acc + p @ v_tile",
        "AND the running sum",
        id="online-no-rescale",
    ),
    pytest.param(
        "5.3", "in kv_tiles:", "in list(kv_tiles):", "a tile kept for later is overwritten", id="online-keeps-tiles"
    ),
    pytest.param("5.3", "m + np.log(l)", "np.log(l)", "lse = m + log(l)", id="online-lse"),
    pytest.param(
        "5.3",
        "p = np.exp(s - m_new[:, None])",
        "p = np.exp(s) * np.exp(-m_new[:, None])",
        "never s itself",
        id="online-overflow",
    ),
    pytest.param("5.3", "if scale is None else scale", "", "use the scale you are given", id="online-ignores-scale"),
]


_CAM = "np.maximum((alpha * activations).sum(axis=1), 0.0)"
_ALPHA = "gradients.mean(axis=(2, 3), keepdims=True)"
_POSITIONS = "range(0, height - patch + 1, stride), range(0, width - patch + 1, stride)"
_FILL = "copies[index, :, top : top + patch, left : left + patch] = fill"
_BASE = "base = np.asarray(score(image[None]))[0]"
_CHAPTER9_MISTAKES = [
    pytest.param("9.1", _ALPHA, _ALPHA.replace("mean", "sum"), "MEAN of the gradient", id="gradcam-sum"),
    pytest.param("9.1", _CAM, "(alpha * activations).sum(axis=1)", "apply ReLU", id="gradcam-no-relu"),
    pytest.param(
        "9.1", _CAM, "np.maximum(alpha * activations, 0.0).sum(axis=1)", "ReLU after the sum", id="gradcam-relu-first"
    ),
    pytest.param("9.1", _CAM, "np.maximum(alpha * activations, 0.0)", "sum over the channels", id="gradcam-no-sum"),
    pytest.param(
        "9.1", _ALPHA, "gradients.mean(axis=(0, 2, 3), keepdims=True)", "its own alpha_k", id="gradcam-batch-mean"
    ),
    pytest.param(
        "9.1", "return " + _CAM, f"cam = {_CAM}\n    return cam / cam.max()", "do not divide", id="gradcam-rescaled"
    ),
    pytest.param(
        "9.2", _POSITIONS, _POSITIONS.replace(" + 1", ""), "(H - patch) // stride + 1", id="occlusion-positions"
    ),
    pytest.param(
        "9.2", _POSITIONS, _POSITIONS.replace("width", "height"), "(H - patch) // stride + 1", id="occlusion-square"
    ),
    pytest.param(
        "9.2",
        "(base - np.asarray(score(copies)))",
        "(np.asarray(score(copies)) - base)",
        "wrong sign",
        id="occlusion-sign",
    ),
    pytest.param("9.2", _FILL, _FILL.replace(":, top", "0, top"), "only the first channel", id="occlusion-one-channel"),
    pytest.param("9.2", _FILL, _FILL.replace("= fill", "= 0.0"), "still hold 0", id="occlusion-ignores-fill"),
    pytest.param(
        "9.2", _BASE, _BASE + "\n        image[:, :patch, :patch] = fill", "changed `images`", id="occlusion-in-place"
    ),
    pytest.param("9.2", _BASE, _BASE.replace("image[None]", "image"), "takes a batch", id="occlusion-unbatched"),
    pytest.param(
        "9.2",
        "(base - np.asarray(score(copies)))",
        "(base - np.array([score(c[None])[0] for c in copies]))",
        "once on it",
        id="occlusion-one-call-per-position",
    ),
]


@pytest.mark.parametrize("exercise, old, new, hint", _CHAPTER5_MISTAKES + _CHAPTER9_MISTAKES)
def test_chapters_5_and_9_graders_hint_at_the_mistake(tmp_path, exercise, old, new, hint):
    result = graded_with(tmp_path, int(exercise.split(".")[0]), exercise, old, new)
    assert not result.passed and hint in result.message, result.message


# ------------------------------------------------------------------ chapters 8 and 11: typical wrong answers


@pytest.mark.parametrize(
    "exercise, old, new, hint",
    [
        (
            "8.1",
            "missed = counts[positive, :].sum() - found\n    false_alarms = counts[:, positive].sum() - found",
            "missed = counts[:, positive].sum() - found\n    false_alarms = counts[positive, :].sum() - found",
            "predictive values",
        ),
        (
            "8.1",
            "missed = counts[positive, :].sum() - found",
            "missed = counts[:, positive].sum() - found",
            "the positive predictive value",
        ),
        (
            "8.1",
            "cleared = counts.sum() - found - missed - false_alarms",
            "cleared = counts[1 - positive, 1 - positive]",
            "every row but `positive`",
        ),
        ("8.1", "if found + missed == 0 or cleared + false_alarms == 0:", "if False:", "raise ValueError"),
        (
            "8.2",
            "mid_rank = np.cumsum(copies) - (copies - 1) / 2.0",
            "mid_rank = np.cumsum(copies) - (copies - 1) / 2.0\n    which = np.argsort(np.argsort(s))\n"
            "    mid_rank = np.arange(1.0, s.size + 1)",
            "mean of the ranks",
        ),
        ("8.2", "(rank_sum - n_pos * (n_pos + 1) / 2.0)", "rank_sum", "subtract n_pos"),
        (
            "8.3",
            "return -(per_image * chosen).sum() / per_image.sum()",
            "return -(per_image * chosen).mean()",
            "sum of the weights",
        ),
        (
            "8.3",
            "log_probabilities = F.log_softmax(logits, dim=1)",
            "log_probabilities = (logits.exp() / logits.exp().sum(dim=1, keepdim=True)).log()",
            "exp(1000) overflows",
        ),
        (
            "11.1",
            "dilation * (kernel_size - 1) + output_padding + 1",
            "(kernel_size - 1) + output_padding + 1",
            "dilated kernel spans",
        ),
        (
            "11.1",
            "out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1",
            "out = (size + 2 * padding - kernel_size) // stride + 1",
            "H_out = (H - 1) * stride",
        ),
        ("11.1", "    if out < 1:\n", "    if False:\n", "raise ValueError"),
        (
            "11.2",
            "cross = np.trace(sqrt_psd(root1 @ sigma2 @ root1))",
            "cross = np.trace(np.sqrt(np.abs(sigma1 @ sigma2)))",
            "square root of each entry",
        ),
        (
            "11.2",
            "cross = np.trace(sqrt_psd(root1 @ sigma2 @ root1))",
            "cross = np.trace(root1 @ sqrt_psd(sigma2))",
            "commute",
        ),
        (
            "11.3",
            "softplus = F.relu(-fake_logits) + (1.0 + (-fake_logits.abs()).exp()).log()",
            "softplus = (1.0 - F.sigmoid(fake_logits)).log()",
            "saturating",
        ),
        (
            "11.3",
            "softplus = F.relu(-fake_logits) + (1.0 + (-fake_logits.abs()).exp()).log()",
            "softplus = -F.sigmoid(fake_logits).log()",
            "sigmoid(l) rounds to 0",
        ),
        (
            "11.3",
            "softplus = F.relu(-fake_logits) + (1.0 + (-fake_logits.abs()).exp()).log()",
            "softplus = (1.0 + (-fake_logits).exp()).log()",
            "exp(-l) overflows",
        ),
        (
            "11.2",
            "np.sqrt(np.clip(values, 0.0, None))",
            "np.sqrt(values)",
            "clip the tiny negative eigenvalues",
        ),
    ],
    ids=[
        "ch8-rates-transposed",
        "ch8-sensitivity-by-column",
        "ch8-rates-binary-only",
        "ch8-rates-undefined",
        "ch8-auc-ties",
        "ch8-auc-offset",
        "ch8-loss-mean",
        "ch8-loss-overflow",
        "ch11-size-dilation",
        "ch11-size-conv-formula",
        "ch11-size-undefined",
        "ch11-fd-entrywise-sqrt",
        "ch11-fd-product-of-roots",
        "ch11-loss-saturating",
        "ch11-loss-overflow",
        "ch11-loss-exp-overflow",
        "ch11-fd-unclipped",
    ],
)
def test_chapters_8_and_11_graders_hint_at_the_mistake(tmp_path, exercise, old, new, hint):
    number = int(exercise.split(".")[0])
    result = graded_with(tmp_path, number, exercise, old, new)
    assert not result.passed and hint in result.message, result.message


def test_an_error_in_student_code_is_one_line_with_its_place(tmp_path):
    path = _chapter1_with(tmp_path, "    t = math.tanh(x.data)\n", "    t = math.tanh(x.data) / 0\n")
    result = _chapter1_result(path, "1.1")
    assert result.message.startswith("ZeroDivisionError: float division by zero, at line")
    assert "the cell defining tanh: `t = math.tanh(x.data) / 0`" in result.message
    path = _chapter1_with(tmp_path, "    t = math.tanh(x.data)\n", "    t = math.tanh(x.data\n")
    result = _chapter1_result(path, "1.1")
    assert result.message.startswith("your exercise cell did not run: SyntaxError"), result.message
    assert _chapter1_result(path, "1.2").passed, "a broken cell fails only the exercises it defines"


# ------------------------------------------------------------------ the commands


def test_check_exit_status_and_lines(capsys, released):
    chapter = WRITTEN[0]
    assert main(["check", str(chapter.number), "--path", str(chapter.path().parent)]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == len(exercises_of(chapter)) and "FAIL" not in out
    released_dir, _ = released
    assert main(["check", chapter.slug, "--path", str(released_dir)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL") == len(exercises_of(chapter)) and "Traceback" not in out
    assert f"0 of {len(exercises_of(chapter))} exercises pass." in out


def test_check_names_what_is_missing(capsys, tmp_path):
    assert main(["check", "1", "--path", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinymed: error: no 01_autograd.py or 01_autograd.ipynb in") and err.count("\n") == 1
    assert main(["check", "99"]) == 2
    assert "no chapter '99'; the chapters are: 1 (01_autograd)" in capsys.readouterr().err


def test_python_m_tinymed_course(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tinymed.course", "list"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0 and all(c.title in done.stdout for c in CHAPTERS)


def test_the_notebook_is_preferred_when_it_is_newer(tmp_path):
    chapter = find_chapter(1)
    script, notebook = tmp_path / chapter.file_name, tmp_path / f"{chapter.slug}.ipynb"
    script.write_text("")
    notebook.write_text("")
    os.utime(script, (1000, 1000))
    os.utime(notebook, (2000, 2000))
    assert student_file(chapter, tmp_path) == notebook
    os.utime(script, (3000, 3000))
    assert student_file(chapter, tmp_path) == script
    notebook.unlink()
    assert student_file(chapter, tmp_path) == script


def test_notebooks_command_writes_readable_notebooks(tmp_path, capsys):
    assert main(["notebooks", str(tmp_path)]) == 0
    written = sorted(tmp_path.glob("*.ipynb"))
    assert [p.stem for p in written] == [c.slug for c in WRITTEN]
    for path, chapter in zip(written, WRITTEN):
        cells = read_cells(path)
        assert len(graded_cells(cells)) >= len(exercises_of(chapter))
        assert any(BEGIN_SOLUTION in c.source for c in cells), "the instructor's notebooks keep the solutions"


def test_list_markdown_is_the_guides_outline(capsys):
    assert main(["list", "--markdown"]) == 0
    outline = capsys.readouterr().out
    assert "| 1 | Autograd from scratch | `01_autograd.py` | - | 90 | real data optional |" in outline
    assert all(f"- {objective}" in outline for c in CHAPTERS for objective in c.objectives)


@pytest.mark.parametrize(
    "text, message",
    [
        ('# %% tags=["exercise"]\ndef f():\n    # BEGIN SOLUTION\n    return 1\n', "has no # END SOLUTION"),
        ('# %% tags=["exercise"]\ndef f():\n    # END SOLUTION\n', "without a # BEGIN SOLUTION"),
        ("# %%\ndef f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n", "outside a cell tagged"),
        ('# %% tags=["exercise"]\ndef g():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n', "`g`"),
    ],
    ids=["unclosed", "unopened", "untagged-cell", "no-such-exercise"],
)
def test_student_version_refuses_a_malformed_chapter(text, message):
    with pytest.raises(CourseError, match=re.escape(message)):
        student_version(text, [Exercise("9.1", "f", "write f", lambda ns: None)], "x.py")


def test_student_version_keeps_the_indentation():
    text = '# %% tags=["exercise"]\nclass F:\n    def f(self):\n        # BEGIN SOLUTION\n        return 1\n        # END SOLUTION\n'
    stub = student_version(text, [Exercise("9.1", "F", "write F", lambda ns: None)])
    assert stub.endswith('    def f(self):\n        raise NotImplementedError("Exercise 9.1: write F")\n')


# ------------------------------------------------------------------ the registry and the chapters' helpers


def test_the_registry_is_in_course_order():
    assert [c.number for c in CHAPTERS] == list(range(1, 14))
    for c in CHAPTERS:
        assert re.fullmatch(rf"{c.number:02d}_[a-z_]+", c.slug)
        assert all(p < c.number for p in c.prerequisites) and 3 <= len(c.objectives) <= 5
    assert find_chapter(1) is find_chapter("01") is find_chapter("autograd") is find_chapter("01_autograd.ipynb")


def test_fast_mode_and_pick(monkeypatch):
    monkeypatch.delenv("TINYMED_FAST", raising=False)
    assert not fast() and pick(10, 1) == 10
    for value, on in [("1", True), ("yes", True), ("0", False), ("false", False), ("", False)]:
        monkeypatch.setenv("TINYMED_FAST", value)
        assert fast() is on and pick(10, 1) == (1 if on else 10)


def test_show_saves_a_png_where_told(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYMED_FIGURES", str(tmp_path / "figs"))
    fig = plots.plot_graph({"y": ["x", "x"]}, {"x": "x", "y": "y = x*x"})
    path = show(fig, "square")
    assert path == tmp_path / "figs" / "square.png" and path.read_bytes()[:8] == PNG
    assert f"figure: {path}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="show: name must be a file stem"):
        show(fig, "sub/dir.png")


def test_xray_dataset_says_which_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.medmnist
    monkeypatch.delenv("TINYMED_DATA", raising=False)
    phantoms = xray_dataset("val", n=8)
    assert len(phantoms) == 8 and phantoms.info.name == "phantoms"
    assert "data: the built-in phantoms (PneumoniaMNIST not found" in capsys.readouterr().out
    file = tmp_path / "small.npz"
    rng = np.random.default_rng(0)
    np.savez(file, val_images=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), val_labels=np.array([[0], [1]] * 3))
    monkeypatch.setenv("TINYMED_DATA", str(file))
    real = xray_dataset("val")
    assert real.info.name == "pneumoniamnist" and real.images.shape == (6, 1, 28, 28)
    assert f"data: PneumoniaMNIST from {file}; val split, 6 images (3 normal, 3 pneumonia)" in capsys.readouterr().out
    monkeypatch.setenv("TINYMED_DATA", str(tmp_path / "typo.npz"))
    with pytest.raises(FileNotFoundError, match=r"\$TINYMED_DATA names .*typo.npz, which is not a file"):
        xray_dataset("val")


# ------------------------------------------------------------------ chapters 2 to 4, 6 and 7: typical wrong answers


_GRID_STRIDE = "for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):"
_SIZE = "size = (size + 2 * p - d * (k - 1) - 1) // s + 1"
_TAPS = "p * D : p * D + S * (OH - 1) + 1 : S, q * D : q * D + S * (OW - 1) + 1 : S"
_IM2COL_LAYOUT = (
    "cols = np.empty((C, K, K, N, OH, OW), dtype=x.dtype)\n"
    "    for p in range(K):\n"
    "        for q in range(K):\n"
    f"            rows = x_pad[:, :, {_TAPS}]\n"
    "            cols[:, p, q] = rows.transpose(1, 0, 2, 3)"
)
_CENTRAL = (
    "        x[i] = kept - eps\n        minus = float(f(x))\n        x[i] = kept\n"
    "        gradient[i] = (plus - minus) / (2 * eps)"
)
_FORWARD = "        x[i] = kept\n        minus = float(f(x))\n        gradient[i] = (plus - minus) / eps"
_GRADIENT_LOOP = (
    "    gradient = np.empty(x.shape)\n    for i in np.ndindex(x.shape):\n        kept = x[i].copy()\n"
    "        x[i] = kept + eps\n        plus = float(f(x))\n" + _CENTRAL + "\n    return gradient"
)
_RAVEL_LOOP = (
    "    flat, gradient = x.reshape(-1), np.empty(x.size)\n    for k in range(x.size):\n        kept = flat[k]\n"
    "        flat[k] = kept + eps\n        plus = float(f(x))\n        flat[k] = kept - eps\n        minus = float(f(x))\n"
    "        flat[k] = kept\n        gradient[k] = (plus - minus) / (2 * eps)\n    return gradient.reshape(x.shape)"
)
_HYPOT_GRADS = "return grad_output * self.a / safe_r, grad_output * self.b / safe_r"


@pytest.mark.parametrize(
    "number, exercise, old, new, hint",
    [
        (2, "2.1", _SIZE, _SIZE.replace("2 * p", "p"), "BOTH sides"),
        (2, "2.1", _SIZE, _SIZE.replace("d * (k - 1)", "(k - 1)"), "spans D(K-1) + 1"),
        (2, "2.1", _SIZE, _SIZE.replace("//", "/"), "floor division"),
        (2, "2.1", "field + d * (k - 1) * jump", "field + d * (k - 1)", "the jump J multiplies by S"),
        (2, "2.1", "        if size < 1:\n", "        if False:\n", "raise ValueError"),
        (2, "2.1", 'f"layer {position}: the kernel', 'f"the kernel', "counting from 0"),
        (2, "2.1", 'f"layer {position}: the kernel', 'f"layer {position + 1}: the kernel', "counting from 0"),
        (2, "2.1", _SIZE, "size = int((size + 2 * p - d * (k - 1) - 1) / s) + 1", "the formula floors"),
        (
            2,
            "2.2",
            "return cols.reshape(C * K * K, N * OH * OW)",
            "return cols.reshape(C * K * K, -1).T",
            "taps as rows",
        ),
        (
            2,
            "2.2",
            _IM2COL_LAYOUT,
            _IM2COL_LAYOUT.replace("(C, K, K, N", "(K, K, C, N").replace("cols[:, p, q]", "cols[p, q]"),
            "channel 0 first",
        ),
        (2, "2.2", _TAPS, _TAPS.replace("p * D", "p").replace("q * D", "q"), "D pixels apart"),
        (2, "2.2", "dtype=x.dtype)\n    for p", ")\n    for p", "keep the input's dtype"),
        (2, "2.3", "return y.reshape(O, N, OH, OW).transpose(1, 0, 2, 3)", "return y.reshape(N, O, OH, OW)", "move N"),
        (2, "2.3", "y = y + bias[:, None]", "y = y", "add bias[o]"),
        (2, "2.4", "grad_output.transpose(1, 0, 2, 3).reshape(O, -1)", "grad_output.reshape(O, -1)", "transpose(1, 0"),
        (2, "2.4", "(grad_y @ cols.T)", "(cols @ grad_y.T)", "dL/dY @ cols.T"),
        (3, "3.1", "y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)", "y = np.zeros((N, C, OH, OW))", "not at 0"),
        (3, "3.1", "constant_values=-np.inf", "constant_values=0", "pad with -inf"),
        (3, "3.1", "better = tap > y", "better = tap >= y", "FIRST maximum"),
        (3, "3.1", "S = K if stride is None else stride", "S = K", "only when stride is None"),
        (
            3,
            "3.1",
            "indices = np.where(better, rows * W + cols, indices)",
            "indices = np.where(better, p * K + q, indices)",
            "not its place inside the window",
        ),
        (
            3,
            "3.2",
            "np.add.at(grad_x, (planes, indices.reshape(N * C, -1)), grad_output.reshape(N * C, -1))",
            "grad_x[planes, indices.reshape(N * C, -1)] += grad_output.reshape(N * C, -1)",
            "the SUM",
        ),
        (3, "3.2", "planes = np.arange(N * C)[:, None]", "planes = 0", "within its own (H, W) plane"),
        (3, "3.3", "rows_g.T @ rows_x", "rows_x.T @ rows_g", "not x^T @ dL/dy"),
        (3, "3.3", "rows_g.sum(axis=0)", "rows_g.mean(axis=0)", "a sum, not a mean"),
        (
            3,
            "3.3",
            "grad_input = (rows_g @ weight).reshape(x.shape)",
            "grad_input = rows_g @ weight",
            "every leading axis",
        ),
        (
            3,
            "3.3",
            "return grad_input, rows_g.T @ rows_x, rows_g.sum(axis=0)",
            "return grad_output @ weight, grad_output.T @ x, grad_output.sum(axis=0)",
            "raised ValueError on a batch of sequences",
        ),
        (4, "4.1", _CENTRAL, _FORWARD, "that is the forward difference"),
        (4, "4.1", "(plus - minus) / (2 * eps)", "(plus - minus) / eps", "divide the difference by 2*eps"),
        (
            4,
            "4.1",
            "    gradient = np.empty(x.shape)\n",
            "    gradient, eps = np.empty(x.shape), 1e-6\n",
            "use the eps",
        ),
        (4, "4.1", "        x[i] = kept\n        gradient[i]", "        gradient[i]", "put its original value back"),
        (4, "4.1", _GRADIENT_LOOP, _RAVEL_LOOP, "is a copy"),
        (4, "4.2", "self.r = self.xp.hypot(a, b)", "self.r = self.xp.sqrt(a * a + b * b)", "overflows"),
        (4, "4.2", "safe_r = self.xp.where(self.r > 0, self.r, 1.0)", "safe_r = self.r", "0/0"),
        (4, "4.2", _HYPOT_GRADS, "return grad_output * self.a / safe_r", "one gradient per input"),
        (4, "4.2", _HYPOT_GRADS, "return self.a / safe_r, self.b / safe_r", "backward disagrees"),
        (6, "6.1", _GRID_STRIDE, "i = cuda.grid(1)\n    if i < x.size:", "cuda.gridsize(1)"),
        (6, "6.1", _GRID_STRIDE, "i = cuda.grid(1)\n    if True:", "indexed past the end"),
        (6, "6.1", " = grad_output[i] if x[i] > 0 else", " = grad_output[i] if x[i] >= 0 else", "not x[i] >= 0"),
        (6, "6.2", "if idx >= N * C * OH * OW:", "if False:", "return at once when idx >= y.size"),
        (6, "6.2", "or x[n, c, h, w] > best:", "or x[n, c, h, w] >= best:", "FIRST maximum"),
        (6, "6.2", "x[n, c, h, w], h * W + w", "x[n, c, h, w], p * kernel_size + q", "h*W + w"),
        (6, "6.2", "c = (idx // (OW * OH)) % C", "c = (idx // (OW * OH)) // N", "unflatten"),
        (7, "7.1", "__float_as_int(v) > 0 ? v", "v > 0 ? v", "__float_as_int"),
        (
            7,
            "7.1",
            'extern "C" __global__ void leaky_relu(const float* x, float* y, float negative_slope, int n)\n{',
            "__global__ void leaky_relu(const float* x, float* y, float negative_slope, int n)\n{",
            'extern "C"',
        ),
        (7, "7.1", "float negative_slope, int n)\n", "double negative_slope, int n)\n", "parameters compile to"),
        (7, "7.1", "i += gridDim.x * blockDim.x", "i += blockDim.x", "gridDim.x"),
        (7, "7.2", "(n + threads_per_block - 1) // threads_per_block", "n // threads_per_block", "round UP"),
        (7, "7.2", "if n < 0:", "if False:", "negative number of elements"),
        (
            7,
            "7.2",
            "if blocks > 2**31 - 1:",
            "if blocks >= 2**31 - 1:",
            "the largest grid, 2**31 - 1 blocks, is allowed",
        ),
        (
            7,
            "7.2",
            "blocks = (n + threads_per_block - 1) // threads_per_block",
            'blocks = __import__("math").ceil(n / threads_per_block)',
            "use integer arithmetic",
        ),
        (
            7,
            "7.1",
            "__float_as_int(v) > 0 ? v : negative_slope * v",
            "fmaxf(v, 0.0f) + negative_slope * fminf(v, 0.0f)",
            "max.ftz.f32",
        ),
        (7, "7.3", '-(-threads_per_block // H100["warp_size"])', "threads_per_block / 32", "count warps"),
        (
            7,
            "7.3",
            'per_warp = -(-registers_per_thread * H100["warp_size"] // unit) * unit',
            'per_warp = registers_per_thread * H100["warp_size"]',
            "multiples of 256",
        ),
        (
            7,
            "7.3",
            'share = shared_bytes_per_block + H100["reserved_shared_memory_per_block"]',
            "share = shared_bytes_per_block",
            "reserved",
        ),
    ],
    ids=[
        "geometry-one-sided-padding",
        "geometry-no-dilation",
        "geometry-true-division",
        "geometry-no-jump",
        "geometry-no-error",
        "geometry-unnamed-layer",
        "geometry-one-based-layer",
        "geometry-truncates",
        "im2col-transposed",
        "im2col-channels-last",
        "im2col-no-dilation",
        "im2col-float64",
        "gemm-axes",
        "gemm-no-bias",
        "weight-grad-columns",
        "weight-grad-transposed",
        "pool-starts-at-zero",
        "pool-zero-padding",
        "pool-last-of-ties",
        "pool-ignores-stride",
        "pool-window-index",
        "unpool-repeated-index",
        "unpool-one-plane",
        "linear-weight-transposed",
        "linear-bias-mean",
        "linear-leading-axes",
        "linear-never-flattens",
        "gradient-forward-difference",
        "gradient-divides-by-eps",
        "gradient-ignores-eps",
        "gradient-leaves-x-changed",
        "gradient-ravel-copy",
        "hypot-overflow",
        "hypot-nan-at-zero",
        "hypot-one-gradient",
        "hypot-ignores-grad-output",
        "relu-no-grid-stride",
        "relu-no-guard",
        "relu-gradient-at-zero",
        "pool-no-guard",
        "pool-last-of-ties",
        "pool-index-in-window",
        "pool-unflatten",
        "leaky-float-comparison",
        "leaky-not-extern-c",
        "leaky-double-slope",
        "leaky-block-stride",
        "grid-rounds-down",
        "grid-negative-n",
        "grid-largest-refused",
        "grid-floats",
        "leaky-fmaxf",
        "occupancy-threads-not-warps",
        "occupancy-register-rounding",
        "occupancy-no-reserved-shared",
    ],
)
def test_chapters_2_to_7_graders_hint_at_the_mistake(tmp_path, number, exercise, old, new, hint):
    result = graded_with(tmp_path, number, exercise, old, new)
    assert not result.passed and hint in result.message, result.message
