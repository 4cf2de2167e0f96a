"""Tests of the kernels' start-up file: the first errors of a notebook say what to type instead, and nothing else changes."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from payments_lab import kernel_startup
from payments_lab.cli import kernel_environment

STARTUP = kernel_startup.__file__
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def kernel() -> Iterator[Any]:
    """A notebook kernel started as ``payments-lab lab`` starts them, its ``PYTHONSTARTUP`` the kit's."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env=kernel_environment(os.environ))
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _run(client: Any, code: str) -> tuple[str, str]:
    """``code`` run in the kernel: (what it printed, its error's traceback as plain text)."""
    messages: list[dict[str, Any]] = []
    client.execute_interactive(code, output_hook=messages.append, timeout=60)
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    traceback = "\n".join(line for m in messages if m["msg_type"] == "error" for line in m["content"]["traceback"])
    return printed, ANSI.sub("", traceback)


def test_the_start_up_file_leaves_no_name_in_the_notebook(kernel: Any) -> None:
    """Run first, on the fresh kernel: the other tests define names."""
    printed, traceback = _run(kernel, "%who")
    assert traceback == "" and "Interactive namespace is empty" in printed, printed


def test_a_cell_run_before_the_set_up_cell_says_to_run_the_cells_above(kernel: Any) -> None:
    _, traceback = _run(kernel, "await lab.pay('5.00')")
    assert "NameError: name 'lab' is not defined" in traceback, traceback
    assert "that cell has not run in this kernel" in traceback
    assert "`lab = await open_lab()`" in traceback and "Run ▸ Run All Above Selected Cell" in traceback


def test_any_undefined_name_gets_the_hint_conditionally_and_other_errors_are_untouched(kernel: Any) -> None:
    _, traceback = _run(kernel, "def total():\n    return amonut\ntotal()")
    assert "If a cell above defines `amonut`, that cell has not run" in traceback, traceback
    assert "lesson's set-up cell" not in traceback, "only the set-up cell's names point at it"
    _, traceback = _run(kernel, "1 / 0")
    assert "ZeroDivisionError" in traceback and "cell above" not in traceback


def test_asyncio_run_copied_from_a_script_says_to_await_instead(kernel: Any) -> None:
    _run(kernel, "import asyncio\nasync def main():\n    return 42")
    for call in ("asyncio.run(main())", "asyncio.get_event_loop().run_until_complete(main())"):
        _, traceback = _run(kernel, call)
        assert "RuntimeError" in traceback and "`await main()` in place of `asyncio.run(main())`" in traceback, traceback
    printed, traceback = _run(kernel, "print(await main())")
    assert printed.strip() == "42" and traceback == ""


def test_a_call_without_await_shows_that_it_did_not_run(kernel: Any) -> None:
    messages: list[dict[str, Any]] = []
    kernel.execute_interactive("main()", output_hook=messages.append, timeout=60)
    shown = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
    assert shown == ["<coroutine object main: not run. A coroutine runs only when it is awaited: put `await` before the call that made it>"]


def test_a_learner_s_own_start_up_file_is_kept() -> None:
    assert kernel_environment({"PATH": "/bin"})["PYTHONSTARTUP"] == STARTUP
    assert kernel_environment({"PYTHONSTARTUP": "/home/ana/.pythonrc"})["PYTHONSTARTUP"] == "/home/ana/.pythonrc"


def test_outside_a_notebook_it_does_nothing() -> None:
    """A terminal's ``python``, under the same environment, runs it too."""
    namespace = runpy.run_path(STARTUP, run_name="__main__")
    assert [name for name in namespace if not name.startswith("__")] == []
    plain = subprocess.run(
        [sys.executable, "-i"], input="print('ok')\n", env={**os.environ, "PYTHONSTARTUP": STARTUP}, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0 and "ok" in plain.stdout and "Error" not in plain.stderr, plain.stderr



@pytest.fixture(scope="module")
def plain_kernel() -> Iterator[Any]:
    """A notebook kernel started without the kit's start-up file, as a plain ``jupyter lab`` or VS Code starts one."""
    from jupyter_client.manager import start_new_kernel

    env = {name: value for name, value in os.environ.items() if name != "PYTHONSTARTUP"}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_without_the_start_up_file_the_set_up_cell_gives_the_hints(plain_kernel: Any) -> None:
    _, traceback = _run(plain_kernel, "lab")
    assert "NameError" in traceback and "cell above" not in traceback, "no hint before the set-up cell: nothing installed it"
    _, traceback = _run(plain_kernel, "from payments_lab import open_lab\nlab = await open_lab('hints-without-startup')")
    assert traceback == "", traceback
    try:
        _, traceback = _run(plain_kernel, "payments")
        assert "If a cell above defines `payments`, that cell has not run" in traceback, traceback
        _, traceback = _run(plain_kernel, "import asyncio\nasyncio.run(lab.service.status('x'))")
        assert "`await main()` in place of `asyncio.run(main())`" in traceback, traceback
        messages: list[dict[str, Any]] = []
        plain_kernel.execute_interactive("lab.pay('5.00')", output_hook=messages.append, timeout=60)
        shown = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
        assert len(shown) == 1 and shown[0].startswith("<coroutine object Lab.pay: not run."), shown
        # Opening the lab again (the set-up cell re-run) installs nothing twice: one hint, not two.
        _run(plain_kernel, "lab = await open_lab('hints-without-startup')")
        _, traceback = _run(plain_kernel, "payments")
        assert traceback.count("that cell has not run") == 1, traceback
    finally:
        _run(plain_kernel, "await lab.close()")


def test_a_learner_s_own_exception_handler_is_kept(plain_kernel: Any) -> None:
    """``open_lab`` adds no hint where the kernel already has exception handlers of its own."""
    own = "def own(shell, etype, value, tb, tb_offset=None):\n    print('own handler:', etype.__name__)\nget_ipython().set_custom_exc((ZeroDivisionError,), own)"
    _run(plain_kernel, own)  # in place of the hints the test above installed
    printed, _ = _run(plain_kernel, "import payments_lab.kernel_startup as k\nk.install_hints()\n1 / 0")
    assert "own handler: ZeroDivisionError" in printed, printed
    _, traceback = _run(plain_kernel, "payments_again")
    assert "cell above" not in traceback, traceback
