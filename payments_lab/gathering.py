"""Awaitables run together: all their results, or the first failure alone with the others cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """The results of ``awaitables``, run at once, in their order.

    Unlike ``asyncio.gather``, the first failure cancels the others (none is left running
    in the background of a notebook) and is raised by itself, not in an ``ExceptionGroup``.

    Raises:
        Exception: the first failure, as its awaitable raised it.
    """
    tasks: list[asyncio.Task[T]] = []
    first_failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_as_coroutine(a)) for a in awaitables]
    except ExceptionGroup as failures:
        first_failure = failures.exceptions[0]
    if first_failure is not None:
        # Raised here, not inside the except block: there its context would be the group
        # that contains it, a cycle that IPython's traceback display never finishes.
        first_failure.__context__ = None
        raise first_failure
    return [task.result() for task in tasks]


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
