"""The tutorials folder as a whole: every file in it is a chapter of the registry, the instructor's
guide, or a legacy script still waiting for the chapter that replaces it (and each such script
still runs to the end). The chapters themselves are tested in test_course.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tinymed.course import CHAPTERS, find_chapter
from tinymed.course.chapters import outline_markdown

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

# Scripts from before the course, each kept until the chapter that replaces it is written.
LEGACY = {"legacy_convolution.py": 2, "legacy_attention.py": 5}


def test_every_script_is_a_chapter_or_awaits_one():
    chapters = {c.file_name for c in CHAPTERS}
    for path in TUTORIALS.glob("*.py"):
        assert path.name in chapters or path.name in LEGACY, f"{path.name} is neither a chapter nor a legacy script"


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_a_legacy_script_goes_when_its_chapter_comes(name):
    chapter = find_chapter(LEGACY[name])
    assert not (chapter.exists() and (TUTORIALS / name).exists()), (
        f"chapter {chapter.number} ({chapter.file_name}) replaces {name}: delete it"
    )


@pytest.mark.parametrize("name", sorted(n for n in LEGACY if (TUTORIALS / n).exists()))
def test_legacy_script_runs(name):
    done = subprocess.run(
        [sys.executable, str(TUTORIALS / name)], capture_output=True, text=True, timeout=300, cwd=TUTORIALS.parent
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.strip(), f"{name} printed nothing"


def test_the_guide_holds_the_registrys_outline_markdown():
    guide = (TUTORIALS / "README.md").read_text()
    assert outline_markdown() in guide, "regenerate the table: python -m tinymed.course list --markdown"
