"""Payment domain: the request, the Payment entity and its life-cycle, step results, validation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum

from payments_lab.currencies import minor_units

MAX_AMOUNT = Decimal("1000000")
"""Largest amount accepted for one payment, in major units of its currency."""

MAX_DESCRIPTION_LENGTH = 500
"""Longest description accepted, in characters."""

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


class PaymentStatus(str, Enum):
    """Where a payment is in its life-cycle.

    ``pending → processing → completed``, or it ends ``declined`` (validation said no,
    nothing was charged), ``failed`` (the charge did not go through), ``cancelled``
    (cancelled before any charge) or ``refunded`` (cancelled or failed after a charge,
    which was paid back).
    """

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    DECLINED = "declined"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"

    @property
    def is_final(self) -> bool:
        """Whether no further transition can happen."""
        return self not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING)

    def __str__(self) -> str:
        return self.value


_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.DECLINED,
            PaymentStatus.CANCELLED,
            PaymentStatus.FAILED,
        }
    ),
    PaymentStatus.PROCESSING: frozenset(
        {
            PaymentStatus.COMPLETED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELLED,
            PaymentStatus.REFUNDED,
        }
    ),
    PaymentStatus.COMPLETED: frozenset({PaymentStatus.REFUNDED}),
}


class InvalidTransitionError(ValueError):
    """A payment was asked to move to a status its life-cycle does not allow."""


def coerce_amount(value: Decimal | str | int) -> Decimal:
    """Turn ``value`` into a ``Decimal`` amount without ever going through a float.

    Raises:
        TypeError: ``value`` is a float, a bool or another non-numeric type.
        ValueError: ``value`` is a string that is not a number.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(
            f"amount must be a Decimal or a string such as '12.50', not {type(value).__name__} "
            f"{value!r}: a float cannot hold cents exactly"
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"amount {value!r} is not a number; write it like '12.50'") from None
    raise TypeError(f"amount must be a Decimal or a string such as '12.50', not {type(value).__name__}")


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class PaymentRequest:
    """What a client asks for: charge ``amount`` ``currency`` to an organization.

    The constructor only checks types (``amount`` may be a ``Decimal``, an ``int`` or a
    numeric string, never a float). Business rules are checked by
    :func:`validate_request`, inside the workflow, so that a bad request is declined
    with a message rather than refused before Temporal ever sees it.
    """

    payment_id: str
    """Unique id chosen by the client; the workflow id is ``payment-<payment_id>``."""
    organization_id: str
    """Organization that pays."""
    user_id: str
    """User who asked for the payment."""
    amount: Decimal
    """Amount in major units (``Decimal("12.50")`` is twelve euros fifty)."""
    currency: str
    """ISO 4217 code such as ``"EUR"``."""
    description: str = ""
    """Free text shown on the receipt."""

    def __post_init__(self) -> None:
        for name in ("payment_id", "organization_id", "user_id", "currency", "description"):
            _require_str(name, getattr(self, name))
        object.__setattr__(self, "amount", coerce_amount(self.amount))

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id of this payment."""
        return workflow_id_for(self.payment_id)


def workflow_id_for(payment_id: str) -> str:
    """Return the workflow id that runs payment ``payment_id``."""
    return f"payment-{payment_id}"


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of the validate step."""

    errors: tuple[str, ...] = ()
    """Every rule the request broke, in plain words; empty when it is valid."""

    @property
    def valid(self) -> bool:
        """Whether the request may be charged."""
        return not self.errors

    @property
    def message(self) -> str:
        """One line for humans."""
        return "valid" if self.valid else "; ".join(self.errors)


@dataclass(frozen=True)
class ChargeResult:
    """Outcome of the charge step."""

    success: bool
    """Whether the money was taken."""
    message: str
    """What happened, in plain words."""
    charge_id: str | None = None
    """Ledger entry of the charge, when there is one."""
    already_charged: bool = False
    """True when an earlier attempt had already charged: this attempt charged nothing more."""


@dataclass(frozen=True)
class NotificationResult:
    """Outcome of the notify step."""

    channels: tuple[str, ...] = ()
    """Channels that were sent, e.g. ``("email", "webhook")``."""


@dataclass(frozen=True)
class PaymentResult:
    """What the payment workflow returns."""

    payment_id: str
    """The payment."""
    status: PaymentStatus
    """Final status of the payment."""
    message: str
    """What happened, in plain words."""
    amount: Decimal | None = None
    """Amount of the payment."""
    currency: str | None = None
    """Currency of the payment."""
    charge_id: str | None = None
    """Ledger entry of the charge, if the payment was charged."""
    notified: bool = False
    """Whether the notification step succeeded (its failure never fails a payment)."""

    @property
    def success(self) -> bool:
        """Whether the payment completed."""
        return self.status is PaymentStatus.COMPLETED


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Payment:
    """A payment as the repository stores it, with its status life-cycle."""

    id: str
    organization_id: str
    user_id: str
    amount: Decimal
    currency: str
    description: str = ""
    status: PaymentStatus = PaymentStatus.PENDING
    failure_reason: str | None = None
    created_at: datetime = field(default_factory=_utcnow)
    updated_at: datetime = field(default_factory=_utcnow)

    @classmethod
    def from_request(cls, request: PaymentRequest) -> Payment:
        """Create a pending payment for ``request``."""
        return cls(
            id=request.payment_id,
            organization_id=request.organization_id,
            user_id=request.user_id,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
        )

    def transition(self, status: PaymentStatus, reason: str | None = None) -> Payment:
        """Return a copy moved to ``status``.

        Raises:
            InvalidTransitionError: the life-cycle does not allow the move.
        """
        if status is self.status:
            return self
        if status not in _TRANSITIONS.get(self.status, frozenset()):
            raise InvalidTransitionError(
                f"payment {self.id} cannot go from {self.status.value} to {status.value}"
            )
        return replace(self, status=status, failure_reason=reason, updated_at=_utcnow())


def validate_request(
    request: PaymentRequest, organization_exists: Callable[[str], bool]
) -> ValidationResult:
    """Check ``request`` against the payment rules and say everything that is wrong.

    The seed's rules (amount above zero, currency given, organization known) plus what a
    payments engineer expects: well-formed ids, a finite amount within limits, a known
    ISO 4217 currency and no more decimals than that currency has.
    """
    errors: list[str] = []
    for name in ("payment_id", "organization_id", "user_id"):
        value = getattr(request, name)
        if not value.strip():
            errors.append(f"{name} is required")
        elif not _ID_PATTERN.fullmatch(value):
            errors.append(
                f"{name} {value!r} may only use letters, digits, '.', '_', ':' and '-' "
                "(at most 100 characters, starting with a letter or digit)"
            )

    currency = request.currency
    decimals: int | None = None
    if not currency.strip():
        errors.append("currency is required")
    else:
        decimals = minor_units(currency)
        if decimals is None:
            hint = minor_units(currency.strip().upper())
            errors.append(
                f"currency {currency!r} is not an ISO 4217 code"
                + (f"; did you mean {currency.strip().upper()!r}?" if hint is not None else "")
            )

    amount = request.amount
    if not amount.is_finite():
        errors.append(f"amount {amount} is not a finite number")
    elif amount <= 0:
        errors.append(f"amount must be greater than zero, got {amount}")
    elif amount > MAX_AMOUNT:
        errors.append(f"amount {amount} is above the limit of {MAX_AMOUNT} per payment")
    elif decimals is not None and amount != amount.quantize(Decimal(1).scaleb(-decimals)):
        errors.append(
            f"amount {amount} has more decimals than {currency} allows ({decimals})"
        )

    if len(request.description) > MAX_DESCRIPTION_LENGTH:
        errors.append(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")

    organization_id = request.organization_id
    if organization_id.strip() and not organization_exists(organization_id):
        errors.append(f"organization {organization_id!r} does not exist")

    return ValidationResult(errors=tuple(errors))
