"""Tests of payments_lab.runaway: code that may never return, run with a deadline and stopped where it can be."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from payments_lab.runaway import Droppable, GuardedCall, IgnoredCancellationError


def _spin() -> None:
    n = 0
    while True:
        n += 1


def test_a_python_loop_past_its_deadline_is_found_and_stopped() -> None:
    call = GuardedCall(_spin, name="spin")
    assert not call.wait(0.2)
    line = call.running_line(Path(__file__))
    assert line is not None and _spin.__code__.co_firstlineno < line <= _spin.__code__.co_firstlineno + 3
    assert call.stop()


def test_a_wait_inside_c_code_cannot_be_stopped_and_says_so() -> None:
    call = GuardedCall(time.sleep, 1.5, name="sleep")
    assert not call.wait(0.1)
    assert not call.stop(grace=0.2)  # still sleeping: the exception waits for the next bytecode
    assert call.wait(5)  # then it ends, stopped as soon as it returns to Python


def test_what_the_call_returns_or_raises_reaches_the_caller() -> None:
    returned = GuardedCall(lambda a, b: a + b, 2, 3, name="add")
    assert returned.wait(5) and returned.result() == 5 and returned.stop()
    raised = GuardedCall(lambda: {}["missing"], name="raise")
    assert raised.wait(5)
    with pytest.raises(KeyError, match="missing"):
        raised.result()


async def test_waiting_for_it_leaves_the_event_loop_free() -> None:
    import asyncio

    call = GuardedCall(time.sleep, 0.3, name="sleep")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(tick())
    assert await call.wait_async(5)
    ticking.cancel()
    assert ticks >= 5  # the loop kept running while the call slept in its thread


_SWALLOWS_EVERYTHING = '''
import asyncio


async def swallows():
    while True:
        try:
            await asyncio.sleep(1)
        except BaseException:
            pass
'''
"""Lesson 11 Q1 as a learner answered it: GeneratorExit and every other exception thrown in are swallowed."""


def _swallows_everything() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(_SWALLOWS_EVERYTHING, "<cell>", "exec"), namespace)  # noqa: S102 - a learner's cell, as the notebook runs it
    return namespace["swallows"]()


async def test_a_coroutine_that_swallows_everything_is_freed_where_it_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """Off the script: the dropped coroutine stayed alive in the traceback of the verdict's error, until a garbage
    collection in whatever thread ran it: GeneratorExit thrown in, swallowed, `asyncio.sleep` raised there (no
    running loop), swallowed, for ever: a worker's thread, or the kernel's exit, hung."""
    coroutine = _swallows_everything()
    alive = weakref.ref(coroutine)
    dropped = Droppable(coroutine)
    del coroutine
    gc.disable()  # no collection may free it meanwhile: it is freed by the drop, or not at all
    try:
        with pytest.raises(IgnoredCancellationError) as raised:
            async with asyncio.timeout(0.05):
                await dropped
        assert alive() is None, "the dropped coroutine outlives its drop, kept by the error's traceback"
        assert raised.value.__traceback__ is not None
    finally:
        gc.enable()
    assert "Exception ignored" not in capsys.readouterr().err, "its refusal to close, already judged, is not shown"


def test_after_dropping_a_coroutine_that_swallows_everything_a_collection_elsewhere_and_the_exit_end(tmp_path: Path) -> None:
    """As a kernel does: a check's error dropped, then collected in another thread (a worker's); another kept (in
    ``sys.last_value``, a cell's ``_``) until the interpreter's exit."""
    script = tmp_path / "drop_then_collect.py"
    script.write_text(
        "import asyncio, gc, sys, threading\n"
        "from test_runaway import _swallows_everything\n"
        "from payments_lab.runaway import Droppable, IgnoredCancellationError\n"
        "kept = []\n"
        "async def check():\n"
        "    try:\n"
        "        async with asyncio.timeout(0.05):\n"
        "            await Droppable(_swallows_everything())\n"
        "    except IgnoredCancellationError as error:\n"
        "        kept.append(error)\n"
        "asyncio.run(check())\n"
        "asyncio.run(check())\n"
        "kept.pop()  # garbage now, in a cycle: freed by the next collection, in whatever thread runs it\n"
        "collecting = threading.Thread(target=gc.collect, daemon=True)\n"
        "collecting.start()\n"
        "collecting.join(5)\n"
        "print('collected elsewhere:', not collecting.is_alive(), flush=True)\n"
        "# the other error stays referenced until the interpreter's exit frees it\n",
        encoding="utf-8",
    )
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30, env=env)
    assert ran.returncode == 0 and "collected elsewhere: True" in ran.stdout, (ran.stdout, ran.stderr)
