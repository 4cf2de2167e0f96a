"""Run, clean and check the notebooks: ``python -m tools.notebooks run|clean|check [PATH ...]``.

``run`` executes notebooks in place (as "Restart kernel and run all" would) and cleans
them; ``clean`` keeps outputs and execution counts but drops what changes on every run
and means nothing to a reader (timings, widget state); ``check`` fails if a notebook is
not clean or was not run to the end, or if a lesson breaks the style guide (short code
cells, each followed by a sentence: :func:`style_problems`). Committed notebooks are run
and clean, so a reader on GitHub sees results, and nbval has outputs to compare.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

_KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
_KEPT_CELL_METADATA = ("tags",)
MAX_CODE_LINES = 8
"""Non-blank lines a lesson's code cell may have (the style of the Python Data Science Handbook)."""


def notebook_paths(paths: Iterable[str | Path] = ()) -> list[Path]:
    """The given notebooks, or every notebook under ``notebooks/``."""
    chosen = [Path(p) for p in paths] or sorted(NOTEBOOKS.rglob("*.ipynb"))
    return [p for p in chosen if ".ipynb_checkpoints" not in p.parts]


def is_lesson(path: Path) -> bool:
    """Whether ``path`` is a numbered lesson, ``notebooks/NN-*.ipynb`` (not an exercise or a facilitator's notebook)."""
    return path.parent.name == "notebooks" and path.name[:2].isdigit() and path.name[2:3] == "-"


def _is_string_listing(source: str) -> bool:
    """Whether a cell only assigns a string: source code shown to the reader (lesson 09's ``V2``), not code to read as steps."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return (
        len(body) == 1
        and isinstance(body[0], ast.Assign)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )


def style_problems(path: Path) -> list[str]:
    """Where a lesson breaks the style guide: a code cell over ``MAX_CODE_LINES`` non-blank lines, or not followed by a sentence.

    Every code cell of a lesson is short and followed by a markdown cell that says what just
    happened. Notebooks that are not lessons (exercises, facilitator's) have no such rule.
    """
    if not is_lesson(path):
        return []
    cells = nbformat.read(path, as_version=4).cells
    found = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        lines = sum(1 for line in cell.source.splitlines() if line.strip())
        if lines > MAX_CODE_LINES and not _is_string_listing(cell.source):
            found.append(f"code cell {i} has {lines} lines (at most {MAX_CODE_LINES}): split it")
        if i + 1 == len(cells) or cells[i + 1].cell_type != "markdown":
            found.append(f"code cell {i} is not followed by a markdown cell saying what it did")
    return found


def needs_run(path: Path) -> bool:
    """Whether every code cell of this notebook is expected to have run (practice ones are not)."""
    return "practice" not in path.name


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop volatile metadata, keep outputs and execution counts."""
    notebook.metadata = nbformat.NotebookNode(
        {k: notebook.metadata[k] for k in _KEPT_NOTEBOOK_METADATA if k in notebook.metadata}
    )
    if "language_info" in notebook.metadata:
        notebook.metadata.language_info = nbformat.NotebookNode(
            {k: v for k, v in notebook.metadata.language_info.items() if k in ("name", "pygments_lexer")}
        )
    for cell in notebook.cells:
        cell.metadata = nbformat.NotebookNode({k: cell.metadata[k] for k in _KEPT_CELL_METADATA if k in cell.metadata})
        cell.pop("id", None)
        if cell.cell_type == "code":
            for output in cell.outputs:
                output.get("metadata", {}).pop("execution", None)
                if output.get("output_type") == "display_data" or output.get("output_type") == "execute_result":
                    output.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    notebook.nbformat_minor = 4
    return notebook


def problems(path: Path) -> list[str]:
    """What keeps ``path`` from being committed as it is."""
    notebook = nbformat.read(path, as_version=4)
    found = []
    if nbformat.writes(clean(nbformat.read(path, as_version=4))).rstrip() != path.read_text().rstrip():
        found.append("not clean (run `python -m tools.notebooks clean`)")
    if needs_run(path):
        unrun = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.execution_count is None]
        if unrun:
            found.append(f"code cells {unrun} were not run (run `python -m tools.notebooks run {path.name}`)")
        errors = [
            i
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)
        ]
        if errors:
            found.append(f"code cells {errors} end in an error")
    return found


def run(path: Path, timeout: int = 120) -> None:
    """Execute ``path`` in place from a fresh kernel, then clean it."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(clean(notebook), path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "clean", "check"))
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    failed = False
    for path in notebook_paths(args.paths):
        if args.command == "run":
            print(f"running {path.name}", flush=True)
            run(path)
        elif args.command == "clean":
            nbformat.write(clean(nbformat.read(path, as_version=4)), path)
        else:
            for problem in problems(path) + style_problems(path):
                print(f"{path.relative_to(ROOT)}: {problem}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
