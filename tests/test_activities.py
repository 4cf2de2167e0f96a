"""Tests of the activities in Temporal's ActivityEnvironment (no server needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from payments_lab.activities import (
    ChargeInput,
    NotifyInput,
    PaymentActivities,
    SettleInput,
    ValidateInput,
)
from payments_lab.domain import Payment, PaymentRequest, PaymentResult, PaymentStatus
from payments_lab.faults import FaultPlan, FaultProfile, StepFaults
from payments_lab.repository import PaymentRepository, RepositoryBusyError


def request(payment_id: str = "p-1", **changes: object) -> PaymentRequest:
    fields: dict[str, object] = dict(
        payment_id=payment_id, organization_id="org-acme", user_id="u-1", amount="12.50", currency="EUR"
    )
    fields.update(changes)
    return PaymentRequest(**fields)  # type: ignore[arg-type]


def environment(activity_type: str, attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type=activity_type, attempt=attempt, workflow_id="payment-p-1")
    return env


async def test_validate_accepts_and_declines(activities: PaymentActivities, repository: PaymentRepository) -> None:
    env = environment("validate_payment")
    assert (await env.run(activities.validate_payment, ValidateInput(request()))).valid
    declined = await env.run(activities.validate_payment, ValidateInput(request(amount="-5", organization_id="org-x")))
    assert not declined.valid
    assert "greater than zero" in declined.message and "org-x" in declined.message
    assert repository.count() == 0 and repository.ledger() == [], "validation changes nothing"
    assert [a.outcome for a in repository.attempts()] == ["completed", "completed"]


async def test_charge_takes_the_money_once_and_completes(activities: PaymentActivities, repository: PaymentRepository) -> None:
    result = await environment("charge_payment").run(activities.charge_payment, ChargeInput(request()))
    assert result.success and not result.already_charged
    assert result.charge_id == repository.ledger("p-1")[0].entry_id
    assert repository.find_by_id("p-1").status is PaymentStatus.COMPLETED  # type: ignore[union-attr]
    assert repository.ledger("p-1")[0].amount == Decimal("12.50")


async def test_planned_failures_fail_the_first_attempts_only(activities: PaymentActivities, repository: PaymentRepository) -> None:
    faults = StepFaults(fail_first=2)
    for attempt in (1, 2):
        with pytest.raises(ApplicationError, match=f"attempt {attempt} of the first 2"):
            await environment("charge_payment", attempt).run(activities.charge_payment, ChargeInput(request(), faults))
    assert repository.ledger() == [], "a failed attempt charged nothing"
    result = await environment("charge_payment", 3).run(activities.charge_payment, ChargeInput(request(), faults))
    assert result.success
    assert repository.charge_count("p-1") == 1
    assert [(a.attempt, a.outcome) for a in repository.attempts("p-1")] == [(1, "failed"), (2, "failed"), (3, "completed")]


async def test_a_retry_after_a_lost_answer_charges_nothing_more(activities: PaymentActivities, repository: PaymentRepository) -> None:
    # Attempt 1 reaches the processor, then never answers: its timeout cancels it.
    env = environment("charge_payment", 1)
    hung = asyncio.ensure_future(env.run(activities.charge_payment, ChargeInput(request(), StepFaults(hang_first=1))))
    while not repository.ledger("p-1"):
        await asyncio.sleep(0.01)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert repository.find_by_id("p-1").status is PaymentStatus.PROCESSING  # type: ignore[union-attr]
    retry = await environment("charge_payment", 2).run(activities.charge_payment, ChargeInput(request(), StepFaults(hang_first=1)))
    assert retry.success and retry.already_charged
    assert repository.charge_count("p-1") == 1
    assert [a.outcome for a in repository.attempts("p-1")] == ["cancelled", "completed"]


async def test_a_replayed_charge_of_a_completed_payment_is_harmless(activities: PaymentActivities, repository: PaymentRepository) -> None:
    first = await environment("charge_payment", 1).run(activities.charge_payment, ChargeInput(request()))
    again = await environment("charge_payment", 1).run(activities.charge_payment, ChargeInput(request()))
    assert again.success and again.already_charged and again.charge_id == first.charge_id
    assert repository.charge_count("p-1") == 1


async def test_a_declined_card_is_a_result_not_an_error(activities: PaymentActivities, repository: PaymentRepository) -> None:
    result = await environment("charge_payment").run(activities.charge_payment, ChargeInput(request(), StepFaults(decline=True)))
    assert not result.success and "declined" in result.message
    assert repository.ledger() == []


async def test_profile_failures_follow_the_seeded_draw(repository: PaymentRepository) -> None:
    profile = FaultProfile(charge_failure_rate=0.5, charge_latency=0.0, seed=11)
    activities = PaymentActivities(repository, fault_profile=profile)
    outcomes = []
    for i in range(20):
        try:
            await environment("charge_payment").run(activities.charge_payment, ChargeInput(request(f"p-{i}")))
            outcomes.append(False)
        except ApplicationError as err:
            assert err.type == "ProcessorError"
            outcomes.append(True)
    assert outcomes == [profile.charge_fails(f"p-{i}", 1) for i in range(20)]
    assert 0 < sum(outcomes) < 20


async def test_a_cancelled_payment_refuses_a_late_charge(activities: PaymentActivities, repository: PaymentRepository) -> None:
    repository.transition(Payment.from_request(request()), PaymentStatus.CANCELLED)
    with pytest.raises(ApplicationError) as raised:
        await environment("charge_payment").run(activities.charge_payment, ChargeInput(request()))
    assert raised.value.non_retryable and "cancelled" in str(raised.value)
    assert repository.ledger() == []


async def test_notify_records_email_and_webhook(activities: PaymentActivities, repository: PaymentRepository) -> None:
    result = PaymentResult("p-1", PaymentStatus.COMPLETED, "ok")
    sent = await environment("send_notification").run(activities.send_notification, NotifyInput(request(), result))
    assert sent.channels == ("email", "webhook")
    assert [n.channel for n in repository.notifications("p-1")] == ["email", "webhook"]
    with pytest.raises(ApplicationError, match="notify outage"):
        await environment("send_notification").run(
            activities.send_notification, NotifyInput(request("p-2"), result, StepFaults(fail_first=1))
        )
    assert repository.notifications("p-2") == []


async def test_settle_refunds_a_charged_payment(activities: PaymentActivities, repository: PaymentRepository) -> None:
    await environment("charge_payment").run(activities.charge_payment, ChargeInput(request()))
    status = await environment("settle_unfinished_payment").run(
        activities.settle_unfinished_payment, SettleInput("p-1", PaymentStatus.CANCELLED, "customer asked")
    )
    assert status is PaymentStatus.REFUNDED
    assert repository.balance("p-1") == 0


def test_a_fault_profile_of_the_wrong_kind_is_refused_and_the_old_one_kept(repository: PaymentRepository) -> None:
    # A FaultPlan here used to fail inside every charge attempt ("has no attribute 'charge_fails'").
    activities = PaymentActivities(repository, fault_profile=FaultProfile(charge_failure_rate=0.5))
    with pytest.raises(ValueError, match=r"got a FaultPlan, the faults of one payment: .*lab.start\(request, faults=\.\.\.\)"):
        activities.fault_profile = FaultPlan.failing(charge=1)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="fault_profile must be a FaultProfile"):
        PaymentActivities(repository, fault_profile=0.5)  # type: ignore[arg-type]
    assert activities.fault_profile == FaultProfile(charge_failure_rate=0.5)


async def test_an_attempt_handed_over_past_its_timeout_is_not_run_and_one_without_a_comparable_clock_is(
    activities: PaymentActivities, repository: PaymentRepository
) -> None:
    """An attempt started on the server's clock longer ago than its timeout (its worker was stopped with Ctrl-Z when it
    was handed over) has been timed out and retried already: it takes no money and is logged `timed out`."""
    from datetime import UTC, datetime, timedelta

    import payments_lab.activities

    fresh = environment("charge_payment")
    fresh.info = dataclasses.replace(fresh.info, started_time=datetime.now(UTC))
    await fresh.run(activities.validate_payment, ValidateInput(request("p-0")))  # the lag of a fresh attempt, seen once
    stale = environment("charge_payment")
    stale.info = dataclasses.replace(stale.info, started_time=datetime.now(UTC) - timedelta(seconds=10))
    with pytest.raises(ApplicationError, match="came after its start-to-close timeout"):
        await stale.run(activities.charge_payment, ChargeInput(request()))
    assert repository.ledger("p-1") == [] and repository.attempts("p-1")[-1].outcome == "timed out"
    # The test harness starts every attempt in 1970: no clock to compare with, no verdict.
    assert (await environment("charge_payment").run(activities.charge_payment, ChargeInput(request("p-2")))).success
    assert payments_lab.activities._LEAST_LAG[fresh.info.workflow_run_id] < timedelta(seconds=1), "the fresh attempt's lag, kept"


async def test_a_run_on_virtual_time_does_not_make_the_next_runs_attempts_look_late(
    activities: PaymentActivities, repository: PaymentRepository
) -> None:
    """Lesson 11 skips its confirmation deadline on virtual time: its attempts start at hours the wall clock has not
    reached. Judged against one lag for the whole process, every attempt of the next payments was refused as late."""
    from datetime import UTC, datetime, timedelta

    ahead = environment("validate_payment")
    ahead.info = dataclasses.replace(ahead.info, workflow_run_id="skipped", started_time=datetime.now(UTC) + timedelta(hours=2))
    assert (await ahead.run(activities.validate_payment, ValidateInput(request("p-skip")))).valid
    fresh = environment("charge_payment")
    fresh.info = dataclasses.replace(fresh.info, workflow_run_id="next", started_time=datetime.now(UTC))
    assert (await fresh.run(activities.charge_payment, ChargeInput(request("p-next")))).success


async def test_a_ledger_locked_by_another_process_holds_up_the_attempt_not_the_worker(tmp_path: Path) -> None:
    """Off the script: a worker stopped with Ctrl-Z inside a write keeps the ledger file's lock; another worker's
    attempts waited for it inside SQLite, holding up its event loop (every other attempt, every heartbeat) up to
    10 s per call. The wait is now on the event loop, heartbeating, and the charge is still taken once."""
    path = tmp_path / "ledger.sqlite"
    repository = PaymentRepository(path)
    activities = PaymentActivities(repository)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the stopped worker, in the middle of a write
    loop = asyncio.get_running_loop()
    loop.call_later(1.5, holder.execute, "COMMIT")
    gaps: list[float] = []

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.02)
            gaps.append(loop.time() - last)
            last = loop.time()

    beats: list[tuple[object, ...]] = []
    env = environment("charge_payment")
    env.on_heartbeat = lambda *details: beats.append(details)
    ticking = asyncio.create_task(tick())
    try:
        result = await env.run(activities.charge_payment, ChargeInput(request()))
    finally:
        ticking.cancel()
        holder.close()
    assert result.success and repository.charge_count("p-1") == 1
    assert max(gaps) < 0.5, f"the event loop stood still {max(gaps):.2f} s"  # 1.5 s before: the whole lock
    assert beats, "an attempt waiting for the lock heartbeats"
    assert [a.outcome for a in repository.attempts("p-1")] == ["completed"]
    repository.close()


async def test_a_lock_held_past_the_wait_is_one_clear_error_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import payments_lab.activities
    import payments_lab.repository

    monkeypatch.setattr(payments_lab.activities, "LOCK_WAIT", 0.3)
    monkeypatch.setattr(payments_lab.repository, "LOCK_WAIT", 0.3)
    path = tmp_path / "ledger.sqlite"
    repository = PaymentRepository(path)
    activities = PaymentActivities(repository)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RepositoryBusyError, match=r"another process holds the write lock .*Ctrl-Z .*`fg`"):
            await environment("charge_payment").run(activities.charge_payment, ChargeInput(request()))
        with pytest.raises(RepositoryBusyError, match="nothing was changed"):  # a notebook's own call: the same words
            repository.register_organization("org-new", "New")
    finally:
        holder.close()
    assert repository.count() == 0 and repository.ledger() == [] and not repository.organization_exists("org-new")
    repository.close()
