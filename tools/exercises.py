"""Generate the practice notebooks from the solution notebooks: ``python -m tools.exercises [--check]``.

The solution notebooks, ``notebooks/exercises/NN-<lesson>-solution.ipynb``, are the one
source of truth: they are committed run, with their outputs, and nbval compares them. Each
has a practice twin, ``NN-<lesson>-practice.ipynb``, generated from it and committed not
run, with the answers blanked out. ``--check`` exits 1 if a committed practice notebook
differs from what would be generated (CI runs it through ``tests/test_exercises.py``).

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
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from tools.notebooks import NOTEBOOKS, ROOT, clean

EXERCISES = NOTEBOOKS / "exercises"
"""Where the exercise notebooks live."""

SOLUTION_SUFFIX = "-solution.ipynb"
PRACTICE_SUFFIX = "-practice.ipynb"
BLANK = "____"
SOLUTION_ONLY_TAG = "solution-only"

_ANSWER = re.compile(r"^(?P<indent>[ \t]*)(?P<code>\S.*?)[ \t]*#[ \t]*SOLUTION[ \t]*$")
_CODE_SOLUTION_ONLY = re.compile(r"#[ \t]*SOLUTION ONLY[ \t]*$")
_MARKDOWN_SOLUTION_ONLY = re.compile(r"<!--[ \t]*SOLUTION ONLY[ \t]*-->[ \t]*$")


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


def practice_notebook(solution: Path) -> str:
    """The text of the practice notebook generated from ``solution``.

    Raises:
        MarkingError: a marker is misplaced, a practice cell no longer parses, or no
            answer is marked.
    """
    notebook = nbformat.read(solution, as_version=4)
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
    """What differs between the committed practice notebooks and those the solutions generate."""
    problems = []
    expected = {practice_path(p): p for p in solution_paths(directory)}
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
    """Write every practice notebook; return those that changed."""
    changed = []
    for solution in solution_paths(directory):
        practice = practice_path(solution)
        text = practice_notebook(solution)
        if not practice.exists() or practice.read_text().rstrip() != text.rstrip():
            practice.write_text(text)
            changed.append(practice)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.exercises", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a practice notebook is out of date")
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
