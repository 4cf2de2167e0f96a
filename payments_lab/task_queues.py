"""Who polls a task queue: the workers the server saw lately, by identity."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import unicodedata
from collections.abc import Iterable
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from payments_lab import interrupts
from payments_lab.arguments import short_repr
from payments_lab.domain import lone_surrogate_problem
from payments_lab.errors import InvalidArgumentError
from payments_lab.interrupts import stop_waiting_words
from payments_lab.processes import pid_alive

TASK_QUEUE_BYTES = 1000
"""The longest task queue name a Temporal server takes, in bytes of UTF-8 (its ``limit.maxIDLength``)."""


def checked_task_queue(name: object, what: str = "task_queue", *, reserve: int = 0) -> str:
    """``name``, if a Temporal server takes it as a task queue name and a terminal can show and type it.

    Args:
        name: The name.
        what: How the message calls it.
        reserve: Bytes kept free for what the kit adds (a lab's name is followed by ``-`` and 8 hex digits).

    Raises:
        ValueError: it is not text, is empty, holds a control or invisible character or text that is not
            valid Unicode, or is longer than the server takes; the message says which.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"{what} must be a name such as 'payments', got {type(name).__name__} {short_repr(name)}")
    not_text = lone_surrogate_problem(what, name)
    if not_text is not None:
        raise InvalidArgumentError(not_text)
    odd = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf")), None)
    if odd is not None:
        raise InvalidArgumentError(
            f"{what} {name[:40]!r} holds {'a control' if unicodedata.category(odd) == 'Cc' else 'an invisible'} character "
            f"({odd!r}): no command a learner types would reach that queue; use letters, digits, '-', '.' and '_'"
        )
    size = len(name.encode("utf-8"))
    if size > TASK_QUEUE_BYTES - reserve:
        raise InvalidArgumentError(f"{what} is {size:,} bytes long; a Temporal server takes at most {TASK_QUEUE_BYTES - reserve:,} here")
    return name


def worker_command(task_queue: str) -> str:
    """The command that starts a worker of ``task_queue``, quoted for a shell."""
    return f"payments-lab worker --task-queue {shlex.quote(task_queue)}"


BOTH = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
"""Workflow and activity pollers: a payment's worker polls both."""


async def pollers(
    client: Client, task_queue: str, *, kinds: Iterable[TaskQueueType.ValueType] = BOTH, timeout: timedelta = timedelta(seconds=5)
) -> set[str]:
    """The identities (``pid@host`` by default) of the workers that polled ``task_queue`` lately.

    The server forgets a poller 5 minutes after its last poll (``matching.PollerHistoryTTL``):
    a worker that ended a minute ago is still listed, one that never came is not.
    """
    # Both kinds at once: a caller bounding its wait by ``timeout`` waits that long, not once per kind.
    described = await asyncio.gather(
        *(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind),
                timeout=timeout,
            )
            for kind in kinds
        )
    )
    return {poller.identity for answer in described for poller in answer.pollers}


_NOT_POLLED_HERE: dict[str, str | None] = {}
"""Task queues a worker of this process polled and no longer does, and the name of the lab whose closing stopped it
(None: a worker stopped by hand, ``await lab.worker.stop()``). The server lists its poller for 5 minutes more."""


_POLLED_HERE: set[str] = set()
"""Task queues a worker of this process polls now."""


def closed_here(task_queues: Iterable[str], lab_name: str) -> None:
    """Note that this process no longer polls ``task_queues`` (lab ``lab_name`` closed), though the server lists it for 5 minutes."""
    _NOT_POLLED_HERE.update(dict.fromkeys(task_queues, lab_name))
    _POLLED_HERE.difference_update(task_queues)


def stopped_here(task_queue: str) -> None:
    """Note that a worker of this process stopped polling ``task_queue``, its lab still open."""
    _NOT_POLLED_HERE.setdefault(task_queue, None)
    _POLLED_HERE.discard(task_queue)


def polled_here_again(task_queue: str) -> None:
    """Note that a worker of this process polls ``task_queue`` again."""
    _NOT_POLLED_HERE.pop(task_queue, None)
    _POLLED_HERE.add(task_queue)


def polled_here(task_queue: str) -> bool:
    """Whether a worker of this process polls ``task_queue`` (the server may not list it yet: one just started,
    or one whose server was away, which polls again only seconds after it is back)."""
    return task_queue in _POLLED_HERE


def ended_here(identity: str, task_queue: str | None = None, *, lab_name: str | None = None) -> bool:
    """Whether a worker identity (``pid@host``, Temporal's default) names a poller of this machine that has ended.

    A process that ended; or this very process, on ``task_queue`` where its worker stopped
    (with ``lab_name``: where a lab of that name closed, a lab takes over only what a lab of
    its name left, not what a worker stopped by hand leaves waiting).
    """
    pid, _, host = identity.split(" ", 1)[0].partition("@")  # a kit worker may add words after pid@host
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        if task_queue is None or task_queue not in _NOT_POLLED_HERE:
            return False
        return lab_name is None or _NOT_POLLED_HERE[task_queue] == lab_name
    return not pid_alive(int(pid))


async def live_pollers(
    client: Client, task_queue: str, *, kinds: Iterable[TaskQueueType.ValueType] = BOTH, timeout: timedelta = timedelta(seconds=5)
) -> set[str]:
    """The workers that polled ``task_queue`` lately, less those known to have ended (on this machine)."""
    listed = await pollers(client, task_queue, kinds=kinds, timeout=timeout)
    return {identity for identity in listed if not ended_here(identity, task_queue)}


def stopped_by_hand_words(task_queue: str) -> str:
    """How to start again the worker of ``task_queue`` that this process stopped by hand, or '' if it did not."""
    if task_queue in _NOT_POLLED_HERE and _NOT_POLLED_HERE[task_queue] is None:
        return f" (this kernel stopped its worker of {task_queue!r}: `await lab.worker.start()` starts it again)"
    return ""


def nobody_polls_words(workflow_id: str, task_queue: str, what: str) -> str:
    """What to say of a wait on ``what`` (a task) that no worker will take: nothing polls its queue."""
    restart = stopped_by_hand_words(task_queue)
    if restart:
        return (
            f"{workflow_id} is waiting for {what}, and no worker polls its task queue{restart}. "
            f"{stop_waiting_words().capitalize()} to stop waiting: the payment waits on."
        )
    cell_code = "; code written in a cell: `await lab.load_module(name, source)` in a lab that says it waits for that code" if interrupts.in_a_kernel() else ""
    return (
        f"{workflow_id} is waiting for {what}, and no worker polls its task queue {task_queue!r}: nothing runs it until "
        f"one does. Start a worker of that queue with the code that started it (`{worker_command(task_queue)}` runs the "
        f"kit's{cell_code}). {stop_waiting_words().capitalize()} to stop waiting: the payment waits on."
    )
