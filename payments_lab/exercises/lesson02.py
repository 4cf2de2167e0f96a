"""Exercises of lesson 02 · failures and retries: a retry schedule, planned failures, a hung charge, a bound in time."""

from __future__ import annotations

import math
from datetime import timedelta

from temporalio.common import RetryPolicy

from payments_lab.arguments import valid_retry_policy
from payments_lab.domain import ActivityType, PaymentResult, PaymentStatus
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    CHECK_OPTIONS,
    LAB_PATIENCE,
    PAYMENT_DEADLINE,
    PaymentRun,
    closing_event,
    events_of,
    expect_type,
    final_attempt,
    lab_too_slow,
    required_lab,
    run_payment,
    short_repr,
    times,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab
from payments_lab.messages import PaymentOptions
from payments_lab.retries import maximum_interval, retry_schedule
from payments_lab.wording import plural, seconds_words

EXPECTED_WAITS = (1.0, 3.0, 9.0)
"""Seconds between the attempts of question 1."""

SPEED_UP = 20
"""Question 1 runs the learner's policy on the server this many times faster."""

_STEP_ACTIVITIES = {"validate": ActivityType.VALIDATE, "charge": ActivityType.CHARGE, "notify": ActivityType.NOTIFY}


CHARGE_FAILURE_TYPES = ("SimulatedOutage", "ProcessorError")
"""The error types of the charge failures this lesson makes: a policy that lists one never retries them."""


def _policy_of(answer: object) -> RetryPolicy:
    if isinstance(answer, RetryPolicy):
        try:
            valid_retry_policy(answer)
        except ValueError as error:
            raise Mismatch(
                "Temporal would refuse this retry policy.",
                expected="a policy Temporal accepts: positive `timedelta` intervals, `backoff_coefficient` >= 1, "
                "`maximum_attempts` >= 0",
                seen=str(error),
                where_to_look="intervals are `timedelta`s, e.g. `initial_interval=timedelta(seconds=1)`",
            ) from None
        never_retried = sorted(set(answer.non_retryable_error_types or ()) & set(CHARGE_FAILURE_TYPES))
        if never_retried:
            raise Mismatch(
                "Your policy never retries the charge's failures.",
                expected="the failed charge retried after 1, 3 and 9 seconds",
                seen=f"`non_retryable_error_types` lists {', '.join(never_retried)}: the type of the charge's failures",
                where_to_look="`non_retryable_error_types` names failures that are never retried; leave it out here",
            )
        return answer
    if isinstance(answer, PaymentOptions):
        return answer.retry_policy
    raise Mismatch(
        "The answer should be a PaymentOptions (or a RetryPolicy).",
        expected="a `PaymentOptions(initial_interval=..., backoff_coefficient=..., maximum_attempts=...)`",
        seen=f"{type(answer).__name__} {short_repr(answer)}",
        where_to_look="`from payments_lab import PaymentOptions`; intervals are `timedelta`s",
    )


def _waits_text(waits: list[float], shown: int = 5, *, count: int | None = None) -> str:
    text = ", ".join(f"{w:g} s" for w in waits[:shown]) or "no retry at all"
    count = len(waits) if count is None else count
    return text + (f" … ({count:,} waits)" if count > shown else "")


LISTED_ATTEMPTS = 12
"""Attempts of a learner's policy listed at most: a `maximum_attempts` of millions would block the kernel while listing them."""


async def _check_waits(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    policy = _policy_of(answer)
    if policy.maximum_attempts == 0:
        raise Mismatch(
            "Your policy never gives up.",
            expected="4 attempts in all: the first, then 3 retries",
            seen="`maximum_attempts=0`, which means unlimited attempts",
            where_to_look="`maximum_attempts` counts every attempt, the first one included",
        )
    schedule = retry_schedule(policy, attempts=min(policy.maximum_attempts, LISTED_ATTEMPTS))
    waits = [delay.total_seconds() for delay in schedule["delay"].iloc[1:]]
    retries = policy.maximum_attempts - 1  # what the policy allows, beyond what is listed
    if retries != len(EXPECTED_WAITS) or not all(math.isclose(w, e) for w, e in zip(waits, EXPECTED_WAITS)):
        if retries != len(EXPECTED_WAITS):
            where = (
                f"`maximum_attempts` counts every attempt, the first one included: 3 retries need "
                f"`maximum_attempts=4` (yours is {short_repr(policy.maximum_attempts)})"
            )
        elif not math.isclose(waits[0], EXPECTED_WAITS[0]):
            where = f"`initial_interval` is the first wait (yours is {seconds_words(policy.initial_interval)})"
        elif any(math.isclose(w, maximum_interval(policy).total_seconds()) for w in waits[1:]):
            where = (
                f"`maximum_interval` caps every wait (yours is {seconds_words(maximum_interval(policy))}): "
                "it must be at least 9 s"
            )
        else:
            where = f"`backoff_coefficient` multiplies each wait by the same factor (yours is {policy.backoff_coefficient:g})"
        raise Mismatch(
            "The waits between attempts are not 1, 3 and 9 seconds.",
            expected=f"waits of {_waits_text(list(EXPECTED_WAITS))}, then no more attempts",
            seen=f"waits of {_waits_text(waits, count=retries)}",
            where_to_look=where,
        )
    fast = PaymentOptions(
        initial_interval=policy.initial_interval / SPEED_UP,
        backoff_coefficient=policy.backoff_coefficient,
        maximum_interval=maximum_interval(policy) / SPEED_UP,
        maximum_attempts=policy.maximum_attempts,
    )
    run = await run_payment(lab, faults=FaultPlan.failing(charge=10), options=fast)
    attempts = [a for a in run.attempts if a.activity == ActivityType.CHARGE]
    gaps_ok = all(
        later.started_at - earlier.ended_at >= timedelta(seconds=0.8 * wait / SPEED_UP)
        for earlier, later, wait in zip(attempts, attempts[1:], EXPECTED_WAITS)
        if earlier.ended_at is not None
    )
    stopped = [e for e in run.events if e.name == "ActivityTaskFailed" and e.activity_type == ActivityType.CHARGE]
    if len(attempts) != 4 or not gaps_ok or run.status != PaymentStatus.FAILED.value or run.charges:
        raise Mismatch(
            "The schedule is right on paper, but the server did something else.",
            expected="4 charge attempts, further and further apart, then the payment failed",
            seen=f"charge attempts {run.describe_attempts('charge_payment')}; payment {run.status}",
            where_to_look="ask your facilitator: this looks like a problem of the lab, not of your answer",
            about_the_lab=True,
        )
    starts = ", ".join(f"{row.start.total_seconds():g} s" for row in schedule.itertuples())
    return Verdict(
        "Waits of 1, 3 and 9 seconds, then Temporal gives up.",
        (
            f"`retry_schedule(policy)`: attempts start at {starts}",
            f"on the server, {SPEED_UP} times faster: 4 charge attempts, each after at least the wait the "
            "policy asks for, then the payment failed and nothing was charged",
            f"history: the charge's `ActivityTaskStarted` records attempt {final_attempt(run.history, 'charge_payment')}, "
            f"and its `ActivityTaskFailed` says '{stopped[-1].retry_state if stopped else '?'}'",
        ),
    )


q1 = Exercise(
    lesson=2,
    number=1,
    title="Waits of 1, 3 and 9 seconds",
    task="Write retry options under which a failing step is retried **1 s**, then **3 s**, then **9 s** after each "
    "failure, and then given up.",
    answer="a `PaymentOptions` (or a `RetryPolicy`)",
    checker=_check_waits,
    hints=(
        "Four knobs: `initial_interval` (the first wait), `backoff_coefficient` (each wait is the previous "
        "one times this), `maximum_interval` (a cap on every wait) and `maximum_attempts`.",
        "1 → 3 → 9 is a factor of 3. And `maximum_attempts` counts the first attempt too.",
        "`PaymentOptions(initial_interval=timedelta(seconds=1), backoff_coefficient=3, maximum_attempts=4)`; "
        "check it yourself with `retry_schedule(options.retry_policy)` from `payments_lab.retries`.",
    ),
    explanation="The first retry waits `initial_interval`; each later wait is the previous one times "
    "`backoff_coefficient`, capped by `maximum_interval` (60 s by default here). Three retries plus the "
    "first attempt make `maximum_attempts=4`.",
    solution="""from datetime import timedelta

from payments_lab import PaymentOptions

options = PaymentOptions(initial_interval=timedelta(seconds=1), backoff_coefficient=3, maximum_attempts=4)""",
    answer_name="options",
    section="The policy's knobs",
)


def _failed_steps(run: PaymentRun) -> list[str]:
    return [step for step, activity in _STEP_ACTIVITIES.items() if "failed" in run.outcomes(activity) and step != "charge"]


def _deadline_for(plan: FaultPlan) -> float:
    """How long to wait for a payment run with the learner's plan: a planned hang never ends by itself, and a
    long delay (past its step's timeout, it is retried and delayed again) is the plan's doing too."""
    hangs = any(getattr(plan, step).hang_first or getattr(plan, step).delay >= PAYMENT_DEADLINE for step in _STEP_ACTIVITIES)
    return PAYMENT_DEADLINE if hangs else LAB_PATIENCE


def _expect_failures_not_hangs(run: PaymentRun, plan: FaultPlan, expected: str, seen: str) -> PaymentResult:
    """How the payment ended; one that never finished was given hangs where the exercise asks for failures
    (or, with no hang planned, the lab is stuck)."""
    if run.result is None and _deadline_for(plan) == LAB_PATIENCE:
        raise lab_too_slow(
            f"The payment did not finish within {LAB_PATIENCE:g} s, and your plan has no hang and no long delay.",
            expected=expected,
            seen=seen,
        )
    if run.result is None:
        raise Mismatch(
            f"The payment did not finish within {PAYMENT_DEADLINE:g} s.",
            expected=expected,
            seen=seen,
            where_to_look="`hang_first` makes attempts hang until their timeout, and `delay` slows every attempt (past its "
            "timeout, each is cut short and retried); this exercise needs failures: `fail_first`",
        )
    return run.result


async def _check_fail_twice(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, FaultPlan, "FaultPlan.failing(charge=...)")
    run = await run_payment(lab, faults=answer, deadline=_deadline_for(answer))  # type: ignore[arg-type]
    charge = run.outcomes(ActivityType.CHARGE)
    seen = f"charge attempts {run.describe_attempts('charge_payment')}; payment {run.status}"
    expected = "charge attempts failed, failed, completed; payment completed, charged once"
    result = _expect_failures_not_hangs(run, answer, expected, seen)  # type: ignore[arg-type]
    other = _failed_steps(run)
    if other:
        raise Mismatch(
            f"Attempts of the {' and '.join(other)} step failed: only the charge should.",
            expected=expected,
            seen=f"{seen}; failed attempts in {', '.join(other)}",
            where_to_look="`FaultPlan.failing(charge=N)` fails the first N attempts of the charge step only",
        )
    if charge != ["failed", "failed", "completed"] or result.status is not PaymentStatus.COMPLETED:
        failures = charge.count("failed")
        if result.status is not PaymentStatus.COMPLETED and failures >= CHECK_OPTIONS.maximum_attempts:
            message = "The charge never succeeded: the payment failed."
            where = (
                "`fail_first` counts the failing attempts, and the retry policy allows "
                f"{CHECK_OPTIONS.maximum_attempts} attempts in all (`PaymentOptions.maximum_attempts`): "
                f"failing {failures} leaves none to succeed"
            )
        elif any(getattr(answer, step).decline for step in _STEP_ACTIVITIES):
            message = "The card was declined: a business answer, which Temporal does not retry."
            where = "`decline=True` is not a failure; `fail_first` is"
        else:
            message = f"The charge failed {plural(failures, 'time')}, not twice."
            where = "`FaultPlan.failing(charge=N)`, or `FaultPlan(charge=StepFaults(fail_first=N))`"
        raise Mismatch(message, expected=expected, seen=seen, where_to_look=where)
    started = [e for e in run.events if e.name == "ActivityTaskStarted" and e.activity_type == ActivityType.CHARGE]
    return Verdict(
        "The charge failed twice and succeeded on its third attempt.",
        (
            f"attempt log: charge {run.describe_attempts('charge_payment')}",
            f"history: one `ActivityTaskStarted` for the charge, recording attempt {started[-1].attempt} "
            "and the failure of the attempt before it",
            f"ledger: charged {times(run.charges)}",
        ),
    )


q2 = Exercise(
    lesson=2,
    number=2,
    title="A charge that fails twice, then succeeds",
    task="Write a fault plan under which the **charge** fails exactly twice, then succeeds. The check runs the "
    f"payment with the default {CHECK_OPTIONS.maximum_attempts} attempts per step.",
    answer="a `FaultPlan`",
    checker=_check_fail_twice,
    hints=(
        "A `FaultPlan` has one `StepFaults` per step: `validate`, `charge`, `notify`.",
        "`StepFaults(fail_first=N)` fails the first N attempts; `FaultPlan.failing(charge=N)` is the short form.",
    ),
    explanation="`fail_first=2` fails attempts 1 and 2 with a transient error, which Temporal retries; "
    "attempt 3 succeeds. The charge is idempotent, so the payment is charged once.",
    solution="""from payments_lab import FaultPlan

plan = FaultPlan.failing(charge=2)""",
    answer_name="plan",
    section="A charge that fails twice",
)


async def _check_notification_never_arrives(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, FaultPlan, "FaultPlan.failing(notify=...)")
    run = await run_payment(lab, faults=answer, deadline=_deadline_for(answer))  # type: ignore[arg-type]
    notify = run.outcomes(ActivityType.NOTIFY)
    expected = (
        f"the notification fails on all {CHECK_OPTIONS.maximum_attempts} attempts, and the payment still completes"
    )
    seen = f"notify attempts {run.describe_attempts('send_notification')}; payment {run.status}"
    result = _expect_failures_not_hangs(run, answer, expected, seen)  # type: ignore[arg-type]
    if result.status is not PaymentStatus.COMPLETED:
        raise Mismatch(
            f"The payment ended {run.status}: a step before the notification failed.",
            expected=expected,
            seen=f"{seen}; charge attempts {run.describe_attempts('charge_payment')}",
            where_to_look="only the `notify` step should fail: `FaultPlan.failing(notify=N)`",
        )
    if "completed" in notify:
        attempt = notify.index("completed") + 1
        raise Mismatch(
            f"The notification got through on attempt {attempt}.",
            expected=expected,
            seen=seen,
            where_to_look="`fail_first` must cover every attempt the retry policy allows: "
            f"{CHECK_OPTIONS.maximum_attempts} (`PaymentOptions.maximum_attempts`)",
        )
    failed = [e for e in run.events if e.name == "ActivityTaskFailed" and e.activity_type == ActivityType.NOTIFY]
    return Verdict(
        "The payment completed although no notification got through: the workflow catches the notify step's failure.",
        (
            f"result: `{run.status}`, `notified={result.notified}`, message '{result.message}'",
            f"attempt log: notify {run.describe_attempts('send_notification')}",
            f"history: `ActivityTaskFailed` for `send_notification` ('{failed[-1].retry_state if failed else '?'}'), "
            f"then `{closing_event(run.history)}`",
            f"ledger: charged {times(run.charges)}; {run.notifications} notifications sent",
        ),
    )


q3 = Exercise(
    lesson=2,
    number=3,
    title="A notification that never gets through",
    task="Write a fault plan under which **every** attempt of the notification fails — and see that the payment "
    f"still completes. The check runs the payment with the default {CHECK_OPTIONS.maximum_attempts} attempts per step.",
    answer="a `FaultPlan`",
    checker=_check_notification_never_arrives,
    hints=(
        "`FaultPlan.failing(notify=N)` fails the first N attempts of the notify step.",
        "Temporal stops retrying after `maximum_attempts` attempts (3 here): N must be at least that.",
    ),
    explanation="With every attempt failing, Temporal gives up on the notification and raises an "
    "`ActivityError` in the workflow. The workflow catches it, logs it and completes the payment with "
    "`notified=False`: a failed notification must never undo a charge.",
    solution="""from payments_lab import FaultPlan

plan = FaultPlan.failing(notify=3)""",
    answer_name="plan",
    section="A notification that fails",
)

HANG_DEADLINE = 3.0
"""Seconds within which question 4's payment must complete."""

REST_OF_PAYMENT = 0.25
"""Seconds a payment's other steps take on a quiet lab, beside the waits an answer sets."""


def _on_paper(bound: float, deadline: float) -> bool:
    """Whether options whose timeouts and waits add up to ``bound`` seconds end a payment within ``deadline``.

    The checks of questions 4 and 5 judge the deadline on the options, as Temporal applies
    them, and then run the payment to see the server do it. Measured on the wall clock, a
    busy room's server could push a right answer past the deadline.
    """
    return bound + REST_OF_PAYMENT <= deadline


async def _check_hung_charge(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, PaymentOptions, "PaymentOptions(charge_timeout=timedelta(seconds=...))")
    options: PaymentOptions = answer  # type: ignore[assignment]
    right_on_paper = _on_paper((options.charge_timeout + options.initial_interval).total_seconds(), HANG_DEADLINE)
    deadline = LAB_PATIENCE if right_on_paper else HANG_DEADLINE
    run = await run_payment(lab, faults=FaultPlan(charge=StepFaults(hang_first=1)), options=options, deadline=deadline)
    expected = f"the hung attempt is given up and retried, and the payment completes within {HANG_DEADLINE:g} s"
    if run.result is None and right_on_paper:
        raise lab_too_slow(
            f"Your options end the hung attempt in time, but the payment was still running after {LAB_PATIENCE:g} s.",
            expected=expected,
            seen=f"charge attempts {run.describe_attempts('charge_payment')}; the check then cancelled the payment",
        )
    if run.result is None:
        if options.charge_timeout.total_seconds() >= HANG_DEADLINE and options.charge_heartbeat_timeout != PaymentOptions().charge_heartbeat_timeout:
            where = (
                "a hung attempt still heartbeats (its worker is alive, only the processor's answer is lost), "
                "so the heartbeat timeout never fires; `charge_timeout`, the start-to-close timeout, bounds one attempt"
            )
        elif options.charge_timeout.total_seconds() >= HANG_DEADLINE:
            where = f"`charge_timeout` is the start-to-close timeout of one charge attempt (yours: {seconds_words(options.charge_timeout)})"
        else:
            where = f"after the timeout, Temporal waits `initial_interval` (yours: {seconds_words(options.initial_interval)}) before the retry"
        raise Mismatch(
            f"The payment was still charging {HANG_DEADLINE:g} s after it started.",
            expected=expected,
            seen=f"after {HANG_DEADLINE:g} s the payment was still waiting for its hung charge attempt (the check then cancelled it)",
            where_to_look=where,
        )
    if run.result.status is not PaymentStatus.COMPLETED:
        raise Mismatch(
            f"The payment ended {run.status}: nothing was left to retry the hung attempt.",
            expected=expected,
            seen=f"{len(run.outcomes('charge_payment'))} charge attempt(s); {run.result.message}",
            where_to_look=(
                f"`charge_schedule_to_close_timeout` (yours: {seconds_words(options.charge_schedule_to_close_timeout)}) bounds "
                "every attempt together: it must leave room for the retry"
                if options.charge_schedule_to_close_timeout is not None
                and options.charge_schedule_to_close_timeout < options.charge_timeout + options.initial_interval + options.charge_timeout
                else f"`maximum_attempts` (yours: {options.maximum_attempts}) must leave room for a retry"
            ),
        )
    started = [e for e in events_of(run.history) if e.name == "ActivityTaskStarted" and e.activity_type == ActivityType.CHARGE]
    cause = started[-1].failure if started and started[-1].failure else "?"
    return Verdict(
        "Temporal gave up on the hung attempt at its timeout, and the retry completed the payment.",
        (
            "attempt log: charge attempt 1 hung and never answered, "
            f"attempt {len(run.outcomes('charge_payment'))} {run.outcomes('charge_payment')[-1]}",
            f"history: the charge's `ActivityTaskStarted` records attempt {started[-1].attempt if started else '?'}, "
            f"after '{cause}'",
            f"ledger: charged {times(run.charges)}: the hung attempt had taken the money, "
            "and the retry found it through the idempotency key",
        ),
    )


q4 = Exercise(
    lesson=2,
    number=4,
    title="A charge that hangs",
    task="Sometimes the processor takes the money and never answers. Write payment options under which a charge "
    f"attempt that hangs is given up and retried, so that the payment **completes within {HANG_DEADLINE:g} s**.",
    answer="a `PaymentOptions`",
    checker=_check_hung_charge,
    hints=(
        "Which timeout bounds how long one charge attempt may take? Its default is 30 s.",
        "`charge_timeout` is the start-to-close timeout of one attempt. The heartbeat timeout does not help: "
        "the hung attempt's worker is alive and heartbeating. Keep the wait before the retry short too.",
    ),
    explanation="A start-to-close timeout of 1 s ends the hung attempt; the retry, 100 ms later, finds the "
    "money already taken (the payment id is the processor's idempotency key) and completes the payment.",
    solution="""from datetime import timedelta

from payments_lab import PaymentOptions

options = PaymentOptions(charge_timeout=timedelta(seconds=1), initial_interval=timedelta(milliseconds=100))""",
    answer_name="options",
    section="An attempt that hangs",
)

BOUND_DEADLINE = 3.0
"""Seconds within which question 5's payment must have failed."""


async def _check_bounded_retries(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, PaymentOptions, "PaymentOptions(maximum_attempts=0, charge_schedule_to_close_timeout=...)")
    options: PaymentOptions = answer  # type: ignore[assignment]
    expected = f"unlimited attempts (`maximum_attempts=0`), and the payment failed within {BOUND_DEADLINE:g} s"
    if options.maximum_attempts != 0:
        raise Mismatch(
            "Your options limit the number of attempts.",
            expected=expected,
            seen=f"`maximum_attempts={options.maximum_attempts}`",
            where_to_look="keep `maximum_attempts=0` (no limit) and bound the charge in *time* instead",
        )
    bound = options.charge_schedule_to_close_timeout
    right_on_paper = bound is not None and _on_paper(bound.total_seconds(), BOUND_DEADLINE)
    deadline = LAB_PATIENCE if right_on_paper else BOUND_DEADLINE
    run = await run_payment(lab, faults=FaultPlan.failing(charge=1_000_000), options=options, deadline=deadline)
    attempts = len(run.outcomes(ActivityType.CHARGE))
    if run.result is None and right_on_paper:
        raise lab_too_slow(
            f"Your bound ends the retries in time, but the payment was still running after {LAB_PATIENCE:g} s.",
            expected=expected,
            seen=f"{attempts} charge attempts, all failed; the check then stopped the payment",
        )
    if run.result is None:
        where = "`charge_timeout` bounds one attempt, and each attempt here fails at once; the bound on all attempts together is `charge_schedule_to_close_timeout`"
        if options.charge_schedule_to_close_timeout is not None:
            where = f"your `charge_schedule_to_close_timeout` is {seconds_words(options.charge_schedule_to_close_timeout)}: it must end the retries within {BOUND_DEADLINE:g} s"
        raise Mismatch(
            f"The charge was still being retried {BOUND_DEADLINE:g} s after the payment started.",
            expected=expected,
            seen=f"{attempts} charge attempts, all failed, and more to come; the check stopped the payment",
            where_to_look=where,
        )
    # The deadline can also land while an attempt runs (a loaded server): the charge then ends TimedOut.
    failed = [e for e in run.events if e.name in ("ActivityTaskFailed", "ActivityTaskTimedOut") and e.activity_type == ActivityType.CHARGE]
    state = failed[-1].retry_state if failed else None
    if run.result.status is not PaymentStatus.FAILED or state != "timeout":
        raise Mismatch(
            "The payment did not fail because its charge ran out of time.",
            expected=f"{expected}; the history's `ActivityTaskFailed` says 'timeout'",
            seen=f"payment {run.status}; retry state {state!r}",
            where_to_look="`charge_schedule_to_close_timeout` is the only bound on the charge's attempts together",
        )
    return Verdict(
        "Unlimited attempts, and still a payment that ended: the schedule-to-close timeout stopped the retries.",
        (
            f"attempt log: {attempts} charge attempts, all failed",
            "history: the charge's `ActivityTaskFailed` says 'timeout': no attempt would have started before the deadline",
            f"ledger: charged {times(run.charges)}; payment {run.status}",
        ),
    )


q5 = Exercise(
    lesson=2,
    number=5,
    title="Unlimited attempts, bounded in time",
    task="Write payment options under which a charge that keeps failing is retried with **no limit on the number "
    f"of attempts** — and yet the payment has **failed within {BOUND_DEADLINE:g} s**.",
    answer="a `PaymentOptions`",
    checker=_check_bounded_retries,
    hints=(
        "`maximum_attempts=0` means no limit on attempts; what else can stop retries?",
        "A schedule-to-close timeout bounds all the attempts of an activity together: "
        "`PaymentOptions(..., charge_schedule_to_close_timeout=timedelta(seconds=2))`.",
    ),
    explanation="With `maximum_attempts=0`, Temporal retries until something else stops it. The schedule-to-close "
    "timeout counts from the first scheduling of the charge, retries and waits included; once the next attempt "
    "would start past it, the server fails the activity with retry state `timeout`, and the workflow settles the "
    "payment as failed. `charge_timeout` (start-to-close) bounds one attempt only.",
    solution="""from datetime import timedelta

from payments_lab import PaymentOptions

options = PaymentOptions(maximum_attempts=0, initial_interval=timedelta(milliseconds=200),
                         charge_schedule_to_close_timeout=timedelta(seconds=2))""",
    answer_name="options",
    section="Unlimited attempts, bounded in time",
)

EXERCISES = (q1, q2, q3, q4, q5)
"""The exercises of lesson 02, in order."""
