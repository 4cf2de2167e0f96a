"""Temporal's own tables of a history: its events, its activity executions, its workflow tasks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import pandas as pd
from temporalio.client import WorkflowHistory
from temporalio.common import RetryPolicy

from payments_lab.domain import STEPS
from payments_lab.history.decoding import (
    ACTIVITY_CLOSED,
    ACTIVITY_TASK_SCHEDULED,
    ACTIVITY_TASK_STARTED,
    WORKFLOW_TASK_CLOSED,
    WORKFLOW_TASK_SCHEDULED,
    WORKFLOW_TASK_STARTED,
    Event,
    as_histories,
    event_ns,
    events_of,
    failure_text,
    retry_state_words,
    run_id_of,
)
from payments_lab.history.frames import difference, frame

ACTIVITY_OUTCOMES = ("completed", "failed", "timed out", "cancelled", "scheduled")
"""How an activity execution ended; ``scheduled`` means not yet (running or waiting to retry)."""

EVENT_COLUMNS = Event._fields[: Event._fields.index("identity") + 1]
"""Columns of :func:`events_frame`."""


def events_frame(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per event of one or many histories.

    Columns: ``workflow_id``, ``run_id``, ``event_id``, ``event_type`` (readable, e.g.
    ``ActivityTaskScheduled``), ``time`` (UTC), ``since_start`` (since the workflow
    started), ``activity_type`` and ``activity_id`` (on every event of an activity, and on
    the ``MarkerRecorded`` event that records a local activity),
    ``scheduled_event_id`` (the event that scheduled this activity or workflow task),
    ``attempt`` (where the event records one), ``failure`` (on an ``ActivityTaskStarted``
    event: the failure of the attempt before, its ``last_failure``), ``identity`` (the
    worker or client that caused the event).

    Events are listed in history order, which is not always time order: an activity's
    started event is written when its last attempt ends, with the time that attempt began.
    """
    rows = [event for history in as_histories(histories) for event in events_of(history)]
    return frame(
        rows,
        EVENT_COLUMNS,
        {"event_id": "int", "time": "time", "since_start": "duration", "scheduled_event_id": "Int64", "attempt": "Int64"},
    )


class ActivitySpan(NamedTuple):
    """One activity execution (one scheduling, however many attempts): a row of :func:`activity_spans`."""

    workflow_id: str
    """The workflow's id."""
    run_id: str
    """The run's id."""
    activity_id: str
    """The activity's id within the run."""
    activity_type: str
    """Its name, e.g. ``charge_payment``."""
    step: str
    """The payment step it runs (``validate``, ``charge``, ``notify``, ``settle``), else its name."""
    scheduled_event_id: int
    """The event that scheduled it."""
    workflow_started_at: int
    """When the workflow started (ns)."""
    scheduled_at: int
    """When it was scheduled (ns)."""
    started_at: int | None = None
    """When its *last* attempt started (ns); None until that attempt ends."""
    closed_at: int | None = None
    """When it ended (ns)."""
    schedule_to_start: int | None = None
    """From scheduling to the last attempt's start: with retries, every earlier attempt and wait."""
    run_time: int | None = None
    """How long the last attempt ran."""
    schedule_to_close: int | None = None
    """From scheduling to its end."""
    attempt: int = 0
    """The final attempt; 0 if none started."""
    outcome: str = "scheduled"
    """One of :data:`ACTIVITY_OUTCOMES`."""
    last_failure: str | None = None
    """The closing failure, or else the failure of the attempt before the last."""
    retry_state: str | None = None
    """Why a failed activity stopped, e.g. ``maximum attempts reached``."""
    identity: str | None = None
    """The worker of the last attempt."""
    retry_policy: RetryPolicy | None = None
    """Its retry policy."""


def spans_of(history: WorkflowHistory) -> list[ActivitySpan]:
    """The activity executions of one history, in the order they were scheduled."""
    events = history.events
    if not events:
        return []
    workflow_id, run_id, start = history.workflow_id, run_id_of(history), event_ns(events[0])
    spans: dict[int, ActivitySpan] = {}
    for event in events:
        event_type = event.event_type
        if event_type == ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            name = scheduled.activity_type.name
            spans[event.event_id] = ActivitySpan(
                workflow_id,
                run_id,
                scheduled.activity_id,
                name,
                STEPS.get(name, name),
                event.event_id,
                start,
                event_ns(event),
                retry_policy=RetryPolicy.from_proto(scheduled.retry_policy) if scheduled.HasField("retry_policy") else None,
            )
        elif event_type == ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            span = spans[started.scheduled_event_id]
            ns = event_ns(event)
            spans[started.scheduled_event_id] = span._replace(
                started_at=ns,
                schedule_to_start=ns - span.scheduled_at,
                attempt=started.attempt,
                identity=started.identity or None,
                last_failure=failure_text(started.last_failure) if started.HasField("last_failure") else None,
            )
        elif event_type in ACTIVITY_CLOSED:
            outcome, failure_attributes = ACTIVITY_CLOSED[event_type]
            closing = getattr(event, event.WhichOneof("attributes") or "")
            span = spans[closing.scheduled_event_id]
            ns = event_ns(event)
            failure, retry_state = None, None
            if failure_attributes is not None:
                failed = getattr(event, failure_attributes)
                failure = failure_text(failed.failure) if failed.HasField("failure") else None
                retry_state = retry_state_words(failed.retry_state) if failed.retry_state else None
            spans[closing.scheduled_event_id] = span._replace(
                closed_at=ns,
                run_time=difference(ns, span.started_at),
                schedule_to_close=ns - span.scheduled_at,
                outcome=outcome,
                last_failure=failure or span.last_failure,
                retry_state=retry_state,
            )
    return list(spans.values())


def activity_spans(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per activity execution (one scheduling, however many attempts).

    Columns: ``workflow_id``, ``run_id``, ``activity_id``, ``activity_type``, ``step``
    (``validate``, ``charge``, ``notify`` or ``settle``), ``scheduled_event_id``,
    ``workflow_started_at``, ``scheduled_at``, ``started_at`` (when the *last* attempt
    started), ``closed_at``, ``schedule_to_start`` (with retries, it covers every earlier
    attempt and wait), ``run_time`` (of the last attempt), ``schedule_to_close``,
    ``attempt`` (the final attempt, 0 if none started), ``outcome`` (one of
    :data:`ACTIVITY_OUTCOMES`), ``last_failure`` (the closing failure, or else the failure
    of the attempt before the last), ``retry_state`` (why a failed activity stopped,
    e.g. ``maximum attempts reached``), ``identity`` (the worker of the last attempt) and
    ``retry_policy`` (a :class:`temporalio.common.RetryPolicy`).

    Local activities are not here: the history records each with ``MarkerRecorded``
    events (its type and attempt, no start time), which :func:`events_frame` reads.
    """
    rows = [span for history in as_histories(histories) for span in spans_of(history)]
    return frame(
        rows,
        ActivitySpan._fields,
        {
            "scheduled_event_id": "int",
            "workflow_started_at": "time",
            "scheduled_at": "time",
            "started_at": "time",
            "closed_at": "time",
            "schedule_to_start": "duration",
            "run_time": "duration",
            "schedule_to_close": "duration",
            "attempt": "int",
            "retry_policy": "object",
        },
    )


class WorkflowTaskSpan(NamedTuple):
    """One workflow task, when the workflow code ran on a worker: a row of :func:`workflow_task_spans`."""

    workflow_id: str
    """The workflow's id."""
    run_id: str
    """The run's id."""
    scheduled_event_id: int
    """The event that scheduled the task."""
    workflow_started_at: int
    """When the workflow started (ns)."""
    scheduled_at: int
    """When the task was scheduled (ns)."""
    started_at: int | None
    """When a worker picked it up (ns)."""
    closed_at: int | None
    """When it ended (ns)."""
    attempt: int
    """The task's attempt: above 1 when the ones before failed or timed out."""
    outcome: str
    """``completed``, ``failed``, ``timed out``, or ``scheduled`` while pending."""
    identity: str | None
    """The worker."""


def workflow_task_spans(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per workflow task: when the workflow code ran on a worker to decide what next.

    Columns: ``workflow_id``, ``run_id``, ``scheduled_event_id``, ``workflow_started_at``,
    ``scheduled_at``, ``started_at``, ``closed_at``, ``attempt``, ``outcome``
    (``completed``, ``failed``, ``timed out``, or ``scheduled`` while pending) and
    ``identity`` (the worker).
    """
    rows: list[WorkflowTaskSpan] = []
    for history in as_histories(histories):
        events = history.events
        if not events:
            continue
        workflow_id, run_id, start = history.workflow_id, run_id_of(history), event_ns(events[0])
        tasks: dict[int, WorkflowTaskSpan] = {}
        for event in events:
            event_type = event.event_type
            if event_type == WORKFLOW_TASK_SCHEDULED:
                tasks[event.event_id] = WorkflowTaskSpan(
                    workflow_id,
                    run_id,
                    event.event_id,
                    start,
                    event_ns(event),
                    started_at=None,
                    closed_at=None,
                    attempt=event.workflow_task_scheduled_event_attributes.attempt,
                    outcome="scheduled",
                    identity=None,
                )
            elif event_type == WORKFLOW_TASK_STARTED:
                started = event.workflow_task_started_event_attributes
                task = tasks[started.scheduled_event_id]
                tasks[started.scheduled_event_id] = task._replace(started_at=event_ns(event), identity=started.identity or None)
            elif event_type in WORKFLOW_TASK_CLOSED:
                closing = getattr(event, event.WhichOneof("attributes") or "")
                task = tasks[closing.scheduled_event_id]
                tasks[closing.scheduled_event_id] = task._replace(closed_at=event_ns(event), outcome=WORKFLOW_TASK_CLOSED[event_type])
        rows += tasks.values()
    return frame(
        rows,
        WorkflowTaskSpan._fields,
        {
            "scheduled_event_id": "int",
            "workflow_started_at": "time",
            "scheduled_at": "time",
            "started_at": "time",
            "closed_at": "time",
            "attempt": "int",
        },
    )
