"""Checks of the numbers a caller passes to the kit: one wording for every refusal."""

from __future__ import annotations

import math
from typing import Any


def whole_number(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``value`` if it is a whole number (not a bool) of at least ``minimum``.

    Raises:
        ValueError: ``{name} must be a whole number >= {minimum}, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def seconds(name: str, value: Any) -> float:
    """Return ``value`` if it is a finite number of seconds >= 0 (not a bool).

    Raises:
        ValueError: ``{name} must be a number of seconds >= 0, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return value


def rate(name: str, value: Any) -> float:
    """Return ``value`` if it is a share between 0 and 1 (not a bool).

    Raises:
        ValueError: ``{name} must be a share between 0 and 1, got {value!r}``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a share between 0 and 1, got {value!r}")
    return value
