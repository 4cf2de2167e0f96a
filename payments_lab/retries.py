"""Retry schedules: when Temporal retries an activity under a retry policy, in theory and in fact."""

from __future__ import annotations

import math
from datetime import timedelta

import pandas as pd
from temporalio.common import RetryPolicy

from payments_lab.arguments import positive_duration, valid_retry_policy, whole_number
from payments_lab.errors import InvalidArgumentError

DEFAULT_MAXIMUM_INTERVAL_FACTOR = 100
"""Without a maximum interval, Temporal caps each wait at this many initial intervals."""

_MAX_LISTED_ATTEMPTS = 100_000


def maximum_interval(policy: RetryPolicy) -> timedelta:
    """The longest wait between two attempts: the policy's, or 100 initial intervals by default."""
    valid_retry_policy(policy)
    return policy.maximum_interval or policy.initial_interval * DEFAULT_MAXIMUM_INTERVAL_FACTOR


def retry_delay(policy: RetryPolicy, attempt: int) -> timedelta:
    """The wait Temporal leaves before ``attempt``, after attempt ``attempt - 1`` failed.

    ``initial_interval × backoff_coefficient^(attempt - 2)``, capped by the maximum
    interval; zero for the first attempt. Whether the attempt happens at all depends on
    ``maximum_attempts`` and on the activity's expiration: see :func:`retry_schedule`.

    Raises:
        ValueError: ``attempt`` is below 1, or the policy is invalid.
    """
    whole_number("attempt", attempt, minimum=1)
    cap = maximum_interval(policy)
    if attempt == 1:
        return timedelta(0)
    initial, coefficient, exponent = policy.initial_interval.total_seconds(), policy.backoff_coefficient, attempt - 2
    # Compare logarithms: coefficient ** exponent overflows a float for a large attempt.
    if coefficient > 1 and exponent * math.log(coefficient) >= math.log(cap.total_seconds() / initial):
        return cap
    return min(timedelta(seconds=initial * coefficient**exponent), cap)


def retry_schedule(
    policy: RetryPolicy,
    *,
    attempts: int | None = None,
    attempt_duration: timedelta = timedelta(0),
    schedule_to_close: timedelta | None = None,
) -> pd.DataFrame:
    """When each attempt of an activity starts under ``policy``, if every attempt fails.

    Attempt 1 starts at 0; attempt ``n`` starts its :func:`retry_delay` after attempt
    ``n - 1`` ended. The list stops at ``policy.maximum_attempts``, at ``attempts``, or at
    the first attempt that would start after ``schedule_to_close`` (Temporal gives up
    rather than start an attempt past the activity's expiration).

    Args:
        policy: The retry policy, e.g. ``PaymentOptions().retry_policy``.
        attempts: List at most this many attempts; required when the policy allows
            unlimited attempts and there is no ``schedule_to_close``.
        attempt_duration: How long each attempt runs before it fails.
        schedule_to_close: The activity's schedule-to-close timeout, if it has one.

    Returns:
        One row per attempt: ``attempt``, ``delay`` (the wait before it), ``start`` and
        ``end`` (since the first attempt started), all durations as ``timedelta``.

    Raises:
        ValueError: the policy is invalid, an argument is out of range, or the schedule
            would be endless.
    """
    valid_retry_policy(policy)
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1):
        raise InvalidArgumentError(f"attempts must be a whole number >= 1 or None, got {attempts!r}")
    if attempt_duration < timedelta(0):
        raise InvalidArgumentError(f"attempt_duration must not be negative, got {attempt_duration!r}")
    positive_duration("schedule_to_close", schedule_to_close, optional=True)
    limits = [n for n in (attempts, policy.maximum_attempts or None) if n is not None]
    if not limits and schedule_to_close is None:
        raise InvalidArgumentError(
            "the policy allows unlimited attempts (maximum_attempts=0) and no schedule_to_close was "
            "given: pass attempts=N to list the first N"
        )
    if not limits and schedule_to_close / policy.initial_interval > _MAX_LISTED_ATTEMPTS:  # type: ignore[operator]
        raise InvalidArgumentError(
            f"up to {schedule_to_close // policy.initial_interval:,} attempts fit before schedule_to_close: "  # type: ignore[operator]
            "pass attempts=N to list the first N"
        )
    limit = min(limits) if limits else None

    rows: list[tuple[int, timedelta, timedelta, timedelta]] = []
    start = timedelta(0)
    attempt = 1
    while limit is None or attempt <= limit:
        delay = retry_delay(policy, attempt)
        if attempt > 1:
            start = rows[-1][3] + delay
        if schedule_to_close is not None and start > schedule_to_close:
            break
        rows.append((attempt, delay, start, start + attempt_duration))
        attempt += 1
    return pd.DataFrame(rows, columns=["attempt", "delay", "start", "end"])


def compare_gaps(attempts: pd.DataFrame) -> pd.DataFrame:
    """Observed waits between attempts against the configured ones.

    Args:
        attempts: The attempts table of :func:`payments_lab.history.attempts_frame`, built
            with histories so that it knows each activity's retry policy.

    Returns:
        One row per retry (attempts 2 and later) with ``payment_id``, ``step``,
        ``attempt``, ``observed`` (from the end of the attempt before to the start of this
        one, as the activities saw it), ``due`` (from that end to the time the server
        scheduled this attempt for: the backoff as computed, before the timer's lateness and
        the trip to the worker), ``configured`` (seconds, as floats), and the relative errors
        ``error`` (``observed / configured - 1``) and ``due_error``.

    Raises:
        ValueError: the table lacks the columns it needs.
    """
    needed = {"payment_id", "step", "attempt", "gap_before", "configured_gap"}
    missing = needed - set(attempts.columns)
    if missing:
        raise InvalidArgumentError(
            f"the attempts table lacks {sorted(missing)}: build it with attempts_frame(records, histories)"
        )
    retries = attempts[(attempts["attempt"] > 1) & attempts["gap_before"].notna() & attempts["configured_gap"].notna()]
    observed = retries["gap_before"].dt.total_seconds()
    configured = retries["configured_gap"].dt.total_seconds()
    due = retries["due_gap"].dt.total_seconds() if "due_gap" in retries else pd.Series(float("nan"), index=retries.index)
    return pd.DataFrame(
        {
            "payment_id": retries["payment_id"],
            "step": retries["step"],
            "attempt": retries["attempt"],
            "observed": observed,
            "due": due,
            "configured": configured,
            "error": observed / configured - 1,
            "due_error": due / configured - 1,
        }
    ).reset_index(drop=True)
