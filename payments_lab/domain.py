"""Payment domain: the request, the Payment entity and its life-cycle, step results, validation."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum

from payments_lab.arguments import short_repr
from payments_lab.currencies import minor_units
from payments_lab.errors import InvalidArgumentError, PaymentsLabError

MAX_AMOUNT = Decimal("1000000")
"""Largest amount accepted for one payment, in major units of its currency."""

MAX_DESCRIPTION_LENGTH = 500
"""Longest description accepted, in characters."""

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")

FIELD_LIMITS: dict[str, int] = {
    "payment_id": 200,
    "organization_id": 170,
    "user_id": 200,
    "currency": 16,
    "description": 10_000,
}
"""The most characters each text field of a request may carry to Temporal and SQLite.

They keep every request within Temporal's limits whatever its characters: the payment id
becomes a workflow id (at most 1,000 bytes of UTF-8: 8 + 4 × 200), the organization and the
currency become Keyword search attributes (at most 2,048 bytes each, counted as the SDK sends
them: JSON with every character beyond ASCII escaped, 12 bytes for an emoji, so 2 + 12 × 170).
Validation's own rules are stricter (ids of at most 100 characters, descriptions of at most
500) and decline the payment.
"""

_TEXT_FIELDS = tuple(FIELD_LIMITS)
_DESCRIPTION_CONTROLS_ALLOWED = frozenset("\t\n\r")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional overrides and isolates: in a description (where other formatting characters, an emoji's
zero-width joiner for one, are fine) they make text show other than it reads ("Trojan Source")."""


class Step(StrEnum):
    """The steps of a payment, in the order they run.

    ``confirm`` is a payment waiting for its customer (lesson 11's workflow), the one step
    that runs no activity; ``settle`` ends a payment that will not complete (refunding it if
    it was charged); ``done`` is where the ``progress`` query says a payment that has ended is.
    """

    VALIDATE = "validate"
    CONFIRM = "confirm"
    CHARGE = "charge"
    NOTIFY = "notify"
    SETTLE = "settle"
    DONE = "done"


class ActivityType(StrEnum):
    """The payment's activity types, as the history and the Web UI name them; each performs a :class:`Step`."""

    VALIDATE = "validate_payment"
    CHARGE = "charge_payment"
    NOTIFY = "send_notification"
    SETTLE = "settle_unfinished_payment"


STEPS: dict[str, str] = {
    ActivityType.VALIDATE: Step.VALIDATE.value,
    ActivityType.CHARGE: Step.CHARGE.value,
    ActivityType.NOTIFY: Step.NOTIFY.value,
    ActivityType.SETTLE: Step.SETTLE.value,
}
"""The step each activity type performs."""


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

    @classmethod
    def _missing_(cls, value: object) -> PaymentStatus:
        if isinstance(value, str):
            for status in cls:
                if status.value == value.strip().lower():
                    return status
        shown = preview(value) if isinstance(value, str) else type(value).__name__
        raise InvalidArgumentError(f"unknown payment status {shown}; use one of: {', '.join(s.value for s in cls)}")

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


class RequestRefusedError(PaymentsLabError, ValueError):
    """A payment request that must not reach Temporal or the database (see :data:`FIELD_LIMITS`)."""


class InvalidTransitionError(PaymentsLabError, ValueError):
    """A payment was asked to move to a status its life-cycle does not allow."""


AMOUNT_DIGITS = 10_000
"""The most digits an amount may carry to Temporal. One of millions reached the server, which refused
the payment's input as a blob too large; anything shorter is validation's to decline (an amount
above :data:`MAX_AMOUNT`, or with more decimals than its currency has)."""


def coerce_amount(value: Decimal | str | int) -> Decimal:
    """Turn ``value`` into a ``Decimal`` amount without ever going through a float.

    Raises:
        TypeError: ``value`` is a float, a bool or another non-numeric type.
        ValueError: ``value`` is a string that is not a number, or has more than :data:`AMOUNT_DIGITS` digits.
    """
    if isinstance(value, bool):  # before int: a bool is an int to Python
        raise InvalidArgumentError(f"amount must be a Decimal or a string such as '12.50', not bool {value!r}")
    if isinstance(value, float):
        raise InvalidArgumentError(
            f"amount must be a Decimal or a string such as '12.50', not float {value!r}: a float cannot hold cents exactly"
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        if abs(value).bit_length() > 4 * AMOUNT_DIGITS:  # before Decimal(), which refuses ints of 4,300+ digits with advice of its own
            raise InvalidArgumentError(
                f"amount has about {int(abs(value).bit_length() * 0.30103) + 1:,} digits; at most {AMOUNT_DIGITS:,} are carried "
                "to Temporal: write it like '12.50'"
            )
        amount = Decimal(value)
    elif isinstance(value, str):
        # Python's Decimal also reads '12_50' (as 1250: a digit separator) and digits of other
        # scripts ('١٢'); a payment amount is written with ASCII digits and one '.' only.
        if "_" in value or any(c.isdigit() and not c.isascii() for c in value):
            raise InvalidArgumentError(f"amount {preview(value)} is not written with plain digits; write it like '12.50'")
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidArgumentError(f"amount {preview(value)} is not a number; write it like '12.50'") from None
    else:
        raise InvalidArgumentError(f"amount must be a Decimal or a string such as '12.50', not {type(value).__name__}")
    if amount.is_snan():
        # A signalling NaN raises on any comparison: refuse it here rather than anywhere later.
        raise InvalidArgumentError("amount sNaN (a signalling NaN) is not a number; write it like '12.50'")
    digits = len(amount.as_tuple().digits)
    if digits > AMOUNT_DIGITS:
        raise InvalidArgumentError(
            f"amount has {digits:,} digits; at most {AMOUNT_DIGITS:,} are carried to Temporal (a payment's input travels "
            "in its history): write it like '12.50'"
        )
    return amount


def preview(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message: escaped like ``repr`` and cut after ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        # Never format the value itself: a huge int cannot even be turned into text.
        raise InvalidArgumentError(f"{name} must be a string, not {type(value).__name__}")


def lone_surrogate_problem(name: str, value: str) -> str | None:
    """Why ``value`` is not valid Unicode text (no server, file or database takes it), or None.

    A byte from a terminal or file that is not UTF-8 reaches Python as a lone surrogate.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return (
            f"{name} is not valid text: character {err.start + 1} is {value[err.start]!r}, a lone surrogate "
            "(often a byte from a terminal or file that is not UTF-8: set it to UTF-8)"
        )
    return None


def text_problems(name: str, value: str) -> list[str]:
    """What keeps ``value`` out of Temporal and SQLite as field ``name``, in plain words.

    Checked when a :class:`PaymentRequest` is built, before anything is sent or stored:
    text that is not valid Unicode (a lone surrogate, which is how a byte from a terminal
    that is not UTF-8 reaches Python), control or invisible formatting characters in an id
    or currency, and more characters than :data:`FIELD_LIMITS` allows.
    """
    problems: list[str] = []
    not_unicode = lone_surrogate_problem(name, value)
    if not_unicode is not None:
        problems.append(not_unicode)
    controls_allowed = _DESCRIPTION_CONTROLS_ALLOWED if name == "description" else frozenset()
    categories = ("Cc",) if name == "description" else ("Cc", "Cf")
    bad = next(
        (c for c in value if (unicodedata.category(c) in categories and c not in controls_allowed) or c in _BIDI_CONTROLS),
        None,
    )
    if bad is not None:
        kind = "a control character" if unicodedata.category(bad) == "Cc" else "an invisible formatting character"
        problems.append(f"{name} contains {kind} ({bad!r})")
    limit = FIELD_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        problems.append(f"{name} is {len(value):,} characters long; at most {limit:,} are accepted")
    return problems


def checked_text(name: str, value: object) -> str:
    """``value``, if it is text that Temporal can carry as field ``name`` (see :func:`text_problems`).

    Raises:
        ValueError: it is not a string, or not such text; the message names every problem.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, not {type(value).__name__}")
    problems = text_problems(name, value)
    if problems:
        raise InvalidArgumentError("; ".join(problems))
    return value


def checked_payment_id(payment_id: object) -> str:
    """``payment_id``, if it is an id a payment could have.

    Raises:
        ValueError: it is not a string, or not text that Temporal can carry.
    """
    return checked_text("payment_id", payment_id)


@dataclass(frozen=True)
class PaymentRequest:
    """What a client asks for: charge ``amount`` ``currency`` to an organization.

    The constructor refuses, with one ``ValueError`` naming every problem, what must never
    reach Temporal or the database: a field that is not a string, text that is not valid
    Unicode, control characters in ids, fields longer than :data:`FIELD_LIMITS`, an amount
    that is a float or not a number. Business rules are checked by :func:`validate_request`,
    inside the workflow, so that a request that breaks them is declined with a message
    that Temporal records.
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
        for name in _TEXT_FIELDS:
            _require_str(name, getattr(self, name))
        problems = [problem for name in _TEXT_FIELDS for problem in text_problems(name, getattr(self, name))]
        if problems:
            raise RequestRefusedError("payment request refused: " + "; ".join(problems))
        object.__setattr__(self, "amount", coerce_amount(self.amount))

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id of this payment."""
        return workflow_id_for(self.payment_id)


WORKFLOW_ID_PREFIX = "payment-"
"""What a payment's workflow id starts with, before its payment id."""


def workflow_id_for(payment_id: str) -> str:
    """Return the workflow id that runs payment ``payment_id``."""
    return f"{WORKFLOW_ID_PREFIX}{payment_id}"


def payment_id_of(workflow_id: str) -> str:
    """Return the payment a workflow id runs: the inverse of :func:`workflow_id_for`."""
    return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)


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
    return datetime.now(UTC)


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


def _show_amount(amount: Decimal) -> str:
    """``amount`` as written, or in scientific notation when that would be unreadably long."""
    text = str(amount)
    return text if len(text) <= 30 else f"{amount:.6E}"


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
    shown = _show_amount(amount)
    if not amount.is_finite():
        errors.append(f"amount {shown} is not a finite number")
    elif amount <= 0:
        errors.append(f"amount must be greater than zero, got {shown}")
    elif amount > MAX_AMOUNT:
        errors.append(f"amount {shown} is above the limit of {MAX_AMOUNT} per payment")
    elif decimals is not None and amount != amount.quantize(Decimal(1).scaleb(-decimals)):
        errors.append(f"amount {shown} has more decimals than {currency} allows ({decimals})")

    if len(request.description) > MAX_DESCRIPTION_LENGTH:
        errors.append(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")

    organization_id = request.organization_id
    if organization_id.strip() and not organization_exists(organization_id):
        errors.append(f"organization {organization_id!r} does not exist")

    return ValidationResult(errors=tuple(errors))


def checked_request(request: object) -> PaymentRequest:
    """``request``, if it is a :class:`PaymentRequest` (what starting a payment takes).

    Raises:
        TypeError: it is anything else (an amount, a dict, None); the message says how to build one.
    """
    if not isinstance(request, PaymentRequest):
        raise InvalidArgumentError(
            f"a payment starts from a PaymentRequest, not {type(request).__name__} {short_repr(request, 60)}: build one with "
            "`lab.request('10.00')` (or `PaymentRequest(payment_id, organization_id, user_id, amount, currency)`), "
            "or run one at once with `await lab.pay('10.00')`"
        )
    return request
