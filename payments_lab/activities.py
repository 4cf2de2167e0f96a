"""The payment activities: validate, charge, notify, and settle a payment that will not complete."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from payments_lab.domain import (
    ActivityType,
    ChargeResult,
    InvalidTransitionError,
    NotificationResult,
    Payment,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    Step,
    ValidationResult,
    validate_request,
)
from payments_lab.faults import NO_FAULTS, FaultProfile, StepFaults, checked_fault_profile
from payments_lab.repository import (
    LOCK_WAIT,
    AttemptRecord,
    ChargeOutcome,
    ChargeRefusedError,
    Notification,
    PaymentRepository,
    RepositoryBusyError,
)

P = ParamSpec("P")
T = TypeVar("T")

_HEARTBEAT_EVERY = 0.5
"""Seconds between heartbeats while an attempt waits, so cancellation and crashes are seen fast."""

_FIRST_LOCK_RETRY = 0.005
"""Seconds before a repository call refused for a lock another process holds is made again (then doubled, up to 0.1 s)."""

_HANG_MARGIN = 30.0
"""A hanging attempt gives up this long after its timeout, in case nobody cancels it."""

_PAUSE_MARGIN = timedelta(seconds=1)
"""Slack before an attempt is called overdue: clocks of server and worker, and the SDK's own delays."""

_PAUSED_PAST_TIMEOUT: ContextVar[str | None] = ContextVar("paused_past_timeout", default=None)
"""Set in an attempt whose worker stopped (Ctrl-Z, a frozen VM) past a timeout of the attempt's: Temporal
timed the attempt out meanwhile and retried it, so whatever this one does next is too late."""


_LEAST_LAG: OrderedDict[str, timedelta] = OrderedDict()
"""Per workflow run, the least time seen between an attempt's start on the server's clock and its start here.

An attempt is late by what it adds to that, not by the clocks: a worker's clock may be minutes off a
remote server's, and a run on virtual time (time skipping) starts its attempts at hours the wall clock
has not reached. Its first attempt is taken as fresh."""

_RUNS_REMEMBERED = 10_000

_CLOCKS_APART = timedelta(days=1)
"""Beyond this, an attempt's start on the server's clock says nothing about this worker's delay."""


def _overdue(info: activity.Info) -> str | None:
    """Which timeout of this attempt has already passed on the server's clock, if one has: its worker was paused."""
    lag = datetime.now(UTC) - info.started_time
    if abs(lag) > _CLOCKS_APART:  # no clock to compare with (a test harness's start in 1970): no verdict
        return None
    least = _LEAST_LAG.pop(info.workflow_run_id or "", lag)
    _LEAST_LAG[info.workflow_run_id or ""] = min(least, lag)
    if len(_LEAST_LAG) > _RUNS_REMEMBERED:
        _LEAST_LAG.popitem(last=False)
    late = lag - least - _PAUSE_MARGIN
    if info.heartbeat_timeout and late > info.heartbeat_timeout:
        return f"heartbeat timeout ({info.heartbeat_timeout.total_seconds():g} s)"
    if info.start_to_close_timeout and late > info.start_to_close_timeout:
        return f"start-to-close timeout ({info.start_to_close_timeout.total_seconds():g} s)"
    return None


@dataclass(frozen=True)
class ValidateInput:
    """Input of :meth:`PaymentActivities.validate_payment`."""

    request: PaymentRequest
    """The payment to check."""
    faults: StepFaults = StepFaults()
    """Faults to inject into this step."""


@dataclass(frozen=True)
class ChargeInput:
    """Input of :meth:`PaymentActivities.charge_payment`."""

    request: PaymentRequest
    """The payment to charge."""
    faults: StepFaults = StepFaults()
    """Faults to inject into this step."""


@dataclass(frozen=True)
class NotifyInput:
    """Input of :meth:`PaymentActivities.send_notification`."""

    request: PaymentRequest
    """The payment the notification is about."""
    result: PaymentResult
    """What to tell."""
    faults: StepFaults = StepFaults()
    """Faults to inject into this step."""


@dataclass(frozen=True)
class SettleInput:
    """Input of :meth:`PaymentActivities.settle_unfinished_payment`."""

    payment_id: str
    """The payment that will not complete."""
    status: PaymentStatus
    """``cancelled`` or ``failed``; it becomes ``refunded`` if money had been taken."""
    reason: str
    """Why, in plain words."""


def send_notifications(repository: PaymentRepository, request: PaymentRequest, result: PaymentResult) -> NotificationResult:
    """Send the payment's email and webhook: the kit records them in the repository instead."""
    # What the customer reads: how the payment ended, never how many attempts it took.
    message = f"Payment {request.payment_id} of {request.amount} {request.currency}: {result.status.value}"
    now = datetime.now(UTC)
    channels = (
        ("email", f"{request.user_id}@{request.organization_id}.example"),
        ("webhook", f"https://{request.organization_id}.example/hooks/payments"),
    )
    repository.record_notification(
        *(Notification(request.payment_id, channel, recipient, message, now) for channel, recipient in channels)
    )
    return NotificationResult(channels=tuple(channel for channel, _ in channels))


def default_identity() -> str:
    """``pid@host``, the identity Temporal workers use by default."""
    return f"{os.getpid()}@{socket.gethostname()}"


class PaymentActivities:
    """The activities of the payment workflow, bound to a repository.

    Args:
        repository: Where payments, the ledger, notifications and attempts are kept.
        fault_profile: Faults applied to every payment; change it at any time, the next
            attempt uses the new one.
        identity: Name of the worker, recorded with every attempt.
    """

    def __init__(
        self,
        repository: PaymentRepository,
        *,
        fault_profile: FaultProfile = NO_FAULTS,
        identity: str | None = None,
    ) -> None:
        self.repository = repository
        self.fault_profile = fault_profile
        self.identity = identity or default_identity()

    @property
    def fault_profile(self) -> FaultProfile:
        """Faults applied to every payment; the next attempt uses a new one."""
        return self._fault_profile

    @fault_profile.setter
    def fault_profile(self, profile: FaultProfile) -> None:
        # Checked here: a wrong kind would only fail inside the charge, attempt after attempt.
        self._fault_profile = checked_fault_profile(profile)

    @property
    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.validate_payment,
            self.charge_payment,
            self.send_notification,
            self.settle_unfinished_payment,
        ]

    async def _unblocked(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Make one repository call; while another process holds the file's write lock, wait for it here,
        on the event loop, heartbeating, and never inside SQLite.

        A worker stopped with Ctrl-Z in the middle of a write keeps the lock: waiting inside SQLite
        held up every other attempt of this worker, and their heartbeats, up to 10 s per call.
        Each call is atomic, so one refused changed nothing and is simply made again.

        Raises:
            RepositoryBusyError: the lock was still held after :data:`LOCK_WAIT` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + LOCK_WAIT, _FIRST_LOCK_RETRY
        while True:
            try:
                with self.repository.without_waiting():
                    return call(*args, **kwargs)
            except RepositoryBusyError:
                if loop.time() >= deadline:
                    raise
            activity.heartbeat()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    @asynccontextmanager
    async def _attempt(self, payment_id: str) -> AsyncIterator[None]:
        """Record this attempt in the repository, however it ends."""
        info = activity.info()
        key = await self._unblocked(
            self.repository.start_attempt,
            AttemptRecord(
                payment_id=payment_id,
                activity=info.activity_type,
                attempt=info.attempt,
                workflow_id=info.workflow_id or "",
                run_id=info.workflow_run_id or "",
                worker=self.identity,
                started_at=datetime.now(UTC),
                ended_at=None,
                outcome="running",
                due_at=info.current_attempt_scheduled_time,
            )
        )
        overdue = _overdue(info)
        if overdue is not None:
            # Handed to this worker while it was stopped: Temporal has timed it out and retried it already.
            await self._unblocked(
                self.repository.finish_attempt, key, "timed out", f"not run: its {overdue} passed while this worker was paused"
            )
            raise ApplicationError(f"attempt {info.attempt} came after its {overdue}: not run", type="AttemptOverdue")
        paused = _PAUSED_PAST_TIMEOUT.set(None)
        try:
            yield
        except asyncio.CancelledError:
            await self._unblocked(self.repository.finish_attempt, key, "cancelled", "cancelled (timeout, cancellation or worker shutdown)")
            raise
        except Exception as err:
            await self._unblocked(self.repository.finish_attempt, key, "failed", str(err) or type(err).__name__)
            raise
        finally:
            too_late = _PAUSED_PAST_TIMEOUT.get()
            _PAUSED_PAST_TIMEOUT.reset(paused)
        if too_late is not None:
            await self._unblocked(
                self.repository.finish_attempt,
                key,
                "timed out",
                f"its worker was paused past its {too_late}: Temporal had timed it out and retried it",
            )
            return
        await self._unblocked(self.repository.finish_attempt, key, "completed")

    @staticmethod
    async def _wait(seconds: float) -> None:
        """Sleep while heartbeating, so that a cancellation reaches the attempt quickly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        timeout = activity.info().heartbeat_timeout
        while (left := deadline - loop.time()) > 0:
            activity.heartbeat()
            beat = loop.time()
            await asyncio.sleep(min(left, _HEARTBEAT_EVERY))
            # The monotonic clock runs on while the process is stopped: a gap past the heartbeat timeout
            # is a pause the server saw as a dead worker.
            if timeout and loop.time() - beat > (timeout + _PAUSE_MARGIN).total_seconds():
                _PAUSED_PAST_TIMEOUT.set(f"heartbeat timeout ({timeout.total_seconds():g} s)")

    async def _hang(self) -> None:
        info = activity.info()
        limit = info.start_to_close_timeout or info.schedule_to_close_timeout
        await self._wait((limit.total_seconds() if limit else 60.0) + _HANG_MARGIN)
        raise ApplicationError("attempt hung past its timeout and was never cancelled", type="SimulatedHang")

    @staticmethod
    def _fail_if_planned(step: str, faults: StepFaults) -> None:
        attempt = activity.info().attempt
        if attempt <= faults.fail_first:
            raise ApplicationError(
                f"simulated {step} outage (attempt {attempt} of the first {faults.fail_first} set to fail)",
                type="SimulatedOutage",
            )

    async def _before_work(self, step: str, faults: StepFaults) -> None:
        self._fail_if_planned(step, faults)
        if faults.delay:
            await self._wait(faults.delay)
        if activity.info().attempt <= faults.hang_first:
            await self._hang()

    @activity.defn(name=ActivityType.VALIDATE)
    async def validate_payment(self, input: ValidateInput) -> ValidationResult:
        """Check the request's rules; a broken rule is a normal, non-retried result."""
        request = input.request
        async with self._attempt(request.payment_id):
            activity.logger.info("Validating payment %s of %s %s", request.payment_id, request.amount, request.currency)
            await self._before_work(Step.VALIDATE, input.faults)
            result = await self._unblocked(validate_request, request, self.repository.organization_exists)
            if not result.valid:
                activity.logger.info("Payment %s declined: %s", request.payment_id, result.message)
            return result

    @activity.defn(name=ActivityType.CHARGE)
    async def charge_payment(self, input: ChargeInput) -> ChargeResult:
        """Charge the payment once, however many times this activity runs.

        The payment is saved as processing, the simulated processor is called with the
        payment id as idempotency key (a retry after a lost answer finds the earlier
        charge instead of charging again), then the payment is marked completed.
        """
        request, faults = input.request, input.faults
        info = activity.info()
        async with self._attempt(request.payment_id):
            activity.logger.info("Charging payment %s: %s %s", request.payment_id, request.amount, request.currency)
            stored = await self._unblocked(self.repository.find_by_id, request.payment_id)
            if stored is not None and stored.status is PaymentStatus.COMPLETED:
                # An earlier attempt finished the work but its answer never reached Temporal.
                return self._charged(request, await self._unblocked(self._call_processor, request))
            await self._unblocked(self._move, request, PaymentStatus.PROCESSING)
            self._fail_if_planned("processor", faults)
            if self.fault_profile.charge_fails(request.payment_id, info.attempt):
                raise ApplicationError(
                    f"simulated processor failure ({self.fault_profile.charge_failure_rate:.0%} of charges fail)",
                    type="ProcessorError",
                )
            if faults.decline:
                return ChargeResult(success=False, message="card declined by the processor (simulated)")
            outcome = await self._unblocked(self._call_processor, request)
            # The processor has the money; its answer may still be slow, or never come.
            await self._wait(faults.delay + self.fault_profile.charge_latency)
            if info.attempt <= faults.hang_first:
                await self._hang()
            await self._unblocked(self._move, request, PaymentStatus.COMPLETED)
            return self._charged(request, outcome)

    def _move(self, request: PaymentRequest, status: PaymentStatus) -> None:
        try:
            self.repository.transition(Payment.from_request(request), status)
        except InvalidTransitionError as err:
            raise ApplicationError(str(err), type="ChargeRefused", non_retryable=True) from err

    def _call_processor(self, request: PaymentRequest) -> ChargeOutcome:
        try:
            return self.repository.charge(
                request.payment_id, request.amount, request.currency, idempotency_key=request.payment_id
            )
        except ChargeRefusedError as err:
            raise ApplicationError(str(err), type="ChargeRefused", non_retryable=True) from err

    @staticmethod
    def _charged(request: PaymentRequest, outcome: ChargeOutcome) -> ChargeResult:
        if outcome.created:
            message = f"charged {request.amount} {request.currency}"
        else:
            message = f"already charged by an earlier attempt ({outcome.entry.entry_id}); nothing more taken"
        return ChargeResult(
            success=True, message=message, charge_id=outcome.entry.entry_id, already_charged=not outcome.created
        )

    @activity.defn(name=ActivityType.NOTIFY)
    async def send_notification(self, input: NotifyInput) -> NotificationResult:
        """Send the email and the webhook (recorded in the repository, not really sent)."""
        request, result = input.request, input.result
        async with self._attempt(request.payment_id):
            activity.logger.info("Notifying payment %s: %s", request.payment_id, result.status)
            await self._before_work(Step.NOTIFY, input.faults)
            return await self._unblocked(send_notifications, self.repository, request, result)

    @activity.defn(name=ActivityType.SETTLE)
    async def settle_unfinished_payment(self, input: SettleInput) -> PaymentStatus:
        """End a cancelled or failed payment; refund it if the processor had taken money."""
        async with self._attempt(input.payment_id):
            status = await self._unblocked(self.repository.settle_unfinished, input.payment_id, input.status, input.reason)
            activity.logger.info("Payment %s settled as %s: %s", input.payment_id, status, input.reason)
            return status
