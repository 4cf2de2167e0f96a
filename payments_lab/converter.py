"""A Temporal data converter that carries ``Decimal`` money and ``timedelta`` exactly."""

from __future__ import annotations

import dataclasses
import functools
import typing
from datetime import timedelta
from decimal import Decimal
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
        if isinstance(o, Decimal):
            # A JSON number would be read back as a float: "0.10" stays "0.10".
            return str(o)
        if isinstance(o, timedelta):
            return o.total_seconds()
        return super().default(o)


@functools.cache
def _init_field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {field.name: hints[field.name] for field in dataclasses.fields(cls) if field.init}


class PaymentsTypeConverter(JSONTypeConverter):
    """Rebuild ``Decimal`` and ``timedelta`` values, and the kit's dataclasses, from their JSON form."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        """See :py:meth:`temporalio.converter.JSONTypeConverter.to_typed_value`."""
        if dataclasses.is_dataclass(hint) and hint.__module__.startswith("payments_lab."):
            # The SDK resolves a dataclass's type hints on every payload; with postponed
            # annotations that compiles each hint again (measured: a tenth of a worker's CPU).
            if not isinstance(value, dict):
                raise TypeError(f"expected an object for {hint.__name__}, got {type(value).__name__}")
            types = _init_field_types(hint)
            return hint(**{name: value_to_type(types[name], item, [self]) for name, item in value.items() if name in types})
        if hint is Decimal:
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return Decimal(value)
            raise TypeError(f"expected a Decimal as a string, got {type(value).__name__} {value!r}")
        if hint is timedelta:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return timedelta(seconds=value)
            raise TypeError(f"expected a duration in seconds, got {type(value).__name__}")
        return JSONTypeConverter.Unhandled


class PaymentsPayloadConverter(CompositePayloadConverter):
    """Temporal's default payload converters, with the JSON one taught about money."""

    def __init__(self) -> None:
        json_converter = JSONPlainPayloadConverter(
            encoder=PaymentsJSONEncoder,
            custom_type_converters=[PaymentsTypeConverter()],
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
