"""The payment's tables: one row per payment, one row per activity attempt (the kit's attempt log joined with the history)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import pandas as pd
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from payments_lab.domain import STEPS, Step, payment_id_of
from payments_lab.history.decoding import (
    UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    WORKFLOW_CLOSED,
    as_histories,
    attempts_per_activity,
    event_ns,
    run_id_of,
)
from payments_lab.history.frames import datetime_ns, difference, frame, timedelta_ns
from payments_lab.history.tables import ActivitySpan, spans_of
from payments_lab.repository import AttemptRecord
from payments_lab.retries import retry_delay

STEP_ORDER = tuple(step.value for step in Step if step not in (Step.CONFIRM, Step.DONE))
"""The payment's steps that run an activity, in the order they run, for tables and charts."""

_PAYMENT_STATUS = "PaymentStatus"
"""The search attribute the payment workflow sets to its status."""


def _keyword(payload: Payload) -> str | None:
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


def _payment_status(events: Sequence[HistoryEvent]) -> str | None:
    """The last ``PaymentStatus`` the workflow set: at its start, or in a later upsert."""
    for event in reversed(events):
        if event.event_type == UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if _PAYMENT_STATUS in fields:
                return _keyword(fields[_PAYMENT_STATUS])
    fields = events[0].workflow_execution_started_event_attributes.search_attributes.indexed_fields
    return _keyword(fields[_PAYMENT_STATUS]) if _PAYMENT_STATUS in fields else None


UNFINISHED = frozenset({"pending", "processing"})
"""The payment statuses of a payment still under way."""


def outcome(payment_status: str | None, workflow_status: str) -> str:
    """What a payment came to, for a view: its last ``PaymentStatus``, or how its workflow ended when that
    ended it first (``terminated``, ``timed out``: nothing ran to set a final status), or the workflow's
    status for a workflow that is no payment."""
    if payment_status is None or (payment_status in UNFINISHED and workflow_status != "running"):
        return workflow_status
    return payment_status


def outcomes(payments: pd.DataFrame) -> pd.Series:
    """:func:`outcome` of each row of a :func:`payments_frame` table."""
    pairs = zip(payments["payment_status"], payments["workflow_status"], strict=True)
    return pd.Series([outcome(None if pd.isna(p) else p, w) for p, w in pairs], index=payments.index, name="outcome", dtype=object)


class PaymentRow(NamedTuple):
    """One payment workflow run: a row of :func:`payments_frame`."""

    workflow_id: str
    """The workflow's id, ``payment-<payment id>``."""
    run_id: str
    """The run's id."""
    payment_id: str
    """The payment's id."""
    organization_id: str | None
    """The paying organization, from the workflow's input."""
    amount: Decimal | None
    """The amount, never a float."""
    currency: str | None
    """Its ISO 4217 currency."""
    workflow_status: str
    """How the workflow ended, or ``running``."""
    payment_status: str | None
    """The last ``PaymentStatus`` search attribute the workflow set."""
    started_at: int
    """When the workflow started (ns)."""
    closed_at: int | None
    """When it ended (ns)."""
    latency: int | None
    """End to end, as Temporal saw it (ns)."""
    events: int
    """Events in the history."""
    validate_attempts: int | None
    """The final attempt of the validation; None if it did not run."""
    charge_attempts: int | None
    """Of the charge, likewise."""
    notify_attempts: int | None
    """Of the notification, likewise."""
    settle_attempts: int | None
    """Of the settlement, likewise."""


PAYMENT_COLUMNS = PaymentRow._fields
"""Columns of :func:`payments_frame`: ``<step>_attempts`` for each step of :data:`STEP_ORDER`, last."""


def payments_frame(histories: WorkflowHistory | Iterable[WorkflowHistory]) -> pd.DataFrame:
    """One row per payment workflow run, from its history alone.

    Columns: ``workflow_id``, ``run_id``, ``payment_id``, ``organization_id``, ``amount``
    (``Decimal``, never a float), ``currency`` (read from the workflow input),
    ``workflow_status`` (``completed``, ``failed``, ``cancelled``, ``terminated``, ``timed
    out``, ``continued as new`` or ``running``), ``payment_status`` (the last
    ``PaymentStatus`` search attribute the workflow set: ``completed``, ``declined``,
    ``failed``, ``cancelled``, ``refunded``, or ``pending`` while it runs, and still ``pending`` for a
    workflow terminated or timed out: :func:`outcomes` says what such a payment came to), ``started_at``,
    ``closed_at``, ``latency`` (end to end, as Temporal saw it), ``events``, and the final
    attempt of each step (``validate_attempts`` … ``settle_attempts``, local activities
    included; missing when the step did not run).
    """

    rows: list[PaymentRow] = []
    for history in as_histories(histories):
        events = history.events
        if not events:
            continue
        first, last = events[0], events[-1]
        request = _payment_input(first)
        per_step = {STEPS.get(name, name): attempt for name, attempt in attempts_per_activity(history).items()}
        started = event_ns(first)
        closed = event_ns(last) if last.event_type in WORKFLOW_CLOSED else None
        rows.append(
            PaymentRow(
                workflow_id=history.workflow_id,
                run_id=run_id_of(history),
                payment_id=request.get("payment_id") or payment_id_of(history.workflow_id),
                organization_id=request.get("organization_id"),
                amount=_amount(request.get("amount")),
                currency=request.get("currency"),
                workflow_status=WORKFLOW_CLOSED.get(last.event_type, "running"),
                payment_status=_payment_status(events),
                started_at=started,
                closed_at=closed,
                latency=difference(closed, started),
                events=len(events),
                validate_attempts=per_step.get(Step.VALIDATE),
                charge_attempts=per_step.get(Step.CHARGE),
                notify_attempts=per_step.get(Step.NOTIFY),
                settle_attempts=per_step.get(Step.SETTLE),
            )
        )
    return frame(
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


class AttemptRow(NamedTuple):
    """One activity attempt: a row of :func:`attempts_frame`."""

    payment_id: str
    """The payment's id."""
    workflow_id: str
    """Its workflow's id."""
    run_id: str
    """The run's id."""
    activity_type: str
    """The activity, e.g. ``charge_payment``."""
    step: str
    """The payment step it runs, else its name."""
    execution: int
    """1 for the first scheduling of this activity type in the run, 2 for the next…"""
    attempt: int
    """The attempt's number."""
    worker: str
    """The worker that ran it."""
    started_at: int | None
    """When it started, as the activity saw it (ns)."""
    ended_at: int | None
    """When it ended, likewise; None while it runs or if its worker died."""
    duration: int | None
    """How long it ran."""
    outcome: str
    """``completed``, ``failed``, ``cancelled``, or ``running``."""
    error: str | None
    """Its error, as the activity wrote it."""
    scheduled_at: int | None
    """When the history scheduled the activity (ns)."""
    gap_before: int | None
    """Attempt 1: since the activity was scheduled; later attempts: since the previous one ended."""
    configured_gap: int | None
    """The wait the retry policy asks for before this attempt; zero for attempt 1."""
    due_at: int | None
    """When the server scheduled the attempt for (ns)."""
    due_gap: int | None
    """From the previous attempt's end to ``due_at``."""
    dispatch_delay: int | None
    """From ``due_at`` to the attempt's start."""
    final_attempt: int | None
    """The attempt that ended the activity, from the history."""
    activity_outcome: str | None
    """How the history says the whole activity ended."""


ATTEMPT_COLUMNS = AttemptRow._fields
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
    spans: dict[tuple[str, str, str], list[ActivitySpan]] = {}
    if histories is not None:
        runs: set[tuple[str, str]] = set()
        for history in as_histories(histories):
            for execution in spans_of(history):
                spans.setdefault((execution.workflow_id, execution.run_id, execution.activity_type), []).append(execution)
            if history.events:
                runs.add((history.workflow_id, run_id_of(history)))
        records = [r for r in records if (r.workflow_id, r.run_id) in runs]

    rows: list[AttemptRow] = []
    previous: dict[tuple[str, str, str], AttemptRecord] = {}
    executions: dict[tuple[str, str, str], int] = {}
    for record in records:
        key = (record.workflow_id, record.run_id, record.activity)
        before = previous.get(key)
        if before is None or record.attempt <= before.attempt:
            executions[key] = executions.get(key, 0) + 1
            before = None
        previous[key] = record
        number = executions[key]
        matches = spans.get(key, [])
        span = matches[number - 1] if number <= len(matches) else None
        started = datetime_ns(record.started_at)
        ended = datetime_ns(record.ended_at)
        due = datetime_ns(record.due_at)
        scheduled = span.scheduled_at if span else None
        previous_end = datetime_ns(before.ended_at) if before is not None else scheduled
        configured: int | None
        if span is None:
            configured = None
        elif span.retry_policy is not None:
            configured = timedelta_ns(retry_delay(span.retry_policy, record.attempt))
        else:
            configured = 0 if record.attempt == 1 else None
        rows.append(
            AttemptRow(
                payment_id=record.payment_id,
                workflow_id=record.workflow_id,
                run_id=record.run_id,
                activity_type=record.activity,
                step=STEPS.get(record.activity, record.activity),
                execution=number,
                attempt=record.attempt,
                worker=record.worker,
                started_at=started,
                ended_at=ended,
                duration=difference(ended, started),
                outcome=record.outcome,
                error=record.error,
                scheduled_at=scheduled,
                gap_before=difference(started, previous_end),
                configured_gap=configured,
                due_at=due,
                due_gap=difference(due, previous_end),
                dispatch_delay=difference(started, due),
                final_attempt=span.attempt if span else None,
                activity_outcome=span.outcome if span else None,
            )
        )
    return frame(
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
