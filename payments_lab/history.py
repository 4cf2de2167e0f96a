"""Reading a payment's event history: what Temporal recorded about each step."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory


def attempts_per_activity(history: WorkflowHistory) -> dict[str, int]:
    """The attempt that ended each activity, by activity type, from the history.

    The history holds one started event per activity, written when its last attempt ends,
    carrying that attempt's number: a charge that failed twice then succeeded reads 3.
    An activity scheduled but never started reads 0.
    """
    scheduled: dict[int, str] = {}
    attempts: dict[str, int] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            attempts.setdefault(name, 0)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            name = scheduled[attributes.scheduled_event_id]
            attempts[name] = max(attempts[name], attributes.attempt)
    return attempts
