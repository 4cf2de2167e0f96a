"""Tests of payments_lab.interrupts: ■ in a real ipykernel stops a cell whose wait never wakes the event loop."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the kernel is interrupted with SIGINT")

NEVER_WAKES = "import asyncio\nawait asyncio.get_running_loop().create_future()  # nothing ever sets it, no timer runs"


class Cells:
    """A real ipykernel, as JupyterLab runs one, and the cells sent to it."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client

    def run(self, code: str, *, timeout: float = 90, interrupt_after: float | None = None) -> tuple[float, str | None]:
        """Run ``code``; press ■ after ``interrupt_after`` s. Return the seconds from ■ (or from the start) to the
        cell's end, and the name of the error it showed (None if none)."""
        message_id = self.client.execute(code)
        started = time.monotonic()
        interrupted_at: float | None = None
        error: str | None = None
        while time.monotonic() - started < timeout:
            if interrupt_after is not None and interrupted_at is None and time.monotonic() - started >= interrupt_after:
                self.manager.interrupt_kernel()
                interrupted_at = time.monotonic()
            try:
                message = self.client.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != message_id:
                continue
            if message["msg_type"] == "error":
                error = message["content"]["ename"]
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return time.monotonic() - (interrupted_at or started), error
        raise AssertionError(f"the cell was still running after {timeout} s:\n{code}")


@pytest.fixture
def cells(tmp_path: Path) -> Iterator[Cells]:
    """A kernel of its own, with no lab session and no configured server: a lab there starts its own server."""
    from jupyter_client.manager import KernelManager

    env = {key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")}
    env["PAYMENTS_LAB_STATE_DIR"] = str(tmp_path)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Cells(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_an_interrupt_stops_a_wait_that_never_wakes_the_loop_at_once(cells: Cells) -> None:
    """ipykernel cancels the cell's task from its SIGINT handler without waking the loop (ipykernel#881): the pacemaker wakes it."""
    assert cells.run("from payments_lab.interrupts import keep_interrupts_prompt\nkeep_interrupts_prompt()\nkeep_interrupts_prompt()") == (
        pytest.approx(0, abs=5),
        None,
    )
    seconds, error = cells.run(NEVER_WAKES, timeout=30, interrupt_after=1)
    assert error == "CancelledError"
    assert seconds < 2, f"the cell ended {seconds:.1f} s after the interrupt"


def test_a_lab_opened_in_a_kernel_makes_interrupts_prompt(cells: Cells) -> None:
    """Lesson 10's ``start_early`` on a queue nobody polls ended 20 s after ■: every wait in a kernel that connected
    (``open_lab``, or ``connect`` as the facilitator's notebook does) stops at once."""
    _, error = cells.run("from payments_lab import open_lab\nlab = await open_lab()", timeout=120)
    assert error is None
    seconds, error = cells.run(NEVER_WAKES, timeout=30, interrupt_after=1)
    assert (error, seconds < 2) == ("CancelledError", True), f"the cell ended {seconds:.1f} s after the interrupt"
    _, error = cells.run("await lab.close()")
    assert error is None


def test_outside_a_kernel_nothing_is_paced_and_ipython_is_not_imported_for_it() -> None:
    """connect() asks on every call, in the CLI and in worker processes too: the answer must cost nothing there."""
    code = "import sys\nfrom payments_lab.interrupts import in_a_kernel\nprint(in_a_kernel(), 'IPython' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["False", "False"]
