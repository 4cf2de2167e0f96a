"""Tests of running awaitables together: results in order, or the first failure alone."""

from __future__ import annotations

import asyncio

import pytest

from payments_lab.gathering import gather_all


async def test_results_come_in_the_order_of_the_awaitables() -> None:
    async def after(seconds: float, value: str) -> str:
        await asyncio.sleep(seconds)
        return value

    assert await gather_all([after(0.05, "first"), after(0, "second")]) == ["first", "second"]
    assert await gather_all([]) == []


async def test_the_first_failure_is_raised_alone_and_cancels_the_others() -> None:
    cancelled = asyncio.Event()

    async def waits() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fails() -> None:
        raise KeyError("no such payment")

    with pytest.raises(KeyError, match="no such payment") as raised:
        await gather_all([waits(), fails()])
    assert cancelled.is_set(), "nothing is left running in the background"
    assert raised.value.__context__ is None  # not chained to the group that held it
