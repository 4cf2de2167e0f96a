"""Tests of side-by-side latency measurement."""

from __future__ import annotations

import asyncio

import pytest

from payments_lab.latency import LatencyReport, compare_latency, latency_table


async def test_runners_alternate_and_are_all_measured() -> None:
    calls: list[str] = []

    def runner(name: str, seconds: float):  # noqa: ANN202
        async def run() -> None:
            calls.append(name)
            await asyncio.sleep(seconds)

        return run

    reports = await compare_latency({"fast": runner("fast", 0), "slow": runner("slow", 0.02)}, rounds=3, per_round=2, warmup=1)
    assert calls[:2] == ["fast", "slow"], "one warm-up each"
    assert calls[2:] == ["fast", "fast", "slow", "slow"] * 3
    assert len(reports["fast"].samples_ms) == 6
    assert reports["slow"].median_ms >= 20 > reports["fast"].median_ms
    table = latency_table(reports)
    assert list(table.index) == ["fast", "slow"] and list(table.columns) == ["median_ms", "p90_ms", "runs"]


def test_percentiles() -> None:
    report = LatencyReport("x", tuple(float(v) for v in range(1, 11)))
    assert report.median_ms == 5.5
    assert report.p90_ms == pytest.approx(9.1)


async def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one way"):
        await compare_latency({})
    with pytest.raises(ValueError, match="rounds and per_round must be >= 1"):
        await compare_latency({"x": asyncio.sleep}, rounds=0)  # type: ignore[dict-item]


async def test_the_breakdown_adds_up_and_the_tuned_payment_waits_less(client, task_queue, activities) -> None:  # noqa: ANN001
    from conftest import new_id
    from payments_lab.domain import PaymentRequest
    from payments_lab.latency import BREAKDOWN_PARTS, breakdown_chart, time_breakdown
    from payments_lab.messages import TUNED
    from payments_lab.service import PaymentService
    from payments_lab.worker import BackgroundWorker

    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        default = await service.start(PaymentRequest(new_id(), "org-acme", "u", "1", "EUR"))
        await default.result()
        tuned = await service.start(PaymentRequest(new_id(), "org-acme", "u", "1", "EUR"), options=TUNED, eager_start=True)
        await tuned.result()
    slow = time_breakdown(await default.workflow.fetch_history())
    fast = time_breakdown(await tuned.workflow.fetch_history())
    description = await default.workflow.describe()
    total_ms = (description.close_time - description.start_time).total_seconds() * 1000
    assert list(slow.index) == list(BREAKDOWN_PARTS)
    assert abs(slow.sum() - total_ms) < 1
    assert all(v >= 0 for v in slow.iloc[:3]) and slow["running activities"] > 0
    # Not a timed comparison (the activities are no-ops, their run times are noise): count them.
    scheduled = [
        sum(1 for e in (await h.workflow.fetch_history()).events if e.HasField("activity_task_scheduled_event_attributes"))
        for h in (default, tuned)
    ]
    assert scheduled == [3, 1], "two of three steps ran as local activities"
    figure = breakdown_chart({"seed's options": slow, "tuned": fast})
    ax = figure.axes[0]
    assert len(ax.patches) == 2 * len(BREAKDOWN_PARTS)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["seed's options", "tuned"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(BREAKDOWN_PARTS)
    with pytest.raises(ValueError, match="at least one"):
        breakdown_chart({})


async def test_a_continuing_runner_is_timed_to_its_answer_and_finished_before_the_next() -> None:
    from payments_lab.latency import Continuing

    finished: list[int] = []
    running: list[int] = []

    async def tail(n: int) -> None:
        await asyncio.sleep(0.03)
        finished.append(n)

    async def early() -> Continuing:
        running.append(len(finished))
        return Continuing(tail(len(running)))

    reports = await compare_latency({"early": early}, rounds=2, per_round=2, warmup=1, spacing=0.001)
    assert running == [0, 1, 2, 3, 4], "each run starts once the previous one's rest has finished"
    assert reports["early"].median_ms < 30 and len(finished) == 5
    with pytest.raises(ValueError, match="spacing >= 0"):
        await compare_latency({"early": early}, spacing=-1)


NAPS_AT_ONCE = '''from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@workflow.defn
class NapsAtOnce:
    @workflow.run
    async def run(self) -> list[str]:
        naps = [workflow.execute_activity(nap, 0.3, start_to_close_timeout=timedelta(seconds=10)) for _ in range(4)]
        return list(await asyncio.gather(*naps))
'''


async def test_the_breakdown_counts_retry_waits_apart_from_workers_and_overlapping_activities_once(open_test_lab) -> None:  # noqa: ANN001
    """Off the script: a retried charge's 1.5 s of backoff was told as "waiting for a worker" while one polled all along,
    and four activities run at once made "server and network" negative."""
    from datetime import timedelta

    from payments_lab.faults import FaultPlan
    from payments_lab.latency import time_breakdown
    from payments_lab.messages import PaymentOptions

    lab = await open_test_lab("breakdown")
    retried = await lab.start(
        lab.request("16.00"), faults=FaultPlan.failing(charge=2), options=PaymentOptions(initial_interval=timedelta(seconds=0.5)),
        show_link=False,
    )
    await retried.result()
    parts = time_breakdown(await retried.workflow.fetch_history())
    total_ms = sum(parts)
    assert all(parts >= 0) and total_ms >= 1500, "two retries, 0.5 s then 1 s apart"
    assert parts["server and network"] >= 1400 and parts["waiting for a worker"] < 500, parts.to_dict()

    loaded = await lab.load_module("naps", NAPS_AT_ONCE)
    naps = await lab.client.start_workflow(loaded.workflows["NapsAtOnce"].run, id=f"naps-{lab.request('1').payment_id}", task_queue=lab.task_queue)
    await naps.result()
    history = await naps.fetch_history()
    parts = time_breakdown(history)
    description = await naps.describe()
    assert description.close_time is not None
    assert all(parts >= 0), parts.to_dict()
    assert abs(sum(parts) - (description.close_time - description.start_time).total_seconds() * 1000) < 1
    assert 300 <= parts["running activities"] < 4 * 300, "four naps at once are one stretch of time, not four"
