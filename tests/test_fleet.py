"""Fleets of payments: seeded plans, and running one through a real worker on the dev server."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from temporalio.client import Client

from conftest import FAST
from payments_lab.activities import PaymentActivities
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.fleet import FleetPlan, plan_fleet, run_fleet
from payments_lab.repository import DEMO_ORGANIZATIONS, PaymentRepository
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker


def drawn(plan: FleetPlan, token: str) -> list[tuple[str, str, Decimal, str, FaultPlan]]:
    return [
        (p.request.organization_id, p.request.user_id, p.request.amount, p.request.currency, p.faults)
        for p in plan_fleet(plan, run_token=token)
    ]


def test_the_same_seed_draws_the_same_payments_whatever_the_count() -> None:
    assert drawn(FleetPlan(count=50, seed=3), "a")[:20] == drawn(FleetPlan(count=20, seed=3), "b")
    assert drawn(FleetPlan(count=20, seed=3), "a") != drawn(FleetPlan(count=20, seed=4), "a")
    ids = [p.request.payment_id for p in plan_fleet(FleetPlan(count=3, prefix="demo"), run_token="t1")]
    assert ids == ["demo-t1-00000", "demo-t1-00001", "demo-t1-00002"]
    fresh = {p.request.payment_id for p in plan_fleet(FleetPlan(count=3))} & {p.request.payment_id for p in plan_fleet(FleetPlan(count=3))}
    assert not fresh, "each plan draws a new run token"


def test_faults_organizations_and_amounts_follow_the_plan() -> None:
    plan = FleetPlan(count=1000, charge_failure_rate=0.3, max_charge_failures=3, decline_rate=0.1, seed=1)
    planned = plan_fleet(plan)
    failing = Counter(p.faults.charge.fail_first for p in planned)
    declined = sum(p.faults.charge.decline for p in planned)
    assert 250 <= sum(n for k, n in failing.items() if k) <= 350 and set(failing) == {0, 1, 2, 3}
    assert 70 <= declined <= 130
    assert all(p.faults.validate == StepFaults() and p.faults.notify == StepFaults() for p in planned)
    assert {p.request.organization_id for p in planned} == set(DEMO_ORGANIZATIONS)
    amounts = [p.request.amount for p in planned]
    assert all(isinstance(a, Decimal) and Decimal("1.00") <= a <= Decimal("500.00") for a in amounts)
    assert all(a == a.quantize(Decimal("0.01")) for a in amounts)


def test_amounts_have_the_decimals_of_their_currency() -> None:
    plan = FleetPlan(count=100, currencies=("JPY", "KWD"), min_amount="100", max_amount="5000")
    for payment in plan_fleet(plan):
        amount, currency = payment.request.amount, payment.request.currency
        exponent = amount.as_tuple().exponent
        assert (currency, exponent) in (("JPY", 0), ("KWD", -3)) and Decimal(100) <= amount <= Decimal(5000)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": -1}, "count must be a whole number >= 0, got -1"),
        ({"charge_failure_rate": 1.5}, "charge_failure_rate must be a share between 0 and 1, got 1.5"),
        ({"charge_failure_rate": 0.7, "decline_rate": 0.5}, "must not exceed 1, got 0.7 \\+ 0.5"),
        ({"max_charge_failures": 0}, "max_charge_failures must be a whole number >= 1, got 0"),
        ({"organizations": ()}, "organizations must be a non-empty tuple"),
        ({"currencies": ("EUR", "XYZ")}, "currencies \\['XYZ'\\] are not ISO 4217 codes"),
        ({"min_amount": "0"}, "min_amount must be greater than zero, got 0"),
        ({"min_amount": "10", "max_amount": "5"}, "max_amount \\(5\\) must not be below min_amount \\(10\\)"),
        ({"prefix": "no spaces"}, "prefix 'no spaces' may only use"),
    ],
)
def test_bad_plans_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FleetPlan(**changes)  # type: ignore[arg-type]


def test_float_amounts_are_refused() -> None:
    with pytest.raises(TypeError, match="a float cannot hold cents exactly"):
        FleetPlan(max_amount=9.99)  # type: ignore[arg-type]


async def test_a_fleet_runs_every_payment_to_its_end(client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository, capsys: pytest.CaptureFixture[str]) -> None:
    plan = FleetPlan(count=16, charge_failure_rate=0.5, max_charge_failures=3, decline_rate=0.2, seed=5, prefix="fleet-test")
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        fleet = await run_fleet(service, plan, concurrency=4, run_token="t")
        again = await run_fleet(service, plan, concurrency=4, progress=False, run_token="t")
        other = await run_fleet(service, FleetPlan(count=5, seed=1, prefix="fleet-test"), progress=False)
    assert len(fleet) == 16 and fleet.payment_ids == [p.request.payment_id for p in plan_fleet(plan, run_token="t")]
    for payment in fleet.payments:
        charge = payment.faults.charge
        # FAST allows 3 attempts: 3 planned failures exhaust them, a declined card is never retried.
        expected = "failed" if charge.decline or charge.fail_first >= 3 else "completed"
        assert payment.status == expected, payment
        charged = [a for a in repository.attempts(payment.payment_id) if a.activity == "charge_payment"]
        assert len(charged) == (1 if charge.decline else min(charge.fail_first + 1, 3))
    assert sum(fleet.status_counts.values()) == 16 and set(fleet.status_counts) == {"completed", "failed"}
    assert fleet.workflow_ids == [f"payment-{p}" for p in fleet.payment_ids]
    table = fleet.frame()
    assert list(table["status"]) == [p.status for p in fleet.payments]
    assert table["amount"].dtype == object and all(isinstance(a, Decimal) for a in table["amount"])
    assert "16/16" in capsys.readouterr().err, "the progress bar went to stderr"

    assert again.status_counts == {"error": 16}, "the same run token on the same server: every payment a duplicate"
    assert all("DuplicatePaymentError" in p.error and "already submitted" in p.error for p in again.payments)  # type: ignore[operator]
    assert again.workflow_ids == [] and "16 error" in repr(again)
    # Each fleet's service counts that fleet alone, whatever ran before it on the same task queue.
    assert await service.count() == 21
    assert await fleet.service.count() == 16 and await other.service.count() == 5
    assert await fleet.service.count(status="failed") == fleet.status_counts["failed"]
    assert {r.payment_id for r in await other.service.search()} == set(other.payment_ids)


async def test_run_fleet_refuses_bad_arguments(client: Client, task_queue: str) -> None:
    service = PaymentService(client, task_queue)
    with pytest.raises(ValueError, match="concurrency must be a whole number >= 1, got 0"):
        await run_fleet(service, 3, concurrency=0)
    with pytest.raises(TypeError, match="plan must be a FleetPlan"):
        await run_fleet(service, "3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="run_token 'a b'"):
        await run_fleet(service, 3, run_token="a b")
    with pytest.raises(ValueError, match="options must be PaymentOptions"):  # not three "error" rows
        await run_fleet(service, 3, options={"maximum_attempts": 5}, progress=False)  # type: ignore[arg-type]
    empty = await run_fleet(service, 0, progress=False)
    assert len(empty) == 0 and empty.status_counts == {}
