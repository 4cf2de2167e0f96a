"""Visibility queries: quoting, and what the kit does with a refusal from the server."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from payments_lab.errors import PaymentsLabError
from payments_lab.visibility import VisibilityQueryError, quoted, refused_query_as_error


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("org-acme", "'org-acme'"),
        ("o'brien", "'o\\'brien'"),
        ("back\\slash", "'back\\\\slash'"),
        ("", "''"),
        ("café", "'café'"),
    ],
)
def test_values_are_quoted_as_string_literals(value: str, literal: str) -> None:
    assert quoted(value) == literal


def test_only_strings_are_quoted() -> None:
    with pytest.raises(TypeError, match="compares strings here, not int 5"):
        quoted(5)  # type: ignore[arg-type]


def test_a_refused_query_becomes_an_error_of_the_kit_that_shows_the_query() -> None:
    with pytest.raises(VisibilityQueryError) as refused:
        with refused_query_as_error("Nope = 1"):
            raise RPCError("invalid query: invalid search attribute: Nope", RPCStatusCode.INVALID_ARGUMENT, b"")
    assert isinstance(refused.value, PaymentsLabError) and isinstance(refused.value, ValueError)
    assert str(refused.value).startswith(
        "the server refused the visibility query 'Nope = 1': invalid query: invalid search attribute: Nope."
    )
    assert "OrganizationId, PaymentStatus and PaymentCurrency" in str(refused.value)
    assert refused.value.__suppress_context__  # the gRPC trace would only hide the message


def test_other_server_errors_go_through_unchanged() -> None:
    unavailable = RPCError("tcp connect error", RPCStatusCode.UNAVAILABLE, b"")
    with pytest.raises(RPCError) as raised:
        with refused_query_as_error("PaymentStatus = 'completed'"):
            raise unavailable
    assert raised.value is unavailable
