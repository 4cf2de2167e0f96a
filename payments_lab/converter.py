"""A Temporal data converter that carries ``Decimal`` money and ``timedelta`` exactly."""

from __future__ import annotations

import dataclasses
import functools
import types as types_module
import typing
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import temporalio.converter
from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)


class PaymentsJSONEncoder(AdvancedJSONEncoder):
    """Encode ``Decimal`` as its exact string and ``timedelta`` as seconds."""

    def default(self, o: Any) -> Any:
        """See :py:meth:`json.JSONEncoder.default`."""
        kind = type(o)
        if kind.__module__.startswith("payments_lab.") and dataclasses.is_dataclass(kind):
            # One level at a time: the encoder comes back here for nested values.
            # ``dataclasses.asdict`` deep-copies every field first (measured: two thirds of
            # the time to encode a payment's input). A field at its default is left out: the
            # decoder gives it back, and a payment without faults no longer carries an empty
            # fault plan into its start and every activity (half its history's bytes, ~3 %
            # of the server's throughput when measured with padding of that size).
            return {
                name: value
                for name, default in _fields_and_defaults(kind)
                if not _is_default(value := getattr(o, name), default)
            }
        if isinstance(o, Decimal):
            # A JSON number would be read back as a float: "0.10" stays "0.10".
            return str(o)
        if isinstance(o, timedelta):
            return o.total_seconds()
        return super().default(o)


_PLAIN = (str, int, float, bool)
"""JSON's own types: a value that already has the exact one its field wants needs no conversion."""

Decode = typing.Callable[[Any], Any]
"""Turns one JSON value into the value of one field."""


_REQUIRED = object()
"""The default of a field that has none: never equal to a value."""


@functools.cache
def _fields_and_defaults(cls: type) -> tuple[tuple[str, object], ...]:
    """Each field of ``cls`` and its default (built once from a ``default_factory``), or :data:`_REQUIRED`."""
    found = []
    for field in dataclasses.fields(cls):
        if not field.init:
            default: object = _REQUIRED  # not given back by the decoder: always written
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = _REQUIRED
        found.append((field.name, default))
    return tuple(found)


def _is_default(value: object, default: object) -> bool:
    """Whether ``value`` is its field's default, exactly: ``Decimal("0.00")`` is not ``Decimal("0")``, nor ``0`` ``False``."""
    if value is default:
        return True
    if default is _REQUIRED or type(value) is not type(default) or isinstance(value, Decimal):
        return False
    return bool(value == default)


def _is_kit_dataclass(hint: object) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint.__module__.startswith("payments_lab.")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a Decimal as a string, got {type(value).__name__} {value!r}")


def _duration(value: Any) -> timedelta:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise TypeError(f"expected a duration in seconds, got {type(value).__name__}")


def _decoder(hint: Any) -> Decode:
    """How to turn a JSON value into a value of ``hint``, decided once per field instead of once per payload.

    The kinds of field the kit's messages have get a direct path; any other goes through
    the SDK's ``value_to_type``, as it would without this converter.
    """
    args = typing.get_args(hint)
    if isinstance(hint, types_module.UnionType) and len(args) == 2 and type(None) in args:
        inner = _decoder(next(arg for arg in args if arg is not type(None)))
        return lambda value: None if value is None else inner(value)
    if hint in _PLAIN:

        def plain(value: Any) -> Any:
            if type(value) is hint:
                return value
            return value_to_type(hint, value, _CONVERTERS)

        return plain
    if hint is Decimal:
        return _decimal
    if hint is timedelta:
        return _duration
    if isinstance(hint, type) and issubclass(hint, Enum) and issubclass(hint, (int, str)):
        return hint
    if _is_kit_dataclass(hint):
        return functools.partial(_dataclass, hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        element = _decoder(args[0])
        return lambda value: tuple(map(element, value)) if isinstance(value, list) else value_to_type(hint, value, _CONVERTERS)
    return lambda value: value_to_type(hint, value, _CONVERTERS)


@functools.cache
def _field_decoders(cls: type) -> dict[str, Decode]:
    """The decoder of each init field of a kit dataclass.

    The SDK resolves a dataclass's type hints on every payload; with postponed
    annotations that compiles each hint again (measured: a tenth of a worker's CPU).
    """
    hints = typing.get_type_hints(cls)
    return {field.name: _decoder(hints[field.name]) for field in dataclasses.fields(cls) if field.init}


def _dataclass(cls: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(value).__name__}")
    decoders = _field_decoders(cls)
    return cls(**{name: decoders[name](item) for name, item in value.items() if name in decoders})


class PaymentsTypeConverter(JSONTypeConverter):
    """Rebuild ``Decimal`` and ``timedelta`` values, and the kit's dataclasses, from their JSON form."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        """See :py:meth:`temporalio.converter.JSONTypeConverter.to_typed_value`."""
        if _is_kit_dataclass(hint):
            return _dataclass(hint, value)
        if hint is Decimal:
            return _decimal(value)
        if hint is timedelta:
            return _duration(value)
        return JSONTypeConverter.Unhandled


_CONVERTERS = [PaymentsTypeConverter()]
"""What the SDK's ``value_to_type`` is given for the values the kit's decoders leave to it."""


class PaymentsPayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with the JSON one taught about money."""

    def __init__(self) -> None:
        json_converter = JSONPlainPayloadConverter(
            encoder=PaymentsJSONEncoder,
            custom_type_converters=_CONVERTERS,
        )
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = dataclasses.replace(
    temporalio.converter.default(), payload_converter_class=PaymentsPayloadConverter
)
"""The data converter every client of the kit uses."""
