"""Execution histories as pandas tables: events, activity spans, attempts, payments, a fleet summary.

Temporal's history of a retried activity holds one ``ActivityTaskScheduled`` and one
``ActivityTaskStarted`` event: the started event is written when the last attempt ends and
carries that attempt's number. Earlier attempts are not events; the kit's own attempt log
(``repository.attempts()``) has them, and :func:`attempts_frame` joins the two.

In a notebook::

    histories = await fetch_histories(lab.client, [f"payment-{p}" for p in payment_ids])
    events = events_frame(histories)
    spans = activity_spans(histories)
    attempts = attempts_frame(lab.repository.attempts(), histories)
    summary = fleet_summary(histories)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.common import RetryPolicy
from tqdm.auto import tqdm

from payments_lab.activities import STEPS
from payments_lab.arguments import whole_number
from payments_lab.domain import PaymentStatus, Step, payment_id_of
from payments_lab.outage import ride_out
from payments_lab.repository import AttemptRecord
from payments_lab.retries import retry_delay

DEFAULT_CONCURRENCY = 32
"""Histories fetched at once by :func:`fetch_histories`: enough to keep a local server busy."""

STEP_ORDER = tuple(step.value for step in Step if step is not Step.DONE)
"""The payment's steps in the order they run, for tables and charts."""

ACTIVITY_OUTCOMES = ("completed", "failed", "timed out", "cancelled", "scheduled")
"""How an activity execution ended; ``scheduled`` means not yet (running or waiting to retry)."""


def _words(enum_name: str, prefix: str) -> list[str]:
    return enum_name.removeprefix(prefix).lower().split("_")


_EVENT_TYPE_NAMES: dict[int, str] = {
    value: "".join(word.capitalize() for word in _words(name, "EVENT_TYPE_")) for name, value in EventType.items()
}
_RETRY_STATE_NAMES: dict[int, str] = {
    value: " ".join(_words(name, "RETRY_STATE_")) for name, value in RetryState.items() if value
}

_WORKFLOW_CLOSED: dict[int, str] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued as new",
}
"""Workflow status after each closing event; the words :mod:`payments_lab.service` uses."""

_ACTIVITY_CLOSED: dict[int, tuple[str, str | None]] = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("completed", None),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("timed out", "activity_task_timed_out_event_attributes"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("cancelled", None),
}
"""Outcome of an activity after each closing event, and the attributes holding its failure."""

_TASK_CLOSED: dict[int, str] = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class _AttributeFields:
    """Which common fields one kind of event attributes has, looked up once per kind."""

    identity: bool
    attempt: bool
    failure: str | None
    scheduled_event_id: bool


def _attribute_fields() -> dict[str, _AttributeFields]:
    found = {}
    for field in HistoryEvent.DESCRIPTOR.oneofs_by_name["attributes"].fields:
        names = field.message_type.fields_by_name
        failure = "failure" if "failure" in names else "last_failure" if "last_failure" in names else None
        found[field.name] = _AttributeFields(
            identity="identity" in names,
            attempt="attempt" in names,
            failure=failure,
            scheduled_event_id="scheduled_event_id" in names,
        )
    return found


_FIELDS = _attribute_fields()

_NS_PER_S = 1_000_000_000

LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""Name of the marker that records a local activity in the history."""

EVENT_COLUMNS = (
    "workflow_id",
    "run_id",
    "event_id",
    "event_type",
    "time",
    "since_start",
    "activity_type",
    "activity_id",
    "scheduled_event_id",
    "attempt",
    "failure",
    "identity",
)
"""Columns of :func:`events_frame`."""


def event_type_name(event_type: int) -> str:
    """The readable name of an event type: ``EVENT_TYPE_ACTIVITY_TASK_SCHEDULED`` → ``ActivityTaskScheduled``.

    Raises:
        ValueError: ``event_type`` is no known event type.
    """
    try:
        return _EVENT_TYPE_NAMES[event_type]
    except KeyError:
        raise ValueError(f"unknown event type {event_type!r}") from None


def failure_text(failure: Failure) -> str:
    """One line for a failure and its causes: ``Activity task failed: SimulatedOutage: simulated …``.

    An application failure is prefixed with its type, as the kit's attempt log writes it.
    """
    parts = []
    current: Failure | None = failure
    while current is not None:
        error_type = current.application_failure_info.type if current.HasField("application_failure_info") else ""
        parts.append(f"{error_type}: {current.message}" if error_type else current.message)
        current = current.cause if current.HasField("cause") else None
    return ": ".join(parts)


def _histories(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> list[WorkflowHistory]:
    if isinstance(histories, WorkflowHistory):
        return [histories]
    found = list(histories)
    for history in found:
        if not isinstance(history, WorkflowHistory):
            raise TypeError(f"expected WorkflowHistory objects, got {type(history).__name__}")
    return found


def _ns(event: HistoryEvent) -> int:
    stamp = event.event_time
    return stamp.seconds * _NS_PER_S + stamp.nanos


def _run_id(history: WorkflowHistory) -> str:
    # A reset run keeps its original run id here; the kit never resets payments.
    return history.events[0].workflow_execution_started_event_attributes.original_execution_run_id


def _times(ns: Sequence[int | None]) -> pd.DatetimeIndex:
    values = np.array([v if v is not None else np.iinfo(np.int64).min for v in ns], dtype=np.int64)
    return pd.to_datetime(values, unit="ns", utc=True)


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], kinds: dict[str, str]) -> pd.DataFrame:
    """A table from ``rows`` with exact types: ``kinds`` maps a column to ``time`` or
    ``duration`` (nanoseconds or None), ``int``, ``Int64`` (None allowed) or ``object``.

    Building columns by hand keeps nanosecond times exact: letting pandas infer a column
    of integers and Nones would go through floats.
    """
    converters = {
        "time": _times,
        "duration": _durations,
        "int": lambda values: np.array(values, dtype=np.int64),
        "Int64": lambda values: pd.array(values, dtype="Int64"),
        "object": lambda values: pd.Series(values, dtype=object),
    }
    return pd.DataFrame(
        {
            column: converters[kinds[column]]([r[column] for r in rows]) if column in kinds else [r[column] for r in rows]
            for column in columns
        },
        columns=list(columns),
    )


def _datetime_ns(moment: datetime | None) -> int | None:
    return pd.Timestamp(moment).value if moment is not None else None


def _timedelta_ns(duration: timedelta) -> int:
    return pd.Timedelta(duration).value


def _durations(ns: Sequence[int | None]) -> pd.TimedeltaIndex:
    values = np.array([v if v is not None else np.iinfo(np.int64).min for v in ns], dtype=np.int64)
    return pd.to_timedelta(values, unit="ns")


@dataclass(frozen=True)
class _LocalActivity:
    activity_type: str
    activity_id: str
    attempt: int


def _local_activity(event: HistoryEvent) -> _LocalActivity | None:
    """What a ``MarkerRecorded`` event says about the local activity it records, if it records one.

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
    return _LocalActivity(str(data["activity_type"]), str(data.get("activity_id", "")), int(data.get("attempt") or 0))


# Fetching, saving and loading


async def fetch_history(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    """The history of one workflow run (the latest run when ``run_id`` is None).

    If the server is unreachable, this waits for it (see :mod:`payments_lab.outage`).
    """
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return await ride_out(handle.fetch_history, address=client.service_client.config.target_host)


async def fetch_histories(
    client: Client,
    workflows: Iterable[str | tuple[str, str]] | None = None,
    *,
    query: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
) -> list[WorkflowHistory]:
    """Fetch many histories at once, at most ``concurrency`` at a time, with a progress bar.

    Args:
        client: The Temporal client.
        workflows: Workflow ids (their latest run) or ``(workflow id, run id)`` pairs.
        query: Instead of ``workflows``, a visibility query, e.g.
            ``lab.service.visibility_query(status="failed")``.
        concurrency: Histories requested at the same time.
        progress: Show a ``tqdm`` progress bar (a widget in notebooks).

    Returns:
        The histories, in the order of ``workflows`` (or of the query's results).

    Raises:
        ValueError: both or neither of ``workflows`` and ``query`` are given, or
            ``concurrency`` is below 1.
        temporalio.service.RPCError: a workflow does not exist (the other fetches stop).
    """
    if (workflows is None) == (query is None):
        raise ValueError("pass either workflows (ids or (id, run id) pairs) or a visibility query, not both")
    whole_number("concurrency", concurrency, minimum=1)
    if query is not None:
        targets = [(execution.id, execution.run_id) async for execution in client.list_workflows(query)]
    else:
        if isinstance(workflows, str):
            raise ValueError("workflows must be a list of workflow ids, not one string; use fetch_history for one")
        targets = [(w, None) if isinstance(w, str) else (w[0], w[1]) for w in workflows]  # type: ignore[union-attr]
    results: list[WorkflowHistory | None] = [None] * len(targets)
    semaphore = asyncio.Semaphore(concurrency)
    with tqdm(total=len(targets), desc="histories", unit="history", disable=not progress) as bar:

        async def fetch(index: int, workflow_id: str, run_id: str | None) -> None:
            async with semaphore:
                results[index] = await fetch_history(client, workflow_id, run_id)
            bar.update()

        first_failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for index, (workflow_id, run_id) in enumerate(targets):
                    group.create_task(fetch(index, workflow_id, run_id))
        except ExceptionGroup as failures:
            # The first failure cancelled the other fetches: it is the one worth reading.
            first_failure = failures.exceptions[0]
    if first_failure is not None:
        # Raised here, not inside the except block: there its context would be the group
        # that contains it, a cycle that IPython's traceback display never finishes.
        first_failure.__context__ = None
        raise first_failure
    return results  # type: ignore[return-value]


def save_history(history: WorkflowHistory, path: str | Path) -> Path:
    """Write ``history`` as JSON, the format of ``temporal workflow show --output json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json())
    return path


def load_history(path: str | Path, workflow_id: str | None = None) -> WorkflowHistory:
    """Read a history saved by :func:`save_history`, the Web UI or ``temporal workflow show --output json``.

    Args:
        path: The JSON file.
        workflow_id: The workflow's id; by default the one the start event records
            (recent servers write it there), else the file name without ``.json``.

    Raises:
        ValueError: the file holds no events.
    """
    path = Path(path)
    history = WorkflowHistory.from_json(workflow_id or "", path.read_text())
    if not history.events:
        raise ValueError(f"{path} holds no history events")
    if workflow_id is None:
        recorded = history.events[0].workflow_execution_started_event_attributes.workflow_id
        history = WorkflowHistory(recorded or path.stem, history.events)
    return history


def save_histories(histories: Iterable[WorkflowHistory], directory: str | Path) -> list[Path]:
    """Write each history to ``directory/<workflow id>.json``; return the files.

    Raises:
        ValueError: two histories have the same workflow id (two runs of one workflow).
    """
    directory = Path(directory)
    histories = _histories(histories)
    ids = [h.workflow_id for h in histories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if duplicates:
        raise ValueError(f"several runs of {duplicates}: save them one by one with save_history")
    for workflow_id in ids:
        if not workflow_id or "/" in workflow_id or workflow_id in (".", ".."):
            raise ValueError(f"workflow id {workflow_id!r} cannot be a file name: save it with save_history")
    return [save_history(h, directory / f"{h.workflow_id}.json") for h in histories]


def load_histories(directory: str | Path) -> list[WorkflowHistory]:
    """Read every ``*.json`` history of ``directory``, by file name."""
    return [load_history(path) for path in sorted(Path(directory).glob("*.json"))]


# What the CLI prints


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


# Tables


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
    workflow_ids: list[str] = []
    run_ids: list[str] = []
    event_ids: list[int] = []
    types: list[str] = []
    times: list[int] = []
    since: list[int] = []
    activity_types: list[str | None] = []
    activity_ids: list[str | None] = []
    scheduled_ids: list[int | None] = []
    attempts: list[int | None] = []
    failures: list[str | None] = []
    identities: list[str | None] = []
    scheduled_kind = "activity_task_scheduled_event_attributes"
    marker_kind = "marker_recorded_event_attributes"
    for history in _histories(histories):
        events = history.events
        if not events:
            continue
        count = len(events)
        workflow_ids += [history.workflow_id] * count
        run_ids += [_run_id(history)] * count
        start = _ns(events[0])
        activities: dict[int, tuple[str, str]] = {}
        for event in events:
            ns = _ns(event)
            event_ids.append(event.event_id)
            types.append(_EVENT_TYPE_NAMES.get(event.event_type, "Unspecified"))
            times.append(ns)
            since.append(ns - start)
            kind = event.WhichOneof("attributes")
            if kind is None:
                activity_types.append(None)
                activity_ids.append(None)
                scheduled_ids.append(None)
                attempts.append(None)
                failures.append(None)
                identities.append(None)
                continue
            attributes = getattr(event, kind)
            fields = _FIELDS[kind]
            activity: tuple[str, str] | None = None
            scheduled_id: int | None = None
            attempt = attributes.attempt if fields.attempt else None
            if kind == scheduled_kind:
                activity = (attributes.activity_type.name, attributes.activity_id)
                activities[event.event_id] = activity
            elif fields.scheduled_event_id:
                scheduled_id = attributes.scheduled_event_id
                activity = activities.get(scheduled_id)
            elif kind == marker_kind:
                local = _local_activity(event)
                if local is not None:
                    activity, attempt = (local.activity_type, local.activity_id), local.attempt
            activity_types.append(activity[0] if activity else None)
            activity_ids.append(activity[1] if activity else None)
            scheduled_ids.append(scheduled_id)
            attempts.append(attempt)
            failure = fields.failure
            failures.append(failure_text(getattr(attributes, failure)) if failure and attributes.HasField(failure) else None)
            identities.append((attributes.identity or None) if fields.identity else None)
    return pd.DataFrame(
        {
            "workflow_id": workflow_ids,
            "run_id": run_ids,
            "event_id": np.array(event_ids, dtype=np.int64),
            "event_type": types,
            "time": _times(times),
            "since_start": _durations(since),
            "activity_type": activity_types,
            "activity_id": activity_ids,
            "scheduled_event_id": pd.array(scheduled_ids, dtype="Int64"),
            "attempt": pd.array(attempts, dtype="Int64"),
            "failure": failures,
            "identity": identities,
        },
        columns=list(EVENT_COLUMNS),
    )


@dataclass
class _ActivitySpan:
    workflow_id: str
    run_id: str
    workflow_started: int
    scheduled_event_id: int
    activity_id: str
    activity_type: str
    scheduled: int
    retry_policy: RetryPolicy | None
    started: int | None = None
    closed: int | None = None
    attempt: int = 0
    outcome: str = "scheduled"
    failure: str | None = None
    last_failure: str | None = None
    retry_state: str | None = None
    identity: str | None = None


def _activity_spans(history: WorkflowHistory) -> list[_ActivitySpan]:
    events = history.events
    if not events:
        return []
    workflow_id, run_id, start = history.workflow_id, _run_id(history), _ns(events[0])
    spans: dict[int, _ActivitySpan] = {}
    for event in events:
        event_type = event.event_type
        if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            policy = RetryPolicy.from_proto(attributes.retry_policy) if attributes.HasField("retry_policy") else None
            spans[event.event_id] = _ActivitySpan(
                workflow_id, run_id, start, event.event_id, attributes.activity_id,
                attributes.activity_type.name, _ns(event), policy,
            )
        elif event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            span = spans[started.scheduled_event_id]
            span.started = _ns(event)
            span.attempt = started.attempt
            span.identity = started.identity or None
            if started.HasField("last_failure"):
                span.last_failure = failure_text(started.last_failure)
        elif event_type in _ACTIVITY_CLOSED:
            outcome, failure_attributes = _ACTIVITY_CLOSED[event_type]
            attributes = getattr(event, event.WhichOneof("attributes"))  # type: ignore[arg-type]
            span = spans[attributes.scheduled_event_id]
            span.closed = _ns(event)
            span.outcome = outcome
            if failure_attributes is not None:
                closing = getattr(event, failure_attributes)
                span.failure = failure_text(closing.failure) if closing.HasField("failure") else None
                span.retry_state = _RETRY_STATE_NAMES.get(closing.retry_state)
    return list(spans.values())


def _difference(later: int | None, earlier: int | None) -> int | None:
    return later - earlier if later is not None and earlier is not None else None


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
    spans = [span for history in _histories(histories) for span in _activity_spans(history)]
    return pd.DataFrame(
        {
            "workflow_id": [s.workflow_id for s in spans],
            "run_id": [s.run_id for s in spans],
            "activity_id": [s.activity_id for s in spans],
            "activity_type": [s.activity_type for s in spans],
            "step": [STEPS.get(s.activity_type, s.activity_type) for s in spans],
            "scheduled_event_id": np.array([s.scheduled_event_id for s in spans], dtype=np.int64),
            "workflow_started_at": _times([s.workflow_started for s in spans]),
            "scheduled_at": _times([s.scheduled for s in spans]),
            "started_at": _times([s.started for s in spans]),
            "closed_at": _times([s.closed for s in spans]),
            "schedule_to_start": _durations([_difference(s.started, s.scheduled) for s in spans]),
            "run_time": _durations([_difference(s.closed, s.started) for s in spans]),
            "schedule_to_close": _durations([_difference(s.closed, s.scheduled) for s in spans]),
            "attempt": np.array([s.attempt for s in spans], dtype=np.int64),
            "outcome": [s.outcome for s in spans],
            "last_failure": [s.failure or s.last_failure for s in spans],
            "retry_state": [s.retry_state for s in spans],
            "identity": [s.identity for s in spans],
            "retry_policy": pd.Series([s.retry_policy for s in spans], dtype=object),
        }
    )


def workflow_task_spans(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per workflow task: when the workflow code ran on a worker to decide what next.

    Columns: ``workflow_id``, ``run_id``, ``scheduled_event_id``, ``workflow_started_at``,
    ``scheduled_at``, ``started_at``, ``closed_at``, ``attempt``, ``outcome``
    (``completed``, ``failed``, ``timed out``, or ``scheduled`` while pending) and
    ``identity`` (the worker).
    """
    rows: list[dict[str, Any]] = []
    for history in _histories(histories):
        events = history.events
        if not events:
            continue
        workflow_id, run_id, start = history.workflow_id, _run_id(history), _ns(events[0])
        tasks: dict[int, dict[str, Any]] = {}
        for event in events:
            event_type = event.event_type
            if event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                tasks[event.event_id] = {
                    "workflow_id": workflow_id,
                    "run_id": run_id,
                    "scheduled_event_id": event.event_id,
                    "workflow_started_at": start,
                    "scheduled_at": _ns(event),
                    "started_at": None,
                    "closed_at": None,
                    "attempt": event.workflow_task_scheduled_event_attributes.attempt,
                    "outcome": "scheduled",
                    "identity": None,
                }
            elif event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                attributes = event.workflow_task_started_event_attributes
                task = tasks[attributes.scheduled_event_id]
                task["started_at"] = _ns(event)
                task["identity"] = attributes.identity or None
            elif event_type in _TASK_CLOSED:
                attributes = getattr(event, event.WhichOneof("attributes"))  # type: ignore[arg-type]
                task = tasks[attributes.scheduled_event_id]
                task["closed_at"] = _ns(event)
                task["outcome"] = _TASK_CLOSED[event_type]
        rows += tasks.values()
    return _frame(
        rows,
        ["workflow_id", "run_id", "scheduled_event_id", "workflow_started_at", "scheduled_at", "started_at",
         "closed_at", "attempt", "outcome", "identity"],
        {
            "scheduled_event_id": "int",
            "workflow_started_at": "time",
            "scheduled_at": "time",
            "started_at": "time",
            "closed_at": "time",
            "attempt": "int",
        },
    )


def _keyword(payload: Any) -> str | None:
    """The value of a Keyword search attribute payload (JSON text)."""
    try:
        value = json.loads(payload.data)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _payment_input(event: HistoryEvent) -> dict[str, Any]:
    """The payment request of a workflow's input, when it is the kit's JSON."""
    payloads = event.workflow_execution_started_event_attributes.input.payloads
    if not payloads or payloads[0].metadata.get("encoding") != b"json/plain":
        return {}
    try:
        value = json.loads(payloads[0].data)
    except ValueError:
        return {}
    request = value.get("request") if isinstance(value, dict) else None
    return request if isinstance(request, dict) else {}


def _amount(text: object) -> Decimal | None:
    try:
        return Decimal(str(text)) if text is not None else None
    except InvalidOperation:
        return None


PAYMENT_COLUMNS = (
    "workflow_id",
    "run_id",
    "payment_id",
    "organization_id",
    "amount",
    "currency",
    "workflow_status",
    "payment_status",
    "started_at",
    "closed_at",
    "latency",
    "events",
    *(f"{step}_attempts" for step in STEP_ORDER),
)
"""Columns of :func:`payments_frame`."""


def payments_frame(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per payment workflow run, from its history alone.

    Columns: ``workflow_id``, ``run_id``, ``payment_id``, ``organization_id``, ``amount``
    (``Decimal``, never a float), ``currency`` (read from the workflow input),
    ``workflow_status`` (``completed``, ``failed``, ``cancelled``, ``terminated``, ``timed
    out``, ``continued as new`` or ``running``), ``payment_status`` (the last
    ``PaymentStatus`` search attribute the workflow set: ``completed``, ``declined``,
    ``failed``, ``cancelled``, ``refunded``, or ``pending`` while it runs), ``started_at``,
    ``closed_at``, ``latency`` (end to end, as Temporal saw it), ``events``, and the final
    attempt of each step (``validate_attempts`` … ``settle_attempts``, local activities
    included; missing when the step did not run).
    """
    rows: list[dict[str, Any]] = []
    for history in _histories(histories):
        events = history.events
        if not events:
            continue
        first, last = events[0], events[-1]
        request = _payment_input(first)
        status_field = first.workflow_execution_started_event_attributes.search_attributes.indexed_fields
        payment_status = _keyword(status_field["PaymentStatus"]) if "PaymentStatus" in status_field else None
        attempts: dict[str, int] = {}
        scheduled: dict[int, str] = {}
        for event in events:
            event_type = event.event_type
            if event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = STEPS.get(name, name)
                attempts.setdefault(scheduled[event.event_id], 0)
            elif event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                step = scheduled[started.scheduled_event_id]
                attempts[step] = max(attempts[step], started.attempt)
            elif event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                local = _local_activity(event)
                if local is not None:
                    step = STEPS.get(local.activity_type, local.activity_type)
                    attempts[step] = max(attempts.get(step, 0), local.attempt)
            elif event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                if "PaymentStatus" in fields:
                    payment_status = _keyword(fields["PaymentStatus"])
        closed = _ns(last) if last.event_type in _WORKFLOW_CLOSED else None
        workflow_id = history.workflow_id
        rows.append(
            {
                "workflow_id": workflow_id,
                "run_id": _run_id(history),
                "payment_id": request.get("payment_id") or payment_id_of(workflow_id),
                "organization_id": request.get("organization_id"),
                "amount": _amount(request.get("amount")),
                "currency": request.get("currency"),
                "workflow_status": _WORKFLOW_CLOSED.get(last.event_type, "running"),
                "payment_status": payment_status,
                "started_at": _ns(first),
                "closed_at": closed,
                "latency": _difference(closed, _ns(first)),
                "events": len(events),
                **{f"{step}_attempts": attempts.get(step) for step in STEP_ORDER},
            }
        )
    return _frame(
        rows,
        PAYMENT_COLUMNS,
        {
            "amount": "object",
            "started_at": "time",
            "closed_at": "time",
            "latency": "duration",
            "events": "int",
            **{f"{step}_attempts": "Int64" for step in STEP_ORDER},
        },
    )


ATTEMPT_COLUMNS = (
    "payment_id",
    "workflow_id",
    "run_id",
    "activity_type",
    "step",
    "execution",
    "attempt",
    "worker",
    "started_at",
    "ended_at",
    "duration",
    "outcome",
    "error",
    "scheduled_at",
    "gap_before",
    "configured_gap",
    "due_at",
    "due_gap",
    "dispatch_delay",
    "final_attempt",
    "activity_outcome",
)
"""Columns of :func:`attempts_frame`."""


def attempts_frame(
    attempts: Iterable[AttemptRecord],
    histories: WorkflowHistory | Iterable[WorkflowHistory] | None = None,
) -> pd.DataFrame:
    """One row per activity attempt, from the kit's attempt log, joined with the histories.

    The history keeps only the last attempt of each activity; the attempt log keeps them
    all. With ``histories``, only the attempts of those workflow runs are kept, and each
    is matched to its activity in the history (same run, same activity type, same
    scheduling: attempt numbers start again at 1 when an activity is scheduled again).

    Columns: ``payment_id``, ``workflow_id``, ``run_id``, ``activity_type``, ``step``,
    ``execution`` (1 for the first scheduling of this activity type in the run, 2 for the
    next…), ``attempt``, ``worker``, ``started_at``, ``ended_at`` and ``duration`` (as the
    activity saw them), ``outcome`` (``completed``, ``failed``, ``cancelled``, or
    ``running``: still running, or its worker died), ``error``; from the history:
    ``scheduled_at``, ``gap_before`` (attempt 1: since the activity was scheduled; later
    attempts: since the previous attempt ended), ``configured_gap`` (the wait the retry
    policy asks for before this attempt; zero for attempt 1), ``final_attempt`` and
    ``activity_outcome`` (what the history says about the whole activity); from the
    activity's own info: ``due_at`` (the time the server scheduled the attempt for: for a
    retry, the failure's arrival plus the backoff), ``due_gap`` (from the previous
    attempt's end to that time: the configured backoff plus the failure's trip to the
    server) and ``dispatch_delay`` (from that time to the attempt's start: the timer's
    lateness, about a second on a default dev server, plus the trip to the worker).
    ``gap_before`` is ``due_gap`` plus ``dispatch_delay``.

    Args:
        attempts: The attempt log, e.g. ``lab.repository.attempts()``.
        histories: Histories to join with; without them, the history columns are empty
            and ``gap_before`` is missing for first attempts.
    """
    records = list(attempts)
    spans: dict[tuple[str, str, str], list[_ActivitySpan]] = {}
    runs: set[tuple[str, str]] | None = None
    if histories is not None:
        runs = set()
        for history in _histories(histories):
            for span in _activity_spans(history):
                spans.setdefault((span.workflow_id, span.run_id, span.activity_type), []).append(span)
            if history.events:
                runs.add((history.workflow_id, _run_id(history)))
        records = [r for r in records if (r.workflow_id, r.run_id) in runs]

    rows: list[dict[str, Any]] = []
    previous: dict[tuple[str, str, str], AttemptRecord] = {}
    executions: dict[tuple[str, str, str], int] = {}
    for record in records:
        key = (record.workflow_id, record.run_id, record.activity)
        before = previous.get(key)
        if before is None or record.attempt <= before.attempt:
            executions[key] = executions.get(key, 0) + 1
            before = None
        previous[key] = record
        execution = executions[key]
        matches = spans.get(key, [])
        span = matches[execution - 1] if execution <= len(matches) else None
        started = _datetime_ns(record.started_at)
        ended = _datetime_ns(record.ended_at)
        scheduled = span.scheduled if span else None
        previous_end = _datetime_ns(before.ended_at) if before is not None else scheduled
        if span is None:
            configured = None
        elif span.retry_policy is not None:
            configured = _timedelta_ns(retry_delay(span.retry_policy, record.attempt))
        else:
            configured = 0 if record.attempt == 1 else None
        rows.append(
            {
                "payment_id": record.payment_id,
                "workflow_id": record.workflow_id,
                "run_id": record.run_id,
                "activity_type": record.activity,
                "step": STEPS.get(record.activity, record.activity),
                "execution": execution,
                "attempt": record.attempt,
                "worker": record.worker,
                "started_at": started,
                "ended_at": ended,
                "duration": _difference(ended, started),
                "outcome": record.outcome,
                "error": record.error,
                "scheduled_at": scheduled,
                "gap_before": _difference(started, previous_end),
                "configured_gap": configured,
                "due_at": _datetime_ns(record.due_at),
                "due_gap": _difference(_datetime_ns(record.due_at), previous_end),
                "dispatch_delay": _difference(started, _datetime_ns(record.due_at)),
                "final_attempt": span.attempt if span else None,
                "activity_outcome": span.outcome if span else None,
            }
        )
    return _frame(
        rows,
        ATTEMPT_COLUMNS,
        {
            "execution": "int",
            "attempt": "int",
            "started_at": "time",
            "ended_at": "time",
            "duration": "duration",
            "scheduled_at": "time",
            "gap_before": "duration",
            "configured_gap": "duration",
            "due_at": "time",
            "due_gap": "duration",
            "dispatch_delay": "duration",
            "final_attempt": "Int64",
        },
    )


# The fleet


LATENCY_PERCENTILES = (0.5, 0.9, 0.95, 0.99)
"""Percentiles of :attr:`FleetSummary.latency`."""


@dataclass(frozen=True)
class FleetSummary:
    """Many payments at a glance: how they ended, how long they took, how often steps retried."""

    payments: pd.DataFrame
    """One row per payment, see :func:`payments_frame`."""
    status_counts: pd.Series
    """Payments per payment status, most frequent first (the workflow status where no payment status was set)."""
    latency: pd.Series
    """End-to-end seconds of the payments that ended: ``p50``, ``p90``, ``p95``, ``p99``, ``max``, ``mean``."""
    attempts_per_step: pd.DataFrame
    """Payments per step (rows) and number of attempts that step took (columns 1, 2, 3…)."""

    @property
    def total(self) -> int:
        """Number of payments."""
        return len(self.payments)

    @property
    def retried(self) -> pd.Series:
        """Per step, the payments whose step needed more than one attempt."""
        return self.attempts_per_step.loc[:, self.attempts_per_step.columns > 1].sum(axis=1)

    def __str__(self) -> str:
        statuses = ", ".join(f"{count} {status}" for status, count in self.status_counts.items())
        lines = [f"{self.total} payments: {statuses or 'none'}"]
        if len(self.latency.dropna()):
            lines.append(
                "latency: " + ", ".join(f"{name} {value:.2f} s" for name, value in self.latency.items())
            )
        for step, row in self.attempts_per_step.iterrows():
            counts = ", ".join(f"{n} × {attempts}" for attempts, n in row.items() if n)
            lines.append(f"{step}: {counts} (payments × attempts)")
        return "\n".join(lines)


def fleet_summary(histories: WorkflowHistory | Iterable[WorkflowHistory] | pd.DataFrame) -> FleetSummary:
    """Status counts, latency percentiles and attempts per step over many payments.

    Args:
        histories: The payments' histories, or a table from :func:`payments_frame`.
    """
    payments = histories if isinstance(histories, pd.DataFrame) else payments_frame(histories)
    missing = set(PAYMENT_COLUMNS) - set(payments.columns)
    if missing:
        raise ValueError(f"the payments table lacks {sorted(missing)}: build it with payments_frame(histories)")
    status = payments["payment_status"].fillna(payments["workflow_status"])
    counts = status.value_counts()
    # Ties in the order of the payment life-cycle, so the same fleet always reads the same.
    known = [s.value for s in PaymentStatus]
    order = sorted(counts.index, key=lambda s: (-counts[s], known.index(s) if s in known else len(known), s))
    status_counts = counts.reindex(order).rename("payments")
    status_counts.index.name = "status"

    seconds = payments["latency"].dropna().dt.total_seconds()
    names = [f"p{round(q * 100)}" for q in LATENCY_PERCENTILES] + ["max", "mean"]
    if len(seconds):
        values = [*seconds.quantile(list(LATENCY_PERCENTILES)).tolist(), seconds.max(), seconds.mean()]
    else:
        values = [np.nan] * len(names)
    latency = pd.Series(values, index=names, name="latency_s", dtype=float)

    per_step = {}
    for step in STEP_ORDER:
        counts = payments[f"{step}_attempts"].dropna()
        counts = counts[counts > 0].astype(np.int64)
        if len(counts):
            per_step[step] = counts.value_counts()
    attempts = pd.DataFrame(per_step).T.fillna(0).astype(np.int64) if per_step else pd.DataFrame(dtype=np.int64)
    attempts = attempts.reindex(columns=sorted(attempts.columns))
    attempts.index.name = "step"
    attempts.columns.name = "attempts"
    return FleetSummary(payments=payments, status_counts=status_counts, latency=latency, attempts_per_step=attempts)
