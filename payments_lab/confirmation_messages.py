"""Messages of the payment that waits for the customer: its input, the customer's answer, the processor's webhook.

They live apart from :mod:`payments_lab.confirmation` so that Temporal's sandbox, which
re-imports the workflow's module for every run, does not rebuild these classes each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from payments_lab.arguments import flag, positive_duration
from payments_lab.domain import PaymentRequest, PaymentStatus, text_problems
from payments_lab.errors import InvalidArgumentError
from payments_lab.faults import FaultPlan
from payments_lab.messages import PaymentOptions

CONFIRMATION_DEADLINE = timedelta(minutes=15)
"""How long a payment waits for the customer's confirmation before it is cancelled."""

AUTHENTICATED = "payment.authenticated"
"""Webhook type: the processor saw the customer pass 3-D Secure."""

AUTHENTICATION_FAILED = "payment.authentication_failed"
"""Webhook type: the customer failed or abandoned 3-D Secure."""

WEBHOOK_TYPES = (AUTHENTICATED, AUTHENTICATION_FAILED)
"""The processor events the workflow acts on."""


@dataclass(frozen=True)
class ConfirmationInput:
    """Input of :class:`payments_lab.confirmation.ConfirmedPaymentWorkflow`."""

    request: PaymentRequest
    """The payment."""
    deadline: timedelta = CONFIRMATION_DEADLINE
    """How long to wait for a confirmation once the payment is validated."""
    options: PaymentOptions = PaymentOptions()
    """Retry and timeout options of the activities."""
    faults: FaultPlan = FaultPlan()
    """Faults to inject, per step (none by default)."""

    def __post_init__(self) -> None:
        positive_duration("deadline", self.deadline)


@dataclass(frozen=True)
class CustomerAnswer:
    """Argument of the ``confirm`` update: what the customer answered on the checkout page."""

    approved: bool = True
    """True if the customer confirmed the payment, False if they refused it."""

    def __post_init__(self) -> None:
        # "no" is truthy: it would confirm a payment the customer refused.
        flag("approved", self.approved)


@dataclass(frozen=True)
class ConfirmationReceipt:
    """What the ``confirm`` update returns to the checkout page once it is accepted."""

    payment_id: str
    """The payment."""
    approved: bool
    """The answer that was recorded."""
    message: str
    """What happens next, in words a checkout page can show."""


EVENT_ID_LIMIT = 200
"""The most characters a webhook's event id may have, as a payment id."""


@dataclass(frozen=True)
class ProcessorEvent:
    """Argument of the ``processor_webhook`` signal: one webhook delivery from the processor.

    Processors deliver webhooks at least once: a redelivery carries the same ``event_id``.
    """

    event_id: str
    """The processor's id of this event, the same in every delivery of it."""
    type: str
    """``payment.authenticated`` or ``payment.authentication_failed``."""

    def __post_init__(self) -> None:
        # The workflow reads any type but AUTHENTICATED as a failure: a typo would refuse the payment.
        if not isinstance(self.event_id, str) or not self.event_id.strip():
            raise InvalidArgumentError(f"event_id must be a non-empty string, such as 'evt-1', got {self.event_id!r}")
        # An id like a payment's: it goes into the workflow's history and its query, and is compared as text.
        problems = text_problems("event_id", self.event_id)
        if len(self.event_id) > EVENT_ID_LIMIT:
            problems.append(f"event_id is {len(self.event_id):,} characters long; at most {EVENT_ID_LIMIT} are accepted")
        if problems:
            raise InvalidArgumentError("; ".join(problems))
        if self.type not in WEBHOOK_TYPES:
            raise InvalidArgumentError(f"type must be one of {', '.join(map(repr, WEBHOOK_TYPES))}, got {self.type!r}")


@dataclass(frozen=True)
class ConfirmationState:
    """What the ``confirmation`` query answers."""

    payment_id: str
    """The payment."""
    status: PaymentStatus
    """Its life-cycle status."""
    step: str
    """``validate``, ``confirm``, ``charge``, ``notify``, ``settle`` or ``done``."""
    decision: str | None
    """``confirmed``, ``refused``, ``expired`` (no answer before the deadline), ``cancelled`` (a cancellation came
    first), or None while it waits."""
    decided_by: str | None
    """``customer`` (the update), ``webhook <event id>`` (the signal), ``deadline`` (the timer) or ``cancellation request``."""
    webhook_events: tuple[str, ...]
    """Ids of the distinct webhook events received, in order."""
    duplicate_webhooks: int
    """Webhook deliveries ignored because their event id had been seen already."""
