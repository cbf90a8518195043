"""The tutorials folder as a whole: every file in it is a chapter of the registry or the
instructor's guide, whose outline is the registry's. The chapters themselves are tested in
test_course.py."""

from pathlib import Path

from tinymed.course import CHAPTERS
from tinymed.course.chapters import outline_markdown

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"


def test_every_script_is_a_chapter():
    chapters = {c.file_name for c in CHAPTERS}
    for path in TUTORIALS.glob("*.py"):
        assert path.name in chapters, f"{path.name} is not a chapter of the registry (tinymed/course/chapters.py)"


def test_the_guide_holds_the_registrys_outline_markdown():
    guide = (TUTORIALS / "README.md").read_text()
    assert outline_markdown() in guide, "regenerate the table: python -m tinymed.course list --markdown"
