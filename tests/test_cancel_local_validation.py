"""A cancellation that arrives while validation runs as a local activity (lesson 08's tuned options), on the real dev server."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from conftest import new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.messages import TUNED
from payments_lab.repository import PaymentRepository
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker

VALIDATION_SECONDS = 1.5
"""How long each validate attempt takes: long enough to cancel at several moments inside it."""

CANCEL_AFTER = (0.0, 0.2, 0.5, 0.9, 1.3)
"""When each payment is cancelled, in seconds after its validate attempt started."""


async def _cancel_during_validation(service: PaymentService, repository: PaymentRepository, after: float) -> tuple[str, PaymentStatus, int]:
    request = PaymentRequest(new_id("lv"), "org-acme", "u-1", "20.00", "EUR")  # type: ignore[arg-type]
    options = dataclasses.replace(TUNED, initial_interval=timedelta(milliseconds=100))
    handle = await service.start(request, options=options, faults=FaultPlan(validate=StepFaults(delay=VALIDATION_SECONDS)))
    async with asyncio.timeout(10):
        while not repository.attempts(request.payment_id):  # the local validate attempt is under way
            await asyncio.sleep(0.01)
    await asyncio.sleep(after)
    await handle.cancel()
    # A lost cancel shows up here as a payment that completes, or as one that never ends.
    async with asyncio.timeout(20):
        result = await handle.result()
    description = await handle.workflow.describe()
    assert description.status is WorkflowExecutionStatus.CANCELED, f"{request.payment_id}: workflow {description.status}"
    return request.payment_id, result.status, repository.charge_count(request.payment_id)


async def test_a_cancel_while_validation_runs_locally_always_ends_the_payment_cancelled(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        # Concurrently, as a learner's fleet would: the moments differ, one worker runs all of them.
        outcomes = await asyncio.gather(*(_cancel_during_validation(service, repository, after) for after in CANCEL_AFTER))
        async with asyncio.timeout(10):  # no validate attempt is left running behind the cancelled payments
            while any(a.ended_at is None for payment_id, _, _ in outcomes for a in repository.attempts(payment_id)):
                await asyncio.sleep(0.05)
        histories = [await service.handle(payment_id).history() for payment_id, _, _ in outcomes]
    assert [(status, charges) for _, status, charges in outcomes] == [(PaymentStatus.CANCELLED, 0)] * len(CANCEL_AFTER)
    for (payment_id, _, _), history in zip(outcomes, histories, strict=True):
        assert [a.activity for a in repository.attempts(payment_id)] == ["validate_payment", "settle_unfinished_payment"]
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert scheduled == ["settle_unfinished_payment"], f"{payment_id}: the charge was never even scheduled"


async def test_an_early_return_cancelled_during_its_local_validation_answers_cancelled(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue)
    request = PaymentRequest(new_id("lv"), "org-acme", "u-1", "21.00", "EUR")  # type: ignore[arg-type]
    async with BackgroundWorker(client, task_queue, activities):
        starting = asyncio.create_task(
            service.start_early(request, options=TUNED, faults=FaultPlan(validate=StepFaults(delay=VALIDATION_SECONDS)))
        )
        async with asyncio.timeout(10):
            while not repository.attempts(request.payment_id):
                await asyncio.sleep(0.01)
        await service.cancel(request.payment_id)
        async with asyncio.timeout(20):
            started = await starting
            result = await started.handle.result()
    # As with a regular validation (test_early_return): the cancel is taken in before the answer.
    assert not started.answer.accepted and started.answer.status is PaymentStatus.CANCELLED
    assert result.status is PaymentStatus.CANCELLED and repository.charge_count(request.payment_id) == 0


async def test_a_quick_local_validation_costs_no_extra_workflow_task(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(PaymentRequest(new_id("lv"), "org-acme", "u-1", "22.00", "EUR"), options=TUNED, eager_start=True)  # type: ignore[arg-type]
        assert (await handle.result()).status is PaymentStatus.COMPLETED
        names = [EventType.Name(e.event_type) for e in (await handle.history()).events]
    # A validation of a few ms widens the held-back window by no more than a workflow task
    # does anyway (HELD_BACK_LIMIT): the tuned payment keeps its two tasks, with no timer.
    assert names.count("EVENT_TYPE_WORKFLOW_TASK_COMPLETED") == 2 and "EVENT_TYPE_TIMER_STARTED" not in names


async def test_a_slow_local_validation_takes_one_more_task_and_replays_the_same(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    from payments_lab.evolution import replay
    from payments_lab.workflows import PaymentWorkflow

    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        slow = FaultPlan(validate=StepFaults(delay=0.2))
        handle = await service.start(PaymentRequest(new_id("lv"), "org-acme", "u-1", "23.00", "EUR"), options=TUNED, faults=slow)  # type: ignore[arg-type]
        assert (await handle.result()).status is PaymentStatus.COMPLETED
        history = await handle.history()
    names = [EventType.Name(e.event_type) for e in history.events]
    assert names.count("EVENT_TYPE_WORKFLOW_TASK_COMPLETED") == 3 and names.count("EVENT_TYPE_TIMER_FIRED") == 1
    # The decision rests on workflow time, which a replay rebuilds from the validation's marker.
    (outcome,) = await replay([history], PaymentWorkflow)
    assert outcome.ok, outcome.error


async def test_a_cancel_while_a_local_validation_waits_for_its_retry_is_taken_in_at_once(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue)
    request = PaymentRequest(new_id("lv"), "org-acme", "u-1", "24.00", "EUR")  # type: ignore[arg-type]
    async with BackgroundWorker(client, task_queue, activities):
        # The seed's policy: the second attempt comes 1 s after the first fails, the third 2 s later.
        handle = await service.start(request, options=TUNED, faults=FaultPlan.failing(validate=2))
        async with asyncio.timeout(10):
            while not repository.attempts(request.payment_id) or repository.attempts(request.payment_id)[0].ended_at is None:
                await asyncio.sleep(0.01)
        await handle.cancel()
        async with asyncio.timeout(2):  # well before the retries would have run out (3 s)
            result = await handle.result()
    assert result.status is PaymentStatus.CANCELLED and repository.charge_count(request.payment_id) == 0
    assert [(a.activity, a.outcome) for a in repository.attempts(request.payment_id)] == [
        ("validate_payment", "failed"),
        ("settle_unfinished_payment", "completed"),
    ], "no retry ran after the cancel"
