"""Exercises of lesson 03 · reading histories: which attempt succeeded, what the history keeps, the last error."""

from __future__ import annotations

import math

import pandas as pd

from payments_lab.domain import ActivityType
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    PaymentRun,
    call_learner,
    events_of,
    expect_function,
    required_lab,
    run_payment,
    run_payments,
    short_repr,
    times,
    whole_number_answer,
)
from payments_lab.faults import FaultPlan
from payments_lab.lab import Lab

_STARTED_EVENT = (
    "the history holds one `ActivityTaskStarted` event per activity, written when its last attempt ends; "
    "its `attempt` is that attempt's number (column `attempt` of `events_frame(history)`)"
)


def _completed_attempt(run: PaymentRun) -> int:
    """The attempt that completed the charge, from the kit's attempt log.

    Raises:
        Mismatch: the charge never completed (the payment missed the check's deadline: an overloaded lab).
    """
    completed = next((a.attempt for a in run.attempts if a.activity == ActivityType.CHARGE and a.outcome == "completed"), None)
    if completed is None:
        raise Mismatch(
            "The check's own payment did not complete in time, so your function could not be checked.",
            expected="the check's payment completes within a few seconds",
            seen=f"payment {run.status}; charge attempts: {run.describe_attempts(ActivityType.CHARGE)}",
            where_to_look="run the check again; if it persists, ask your facilitator: the lab is overloaded, "
            "your answer is not at fault",
            about_the_lab=True,
        )
    return completed


def _as_int(value: object, what: str) -> int:
    return whole_number_answer(
        value,
        f"Your function should return a whole number, the {what}.",
        expected="an `int`, e.g. `3`",
        where_to_look="`int(...)` turns a pandas or numpy number into an `int`",
    )


async def _check_successful_attempt(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    function = expect_function(answer, "a function `successful_charge_attempt(history)` that returns an int", 1)
    runs = await run_payments(lab, [{"faults": FaultPlan.failing(charge=failures)} for failures in (0, 1, 2)])
    truths = [_completed_attempt(run) for run in runs]
    said = [_as_int(await call_learner(function, run.history, what="function"), "attempt number") for run in runs]
    if said != truths:
        failures = next(index for index, (s, t) in enumerate(zip(said, truths)) if s != t)
        if said == [truth - 1 for truth in truths]:
            where = "off by one: attempt numbers start at 1, and they count the successful attempt too"
        else:
            where = _STARTED_EVENT
        raise Mismatch(
            f"For the payment whose charge failed {times(failures)}, your function said {said[failures]}.",
            expected=f"{truths[failures]}: the charge succeeded on attempt {truths[failures]}",
            seen=f"{said[failures]} (for charges that failed 0, 1 and 2 times: {', '.join(map(str, said))})",
            where_to_look=where,
        )
    return Verdict(
        "Your function read the successful attempt from each history.",
        (
            "three payments whose charge failed 0, 1 and 2 times: your function said 1, 2 and 3",
            "the kit's attempt log agrees: the completed charge attempts were 1, 2 and 3",
        ),
    )


q1 = Exercise(
    lesson=3,
    number=1,
    title="Which attempt succeeded?",
    task="Write `successful_charge_attempt(history)`: given the history of a completed payment, return the "
    "number of the charge attempt that succeeded (1 if the charge never failed).",
    answer="a function of a `WorkflowHistory` that returns an int",
    checker=_check_successful_attempt,
    hints=(
        "`events_frame(history)` from `payments_lab.history` turns the history into a table, one row per event.",
        "Look at the `ActivityTaskStarted` row whose `activity_type` is `charge_payment`: its `attempt` column.",
    ),
    explanation="Temporal writes an activity's `ActivityTaskStarted` event when its last attempt ends, "
    "with that attempt's number: for a completed activity it is the attempt that succeeded.",
    solution="""from payments_lab.history import events_frame

def successful_charge_attempt(history):
    events = events_frame(history)
    started = events[(events.event_type == "ActivityTaskStarted") & (events.activity_type == "charge_payment")]
    return int(started.attempt.iloc[-1])""",
    answer_name="successful_charge_attempt",
    section="The events of one payment",
)


async def _check_started_events(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    answer = whole_number_answer(answer, "The answer should be an int.", expected="an int, e.g. `1`", where_to_look="build it with `1`")
    run = await run_payment(lab, faults=FaultPlan.failing(charge=2))
    started = [e for e in events_of(run.history) if e.name == "ActivityTaskStarted" and e.activity_type == ActivityType.CHARGE]
    attempts = run.outcomes(ActivityType.CHARGE)
    if answer != len(started):
        where = (
            "Temporal writes `ActivityTaskStarted` once, when the last attempt ends; earlier attempts are not "
            "events: the kit's own attempt log, `lab.repository.attempts(payment_id)`, keeps every one"
        )
        raise Mismatch(
            f"You said {short_repr(answer)}; the history holds {len(started)}.",
            expected=f"{len(started)} `ActivityTaskStarted` event for `charge_payment` (attempt {started[-1].attempt})",
            seen=short_repr(answer),
            where_to_look=where,
        )
    return Verdict(
        f"One `ActivityTaskStarted` event, although the charge ran {len(attempts)} times.",
        (
            f"history of a payment whose charge failed twice: {len(started)} `ActivityTaskStarted` for the charge, "
            f"recording attempt {started[-1].attempt}",
            f"attempt log: {len(attempts)} charge attempts ({run.describe_attempts(ActivityType.CHARGE)}): intermediate attempts "
            "live only there",
        ),
    )


q2 = Exercise(
    lesson=3,
    number=2,
    title="What the history keeps of retries",
    task="A payment's charge failed twice, then succeeded. How many `ActivityTaskStarted` events for "
    "`charge_payment` does its history hold?",
    answer="an int",
    checker=_check_started_events,
    hints=(
        "Run such a payment (`FaultPlan.failing(charge=2)`) and count the rows of `events_frame(history)`.",
        "Temporal does not write an event for each attempt of a retried activity.",
    ),
    explanation="One: Temporal records a retried activity as one `ActivityTaskScheduled` and one "
    "`ActivityTaskStarted` event, written when the last attempt ends. That is why the kit keeps its own "
    "attempt log.",
    solution="started_events = 1",
    answer_name="started_events",
    section="Where are the failed attempts?",
)


def _is_nothing(value: object) -> bool:
    """None, an empty text, or a missing value of pandas or numpy (``NaN``, ``pd.NA``, ``NaT``) read from a table."""
    if value is None or isinstance(value, str):
        return not value
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))  # a scalar; an array or a Series has no single truth value
    except (TypeError, ValueError):
        return False


async def _check_previous_error(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    function = expect_function(answer, "a function `previous_charge_error(history)` that returns a string or None", 1)
    retried, straight = await run_payments(lab, [{"faults": FaultPlan.failing(charge=1)}, {}])
    started = [e for e in events_of(retried.history) if e.name == "ActivityTaskStarted" and e.activity_type == ActivityType.CHARGE]
    # The failure's own message: the kit's tables put its error type in front of it, which is fine too.
    error = (started[-1].failure_message or "") if started else ""
    said = await call_learner(function, retried.history, what="function")
    if not isinstance(said, str) or error not in said:
        where = (
            "the `ActivityTaskStarted` event carries the failure of the attempt before it, its `last_failure` "
            "(column `failure` of `events_frame(history)`)"
        )
        raise Mismatch(
            "Your function did not find the error of the charge's first attempt.",
            expected=f"a text that holds '{error}'",
            seen=short_repr(said),
            where_to_look=where,
        )
    said_straight = await call_learner(function, straight.history, what="function")
    if not _is_nothing(said_straight):
        raise Mismatch(
            "For a payment whose charge never failed, your function found an error.",
            expected="None (or an empty text)",
            seen=short_repr(said_straight),
            where_to_look="read the `ActivityTaskStarted` event of `charge_payment` only, and return what its failure holds",
        )
    return Verdict(
        "Your function read the error from the history alone.",
        (
            f"charge retried once: it found '{error}'",
            "charge never failed: it found nothing",
        ),
    )


q3 = Exercise(
    lesson=3,
    number=3,
    title="Why the charge was retried",
    task="Write `previous_charge_error(history)`: return the error of the charge attempt before the one that "
    "succeeded, as a string — or `None` if the first attempt succeeded.",
    answer="a function of a `WorkflowHistory` that returns a string or None",
    checker=_check_previous_error,
    hints=(
        "The failed attempt left no event of its own. Which event of the charge mentions it?",
        "The charge's `ActivityTaskStarted` event carries `last_failure`: the `failure` column of `events_frame(history)`.",
    ),
    explanation="The started event of the last attempt records the failure of the attempt before it "
    "(`last_failure`); `events_frame` shows it as text in its `failure` column.",
    solution="""from payments_lab.history import events_frame

def previous_charge_error(history):
    events = events_frame(history)
    started = events[(events.event_type == "ActivityTaskStarted") & (events.activity_type == "charge_payment")]
    return started.failure.iloc[-1]""",
    answer_name="previous_charge_error",
    section="Where are the failed attempts?",
)

EXERCISES = (q1, q2, q3)
"""The exercises of lesson 03, in order."""
