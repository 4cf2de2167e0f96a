"""How every table of the package is built: rows as named tuples, turned into typed pandas columns at once.

Each table has a row type, a :class:`typing.NamedTuple` whose first fields are the table's
columns, in order; a function makes one row per thing it counts, and :func:`frame` turns the
rows into a :class:`pandas.DataFrame`. Times and durations travel as whole nanoseconds (or
None) until then, so no value ever goes through a float.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["time", "duration", "int", "Int64", "object"]
"""How :func:`frame` builds a column: ``time`` or ``duration`` (nanoseconds or None), ``int``,
``Int64`` (None allowed) or ``object`` (kept as given, e.g. ``Decimal`` amounts)."""

_MISSING = np.iinfo(np.int64).min
"""The int64 that pandas reads as NaT."""


def _times(ns: Sequence[int | None]) -> pd.DatetimeIndex:
    values = np.array([v if v is not None else _MISSING for v in ns], dtype=np.int64)
    return pd.to_datetime(values, unit="ns", utc=True)


def _durations(ns: Sequence[int | None]) -> pd.TimedeltaIndex:
    values = np.array([v if v is not None else _MISSING for v in ns], dtype=np.int64)
    return pd.to_timedelta(values, unit="ns")


_CONVERTERS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "time": _times,
    "duration": _durations,
    "int": lambda values: np.array(values, dtype=np.int64),
    "Int64": lambda values: pd.array(values, dtype="Int64"),
    "object": lambda values: pd.Series(values, dtype=object),
}


def frame(rows: Sequence[tuple[Any, ...]], columns: Sequence[str], kinds: Mapping[str, Kind]) -> pd.DataFrame:
    """A table with one row per tuple of ``rows``, and exact column types.

    Args:
        rows: Rows whose first ``len(columns)`` fields are the columns' values, in order
            (fields past them are left out).
        columns: The column names.
        kinds: How to build a column (see :data:`Kind`); a column not named here is
            left to pandas (text, or None).
    """
    values = list(zip(*rows)) if rows else [()] * len(columns)
    return pd.DataFrame(
        {
            name: _CONVERTERS[kinds[name]](column) if name in kinds else list(column)
            for name, column in zip(columns, values)
        },
        columns=list(columns),
    )


def difference(later: int | None, earlier: int | None) -> int | None:
    """``later - earlier`` in nanoseconds, or None if either is unknown."""
    return later - earlier if later is not None and earlier is not None else None


def datetime_ns(moment: datetime | None) -> int | None:
    """A moment in nanoseconds since the epoch, or None."""
    return pd.Timestamp(moment).value if moment is not None else None


def timedelta_ns(duration: timedelta) -> int:
    """A duration in nanoseconds."""
    return int(pd.Timedelta(duration).value)
