"""Property tests of payment requests: whatever comes in, it is refused cleanly or fits Temporal and ends well."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.converter import encode_typed_search_attribute_value

from conftest import FAST
from payments_lab.activities import PaymentActivities
from payments_lab.currencies import MINOR_UNITS, minor_units
from payments_lab.domain import (
    AMOUNT_DIGITS,
    FIELD_LIMITS,
    MAX_AMOUNT,
    PaymentRequest,
    PaymentStatus,
    ValidationResult,
    validate_request,
)
from payments_lab.repository import DEMO_ORGANIZATIONS, PaymentRepository
from payments_lab.search_attributes import ORGANIZATION_ID, PAYMENT_CURRENCY
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker

PROPERTY = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
"""Random examples on a developer's machine (each run explores more), the same ones in CI (a
landing is never decided by the draw); nothing written to a .hypothesis folder, no deadline."""

SAMPLE = settings(
    PROPERTY,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
"""The same examples every run: for the samples that run through workflows and the CLI."""

_ODD = ["\udcff", "\udc80", "\ud800", "\x00", "\x1b", "\x7f", "\u200b", "\u202e", "\ufeff", "\t", "\n", "\r", "é", "😀", "İ", "ß", "\u0663"]
"""Characters that have broken payment systems: lone surrogates, NUL, escapes, invisible marks, unicode."""

chars = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(_ODD),
    st.integers(0xD800, 0xDFFF).map(chr),
)
"""Any code point, surrogates included."""


def long_text(limit: int) -> st.SearchStrategy[str]:
    """Text from empty to a little over ``limit`` characters: a repeated character and a random tail."""
    return st.builds(lambda c, n, tail: c * n + tail, chars, st.integers(0, limit + 50), st.text(chars, max_size=8))


ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
    st.text(chars, max_size=30),
    long_text(FIELD_LIMITS["payment_id"]),
    st.sampled_from(["", " ", "org-acme", "ORG-ACME", "org-acme\x00", "org-acme\u200b", "x" * 101]),
)
organizations = st.one_of(st.sampled_from(sorted(DEMO_ORGANIZATIONS)), ids)
currencies = st.one_of(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.sampled_from(sorted(MINOR_UNITS)).map(str.lower),
    st.sampled_from(["", " EUR", "EUR ", "E\u200bUR", "€", "ЕUR", "eur\x00", "X" * 17, "EURO"]),
    st.text(chars, max_size=20),
    long_text(FIELD_LIMITS["currency"] * 3),
)
descriptions = st.one_of(st.text(chars, max_size=40), long_text(FIELD_LIMITS["description"]))
amounts = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=Decimal("0.001"), max_value=MAX_AMOUNT * 2, places=4),
    st.integers(),
    st.integers(-(10**4000), 10**4000),
    st.floats(),
    st.builds(lambda m, e: f"{m}E{e}", st.integers(-(10**6), 10**6), st.integers(-(10**9), 10**9)),
    st.sampled_from(["NaN", "-NaN", "sNaN", "-sNaN", "NaN123", "Infinity", "-inf", "0", "-0", "0.00", "1e-28", "12.50",
                     " 12.50 ", "1_000", "", " ", "ten", "١٢٫٥", "\u0663", "12.5\x00", "1e999999999999999999"]),
    st.booleans(),
    st.none(),
    st.text(chars, max_size=20),
)


@st.composite
def request_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The keyword arguments of a :class:`PaymentRequest`, anything from sensible to hostile."""
    return {
        "payment_id": draw(ids),
        "organization_id": draw(organizations),
        "user_id": draw(ids),
        "amount": draw(amounts),
        "currency": draw(currencies),
        "description": draw(descriptions),
    }


def known(organization_id: str) -> bool:
    return organization_id in DEMO_ORGANIZATIONS


def build(fields: dict[str, Any]) -> PaymentRequest | str:
    """The request, or the message it was refused with, after checking how it was refused."""
    try:
        return PaymentRequest(**fields)
    except (ValueError, TypeError) as err:
        assert isinstance(err, (ValueError, TypeError)) and type(err).__module__ in ("builtins", "payments_lab.domain", "payments_lab.errors"), f"refused with a {type(err).__name__}"
        message = str(err)
        assert message and "\n" not in message and "\r" not in message
        assert message.isprintable(), f"unprintable message {message!r}"
        message.encode("utf-8")  # no raw surrogate: any terminal and any log can show it
        assert len(message) <= 1500, f"message of {len(message)} characters"
        return message


def check_fits(request: PaymentRequest) -> ValidationResult:
    """A built request fits Temporal and SQLite, and validation answers without raising."""
    for name in FIELD_LIMITS:
        getattr(request, name).encode("utf-8")
    assert len(request.workflow_id.encode("utf-8")) <= 1000
    # A Keyword search attribute as the SDK sends it (JSON, non-ASCII escaped): the server's limit is 2,048 bytes.
    for key, value in ((ORGANIZATION_ID, request.organization_id), (PAYMENT_CURRENCY, request.currency)):
        assert len(encode_typed_search_attribute_value(key, value).data) <= 2048, f"{key.name} of {len(value)} characters"
    assert len(request.amount.as_tuple().digits) <= AMOUNT_DIGITS
    assert isinstance(request.amount, Decimal) and not request.amount.is_snan()
    result = validate_request(request, known)
    assert isinstance(result, ValidationResult)
    assert result.valid == (not result.errors)
    for error in result.errors:
        error.encode("utf-8")
    if result.valid:
        amount, decimals = request.amount, minor_units(request.currency)
        assert amount.is_finite() and Decimal(0) < amount <= MAX_AMOUNT
        assert decimals is not None, "a valid request has a known currency"
        assert amount == amount.quantize(Decimal(1).scaleb(-decimals)), "no more decimals than its currency has"
    return result


@settings(PROPERTY, max_examples=700)
@given(request_fields())
def test_a_request_is_built_or_refused_in_one_clean_line(fields: dict[str, Any]) -> None:
    built = build(fields)
    if isinstance(built, PaymentRequest):
        check_fits(built)
    if isinstance(fields["amount"], float):
        assert isinstance(built, str), "a float amount is always refused"


@settings(PROPERTY, max_examples=300)
@given(st.deferred(lambda: workflow_fields()))
def test_requests_in_any_script_fit_temporal_and_validate(fields: dict[str, Any]) -> None:
    built = build(fields)
    assert isinstance(built, PaymentRequest), built
    check_fits(built)


@settings(PROPERTY, max_examples=150)
@given(st.floats(), st.sampled_from(sorted(MINOR_UNITS)))
def test_float_amounts_are_always_refused(amount: float, currency: str) -> None:
    built = build({"payment_id": "p-1", "organization_id": "org-acme", "user_id": "u", "amount": amount, "currency": currency})
    assert isinstance(built, str) and built.startswith("amount must be a Decimal or a string")


@settings(PROPERTY, max_examples=300)
@given(
    st.sampled_from(sorted(MINOR_UNITS)),
    st.decimals(min_value=Decimal("-5"), max_value=MAX_AMOUNT + 5, allow_nan=False, places=5),
    st.sampled_from([Decimal, str]),
)
def test_a_valid_amount_is_positive_within_the_limit_with_the_currency_decimals(currency: str, amount: Decimal, form: type) -> None:
    request = PaymentRequest("p-1", "org-acme", "u", form(amount), currency)
    result = check_fits(request)
    decimals = minor_units(currency)
    assert decimals is not None
    expected = Decimal(0) < amount <= MAX_AMOUNT and amount == amount.quantize(Decimal(1).scaleb(-decimals))
    assert result.valid == expected, (amount, currency, result.message)


def collect(strategy: st.SearchStrategy[dict[str, Any]], count: int, *explicit: dict[str, Any]) -> list[dict[str, Any]]:
    """The first ``count`` examples of ``strategy`` in a fixed order (derandomized), after ``explicit`` ones."""
    found: list[dict[str, Any]] = []

    @settings(SAMPLE, max_examples=count)
    @given(strategy)
    def gather(fields: dict[str, Any]) -> None:
        found.append(fields)

    for fields in reversed(explicit):
        gather = example(fields)(gather)
    gather()
    return found


def _numbered(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples with ``-<n>`` after each payment id, so that no two collide on the server; the id keeps its characters."""
    return [{**fields, "payment_id": f"{fields['payment_id']}-{n}"} for n, fields in enumerate(samples)]


_readable = st.characters(exclude_categories=("Cs", "Cc", "Cf"))
"""Unicode that passes the door (letters of any script, emoji, combining marks): what runs through workflows."""
_valid_ids = st.from_regex(r"[a-z0-9][a-z0-9._:-]{2,10}", fullmatch=True)
_valid_amounts = {
    "EUR": st.decimals(min_value=Decimal("0.01"), max_value=MAX_AMOUNT, places=2),
    "JPY": st.integers(1, 1_000_000),
    "KWD": st.decimals(min_value=Decimal("0.001"), max_value=MAX_AMOUNT, places=3).map(str),
}


@st.composite
def workflow_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A request that passes the door: valid, declined for some rules, or wild unicode."""
    currency = draw(st.sampled_from(sorted(_valid_amounts)))
    fields: dict[str, Any] = {
        "payment_id": draw(_valid_ids),
        "organization_id": draw(st.sampled_from(sorted(DEMO_ORGANIZATIONS))),
        "user_id": draw(_valid_ids),
        "amount": draw(_valid_amounts[currency]),
        "currency": currency,
        "description": draw(st.text(_readable, max_size=40)),
    }
    broken = draw(st.sets(st.sampled_from(sorted(fields)), max_size=4))
    wild = {
        "payment_id": st.text(_readable, min_size=1, max_size=12),
        "organization_id": st.text(_readable, max_size=10),
        "user_id": st.text(_readable, max_size=10),
        # Numbers only: text that is not a number is refused at the door (the first property).
        "amount": st.sampled_from(["NaN", "-Infinity", "0", "-3", "1e9", "12.3456", "1000000.01", "1E-30"]),
        "currency": st.one_of(st.sampled_from(["eur", "XYZ", "", " EUR", "€"]), st.text(_readable, max_size=4)),
        "description": st.builds(lambda c, n: c * n, _readable, st.integers(0, 700)),
    }
    for name in sorted(broken):
        fields[name] = draw(wild[name])
    return fields


async def test_a_seeded_sample_runs_through_workflows(
    client: Client, task_queue: str, activities: PaymentActivities, repository: PaymentRepository
) -> None:
    samples = _numbered(collect(workflow_fields(), 40))
    requests = [r for r in map(build, samples) if isinstance(r, PaymentRequest)][:26]
    verdicts = {r.payment_id: check_fits(r).valid for r in requests}
    assert 20 <= len(requests) and 5 <= sum(verdicts.values()) <= len(requests) - 5, "the sample mixes valid and declined"
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        handles = [await service.start(r) for r in requests]
        results = await asyncio.gather(*(h.result() for h in handles))
        for request, handle, result in zip(requests, handles, results):
            assert result.status is (PaymentStatus.COMPLETED if verdicts[request.payment_id] else PaymentStatus.DECLINED), result
            described = await handle.status()
            assert described.workflow_status == "completed" and described.payment_status is result.status
            if result.status is PaymentStatus.DECLINED:
                assert repository.find_by_id(request.payment_id) is None
                assert repository.ledger(request.payment_id) == []
                assert repository.notifications(request.payment_id) == []
            else:
                assert repository.charge_count(request.payment_id) == 1
    for unfinished in (PaymentStatus.PENDING, PaymentStatus.PROCESSING):
        assert await service.count(status=unfinished) == 0
    assert await service.count(status=PaymentStatus.DECLINED) == len(requests) - sum(verdicts.values())
    assert await service.count(status=PaymentStatus.COMPLETED) == sum(verdicts.values())


_ARGV_SAFE = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_terminal_chars = st.one_of(_ARGV_SAFE, st.integers(0xDC80, 0xDCFF).map(chr))
"""What can reach ``sys.argv``: anything but NUL; a byte that is not UTF-8 arrives as a surrogate in U+DC80..U+DCFF."""



@st.composite
def cli_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A request as typed on a command line: maybe declined, maybe with one field from a terminal that is not UTF-8."""
    fields = draw(workflow_fields())
    fields["payment_id"] = draw(st.from_regex(r"cli[a-z0-9]{6,10}", fullmatch=True))
    fields["amount"] = str(fields["amount"])
    if draw(st.booleans()):
        name = draw(st.sampled_from(["organization_id", "user_id", "amount", "currency", "description"]))
        fields[name] = draw(st.text(_terminal_chars, min_size=1, max_size=8))
    return fields


async def test_a_seeded_sample_through_the_cli(dev_server: EmbeddedServer) -> None:
    latin1 = {
        "payment_id": "latin1term", "organization_id": "org-acme", "user_id": "cli-user",
        "amount": "10.00", "currency": "EUR", "description": "caf\udce9",  # 'café' typed in a Latin-1 terminal
    }
    samples = collect(cli_fields(), 7, latin1)
    assert len(samples) == 8 and samples[0] == latin1

    async def pay(fields: dict[str, Any]) -> tuple[dict[str, Any], int, bytes, bytes]:
        argv = [
            sys.executable, "-m", "payments_lab", "pay", "--address", dev_server.address,
            f"--id={fields['payment_id']}", f"--org={fields['organization_id']}", f"--user={fields['user_id']}",
            f"--amount={fields['amount']}", f"--currency={fields['currency']}", f"--description={fields['description']}",
        ]
        process = await asyncio.create_subprocess_exec(
            *[os.fsencode(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        return fields, process.returncode or 0, stdout, stderr

    refused = accepted = 0
    for fields, code, stdout, stderr in await asyncio.gather(*(pay(f) for f in samples)):
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")
        built = build(fields)
        if isinstance(built, str):
            refused += 1
            assert code == 2, (fields, code, stderr)
            lines = stderr.decode("utf-8").splitlines()
            assert len(lines) == 1 and lines[0].startswith("payments-lab pay: error: "), lines
        else:
            accepted += 1
            valid = check_fits(built).valid
            assert code == (0 if valid else 1), (fields, code, stdout, stderr)
            output = json.loads(stdout)
            assert output["status"] == ("completed" if valid else "declined")
            assert (output["charges"], output["refunds"]) == ((1, 0) if valid else (0, 0))
            assert Decimal(output["kept"]) == (built.amount if valid else 0)
    assert refused >= 2 and accepted >= 3, f"the sample holds refused ({refused}) and accepted ({accepted}) requests"

