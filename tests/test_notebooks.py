"""The committed notebooks are run to the end and clean (nbval compares their outputs), and lessons keep the style guide."""

from __future__ import annotations

import ast

import nbformat
import pytest

from payments_lab.exercises import lesson09
from tools.notebooks import is_lesson, notebook_paths, problems, style_problems


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_is_run_and_clean(path) -> None:  # noqa: ANN001
    assert problems(path) == []


def test_lessons_are_numbered_from_00() -> None:
    lessons = [p.name for p in notebook_paths() if p.parent.name == "notebooks"]
    assert lessons and lessons[0].startswith("00-")
    assert all(name[:2].isdigit() and name[2] == "-" for name in lessons)


def test_every_lesson_keeps_the_style_guide() -> None:
    """Every code cell of a lesson is short and followed by a sentence saying what it did."""
    lessons = [p for p in notebook_paths() if is_lesson(p)]
    found = [f"{p.name}: {problem}" for p in lessons for problem in style_problems(p)]
    assert len(lessons) >= 12
    assert not found, "lessons break the style guide:\n" + "\n".join(found)


def test_lesson_09_shows_the_buggy_version_its_checks_judge() -> None:
    """Exercise 09's feedback names the line that raises: the lesson must show that very source."""
    (path,) = [p for p in notebook_paths() if is_lesson(p) and p.name.startswith("09-")]
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    (listing,) = [source for source in cells if source.startswith("V2 = ")]
    assert ast.literal_eval(listing.removeprefix("V2 = ")) == lesson09.BUGGY_SOURCE
    assert "receipt['receipt_id']" in lesson09.BUGGY_SOURCE.splitlines()[lesson09.BUGGY_LINE - 1]
