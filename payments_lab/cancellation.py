"""When a cancellation reached a payment: which step was running, from the history and the kit's attempt log.

Temporal's history says when the cancellation request arrived (its
``WorkflowExecutionCancelRequested`` event) and which activity was scheduled and not yet
finished at that point; the kit's attempt log says which attempt of it was running. Lesson 05
and its exercises read both, so that a cancel sent too early, too late or while the wrong step
ran is named for what it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowHistory
from temporalio.workflow import ActivityCancellationType

from payments_lab.domain import STEPS, ActivityType, PaymentRequest
from payments_lab.errors import WaitTimedOutError
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history.decoding import ACTIVITY_CLOSED, EVENT_TYPE_NAMES, WORKFLOW_CLOSED, events_of
from payments_lab.messages import PaymentOptions
from payments_lab.repository import AttemptRecord, PaymentRepository
from payments_lab.service import PaymentHandle, PaymentService

SLOWER_PAYMENT = (
    "start a slower one: `FaultPlan(charge=StepFaults(delay=600))` with "
    "`PaymentOptions(charge_timeout=timedelta(minutes=15))`"
)
"""How to start a payment whose charge is still running ten minutes later."""

@dataclass(frozen=True)
class CancelTiming:
    """Where a payment was when its cancellation request arrived."""

    payment_id: str
    """The payment."""
    requested_at: datetime | None
    """When the server recorded ``WorkflowExecutionCancelRequested``; None if no request reached the workflow."""
    running: AttemptRecord | None
    """The validate, charge or notify attempt that was running at that moment, if any."""
    workflow_end: str | None
    """How the workflow ended (``completed``, ``cancelled``…), or None while it runs."""
    scheduled: str | None = None
    """The validate, charge or notify activity the history shows scheduled and unfinished when the request
    arrived, even if none of its attempts was running (not started yet, or waiting between two attempts)."""

    @property
    def step(self) -> str | None:
        """``validate``, ``charge`` or ``notify``: the step the payment was in when the request arrived."""
        activity = self.running.activity if self.running else self.scheduled
        return STEPS.get(activity) if activity else None

    @property
    def during_charge(self) -> bool:
        """Whether the request arrived while a charge attempt was running."""
        return self.step == "charge"

    def __str__(self) -> str:
        if self.requested_at is None:
            if self.workflow_end is None:
                return "No cancellation request has reached this payment yet: it is still running."
            return (
                f"No cancellation reached this payment: it had already ended ({self.workflow_end}) "
                f"before any cancel arrived. To see a cancellation mid-charge, {SLOWER_PAYMENT}."
            )
        if self.running is None and self.scheduled is None:
            return "The cancellation request arrived between two steps: no validate, charge or notify attempt was running."
        if self.running is None:
            return (
                f"The cancellation request arrived in the {self.step} step, while no attempt of it was running: "
                f"Temporal had scheduled `{self.scheduled}` and it had not started yet, or was waiting to be retried."
            )
        outcome = self.running.outcome if self.running.ended_at else "still running"
        return (
            f"The cancellation request arrived while {self.step} attempt {self.running.attempt} was running; "
            f"that attempt then ended {outcome}."
        )


_INTERRUPTIBLE = ("validate", "charge", "notify")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ACTIVITY_ENDS = frozenset(EVENT_TYPE_NAMES[event_type] for event_type in ACTIVITY_CLOSED)

WORKFLOW_CLOSED_WORDS = {EVENT_TYPE_NAMES[event_type]: word for event_type, word in WORKFLOW_CLOSED.items()}
"""How a workflow ended, by the readable name of its closing event."""


def cancel_timing(payment_id: str, history: WorkflowHistory, attempts: Sequence[AttemptRecord]) -> CancelTiming:
    """Where the payment was when the cancellation request recorded in ``history`` arrived."""
    requested_at = workflow_end = scheduled = None
    unfinished: dict[int, str] = {}  # scheduled event id → activity type, until the activity's end is recorded
    for event in events_of(history):
        if event.event_type == "WorkflowExecutionCancelRequested" and requested_at is None:
            requested_at = _EPOCH + timedelta(microseconds=event.time // 1000)  # as the event's own timestamp reads
            scheduled = next((a for a in reversed(unfinished.values()) if STEPS.get(a) in _INTERRUPTIBLE), None)
        elif requested_at is None and event.event_type == "ActivityTaskScheduled" and event.activity_type:
            unfinished[event.event_id] = event.activity_type
        elif requested_at is None and event.event_type in _ACTIVITY_ENDS and event.scheduled_event_id is not None:
            unfinished.pop(event.scheduled_event_id, None)
        workflow_end = WORKFLOW_CLOSED_WORDS.get(event.event_type, workflow_end)
    running = None
    if requested_at is not None:
        running = next(
            (
                a
                for a in attempts
                if STEPS.get(a.activity) in _INTERRUPTIBLE
                and a.started_at <= requested_at
                and (a.ended_at is None or a.ended_at >= requested_at)
            ),
            None,
        )
    return CancelTiming(payment_id, requested_at, running, workflow_end, scheduled)


async def explain_cancel(handle: PaymentHandle, repository: PaymentRepository) -> CancelTiming:
    """Where this payment was when its cancellation request arrived, read from its history and attempt log."""
    history = await handle.workflow.fetch_history()
    return cancel_timing(handle.payment_id, history, repository.attempts(handle.payment_id))


@dataclass(frozen=True)
class CancellationRun:
    """One payment cancelled in the middle of its charge under one ``ActivityCancellationType``."""

    payment_id: str
    """The payment (``lab.link(payment_id)`` shows its Web UI link)."""
    cancellation_type: str
    """``TRY_CANCEL``, ``WAIT_CANCELLATION_COMPLETED`` or ``ABANDON``."""
    events: tuple[str, ...]
    """The history's events about the cancellation and the settle step, in order."""
    settled_while_charging: bool
    """Whether the settle activity started before the cancelled charge attempt had stopped."""
    status: str
    """How the payment ended."""


_CANCEL_EVENTS = frozenset(
    {"WorkflowExecutionCancelRequested", "ActivityTaskCancelRequested", "ActivityTaskCanceled", "WorkflowExecutionCanceled"}
)


async def cancel_during_charge(
    service: PaymentService,
    repository: PaymentRepository,
    request: PaymentRequest,
    cancellation: ActivityCancellationType,
    *,
    answer_after: float = 3.0,
) -> CancellationRun:
    """Start ``request`` with a charge that answers ``answer_after`` s after taking the money,
    cancel it once the money is gone, and say what the workflow and the charge attempt did.

    Returns once the charge attempt itself has stopped, so that nothing is left running.
    """
    handle = await service.start(
        request,
        faults=FaultPlan(charge=StepFaults(delay=answer_after)),
        options=PaymentOptions(charge_cancellation=cancellation),
    )
    limit = answer_after + 30
    cancel_sent = False
    try:
        async with asyncio.timeout(limit):
            while not repository.ledger(request.payment_id):
                await asyncio.sleep(0.02)
            await handle.cancel()
            cancel_sent = True
            result = await handle.result()
            while any(a.ended_at is None for a in repository.attempts(request.payment_id)):
                await asyncio.sleep(0.05)
    except asyncio.CancelledError as stopped:
        # The cell was interrupted: in a notebook, one line on the payment in place of asyncio's frames.
        ending = (
            "its cancellation was sent: it settles by itself (refunded if charged)"
            if cancel_sent
            else f"it was not cancelled and runs on: `await lab.service.cancel({request.payment_id!r})` cancels it"
        )
        stopped._render_traceback_ = lambda: [  # type: ignore[attr-defined]
            f"\x1b[31mStopped\x1b[0m the cancellation of payment {request.payment_id!r} ({cancellation.name}): {ending}. "
            "Run the cell again to see the whole run (a new payment)."
        ]
        raise
    except TimeoutError:
        raise WaitTimedOutError(
            f"payment {request.payment_id!r} was not charged, cancelled and stopped within {limit:g} s: is a worker "
            f"polling {service.task_queue!r}? `await lab.service.status({request.payment_id!r})` says where it is"
        ) from None
    history = await handle.history()
    events = []
    for event in events_of(history):
        if event.event_type in _CANCEL_EVENTS:
            events.append(event.event_type)
        elif event.event_type == "ActivityTaskScheduled" and event.activity_type == ActivityType.SETTLE:
            events.append("ActivityTaskScheduled (settle)")
    attempts = repository.attempts(request.payment_id)
    charge = [a for a in attempts if a.activity == ActivityType.CHARGE][-1]
    settle = [a for a in attempts if a.activity == ActivityType.SETTLE]
    return CancellationRun(
        payment_id=request.payment_id,
        cancellation_type=cancellation.name,
        events=tuple(events),
        settled_while_charging=bool(settle) and charge.ended_at is not None and settle[0].started_at < charge.ended_at,
        status=result.status.value,
    )
