"""The committed notebooks are run to the end and clean (nbval compares their outputs)."""

from __future__ import annotations

import pytest

from tools.notebooks import notebook_paths, problems


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.name)
def test_notebook_is_run_and_clean(path) -> None:  # noqa: ANN001
    assert problems(path) == []


def test_lessons_are_numbered_from_00() -> None:
    lessons = [p.name for p in notebook_paths() if p.parent.name == "notebooks"]
    assert lessons and lessons[0].startswith("00-")
    assert all(name[:2].isdigit() and name[2] == "-" for name in lessons)
