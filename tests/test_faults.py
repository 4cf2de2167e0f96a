"""Tests of fault plans and profiles: validation and reproducible draws."""

from __future__ import annotations

import pytest

from payments_lab.faults import NO_FAULTS, SEED_CHAPTER, FaultPlan, FaultProfile, StepFaults


def test_plan_shortcut_sets_fail_first_per_step() -> None:
    plan = FaultPlan.failing(charge=2, notify=1)
    assert plan.charge.fail_first == 2
    assert plan.notify.fail_first == 1
    assert plan.validate == StepFaults()
    assert not plan.is_empty
    assert FaultPlan().is_empty


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fail_first": -1}, "fail_first must be a whole number >= 0"),
        ({"fail_first": 1.5}, "fail_first must be a whole number >= 0"),
        ({"hang_first": True}, "hang_first must be a whole number >= 0"),
        ({"delay": -0.1}, "delay must be a number of seconds >= 0"),
        ({"delay": float("nan")}, "delay must be a number of seconds >= 0"),
    ],
)
def test_step_faults_refuse_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepFaults(**kwargs)  # type: ignore[arg-type]


def test_profile_defaults_are_the_seed_chapter() -> None:
    assert SEED_CHAPTER == FaultProfile()
    assert (SEED_CHAPTER.charge_failure_rate, SEED_CHAPTER.charge_latency) == (0.05, 2.0)
    assert NO_FAULTS.charge_failure_rate == 0 and NO_FAULTS.charge_latency == 0


@pytest.mark.parametrize("rate", [-0.1, 1.5, True])
def test_profile_refuses_rates_outside_0_1(rate: object) -> None:
    with pytest.raises(ValueError, match="charge_failure_rate must be a share between 0 and 1"):
        FaultProfile(charge_failure_rate=rate)  # type: ignore[arg-type]


def test_draws_are_reproducible_and_depend_on_the_seed() -> None:
    profile = FaultProfile(charge_failure_rate=0.3, seed=7)
    draws = [profile.charge_fails(f"p-{i}", 1) for i in range(200)]
    assert draws == [FaultProfile(charge_failure_rate=0.3, seed=7).charge_fails(f"p-{i}", 1) for i in range(200)]
    assert draws != [FaultProfile(charge_failure_rate=0.3, seed=8).charge_fails(f"p-{i}", 1) for i in range(200)]


def test_failure_rate_is_honoured_over_many_payments() -> None:
    profile = FaultProfile(charge_failure_rate=0.05, seed=1)
    failures = sum(profile.charge_fails(f"p-{i}", 1) for i in range(20_000))
    assert 800 <= failures <= 1200


def test_a_retry_gets_a_fresh_draw() -> None:
    profile = FaultProfile(charge_failure_rate=0.5, seed=3)
    first = [profile.charge_fails(f"p-{i}", 1) for i in range(100)]
    second = [profile.charge_fails(f"p-{i}", 2) for i in range(100)]
    assert first != second


def test_zero_rate_never_fails() -> None:
    assert not any(NO_FAULTS.charge_fails(f"p-{i}", 1) for i in range(1000))
