"""What the checks share: running a payment on the lab, reading its history, calling learner code safely.

Histories are read through :mod:`payments_lab.history` (:func:`~payments_lab.history.events_of`
and its :class:`~payments_lab.history.Event`), the decoder the tables use too.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import numbers
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHistory

from payments_lab.arguments import short_repr
from payments_lab.client import NamespaceNotFoundError, SearchAttributesError
from payments_lab.domain import PaymentRequest, PaymentResult, PaymentStatus
from payments_lab.exercises import Mismatch
from payments_lab.exercises.errors import InvalidExerciseError, lab_closed
from payments_lab.faults import FaultPlan
from payments_lab.history import Event, attempts_per_activity, event_type_name, events_of
from payments_lab.lab import Lab
from payments_lab.messages import PaymentOptions
from payments_lab.outage import RECOVERY_ALLOWANCE, OutageWatch, outage_wait
from payments_lab.repository import AttemptRecord, PaymentRepository
from payments_lab.runaway import Droppable, GuardedCall, IgnoredCancellationError, LoopGuard, was_stopped
from payments_lab.service import PaymentHandle, PaymentService
from payments_lab.wording import plural as plural  # the lessons import it from here
from payments_lab.workflow_tasks import WorkflowTaskFailingError

CHECK_OPTIONS = PaymentOptions(
    initial_interval=timedelta(milliseconds=50),
    maximum_interval=timedelta(seconds=1),
    charge_heartbeat_timeout=timedelta(seconds=2),
)
"""Retry options of the payments the checks run: the seed's 3 attempts, 50 ms then 100 ms apart."""

PAYMENT_DEADLINE = 5.0
"""Seconds a check waits for a payment that may never end because of the answer (a hang the answer planned)."""

LAB_PATIENCE = 30.0
"""Seconds a check waits for a payment whose end does not depend on the answer.

A payment of the checks ends in well under a second on a quiet lab, and in several seconds
on a server shared by a busy room: a check must not call a right answer wrong because the
lab is slow, so it waits this long before it blames the lab (never the answer)."""

ID_PREFIX = "ex"
"""Payment ids of checks: ``ex-<8 hex digits>``, which notebooks/sanitize.cfg hides."""


def scheduled_activities(history: WorkflowHistory) -> list[str]:
    """Activity types in the order the workflow scheduled them."""
    return [e.activity_type or "" for e in events_of(history) if e.name == "ActivityTaskScheduled"]


def final_attempt(history: WorkflowHistory, activity_type: str) -> int | None:
    """The attempt that ended ``activity_type``'s activity (local ones included); None if none started.

    See :func:`payments_lab.history.attempts_per_activity`, the kit's one definition.
    """
    return attempts_per_activity(history).get(activity_type) or None


def closing_event(history: WorkflowHistory) -> str:
    """The last event's readable type, e.g. ``WorkflowExecutionCompleted``."""
    return event_type_name(history.events[-1].event_type) if history.events else "none"


def first_index(events: Sequence[Event], name: str, activity_type: str | None = None) -> int | None:
    """Index of the first event called ``name`` (about ``activity_type`` if given), or None."""
    for index, event in enumerate(events):
        if event.name == name and (activity_type is None or event.activity_type == activity_type):
            return index
    return None


@dataclass(frozen=True)
class PaymentRun:
    """A payment a check ran, and everything recorded about it."""

    request: PaymentRequest
    """The payment."""
    handle: PaymentHandle
    """Its workflow."""
    result: PaymentResult | None
    """How it ended; None if it had not ended by the check's deadline (it was then stopped)."""
    history: WorkflowHistory
    """Its event history."""
    attempts: tuple[AttemptRecord, ...]
    """Every activity attempt, from the kit's attempt log."""
    charges: int
    """Charges in the processor's ledger."""
    refunds: int
    """Refunds in the processor's ledger."""
    notifications: int
    """Notifications sent."""

    @property
    def payment_id(self) -> str:
        """The payment id."""
        return self.request.payment_id

    @property
    def status(self) -> str:
        """The payment's final status; ``terminated``, or ``still running`` if it missed the deadline."""
        if self.result is not None:
            return self.result.status.value
        return "terminated" if self.closing_event == "WorkflowExecutionTerminated" else "still running"

    @property
    def closing_event(self) -> str:
        """The history's last event, e.g. ``WorkflowExecutionCompleted``."""
        return closing_event(self.history)

    @property
    def events(self) -> list[Event]:
        """The history's events."""
        return events_of(self.history)

    def outcomes(self, activity_type: str) -> list[str]:
        """Outcome of each attempt of one activity, from the attempt log."""
        return [a.outcome for a in self.attempts if a.activity == activity_type]

    def describe_attempts(self, activity_type: str) -> str:
        """``failed, failed, completed``, or ``none``."""
        return ", ".join(self.outcomes(activity_type)) or "none"


CHECK_STOP = "stopped by an exercise check"
"""The reason a check gives when it cancels or terminates a payment of its own (the history keeps it)."""


def ended_by_the_answer(history: WorkflowHistory) -> str | None:
    """``"cancelled"`` or ``"terminated"`` when something other than a check ended the payment (the learner's answer), else None.

    A check's own cancel and terminate requests give :data:`CHECK_STOP` as their reason, which the
    history keeps (the cancel request's ``cause``, the termination's ``reason``).
    """
    for event in history.events:
        if event.HasField("workflow_execution_cancel_requested_event_attributes"):
            if event.workflow_execution_cancel_requested_event_attributes.cause != CHECK_STOP:
                return "cancelled"
        if event.HasField("workflow_execution_terminated_event_attributes"):
            if event.workflow_execution_terminated_event_attributes.reason != CHECK_STOP:
                return "terminated"
    return None


async def _terminate(handle: PaymentHandle) -> None:
    try:
        await handle.workflow.terminate(reason=CHECK_STOP)
    except Exception:  # noqa: BLE001 - it may have ended meanwhile
        pass


async def _settle_if_terminated(handle: PaymentHandle, repository: PaymentRepository) -> None:
    """Settle in ``repository`` (refunding what it took) a payment a check terminated: its own code never will.

    Only one that is terminated: not one that completed, or settled itself, as the check stopped it.
    """
    try:
        terminated = (await handle.workflow.describe()).status is WorkflowExecutionStatus.TERMINATED
    except Exception:  # noqa: BLE001 - unknown: leave the ledger as it is
        return
    if terminated:
        repository.settle_unfinished(handle.payment_id, PaymentStatus.CANCELLED, "ended by an exercise check")


async def _stop(handle: PaymentHandle, grace: float) -> None:
    """Cancel a payment that missed its deadline (it settles and refunds), else terminate it."""
    try:
        await handle.cancel(reason=CHECK_STOP)
        await asyncio.wait_for(handle.result(), grace)
    except Exception:  # noqa: BLE001 - whatever happened, the payment must not linger
        await _terminate(handle)


async def collect(
    handle: PaymentHandle,
    request: PaymentRequest,
    repository: PaymentRepository,
    result: PaymentResult | None,
) -> PaymentRun:
    """Gather what the server and the repository recorded about a payment."""
    history = await handle.history()
    money = repository.ledger_summary(request.payment_id)
    return PaymentRun(
        request=request,
        handle=handle,
        result=result,
        history=history,
        attempts=tuple(repository.attempts(request.payment_id)),
        charges=money.charges,
        refunds=money.refunds,
        notifications=len(repository.notifications(request.payment_id)),
    )


async def after_learner(
    learner: Awaitable[object],
    handle: PaymentHandle,
    request: PaymentRequest,
    repository: PaymentRepository,
    *,
    end_within: float,
) -> PaymentRun:
    """Let the learner's code act on a started payment, then collect how the payment ended.

    If the learner's code raises (or is interrupted), the payment is stopped before the
    error goes on: no check leaves a payment running. Otherwise the payment gets
    ``end_within`` seconds to end. Code that ran past its time while the lab's server was
    away (frozen, restarting) is no verdict on the answer: the check says so instead.
    """
    try:
        async with OutageWatch(handle.service.client) as watch:
            await learner
    except BaseException as error:
        await await_result(handle, 0, settle_in=repository)  # stop the payment, whatever the learner's code did
        if isinstance(error, Mismatch) and watch.saw_outage:
            raise lab_too_slow(
                "The lab's server did not answer for a while as your function ran: it could not finish in time, "
                "and the check cannot judge it.",
                expected="a server that answers during the check",
                seen="the server unreachable or silent while your function waited on it",
            ) from None
        raise
    try:
        result = await await_result(handle, end_within)
    except BaseException:
        # The check was stopped while the payment ran on (its lab's worker stopped, the cell interrupted): a
        # payment with no worker cannot settle by itself, so it is ended here and what it took refunded.
        await _terminate(handle)
        await _settle_if_terminated(handle, repository)
        raise
    return await collect(handle, request, repository, result)


async def await_result(
    handle: PaymentHandle,
    deadline: float,
    *,
    stop_grace: float = 3.0,
    terminate: bool = False,
    settle_in: PaymentRepository | None = None,
) -> PaymentResult | None:
    """The payment's result, or None if it ended without one (terminated) or not within ``deadline`` seconds.

    A payment still running then, or whose workflow task fails with the code deployed, is stopped: cancelled (it settles, refunding what it
    took) and, if that takes more than ``stop_grace`` seconds, or at once with
    ``terminate``, terminated. Time the server spent unreachable does not count: the
    deadline starts again once it is back, with :data:`~payments_lab.outage.RECOVERY_ALLOWANCE`
    more for the workers to poll again. A payment terminated here settles in ``settle_in``: its own
    code could not (it fails its task, or no worker runs it), and the money it took is refunded, not
    left taken for ever.
    """
    window = deadline
    give_up = time.monotonic() + deadline + outage_wait().total_seconds()
    while True:
        async with OutageWatch(handle.service.client) as watch:
            try:
                return await asyncio.wait_for(handle.result(say_after=None), window)  # the check gives its own verdict
            except WorkflowFailureError:
                return None  # terminated, or failed for a reason its history tells
            except (TimeoutError, WorkflowTaskFailingError):
                pass  # not ended in time, or its code fails its task: it will not end by itself
        if watch.saw_outage and time.monotonic() < give_up:
            # The server was away: no verdict on the payment. Once it answers, wait again,
            # and give the workers time to find it back.
            await handle.status()
            window = deadline + RECOVERY_ALLOWANCE.total_seconds()
            continue
        if terminate:
            await _terminate(handle)
        else:
            await _stop(handle, stop_grace)  # cancelled, it settles itself; terminated when no worker could settle it
        if settle_in is not None:
            await _settle_if_terminated(handle, settle_in)
        return None


def lab_too_slow(message: str, *, expected: str, seen: str) -> Mismatch:
    """The verdict of a check whose answer looks right but whose lab did not finish in time: about the lab, never the answer."""
    return Mismatch(
        message,
        expected=expected,
        seen=seen,
        where_to_look="run the check again; if it persists, ask your facilitator: the lab is overloaded",
        about_the_lab=True,
    )


def required_lab(lab: Lab | None) -> Lab:
    """The lab a check runs its payments on.

    The framework opens one for every exercise with ``needs_lab`` (the default); a check
    that gets none was declared without it, a mistake in the exercise, not in the answer.
    """
    if lab is None:
        raise InvalidExerciseError("this check runs payments on a lab: declare its exercise with needs_lab=True")
    return lab


def fresh_request(lab: Lab, request: PaymentRequest | None = None, **fields: Any) -> PaymentRequest:
    """A request with a new ``ex-`` payment id: a check never collides with an earlier run."""
    payment_id = lab.new_payment_id(ID_PREFIX)
    if request is not None:
        return replace(request, payment_id=payment_id, **fields)
    fields.setdefault("amount", "10.00")
    fields.setdefault("currency", "EUR")
    amount, currency = fields.pop("amount"), fields.pop("currency")
    return lab.request(amount, currency, payment_id=payment_id, **fields)


async def run_payment(
    lab: Lab,
    request: PaymentRequest | None = None,
    *,
    faults: FaultPlan | None = None,
    options: PaymentOptions = CHECK_OPTIONS,
    deadline: float = LAB_PATIENCE,
    **fields: Any,
) -> PaymentRun:
    """Run one payment on the lab and collect what was recorded.

    Args:
        lab: The lab whose worker runs the payment.
        request: The payment (it gets a fresh id); by default 10.00 EUR from org-acme.
        faults: Faults to inject.
        options: Retry and timeout options.
        deadline: Seconds to wait for the end; a payment still running then is
            cancelled (or terminated) and its run has no result.
        fields: Fields of the default request (``amount``, ``organization_id``…).
    """
    chosen = fresh_request(lab, request, **fields)
    handle = await lab.start(chosen, faults=faults, options=options, show_link=False)
    result = await await_result(handle, deadline)
    return await collect(handle, chosen, lab.repository, result)


async def run_payments(lab: Lab, plans: Sequence[dict[str, Any]]) -> list[PaymentRun]:
    """Run several payments at once; each plan holds :func:`run_payment`'s keyword arguments."""
    return list(await asyncio.gather(*(run_payment(lab, **plan) for plan in plans)))


def service_of(lab: Lab, task_queue: str, options: PaymentOptions = CHECK_OPTIONS) -> PaymentService:
    """A payment service of the lab's client on another task queue."""
    return PaymentService(lab.client, task_queue, options=options, ui_url=lab.ui_url)


def _describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


async def _call_in_a_thread(function: Callable[..., Any], args: tuple[Any, ...], what: str, timeout: float) -> Any:
    """Call a plain (not async) function of the learner's in a thread, so that a loop in it cannot freeze the kernel.

    Raises:
        Mismatch: it did not return within ``timeout`` seconds (it is stopped, if it can be).
        BaseException: what the function raised.
    """
    call = GuardedCall(function, *args, name=f"learner's {what}")
    try:
        if await call.wait_async(timeout):
            try:
                return call.result()
            except (SystemExit, KeyboardInterrupt, GeneratorExit) as ending:
                # Raised by the learner's code in its thread: re-raised here, it would stop the
                # kernel's event loop (every later cell would hang).
                raise _ended_the_program(ending, what) from None
    except asyncio.CancelledError:
        call.stop(grace=0)  # the check itself was stopped: so is the learner's function, where it can be
        raise
    code = getattr(function, "__code__", None)
    line = call.running_line(Path(code.co_filename)) if code is not None else None
    stopped = call.stop()
    raise Mismatch(
        f"Your {what} did not return within {timeout:g} s.",
        expected=f"it returns within {timeout:g} s",
        seen=f"it was still running{f' line {line} of your cell' if line else ''}, and "
        + ("was stopped" if stopped else "could not be stopped: it waits inside a call, in the background (restart the kernel to end it)"),
        where_to_look="a loop that never ends (a `while` whose condition never changes), or a `time.sleep`",
    )


BLOCKING_NOTICED = 0.5
"""Seconds a learner's ``async def`` may keep the event loop from turning, in all, before the check says so."""


async def _await_learner(function: Callable[..., Any], args: tuple[Any, ...], what: str, timeout: float) -> Any:
    """Await the learner's ``async def``, guarding the event loop it runs on (:class:`LoopGuard`).

    Raises:
        Mismatch: it kept the loop from turning: a blocking call (``time.sleep``) for longer than
            :data:`BLOCKING_NOTICED` in all, or a loop without ``await`` (stopped after ``timeout``).
        TimeoutError: it awaited past ``timeout`` seconds.
        BaseException: what the function raised.
    """
    code = getattr(function, "__code__", None)
    if code is None:  # a functools.partial, say: no code of its own to guard the loop against
        return await _awaited_within([function(*args)], what, timeout)
    with LoopGuard(code, stop_after=timeout) as guard:
        try:
            # Awaited in this task, not wait_for's: a SystemExit raised in a task of its own would
            # go straight out of the event loop, past every handler here.
            outcome = await _awaited_within([function(*args)], what, timeout)
        except BaseException as error:
            if isinstance(error, (SystemExit, GeneratorExit)):
                raise _ended_the_program(error, what) from None
            if not was_stopped(error):
                if isinstance(error, Exception) and guard.blocked_seconds >= BLOCKING_NOTICED:
                    # What it awaited after blocking ran out of time because of the block (a
                    # Temporal call's own timeout, say): the block is what to fix.
                    raise _blocked(guard, what) from None
                raise
            outcome = None
    if any(isinstance(arg, Lab) and arg.closed for arg in args):
        # Closing a lab stops its server, a wait that blocks the loop: not the answer's own blocking call.
        raise lab_closed(during=True)
    where = f"line {guard.blocked_line} of your cell" if guard.blocked_line else "your function"
    if guard.stopped:
        raise Mismatch(
            f"Your {what} did not return within {timeout:g} s: it never let the kernel's event loop turn.",
            expected=f"it returns within {timeout:g} s",
            seen=f"{where} ran on without an `await`, and was stopped",
            where_to_look="a loop that never ends: in an `async def`, a loop that waits must `await` (e.g. `await asyncio.sleep(0.1)`)",
        )
    if guard.blocked_seconds >= BLOCKING_NOTICED:
        raise _blocked(guard, what)
    return outcome


async def _awaited_within(handed: list[Awaitable[Any]], what: str, timeout: float) -> Any:
    """Await what the learner's function returned, for ``timeout`` seconds; a coroutine that catches its cancellation is dropped.

    ``handed`` holds it, and is emptied: no frame but :class:`Droppable`'s holds the coroutine then, so that one it
    drops is freed there, in the loop's thread, not by a garbage collection in another (see ``Droppable._drop``).

    Raises:
        Mismatch: it caught the cancellation that was to stop it, and waited on (:class:`Droppable`).
        TimeoutError: it did not end within ``timeout`` seconds.
        BaseException: what it raised.
    """
    if not inspect.iscoroutine(handed[0]):  # a future, say: cancelled, it ends
        return await asyncio.wait_for(handed.pop(), timeout)
    dropping = Droppable(handed.pop())
    try:
        async with asyncio.timeout(timeout):
            return await dropping
    except IgnoredCancellationError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None  # the check itself was cancelled (■): not the learner's doing
        raise Mismatch(
            f"Your {what} did not return within {timeout:g} s, and caught the cancellation that was to stop it: it was stopped.",
            expected=f"it returns within {timeout:g} s",
            seen="a `try` around an `await` whose `except` catches everything (a bare `except:`, or `except BaseException:`)",
            where_to_look="catch what you expect, `except Exception:` at most (a cancellation is not an Exception), and make the loop end",
        ) from None


def _blocked(guard: LoopGuard, what: str) -> Mismatch:
    """The verdict on an ``async def`` that kept the event loop from turning (a blocking call)."""
    where = f"line {guard.blocked_line} of your cell" if guard.blocked_line else "your function"
    return Mismatch(
        f"Your {what} blocked the kernel's event loop for {guard.blocked_seconds:.1f} s: while it did, nothing "
        "else ran, the lab's worker included.",
        expected="an `async def` that waits with `await`",
        seen=f"{where} held the event loop (a blocking call, such as `time.sleep`)",
        where_to_look="in an `async def`, wait with `await asyncio.sleep(...)`, never `time.sleep(...)`",
    )


async def call_learner(function: Callable[..., Any], *args: Any, what: str, timeout: float = 3.0) -> Any:
    """Call the learner's function (sync or async) and turn its failures into helpful feedback.

    Raises:
        Mismatch: the function raised, or did not return within ``timeout`` seconds.
        NamespaceNotFoundError: the lab's namespace is gone (deleted under the lab), as the
            function's start of a payment found; the check judges nothing then (see ``Exercise.check_async``).
        SearchAttributesError: the kit's search attributes were removed from the lab's namespace and
            could not be added back; the same.
    """
    try:
        with _dropped_coroutines() as dropped:
            if inspect.iscoroutinefunction(function):
                outcome = await _await_learner(function, args, what, timeout)
            else:
                handed = [await _call_in_a_thread(function, args, what, timeout)]
                # A lambda that returns the call of an `async def`, say: awaited with nothing else holding it.
                outcome = await _awaited_within(handed, what, timeout) if inspect.isawaitable(handed[0]) else handed.pop()
            if inspect.iscoroutine(outcome):
                raise _never_awaited(outcome, what)
        if dropped:
            raise _called_without_await(dropped[0], what)
    except TimeoutError:
        raise Mismatch(
            f"Your {what} did not return within {timeout:g} s.",
            expected=f"it returns within {timeout:g} s",
            seen="it was still running, and was stopped",
            where_to_look="a loop that never ends, or an `await` on something that never happens",
        ) from None
    except (Mismatch, NamespaceNotFoundError, SearchAttributesError):
        # A namespace changed under the lab is the lab's trouble, not the answer's: blamed on the function that
        # started a payment there (10 Q1: `lab.service.start_early`), it was judged and recorded as a wrong answer.
        raise
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the check itself is being cancelled: not the learner's doing
        raise Mismatch(
            f"Your {what} raised CancelledError: it cancelled itself, so it never finished its work.",
            expected="it runs to its end",
            seen=_describe_error(error),
            where_to_look="an `await` on a task or a handle that was cancelled; to cancel the payment, "
            "`await handle.cancel()` asks the workflow and returns",
        ) from None
    except Exception as error:  # noqa: BLE001 - the learner's code may raise anything
        raise Mismatch(
            f"Your {what} raised an error.",
            expected="it runs to its end",
            seen=_describe_error(error),
            where_to_look="the error message, then the hint",
        ) from None
    return outcome


def _ended_the_program(ending: BaseException, what: str) -> Mismatch:
    """The verdict on a function that tried to end the program (``sys.exit()``, ``exit()``, ``raise KeyboardInterrupt``)."""
    raised = f"{type(ending).__name__}({', '.join(map(repr, ending.args))})"
    return Mismatch(
        f"Your {what} tried to end the program ({raised}) instead of returning its answer.",
        expected="it returns a value",
        seen=f"`{raised}` raised inside it",
        where_to_look="remove `sys.exit()`, `exit()` or `raise KeyboardInterrupt`: `return` the answer",
    )


@contextmanager
def _dropped_coroutines() -> Iterator[list[str]]:
    """Collect the names of coroutines created and dropped unawaited meanwhile (Python warns of each as it is freed)."""
    names: list[str] = []
    others: list[warnings.WarningMessage] = []

    def keep(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None
    ) -> None:
        # The first name is what the verdict needs: a loop that forgot `await` drops millions of coroutines.
        found = _UNAWAITED.search(str(message))
        if found is None:
            others.append(warnings.WarningMessage(message, category, filename, lineno))
        elif not names:
            names.append(found.group(1))

    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        warnings.showwarning = keep
        yield names
        gc.collect()  # a coroutine held by a cycle is freed, and warned of, only by a collection
    for warning in others:  # not ours to keep quiet
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


_UNAWAITED = re.compile(r"coroutine '([^']+)' was never awaited")


def _called_without_await(name: str, what: str) -> Mismatch:
    """The verdict on a function that called an ``async`` method without ``await``: the call never ran."""
    short = name.rsplit(".", 1)[-1]
    return Mismatch(
        f"Your {what} called `{name}(...)` without `await`, so that call never ran.",
        expected=f"`await ...{short}(...)` inside an `async def`",
        seen=f"a coroutine of `{name}`, created and dropped (Python: \"was never awaited\")",
        where_to_look=f"write `async def` and `await ...{short}(...)`",
    )


def _never_awaited(coroutine: Coroutine[Any, Any, Any], what: str) -> Mismatch:
    """The verdict on a function that returned a call it did not await: the call never ran."""
    name = getattr(coroutine, "__qualname__", "the call")
    coroutine.close()  # it never runs: no "was never awaited" warning on top of the verdict
    short = name.rsplit(".", 1)[-1]
    return Mismatch(
        f"Your {what} returned `{name}(...)` without awaiting it, so that call never ran.",
        expected=f"what `await {short}(...)` gives",
        seen=f"a coroutine of `{name}`, never awaited",
        where_to_look=f"add `await` before the call: `return await ...{short}(...)`",
    )


def expect_function(answer: object, what: str, parameters: int) -> Callable[..., Any]:
    """Return ``answer`` if it is a function of ``parameters`` positional parameters.

    Raises:
        Mismatch: it is not a function, or takes another number of parameters.
    """
    if not callable(answer) or isinstance(answer, type):
        raise Mismatch(
            f"The answer should be {what}.",
            expected=what,
            seen=f"{type(answer).__name__} {short_repr(answer)}",
            where_to_look="pass the function itself, without calling it: `check(my_function)`",
        )
    try:
        signature = inspect.signature(answer)
    except (TypeError, ValueError):
        return answer  # a builtin: nothing to say about its parameters
    try:
        signature.bind(*range(parameters))
    except TypeError:
        raise Mismatch(
            f"The function should take {plural(parameters, 'argument')}.",
            expected=what,
            seen=f"{getattr(answer, '__name__', 'a function')}{signature}",
            where_to_look="the parameters in the task",
        ) from None
    return answer


def expect_type(answer: object, expected_type: type, example: str) -> None:
    """Check that ``answer`` is an ``expected_type``.

    Raises:
        Mismatch: it is something else.
    """
    if not isinstance(answer, expected_type):
        name = expected_type.__name__
        article = "an" if name[0].lower() in "aeiou" else "a"
        raise Mismatch(
            f"The answer should be {article} {name}.",
            expected=f"{article} {name}, e.g. `{example}`",
            seen=f"{type(answer).__name__} {short_repr(answer)}",
            where_to_look=f"build it with `{example}`",
        )


def whole_number_answer(value: object, message: str, *, expected: str, where_to_look: str) -> int:
    """``value`` as an ``int`` if it is a whole number of any kind: an int, a numpy or pandas integer, ``3.0``.

    A bool is refused: ``True`` is an int to Python, not a count to a learner.

    Raises:
        Mismatch: ``message``, with ``expected`` and ``where_to_look``, and what ``value`` was.
    """
    if not isinstance(value, (bool, np.bool_)):
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():  # Decimal('2')
            return int(value)
        if isinstance(value, numbers.Real):
            try:
                if float(value).is_integer():
                    return int(float(value))
            except (OverflowError, ValueError):  # a Fraction too large for a float: not a count of attempts
                pass
    raise Mismatch(message, expected=expected, seen=f"{type(value).__name__} {short_repr(value)}", where_to_look=where_to_look)


def truth_answer(value: object, example: str) -> bool:
    """``value`` as a ``bool`` if it is one, or a numpy ``bool_`` (what a pandas comparison gives).

    Raises:
        Mismatch: it is anything else (``"False"`` or ``0`` included).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise Mismatch(
        "The answer should be True or False.",
        expected=f"True or False, e.g. `{example}`",
        seen=f"{type(value).__name__} {short_repr(value)}",
        where_to_look=f"write it without quotes: `{example}`",
    )


def times(count: int) -> str:
    """``never``, ``once``, ``twice``, ``3 times``."""
    return {0: "never", 1: "once", 2: "twice"}.get(count, f"{count} times")
