"""Custom search attributes that make payments findable through Temporal visibility."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ORGANIZATION_ID = SearchAttributeKey.for_keyword("OrganizationId")
"""The organization that pays: ``OrganizationId = 'org-acme'``."""

PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
"""The payment's status: ``pending``, set by the client at start, then the final one, upserted once by the workflow as it ends."""

PAYMENT_CURRENCY = SearchAttributeKey.for_keyword("PaymentCurrency")
"""The payment's ISO 4217 currency."""

ALL = (ORGANIZATION_ID, PAYMENT_STATUS, PAYMENT_CURRENCY)
"""Every attribute the kit needs registered on the namespace."""
