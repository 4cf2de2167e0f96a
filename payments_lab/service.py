"""The payment service: start, follow, cancel, search and measure payments, the Temporal way.

The seed's ``PaymentWorkflowService`` started workflows and read their status; its
``TemporalPaymentRepository`` started a workflow for every read. Here reads go through
Temporal's own tools: a query for the live step, ``describe()`` for one payment, and
visibility (search attributes) to find, count and measure many.
"""

from __future__ import annotations

import asyncio
import copy
import statistics
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError, is_cancelled_exception
from temporalio.service import RPCError, RPCStatusCode

from payments_lab import search_attributes
from payments_lab.arguments import positive_duration, short_repr, whole_number
from payments_lab.client import (
    NamespaceNotFoundError,
    SearchAttributesError,
    TemporalUnavailableError,
    ensure_search_attributes,
    workflow_url,
    workflows_url,
)
from payments_lab.domain import (
    STEPS,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    checked_payment_id,
    checked_request,
    checked_text,
    payment_id_of,
    workflow_id_for,
)
from payments_lab.errors import InvalidArgumentError, PaymentsLabError
from payments_lab.faults import FaultPlan, checked_fault_plan
from payments_lab.interrupts import cancel_words, stop_waiting_words
from payments_lab.messages import PaymentAnswer, PaymentInput, PaymentOptions, PaymentProgress, checked_payment_options
from payments_lab.outage import (
    BUSY_SERVER_WINDOWS,
    CALL_WINDOW,
    answered,
    deadline_expired,
    is_unreachable,
    own_server_ended,
    ride_out,
    silence_as_outage,
    within_window,
)
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_STATUS
from payments_lab.task_queues import (
    checked_task_queue,
    live_pollers,
    nobody_polls_words,
    stopped_by_hand_words,
    worker_command,
)
from payments_lab.visibility import PAYMENTS_QUERY, checked_query, quoted, refused_query_as_error
from payments_lab.wording import plural
from payments_lab.workflow_tasks import WAITING_SAID_AFTER, failing_task_error, unless_task_fails
from payments_lab.workflows import PaymentWorkflow

T = TypeVar("T")

_WORKFLOW_STATUS_NAMES = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued as new",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


class PaymentNotFoundError(PaymentsLabError, LookupError):
    """No workflow runs the payment asked for."""


class QueryUnansweredError(PaymentsLabError, TimeoutError):
    """No worker answered a query in time (the server itself answers)."""


class FirstAnswerNotInTimeError(PaymentsLabError, WorkflowUpdateRPCTimeoutOrCancelledError):
    """A payment started early gave no first answer within its ``rpc_timeout``; it runs on.

    Also the SDK's ``WorkflowUpdateRPCTimeoutOrCancelledError``, which it replaces with words that say why.
    """

    def __init__(self, message: str) -> None:
        WorkflowUpdateRPCTimeoutOrCancelledError.__init__(self)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class FirstAnswerRefusedError(PaymentsLabError, RuntimeError):
    """The workflow code of a payment started early could not give its first answer (no ``answer`` update); it runs on."""


class DuplicatePaymentError(PaymentsLabError, RuntimeError):
    """A payment id was submitted a second time; nothing was started or charged again."""

    def __init__(self, payment_id: str, existing: PaymentStatusReport) -> None:
        self.payment_id = payment_id
        self.existing = existing
        state = existing.payment_status.value if existing.payment_status else existing.workflow_status
        super().__init__(
            f"payment {payment_id!r} was already submitted (workflow {existing.workflow_id} is "
            f"{existing.workflow_status}, payment {state}); nothing was started or charged again. "
            f"Follow it with service.handle({payment_id!r}), or pay again with a new payment id."
        )


@dataclass(frozen=True)
class PaymentStatusReport:
    """One payment as Temporal sees it (the seed's ``getWorkflowStatus``)."""

    payment_id: str
    """The payment."""
    workflow_id: str
    """Its workflow, ``payment-<payment id>``."""
    run_id: str
    """The workflow's run."""
    workflow_status: str
    """``running``, ``completed``, ``failed``, ``cancelled``, ``terminated`` or ``timed out``."""
    payment_status: PaymentStatus | None
    """The payment's status, from its search attribute."""
    organization_id: str | None
    """The organization that pays, from its search attribute."""
    task_queue: str
    """The task queue its workers poll."""
    started_at: datetime
    """When the workflow started."""
    closed_at: datetime | None
    """When it ended; None while it runs."""
    ui_url: str | None = None
    """Link to the workflow in the Web UI."""

    @property
    def is_running(self) -> bool:
        """Whether the workflow is still running."""
        return self.workflow_status == "running"

    @property
    def is_completed(self) -> bool:
        """Whether the payment completed."""
        return self.payment_status is PaymentStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        """Whether the payment failed: its charge did not go through (declined by validation, cancelled or
        refunded are other endings). The same ``failed`` as :attr:`PaymentMetrics.failed` counts."""
        return self.payment_status is PaymentStatus.FAILED

    @property
    def execution_time(self) -> timedelta | None:
        """How long the workflow ran, once it has ended."""
        return self.closed_at - self.started_at if self.closed_at else None


@dataclass(frozen=True)
class PaymentMetrics:
    """Counts and timing of payments, from Temporal visibility (the seed's ``getWorkflowMetrics``)."""

    running: int
    """Workflows still running."""
    by_status: dict[str, int]
    """Payments per payment status (running ones included, under their current status); those whose workflow was
    terminated or timed out before the payment ended, under ``terminated`` or ``timed out``."""
    mean_execution_time: timedelta | None
    """Mean start-to-close time of the ended workflows."""

    @property
    def completed(self) -> int:
        """Completed payments."""
        return self.by_status.get(PaymentStatus.COMPLETED.value, 0)

    @property
    def failed(self) -> int:
        """Payments that failed: the charge gave up, or the processor refused the card (a payment that
        validation refuses ends ``declined``, counted apart)."""
        return self.by_status.get(PaymentStatus.FAILED.value, 0)

    @property
    def total(self) -> int:
        """All payments."""
        return sum(self.by_status.values())


def _report(execution: WorkflowExecution, ui_url: Callable[[str], str | None]) -> PaymentStatusReport:
    attributes = execution.typed_search_attributes
    status = attributes.get(PAYMENT_STATUS)
    workflow_id = execution.id
    return PaymentStatusReport(
        payment_id=payment_id_of(workflow_id),
        workflow_id=workflow_id,
        run_id=execution.run_id,
        workflow_status=_WORKFLOW_STATUS_NAMES.get(execution.status, "unknown") if execution.status else "unknown",
        payment_status=PaymentStatus(status) if status else None,
        organization_id=attributes.get(ORGANIZATION_ID),
        task_queue=execution.task_queue,
        started_at=execution.start_time,
        closed_at=execution.close_time,
        ui_url=ui_url(workflow_id),
    )


RESULT_POLL_WINDOW = timedelta(seconds=5)
"""How long one request for a payment's result waits on the server before it is made again.

Waiting for a result is a long poll: the server holds the request until the workflow closes,
or for 20 s. It learns of the close from a notification that it may drop under load: each
waiting request has room for one pending notification, and a newer one is discarded while
an older one is unread (``service/history/events/notifier.go`` in temporalio/temporal).
Measured here, in about one payment in 5,000–10,000 run 100 at a time on 2 cores, the result then
came 20 s after the workflow had closed. A request made again reads the workflow afresh, so
this window bounds that wait; a payment that simply runs long costs one cheap request per window.
"""


def _stopped_waiting(payment_id: str, awaited: str, started: str) -> list[str]:
    """What an interrupted wait for ``awaited`` shows in a notebook, instead of a page of asyncio's frames."""
    return [
        f"\x1b[31mStopped waiting\x1b[0m for payment {payment_id!r} ({awaited}): the payment {started}{' ' if started else ''}"
        f"runs on (Temporal keeps it). `await lab.service.handle({payment_id!r}).result()` waits for its end; "
        f"`await lab.service.cancel({payment_id!r})` cancels it."
    ]


async def _read_failure(operation: WithStartWorkflowOperation[Any, Any]) -> bool:
    """Read what an Update-with-Start operation holds (a failure unread is reported later by asyncio as "never
    retrieved"); return whether the workflow started."""
    with suppress(Exception):
        await asyncio.wait_for(operation.workflow_handle(), timeout=1)
        return True
    return False


async def result_in_windows(handle: WorkflowHandle[Any, T], client: Client, window: timedelta = RESULT_POLL_WINDOW) -> T:
    """``await handle.result()``, asked for again every ``window`` (see :data:`RESULT_POLL_WINDOW`).

    Args:
        handle: The workflow.
        client: Its client, whose server is asked whether it still answers when a window expires.
        window: How long one request may wait on the server.

    Raises:
        RPCError: as ``handle.result()`` does; UNAVAILABLE when the server is gone or does not
            answer (what :func:`payments_lab.outage.ride_out` waits through and bounds), never
            a window's expiry.
    """
    # The server answers an expired window with "nothing yet" and the SDK asks again. A
    # server too busy to answer within it ends the request instead, and so do a server that
    # is gone and one that is stopped: within_window tells them apart.
    return await within_window(lambda w: handle.result(rpc_timeout=w), client, window, windows=None)


class PaymentHandle:
    """A started payment: follow it, query it, cancel it, await its result."""

    def __init__(self, service: PaymentService, handle: WorkflowHandle[PaymentWorkflow, PaymentResult], payment_id: str) -> None:
        self.service = service
        self.workflow = handle
        self.payment_id = payment_id

    def __repr__(self) -> str:
        return f"PaymentHandle({self.payment_id!r}, workflow_id={self.workflow_id!r})"

    @property
    def workflow_id(self) -> str:
        """The workflow id, ``payment-<payment id>``."""
        return self.workflow.id

    @property
    def ui_url(self) -> str | None:
        """Link to the workflow in the Web UI."""
        return self.service.workflow_url(self.workflow_id)

    async def _ride_out(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, waiting through a server outage (see :mod:`payments_lab.outage`)."""
        return await ride_out(call, address=self._address, wait=self.service.outage_wait)

    async def _answered(self, call: Callable[[timedelta], Awaitable[T]], *, windows: int = BUSY_SERVER_WINDOWS) -> T:
        return await self.service.answered(call, windows=windows)

    @property
    def _address(self) -> str:
        return self.service.client.service_client.config.target_host

    async def result(self, *, say_after: float | None = WAITING_SAID_AFTER) -> PaymentResult:
        """Wait for the payment to end and return how it ended.

        A cancelled payment is a result too: its status says whether it was refunded.
        Temporal's own ``WorkflowHandle.result()`` raises ``WorkflowFailureError`` for it
        instead (a cancelled workflow has no result); this builds one from ``describe()``.
        If the server becomes unreachable meanwhile, this waits for it to come back (up
        to the service's ``outage_wait``).

        Args:
            say_after: Seconds after which a wait on a step that runs long or is retried says
                once what it waits for (standard error); None: never (an exercise check, which
                gives its own verdict).
        """
        self.service.require_open()
        try:
            with not_found_as(self.payment_id):
                return await self._ride_out(lambda: self._result(say_after))
        except asyncio.CancelledError as stopped:
            # The cell was interrupted: in a notebook, say what that means in place of asyncio's frames.
            stopped._render_traceback_ = self._stopped_waiting  # type: ignore[attr-defined]
            raise
        except WorkflowFailureError as err:
            if not is_cancelled_exception(err.cause):
                raise
            report = await self.status()
            final = report.payment_status or PaymentStatus.CANCELLED
            request = (await self.input()).request
            return PaymentResult(
                self.payment_id, final, f"cancelled by request; payment {final.value}", request.amount, request.currency
            )

    async def _result(self, say_after: float | None) -> PaymentResult:
        # Temporal's result() waits as long as workflow code keeps failing its task (the "hung
        # cell"): stop waiting, with the error, once an attempt fails with the code deployed now.
        return await unless_task_fails(
            result_in_windows(self.workflow, self.service.client, self.service.result_poll_window),
            self.workflow,
            client=self.service.client,
            beside=[self._say_what_a_long_wait_waits_for(after=say_after)] if say_after is not None else [],
        )

    def _stopped_waiting(self) -> list[str]:
        """What an interrupted wait shows in a notebook, instead of a page of asyncio's frames."""
        return _stopped_waiting(self.payment_id, "its result", "")

    async def _say_what_a_long_wait_waits_for(self, *, after: float = WAITING_SAID_AFTER) -> None:
        """Once the wait has lasted ``after`` seconds, say once which step it waits on, if one runs long or is retried.

        A charge retried a minute apart without limit (``maximum_attempts=0``), or a processor
        that takes ten minutes to answer (lesson 05), keeps the cell waiting: without a word,
        it would look hung.
        """
        await asyncio.sleep(after)
        try:
            described = await self.workflow.describe(rpc_timeout=self.service.call_window)
        except RPCError:
            return  # the server is away: the result's own wait says so
        pending_activities = list(described.raw_description.pending_activities)
        if not pending_activities:
            task = described.raw_description.pending_workflow_task
            # A task that failed before is told of by until_task_fails; one no worker takes, here.
            if described.raw_description.HasField("pending_workflow_task") and task.attempt < 2:
                await self._say_if_nobody_polls(described.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "its next workflow task")
            return
        pending = max(pending_activities, key=lambda p: p.attempt)
        step = STEPS.get(pending.activity_type.name, pending.activity_type.name)
        # Retried or running, a step no live worker polls for (its worker died with a kernel) is never run again.
        if await self._say_if_nobody_polls(described.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, f"its {step} step"):
            return
        now = datetime.now(UTC)
        if pending.attempt >= 2:
            limit = "no limit" if pending.maximum_attempts == 0 else f"at most {pending.maximum_attempts} attempts"
            due = ""
            if pending.HasField("next_attempt_schedule_time"):
                seconds = (pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC) - now).total_seconds()
                due = f", the next one in {max(seconds, 0):.0f} s"
            last = pending.last_failure.message or "no message"
            what = f"its {step} step failed {plural(pending.attempt - 1, 'time')} (last: {last}) and is retried ({limit}{due})"
        elif pending.HasField("last_started_time"):
            running = (now - pending.last_started_time.ToDatetime(tzinfo=UTC)).total_seconds()
            what = f"its {step} step has been running for {running:.0f} s"
        else:  # scheduled, not started yet: a live worker is about to take it
            return
        print(
            f"Payment {self.payment_id!r} is still running: {what}. This waits for the payment to end: {stop_waiting_words()} "
            f"to stop waiting (the payment runs on), or cancel it: {cancel_words(self.payment_id)}.",
            file=sys.stderr,
            flush=True,
        )

    async def _say_if_nobody_polls(self, task_queue: str, kind: TaskQueueType.ValueType, what: str) -> bool:
        """Say that no live worker polls ``task_queue`` for ``what``, if none does; return whether it was said."""
        try:
            workers = await live_pollers(self.service.client, task_queue, kinds=(kind,))
        except RPCError:
            return False
        if not workers:
            print(nobody_polls_words(self.workflow_id, task_queue, what), file=sys.stderr, flush=True)
        return not workers

    async def input(self) -> PaymentInput:
        """The workflow's input, read back from the first event of its history."""
        history = await self.history()
        payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
        (decoded,) = await self.service.client.data_converter.decode(payloads, [PaymentInput])
        return decoded

    async def history(self) -> WorkflowHistory:
        """The workflow's event history, so far."""
        with not_found_as(self.payment_id):
            return await self._answered(lambda window: self.workflow.fetch_history(rpc_timeout=window))

    async def progress(self) -> PaymentProgress:
        """Ask the workflow where it is (a Temporal query, answered by a worker).

        Raises:
            QueryUnansweredError: no worker answered within the service's ``call_window``.
            WorkflowTaskFailingError: the workflow's code fails its task: no worker can answer before it is fixed.
        """
        try:
            # One window: a query that a live server does not answer waits for a worker, not for the server.
            with not_found_as(self.payment_id):
                return await self._answered(
                    lambda window: self.workflow.query(PaymentWorkflow.progress, rpc_timeout=window), windows=1
                )
        except RPCError as err:
            await raise_if_task_failing(err, self.workflow)
            if not deadline_expired(err):
                raise
            raise await self.query_unanswered() from err

    async def query_unanswered(self, what: str = "progress") -> QueryUnansweredError:
        """The error of a query of this payment (``what``) that no worker answered within the call window."""
        queue = self.service.task_queue
        if not queue:  # a service that only finds payments (the command line's): ask the workflow's own
            with suppress(RPCError):
                queue = (await self.workflow.describe(rpc_timeout=self.service.call_window)).task_queue
        return QueryUnansweredError(
            f"No worker answered the {what} query of payment {self.payment_id!r} within "
            f"{self.service.call_window.total_seconds():g} s. A query runs on a worker of task queue "
            f"{queue!r}: none polls it, or all are busy. Start one (in a notebook `await lab.worker.start()`, "
            f"in a terminal `{worker_command(queue)}`), or ask the server instead: "
            "`await handle.status()`."
        )

    async def status(self) -> PaymentStatusReport:
        """Describe the workflow."""
        with not_found_as(self.payment_id):
            described = await self._answered(lambda window: self.workflow.describe(rpc_timeout=window))
        return _report(described, self.service.workflow_url)

    async def cancel(self, *, reason: str = "") -> None:
        """Ask the workflow to cancel; it settles the payment (refunding it if charged).

        Asking again is harmless (measured: the server accepts a second request, and one made
        after the workflow closed), so this waits through an outage as the reads do.

        Args:
            reason: Why, kept in the history as the ``WorkflowExecutionCancelRequested`` event's ``cause``.
        """
        with not_found_as(self.payment_id):
            await self._answered(lambda window: self.workflow.cancel(reason=reason, rpc_timeout=window))


@dataclass(frozen=True)
class EarlyStart:
    """What :meth:`PaymentService.start_early` returns: the first answer, and the payment that runs on."""

    answer: PaymentAnswer
    """Accepted (validated, being charged) or already ended (declined…)."""
    handle: PaymentHandle
    """The payment: ``await handle.result()`` says how the charge ended."""


class PaymentService:
    """Start and follow payments on one task queue, and search them through visibility.

    Args:
        client: A client with the kit's data converter (see :func:`payments_lab.client.connect`).
        task_queue: Where the workers of these payments poll.
        options: Default retry and timeout options of new payments.
        execution_timeout: How long a payment workflow may run in all. None by default: a
            timed-out workflow stops dead, with no chance to settle its payment, which would
            stay ``processing``; the activities' timeouts and retry policy bound a payment.
        ui_url: Base URL of the Web UI, for links.
        scoped: Only find, count and measure payments of ``task_queue``, so that two labs
            sharing a server do not see each other's payments.
        outage_wait: How long a call that waits for a payment waits for an unreachable
            server; None reads ``PAYMENTS_LAB_OUTAGE_WAIT`` (default 2 minutes).
        result_poll_window: How long one request for a payment's result waits on the
            server (see :data:`RESULT_POLL_WINDOW`).
        call_window: How long a describe, query or history request may go unanswered (see
            :data:`CALL_WINDOW`).
        scope: A visibility condition every search, count and metric adds, e.g. the payments
            of one fleet (:attr:`payments_lab.fleet.FleetRun.service`); None: every payment of
            the task queue.

    Raises:
        ValueError: a duration is not a ``timedelta`` (a number of seconds, say) or is out of
            range, or ``task_queue`` is not a non-empty string (an empty one is allowed when
            ``scoped`` is False: such a service only finds payments).
    """

    def __init__(
        self,
        client: Client,
        task_queue: str,
        *,
        options: PaymentOptions = PaymentOptions(),
        execution_timeout: timedelta | None = None,
        ui_url: str | None = None,
        scoped: bool = True,
        outage_wait: timedelta | None = None,
        result_poll_window: timedelta = RESULT_POLL_WINDOW,
        call_window: timedelta = CALL_WINDOW,
        scope: str | None = None,
    ) -> None:
        if not isinstance(task_queue, str) or (scoped and not task_queue):
            raise InvalidArgumentError(f"task_queue must be the name of the workers' task queue, got {short_repr(task_queue)}")
        if task_queue:  # a service that only finds payments (the command line's) has none
            checked_task_queue(task_queue)
        positive_duration("result_poll_window", result_poll_window)
        positive_duration("call_window", call_window)
        positive_duration("execution_timeout", execution_timeout, optional=True)
        if outage_wait is not None and (not isinstance(outage_wait, timedelta) or outage_wait < timedelta(0)):
            raise InvalidArgumentError(f"outage_wait must be a timedelta >= 0 or None, got {outage_wait!r}")
        self.client = client
        self.outage_wait = outage_wait
        self.result_poll_window = result_poll_window
        self.call_window = call_window
        self.task_queue = task_queue
        self.options = checked_payment_options(options, PaymentOptions())
        self.execution_timeout = execution_timeout
        self.ui_url = ui_url
        self.scoped = scoped
        self.scope = None if scope is None else checked_query(scope)
        self.taken_over: set[str] = set()
        """Task queues of payments this service's lab took over from a kernel that ended: a scoped service finds
        their payments too (they ran on, unseen by the lesson that asked what was still running)."""
        self.closed_because: Callable[[], Exception] | None = None
        """What to raise once the lab this service belongs to has closed (its server or worker are gone)."""

    def narrowed(self, condition: str) -> PaymentService:
        """This service, its searches, counts and metrics narrowed to payments that also meet ``condition``."""
        narrowed = copy.copy(self)
        narrowed.scope = checked_query(condition) if self.scope is None else f"({self.scope}) AND ({checked_query(condition)})"
        return narrowed

    def workflow_url(self, workflow_id: str) -> str | None:
        """Link to a workflow in the Web UI."""
        return workflow_url(self.ui_url, self.client.namespace, workflow_id)

    def search_url(self, query: str) -> str | None:
        """Link to the Web UI's list of the workflows ``query`` selects (a :meth:`visibility_query`), in this
        service's namespace; None where no Web UI link can open (the lab said why when it opened)."""
        return workflows_url(self.ui_url, self.client.namespace, checked_query(query))

    def require_open(self, *, starting: str | None = None) -> None:
        """Raise what :attr:`closed_because` says, at once, if the lab of this service has closed; raise
        :class:`TemporalUnavailableError`, at once too, if its server was one this process started and it has ended
        by itself (killed from a terminal, or crashed).

        A call to a closed lab's own server would otherwise wait out its window, then report an outage; one to a
        server killed under the lab waited seconds of connection retries (a start, then said it "did not confirm"
        the start) or the whole outage bound, for a server no one would start again.

        Args:
            starting: The id of the payment the call starts, named in the message: it was not started.
        """
        if self.closed_because is not None:
            raise self.closed_because()
        what = f"Payment {starting!r} was not started. " if starting is not None else ""
        if (gone := own_server_ended(self.client.service_client.config.target_host, what=what)) is not None:
            raise gone

    async def answered(self, call: Callable[[timedelta], Awaitable[T]], *, windows: int = BUSY_SERVER_WINDOWS) -> T:
        """``call(window)``, a request safe to make again, waiting through an outage (a server
        that does not answer included) up to ``outage_wait``; see :func:`within_window`."""
        self.require_open()
        return await answered(self.client, call, window=self.call_window, windows=windows, wait=self.outage_wait)

    async def start(
        self,
        request: PaymentRequest,
        *,
        faults: FaultPlan | None = None,
        options: PaymentOptions | None = None,
        execution_timeout: timedelta | None = None,
        task_timeout: timedelta | None = None,
        eager_start: bool = False,
    ) -> PaymentHandle:
        """Start the payment workflow and return at once.

        ``task_timeout`` is how long a worker may hold one of its workflow tasks (Temporal's
        default: 10 s); a workflow task that fails again is retried after it.

        With ``eager_start``, the server hands the workflow's first task straight back to a
        worker of this process that uses the same client, saving a trip through the task
        queue (it falls back to a normal start when there is none).

        Raises:
            DuplicatePaymentError: this payment id was already submitted; nothing happened.
            TemporalUnavailableError: the server did not confirm the start within the service's
                ``call_window`` (it is gone, stopped or overloaded); the message says how to find
                out whether the payment started.
            NamespaceNotFoundError: the service's namespace is gone from its server (deleted under
                the lab); nothing started. See :meth:`through_namespace_changes`.
            SearchAttributesError: the kit's search attributes were removed from the namespace and
                could not be added back; nothing started.
            ValueError: ``execution_timeout`` or ``task_timeout`` is not a positive ``timedelta``,
                or the faults or options are of the wrong kind; nothing started.
        """
        checked_request(request)
        positive_duration("execution_timeout", execution_timeout, optional=True)
        positive_duration("task_timeout", task_timeout, optional=True)
        self.require_open(starting=request.payment_id)
        payment = PaymentInput(request, checked_payment_options(options, self.options), checked_fault_plan(faults))
        try:
            handle = await self.through_namespace_changes(
                lambda: self.client.start_workflow(
                    PaymentWorkflow.run,
                    payment,
                    id=request.workflow_id,
                    task_queue=self.task_queue,
                    execution_timeout=execution_timeout or self.execution_timeout,
                    task_timeout=task_timeout,
                    request_eager_start=eager_start,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    search_attributes=search_attributes.at_start(request),
                    rpc_timeout=self.call_window,
                )
            )
        except WorkflowAlreadyStartedError:
            raise DuplicatePaymentError(request.payment_id, await self.status(request.payment_id)) from None
        except RPCError as err:
            if not (is_unreachable(err) or deadline_expired(err)):
                raise
            outage = await silence_as_outage(self.client) if deadline_expired(err) else err
            raise self.unconfirmed_start(request.payment_id, outage or err) from err
        except asyncio.CancelledError as stopped:
            # The cell was interrupted while the start was on its way: in a notebook, one line in place of asyncio's frames.
            stopped._render_traceback_ = lambda: [  # type: ignore[attr-defined]
                f"\x1b[31mStopped waiting\x1b[0m for the start of payment {request.payment_id!r}: it may have started. "
                f"`await lab.service.status({request.payment_id!r})` tells; starting it again is safe (a payment that "
                "did start is refused as a duplicate, never run twice)."
            ]
            raise
        return PaymentHandle(self, handle, request.payment_id)

    async def through_namespace_changes(self, start: Callable[[], Awaitable[T]]) -> T:
        """``await start()``, a call that starts a payment's workflow, through a namespace changed under the lab: the
        kit's search attributes removed by hand are added back once (as connecting does) and the call made again, and a
        namespace deleted is :class:`NamespaceNotFoundError`. The kit's three ways of starting a payment go through it
        (:meth:`start`, :meth:`start_early`, :meth:`payments_lab.checkout.Checkout.start`).

        Off the script (a room), each gave a raw RPCError from ``lab.pay()`` and from every check, and opening the lab
        again returned the same lab. Anything else ``start()`` raises passes through as it is.

        Args:
            start: Makes one attempt. It is called again after the repair: what serves one call only (an
                Update-with-Start operation) must be made afresh inside it. The server refuses both cases before it
                starts anything, so the second attempt cannot start a payment twice.

        Raises:
            NamespaceNotFoundError: the namespace is gone from the server (RPC ``NOT_FOUND``); nothing started.
            SearchAttributesError: the search attributes were missing and could not be added back, or the server
                did not take them in time; nothing started.
        """
        repaired = False
        while True:
            try:
                return await start()
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND and "namespace" in err.message.lower():
                    raise NamespaceNotFoundError(
                        f"the namespace {self.client.namespace!r} is gone from the Temporal server at "
                        f"{self.client.service_client.config.target_host} ({err.message}): nothing started. In a room, ask "
                        "your facilitator (starting the room again creates it); elsewhere, check TEMPORAL_NAMESPACE."
                    ) from None
                if repaired or err.status is not RPCStatusCode.INVALID_ARGUMENT or "no mapping defined for search attribute" not in err.message:
                    raise
                await ensure_search_attributes(self.client)
                repaired = True

    def unconfirmed_start(self, payment_id: str, outage: RPCError) -> TemporalUnavailableError:
        """The error of a start the server did not confirm, because of ``outage``."""
        what = f"The start of payment {payment_id!r} was not confirmed (starting it again is safe: one that did start is refused as a duplicate). "
        if (gone := own_server_ended(self.client.service_client.config.target_host, what=what)) is not None:
            return gone  # it ended during the call
        return TemporalUnavailableError(
            f"The Temporal server at {self.client.service_client.config.target_host} did not confirm the "
            f"start of payment {payment_id!r} ({outage.message}). It may have started, or start once the "
            f"server answers: `await lab.service.status({payment_id!r})` tells. Starting it again "
            "is safe: a payment that did start is refused as a duplicate (DuplicatePaymentError), never "
            "run twice."
        )

    async def start_early(
        self,
        request: PaymentRequest,
        *,
        faults: FaultPlan | None = None,
        options: PaymentOptions | None = None,
        execution_timeout: timedelta | None = None,
        rpc_timeout: timedelta | None = None,
    ) -> EarlyStart:
        """Start the payment and return its first answer as soon as it is validated (early return).

        One Update-with-Start call starts the workflow and sends it the ``answer`` update,
        which returns once validation is done; the charge and the notification run on. The
        answer says "accepted", not "paid": the charge's outcome is ``await
        result.handle.result()``, and a charge that fails later is settled (refunded if
        money was taken) like any other.

        Args:
            request: The payment.
            faults: Faults to inject.
            options: Retry and timeout options; with ``local_validation`` (as in ``TUNED``)
                the answer comes back in the first workflow task.
            execution_timeout: How long the workflow may run in all.
            rpc_timeout: How long each call to the server may take: without a worker the
                update is never delivered, and the workflow has started all the same.

        Raises:
            DuplicatePaymentError: this payment id was already submitted; nothing happened.
            TemporalUnavailableError: the server is gone, or stopped and silent: it did not
                confirm the start (the message says how to find out whether the payment started).
            FirstAnswerNotInTimeError: the server answers, but the first answer did not come
                within ``rpc_timeout`` (with None, the wait goes on until it comes, and says after
                15 s what it waits for); the message says why (no worker polls the task queue, or
                validation is slow). The payment has started and runs on. Also a
                ``WorkflowUpdateRPCTimeoutOrCancelledError``, the SDK's error it stands for.
            FirstAnswerRefusedError: the workflow code the worker runs could not answer (a version
                loaded with ``lab.load_module`` without the ``answer`` update); the payment runs on.
            NamespaceNotFoundError: the service's namespace is gone from its server (deleted under
                the lab); nothing started. See :meth:`through_namespace_changes`.
            SearchAttributesError: the kit's search attributes were removed from the namespace and
                could not be added back; nothing started.
            ValueError: ``execution_timeout`` or ``rpc_timeout`` is not a positive ``timedelta``,
                or the faults or options are of the wrong kind; nothing started.
        """
        checked_request(request)
        positive_duration("execution_timeout", execution_timeout, optional=True)
        positive_duration("rpc_timeout", rpc_timeout, optional=True)
        self.require_open(starting=request.payment_id)
        payment = PaymentInput(request, checked_payment_options(options, self.options), checked_fault_plan(faults))

        def operation() -> WithStartWorkflowOperation[PaymentWorkflow, PaymentResult]:
            return WithStartWorkflowOperation(
                PaymentWorkflow.run,
                payment,
                id=request.workflow_id,
                task_queue=self.task_queue,
                execution_timeout=execution_timeout or self.execution_timeout,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=search_attributes.at_start(request),
            )

        try:
            # Workflow code that fails its task before it answers (a bug loaded with lab.load_module) would keep
            # the update waiting: say so as result() does, from the first attempt that fails.
            answer, handle = await unless_task_fails(
                self._update_with_start(operation, request.payment_id, rpc_timeout),
                self.client.get_workflow_handle(request.workflow_id),
                client=self.client,
                beside=[self._say_what_a_first_answer_waits_for(request.payment_id)],
            )
        except asyncio.CancelledError as stopped:
            # The cell was interrupted: in a notebook, one line in place of asyncio's frames.
            stopped._render_traceback_ = lambda: _stopped_waiting(  # type: ignore[attr-defined]
                request.payment_id, "its first answer", "may have started and"
            )
            raise
        return EarlyStart(answer, PaymentHandle(self, handle, request.payment_id))

    async def _say_what_a_first_answer_waits_for(self, payment_id: str, *, after: float = WAITING_SAID_AFTER) -> None:
        """Once the wait for a first answer has lasted ``after`` seconds, say once what it waits for: a cell would look hung."""
        await asyncio.sleep(after)
        outage = await silence_as_outage(self.client)
        try:
            nobody = outage is None and not await live_pollers(self.client, self.task_queue)
        except RPCError:
            nobody = False
        if outage is not None:
            what = (
                f"the Temporal server at {self.client.service_client.config.target_host} is silent ({outage.message}); "
                "this waits for it"
            )
        elif nobody:
            what = (
                f"no worker polls task queue {self.task_queue!r}{stopped_by_hand_words(self.task_queue)}: "
                "the payment cannot be validated until one does"
            )
        else:
            what = "its validation has not finished: it runs long or is retried (`lab.service.status` tells)"
        print(
            f"Payment {payment_id!r} has no first answer after {after:g} s: {what}. {stop_waiting_words().capitalize()} to stop waiting.",
            file=sys.stderr,
            flush=True,
        )

    async def _update_with_start(
        self,
        operation: Callable[[], WithStartWorkflowOperation[PaymentWorkflow, PaymentResult]],
        payment_id: str,
        rpc_timeout: timedelta | None,
    ) -> tuple[PaymentAnswer, WorkflowHandle[PaymentWorkflow, PaymentResult]]:
        """Start the payment and send it the ``answer`` update in one call; return the answer and the payment's
        workflow, or raise what :meth:`start_early` says.

        Args:
            operation: Makes the start half of the call: an operation serves one call, and a call the server
                refused for a namespace changed under the lab is made again with a new one.
        """
        made: list[WithStartWorkflowOperation[PaymentWorkflow, PaymentResult]] = []

        async def attempt() -> PaymentAnswer:
            if made:  # the attempt the namespace refused: read its failure, or asyncio reports it "never retrieved"
                await _read_failure(made[-1])
            made.append(operation())
            return await self.client.execute_update_with_start_workflow(
                PaymentWorkflow.answer, start_workflow_operation=made[-1], rpc_timeout=rpc_timeout
            )

        try:
            answer = await self.through_namespace_changes(attempt)
        except (NamespaceNotFoundError, SearchAttributesError):  # nothing started: its failure is read, then raised as said
            await _read_failure(made[-1])
            raise
        except WorkflowAlreadyStartedError:
            await _read_failure(made[-1])
            raise DuplicatePaymentError(payment_id, await self.status(payment_id)) from None
        except WorkflowUpdateFailedError as err:  # the workflow took the update in and failed it: it has started
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause)
            missing = "no `answer` update, the one early return sends" if "'answer' expected but not found" in cause else cause
            raise FirstAnswerRefusedError(
                f"Payment {payment_id!r} started and runs on, but its workflow code could not give a first answer: "
                f"{missing}. A version loaded with `lab.load_module` gets it by extending PaymentWorkflow (or by "
                "defining `@workflow.update async def answer(self)`); `lab.start(...)` starts it without early return. "
                f"Follow this payment with `await lab.service.handle({payment_id!r}).result()`."
            ) from None
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            started = await _read_failure(made[-1])
            if isinstance(err.__cause__, asyncio.CancelledError):  # Temporal's name for an interrupted wait
                raise err.__cause__ from None
            if isinstance(err, RPCError) and not is_unreachable(err):
                if started and err.status == RPCStatusCode.FAILED_PRECONDITION:  # "Workflow Task in failed state"
                    failing = await failing_task_error(self.client.get_workflow_handle(workflow_id_for(payment_id)))
                    if failing is not None:
                        raise failing from None
                raise
            outage = err if isinstance(err, RPCError) else await silence_as_outage(self.client)
            if outage is None:  # the server answers: the update did not come back in time
                raise await self._no_first_answer(payment_id, rpc_timeout) from None
            if started:
                raise TemporalUnavailableError(
                    f"Payment {payment_id!r} started, but the Temporal server at {self.client.service_client.config.target_host} "
                    f"stopped answering before its first answer came ({outage.message}). It runs on: "
                    f"`await lab.service.handle({payment_id!r}).result()` waits for its end once the server answers."
                ) from err
            raise self.unconfirmed_start(payment_id, outage) from err
        return answer, await made[-1].workflow_handle()

    async def _no_first_answer(self, payment_id: str, rpc_timeout: timedelta | None) -> FirstAnswerNotInTimeError:
        """The error of a first answer that did not come within ``rpc_timeout``, saying why: the payment has started."""
        try:
            nobody = not await live_pollers(self.client, self.task_queue)
        except RPCError:
            nobody = False
        why = (
            f"no worker polls task queue {self.task_queue!r}{stopped_by_hand_words(self.task_queue)}, so it cannot be "
            "validated until one does"
            if nobody
            else "its validation has not finished (it runs long, or is retried: `lab.service.status` tells)"
        )
        within = f" within {rpc_timeout.total_seconds():g} s" if rpc_timeout is not None else ""
        return FirstAnswerNotInTimeError(
            f"Payment {payment_id!r} started and runs on, but its first answer did not come{within}: {why}. "
            f"Follow it with `await lab.service.handle({payment_id!r}).result()`."
        )

    async def process(self, request: PaymentRequest, **start_options: object) -> PaymentResult:
        """Start the payment and wait for its result (the seed's ``processPayment``).

        Raises:
            DuplicatePaymentError: this payment id was already submitted; nothing happened.
        """
        handle = await self.start(request, **start_options)  # type: ignore[arg-type]
        return await handle.result()

    def handle(self, payment_id: str) -> PaymentHandle:
        """A handle on an existing payment.

        Raises:
            ValueError: ``payment_id`` is not an id any payment could have.
        """
        workflow: WorkflowHandle[PaymentWorkflow, PaymentResult] = self.client.get_workflow_handle_for(
            PaymentWorkflow.run, workflow_id_for(checked_payment_id(payment_id))
        )
        return PaymentHandle(self, workflow, payment_id)

    async def status(self, payment_id: str) -> PaymentStatusReport:
        """Describe one payment (the seed's ``getWorkflowStatus``).

        Raises:
            PaymentNotFoundError: no workflow runs this payment.
        """
        with not_found_as(payment_id):
            return await self.handle(payment_id).status()

    async def cancel(self, payment_id: str) -> None:
        """Cancel one payment (the seed's ``cancelWorkflow``).

        Raises:
            PaymentNotFoundError: no workflow runs this payment.
        """
        with not_found_as(payment_id):
            await self.handle(payment_id).cancel()

    def visibility_query(self, *, organization_id: str | None = None, status: PaymentStatus | str | None = None, extra: str | None = None) -> str:
        """The visibility query that selects this service's payments.

        Raises:
            TypeError: ``organization_id`` or ``extra`` is not a string.
            ValueError: ``status`` is not a payment status.
        """
        clauses = [PAYMENTS_QUERY]
        if self.scoped:
            queues = [self.task_queue, *sorted(self.taken_over - {self.task_queue})]
            clauses.append(
                f"TaskQueue = {quoted(queues[0])}" if len(queues) == 1 else f"TaskQueue IN ({', '.join(map(quoted, queues))})"
            )
        if self.scope is not None:
            clauses.append(f"({self.scope})")
        if organization_id is not None:
            if not isinstance(organization_id, str):
                raise InvalidArgumentError(f"organization_id must be a string such as 'org-acme', not {type(organization_id).__name__} {organization_id!r}")
            checked_text("organization_id", organization_id)
            clauses.append(f"{ORGANIZATION_ID.name} = {quoted(organization_id)}")
        if status is not None:
            clauses.append(f"{PAYMENT_STATUS.name} = {quoted(PaymentStatus(status).value)}")
        if extra is not None:
            checked_query(extra)
        if extra:
            clauses.append(f"({extra})")
        return " AND ".join(clauses)

    async def search(self, *, organization_id: str | None = None, status: PaymentStatus | str | None = None, query: str | None = None, limit: int | None = None) -> list[PaymentStatusReport]:
        """Payments matching the filters, newest first, through visibility.

        Args:
            organization_id: Only this organization's payments.
            status: Only payments in this status.
            query: Any extra visibility condition, e.g. ``"ExecutionStatus = 'Running'"``.
            limit: At most this many (None: all of them).

        Raises:
            VisibilityQueryError: the server refused the query (an unknown attribute, a value
                not quoted); the message shows the whole query and what it may say.
            ValueError: ``limit`` is not a whole number >= 0, or ``status`` is not a payment status.
        """
        if limit is not None:
            whole_number("limit", limit)
        selection = self.visibility_query(organization_id=organization_id, status=status, extra=query)

        async def listed(window: timedelta) -> list[PaymentStatusReport]:
            listing = self.client.list_workflows(selection, limit=limit, rpc_timeout=window)
            return [_report(execution, self.workflow_url) async for execution in listing]

        with refused_query_as_error(selection):
            reports = await self.answered(listed)
        return sorted(reports, key=lambda r: r.started_at, reverse=True)

    async def find_by_organization(self, organization_id: str) -> list[PaymentStatusReport]:
        """An organization's payments (the seed's ``findByOrganization``), newest first."""
        return await self.search(organization_id=organization_id)

    async def count(self, *, organization_id: str | None = None, status: PaymentStatus | str | None = None, query: str | None = None) -> int:
        """How many payments match (the seed's ``count``), counted by the server.

        Raises:
            VisibilityQueryError: the server refused the query; see :meth:`search`.
        """
        selection = self.visibility_query(organization_id=organization_id, status=status, extra=query)
        with refused_query_as_error(selection):
            result = await self.answered(lambda window: self.client.count_workflows(selection, rpc_timeout=window))
        return result.count

    async def metrics(self, *, organization_id: str | None = None) -> PaymentMetrics:
        """Running workflows, payments per status and mean execution time.

        A payment whose workflow was terminated or timed out never set a final status (its
        search attribute still says ``pending``): it counts under ``terminated`` or ``timed out``.
        """
        under_way = [PaymentStatus.PENDING, PaymentStatus.PROCESSING]
        running, *per_status = await asyncio.gather(
            self.count(organization_id=organization_id, query="ExecutionStatus = 'Running'"),
            *(
                self.count(organization_id=organization_id, status=s, query="ExecutionStatus = 'Running'" if s in under_way else None)
                for s in PaymentStatus
            ),
        )
        closed = await self.search(organization_id=organization_id, query="ExecutionStatus != 'Running'")
        durations = [r.execution_time.total_seconds() for r in closed if r.execution_time is not None]
        by_status = Counter({s.value: n for s, n in zip(PaymentStatus, per_status, strict=True) if n})
        by_status.update(sorted(r.workflow_status for r in closed if r.payment_status in under_way))
        return PaymentMetrics(
            running=running,
            by_status=dict(by_status),
            mean_execution_time=timedelta(seconds=statistics.fmean(durations)) if durations else None,
        )


async def raise_if_task_failing(err: RPCError, handle: WorkflowHandle[Any, Any]) -> None:
    """Raise the kit's :class:`WorkflowTaskFailingError` (the exception, file and line, the fix) for a query or update
    the server refused because the workflow's task fails (FAILED_PRECONDITION "Workflow Task in failed state")."""
    if err.status == RPCStatusCode.FAILED_PRECONDITION:
        failing = await failing_task_error(handle)
        if failing is not None:
            raise failing from None


@contextmanager
def not_found_as(payment_id: str) -> Iterator[None]:
    """Turn the server's NOT_FOUND for ``payment_id`` into :class:`PaymentNotFoundError`."""
    try:
        yield
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise PaymentNotFoundError(
                f"no payment {payment_id!r} (no workflow {workflow_id_for(payment_id)}) on this server and namespace: "
                "check the id (service.search() lists the payments it knows); a payment started on another "
                "server or namespace is not visible here, and a server started again without a db file has forgotten its payments"
            ) from None
        raise

