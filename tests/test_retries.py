"""Retry schedules: Temporal's backoff arithmetic, and observed gaps against it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from temporalio.common import RetryPolicy

from conftest import FAST
from payments_lab.messages import PaymentOptions
from payments_lab.retries import compare_gaps, maximum_interval, retry_delay, retry_schedule

SECOND = timedelta(seconds=1)


def seconds(values: pd.Series) -> list[float]:
    return [round(v.total_seconds(), 6) for v in values]


def test_each_wait_doubles_until_the_maximum_interval() -> None:
    policy = RetryPolicy(initial_interval=SECOND, backoff_coefficient=2.0, maximum_interval=60 * SECOND)
    assert [retry_delay(policy, n).total_seconds() for n in range(1, 10)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_without_a_maximum_interval_temporal_caps_at_100_initial_intervals() -> None:
    policy = RetryPolicy(initial_interval=SECOND, backoff_coefficient=10.0)
    assert maximum_interval(policy) == 100 * SECOND
    assert [retry_delay(policy, n).total_seconds() for n in (2, 3, 4, 5)] == [1, 10, 100, 100]


def test_a_huge_attempt_number_stays_at_the_maximum() -> None:
    assert retry_delay(FAST.retry_policy, 5000) == FAST.maximum_interval


def test_the_seed_schedule_is_three_attempts_one_and_two_seconds_apart() -> None:
    schedule = retry_schedule(PaymentOptions().retry_policy)
    assert list(schedule.columns) == ["attempt", "delay", "start", "end"]
    assert list(schedule["attempt"]) == [1, 2, 3]
    assert seconds(schedule["delay"]) == [0, 1, 2]
    assert seconds(schedule["start"]) == [0, 1, 3]


def test_attempts_that_take_time_push_the_schedule_back() -> None:
    schedule = retry_schedule(PaymentOptions().retry_policy, attempt_duration=timedelta(milliseconds=500))
    assert seconds(schedule["start"]) == [0, 1.5, 4.0]
    assert seconds(schedule["end"]) == [0.5, 2.0, 4.5]


def test_the_fast_test_options_wait_100_then_200_ms() -> None:
    schedule = retry_schedule(FAST.retry_policy)
    assert seconds(schedule["delay"]) == [0, 0.1, 0.2]


def test_expiration_cuts_an_unlimited_policy() -> None:
    unlimited = RetryPolicy(initial_interval=SECOND, backoff_coefficient=2.0, maximum_attempts=0)
    schedule = retry_schedule(unlimited, schedule_to_close=10 * SECOND)
    assert seconds(schedule["start"]) == [0, 1, 3, 7], "the next one, at 15 s, would start after 10 s"
    assert len(retry_schedule(unlimited, attempts=5)) == 5
    assert len(retry_schedule(PaymentOptions().retry_policy, attempts=10)) == 3, "maximum_attempts still counts"


def test_an_endless_schedule_is_refused() -> None:
    unlimited = RetryPolicy(initial_interval=SECOND, maximum_attempts=0)
    with pytest.raises(ValueError, match=r"unlimited attempts .* pass attempts=N"):
        retry_schedule(unlimited)
    tiny = RetryPolicy(initial_interval=timedelta(milliseconds=1), backoff_coefficient=1.0, maximum_attempts=0)
    with pytest.raises(ValueError, match=r"up to 3,600,000 attempts fit"):
        retry_schedule(tiny, schedule_to_close=timedelta(hours=1))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RetryPolicy(initial_interval=timedelta(0)), "initial_interval must be a positive timedelta"),
        (RetryPolicy(backoff_coefficient=0.5), "backoff_coefficient must be >= 1, got 0.5"),
        (RetryPolicy(initial_interval=10 * SECOND, maximum_interval=SECOND), "must not be shorter than initial_interval"),
        (RetryPolicy(maximum_attempts=-1), "maximum_attempts must be a whole number >= 0"),
    ],
)
def test_invalid_policies_are_refused(policy: RetryPolicy, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retry_schedule(policy, attempts=3)


def test_invalid_arguments_are_refused() -> None:
    policy = PaymentOptions().retry_policy
    with pytest.raises(ValueError, match="attempt must be a whole number >= 1, got 0"):
        retry_delay(policy, 0)
    with pytest.raises(ValueError, match="attempts must be a whole number >= 1 or None, got 0"):
        retry_schedule(policy, attempts=0)
    with pytest.raises(ValueError, match="attempt_duration must not be negative"):
        retry_schedule(policy, attempt_duration=-SECOND)
    with pytest.raises(ValueError, match="schedule_to_close must be a positive timedelta"):
        retry_schedule(policy, schedule_to_close=timedelta(0))
    with pytest.raises(TypeError, match="RetryPolicy"):
        retry_schedule(PaymentOptions())  # type: ignore[arg-type]


def test_gaps_are_compared_with_their_configured_wait() -> None:
    attempts = pd.DataFrame(
        {
            "payment_id": ["p"] * 3,
            "step": ["charge"] * 3,
            "attempt": [1, 2, 3],
            "gap_before": pd.to_timedelta(["5ms", "110ms", "200ms"]),
            "configured_gap": pd.to_timedelta(["0ms", "100ms", "200ms"]),
            "due_gap": pd.to_timedelta(["1ms", "104ms", "196ms"]),
        }
    )
    gaps = compare_gaps(attempts)
    assert list(gaps["attempt"]) == [2, 3]
    assert list(gaps["observed"]) == [0.11, 0.2] and list(gaps["configured"]) == [0.1, 0.2]
    assert [round(e, 6) for e in gaps["error"]] == [0.1, 0.0]
    assert [round(e, 6) for e in gaps["due_error"]] == [0.04, -0.02]
    with pytest.raises(ValueError, match=r"lacks \['configured_gap'\]"):
        compare_gaps(attempts.drop(columns=["configured_gap"]))
