"""Histories as tables, from real payments on the dev server (and one on the time-skipping server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from conftest import FAST, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.charts import timeline_chart
from payments_lab.client import quiet_runtime
from payments_lab.converter import DATA_CONVERTER
from payments_lab.domain import PaymentRequest
from payments_lab.exercises import checking
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history import (
    ATTEMPT_COLUMNS,
    EVENT_COLUMNS,
    PAYMENT_COLUMNS,
    STEP_ORDER,
    HistoryNotFoundError,
    activity_spans,
    attempts_frame,
    attempts_per_activity,
    event_type_name,
    events_frame,
    failure_text,
    fetch_histories,
    fetch_history,
    fleet_summary,
    load_histories,
    load_history,
    payments_frame,
    save_histories,
    save_history,
    workflow_task_spans,
)
from payments_lab.messages import TUNED
from payments_lab.repository import AttemptRecord, PaymentRepository
from payments_lab.server import EmbeddedServer, find_temporal_cli
from payments_lab.service import PaymentService
from payments_lab.visibility import VisibilityQueryError
from payments_lab.worker import BackgroundWorker
from payments_lab.workflows import PaymentWorkflow

WORKER = "history-test-worker"

SCENARIOS: dict[str, FaultPlan] = {
    "completed": FaultPlan(),
    "retried": FaultPlan.failing(charge=2),
    "gave_up": FaultPlan.failing(charge=3),
    "card_declined": FaultPlan(charge=StepFaults(decline=True)),
    "invalid": FaultPlan(),
    "cancelled": FaultPlan(charge=StepFaults(delay=30)),
}
"""One payment per way a payment can end; FAST allows 3 attempts per step."""


@dataclass(frozen=True)
class Recorded:
    """Payments that ran on the dev server, their histories and the attempt log."""

    task_queue: str
    histories: dict[str, WorkflowHistory]
    payment_ids: dict[str, str]
    records: list[AttemptRecord]
    running: WorkflowHistory
    """The cancelled payment's history while its charge was still running."""

    @property
    def all(self) -> list[WorkflowHistory]:
        return list(self.histories.values())


async def record_payments(client: Client) -> Recorded:
    """Run one payment per scenario at once, cancel the one that hangs in its charge."""
    repository = PaymentRepository()
    task_queue = f"test-history-{uuid.uuid4().hex[:8]}"
    service = PaymentService(client, task_queue, options=FAST)
    requests = {
        name: PaymentRequest(new_id(name.replace("_", "-")), "org-acme", "u-1", "-5" if name == "invalid" else "12.50", "EUR")
        for name in SCENARIOS
    }
    async with BackgroundWorker(client, task_queue, PaymentActivities(repository, identity=WORKER)):
        handles = {name: await service.start(requests[name], faults=SCENARIOS[name]) for name in SCENARIOS}
        while not repository.ledger(requests["cancelled"].payment_id):
            await asyncio.sleep(0.05)
        running = await handles["cancelled"].workflow.fetch_history()
        await handles["cancelled"].cancel()
        for handle in handles.values():
            await handle.result()
    histories = await fetch_histories(client, [h.workflow_id for h in handles.values()], progress=False)
    return Recorded(
        task_queue,
        dict(zip(SCENARIOS, histories)),
        {name: r.payment_id for name, r in requests.items()},
        repository.attempts(),
        running,
    )


@pytest.fixture(scope="module")
async def recorded(client: Client) -> Recorded:
    return await record_payments(client)


def rows(frame: pd.DataFrame, history: WorkflowHistory) -> pd.DataFrame:
    return frame[frame["workflow_id"] == history.workflow_id]


# Events


def test_event_type_names_are_readable() -> None:
    assert event_type_name(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == "ActivityTaskScheduled"
    assert event_type_name(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) == "WorkflowExecutionCancelRequested"
    with pytest.raises(ValueError, match="unknown event type 9999"):
        event_type_name(9999)


def test_a_failure_reads_as_one_line_with_its_causes_and_their_types() -> None:
    outage = Failure(message="simulated outage", application_failure_info=ApplicationFailureInfo(type="SimulatedOutage"))
    assert failure_text(Failure(message="Activity task failed", cause=outage)) == "Activity task failed: SimulatedOutage: simulated outage"
    assert failure_text(Failure(message="", cause=Failure(message="timeout"))) == "timeout", "an empty message adds nothing"


async def test_events_table_has_one_row_per_event(recorded: Recorded) -> None:
    events = events_frame(recorded.all)
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert len(events) == sum(len(h.events) for h in recorded.all)
    assert str(events["time"].dtype) == "datetime64[ns, UTC]" and events["since_start"].dtype.kind == "m"
    for history in recorded.all:
        mine = rows(events, history)
        assert list(mine["event_id"]) == [e.event_id for e in history.events]
        assert mine["run_id"].nunique() == 1 and mine["run_id"].iloc[0] == history.run_id
        assert mine["event_type"].iloc[0] == "WorkflowExecutionStarted"
        assert mine["since_start"].iloc[0] == pd.Timedelta(0) and (mine["since_start"] >= pd.Timedelta(0)).all()


async def test_a_retried_charge_is_one_scheduled_and_one_started_event_carrying_the_last_attempt(recorded: Recorded) -> None:
    events = rows(events_frame(recorded.histories["retried"]), recorded.histories["retried"])
    charge = events[events["activity_type"] == "charge_payment"]
    assert list(charge["event_type"]) == ["ActivityTaskScheduled", "ActivityTaskStarted", "ActivityTaskCompleted"]
    assert charge["activity_id"].nunique() == 1
    started = charge[charge["event_type"] == "ActivityTaskStarted"].iloc[0]
    assert started["attempt"] == 3 and started["identity"].startswith(f"{WORKER} ledger="), "the worker, and the ledger it charges into"
    assert started["failure"].startswith("SimulatedOutage: ") and "attempt 2 of the first 2 set to fail" in started["failure"]
    assert (charge["scheduled_event_id"].iloc[1:] == charge["event_id"].iloc[0]).all()


async def test_a_failed_charge_records_its_failure_on_the_closing_event(recorded: Recorded) -> None:
    events = events_frame(recorded.histories["gave_up"])
    failed = events[events["event_type"] == "ActivityTaskFailed"]
    assert len(failed) == 1 and failed["activity_type"].iloc[0] == "charge_payment"
    assert failed["failure"].iloc[0].startswith("SimulatedOutage: ") and "attempt 3 of the first 3" in failed["failure"].iloc[0]


# Spans


async def test_activity_spans_say_how_each_step_ended(recorded: Recorded) -> None:
    spans = activity_spans(recorded.all)
    expected = {
        "completed": [("validate", 1, "completed"), ("charge", 1, "completed"), ("notify", 1, "completed")],
        "retried": [("validate", 1, "completed"), ("charge", 3, "completed"), ("notify", 1, "completed")],
        "gave_up": [("validate", 1, "completed"), ("charge", 3, "failed"), ("settle", 1, "completed")],
        "card_declined": [("validate", 1, "completed"), ("charge", 1, "completed"), ("settle", 1, "completed")],
        "invalid": [("validate", 1, "completed")],
        "cancelled": [("validate", 1, "completed"), ("charge", 1, "cancelled"), ("settle", 1, "completed")],
    }
    for name, steps in expected.items():
        mine = rows(spans, recorded.histories[name])
        assert list(zip(mine["step"], mine["attempt"], mine["outcome"])) == steps, name
    gave_up = rows(spans, recorded.histories["gave_up"]).set_index("step").loc["charge"]
    assert gave_up["retry_state"] == "maximum attempts reached" and "attempt 3 of the first 3" in gave_up["last_failure"]
    retried = rows(spans, recorded.histories["retried"]).set_index("step").loc["charge"]
    assert "attempt 2 of the first 2" in retried["last_failure"] and pd.isna(retried["retry_state"])
    assert retried["identity"].startswith(f"{WORKER} ledger=")


async def test_activity_spans_times_add_up_and_carry_the_retry_policy(recorded: Recorded) -> None:
    spans = activity_spans(recorded.all)
    assert (spans["scheduled_at"] <= spans["started_at"]).all() and (spans["started_at"] <= spans["closed_at"]).all()
    assert (spans["schedule_to_start"] + spans["run_time"] == spans["schedule_to_close"]).all()
    charge_policy = spans[spans["step"] == "charge"]["retry_policy"].iloc[0]
    assert charge_policy.initial_interval == FAST.initial_interval
    assert charge_policy.maximum_interval == FAST.maximum_interval and charge_policy.maximum_attempts == 3


async def test_workflow_task_spans_cover_every_workflow_task(recorded: Recorded) -> None:
    history = recorded.histories["retried"]
    tasks = workflow_task_spans(history)
    scheduled = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
    assert list(tasks["scheduled_event_id"]) == [e.event_id for e in scheduled]
    assert set(tasks["outcome"]) == {"completed"} and {i.split(" ")[0] for i in tasks["identity"]} == {WORKER}
    assert (tasks["scheduled_at"] <= tasks["started_at"]).all() and (tasks["started_at"] <= tasks["closed_at"]).all()


# Payments and the fleet


async def test_payments_table_reads_status_amount_and_attempts_from_the_history(recorded: Recorded) -> None:
    payments = payments_frame(recorded.all).set_index("workflow_id")
    assert list(payments.reset_index().columns) == list(PAYMENT_COLUMNS)
    expected = {
        "completed": ("completed", "completed", 1),
        "retried": ("completed", "completed", 3),
        "gave_up": ("completed", "failed", 3),
        "card_declined": ("completed", "failed", 1),
        "invalid": ("completed", "declined", None),
        "cancelled": ("cancelled", "refunded", 1),
    }
    for name, (workflow_status, payment_status, charge_attempts) in expected.items():
        row = payments.loc[recorded.histories[name].workflow_id]
        assert (row["workflow_status"], row["payment_status"]) == (workflow_status, payment_status), name
        assert (None if pd.isna(row["charge_attempts"]) else row["charge_attempts"]) == charge_attempts, name
        assert row["payment_id"] == recorded.payment_ids[name] and row["organization_id"] == "org-acme"
        assert row["latency"] == row["closed_at"] - row["started_at"]
    amounts = payments["amount"]
    assert amounts.dtype == object and all(isinstance(a, Decimal) for a in amounts)
    assert amounts.loc[recorded.histories["retried"].workflow_id] == Decimal("12.50")
    assert str(amounts.loc[recorded.histories["invalid"].workflow_id]) == "-5"


async def test_fleet_summary_counts_statuses_latencies_and_attempts(recorded: Recorded) -> None:
    summary = fleet_summary(recorded.all)
    assert summary.total == 6
    assert summary.status_counts.to_dict() == {"completed": 2, "failed": 2, "declined": 1, "refunded": 1}
    assert list(summary.latency.index) == ["p50", "p90", "p95", "p99", "max", "mean"]
    assert summary.latency["p50"] <= summary.latency["p99"] <= summary.latency["max"]
    attempts = summary.attempts_per_step
    assert list(attempts.index) == ["validate", "charge", "notify", "settle"]
    assert attempts.loc["charge"].to_dict() == {1: 3, 3: 2}
    assert attempts.loc["validate"].to_dict() == {1: 6, 3: 0}
    assert summary.retried.to_dict() == {"validate": 0, "charge": 2, "notify": 0, "settle": 0}
    text = str(summary)
    assert text.startswith("6 payments: 2 completed, 2 failed, 1 declined, 1 refunded") and "charge: 3 × 1, 2 × 3" in text
    assert fleet_summary(payments_frame(recorded.all)).status_counts.equals(summary.status_counts)
    with pytest.raises(ValueError, match="lacks"):
        fleet_summary(pd.DataFrame({"workflow_id": []}))


async def test_a_running_payment_reads_as_running(recorded: Recorded) -> None:
    payment = payments_frame(recorded.running).iloc[0]
    assert (payment["workflow_status"], payment["payment_status"]) == ("running", "pending")
    assert pd.isna(payment["closed_at"]) and pd.isna(payment["latency"])
    charge = activity_spans(recorded.running).set_index("step").loc["charge"]
    assert charge["outcome"] == "scheduled" and charge["attempt"] == 0
    assert pd.isna(charge["started_at"]), "the started event is written only when the attempt ends"
    summary = fleet_summary([recorded.running])
    assert summary.status_counts.to_dict() == {"pending": 1} and summary.latency.isna().all()


def test_empty_inputs_give_empty_tables() -> None:
    assert events_frame([]).empty and list(events_frame([]).columns) == list(EVENT_COLUMNS)
    assert activity_spans([]).empty and workflow_task_spans([]).empty
    assert payments_frame([]).empty and list(payments_frame([]).columns) == list(PAYMENT_COLUMNS)
    summary = fleet_summary([])
    assert summary.total == 0 and summary.status_counts.empty and summary.attempts_per_step.empty
    assert str(summary) == "0 payments: none"
    with pytest.raises(TypeError, match="expected WorkflowHistory objects, got str"):
        events_frame(["payment-x"])  # type: ignore[list-item]


# Attempts


async def test_attempts_table_joins_every_attempt_with_the_history(recorded: Recorded) -> None:
    attempts = attempts_frame(recorded.records, recorded.all)
    assert list(attempts.columns) == list(ATTEMPT_COLUMNS)
    retried = attempts[(attempts["payment_id"] == recorded.payment_ids["retried"]) & (attempts["step"] == "charge")]
    assert list(retried["attempt"]) == [1, 2, 3]
    assert list(retried["outcome"]) == ["failed", "failed", "completed"]
    assert set(retried["final_attempt"]) == {3} and set(retried["activity_outcome"]) == {"completed"}
    assert list(retried["configured_gap"]) == [pd.Timedelta(0), pd.Timedelta("100ms"), pd.Timedelta("200ms")]
    # A retry is never due before its configured wait after the failure, and the failure
    # reaches the server after the attempt ended: an observed gap can only be longer.
    assert (retried["gap_before"] >= retried["configured_gap"]).all()
    assert retried["gap_before"].iloc[0] == retried["started_at"].iloc[0] - retried["scheduled_at"].iloc[0]
    # The activity is told when the server made it due: that splits each gap into the
    # backoff the server applied and the trip to the worker.
    assert (retried["due_gap"] + retried["dispatch_delay"] == retried["gap_before"]).all()
    assert (retried["due_gap"].iloc[1:] >= retried["configured_gap"].iloc[1:]).all()
    assert (retried["dispatch_delay"] >= pd.Timedelta(0)).all()
    gave_up = attempts[(attempts["payment_id"] == recorded.payment_ids["gave_up"]) & (attempts["step"] == "charge")]
    assert list(gave_up["outcome"]) == ["failed"] * 3 and set(gave_up["activity_outcome"]) == {"failed"}
    cancelled = attempts[(attempts["payment_id"] == recorded.payment_ids["cancelled"]) & (attempts["step"] == "charge")]
    assert list(cancelled["outcome"]) == ["cancelled"] and set(cancelled["activity_outcome"]) == {"cancelled"}
    assert (attempts["duration"] == attempts["ended_at"] - attempts["started_at"]).all()
    assert len(attempts) == len(recorded.records)


async def test_attempts_table_keeps_only_the_runs_of_the_histories_given(recorded: Recorded) -> None:
    one = attempts_frame(recorded.records, recorded.histories["retried"])
    assert set(one["payment_id"]) == {recorded.payment_ids["retried"]} and len(one) == 5
    alone = attempts_frame(recorded.records)
    assert len(alone) == len(recorded.records)
    assert alone["scheduled_at"].isna().all() and alone["final_attempt"].isna().all()
    assert alone[alone["attempt"] == 1]["gap_before"].isna().all()
    assert (alone[alone["attempt"] > 1]["gap_before"] > pd.Timedelta(0)).all()


def test_attempt_numbers_starting_again_mean_a_new_execution() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        AttemptRecord("p", "charge_payment", attempt, "payment-p", "run", "w", now + timedelta(seconds=i), now + timedelta(seconds=i, milliseconds=5), "failed")
        for i, attempt in enumerate([1, 2, 1, 2, 3])
    ]
    table = attempts_frame(records)
    assert list(table["execution"]) == [1, 1, 2, 2, 2]
    assert list(table["gap_before"].dt.total_seconds().round(3).fillna(-1)) == [-1, 0.995, -1, 0.995, 0.995]
    assert attempts_frame([]).empty and list(attempts_frame([]).columns) == list(ATTEMPT_COLUMNS)


async def test_attempts_per_activity_still_reads_the_final_attempts(recorded: Recorded) -> None:
    assert attempts_per_activity(recorded.histories["retried"]) == {"validate_payment": 1, "charge_payment": 3, "send_notification": 1}
    assert attempts_per_activity(recorded.histories["invalid"]) == {"validate_payment": 1}


async def test_local_activities_are_read_from_their_markers(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    local = dataclasses.replace(TUNED, initial_interval=timedelta(milliseconds=100))
    service = PaymentService(client, task_queue, options=local)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u-1", "12.50", "EUR"), faults=FaultPlan.failing(validate=2))
        await handle.result()
        history = await handle.workflow.fetch_history()
    events = events_frame(history)
    markers = events[events["event_type"] == "MarkerRecorded"]
    local = markers[markers["activity_type"].notna()]
    # The validation waits for its retries on a workflow timer (RETRY_ON_A_TIMER): a marker per attempt.
    assert list(zip(local["activity_type"], local["attempt"])) == [
        ("validate_payment", 1),
        ("validate_payment", 2),
        ("validate_payment", 3),
        ("send_notification", 1),
    ]
    assert len(markers) == len(local) + 1, "and the cancel-before-charge patch's marker, which records no activity"
    assert list(activity_spans(history)["step"]) == ["charge"], "only the charge went through a task queue"
    payment = payments_frame(history).iloc[0]
    assert (payment["validate_attempts"], payment["charge_attempts"], payment["notify_attempts"]) == (3, 1, 1)


async def test_one_final_attempt_for_local_activities_and_a_failing_charge(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    """The attempts the CLI prints, the payments table and the checks agree on a payment run with local activities."""
    local = dataclasses.replace(TUNED, initial_interval=timedelta(milliseconds=100))
    service = PaymentService(client, task_queue, options=local)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u-1", "12.50", "EUR"), faults=FaultPlan.failing(validate=1, charge=2))
        await handle.result()
        history = await handle.workflow.fetch_history()
    assert attempts_per_activity(history) == {"validate_payment": 2, "charge_payment": 3, "send_notification": 1}
    payment = payments_frame(history).iloc[0]
    assert (payment["validate_attempts"], payment["charge_attempts"], payment["notify_attempts"]) == (2, 3, 1)
    assert pd.isna(payment["settle_attempts"])
    assert [checking.final_attempt(history, a) for a in ("validate_payment", "charge_payment", "send_notification")] == [2, 3, 1]
    assert checking.final_attempt(history, "settle_unfinished_payment") is None


async def test_the_checks_read_a_history_as_the_tables_do(recorded: Recorded) -> None:
    history = recorded.histories["gave_up"]
    events = events_frame(history)
    decoded = checking.events_of(history)
    assert [e.name for e in decoded] == list(events["event_type"])
    assert [e.failure for e in decoded] == [None if pd.isna(f) else f for f in events["failure"]]
    charge = activity_spans(history).set_index("step").loc["charge"]
    failed = next(e for e in decoded if e.name == "ActivityTaskFailed")
    assert failed.retry_state == charge["retry_state"] == "maximum attempts reached"
    assert checking.final_attempt(history, "charge_payment") == charge["attempt"] == 3
    assert checking.closing_event(history) == events["event_type"].iloc[-1] == "WorkflowExecutionCompleted"


def test_the_payments_table_has_an_attempts_column_per_step_in_order() -> None:
    assert PAYMENT_COLUMNS[-len(STEP_ORDER):] == tuple(f"{step}_attempts" for step in STEP_ORDER)


# Fetching, saving, loading


async def test_histories_are_fetched_by_query_too(client: Client, recorded: Recorded) -> None:
    found = await fetch_histories(client, query=f"TaskQueue = '{recorded.task_queue}'", concurrency=2, progress=False)
    assert sorted(h.workflow_id for h in found) == sorted(h.workflow_id for h in recorded.all)
    by_pair = await fetch_histories(client, [(h.workflow_id, h.run_id) for h in recorded.all], progress=False)
    assert [h.events for h in by_pair] == [h.events for h in recorded.all]


async def test_fetching_refuses_bad_arguments_and_unknown_workflows(client: Client) -> None:
    with pytest.raises(ValueError, match="either workflows"):
        await fetch_histories(client)
    with pytest.raises(ValueError, match="either workflows"):
        await fetch_histories(client, ["a"], query="TaskQueue = 'x'")
    with pytest.raises(ValueError, match="concurrency must be a whole number >= 1, got 0"):
        await fetch_histories(client, ["a"], concurrency=0)
    with pytest.raises(ValueError, match="not one string"):
        await fetch_histories(client, "payment-x")
    with pytest.raises(ValueError, match=r"workflow ids or \(workflow id, run id\) pairs, got \('payment-x',\)"):
        await fetch_histories(client, [("payment-x",)])  # type: ignore[list-item]
    run_id = str(uuid.uuid4())
    with pytest.raises(HistoryNotFoundError, match=f"no run '{run_id}' of workflow 'payment-"):  # a list pair is a pair
        await fetch_histories(client, [[f"payment-{new_id('missing')}", run_id]], progress=False)  # type: ignore[list-item]
    with pytest.raises(HistoryNotFoundError, match="no workflow 'payment-.*' in namespace 'default'; .*lab.service.search"):
        await fetch_histories(client, [f"payment-{new_id('missing')}"], progress=False)
    with pytest.raises(VisibilityQueryError, match=r"refused the visibility query 'Nope = 1': .*invalid search attribute: Nope"):
        await fetch_histories(client, query="Nope = 1", progress=False)
    with pytest.raises(TypeError, match="query must be a visibility query as a string, not int 5"):
        await fetch_histories(client, query=5)  # type: ignore[arg-type]


async def test_a_payment_id_given_for_a_workflow_id_is_answered_with_the_workflow_id(client: Client, recorded: Recorded) -> None:
    payment_id = recorded.histories["completed"].workflow_id.removeprefix("payment-")
    with pytest.raises(HistoryNotFoundError) as missed:
        await fetch_history(client, payment_id)
    assert isinstance(missed.value, LookupError)
    assert f"did you mean 'payment-{payment_id}'?" in str(missed.value)
    assert (await fetch_history(client, f"payment-{payment_id}")).events == recorded.histories["completed"].events


async def test_an_id_that_is_not_text_is_refused_before_the_server_is_asked(client: Client) -> None:
    with pytest.raises(ValueError, match="workflow_id is not valid text: character 12 is .+, a lone surrogate"):
        await fetch_history(client, "payment-caf\udce9")
    with pytest.raises(ValueError, match="workflow_id must be a string, not bytes"):
        await fetch_history(client, b"payment-x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_id must be a string, not int"):
        await fetch_history(client, "payment-x", 5)  # type: ignore[arg-type]


def test_tables_and_charts_say_what_they_take_when_given_something_else(recorded: Recorded) -> None:
    with pytest.raises(TypeError, match="expected a WorkflowHistory or a list of them, got NoneType: fetch"):
        events_frame(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got str: fetch a payment's history first"):
        activity_spans("payment-x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected WorkflowHistory objects, got str: fetch the histories first"):
        payments_frame(["payment-x"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"timeline_chart draws one payment's history, got list: pass one \(`histories\[0\]`\)"):
        timeline_chart(recorded.all)  # type: ignore[arg-type]


def test_loading_says_which_file_or_folder_is_wrong(tmp_path: Path, recorded: Recorded) -> None:
    with pytest.raises(FileNotFoundError, match="no folder .*: save histories there first"):
        load_histories(tmp_path / "nowhere")
    saved = save_history(recorded.histories["completed"], tmp_path / "one.json")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder: read it with load_history"):
        load_histories(saved)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "latin1.json").write_bytes(b"\xe9\xff")
    (tmp_path / "other.json").write_text('{"events": [{"eventId": "x"}]}')
    for name in ("broken.json", "latin1.json", "other.json"):
        with pytest.raises(ValueError, match=f"{name} is not a workflow history in JSON .*save one with save_history"):
            load_history(tmp_path / name)
    with pytest.raises(ValueError, match="broken.json is not a workflow history"):
        load_histories(tmp_path)
    assert load_history(saved).events == recorded.histories["completed"].events


def test_a_failed_fetch_is_an_error_a_notebook_can_show() -> None:
    """In a real kernel: the exception raised inside its own group's except block hung the cell for ever."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("from payments_lab import open_lab, fetch_histories\nlab = await open_lab()"),
        nbformat.v4.new_code_cell("await fetch_histories(lab.client, ['nope'], progress=False)"),
        nbformat.v4.new_code_cell("await lab.close()"),
    ]
    NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True).execute()
    errors = [output for output in notebook.cells[1].outputs if output.output_type == "error"]
    assert [e.ename for e in errors] == ["HistoryNotFoundError"]
    assert "no workflow 'nope'" in errors[0].evalue and "did you mean 'payment-nope'?" in errors[0].evalue


async def test_histories_round_trip_through_json_files(recorded: Recorded, tmp_path) -> None:  # noqa: ANN001
    paths = save_histories(recorded.all, tmp_path / "histories")
    assert sorted(p.name for p in paths) == sorted(f"{h.workflow_id}.json" for h in recorded.all)
    loaded = load_histories(tmp_path / "histories")
    assert sorted(h.workflow_id for h in loaded) == sorted(h.workflow_id for h in recorded.all)
    by_id = {h.workflow_id: h for h in loaded}
    for history in recorded.all:
        assert list(by_id[history.workflow_id].events) == list(history.events)
    pd.testing.assert_frame_equal(events_frame(loaded).sort_values(["workflow_id", "event_id"], ignore_index=True),
                                  events_frame(recorded.all).sort_values(["workflow_id", "event_id"], ignore_index=True))
    replayer = Replayer(workflows=[PaymentWorkflow], data_converter=DATA_CONVERTER, runtime=quiet_runtime())
    replayed = await replayer.replay_workflow(by_id[recorded.histories["retried"].workflow_id], raise_on_replay_failure=False)
    assert replayed.replay_failure is None, "a history loaded from its file replays offline"
    renamed = save_history(recorded.histories["retried"], tmp_path / "any-name.json")
    assert load_history(renamed, workflow_id="given").workflow_id == "given"
    with pytest.raises(ValueError, match="several runs"):
        save_histories([recorded.histories["retried"]] * 2, tmp_path / "twice")
    (tmp_path / "empty.json").write_text('{"events": []}')
    with pytest.raises(ValueError, match="holds no history events"):
        load_history(tmp_path / "empty.json")


async def test_the_temporal_cli_output_loads_as_the_same_history(dev_server: EmbeddedServer, recorded: Recorded, tmp_path) -> None:  # noqa: ANN001
    history = recorded.histories["retried"]
    process = await asyncio.create_subprocess_exec(
        str(find_temporal_cli()), "workflow", "show", "--address", dev_server.address,
        "--workflow-id", history.workflow_id, "--output", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    path = tmp_path / "from-cli.json"
    path.write_bytes(stdout)
    loaded = load_history(path)
    assert loaded.workflow_id == history.workflow_id, "the start event records the workflow id"
    assert list(loaded.events) == list(history.events)
    assert json.loads(history.to_json()) == json.loads(stdout), "to_json writes what the CLI writes"


# On the time-skipping server: the seed's retry policy, never its clock


async def test_the_seed_policy_gives_one_and_two_second_gaps(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u-1", "12.50", "EUR"), faults=FaultPlan.failing(charge=2))
        await handle.result()
        history = await handle.workflow.fetch_history()
    attempts = attempts_frame(repository.attempts(), history)
    charge = attempts[attempts["step"] == "charge"]
    assert list(charge["configured_gap"]) == [pd.Timedelta(0), pd.Timedelta(seconds=1), pd.Timedelta(seconds=2)]
    assert set(charge["final_attempt"]) == {3}
    assert payments_frame(history)["charge_attempts"].iloc[0] == 3
