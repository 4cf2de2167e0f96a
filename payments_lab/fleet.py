"""Run a fleet of payments at once: seeded organizations, amounts and injected faults, bounded concurrency.

In a notebook::

    fleet = await run_fleet(lab.service, FleetPlan(count=200, charge_failure_rate=0.3, seed=7))
    fleet.status_counts                      # {'completed': 200}
    histories = await fetch_histories(lab.client, fleet.workflow_ids)
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pandas as pd
from tqdm.auto import tqdm

from payments_lab.arguments import rate, whole_number
from payments_lab.client import TemporalUnavailableError
from payments_lab.currencies import minor_units
from payments_lab.domain import PaymentRequest, PaymentResult, coerce_amount
from payments_lab.errors import InvalidArgumentError
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.messages import PaymentOptions, checked_payment_options
from payments_lab.repository import DEMO_ORGANIZATIONS
from payments_lab.service import PaymentNotFoundError, PaymentService
from payments_lab.visibility import quoted

DEFAULT_CONCURRENCY = 50
"""Payments in flight at once: enough to keep a 2-core dev server busy without piling up."""

_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}")


@dataclass(frozen=True)
class FleetPlan:
    """What a fleet of payments looks like. The same seed draws the same payments, whatever ``count``."""

    count: int = 200
    """Payments to run."""
    charge_failure_rate: float = 0.3
    """Share of payments whose first charge attempts fail with a transient outage (Temporal retries them)."""
    max_charge_failures: int = 2
    """Such a payment fails its first 1 to this many charge attempts (drawn evenly). With the
    default 3 attempts per step, 3 or more makes some payments fail for good."""
    decline_rate: float = 0.0
    """Share of payments whose card the processor declines: a business answer, never retried."""
    organizations: tuple[str, ...] = tuple(DEMO_ORGANIZATIONS)
    """Organizations that pay, drawn evenly."""
    currencies: tuple[str, ...] = ("EUR",)
    """ISO 4217 currencies, drawn evenly."""
    min_amount: Decimal = Decimal("1.00")
    """Smallest amount, in major units."""
    max_amount: Decimal = Decimal("500.00")
    """Largest amount, in major units."""
    seed: int = 0
    """Seed of every draw."""
    prefix: str = "fleet"
    """Start of every payment id: ``<prefix>-<run token>-<index>``."""

    def __post_init__(self) -> None:
        whole_number("count", self.count)
        rate("charge_failure_rate", self.charge_failure_rate)
        rate("decline_rate", self.decline_rate)
        if self.charge_failure_rate + self.decline_rate > 1:
            raise InvalidArgumentError(
                f"charge_failure_rate + decline_rate must not exceed 1, got "
                f"{self.charge_failure_rate} + {self.decline_rate}"
            )
        failures = self.max_charge_failures
        whole_number("max_charge_failures", failures, minimum=1)
        if isinstance(self.organizations, str) or not self.organizations:
            raise InvalidArgumentError("organizations must be a non-empty tuple of organization ids")
        if isinstance(self.currencies, str) or not self.currencies:
            raise InvalidArgumentError("currencies must be a non-empty tuple of ISO 4217 codes")
        unknown = [c for c in self.currencies if minor_units(c) is None]
        if unknown:
            raise InvalidArgumentError(f"currencies {unknown} are not ISO 4217 codes")
        object.__setattr__(self, "organizations", tuple(self.organizations))
        object.__setattr__(self, "currencies", tuple(self.currencies))
        object.__setattr__(self, "min_amount", coerce_amount(self.min_amount))
        object.__setattr__(self, "max_amount", coerce_amount(self.max_amount))
        if not self.min_amount > 0:
            raise InvalidArgumentError(f"min_amount must be greater than zero, got {self.min_amount}")
        if self.max_amount < self.min_amount:
            raise InvalidArgumentError(f"max_amount ({self.max_amount}) must not be below min_amount ({self.min_amount})")
        if not _PREFIX_PATTERN.fullmatch(self.prefix):
            raise InvalidArgumentError(
                f"prefix {self.prefix!r} may only use letters, digits, '.', '_' and '-' "
                "(at most 41 characters, starting with a letter or digit)"
            )


@dataclass(frozen=True)
class PlannedPayment:
    """One payment of a fleet, before it runs."""

    request: PaymentRequest
    """The payment."""
    faults: FaultPlan
    """Faults injected into it."""


def _amount(draw: random.Random, plan: FleetPlan, currency: str) -> Decimal:
    decimals = minor_units(currency) or 0
    scale = 10**decimals
    low = math.ceil(plan.min_amount * scale)
    high = math.floor(plan.max_amount * scale)
    if high < low:
        raise InvalidArgumentError(f"no {currency} amount with {decimals} decimals lies between {plan.min_amount} and {plan.max_amount}")
    return Decimal(draw.randint(low, high)).scaleb(-decimals)


def plan_fleet(plan: FleetPlan, *, run_token: str | None = None) -> list[PlannedPayment]:
    """Draw the payments of ``plan``: organization, amount, currency and faults of each.

    Payment ``i`` depends only on the seed and ``i``. Its id carries ``run_token`` (a
    fresh random one by default), so running the same plan again starts new payments
    rather than colliding with the earlier ones.
    """
    token = run_token if run_token is not None else uuid.uuid4().hex[:6]
    if not _PREFIX_PATTERN.fullmatch(token):
        raise InvalidArgumentError(f"run_token {token!r} may only use letters, digits, '.', '_' and '-'")
    planned = []
    for index in range(plan.count):
        draw = random.Random(f"{plan.seed}:{index}")
        organization = draw.choice(plan.organizations)
        currency = draw.choice(plan.currencies)
        amount = _amount(draw, plan, currency)
        luck = draw.random()
        if luck < plan.decline_rate:
            faults = FaultPlan(charge=StepFaults(decline=True))
        elif luck < plan.decline_rate + plan.charge_failure_rate:
            faults = FaultPlan.failing(charge=draw.randint(1, plan.max_charge_failures))
        else:
            faults = FaultPlan()
        request = PaymentRequest(
            payment_id=f"{plan.prefix}-{token}-{index:05d}",
            organization_id=organization,
            user_id=f"user-{draw.randint(1, 50):02d}",
            amount=amount,
            currency=currency,
            description=f"fleet payment {index + 1} of {plan.count}",
        )
        planned.append(PlannedPayment(request, faults))
    return planned


@dataclass(frozen=True)
class FleetPayment:
    """One payment of a fleet, after it ran."""

    request: PaymentRequest
    """The payment."""
    faults: FaultPlan
    """Faults injected into it."""
    result: PaymentResult | None
    """How it ended; None if it could not run (see :attr:`error`)."""
    error: str | None = None
    """Why it could not run, e.g. a duplicate payment id."""

    @property
    def payment_id(self) -> str:
        """The payment id."""
        return self.request.payment_id

    @property
    def workflow_id(self) -> str:
        """The workflow id, ``payment-<payment id>``."""
        return self.request.workflow_id

    @property
    def status(self) -> str:
        """The payment's final status, or ``error``."""
        return self.result.status.value if self.result is not None else "error"


@dataclass(frozen=True)
class FleetRun:
    """A fleet that ran: every payment and how it ended."""

    payments: tuple[FleetPayment, ...]
    """The payments, in plan order."""
    elapsed: timedelta
    """Wall-clock time from the first start to the last result."""
    service: PaymentService
    """The service that ran the fleet, its searches, counts and metrics narrowed to this fleet's
    payments (their ids share ``<prefix>-<run token>-``): a notebook run again counts its new fleet only."""
    status_counts: dict[str, int] = field(init=False)
    """Payments per final status (``error`` for those that could not run)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status_counts", dict(Counter(p.status for p in self.payments).most_common()))

    def __len__(self) -> int:
        return len(self.payments)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.status_counts.items())
        return f"FleetRun({len(self)} payments in {self.elapsed.total_seconds():.1f} s: {counts or 'none'})"

    @property
    def workflow_ids(self) -> list[str]:
        """Workflow ids of the payments that ran, for :func:`payments_lab.history.fetch_histories`."""
        return [p.workflow_id for p in self.payments if p.result is not None]

    @property
    def payment_ids(self) -> list[str]:
        """Ids of every payment, in plan order."""
        return [p.payment_id for p in self.payments]

    def frame(self) -> pd.DataFrame:
        """One row per payment: ids, organization, amount (``Decimal``), currency, injected faults, outcome."""
        return pd.DataFrame(
            {
                "payment_id": [p.payment_id for p in self.payments],
                "workflow_id": [p.workflow_id for p in self.payments],
                "organization_id": [p.request.organization_id for p in self.payments],
                "amount": pd.Series([p.request.amount for p in self.payments], dtype=object),
                "currency": [p.request.currency for p in self.payments],
                "charge_failures": [p.faults.charge.fail_first for p in self.payments],
                "card_declined": [p.faults.charge.decline for p in self.payments],
                "status": [p.status for p in self.payments],
                "message": [p.result.message if p.result else p.error for p in self.payments],
            }
        )


async def run_fleet(
    service: PaymentService,
    plan: FleetPlan | int = FleetPlan(),
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    options: PaymentOptions | None = None,
    progress: bool = True,
    run_token: str | None = None,
) -> FleetRun:
    """Run every payment of ``plan`` to its end, ``concurrency`` at a time, with a progress bar.

    A payment that cannot run (a duplicate id, a server error) is kept with its error
    rather than stopping the fleet.

    Args:
        service: The payment service, e.g. ``lab.service``; its worker must be running.
        plan: The fleet, or just a number of payments with the default plan.
        concurrency: Payments in flight at once.
        options: Retry and timeout options of every payment (the service's by default).
        progress: Show a ``tqdm`` progress bar (a widget in notebooks).
        run_token: The middle of every payment id (see :func:`plan_fleet`); a fresh one
            by default. The same token on the same server makes every payment a duplicate.

    Raises:
        ValueError: ``concurrency`` is below 1, or ``options`` are not :class:`PaymentOptions`.
    """
    if isinstance(plan, int) and not isinstance(plan, bool):
        plan = FleetPlan(count=plan)
    if not isinstance(plan, FleetPlan):
        raise InvalidArgumentError(f"plan must be a FleetPlan or a number of payments, not {type(plan).__name__}")
    whole_number("concurrency", concurrency, minimum=1)
    # A mistake in the options would otherwise come back as one "error" row per payment, and no exception.
    options = checked_payment_options(options, service.options)
    planned = plan_fleet(plan, run_token=run_token)
    outcomes: list[FleetPayment | None] = [None] * len(planned)
    semaphore = asyncio.Semaphore(concurrency)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    with tqdm(total=len(planned), desc="payments", unit="payment", disable=not progress) as bar:

        async def run(index: int, payment: PlannedPayment) -> None:
            async with semaphore:
                try:
                    try:
                        handle = await service.start(payment.request, faults=payment.faults, options=options)
                    except TemporalUnavailableError as unconfirmed:
                        # The server did not confirm the start: once it answers, the workflow tells whether it
                        # started (it may have run and charged: it is the fleet's like any other).
                        handle = service.handle(payment.request.payment_id)
                        try:
                            await handle.status()
                        except PaymentNotFoundError:
                            raise unconfirmed from None
                    outcome = FleetPayment(payment.request, payment.faults, await handle.result())
                except Exception as err:  # noqa: BLE001 - one payment's trouble must not sink the fleet
                    outcome = FleetPayment(payment.request, payment.faults, None, f"{type(err).__name__}: {err}")
            outcomes[index] = outcome
            counts[outcome.status] += 1
            bar.set_postfix(dict(counts.most_common()), refresh=False)
            bar.update()

        async with asyncio.TaskGroup() as group:
            for index, payment in enumerate(planned):
                group.create_task(run(index, payment))
    elapsed = timedelta(seconds=time.perf_counter() - started)
    shared = planned[0].request.workflow_id.rsplit("-", 1)[0] + "-" if planned else "payment-none-"
    return FleetRun(tuple(outcomes), elapsed, service.narrowed(f"WorkflowId STARTS_WITH {quoted(shared)}"))  # type: ignore[arg-type]
