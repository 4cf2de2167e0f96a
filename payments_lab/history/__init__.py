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

One module per concept: :mod:`~payments_lab.history.decoding` (the one reading of protobuf
events), :mod:`~payments_lab.history.store` (fetch, save, load),
:mod:`~payments_lab.history.tables` (events, activity and workflow-task spans),
:mod:`~payments_lab.history.payments` (payments and attempts), :mod:`~payments_lab.history.fleet`
(the fleet summary); :mod:`~payments_lab.history.frames` builds every table the same way.
"""

from __future__ import annotations

from payments_lab.history.decoding import (
    LOCAL_ACTIVITY_MARKER,
    Event,
    LocalActivity,
    as_histories,
    attempts_per_activity,
    event_type_name,
    events_of,
    failure_text,
    local_activity,
    retry_state_words,
)
from payments_lab.history.fleet import LATENCY_PERCENTILES, FleetSummary, fleet_summary
from payments_lab.history.payments import (
    ATTEMPT_COLUMNS,
    PAYMENT_COLUMNS,
    STEP_ORDER,
    AttemptRow,
    PaymentRow,
    attempts_frame,
    outcome,
    outcomes,
    payments_frame,
)
from payments_lab.history.store import (
    DEFAULT_CONCURRENCY,
    HistoryNotFoundError,
    fetch_histories,
    fetch_history,
    load_histories,
    load_history,
    save_histories,
    save_history,
)
from payments_lab.history.tables import (
    ACTIVITY_OUTCOMES,
    EVENT_COLUMNS,
    ActivitySpan,
    WorkflowTaskSpan,
    activity_spans,
    events_frame,
    workflow_task_spans,
)

__all__ = [
    "ACTIVITY_OUTCOMES",
    "ATTEMPT_COLUMNS",
    "DEFAULT_CONCURRENCY",
    "EVENT_COLUMNS",
    "LATENCY_PERCENTILES",
    "LOCAL_ACTIVITY_MARKER",
    "PAYMENT_COLUMNS",
    "STEP_ORDER",
    "ActivitySpan",
    "AttemptRow",
    "Event",
    "FleetSummary",
    "HistoryNotFoundError",
    "LocalActivity",
    "PaymentRow",
    "WorkflowTaskSpan",
    "activity_spans",
    "as_histories",
    "attempts_frame",
    "attempts_per_activity",
    "event_type_name",
    "events_frame",
    "events_of",
    "failure_text",
    "fetch_histories",
    "fetch_history",
    "fleet_summary",
    "load_histories",
    "load_history",
    "local_activity",
    "outcome",
    "outcomes",
    "payments_frame",
    "retry_state_words",
    "save_histories",
    "save_history",
    "workflow_task_spans",
]
