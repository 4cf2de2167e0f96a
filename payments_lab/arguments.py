"""Checks of the numbers a caller passes to the kit: one wording for every refusal."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from payments_lab.errors import InvalidArgumentError

LARGEST_WHOLE_NUMBER = 2**31 - 1
"""The largest count the kit takes: Temporal carries attempts as 32-bit numbers (a larger
``maximum_attempts`` failed every workflow task of its payment, which then waited for ever)."""

LONGEST_DURATION = timedelta(days=36525)
"""The longest duration the kit takes, 100 years: ``timedelta.max`` as "no limit" did not survive
the trip to the worker (its seconds overflow a ``timedelta`` on the way back), and the payment
waited for ever on a workflow task that could not read its input."""


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters; what it is, where it cannot be shown (an int of 5,000 digits)."""
    try:
        text = repr(value)
    except Exception as error:  # noqa: BLE001 - any value at all reaches here
        if isinstance(value, int):
            return f"an int of about {int(value.bit_length() * 0.30103) + 1:,} digits"
        return f"a {type(value).__name__} that cannot be shown ({type(error).__name__})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole_number(name: str, value: Any, *, minimum: int = 0, maximum: int = LARGEST_WHOLE_NUMBER) -> int:
    """Return ``value`` if it is a whole number (not a bool) from ``minimum`` to ``maximum``.

    Raises:
        ValueError: ``{name} must be a whole number >= {minimum}, got {value!r}``, or at most ``maximum``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be a whole number >= {minimum}, got {short_repr(value)}")
    if value > maximum:
        raise InvalidArgumentError(f"{name} must be at most {maximum:,}, got {short_repr(value)}")
    return value


def seconds(name: str, value: Any) -> float:
    """Return ``value`` if it is a finite number of seconds >= 0 (not a bool).

    Raises:
        ValueError: ``{name} must be a number of seconds >= 0, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return value


def rate(name: str, value: Any) -> float:
    """Return ``value`` if it is a share between 0 and 1 (not a bool).

    Raises:
        ValueError: ``{name} must be a share between 0 and 1, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidArgumentError(f"{name} must be a share between 0 and 1, got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """Return ``value`` if it is True or False (a string such as ``"no"`` is truthy).

    Raises:
        ValueError: ``{name} must be True or False, got {value!r}``.
    """
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def positive_duration(name: str, value: Any, *, optional: bool = False) -> Any:
    """Return ``value`` if it is a positive ``timedelta`` (or None, when ``optional``).

    Raises:
        ValueError: ``{name} must be a positive timedelta[ or None], got {value!r}``, or one of at
            most :data:`LONGEST_DURATION`.
    """
    if optional and value is None:
        return value
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise InvalidArgumentError(f"{name} must be a positive timedelta{' or None' if optional else ''}, got {short_repr(value)}")
    if value > LONGEST_DURATION:
        raise InvalidArgumentError(
            f"{name} must be at most 100 years (timedelta(days={LONGEST_DURATION.days})), got {short_repr(value)}"
            + (": for no limit, None" if optional else "")
        )
    return value


def valid_retry_policy(policy: Any) -> RetryPolicy:
    """Return ``policy`` if it is a retry policy Temporal accepts.

    Raises:
        TypeError: it is not a :class:`temporalio.common.RetryPolicy`.
        ValueError: a field is out of range; the message names it.
    """
    if not isinstance(policy, RetryPolicy):
        raise InvalidArgumentError(f"policy must be a temporalio.common.RetryPolicy, not {type(policy).__name__}")
    positive_duration("initial_interval", policy.initial_interval)
    positive_duration("maximum_interval", policy.maximum_interval, optional=True)
    if policy.maximum_interval is not None and policy.maximum_interval < policy.initial_interval:
        raise InvalidArgumentError(
            f"maximum_interval ({policy.maximum_interval}) must not be shorter than "
            f"initial_interval ({policy.initial_interval})"
        )
    coefficient = policy.backoff_coefficient
    if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float)) or not coefficient >= 1:
        raise InvalidArgumentError(f"backoff_coefficient must be >= 1, got {coefficient!r}")
    whole_number("maximum_attempts", policy.maximum_attempts)
    return policy
