"""Tests of the payment workflow on the time-skipping test server and on the real dev server."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conftest import FAST, new_id
from payments_lab.activities import PaymentActivities, SettleInput
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history import activity_spans, attempts_per_activity
from payments_lab.messages import TUNED, PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_STATUS
from payments_lab.service import DuplicatePaymentError, PaymentService
from payments_lab.worker import BackgroundWorker
from payments_lab.workflows import PaymentWorkflow


def request(amount: str = "12.50", **changes: object) -> PaymentRequest:
    fields: dict[str, object] = dict(
        payment_id=new_id(), organization_id="org-acme", user_id="u-1", amount=amount, currency="EUR"
    )
    fields.update(changes)
    return PaymentRequest(**fields)  # type: ignore[arg-type]


# On the time-skipping server: the seed's real retry intervals, skipped in no time.


async def test_success(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request()
        result = await service.process(paid)
    assert result.status is PaymentStatus.COMPLETED and result.success and result.notified
    assert result.message == "Payment processed successfully"
    assert result.charge_id == repository.ledger(paid.payment_id)[0].entry_id
    assert repository.find_by_id(paid.payment_id).status is PaymentStatus.COMPLETED  # type: ignore[union-attr]
    assert [n.channel for n in repository.notifications(paid.payment_id)] == ["email", "webhook"]


async def test_decimal_round_trips_exactly(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request("0.10")
        result = await service.process(paid)
    assert result.amount == Decimal("0.10") and str(result.amount) == "0.10"
    assert isinstance(result.amount, Decimal)
    entry = repository.ledger(paid.payment_id)[0]
    assert str(entry.amount) == "0.10"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": "-5"}, "amount must be greater than zero"),
        ({"amount": "12.345"}, "more decimals than EUR allows"),
        ({"amount": "NaN"}, "not a finite number"),
        ({"amount": "5000000"}, "above the limit"),
        ({"currency": "XYZ"}, "not an ISO 4217 code"),
        ({"organization_id": "org-unknown"}, "organization 'org-unknown' does not exist"),
        ({"user_id": " "}, "user_id is required"),
    ],
)
async def test_declined_requests_change_nothing_and_are_not_retried(
    time_skipping: WorkflowEnvironment,
    task_queue: str,
    activities: PaymentActivities,
    repository: PaymentRepository,
    changes: dict[str, object],
    expected: str,
) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    declined = request(**changes)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        handle = await service.start(declined)
        result = await handle.result()
        history = await handle.workflow.fetch_history()
    assert result.status is PaymentStatus.DECLINED and not result.success
    assert expected in result.message
    assert repository.count() == 0 and repository.ledger() == [] and repository.notifications() == []
    assert attempts_per_activity(history) == {"validate_payment": 1}


async def test_charge_retried_with_the_seed_policy_then_completed(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)  # seed defaults: 1 s, x2, 3 attempts
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan.failing(charge=2))
        result = await handle.result()
        history = await handle.workflow.fetch_history()
    assert result.status is PaymentStatus.COMPLETED
    assert attempts_per_activity(history)["charge_payment"] == 3
    assert [a.attempt for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"] == [1, 2, 3]
    assert repository.charge_count(paid.payment_id) == 1


async def test_an_hour_of_backoff_passes_in_no_time(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    hourly = PaymentOptions(initial_interval=timedelta(minutes=30), maximum_interval=timedelta(hours=1), maximum_attempts=4)
    service = PaymentService(time_skipping.client, task_queue, options=hourly)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        result = await service.process(request(), faults=FaultPlan.failing(charge=3))
    assert result.status is PaymentStatus.COMPLETED


async def test_retries_exhausted_fail_the_payment_without_charging(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request()
        result = await service.process(paid, faults=FaultPlan.failing(charge=5))
    assert result.status is PaymentStatus.FAILED
    assert "charge gave up" in result.message and "maximum attempts reached" in result.message
    assert repository.ledger(paid.payment_id) == []
    assert repository.find_by_id(paid.payment_id).status is PaymentStatus.FAILED  # type: ignore[union-attr]


async def test_a_declined_card_fails_at_once(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request()
        result = await service.process(paid, faults=FaultPlan(charge=StepFaults(decline=True)))
    assert result.status is PaymentStatus.FAILED and "card declined" in result.message
    assert [a.attempt for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"] == [1]


async def test_a_failed_notification_does_not_fail_the_payment(time_skipping: WorkflowEnvironment, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(time_skipping.client, task_queue)
    async with BackgroundWorker(time_skipping.client, task_queue, activities):
        paid = request()
        result = await service.process(paid, faults=FaultPlan.failing(notify=10))
    assert result.status is PaymentStatus.COMPLETED and not result.notified
    assert "notification failed" in result.message
    assert repository.charge_count(paid.payment_id) == 1
    assert [a.outcome for a in repository.attempts(paid.payment_id) if a.activity == "send_notification"] == ["failed"] * 3


# On the real dev server: cancellation, duplicates, queries, visibility, timeouts.


async def test_query_then_cancel_mid_charge_refunds(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=30)))
        while not repository.ledger(paid.payment_id):
            await asyncio.sleep(0.05)
        progress = await handle.progress()
        assert (progress.status, progress.step) == (PaymentStatus.PROCESSING, "charge")
        await handle.cancel()
        result = await handle.result()
        description = await handle.workflow.describe()
    assert result.status is PaymentStatus.REFUNDED and result.amount == Decimal("12.50")
    assert description.status is WorkflowExecutionStatus.CANCELED
    assert description.typed_search_attributes.get(PAYMENT_STATUS) == "refunded"
    assert [e.kind for e in repository.ledger(paid.payment_id)] == ["charge", "refund"]
    assert repository.find_by_id(paid.payment_id).status is PaymentStatus.REFUNDED  # type: ignore[union-attr]


async def test_a_cancel_that_a_charge_answers_before_hearing_still_cancels_and_refunds(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    from payments_lab.cancellation import explain_cancel

    # A running attempt hears of a cancellation only in the answer to a heartbeat, and the
    # kit's worker sends at most one a second: a charge that answers 0.5 s after taking the
    # money sends one, at once, and never hears. Waiting for it (WAIT_CANCELLATION_COMPLETED)
    # hands its result back to the cancelled workflow.
    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=0.5)))
        while not repository.ledger(paid.payment_id):
            await asyncio.sleep(0.02)
        await handle.cancel()
        result = await handle.result()
        description = await handle.workflow.describe()
        timing = await explain_cancel(handle, repository)
    assert timing.during_charge and timing.running is not None and timing.running.outcome == "completed", str(timing)
    assert description.status is WorkflowExecutionStatus.CANCELED and result.status is PaymentStatus.REFUNDED
    assert [e.kind for e in repository.ledger(paid.payment_id)] == ["charge", "refund"]
    assert repository.notifications(paid.payment_id) == [], "a cancelled payment is not announced as paid"


async def test_cancel_before_the_charge_leaves_nothing_to_refund(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(validate=StepFaults(delay=30)))
        while not repository.attempts(paid.payment_id):
            await asyncio.sleep(0.05)
        await handle.cancel()
        result = await handle.result()
    assert result.status is PaymentStatus.CANCELLED
    assert repository.ledger() == [] and repository.count() == 0


async def test_the_same_payment_id_twice_charges_once(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        assert (await service.process(paid)).success
        with pytest.raises(DuplicatePaymentError, match="already submitted .* nothing was started or charged again") as raised:
            await service.process(paid)
    assert raised.value.existing.payment_status is PaymentStatus.COMPLETED
    assert repository.charge_count(paid.payment_id) == 1


async def test_search_attributes_follow_the_payment(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        handle = await service.start(request(organization_id="org-globex"))
        await handle.result()
        description = await handle.workflow.describe()
    assert description.typed_search_attributes.get(ORGANIZATION_ID) == "org-globex"
    assert description.typed_search_attributes.get(PAYMENT_STATUS) == "completed"


async def test_a_charge_that_hangs_past_its_timeout_is_retried_and_charged_once(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    options = PaymentOptions(
        initial_interval=timedelta(milliseconds=100), charge_timeout=timedelta(seconds=1), charge_heartbeat_timeout=None
    )
    service = PaymentService(client, task_queue, options=options)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(hang_first=1)))
        result = await handle.result()
        history = await handle.workflow.fetch_history()
    assert result.status is PaymentStatus.COMPLETED
    assert attempts_per_activity(history)["charge_payment"] == 2
    assert repository.charge_count(paid.payment_id) == 1
    charges = [a for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"]
    assert [a.outcome for a in charges] == ["cancelled", "completed"]


async def test_tuned_payments_run_cheap_steps_as_local_activities(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    tuned = dataclasses.replace(TUNED, initial_interval=timedelta(milliseconds=100))
    service = PaymentService(client, task_queue, options=tuned)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan.failing(validate=2, notify=1), eager_start=True)
        result = await handle.result()
        history = await handle.workflow.fetch_history()
        declined = await service.process(request("-3"), eager_start=True)
    assert result.status is PaymentStatus.COMPLETED and result.notified
    assert list(activity_spans(history)["activity_type"]) == ["charge_payment"], "only the charge went through a task queue"
    assert attempts_per_activity(history) == {"validate_payment": 3, "charge_payment": 1, "send_notification": 2}
    steps = [(a.activity, a.attempt, a.outcome) for a in repository.attempts(paid.payment_id)]
    assert steps == [
        ("validate_payment", 1, "failed"),
        ("validate_payment", 2, "failed"),
        ("validate_payment", 3, "completed"),
        ("charge_payment", 1, "completed"),
        ("send_notification", 1, "failed"),
        ("send_notification", 2, "completed"),
    ]
    assert declined.status is PaymentStatus.DECLINED


async def test_a_retried_local_notification_leaves_nothing_armed_once_its_worker_stops(
    client: Client, task_queue: str, activities: PaymentActivities, capfd: pytest.CaptureFixture[str]
) -> None:
    """Off the script: a tuned payment whose local notification was retried, then its worker stopped (a lab closed,
    lesson 09's worker swapped): when the first attempt's timeout came, the SDK's core printed a Rust panic and its
    backtrace ("receive half not dropped") under whatever cell ran then."""
    tuned = dataclasses.replace(TUNED, initial_interval=timedelta(milliseconds=100), notify_timeout=timedelta(seconds=1))
    service = PaymentService(client, task_queue, options=tuned)
    async with BackgroundWorker(client, task_queue, activities):
        result = await service.process(request(), faults=FaultPlan.failing(notify=1))
    await asyncio.sleep(2.5)  # past the first attempt's 1 s timeout, with the worker gone
    assert result.status is PaymentStatus.COMPLETED and result.notified
    said = capfd.readouterr().err
    assert "panicked" not in said, said


async def test_an_hour_of_retries_on_the_dev_server_with_per_workflow_time_skipping(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    from temporalio.testing import TimeSkipper

    hourly = PaymentOptions(initial_interval=timedelta(minutes=5), maximum_interval=timedelta(minutes=30), maximum_attempts=5)
    service = PaymentService(TimeSkipper(client).client, task_queue, options=hourly)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        handle = await service.start(paid, faults=FaultPlan.failing(charge=4))
        result = await asyncio.wait_for(handle.result(), timeout=30)
        description = await handle.workflow.describe()
    assert result.status is PaymentStatus.COMPLETED
    assert description.close_time is not None
    virtual = description.close_time - description.start_time
    assert timedelta(minutes=65) <= virtual < timedelta(minutes=66), "5 + 10 + 20 + 30 minutes of backoff"
    assert [a.attempt for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"] == [1, 2, 3, 4, 5]


# Off the script: what a learner finds when they break things the lessons never planned.


async def test_a_settle_whose_completion_is_lost_is_retried_and_reports_the_same_status(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    """The settle runs, refunds, and its answer is lost: Temporal retries it; the result must not change."""
    @activity.defn(name="settle_unfinished_payment")
    async def settle_losing_its_first_answer(input: SettleInput) -> PaymentStatus:
        status = await activities.settle_unfinished_payment(input)
        if activity.info().attempt == 1:
            raise RuntimeError("the worker died before Temporal heard the answer")
        return status

    # The kit's worker, with the settle activity replaced by one that loses its first completion.
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[PaymentWorkflow],
        activities=[a for a in activities.all if a != activities.settle_unfinished_payment] + [settle_losing_its_first_answer],
    )
    service = PaymentService(client, task_queue, options=FAST)
    async with worker:
        paid = request()
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=30)))
        while not repository.ledger(paid.payment_id):
            await asyncio.sleep(0.05)
        await handle.cancel()
        result = await handle.result()
        description = await handle.workflow.describe()
    settles = [a for a in repository.attempts(paid.payment_id) if a.activity == "settle_unfinished_payment"]
    assert [a.attempt for a in settles] == [1, 2], "the settle ran twice"
    assert result.status is PaymentStatus.REFUNDED
    assert description.typed_search_attributes.get(PAYMENT_STATUS) == "refunded"
    assert [e.kind for e in repository.ledger(paid.payment_id)] == ["charge", "refund"]


async def test_a_validation_that_gives_up_fails_the_payment_visibly(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        result = await service.process(paid, faults=FaultPlan.failing(validate=3))
        report = await service.status(paid.payment_id)
        pending = await service.count(status="pending")
    assert result.status is PaymentStatus.FAILED
    assert result.message.startswith("validation gave up: SimulatedOutage: simulated validate outage")
    assert report.payment_status is PaymentStatus.FAILED and report.workflow_status == "completed"
    assert pending == 0, "no closed workflow stays pending in visibility"
    assert repository.count() == 0 and repository.ledger() == []


async def test_the_customer_is_told_how_the_payment_ended_not_how_it_was_retried(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        paid = request()
        # The first charge attempt takes the money and never answers: the retry finds it.
        result = await service.process(
            paid,
            faults=FaultPlan(charge=StepFaults(hang_first=1)),
            options=dataclasses.replace(FAST, charge_timeout=timedelta(seconds=1)),
        )
    assert result.status is PaymentStatus.COMPLETED and repository.charge_count(paid.payment_id) == 1
    messages = {n.message for n in repository.notifications(paid.payment_id)}
    assert messages == {f"Payment {paid.payment_id} of 12.50 EUR: completed"}


async def test_an_unknown_status_names_the_valid_ones(client: Client, task_queue: str) -> None:
    service = PaymentService(client, task_queue)
    with pytest.raises(ValueError, match="unknown payment status 'complete'; use one of: pending, processing, completed"):
        await service.count(status="complete")
    assert await service.count(status="COMPLETED") == 0


async def test_a_schedule_to_close_timeout_ends_unlimited_retries(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository) -> None:
    # On the dev server (the Java test server lets attempts start past the deadline).
    options = PaymentOptions(
        maximum_attempts=0, initial_interval=timedelta(milliseconds=200), charge_schedule_to_close_timeout=timedelta(seconds=2.5)
    )
    service = PaymentService(client, task_queue)
    async with BackgroundWorker(client, task_queue, activities):
        result = await service.process(request(), faults=FaultPlan.failing(charge=1_000_000), options=options)
    assert result.status is PaymentStatus.FAILED and result.message.endswith("(timeout)")
    # Attempts start at 0, 0.2, 0.6 and 1.4 s; the fifth, at 3 s at the earliest, is past the 2.5 s deadline. The
    # fourth has 1.1 s to spare (a 2 s deadline left 0.6 s, and a loaded CI machine once used it up: 3 attempts).
    attempts = [a.attempt for a in repository.attempts(result.payment_id) if a.activity == "charge_payment"]
    assert attempts == [1, 2, 3, 4] and repository.charge_count(result.payment_id) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"charge_schedule_to_close_timeout": timedelta(0)}, "charge_schedule_to_close_timeout must be a positive timedelta or None"),
        ({"charge_heartbeat_timeout": 5}, "charge_heartbeat_timeout must be a positive timedelta or None"),
        ({"charge_cancellation": 1}, "charge_cancellation must be an ActivityCancellationType"),
        # The retry fields get the refusals retry_schedule gives a bad RetryPolicy.
        ({"initial_interval": 5}, "initial_interval must be a positive timedelta, got 5"),
        ({"maximum_interval": None}, "maximum_interval must be a positive timedelta, got None"),
        ({"initial_interval": timedelta(seconds=90)}, "must not be shorter than initial_interval"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient must be >= 1, got 0.5"),
        ({"maximum_attempts": -1}, "maximum_attempts must be a whole number >= 0, got -1"),
        ({"maximum_attempts": True}, "maximum_attempts must be a whole number >= 0, got True"),
        # A truthy string reached the workflow, whose converter refused it: the payment stayed pending.
        ({"local_validation": "no"}, "local_validation must be True or False, got 'no'"),
        ({"local_notification": 1}, "local_notification must be True or False, got 1"),
        # Off the script: accepted, then every workflow task of the payment failed ("Value out of range", a duration
        # that overflowed on the worker) and it stayed pending for ever, the kit blaming the workflow code or the lab.
        ({"maximum_attempts": 2**31}, "maximum_attempts must be at most 2,147,483,647, got 2147483648"),
        ({"maximum_attempts": 10**5000}, "maximum_attempts must be at most 2,147,483,647, got an int of about 5,001 digits"),
        ({"charge_schedule_to_close_timeout": timedelta.max}, r"must be at most 100 years \(timedelta\(days=36525\)\), got .*: for no limit, None"),
        ({"maximum_interval": timedelta.max}, r"maximum_interval must be at most 100 years"),
        ({"charge_timeout": timedelta(days=40000)}, r"charge_timeout must be at most 100 years"),
    ],
)
def test_payment_options_refuse_bad_timeouts_and_cancellation_types(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PaymentOptions(**fields)
