"""The package's public names: importing it is cheap, every exported name resolves."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import payments_lab


def test_every_exported_name_resolves() -> None:
    for name in payments_lab.__all__:
        assert getattr(payments_lab, name) is not None, name


def test_importing_the_package_imports_nothing_heavy() -> None:
    probe = "import sys, payments_lab; print(sorted(m for m in ('temporalio', 'pandas', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_unknown_names_raise_attribute_error() -> None:
    try:
        payments_lab.not_a_thing  # noqa: B018
    except AttributeError as err:
        assert "not_a_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def _places(matches: Callable[[Path, ast.AST], bool]) -> list[str]:
    """``file:line`` of every node of the package's source that ``matches(path, node)``."""
    package = Path(payments_lab.__file__).parent
    return [
        f"{path.relative_to(package)}:{getattr(node, 'lineno', 0)}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if matches(path, node)
    ]


def test_what_the_kit_raises_at_run_time_derives_from_its_root_error() -> None:
    # An error raised on purpose is a refusal or a failure with advice: as a PaymentsLabError the CLI
    # prints it as one line and a notebook as one red line, instead of a page of the kit's frames.
    bare = _places(
        lambda path, node: isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
        and node.exc.func.id in ("RuntimeError", "ValueError", "TypeError", "TimeoutError")
        # The data converter's refusals reach Temporal, which reports them in a failure, never a notebook.
        and path.name != "converter.py"
    )
    assert bare == [], "raise a PaymentsLabError subclass (see payments_lab/errors.py), e.g. InvalidArgumentError, at " + ", ".join(bare)


def test_no_process_is_probed_with_a_signal() -> None:
    # On Windows os.kill(pid, 0) is no probe: "any other value for sig will cause the process to be
    # unconditionally killed by the TerminateProcess API" (Python's os.kill documentation).
    probes = _places(
        lambda path, node: isinstance(node, ast.Call)
        and ast.unparse(node.func) == "os.kill"
        and len(node.args) == 2
        and ast.unparse(node.args[1]) == "0"
    )
    assert probes == [], "use processes.pid_alive (psutil) instead of os.kill(pid, 0) at " + ", ".join(probes)
