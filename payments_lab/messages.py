"""The payment workflow's messages: its input and retry options, and what its query answers.

They live apart from the workflow so that Temporal's sandbox, which re-imports the
workflow's module for every run, does not rebuild these classes each time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from payments_lab.arguments import flag, positive_duration, valid_retry_policy
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.errors import InvalidArgumentError
from payments_lab.faults import FaultPlan


@dataclass(frozen=True)
class PaymentOptions:
    """Retry and timeout options of one payment. The defaults are the seed chapter's."""

    initial_interval: timedelta = timedelta(seconds=1)
    """Wait before the first retry."""
    backoff_coefficient: float = 2.0
    """Each wait is this many times the previous one."""
    maximum_interval: timedelta = timedelta(seconds=60)
    """No wait is longer than this."""
    maximum_attempts: int = 3
    """Attempts per step, the first one included (0 means unlimited)."""
    validate_timeout: timedelta = timedelta(seconds=10)
    """Start-to-close timeout of one validate attempt."""
    charge_timeout: timedelta = timedelta(seconds=30)
    """Start-to-close timeout of one charge attempt."""
    charge_heartbeat_timeout: timedelta | None = timedelta(seconds=5)
    """A charge attempt that stops heartbeating this long (its worker died) is retried."""
    charge_schedule_to_close_timeout: timedelta | None = None
    """Schedule-to-close timeout of the charge: all its attempts and the waits between them
    together. None: no limit, so with ``maximum_attempts=0`` a failing charge is retried for
    as long as the workflow runs."""
    charge_cancellation: ActivityCancellationType = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    """What a cancelled payment does with a running charge attempt: wait until it has stopped
    (the kit's choice: it may be taking money), ``TRY_CANCEL`` (Temporal's default: ask it to
    stop and carry on at once) or ``ABANDON`` (carry on without even asking)."""
    notify_timeout: timedelta = timedelta(seconds=10)
    """Start-to-close timeout of one notify attempt."""
    local_validation: bool = False
    """Validate as a local activity: run by the worker that runs the workflow, in the same
    workflow task, with no trip through a task queue (faster; for short, cheap steps).
    While it runs, the server holds back a cancellation: a validation that took 50 ms or
    more is followed by one more workflow task, which takes the cancellation in before the
    charge (``payments_lab.workflows.HELD_BACK_LIMIT``)."""
    local_notification: bool = False
    """Notify as a local activity, likewise."""

    def __post_init__(self) -> None:
        # The retry fields are checked as the policy they make, the one Temporal is given.
        positive_duration("maximum_interval", self.maximum_interval)
        valid_retry_policy(self.retry_policy)
        for name in ("validate_timeout", "charge_timeout", "notify_timeout"):
            positive_duration(name, getattr(self, name))
        for name in ("charge_heartbeat_timeout", "charge_schedule_to_close_timeout"):
            positive_duration(name, getattr(self, name), optional=True)
        if not isinstance(self.charge_cancellation, ActivityCancellationType):
            raise InvalidArgumentError(f"charge_cancellation must be an ActivityCancellationType, got {self.charge_cancellation!r}")
        # The workflow's converter refuses anything but a bool here: the payment would never start.
        flag("local_validation", self.local_validation)
        flag("local_notification", self.local_notification)

    @functools.cached_property
    def retry_policy(self) -> RetryPolicy:
        """The Temporal retry policy of every step (built once: every step of a payment asks for it)."""
        return RetryPolicy(
            initial_interval=self.initial_interval,
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=self.maximum_interval,
            maximum_attempts=self.maximum_attempts,
        )


@dataclass(frozen=True)
class PaymentInput:
    """Input of :class:`PaymentWorkflow`."""

    request: PaymentRequest
    """The payment."""
    options: PaymentOptions = PaymentOptions()
    """Retry and timeout options."""
    faults: FaultPlan = FaultPlan()
    """Faults to inject, per step (none by default)."""


@dataclass(frozen=True)
class PaymentProgress:
    """What the ``progress`` query answers."""

    payment_id: str
    """The payment."""
    status: PaymentStatus
    """Its life-cycle status."""
    step: str
    """``validate``, ``charge``, ``notify``, ``settle`` or ``done``."""
    message: str
    """What is happening, in plain words."""


@dataclass(frozen=True)
class PaymentAnswer:
    """What the ``answer`` update returns: the payment's first answer, once validation is done.

    ``accepted`` says the payment passed validation and its charge is under way: it does not
    say the money was taken. The charge's outcome is the workflow's result.
    """

    payment_id: str
    """The payment."""
    accepted: bool
    """True: validated, the charge and the notification follow. False: it has already ended."""
    status: PaymentStatus
    """``processing`` when accepted; otherwise how it ended (``declined``, ``failed``, ``cancelled``…)."""
    message: str
    """What to tell the customer now, in plain words."""


TUNED = PaymentOptions(local_validation=True, local_notification=True)
"""The seed's options with the cheap steps as local activities: only the charge, which
must survive a crash with a heartbeat and idempotency, goes through a task queue."""


def checked_payment_options(options: object, default: PaymentOptions) -> PaymentOptions:
    """``options`` if they are :class:`PaymentOptions`; ``default`` for None.

    Raises:
        ValueError: anything else (a dict of options is not read: it would be silently ignored).
    """
    if options is None:
        return default
    if isinstance(options, PaymentOptions):
        return options
    raise InvalidArgumentError(
        f"options must be PaymentOptions, e.g. TUNED or PaymentOptions(charge_timeout=timedelta(seconds=5)), got {options!r}"
    )

