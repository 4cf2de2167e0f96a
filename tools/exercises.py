"""Generate the exercise notebooks' generated parts: ``python -m tools.exercises [--check]``.

Each text has one source:

* An exercise's title and task are written once, in its lesson module
  (``payments_lab/exercises/lessonNN.py``, ``Exercise(title=..., task=...)``), next to the
  check they describe (the task quotes the check's own deadlines). In the solution notebook
  the exercise's cell ``## QN · <title>`` is generated from it: heading and task, nothing
  else (put more prose in a cell of its own).
* Everything else of an exercise notebook is written in the solution notebook,
  ``notebooks/exercises/NN-<lesson>-solution.ipynb``: committed run, with its outputs, which
  nbval compares. Its practice twin, ``NN-<lesson>-practice.ipynb``, is generated from it and
  committed not run, with the answers blanked out.

``--check`` exits 1 if a committed notebook differs from what would be generated (CI runs
it through ``tests/test_exercises.py``).

Marking convention, in the solution notebooks:

* A code line ending in ``# SOLUTION`` is the answer. In the practice notebook
  ``name = value  # SOLUTION`` becomes ``name = ____``, ``return value  # SOLUTION``
  becomes ``return ____``, and any other statement becomes ``____`` at the same indent
  (so a function body still parses, and its check says "not attempted"). The line must
  hold one whole statement.
* A code line ending in ``# SOLUTION ONLY`` is dropped (the rest of a multi-line answer).
* A markdown line ending in ``<!-- SOLUTION ONLY -->`` is dropped (e.g. "this is the
  solution notebook").
* A cell tagged ``solution-only`` is dropped whole.

Everything else is copied as it is; outputs and execution counts are cleared. Every code
cell of a practice notebook must still parse, and every solution notebook must mark at
least one answer.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

from tools.notebooks import NOTEBOOKS, ROOT, clean

if TYPE_CHECKING:
    from payments_lab.exercises import Exercise

EXERCISES = NOTEBOOKS / "exercises"
"""Where the exercise notebooks live."""

SOLUTION_SUFFIX = "-solution.ipynb"
PRACTICE_SUFFIX = "-practice.ipynb"
BLANK = "____"
SOLUTION_ONLY_TAG = "solution-only"

_ANSWER = re.compile(r"^(?P<indent>[ \t]*)(?P<code>\S.*?)[ \t]*#[ \t]*SOLUTION[ \t]*$")
_CODE_SOLUTION_ONLY = re.compile(r"#[ \t]*SOLUTION ONLY[ \t]*$")
_MARKDOWN_SOLUTION_ONLY = re.compile(r"<!--[ \t]*SOLUTION ONLY[ \t]*-->[ \t]*$")
_TASK_HEADING = re.compile(r"^## Q(?P<number>\d+) · ")


class MarkingError(ValueError):
    """A solution notebook's markers cannot be turned into a practice notebook."""


def _parse(source: str) -> ast.Module:
    """Parse a cell as IPython runs it: top-level ``await`` is allowed."""
    return compile(source, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # type: ignore[return-value]


def blank_line(line: str) -> str:
    """The practice version of one ``# SOLUTION`` line.

    Raises:
        MarkingError: the line is not one whole statement.
    """
    match = _ANSWER.match(line)
    if match is None:
        raise MarkingError(f"not a '# SOLUTION' line: {line!r}")
    indent, code = match["indent"], match["code"]
    try:
        (statement,) = _parse(code).body
    except (SyntaxError, ValueError):
        raise MarkingError(f"a '# SOLUTION' line must hold one whole statement: {line!r}") from None
    if isinstance(statement, ast.Return):
        return f"{indent}return {BLANK}"
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and statement.value is not None:
        target = code.encode()[: statement.value.col_offset].decode()  # col_offset counts UTF-8 bytes
        return f"{indent}{target.rstrip()} {BLANK}"
    return f"{indent}{BLANK}"


def practice_code(source: str) -> tuple[str, int]:
    """A code cell's practice source, and how many answers were blanked in it."""
    lines = []
    answers = 0
    for line in source.splitlines():
        if _CODE_SOLUTION_ONLY.search(line):
            continue
        if _ANSWER.match(line):
            lines.append(blank_line(line))
            answers += 1
        else:
            lines.append(line)
    return "\n".join(lines), answers


def practice_markdown(source: str) -> str:
    """A markdown cell's practice source; a dropped line leaves no run of blank lines behind."""
    kept = "\n".join(line for line in source.splitlines() if not _MARKDOWN_SOLUTION_ONLY.search(line))
    return re.sub(r"\n{3,}", "\n\n", kept).strip("\n")


def practice_path(solution: Path) -> Path:
    """The practice notebook generated from ``solution``."""
    if not solution.name.endswith(SOLUTION_SUFFIX):
        raise ValueError(f"{solution.name} is not a solution notebook (its name must end in {SOLUTION_SUFFIX})")
    return solution.with_name(solution.name.removesuffix(SOLUTION_SUFFIX) + PRACTICE_SUFFIX)


MARKDOWN_WIDTH = 104
"""Where the notebooks' markdown lines are broken, as in the hand-written cells around them."""

_STARTS_A_BLOCK = re.compile(r"^(#|>|[-*+]($|\s)|\d+[.)]($|\s)|=+$|-+$)")


def task_markdown(exercise: Exercise) -> str:
    """The cell that sets an exercise in its notebook: ``## QN · <title>``, then the task."""
    return f"## Q{exercise.number} · {exercise.title}\n\n{_wrap(exercise.task)}"


def _wrap(text: str) -> str:
    """``text`` in lines of at most :data:`MARKDOWN_WIDTH`, none of which markdown would read as a list or a heading."""
    lines: list[str] = []
    for word in _WORD.findall(text):
        fits = len(lines[-1]) + 1 + len(word) <= MARKDOWN_WIDTH if lines else False
        # A line may not start with "-", "1." or "#" (markdown would read a list or a heading),
        # nor a number be parted from its unit ("10" / "s.").
        glued = bool(lines) and (_STARTS_A_BLOCK.match(word) is not None or _NUMBER.search(lines[-1]) is not None)
        if fits or glued:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


_WORD = re.compile(r"(?:[^\s`]|`[^`]*`)+")
"""A word, a `code span` counting as one (it reads badly broken)."""
_NUMBER = re.compile(r"(^|\s)\**\d+(\.\d+)?$")


def lesson_exercises(solution: Path) -> dict[int, Exercise]:
    """The exercises of the lesson module a solution notebook belongs to, by number.

    Raises:
        MarkingError: no lesson module has the notebook's number.
    """
    module_name = f"payments_lab.exercises.lesson{solution.name[:2]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise MarkingError(f"{solution.name}: no module {module_name} holds its exercises") from None
    return {exercise.number: exercise for exercise in module.EXERCISES}


def _with_tasks(solution: Path) -> nbformat.NotebookNode:
    """The solution notebook with each exercise's cell written from its lesson module.

    Raises:
        MarkingError: a ``## QN`` cell names no exercise of the module, or an exercise
            has no such cell, or two.
    """
    notebook = nbformat.read(solution, as_version=4)
    exercises = lesson_exercises(solution)
    placed: list[int] = []
    for index, cell in enumerate(notebook.cells):
        heading = _TASK_HEADING.match(cell.source) if cell.cell_type == "markdown" else None
        if heading is None:
            continue
        number = int(heading["number"])
        if number not in exercises:
            raise MarkingError(f"{solution.name}, cell {index}: Q{number} is no exercise of {lesson_module(solution)}")
        cell.source = task_markdown(exercises[number])
        placed.append(number)
    if sorted(placed) != sorted(exercises):
        raise MarkingError(
            f"{solution.name} must have one '## QN · <title>' cell per exercise of {lesson_module(solution)} "
            f"({_numbers(sorted(exercises))}); it has {_numbers(placed)}"
        )
    return clean(notebook)


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(f"Q{n}" for n in numbers) or "none"


def lesson_module(solution: Path) -> str:
    """Where the titles and tasks of a solution notebook's exercises are written."""
    return f"payments_lab/exercises/lesson{solution.name[:2]}.py"


def solution_notebook(solution: Path) -> str:
    """The text of ``solution`` with its exercises' titles and tasks written from their lesson module.

    Raises:
        MarkingError: the notebook's ``## QN`` cells do not match the module's exercises.
    """
    # Ended by a newline, as nbformat.write (tools.notebooks run) writes the solution notebooks.
    return nbformat.writes(_with_tasks(solution)) + "\n"


def practice_notebook(solution: Path) -> str:
    """The text of the practice notebook generated from ``solution`` (tasks from the lesson module).

    Raises:
        MarkingError: a marker is misplaced, a practice cell no longer parses, no answer
            is marked, or the ``## QN`` cells do not match the module's exercises.
    """
    notebook = _with_tasks(solution)
    cells = []
    answers = 0
    for index, cell in enumerate(notebook.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            try:
                source, blanked = practice_code(cell.source)
                _parse(source)
            except (MarkingError, SyntaxError) as error:
                raise MarkingError(f"{solution.name}, cell {index}: {error}") from None
            answers += blanked
            cell.source = source
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = practice_markdown(cell.source)
        cells.append(cell)
    if not answers:
        raise MarkingError(f"{solution.name} marks no answer with '# SOLUTION'")
    notebook.cells = cells
    return nbformat.writes(clean(notebook))


def solution_paths(directory: Path = EXERCISES) -> list[Path]:
    """Every solution notebook, by name."""
    return sorted(p for p in directory.glob(f"*{SOLUTION_SUFFIX}") if ".ipynb_checkpoints" not in p.parts)


def drifted(directory: Path = EXERCISES) -> list[str]:
    """What differs between the committed exercise notebooks and those the lesson modules and solutions generate."""
    problems = []
    expected = {practice_path(p): p for p in solution_paths(directory)}
    for solution in expected.values():
        if solution.read_text().rstrip() != solution_notebook(solution).rstrip():
            problems.append(f"{solution.name} has a title or task that differs from {lesson_module(solution)}, where it is written")
    for practice, solution in expected.items():
        if not practice.exists():
            problems.append(f"{practice.name} is missing (generate it from {solution.name})")
        elif practice.read_text().rstrip() != practice_notebook(solution).rstrip():
            problems.append(f"{practice.name} differs from what {solution.name} generates")
    for practice in sorted(directory.glob(f"*{PRACTICE_SUFFIX}")):
        if practice not in expected:
            problems.append(f"{practice.name} has no solution notebook")
    return problems


def generate(directory: Path = EXERCISES) -> list[Path]:
    """Write every exercise's task into its solution notebook, then every practice notebook; return those that changed."""
    changed = []
    for solution in solution_paths(directory):
        text = solution_notebook(solution)
        if solution.read_text().rstrip() != text.rstrip():
            solution.write_text(text)
            changed.append(solution)
        practice = practice_path(solution)
        text = practice_notebook(solution)
        if not practice.exists() or practice.read_text().rstrip() != text.rstrip():
            practice.write_text(text)
            changed.append(practice)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.exercises", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if an exercise notebook is out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = drifted()
            for problem in problems:
                print(f"notebooks/exercises/{problem}: run `python -m tools.exercises`")
            return 1 if problems else 0
        for path in generate():
            print(f"wrote {path.relative_to(ROOT)}")
    except MarkingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
