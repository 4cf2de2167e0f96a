"""Tests of the kit's data converter: exact money, durations and the kit's dataclasses."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio.api.common.v1 import Payload

from payments_lab.confirmation_messages import AUTHENTICATED, CustomerAnswer, ProcessorEvent
from payments_lab.converter import DATA_CONVERTER
from payments_lab.domain import PaymentRequest, PaymentResult, PaymentStatus, ValidationResult
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.messages import PaymentInput, PaymentOptions


async def round_trip(value: object, hint: type) -> object:
    payloads = await DATA_CONVERTER.encode([value])
    (back,) = await DATA_CONVERTER.decode(payloads, [hint])
    return back


async def test_decimal_is_a_string_in_json_and_comes_back_exact() -> None:
    payloads = await DATA_CONVERTER.encode([Decimal("0.10")])
    assert json.loads(payloads[0].data) == "0.10"
    back = await round_trip(Decimal("0.10"), Decimal)
    assert isinstance(back, Decimal) and str(back) == "0.10"


async def test_temporals_default_converter_cannot_carry_a_payment_which_is_why_the_kit_has_one() -> None:
    """Lesson 01 says so: a client or Replayer of the learner's own must be given DATA_CONVERTER."""
    from temporalio.converter import DataConverter

    with pytest.raises(TypeError, match="Decimal is not JSON serializable"):
        await DataConverter.default.encode([Decimal("12.50")])
    assert await round_trip(Decimal("12.50"), Decimal) == Decimal("12.50")


async def test_the_workflow_input_round_trips_with_every_nested_type() -> None:
    value = PaymentInput(
        PaymentRequest("p-1", "org-acme", "u", "12.50", "EUR", "coffee"),
        PaymentOptions(initial_interval=timedelta(milliseconds=250), charge_heartbeat_timeout=None),
        FaultPlan(charge=StepFaults(fail_first=2, delay=0.5, decline=True), notify=StepFaults(hang_first=1)),
    )
    assert await round_trip(value, PaymentInput) == value


async def test_results_with_enums_tuples_and_nones_round_trip() -> None:
    result = PaymentResult("p-1", PaymentStatus.REFUNDED, "refunded", Decimal("3"), "JPY", None, False)
    back = await round_trip(result, PaymentResult)
    assert back == result and back.status is PaymentStatus.REFUNDED
    assert await round_trip(ValidationResult(("a", "b")), ValidationResult) == ValidationResult(("a", "b"))


async def test_unknown_fields_are_ignored_and_bad_shapes_refused() -> None:
    payloads = await DATA_CONVERTER.encode([{"errors": ["x"], "added_later": 1}])
    (back,) = await DATA_CONVERTER.decode(payloads, [ValidationResult])
    assert back == ValidationResult(("x",))
    with pytest.raises(Exception, match="expected an object for PaymentRequest"):
        await DATA_CONVERTER.decode(await DATA_CONVERTER.encode(["nope"]), [PaymentRequest])
    with pytest.raises(Exception, match="Decimal as a string"):
        await DATA_CONVERTER.decode(await DATA_CONVERTER.encode([1.5]), [Decimal])


def _sdk_json(value: object) -> bytes:
    """The JSON Temporal's own encoder gives, through ``dataclasses.asdict``: what histories already hold."""
    import dataclasses

    from payments_lab.converter import PaymentsJSONEncoder

    class AsdictEncoder(PaymentsJSONEncoder):
        def default(self, o: object) -> object:
            if dataclasses.is_dataclass(o) and not isinstance(o, type):
                return dataclasses.asdict(o)
            return super().default(o)

    return json.dumps(value, cls=AsdictEncoder, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize(
    "value",
    [
        PaymentInput(PaymentRequest("p-1", "org-acme", "u", "12.50", "EUR", "coffee"), PaymentOptions(), FaultPlan()),
        PaymentInput(
            PaymentRequest("p-2", "org-acme", "u", "1", "JPY"),
            PaymentOptions(charge_heartbeat_timeout=None, charge_schedule_to_close_timeout=timedelta(seconds=3)),
            FaultPlan(validate=StepFaults(fail_first=1, delay=0.25)),
        ),
        PaymentResult("p-1", PaymentStatus.REFUNDED, "refunded", Decimal("3"), "JPY", None, False),
        ValidationResult(("a", "b")),
    ],
)
async def test_what_temporals_encoder_wrote_decodes_and_the_kit_writes_the_same_less_its_defaults(value: object) -> None:
    """Histories written with every field (Temporal's own encoder, the kit's before it left defaults out) still
    decode; the kit writes the same JSON without the fields at their default."""
    sdk_json = _sdk_json(value)
    (from_history,) = await DATA_CONVERTER.decode([Payload(metadata={"encoding": b"json/plain"}, data=sdk_json)], [type(value)])
    assert from_history == value
    (payload,) = await DATA_CONVERTER.encode([value])
    written, full = json.loads(payload.data), json.loads(sdk_json)
    assert _within(written, full), (written, full)
    assert await round_trip(value, type(value)) == value


def _within(written: object, full: object) -> bool:
    """Whether ``written`` is ``full`` with some object members left out (and none changed)."""
    if isinstance(written, dict) and isinstance(full, dict):
        return written.keys() <= full.keys() and all(_within(written[key], full[key]) for key in written)
    return written == full


async def test_a_payment_without_faults_or_options_carries_its_request_only() -> None:
    """A payment's start and activities carried an empty fault plan and the default options, 1.2 kB a history."""
    request = PaymentRequest("p-1", "org-acme", "u", "12.50", "EUR")
    (payload,) = await DATA_CONVERTER.encode([PaymentInput(request)])
    assert json.loads(payload.data) == {
        "request": {"amount": "12.50", "currency": "EUR", "organization_id": "org-acme", "payment_id": "p-1", "user_id": "u"}
    }
    faulty = PaymentInput(request, PaymentOptions(maximum_attempts=5), FaultPlan(charge=StepFaults(fail_first=2)))
    (payload,) = await DATA_CONVERTER.encode([faulty])
    assert json.loads(payload.data)["options"] == {"maximum_attempts": 5}
    assert json.loads(payload.data)["faults"] == {"charge": {"fail_first": 2}}
    assert await round_trip(faulty, PaymentInput) == faulty


def test_only_a_value_exactly_its_default_is_left_out() -> None:
    from payments_lab.converter import _REQUIRED, _is_default

    assert _is_default(0, 0) and _is_default(StepFaults(), StepFaults())
    assert not _is_default(False, 0)  # another type: JSON would give it back as the default's
    assert not _is_default(0, 0.0)
    assert not _is_default(Decimal("0.00"), Decimal("0"))  # money keeps its digits
    assert not _is_default(None, _REQUIRED)


async def test_field_decoders_refuse_what_the_sdk_refuses() -> None:
    """The direct paths for plain fields, optionals and tuples keep value_to_type's checks."""
    def payload(obj: object) -> list:  # type: ignore[type-arg]
        from temporalio.api.common.v1 import Payload

        return [Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(obj).encode())]

    (ints_as_floats,) = await DATA_CONVERTER.decode(payload({"fail_first": 0, "hang_first": 0, "delay": 1}), [StepFaults])
    assert ints_as_floats == StepFaults(delay=1.0) and isinstance(ints_as_floats.delay, float)
    with pytest.raises(Exception, match="str"):
        await DATA_CONVERTER.decode(payload({"errors": ["fine", 3]}), [ValidationResult])
    with pytest.raises(Exception, match="str"):
        await DATA_CONVERTER.decode(
            payload({"payment_id": 7, "status": "completed", "message": "m"}), [PaymentResult]
        )
    (no_amount,) = await DATA_CONVERTER.decode(
        payload({"payment_id": "p", "status": "failed", "message": "m", "amount": None}), [PaymentResult]
    )
    assert no_amount.amount is None and no_amount.status is PaymentStatus.FAILED


ODD_VALUES: list[object] = [True, 0, 1, 2.5, float("nan"), "no", "", None, timedelta(seconds=1), Decimal("1"), [], {}]
"""What a learner may put in any field: bools, numbers, strings, None, durations, containers."""

DOOR_CLASSES: list[tuple[type, dict[str, object]]] = [
    (PaymentOptions, {}),
    (StepFaults, {}),
    (FaultPlan, {}),
    (CustomerAnswer, {}),
    (ProcessorEvent, {"event_id": "evt-1", "type": AUTHENTICATED}),
    (PaymentRequest, {"payment_id": "p-1", "organization_id": "org-acme", "user_id": "u", "amount": "1.00", "currency": "EUR"}),
]
"""Dataclasses a learner builds that cross into a workflow (input, update, signal)."""


@pytest.mark.parametrize(("cls", "base"), DOOR_CLASSES, ids=[cls.__name__ for cls, _ in DOOR_CLASSES])
async def test_whatever_a_learner_can_build_the_workflow_can_decode(cls: type, base: dict[str, object]) -> None:
    """A value the door lets through but the worker's converter refuses leaves a payment pending for ever
    (its workflow task fails again and again): so every field, given any odd value, is either refused
    when the object is built or decodes back to an equal object."""
    for field in dataclasses.fields(cls):
        for odd in ODD_VALUES:
            try:
                built = cls(**{**base, field.name: odd})
            except (TypeError, ValueError):
                continue
            back = await round_trip(built, cls)
            assert back == built or odd != odd, f"{cls.__name__}({field.name}={odd!r}) was built but decodes as {back!r}"
