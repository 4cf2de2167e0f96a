"""Tests of payments_lab.runaway: code that may never return, run with a deadline and stopped where it can be."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from payments_lab.runaway import GuardedCall


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
