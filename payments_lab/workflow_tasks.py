"""A workflow whose code raises: its failed workflow tasks, as ``describe()`` and the history show them.

An exception raised by workflow code (other than a Temporal failure such as
``ApplicationError``) does not fail the workflow: the worker fails the *workflow task*,
and Temporal retries it until code that gets past that point is deployed. The workflow
stays running, the history records a ``WorkflowTaskFailed`` event with the error and its
stack trace, and ``describe()`` shows the pending workflow task and its attempt.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import ClassVar, TypeVar

from temporalio.api.enums.v1 import PendingWorkflowTaskState, TaskQueueType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError

from payments_lab.errors import PaymentsLabError
from payments_lab.history.decoding import WORKFLOW_CLOSED
from payments_lab.interrupts import stop_waiting_words
from payments_lab.task_queues import live_pollers, nobody_polls_words
from payments_lab.wording import sandbox_refusal_words

__all__ = [
    "Frame",
    "NoTaskFailureError",
    "PendingTask",
    "TaskFailure",
    "WorkerLog",
    "WorkflowTaskFailingError",
    "pending_task",
    "task_failures",
    "unless_task_fails",
    "until_task_fails",
    "wait_for_task_failure",
]

T = TypeVar("T")

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>[^\n]+)\n(?P<code>[^\n]*)')


@dataclass(frozen=True)
class Frame:
    """One frame of a stack trace."""

    file: str
    """The file's path, as the worker saw it."""
    line: int
    """The line number in that file."""
    function: str
    """The function the line is in."""
    code: str
    """The line itself, stripped."""

    @property
    def file_name(self) -> str:
        """The file's name without its folder."""
        return PurePath(self.file).name

    def __str__(self) -> str:
        return f"{self.file_name}, line {self.line}, in {self.function}: {self.code}"


@dataclass(frozen=True)
class TaskFailure:
    """One ``WorkflowTaskFailed`` event of a history."""

    event_id: int
    """Its position in the history."""
    cause: str
    """Why the task failed, e.g. ``workflow worker unhandled failure`` or ``non deterministic error``."""
    error_type: str
    """The exception's type, e.g. ``KeyError``."""
    message: str
    """The exception's message."""
    stack_trace: str
    """The stack trace the worker sent, innermost frame last."""
    identity: str
    """The worker that failed the task."""

    @property
    def frames(self) -> list[Frame]:
        """The frames of the stack trace, outermost first: the last one raised."""
        return [
            Frame(m["file"], int(m["line"]), m["function"].strip(), m["code"].strip()) for m in _FRAME.finditer(self.stack_trace)
        ]

    @property
    def where(self) -> Frame | None:
        """The frame that raised, or None if the failure has no stack trace (a non-determinism error)."""
        frames = self.frames
        own = [frame for frame in frames if not _in_temporal(frame.file)]
        return (own or frames)[-1] if frames else None


def _cause_name(cause: WorkflowTaskFailedCause.ValueType) -> str:
    return WorkflowTaskFailedCause.Name(cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_").lower().replace("_", " ")


def task_failures(history: WorkflowHistory) -> list[TaskFailure]:
    """Every ``WorkflowTaskFailed`` event of ``history``, in order.

    Temporal writes one for the first failures of a workflow task; later attempts that
    fail the same way are not written again (the pending task's attempt counts them).
    """
    found = []
    for event in history.events:
        if not event.HasField("workflow_task_failed_event_attributes"):
            continue
        attributes = event.workflow_task_failed_event_attributes
        failure = attributes.failure
        error_type = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
        found.append(
            TaskFailure(
                event_id=event.event_id,
                cause=_cause_name(attributes.cause),
                error_type=error_type,
                message=failure.message,
                stack_trace=failure.stack_trace,
                identity=attributes.identity,
            )
        )
    return found


@dataclass(frozen=True)
class PendingTask:
    """The workflow task a running workflow waits on, from ``describe()``."""

    attempt: int
    """Which attempt of the task: 2 and more means it failed before."""
    state: str
    """``scheduled`` (waiting for a worker) or ``started`` (a worker has it)."""


async def pending_task(handle: WorkflowHandle) -> PendingTask | None:
    """The workflow's pending workflow task, or None when it has none (it waits on an activity or a timer, or ended)."""
    description = await handle.describe()
    raw = description.raw_description
    if not raw.HasField("pending_workflow_task"):
        return None
    task = raw.pending_workflow_task
    state = PendingWorkflowTaskState.Name(task.state).removeprefix("PENDING_WORKFLOW_TASK_STATE_").lower()
    return PendingTask(task.attempt, state)


class NoTaskFailureError(PaymentsLabError, TimeoutError):
    """The workflow task that was awaited did not fail: the workflow ended, or it is still running
    without a recorded failure; the message says which, and what it means."""


async def wait_for_task_failure(handle: WorkflowHandle, *, timeout: float = 15.0, after: int = 0) -> TaskFailure:
    """Return the first ``WorkflowTaskFailed`` event after event ``after``, once the server has written it.

    Raises:
        NoTaskFailureError: the workflow ended first (its code got past that point: fixed code
            is deployed), or no workflow task failed within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        history = await handle.fetch_history()
        failures = [f for f in task_failures(history) if f.event_id > after]
        if failures:
            return failures[0]
        ended = WORKFLOW_CLOSED.get(history.events[-1].event_type) if history.events else None
        if ended is not None:
            raise NoTaskFailureError(
                f"No workflow task of {handle.id} failed: the workflow ended {ended}. The worker runs code that "
                "gets past that point (a fix deployed with lab.load_module stays in use): load the buggy version "
                "again to see the failure"
            )
        if time.monotonic() > deadline:
            raise NoTaskFailureError(_still_running(handle.id, timeout, await pending_task(handle), history))
        await asyncio.sleep(0.05)


def _still_running(workflow_id: str, timeout: float, pending: PendingTask | None, history: WorkflowHistory) -> str:
    """Where a workflow stands whose workflow task was expected to fail and did not."""
    said = f"No workflow task of {workflow_id} failed within {timeout:g} s; it is still running"
    timed_out = sum(e.HasField("workflow_task_timed_out_event_attributes") for e in history.events)
    if pending is not None and (pending.attempt > 1 or timed_out):
        # A task retried with no failure written: its attempts ran out of time, the sign of code that
        # never returns (the worker logs "[TMPRL1101] Potential deadlock detected" after 2 s).
        return (
            f"{said}, its workflow task on attempt {pending.attempt} without a recorded failure: its code "
            "may never return (a loop, a blocking call). The worker's log names the line"
        )
    return f"{said}, waiting on an activity or a timer: the failing code has not been reached yet"


class WorkerLog:
    """The warnings a worker logs when workflow code raises, kept to be read in a cell.

    The worker logs each failed activation on ``temporalio.worker._workflow_instance``
    (``Failed activation on workflow …``, with the traceback), and code that does not return
    within 2 s on ``temporalio.worker._workflow`` (``[TMPRL1101] Potential deadlock``). In a notebook the worker
    runs in the kernel, so those lines would land under whichever cell happens to run;
    while started, this keeps them instead, to show them where the lesson reads them.
    Nothing is dropped: :meth:`stop` puts the logger back as it was, and so does dropping
    the last reference to a started log (a cell ``worker_log = WorkerLog().start()`` run
    again stops the log it replaces).
    """

    LOGGER = "temporalio.worker._workflow_instance"
    """Where the Python SDK logs a failed workflow activation."""

    DEADLOCK_LOGGER = "temporalio.worker._workflow"
    """Where it logs an activation it gave up on (code that did not return: a potential deadlock), by run id."""

    _propagate_before: ClassVar[dict[str, bool]] = {}
    """Whether each logger propagated before the first of the logs open now started: restored when
    the last one stops (checks that overlap each keep a log of their own)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        """What was logged while started."""
        self._handler = _Keep(self.records)
        self._stop_when_dropped: weakref.finalize | None = None

    def start(self) -> WorkerLog:
        """Keep what the worker logs from now on (does nothing if already started)."""
        loggers = [logging.getLogger(name) for name in (self.LOGGER, self.DEADLOCK_LOGGER)]
        if self._handler not in loggers[0].handlers:
            for logger in loggers:
                if not _open_logs(logger):
                    WorkerLog._propagate_before[logger.name] = logger.propagate
                logger.addHandler(self._handler)
                logger.propagate = False
            # The finalizer holds the handler, not the log: once nothing else holds the log, it stops.
            self._stop_when_dropped = weakref.finalize(self, _release, loggers, self._handler)
        return self

    def stop(self) -> None:
        """Let the worker's warnings reach the usual handlers again, once no other log keeps them."""
        if self._stop_when_dropped is not None:
            self._stop_when_dropped()  # runs _release at most once

    @property
    def failures(self) -> list[tuple[str, str]]:
        """``(workflow id, "KeyError: 'receipt_id'")`` for each failed activation logged, in order; for
        code that did not return, the run id and ``"_DeadlockError: [TMPRL1101] Potential deadlock…"``."""
        found = []
        for record in self.records:
            error = record.exc_info[1] if record.exc_info else None
            text = f"{type(error).__name__}: {error}" if error is not None else record.getMessage()
            found.append((_workflow_or_run_id(record), text))
        return found


def _workflow_or_run_id(record: logging.LogRecord) -> str:
    """The workflow id a failed activation's record names, or the run id a deadlock's record names."""
    details = getattr(record, "temporal_workflow", {}) or {}
    if details.get("workflow_id"):
        return str(details["workflow_id"])
    args = record.args if isinstance(record.args, tuple) else ()
    return str(args[0]) if record.name == WorkerLog.DEADLOCK_LOGGER and args else ""


def _release(loggers: list[logging.Logger], handler: _Keep) -> None:
    """Stop keeping the loggers' records in ``handler``; the last log to stop restores ``propagate``."""
    for logger in loggers:
        if handler in logger.handlers:
            logger.removeHandler(handler)
            if not _open_logs(logger):
                logger.propagate = WorkerLog._propagate_before.get(logger.name, True)


def _open_logs(logger: logging.Logger) -> bool:
    """Whether a :class:`WorkerLog` keeps what ``logger`` logs."""
    return any(isinstance(handler, _Keep) for handler in logger.handlers)


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)


class WorkflowTaskFailingError(PaymentsLabError, RuntimeError):
    """A workflow's code failed its workflow task with the code deployed now: its result would wait for a fix.

    The workflow is still running and loses nothing: Temporal retries the task, more slowly
    each time, and a fix deployed later carries it on from where it stopped.
    """


DEADLOCK_CODE = "TMPRL1101"
"""How the Python SDK names a workflow task whose code did not return within its deadlock timeout (2 s)."""

FAILING_CHECK_EVERY = 5.0
"""Seconds between two looks at the pending workflow task of a workflow awaited in another process's worker."""


WAITING_SAID_AFTER = 15.0
"""Seconds a wait on a failing workflow task goes on before it says what it waits for: a task
retried for a long time gets its next attempt minutes apart, and the cell would look hung."""


async def until_task_fails(
    handle: WorkflowHandle,
    *,
    every: float = FAILING_CHECK_EVERY,
    say: Callable[[str], None] | None = None,
    client: Client | None = None,
) -> WorkflowTaskFailingError:
    """Wait until an attempt of ``handle``'s workflow task fails with the code deployed now; return the error to raise.

    A worker in this process logs each failed activation (:attr:`WorkerLog.LOGGER`): that is
    seen at once. A worker elsewhere is watched through ``describe()`` every ``every``
    seconds: once the pending task's attempt has gone up twice while waiting, an attempt made
    after the wait began has failed too (the first may have started before a fix). Waits for
    ever while the workflow makes progress; the caller cancels it once the result is in. A wait
    on a task already failing says once, after :data:`WAITING_SAID_AFTER` seconds, what it waits
    for (``say``; standard error by default): with ``client``, that no worker polls the workflow's
    task queue, when none does.
    """
    tell = say or _say
    started = time.monotonic()
    said = False
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()
    run_id = handle.result_run_id or handle.run_id or handle.first_execution_run_id
    failed = _FailedActivations({handle.id, *([run_id] if run_id else [])}, loop, seen)
    loggers = [logging.getLogger(name) for name in (WorkerLog.LOGGER, WorkerLog.DEADLOCK_LOGGER)]
    for logger in loggers:
        logger.addHandler(failed)
    try:
        first_attempt: int | None = None
        while True:
            try:
                await asyncio.wait_for(seen.wait(), every)
            except TimeoutError:
                pass
            if failed.records:
                return _failing_error(handle.id, _logged_failure(failed.records[-1]))
            try:
                pending = await pending_task(handle)
                if pending is None or pending.attempt < 2:
                    first_attempt = None
                    continue
                if first_attempt is None:
                    first_attempt = pending.attempt
                if not said and time.monotonic() - started >= WAITING_SAID_AFTER:
                    said = True
                    if not _failures_since_completed(await handle.fetch_history()):
                        continue  # retried for another reason (a worker that died): nothing to say
                    queue = (await handle.describe()).task_queue
                    workers = None if client is None else await live_pollers(client, queue, kinds=(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,))
                    if workers == set():
                        tell(nobody_polls_words(handle.id, queue, f"its workflow task, which failed before (attempt {pending.attempt})"))
                        continue
                    tell(
                        f"{handle.id} is waiting on its workflow task, which failed before (attempt {pending.attempt}): "
                        "Temporal tries it again more slowly each time, up to 10 minutes apart by default. This waits "
                        f"for the next attempt; {stop_waiting_words()} to stop waiting (the workflow waits on)."
                    )
                if pending.attempt >= first_attempt + 2:
                    return _failing_error(handle.id, _recorded_failure(await handle.fetch_history(), pending.attempt))
            except RPCError:
                continue  # the server is away: the result's own wait rides the outage out
    finally:
        for logger in loggers:
            logger.removeHandler(failed)


async def unless_task_fails(
    answer: Awaitable[T], handle: WorkflowHandle, *, client: Client, beside: Iterable[Awaitable[object]] = ()
) -> T:
    """``await answer`` (a result, an update, a first answer), unless an attempt of ``handle``'s workflow task fails
    first with the code deployed now (:func:`until_task_fails`): then raise that error.

    Temporal keeps such a wait open for as long as the workflow code keeps failing its task: without
    this, a cell looked hung. An answer and a failure that come together: the answer wins (the
    workflow answered, so its code runs).

    Args:
        answer: What the caller waits for; cancelled if the task fails first.
        handle: The workflow whose task is watched.
        client: Its client (to say when no worker polls the workflow's task queue).
        beside: Work that lasts only as long as the wait (e.g. saying what it waits for); cancelled with it.

    Raises:
        WorkflowTaskFailingError: an attempt of the workflow's task failed with the code deployed now.
    """
    answering = asyncio.ensure_future(answer)
    failing = asyncio.ensure_future(until_task_fails(handle, client=client))
    alongside = [asyncio.ensure_future(work) for work in beside]
    try:
        finished, _ = await asyncio.wait({answering, failing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answering, failing, *alongside):
            task.cancel()
        await asyncio.gather(answering, failing, *alongside, return_exceptions=True)
    # Decided by what had finished before the cancellations: the SDK turns a cancelled update into an error of its own.
    if answering in finished:
        return answering.result()
    raise failing.result()


async def failing_task_error(handle: WorkflowHandle) -> WorkflowTaskFailingError | None:
    """The error :func:`until_task_fails` would return, read at once from the history; None if no task failed since the last completed one."""
    history = await handle.fetch_history()
    failures = _failures_since_completed(history)
    if not failures:
        return None
    pending = await pending_task(handle)
    return _failing_error(handle.id, _recorded_failure(history, pending.attempt if pending else len(failures)))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _failing_error(workflow_id: str, what: str) -> WorkflowTaskFailingError:
    return WorkflowTaskFailingError(
        f"{workflow_id}: {what}. The workflow is still running and nothing was lost: Temporal retries the task, "
        "more slowly each time. Fix the workflow code (await lab.load_module(name, source)), then await the result again"
    )


def _logged_failure(record: logging.LogRecord) -> str:
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        return f"its workflow task failed with the code deployed now ({record.getMessage()})"
    if DEADLOCK_CODE in str(error):
        return (
            f"its code did not return within the worker's 2 s ({DEADLOCK_CODE}, potential deadlock): a loop that "
            "never ends, or a blocking call, in the workflow code deployed now"
        )
    where = ""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not _in_temporal(f.filename)]
    if frames:
        last = frames[-1]
        where = f" ({PurePath(last.filename).name}, line {last.lineno}, in {last.name})"
    what = _failure_words(type(error).__name__, str(error))
    return f"its workflow task failed with the code deployed now: {what}{where}"


def _in_temporal(path: str) -> bool:
    """Whether a frame is Temporal's own: the sandbox raises its refusals deep inside its code, not at the learner's line."""
    return "/temporalio/" in path.replace("\\", "/")


def _failure_words(error_type: str, message: str) -> str:
    """An exception's type and message, with the kit's advice in place of Temporal's for a sandbox refusal.

    Temporal's message ("mark the import as pass through") fits a module imported at the
    top of the workflow's file, not a call such as ``open()`` or ``time.sleep()`` in its code.
    """
    refused = _REFUSED.search(message) if error_type == "RestrictedWorkflowAccessError" else None
    if refused:
        return f"RestrictedWorkflowAccessError: {sandbox_refusal_words(refused.group(1))}"
    return f"{error_type}: {message}"


_REFUSED = re.compile(r"Cannot access (\S+) from inside a workflow")


def _failures_since_completed(history: WorkflowHistory) -> list[TaskFailure]:
    """The task failures after the last workflow task that completed: what holds the workflow back now."""
    completed = [e.event_id for e in history.events if e.HasField("workflow_task_completed_event_attributes")]
    return [f for f in task_failures(history) if f.event_id > max(completed, default=0)]


def _recorded_failure(history: WorkflowHistory, attempt: int) -> str:
    failures = _failures_since_completed(history)
    if not failures:
        return (
            f"its workflow task keeps running out of time (attempt {attempt}) without a recorded failure: "
            "its code may never return (a loop, a blocking call), or the workers that take it keep stopping"
        )
    last = failures[-1]
    where = f" ({last.where})" if last.where else ""
    return (
        f"its workflow task keeps failing (attempt {attempt}); the failure the history recorded first: "
        f"{_failure_words(last.error_type, last.message) if last.error_type else f'{last.cause}: {last.message}'}{where}"
    )


class _FailedActivations(logging.Handler):
    """Keeps the failed activations a worker of this process logs for one workflow, and says so to a loop."""

    def __init__(self, ids: set[str], loop: asyncio.AbstractEventLoop, seen: asyncio.Event) -> None:
        super().__init__(logging.DEBUG)
        self.ids = ids
        self.records: list[logging.LogRecord] = []
        self._loop = loop
        self._seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        if _workflow_or_run_id(record) in self.ids:
            self.records.append(record)
            # Workflow code runs in the worker's threads: hand the news to the waiting loop.
            self._loop.call_soon_threadsafe(self._seen.set)
