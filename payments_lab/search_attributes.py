"""Custom search attributes that make payments findable through Temporal visibility."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from payments_lab.domain import PaymentRequest, PaymentStatus

ORGANIZATION_ID = SearchAttributeKey.for_keyword("OrganizationId")
"""The organization that pays: ``OrganizationId = 'org-acme'``."""

PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
"""The payment's status: ``pending``, set by the client at start, then the final one, upserted once by the workflow as it ends."""

PAYMENT_CURRENCY = SearchAttributeKey.for_keyword("PaymentCurrency")
"""The payment's ISO 4217 currency."""

EXERCISE_ID = SearchAttributeKey.for_keyword("ExerciseId")
"""The exercise a check record is about, e.g. ``02.q2`` (see :mod:`payments_lab.verdicts`)."""

CHECK_VERDICT = SearchAttributeKey.for_keyword("CheckVerdict")
"""A check record's verdict: ``correct`` or ``incorrect``."""

ALL = (ORGANIZATION_ID, PAYMENT_STATUS, PAYMENT_CURRENCY, EXERCISE_ID, CHECK_VERDICT)
"""Every attribute the kit needs registered on the namespace."""


def at_start(request: PaymentRequest) -> TypedSearchAttributes:
    """The search attributes a payment's workflow starts with: its organization, its currency, and
    ``PaymentStatus`` saying ``pending`` until the workflow upserts how it ended."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(ORGANIZATION_ID, request.organization_id),
            SearchAttributePair(PAYMENT_STATUS, PaymentStatus.PENDING.value),
            SearchAttributePair(PAYMENT_CURRENCY, request.currency),
        ]
    )
