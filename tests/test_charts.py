"""Charts drawn headless from real histories: 200 payments with injected charge failures on the dev server."""

from __future__ import annotations

import asyncio
import io
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from test_history import Recorded, recorded  # noqa: F401 - fixtures: one payment per way a payment ends

from conftest import FAST
from payments_lab.activities import PaymentActivities
from payments_lab.charts import fleet_dashboard, retry_chart, swimlanes_chart, timeline_chart
from payments_lab.fleet import FleetPlan, FleetRun, run_fleet
from payments_lab.history import (
    FleetSummary,
    activity_spans,
    attempts_frame,
    attempts_per_activity,
    events_frame,
    fetch_histories,
    fleet_summary,
)
from payments_lab.repository import PaymentRepository
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker

PLAN = FleetPlan(count=200, charge_failure_rate=0.3, max_charge_failures=2, decline_rate=0.05, seed=11, prefix="chart")
"""The lessons' fleet: 200 payments, 30 % with 1 or 2 failing charge attempts, 5 % declined cards."""

FLEET_OPTIONS = replace(FAST, charge_heartbeat_timeout=timedelta(seconds=10))
"""FAST's retries, with a heartbeat timeout 200 payments at once do not reach. On a busy machine (CI, another
process using a core) the attempt log held 293 charge attempts for the 290 planned: with 200 payments in one worker,
FAST's 2 s heartbeat timeout is the one timeout a slow attempt can reach (the charge's own is 30 s)."""


@dataclass(frozen=True)
class Fleet:
    """A fleet that ran, and what the analysis layer makes of it."""

    run: FleetRun
    histories: list[WorkflowHistory]
    attempts: pd.DataFrame
    summary: FleetSummary

    def history(self, payment_id: str) -> WorkflowHistory:
        return next(h for h in self.histories if h.workflow_id == f"payment-{payment_id}")

    def failed_twice(self) -> str:
        """A completed payment whose charge failed twice."""
        return next(p.payment_id for p in self.run.payments if p.faults.charge.fail_first == 2 and p.status == "completed")


@pytest.fixture(scope="module")
async def fleet(client: Client) -> Fleet:
    repository = PaymentRepository()
    task_queue = f"test-charts-{uuid.uuid4().hex[:8]}"
    async with BackgroundWorker(client, task_queue, PaymentActivities(repository, identity="chart-worker")):
        run = await run_fleet(PaymentService(client, task_queue), PLAN, options=FLEET_OPTIONS, progress=False)
    histories = await fetch_histories(client, run.workflow_ids, progress=False)
    return Fleet(run, histories, attempts_frame(repository.attempts(), histories), fleet_summary(histories))


def rendered(figure: Figure) -> Figure:
    """Draw the figure to PNG, as a notebook would, and hand it back for inspection."""
    assert isinstance(figure, Figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")
    return figure


def patches(ax: Axes, gid: str) -> list:
    return [p for p in ax.patches if p.get_gid() == gid]


def line(ax: Axes, gid: str):  # noqa: ANN201
    (found,) = [line for line in ax.lines if line.get_gid() == gid]
    return found


def collection(ax: Axes, gid: str):  # noqa: ANN201
    (found,) = [c for c in ax.collections if c.get_gid() == gid]
    return found


def legend_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


async def test_200_payments_give_every_table_and_chart_in_one_call_each(fleet: Fleet) -> None:
    assert len(fleet.run) == 200 and len(fleet.histories) == 200
    assert set(fleet.run.status_counts) <= {"completed", "failed"}
    events = events_frame(fleet.histories)
    assert len(events) == sum(len(h.events) for h in fleet.histories) and events["workflow_id"].nunique() == 200
    assert fleet.attempts["payment_id"].nunique() == 200
    planned_charges = sum(1 if p.faults.charge.decline else p.faults.charge.fail_first + 1 for p in fleet.run.payments)
    assert (fleet.attempts["step"] == "charge").sum() == planned_charges
    assert fleet.summary.total == 200 and fleet.summary.status_counts.to_dict() == fleet.run.status_counts
    payment = fleet.failed_twice()
    for figure in (
        timeline_chart(fleet.history(payment), fleet.attempts),
        retry_chart(fleet.attempts, payment),
        swimlanes_chart(fleet.histories, fleet.attempts),
        fleet_dashboard(fleet.summary),
    ):
        rendered(figure)


async def test_the_retry_chart_of_a_charge_that_failed_twice_shows_three_attempts_at_the_configured_gaps(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    figure = rendered(retry_chart(fleet.attempts, payment, "charge"))
    (ax,) = figure.axes
    logged = fleet.attempts[(fleet.attempts["payment_id"] == payment) & (fleet.attempts["step"] == "charge")]
    assert list(logged["attempt"]) == [1, 2, 3] and list(logged["outcome"]) == ["failed", "failed", "completed"]
    assert attempts_per_activity(fleet.history(payment))["charge_payment"] == 3, "the history's final attempt"

    assert len(patches(ax, "attempt")) == 3
    starts = collection(ax, "observed-attempts").get_offsets()[:, 0]
    assert len(starts) == 3
    origin = logged["started_at"].iloc[0]
    assert np.allclose(starts, (logged["started_at"] - origin).dt.total_seconds())
    due = line(ax, "configured-attempts").get_xdata()
    ends = (logged["ended_at"] - origin).dt.total_seconds().to_numpy()
    assert np.allclose(due, [0, ends[0] + 0.1, ends[1] + 0.2]), "each retry due its configured wait after the failure"
    gaps = [t.get_text() for t in ax.texts if t.get_gid() == "gap-label"]
    assert len(gaps) == 2 and gaps[0].endswith("policy 0.10 s") and gaps[1].endswith("policy 0.20 s")
    assert all(t.startswith("waited ") for t in gaps)
    assert "3 attempts in the attempt log" in ax.get_title() and "the history's final attempt: 3" in ax.get_title()
    assert ax.get_xlabel() == "seconds since the first attempt started" and ax.get_ylabel() == "attempts"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["due by the retry policy", "attempt log"]
    assert legend_texts(ax) == ["attempt completed", "attempt failed", "due: previous end + configured wait"]


async def test_the_retry_chart_needs_a_policy_and_an_attempt(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    with pytest.raises(ValueError, match=r"no 'charge' attempt of payment 'nobody' in the attempts table, which holds other payments, e\.g\. \["):
        retry_chart(fleet.attempts, "nobody")
    with pytest.raises(ValueError, match=r"no 'settle' attempt .* holds that payment's steps \['charge', 'notify', 'validate'\]: build it with attempts_frame"):
        retry_chart(fleet.attempts, payment, "settle")
    without_history = attempts_frame([], None)
    with pytest.raises(ValueError, match="no 'charge' attempt .* holds no attempt: build it with attempts_frame"):
        retry_chart(without_history, payment)
    log_only = fleet.attempts.assign(configured_gap=pd.NaT)
    with pytest.raises(ValueError, match="does not know the retry policy"):
        retry_chart(log_only, payment)
    figure = rendered(retry_chart(log_only, f"payment-{payment}", "charge_payment", policy=FAST.retry_policy))
    assert len(line(figure.axes[0], "configured-attempts").get_xdata()) == 3
    with pytest.raises(ValueError, match="lacks"):
        retry_chart(fleet.attempts.drop(columns=["gap_before"]), payment)


async def test_the_timeline_shows_tasks_activities_attempts_and_the_outcome(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    history = fleet.history(payment)
    (ax,) = rendered(timeline_chart(history, fleet.attempts)).axes
    tasks = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
    assert len(patches(ax, "workflow-task")) == len(tasks)
    assert len(patches(ax, "activity")) == 3
    assert len(patches(ax, "attempt")) == 5, "validate, three charges, notify"
    assert len(line(ax, "failed-attempts").get_xdata()) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["workflow tasks", "validate", "charge", "notify"]
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("#")] == ["#1", "#2", "#3"]
    (outcome,) = [t for t in ax.texts if t.get_gid() == "outcome"]
    assert outcome.get_text().startswith("payment completed (workflow completed) after ")
    assert ax.get_title() == f"Timeline of payment-{payment}"
    assert ax.get_xlabel() == "seconds since the workflow started" and ax.get_ylabel() == "step"
    assert legend_texts(ax) == [
        "workflow task", "activity: scheduled → closed", "attempt completed", "attempt failed", "failed attempt",
        "workflow closed (completed)",
    ]


async def test_an_attempt_lost_with_its_worker_ends_where_the_next_one_starts(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    history = fleet.history(payment)
    attempts = fleet.attempts.copy()
    # As the log reads after a kill -9: attempt 1 started and never recorded its end.
    first = (attempts["payment_id"] == payment) & (attempts["step"] == "charge") & (attempts["attempt"] == 1)
    attempts.loc[first, ["outcome", "ended_at"]] = ["running", pd.NaT]
    (ax,) = rendered(timeline_chart(history, attempts)).axes
    charge_bars = [p for p in patches(ax, "attempt") if round(p.get_y() + p.get_height() / 2) == 2]
    second_start = attempts.loc[(attempts["payment_id"] == payment) & (attempts["step"] == "charge") & (attempts["attempt"] == 2), "started_at"].iloc[0]
    origin = pd.Timestamp(history.events[0].event_time.ToNanoseconds(), unit="ns", tz="UTC")
    lost_end = charge_bars[0].get_x() + charge_bars[0].get_width()
    assert lost_end <= (second_start - origin).total_seconds() + 0.05, "the lost attempt stops at its successor"
    assert "attempt lost" in legend_texts(ax) and "attempt running" not in legend_texts(ax)
    assert len(line(ax, "failed-attempts").get_xdata()) == 2


async def test_the_timeline_without_the_attempt_log_says_what_the_history_lacks(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    (ax,) = rendered(timeline_chart(fleet.history(payment))).axes
    assert len(patches(ax, "attempt")) == 3, "only the last attempt of each activity is in the history"
    assert "attempt 3; 2 earlier attempts not in the history" in [t.get_text() for t in ax.texts]
    assert not [line for line in ax.lines if line.get_gid() == "failed-attempts"]
    with pytest.raises(ValueError, match="holds no events"):
        timeline_chart(WorkflowHistory("empty", []))


async def test_a_failed_payment_timeline_ends_with_the_settle_step(fleet: Fleet) -> None:
    failed = next(p.payment_id for p in fleet.run.payments if p.status == "failed")
    (ax,) = rendered(timeline_chart(fleet.history(failed), fleet.attempts)).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["workflow tasks", "validate", "charge", "settle"]
    (outcome,) = [t for t in ax.texts if t.get_gid() == "outcome"]
    assert outcome.get_text().startswith("payment failed (workflow completed)")


@pytest.mark.parametrize(
    ("name", "steps", "outcome"),
    [
        ("cancelled", ["validate", "charge", "settle"], "payment refunded (workflow cancelled)"),
        ("invalid", ["validate"], "payment declined (workflow completed)"),
        ("gave_up", ["validate", "charge", "settle"], "payment failed (workflow completed)"),
    ],
)
async def test_the_timeline_tells_how_each_kind_of_payment_ended(recorded: Recorded, name: str, steps: list[str], outcome: str) -> None:
    attempts = attempts_frame(recorded.records, recorded.all)
    (ax,) = rendered(timeline_chart(recorded.histories[name], attempts)).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["workflow tasks", *steps]
    (text,) = [t for t in ax.texts if t.get_gid() == "outcome"]
    assert text.get_text().startswith(outcome)


async def test_the_timeline_of_a_running_payment_says_so(recorded: Recorded) -> None:
    (ax,) = rendered(timeline_chart(recorded.running, attempts_frame(recorded.records, recorded.running))).axes
    (text,) = [t for t in ax.texts if t.get_gid() == "outcome"]
    assert text.get_text().startswith("still running after ")
    assert len(patches(ax, "activity")) == 2 and len(patches(ax, "attempt")) == 2, "validate, and the charge in progress"


async def test_a_payment_terminated_or_timed_out_is_not_shown_pending(client: Client) -> None:
    """Off the script: a facilitator terminates a payment, another times out, both before a worker took them. Their
    search attribute still says `pending`, and the fleet summary, the dashboard, the timeline and the metrics said so."""
    from datetime import timedelta

    from matplotlib.colors import to_hex

    from payments_lab.charts import STATUS_COLOURS
    from payments_lab.domain import PaymentRequest
    from payments_lab.history import outcomes, payments_frame

    service = PaymentService(client, f"test-ended-first-{uuid.uuid4().hex[:8]}")  # no worker polls it
    terminated = await service.start(PaymentRequest(f"t-{uuid.uuid4().hex[:8]}", "org-acme", "u-1", "11.00", "EUR"))
    await terminated.workflow.terminate("a facilitator stopped it")
    timed_out = await service.start(
        PaymentRequest(f"o-{uuid.uuid4().hex[:8]}", "org-acme", "u-1", "12.00", "EUR"), execution_timeout=timedelta(seconds=1)
    )
    while (await timed_out.status()).is_running:
        await asyncio.sleep(0.2)
    histories = await fetch_histories(client, [terminated.workflow_id, timed_out.workflow_id], progress=False)

    table = payments_frame(histories)
    assert list(table["payment_status"]) == ["pending", "pending"], "what the search attribute says, as it is"
    assert list(outcomes(table)) == ["terminated", "timed out"]
    assert fleet_summary(histories).status_counts.to_dict() == {"terminated": 1, "timed out": 1}
    (ax,) = rendered(timeline_chart(histories[1])).axes
    (text,) = [t for t in ax.texts if t.get_gid() == "outcome"]
    assert text.get_text().startswith("workflow timed out after ") and text.get_text().endswith("the payment left pending")
    assert to_hex(text.get_color()) == STATUS_COLOURS["timed out"].lower()
    assert legend_texts(ax)[-1] == "workflow closed (timed out)"
    metrics = await service.metrics()
    assert metrics.by_status == {"terminated": 1, "timed out": 1} and metrics.running == 0


async def test_swimlanes_draw_one_lane_per_payment(fleet: Fleet) -> None:
    (ax,) = rendered(swimlanes_chart(fleet.histories, fleet.attempts, limit=25)).axes
    shown = fleet.histories[:25]
    ids = [h.workflow_id.removeprefix("payment-") for h in shown]
    assert [t.get_text() for t in ax.get_yticklabels()] == ids
    assert len(patches(ax, "activity")) == len(activity_spans(shown))
    lost = fleet.attempts[fleet.attempts["payment_id"].isin(ids) & fleet.attempts["outcome"].isin(["failed", "cancelled"])]
    markers = [line for line in ax.lines if line.get_gid() == "failed-attempts"]
    assert sum(len(m.get_xdata()) for m in markers) == len(lost)
    assert len(collection(ax, "outcomes").get_offsets()) == 25
    assert ax.get_title() == "25 payments side by side (the first 25 of 200)"
    assert ax.get_xlabel() == "seconds since each payment started" and ax.get_ylabel() == "payment"
    assert legend_texts(ax)[:3] == ["validate", "charge", "notify"] and "ended completed" in legend_texts(ax)


async def test_swimlanes_on_one_clock_and_without_the_attempt_log(fleet: Fleet) -> None:
    (ax,) = rendered(swimlanes_chart(fleet.histories, align="clock")).axes
    assert len(ax.get_yticklabels()) == 40, "the default limit"
    assert ax.get_xlabel() == "seconds since the first payment started"
    retried = activity_spans(fleet.histories[:40]).query("attempt > 1")
    if len(retried):
        assert len(line(ax, "retried-activities").get_xdata()) == len(retried)
    with pytest.raises(ValueError, match="align must be 'start' or 'clock', got 'wall'"):
        swimlanes_chart(fleet.histories, align="wall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be a whole number >= 1, got 0"):
        swimlanes_chart(fleet.histories, limit=0)
    with pytest.raises(ValueError, match=r"no history to draw: pass the histories .* fetch_histories\(lab.client, query="):
        swimlanes_chart([])


async def test_the_dashboard_shows_outcomes_latency_and_attempts(fleet: Fleet) -> None:
    figure = rendered(fleet_dashboard(fleet.summary))
    outcomes, latency, attempts = figure.axes
    counts = fleet.summary.status_counts
    assert [t.get_text() for t in outcomes.get_xticklabels()] == list(counts.index)
    assert [p.get_height() for p in outcomes.patches] == list(counts)
    assert [t.get_text() for t in outcomes.texts] == [str(n) for n in counts], "each bar labelled with its count"
    assert outcomes.get_ylabel() == "payments" and outcomes.get_title() == "Outcomes"
    percentiles = [line for line in latency.lines if line.get_gid() == "percentile"]
    assert len(percentiles) == 3 and [t.split()[0] for t in legend_texts(latency)] == ["p50", "p95", "p99"]
    assert sum(p.get_height() for p in latency.patches) == 200, "every payment in the histogram"
    assert latency.get_xlabel() == "seconds from start to end"
    table = fleet.summary.attempts_per_step
    assert [t.get_text() for t in attempts.get_xticklabels()] == list(table.index)
    assert len(attempts.patches) == table.size
    heights: dict[float, float] = {}
    for patch in attempts.patches:
        heights[patch.get_x()] = heights.get(patch.get_x(), 0) + patch.get_height()
    assert sorted(heights.values(), reverse=True)[0] == 200, "every payment validated"
    assert legend_texts(attempts) == ["1 attempt", "2 attempts", "3 attempts"]
    assert figure.get_suptitle().startswith("200 payments: ")
    assert rendered(fleet_dashboard(fleet.histories[:10])).get_suptitle().startswith("10 payments")
    with pytest.raises(ValueError, match="no payment to show: pass the histories of payments that ran"):
        fleet_dashboard([])


async def test_charts_draw_into_the_axes_they_are_given(fleet: Fleet) -> None:
    payment = fleet.failed_twice()
    figure = Figure(figsize=(12, 8), layout="constrained")
    top, bottom = figure.subplots(2, 1)
    assert timeline_chart(fleet.history(payment), fleet.attempts, ax=top) is figure
    assert retry_chart(fleet.attempts, payment, ax=bottom) is figure
    assert len(patches(top, "attempt")) == 5 and len(patches(bottom, "attempt")) == 3
    rendered(figure)
