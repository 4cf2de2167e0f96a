"""Tests of watching a payment while it runs: what describe() says of a retrying activity."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client

from conftest import new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import FaultPlan
from payments_lab.live import draw_now, pending_activities, watch
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker


async def test_a_retrying_charge_is_seen_live_and_drawn(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    # Retries 2 s apart: the figure is drawn while the attempt seen waiting still waits, even on
    # a loaded machine (with 500 ms, CI once drew it already running).
    options = PaymentOptions(initial_interval=timedelta(seconds=2), backoff_coefficient=1.0, maximum_attempts=4)
    service = PaymentService(client, task_queue, options=options)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u", "5", "EUR"), faults=FaultPlan.failing(charge=3))
        pending = []
        while not pending or pending[0].next_attempt_at is None:
            await asyncio.sleep(0.05)
            pending = await pending_activities(handle)
        (charge,) = pending
        assert charge.activity_type == "charge_payment" and charge.attempt >= 2
        assert charge.last_failure is not None and "simulated processor outage" in charge.last_failure
        assert charge.retry_interval is not None and charge.retry_interval >= timedelta(seconds=2)
        figure = await draw_now(handle, repository)
        title = figure.axes[0].get_title()
        assert f"charge_payment: attempt {charge.attempt} due in" in title
        assert "still running after" in " ".join(t.get_text() for t in figure.axes[0].texts)
        result = await watch(handle, repository)
    assert result.status is PaymentStatus.COMPLETED
    assert await pending_activities(handle) == []
