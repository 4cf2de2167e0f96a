"""Tests of payments_lab.cancellation: where a payment was when its cancellation request arrived."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from conftest import new_id
from payments_lab.activities import PaymentActivities
from payments_lab.cancellation import SLOWER_PAYMENT, cancel_timing
from payments_lab.repository import AttemptRecord, PaymentRepository

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(event_id: int, event_type: int, at: float) -> HistoryEvent:
    event = HistoryEvent(event_id=event_id, event_type=event_type)
    event.event_time.FromDatetime(T0 + timedelta(seconds=at))
    return event


def _history(*events: tuple[int, float]) -> WorkflowHistory:
    return WorkflowHistory("payment-p", [_event(i + 1, kind, at) for i, (kind, at) in enumerate(events)])


def _attempt(activity: str, start: float, end: float | None, outcome: str) -> AttemptRecord:
    ended = T0 + timedelta(seconds=end) if end is not None else None
    return AttemptRecord("p", activity, 1, "payment-p", "run", "w", T0 + timedelta(seconds=start), ended, outcome)


ATTEMPTS = [
    _attempt("validate_payment", 0.1, 0.4, "completed"),
    _attempt("charge_payment", 0.5, 2.0, "cancelled"),
    _attempt("settle_unfinished_payment", 2.1, 2.2, "completed"),
]
STARTED = (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 0.0)


def test_a_request_during_the_charge_names_the_charge_attempt() -> None:
    history = _history(
        STARTED,
        (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, 1.0),
        (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED, 2.3),
    )
    timing = cancel_timing("p", history, ATTEMPTS)
    assert timing.during_charge and timing.step == "charge" and timing.workflow_end == "cancelled"
    assert str(timing) == "The cancellation request arrived while charge attempt 1 was running; that attempt then ended cancelled."


def test_the_settle_attempt_is_not_a_step_that_was_interrupted() -> None:
    history = _history(STARTED, (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, 2.15))
    timing = cancel_timing("p", history, ATTEMPTS)
    assert timing.running is None and not timing.during_charge
    assert "between two steps" in str(timing)


def test_a_payment_that_ended_first_says_so_and_how_to_start_a_slower_one() -> None:
    history = _history(STARTED, (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, 2.0))
    timing = cancel_timing("p", history, [_attempt("charge_payment", 0.5, 1.9, "completed")])
    assert timing.requested_at is None and timing.workflow_end == "completed" and not timing.during_charge
    assert "already ended (completed)" in str(timing) and SLOWER_PAYMENT in str(timing)
    assert "still running" in str(cancel_timing("p", _history(STARTED), []))


def _activity_event(event_id: int, event_type: int, at: float, activity: str = "", scheduled_id: int = 0) -> HistoryEvent:
    event = _event(event_id, event_type, at)
    if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        event.activity_task_scheduled_event_attributes.activity_type.name = activity
    else:
        event.activity_task_completed_event_attributes.scheduled_event_id = scheduled_id
    return event


def _payment_history(cancel_at: float) -> WorkflowHistory:
    """Validate and charge completed; send_notification scheduled at 2.0 s; a cancel request at ``cancel_at``."""
    scheduled, completed = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    events = [
        _event(1, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 0.0),
        _activity_event(2, scheduled, 0.05, "validate_payment"),
        _activity_event(3, completed, 0.4, scheduled_id=2),
        _activity_event(4, scheduled, 0.45, "charge_payment"),
        _activity_event(5, completed, 1.95, scheduled_id=4),
        _activity_event(6, scheduled, 2.0, "send_notification"),
        _event(7, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, cancel_at),
    ]
    return WorkflowHistory("payment-p", events)


def test_a_request_before_the_scheduled_notification_started_is_in_the_notify_step() -> None:
    # The workflow says "notify" as soon as it has scheduled the notification; its first attempt starts
    # a few ms later on a worker, and on a loaded machine a cancel lands in between.
    attempts = [
        _attempt("validate_payment", 0.1, 0.4, "completed"),
        _attempt("charge_payment", 0.5, 1.9, "completed"),
        _attempt("send_notification", 2.05, 2.6, "cancelled"),
    ]
    timing = cancel_timing("p", _payment_history(cancel_at=2.02), attempts)
    assert timing.running is None and timing.scheduled == "send_notification" and timing.step == "notify"
    assert not timing.during_charge
    assert "in the notify step, while no attempt of it was running" in str(timing)
    running = cancel_timing("p", _payment_history(cancel_at=2.1), attempts)
    assert running.running == attempts[2] and running.step == "notify"


def test_a_completed_activity_is_no_longer_the_step_a_request_interrupts() -> None:
    history = _payment_history(cancel_at=2.02)
    del history.events[5:6]  # no notification scheduled yet: charge completed, nothing else pending
    timing = cancel_timing("p", history, [_attempt("charge_payment", 0.5, 1.9, "completed")])
    assert timing.scheduled is None and timing.step is None and "between two steps" in str(timing)


# The three cancellation types, on the real dev server.


async def test_the_cancellation_type_decides_whether_the_workflow_waits_for_the_charge_attempt(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    from temporalio.workflow import ActivityCancellationType

    from payments_lab.cancellation import cancel_during_charge
    from payments_lab.domain import PaymentRequest
    from payments_lab.service import PaymentService
    from payments_lab.worker import BackgroundWorker

    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        runs = {
            kind: await cancel_during_charge(
                service, repository, PaymentRequest(new_id("cancel"), "org-acme", "u", "10.00", "EUR"), kind, answer_after=2.0
            )
            for kind in ActivityCancellationType
        }
    wait = runs[ActivityCancellationType.WAIT_CANCELLATION_COMPLETED]
    assert wait.events.index("ActivityTaskCanceled") < wait.events.index("ActivityTaskScheduled (settle)")
    assert not wait.settled_while_charging
    try_cancel = runs[ActivityCancellationType.TRY_CANCEL]
    assert "ActivityTaskCancelRequested" in try_cancel.events and "ActivityTaskCanceled" not in try_cancel.events
    assert try_cancel.settled_while_charging
    abandon = runs[ActivityCancellationType.ABANDON]
    assert "ActivityTaskCancelRequested" not in abandon.events and abandon.settled_while_charging
    assert {run.status for run in runs.values()} == {"refunded"}
    # Each run names its payment, so that a lesson can show its Web UI link.
    assert all([e.kind for e in repository.ledger(run.payment_id)] == ["charge", "refund"] for run in runs.values())


async def test_an_interrupted_cancellation_run_says_in_one_line_what_became_of_its_payment(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    """Off the script: ■ on lesson 05's cancellation-types cell showed a bare, empty CancelledError and asyncio's frames."""
    import asyncio

    from temporalio.workflow import ActivityCancellationType

    from payments_lab.cancellation import cancel_during_charge
    from payments_lab.domain import PaymentRequest
    from payments_lab.service import PaymentService
    from payments_lab.worker import BackgroundWorker

    service = PaymentService(client, task_queue)
    request = PaymentRequest(new_id("cancel"), "org-acme", "u", "10.00", "EUR")
    async with BackgroundWorker(client, task_queue, activities):
        run = asyncio.ensure_future(cancel_during_charge(service, repository, request, ActivityCancellationType.TRY_CANCEL, answer_after=2.0))
        while not repository.ledger(request.payment_id):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the cancellation is on its way, or sent
        run.cancel()
        with pytest.raises(asyncio.CancelledError) as stopped:
            await run
        (line,) = stopped.value._render_traceback_()  # type: ignore[attr-defined]
        assert f"Stopped\x1b[0m the cancellation of payment {request.payment_id!r} (TRY_CANCEL)" in line
        assert "its cancellation was sent: it settles by itself" in line
        assert (await service.handle(request.payment_id).result()).status.value == "refunded"
