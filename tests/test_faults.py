"""Tests of fault plans and profiles: validation and reproducible draws."""

from __future__ import annotations

import pytest

from payments_lab.faults import NO_FAULTS, SEED_CHAPTER, FaultPlan, FaultProfile, StepFaults, checked_fault_plan


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
        ({"decline": "yes"}, "decline must be True or False"),
    ],
)
def test_step_faults_refuse_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepFaults(**kwargs)  # type: ignore[arg-type]


def test_a_plan_refuses_a_step_that_is_not_step_faults() -> None:
    # A number where a StepFaults belongs would only fail inside the workflow, which would wait for ever.
    with pytest.raises(ValueError, match=r"charge must be a StepFaults, got 2: .*FaultPlan.failing\(charge=2\)"):
        FaultPlan(charge=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", ["validate", "notify"])
def test_a_plan_refuses_a_decline_outside_the_charge(step: str) -> None:
    # Only the charge reads it: anywhere else it would silently do nothing.
    with pytest.raises(ValueError, match=rf"not a {step} fault: use FaultPlan\(charge=StepFaults\(decline=True\)\)"):
        FaultPlan(**{step: StepFaults(decline=True)})  # type: ignore[arg-type]
    assert FaultPlan(charge=StepFaults(decline=True)).charge.decline


def test_fault_plan_takes_a_plan_or_none_and_names_the_fix_for_one_step() -> None:
    plan = FaultPlan.failing(charge=1)
    assert checked_fault_plan(plan) is plan
    assert checked_fault_plan(None) == FaultPlan()
    # The faults of one step, passed as the plan, used to be read as a plan without faults.
    with pytest.raises(ValueError, match=r"say which, e\.g\. FaultPlan\(charge=StepFaults\(fail_first=1"):
        checked_fault_plan(StepFaults(fail_first=1))
    with pytest.raises(ValueError, match="faults must be a FaultPlan"):
        checked_fault_plan({"charge": {"fail_first": 1}})


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


def test_a_processor_slower_than_the_charge_timeout_is_told_before_every_payment_ends_refunded() -> None:
    """Off the script: `payments-lab worker --latency 35` took every charge, timed it out three times, refunded it."""
    from datetime import timedelta

    from payments_lab.faults import FaultProfile, latency_warning

    assert latency_warning(FaultProfile(charge_latency=8), timedelta(seconds=30)) is None
    said = latency_warning(FaultProfile(charge_latency=35), timedelta(seconds=30))
    assert said is not None and "35 s is at least the charge's 30 s timeout" in said and "refunded" in said and "e.g. 8 s" in said
