"""Tests of the payment domain: request types, validation rules, the status life-cycle."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments_lab.currencies import MINOR_UNITS, minor_units
from payments_lab.domain import (
    InvalidTransitionError,
    Payment,
    PaymentRequest,
    PaymentStatus,
    coerce_amount,
    validate_request,
)
from payments_lab.errors import InvalidArgumentError


def request(**changes: object) -> PaymentRequest:
    fields: dict[str, object] = dict(
        payment_id="p-1", organization_id="org-acme", user_id="u-1", amount=Decimal("12.50"), currency="EUR"
    )
    fields.update(changes)
    return PaymentRequest(**fields)  # type: ignore[arg-type]


def known(org: str) -> bool:
    return org == "org-acme"


def test_amount_accepts_decimal_string_and_int_exactly() -> None:
    assert request(amount="0.10").amount == Decimal("0.10")
    assert str(request(amount="0.10").amount) == "0.10"
    assert request(amount=7).amount == Decimal(7)


@pytest.mark.parametrize("amount", [12.5, 0.1, True])
def test_amount_refuses_float_and_bool(amount: object) -> None:
    with pytest.raises(TypeError, match="Decimal or a string"):
        request(amount=amount)


def test_amount_refuses_text_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="'twelve' is not a number"):
        request(amount="twelve")


def test_ids_must_be_strings() -> None:
    with pytest.raises(TypeError, match="payment_id must be a string"):
        request(payment_id=42)


def test_valid_request_passes() -> None:
    result = validate_request(request(), known)
    assert result.valid
    assert result.errors == ()
    assert result.message == "valid"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"amount": "0"}, "amount must be greater than zero, got 0"),
        ({"amount": "-5"}, "amount must be greater than zero, got -5"),
        ({"amount": "NaN"}, "amount NaN is not a finite number"),
        ({"amount": "Infinity"}, "amount Infinity is not a finite number"),
        ({"amount": "1000000.01"}, "above the limit of 1000000"),
        ({"amount": "1E+30"}, "above the limit"),
        ({"amount": "12.345"}, "amount 12.345 has more decimals than EUR allows (2)"),
        ({"amount": "100.5", "currency": "JPY"}, "more decimals than JPY allows (0)"),
        ({"currency": ""}, "currency is required"),
        ({"currency": "   "}, "currency is required"),
        ({"currency": "XYZ"}, "currency 'XYZ' is not an ISO 4217 code"),
        ({"currency": "eur"}, "did you mean 'EUR'?"),
        ({"organization_id": "org-unknown"}, "organization 'org-unknown' does not exist"),
        ({"organization_id": ""}, "organization_id is required"),
        ({"payment_id": "  "}, "payment_id is required"),
        ({"user_id": ""}, "user_id is required"),
        ({"payment_id": "has space"}, "payment_id 'has space' may only use"),
        ({"description": "x" * 501}, "description is longer than 500 characters"),
    ],
)
def test_each_rule_is_named_in_the_message(changes: dict[str, object], expected: str) -> None:
    result = validate_request(request(**changes), known)
    assert not result.valid
    assert expected in result.message


def test_trailing_zeros_within_the_currency_are_fine() -> None:
    assert validate_request(request(amount="12.500"), known).valid
    assert validate_request(request(amount="1.234", currency="KWD"), known).valid


def test_every_broken_rule_is_reported_at_once() -> None:
    result = validate_request(request(amount="-1", currency="", organization_id="nope"), known)
    assert len(result.errors) == 3


def test_currency_table() -> None:
    assert minor_units("EUR") == 2
    assert minor_units("JPY") == 0
    assert minor_units("BHD") == 3
    assert minor_units("XXX") is None
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)


def test_workflow_id_is_derived_from_the_payment_id() -> None:
    assert request(payment_id="abc").workflow_id == "payment-abc"


def test_life_cycle_allows_the_happy_path() -> None:
    payment = Payment.from_request(request())
    assert payment.status is PaymentStatus.PENDING
    processing = payment.transition(PaymentStatus.PROCESSING)
    completed = processing.transition(PaymentStatus.COMPLETED)
    assert completed.status is PaymentStatus.COMPLETED
    assert payment.status is PaymentStatus.PENDING, "transition returns a copy"
    assert completed.transition(PaymentStatus.REFUNDED).status is PaymentStatus.REFUNDED


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (PaymentStatus.COMPLETED, PaymentStatus.PROCESSING),
        (PaymentStatus.FAILED, PaymentStatus.COMPLETED),
        (PaymentStatus.CANCELLED, PaymentStatus.PROCESSING),
        (PaymentStatus.DECLINED, PaymentStatus.COMPLETED),
        (PaymentStatus.PENDING, PaymentStatus.COMPLETED),
    ],
)
def test_life_cycle_refuses_other_moves(start: PaymentStatus, target: PaymentStatus) -> None:
    payment = Payment.from_request(request())
    payment.status = start
    with pytest.raises(InvalidTransitionError, match=f"from {start.value} to {target.value}"):
        payment.transition(target)


def test_final_statuses() -> None:
    assert not PaymentStatus.PENDING.is_final
    assert not PaymentStatus.PROCESSING.is_final
    assert all(s.is_final for s in PaymentStatus if s not in (PaymentStatus.PENDING, PaymentStatus.PROCESSING))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"organization_id": "org\udcff"}, "organization_id is not valid text: character 4 is '\\udcff'"),
        ({"description": "caf\udce9"}, "description is not valid text"),
        ({"payment_id": "p\x00"}, "payment_id contains a control character ('\\x00')"),
        ({"currency": "EU\u200bR"}, "currency contains an invisible formatting character"),
        ({"description": "a\x07b"}, "description contains a control character"),
        ({"description": "invoice \u202egnp.exe"}, "description contains an invisible formatting character ('\\u202e')"),
        ({"payment_id": "p" * 1200}, "payment_id is 1,200 characters long; at most 200 are accepted"),
        ({"organization_id": "o" * 3000}, "organization_id is 3,000 characters long"),
        ({"currency": "E" * 3000}, "currency is 3,000 characters long; at most 16"),
        ({"description": "d" * 10_001}, "description is 10,001 characters long; at most 10,000"),
    ],
)
def test_text_that_cannot_reach_temporal_is_refused_when_the_request_is_built(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match="payment request refused") as raised:
        request(**changes)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)
    str(raised.value).encode("utf-8")  # the message itself is printable text


def test_every_problem_is_named_in_one_error() -> None:
    with pytest.raises(ValueError) as raised:
        request(payment_id="p\udcff", user_id="u" * 300, currency="\x1b[31mEUR")
    message = str(raised.value)
    assert "payment_id is not valid text" in message
    assert "user_id is 300 characters long" in message
    assert "currency contains a control character" in message


def test_descriptions_may_span_lines() -> None:
    assert request(description="line one\nline two\ttabbed").description.count("\n") == 1


def test_descriptions_keep_an_emojis_zero_width_joiner() -> None:
    assert request(description="paid by \U0001f469\u200d\U0001f4bb").description.endswith("\u200d\U0001f4bb")


def test_huge_values_never_break_the_messages() -> None:
    with pytest.raises(TypeError, match="^currency must be a string, not int$"):
        request(currency=10**5000)
    huge = request(amount=10**5000)
    assert "amount 1.000000E+5000 is above the limit" in validate_request(huge, known).message
    with pytest.raises(ValueError, match="signalling NaN"):
        request(amount="sNaN")
    with pytest.raises(ValueError, match=r"\(5,000 characters\) is not a number"):
        request(amount="x" * 5000)
    # Off the script: an amount of millions of digits reached the server, which refused it as a blob too large.
    with pytest.raises(ValueError, match=r"^amount has 3,000,000 digits; at most 10,000 are carried to Temporal"):
        request(amount="9" * 3_000_000)
    with pytest.raises(ValueError, match=r"^amount has about 20,001 digits; at most 10,000"):
        request(amount=10**20000)
    # Off the script: 171 emoji are 2,054 bytes as the SDK sends a search attribute (JSON, escaped), over Temporal's 2,048.
    with pytest.raises(ValueError, match="organization_id is 171 characters long; at most 170 are accepted"):
        request(organization_id="\U0001f642" * 171)


def test_unknown_statuses_name_the_valid_ones() -> None:
    assert PaymentStatus(" Completed ") is PaymentStatus.COMPLETED
    with pytest.raises(ValueError, match="unknown payment status 'complete'; use one of: pending, processing"):
        PaymentStatus("complete")


def test_every_error_the_kit_raises_on_purpose_has_one_root() -> None:
    import importlib
    import inspect
    import pkgutil

    import payments_lab
    from payments_lab.errors import PaymentsLabError

    errors = {}
    for module in pkgutil.walk_packages(payments_lab.__path__, "payments_lab."):
        if module.name.endswith("__main__"):
            continue  # running it is the command line
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == loaded.__name__:
                errors[f"{loaded.__name__}.{name}"] = value
    outside = sorted(name for name, cls in errors.items() if not issubclass(cls, PaymentsLabError) and not name.endswith(".Mismatch"))
    assert outside == [], f"errors outside PaymentsLabError: {outside}"
    assert len(errors) >= 10


def test_a_kit_error_shows_in_a_notebook_as_one_line_that_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    """A cell run again (lesson 11's confirmation sent twice) shows the refusal, not a page of the kit's frames."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell(
            "from payments_lab.checkout import ConfirmationRefusedError\n"
            "raise ConfirmationRefusedError('pay-1', 'already confirmed (by the customer)')"
        )
    finally:
        InteractiveShell.clear_instance()
    shown = capsys.readouterr().out.strip()
    assert shown == "\x1b[31mConfirmationRefusedError\x1b[0m: confirmation of payment 'pay-1' refused: already confirmed (by the customer)"


def test_a_refused_argument_shows_as_one_line_and_is_still_the_builtin_error() -> None:
    """lab.request(12.5) in a notebook: one red line naming the fix, not a page of the kit's frames."""
    with pytest.raises(InvalidArgumentError) as refused:
        coerce_amount(12.5)
    assert isinstance(refused.value, TypeError) and isinstance(refused.value, ValueError)
    (line,) = refused.value._render_traceback_()
    assert "InvalidArgumentError" in line and "a float cannot hold cents exactly" in line


@pytest.mark.parametrize("written", ["12_50", "1_000.00", "١٢.٥٠", "１２.５０"])
def test_an_amount_is_written_with_plain_digits(written: str) -> None:
    """Python's Decimal reads '12_50' as 1250 and other scripts' digits as numbers: never a payment amount."""
    with pytest.raises(ValueError, match="is not written with plain digits; write it like '12.50'"):
        coerce_amount(written)
    assert coerce_amount(" 12.50 ") == Decimal("12.50") and coerce_amount("-3") == Decimal("-3")
