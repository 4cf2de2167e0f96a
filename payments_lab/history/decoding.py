"""The one reading of Temporal's protobuf history events: names, failures, retry states, activities, attempts.

Every table of the package, the exercise checks and the charts read a history through these
functions, so an event, a failure or a retry state is worded the same way everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from payments_lab.errors import InvalidArgumentError
from payments_lab.wording import retry_state_words

# Event types as plain numbers: ``EventType.EVENT_TYPE_…`` looks its name up at every access
# (protobuf's enum wrapper), a cost paid once per event and per comparison in every table.
ACTIVITY_TASK_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
ACTIVITY_TASK_STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
WORKFLOW_TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
WORKFLOW_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
MARKER_RECORDED = EventType.EVENT_TYPE_MARKER_RECORDED
UPSERT_WORKFLOW_SEARCH_ATTRIBUTES = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES

EVENT_TYPE_NAMES: dict[int, str] = {
    value: "".join(word.capitalize() for word in name.removeprefix("EVENT_TYPE_").lower().split("_"))
    for name, value in EventType.items()
}
"""Readable name of every event type: ``EVENT_TYPE_ACTIVITY_TASK_SCHEDULED`` → ``ActivityTaskScheduled``."""

WORKFLOW_CLOSED: dict[int, str] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued as new",
}
"""Workflow status after each closing event; the words :mod:`payments_lab.service` uses."""

ACTIVITY_CLOSED: dict[int, tuple[str, str | None]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("completed", None),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("timed out", "activity_task_timed_out_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("cancelled", None),
}
"""Outcome of an activity after each closing event, and the attributes holding its failure."""

WORKFLOW_TASK_CLOSED: dict[int, str] = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "timed out",
}
"""Outcome of a workflow task after each closing event."""

LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""Name of the marker that records a local activity in the history."""

_NS_PER_S = 1_000_000_000
_ACTIVITY_SCHEDULED_KIND = "activity_task_scheduled_event_attributes"
_MARKER_KIND = "marker_recorded_event_attributes"


@dataclass(frozen=True)
class _AttributeFields:
    """Which common fields one kind of event attributes has, looked up once per kind."""

    identity: bool
    """It names the worker or client that caused the event."""
    attempt: bool
    """It records an attempt number."""
    failure: str | None
    """The field holding a failure (``failure``, or a started activity's ``last_failure``), if any."""
    retry_state: bool
    """It says why retries stopped."""
    scheduled_event_id: bool
    """It points back to the event that scheduled its activity or workflow task."""


def _attribute_fields() -> dict[str, _AttributeFields]:
    found = {}
    for field in HistoryEvent.DESCRIPTOR.oneofs_by_name["attributes"].fields:
        if field.message_type is None:
            continue  # every attributes field is a message; nothing to learn from one that is not
        names = field.message_type.fields_by_name
        failure = "failure" if "failure" in names else "last_failure" if "last_failure" in names else None
        found[field.name] = _AttributeFields(
            identity="identity" in names,
            attempt="attempt" in names,
            failure=failure,
            retry_state="retry_state" in names,
            scheduled_event_id="scheduled_event_id" in names,
        )
    return found


_FIELDS = _attribute_fields()


def event_type_name(event_type: int) -> str:
    """The readable name of an event type: ``EVENT_TYPE_ACTIVITY_TASK_SCHEDULED`` → ``ActivityTaskScheduled``.

    Raises:
        ValueError: ``event_type`` is no known event type.
    """
    try:
        return EVENT_TYPE_NAMES[event_type]
    except KeyError:
        raise InvalidArgumentError(f"unknown event type {event_type!r}") from None


def failure_text(failure: Failure) -> str:
    """One line for a failure and its causes: ``Activity task failed: SimulatedOutage: simulated …``.

    An application failure is prefixed with its type, as the kit's attempt log writes it;
    a failure with no message adds nothing.
    """
    parts = []
    current: Failure | None = failure
    while current is not None:
        error_type = current.application_failure_info.type if current.HasField("application_failure_info") else ""
        message = current.message
        part = f"{error_type}: {message}" if error_type and message else error_type or message
        if part:
            parts.append(part)
        current = current.cause if current.HasField("cause") else None
    return ": ".join(parts)


def as_histories(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> list[WorkflowHistory]:
    """One history or many, as a list.

    Raises:
        TypeError: an item is not a :class:`temporalio.client.WorkflowHistory` (a workflow id,
            say: fetch its history first).
    """
    if isinstance(histories, WorkflowHistory):
        return [histories]
    if isinstance(histories, (str, bytes)) or not isinstance(histories, Iterable):
        raise InvalidArgumentError(
            f"expected a WorkflowHistory or a list of them, got {type(histories).__name__}: fetch a payment's "
            "history first, `await fetch_history(lab.client, 'payment-<payment id>')`"
        )
    found = list(histories)
    for history in found:
        if not isinstance(history, WorkflowHistory):
            raise InvalidArgumentError(
                f"expected WorkflowHistory objects, got {type(history).__name__}: fetch the histories first, "
                "`await fetch_histories(lab.client, [workflow ids])`"
            )
    return found


def event_ns(event: HistoryEvent) -> int:
    """When the event was written, in nanoseconds since the epoch (exact, unlike a float)."""
    stamp = event.event_time
    return stamp.seconds * _NS_PER_S + stamp.nanos


def run_id_of(history: WorkflowHistory) -> str:
    """The run id of a non-empty history, from its first event."""
    # A reset run keeps its original run id here; the kit never resets payments.
    return history.events[0].workflow_execution_started_event_attributes.original_execution_run_id


@dataclass(frozen=True)
class LocalActivity:
    """What a ``MarkerRecorded`` event says about the local activity it records."""

    activity_type: str
    """The activity's name, e.g. ``validate_payment``."""
    activity_id: str
    """Its id within the workflow run."""
    attempt: int
    """The attempt that ended it."""


def local_activity(event: HistoryEvent) -> LocalActivity | None:
    """The local activity a ``MarkerRecorded`` event records, or None if it records none.

    A local activity runs inside a workflow task, with no task queue: the history keeps
    one marker per local activity, carrying its type, id and final attempt, or one per
    attempt when it waits for its retries on a workflow timer (the payment's validation).
    """
    attributes = event.marker_recorded_event_attributes
    if attributes.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in attributes.details:
        return None
    payloads = attributes.details["data"].payloads
    try:
        data = json.loads(payloads[0].data) if payloads else None
    except ValueError:
        return None
    if not isinstance(data, dict) or "activity_type" not in data:
        return None
    return LocalActivity(str(data["activity_type"]), str(data.get("activity_id", "")), int(data.get("attempt") or 0))


class Event(NamedTuple):
    """One history event, decoded: a row of :func:`~payments_lab.history.events_frame`, and what a check reads.

    A named tuple rather than a frozen dataclass: one is built per event, about eight times
    faster, and a list of them turns into table columns with one ``zip``.
    """

    workflow_id: str
    """The workflow's id."""
    run_id: str
    """The run's id."""
    event_id: int
    """Position in the history, from 1."""
    event_type: str
    """Readable type, e.g. ``ActivityTaskStarted`` (``Unspecified`` for a type this SDK does not know)."""
    time: int
    """When the event was written, in nanoseconds since the epoch."""
    since_start: int
    """Nanoseconds since the workflow started."""
    activity_type: str | None
    """The activity the event is about: on every event of an activity, and on the
    ``MarkerRecorded`` event that records a local activity."""
    activity_id: str | None
    """That activity's id."""
    scheduled_event_id: int | None
    """The event that scheduled this activity or workflow task."""
    attempt: int | None
    """The attempt the event records, where it records one (an ``ActivityTaskStarted``: the
    attempt that ended the activity; a local activity's marker: likewise)."""
    failure: str | None
    """The failure the event carries, with its causes (see :func:`failure_text`); on an
    ``ActivityTaskStarted`` event, the failure of the attempt before (its ``last_failure``)."""
    identity: str | None
    """The worker or client that caused the event."""
    failure_message: str | None
    """The failure's own message, without its type or causes."""
    retry_state: str | None
    """Why retries stopped, on a failed or timed-out activity or workflow, e.g. ``maximum attempts reached``."""

    @property
    def name(self) -> str:
        """The readable type, as the exercise checks call it: same as :attr:`event_type`."""
        return self.event_type


_NOTHING = (None,) * (len(Event._fields) - 6)
"""The fields of an event with no attributes, after its position and times."""


def events_of(history: WorkflowHistory) -> list[Event]:
    """The history's events, decoded, with the activity each one is about."""
    events = history.events
    if not events:
        return []
    workflow_id, run_id, start = history.workflow_id, run_id_of(history), event_ns(events[0])
    activities: dict[int, tuple[str, str]] = {}
    decoded = []
    for event in events:
        ns = event_ns(event)
        name = EVENT_TYPE_NAMES.get(event.event_type, "Unspecified")
        kind = event.WhichOneof("attributes")
        if kind is None:
            decoded.append(Event(workflow_id, run_id, event.event_id, name, ns, ns - start, *_NOTHING))
            continue
        attributes = getattr(event, kind)
        fields = _FIELDS[kind]
        activity: tuple[str, str] | None = None
        scheduled_id: int | None = None
        attempt = attributes.attempt if fields.attempt else None
        if kind == _ACTIVITY_SCHEDULED_KIND:
            activity = (attributes.activity_type.name, attributes.activity_id)
            activities[event.event_id] = activity
        elif fields.scheduled_event_id:
            scheduled_id = attributes.scheduled_event_id
            activity = activities.get(scheduled_id)
        elif kind == _MARKER_KIND:
            local = local_activity(event)
            if local is not None:
                activity, attempt = (local.activity_type, local.activity_id), local.attempt
        failure = failure_message = None
        if fields.failure is not None and attributes.HasField(fields.failure):
            carried = getattr(attributes, fields.failure)
            failure, failure_message = failure_text(carried), carried.message
        decoded.append(
            Event(
                workflow_id,
                run_id,
                event.event_id,
                name,
                ns,
                ns - start,
                activity[0] if activity else None,
                activity[1] if activity else None,
                scheduled_id,
                attempt,
                failure,
                (attributes.identity or None) if fields.identity else None,
                failure_message,
                retry_state_words(attributes.retry_state) if fields.retry_state and attributes.retry_state else None,
            )
        )
    return decoded


def attempts_per_activity(history: WorkflowHistory) -> dict[str, int]:
    """The attempt that ended each activity, by activity type: the kit's one definition of "final attempt".

    The history holds one started event per activity, written when its last attempt ends,
    carrying that attempt's number: a charge that failed twice then succeeded reads 3. A
    local activity has no started event: its ``MarkerRecorded`` events carry its attempts
    (the highest is the final one). An activity scheduled but never started reads 0; one scheduled several times
    reads its highest.
    """
    scheduled: dict[int, str] = {}
    attempts: dict[str, int] = {}
    for event in history.events:
        event_type = event.event_type
        if event_type == ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            attempts.setdefault(name, 0)
        elif event_type == ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            name = scheduled[attributes.scheduled_event_id]
            attempts[name] = max(attempts[name], attributes.attempt)
        elif event_type == MARKER_RECORDED:
            local = local_activity(event)
            if local is not None:
                attempts[local.activity_type] = max(attempts.get(local.activity_type, 0), local.attempt)
    return attempts
