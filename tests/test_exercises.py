"""Tests of the workshop exercises: every check passes its solution, calls the blank not attempted, explains a wrong answer."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import nbformat
import pytest
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy

from conftest import OpenLab, published_session
from payments_lab.confirmation_messages import AUTHENTICATED, ProcessorEvent
from payments_lab.errors import PaymentsLabError
from payments_lab.evolution import PaymentWorkflowWithFraudScreen
from payments_lab.exercises import (
    LESSONS,
    CheckOutcome,
    Exercise,
    Feedback,
    InvalidExerciseError,
    Mismatch,
    NoSuchHintError,
    ____,
    all_exercises,
    contains_blank,
    lesson01,
    lesson02,
    lesson03,
    lesson04,
    lesson05,
    lesson06,
    lesson07,
    lesson09,
    lesson10,
    lesson11,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history import events_frame
from payments_lab.lab import Lab, open_lab
from payments_lab.messages import TUNED, PaymentOptions
from payments_lab.server import EmbeddedServer
from payments_lab.workflow_tasks import WorkerLog
from tools.exercises import (
    EXERCISES as EXERCISE_NOTEBOOKS,
)
from tools.exercises import (
    MarkingError,
    blank_line,
    drifted,
    generate,
    practice_code,
    practice_markdown,
    practice_path,
    solution_paths,
    task_markdown,
)

EXERCISES = all_exercises()


def _id(exercise: Exercise) -> str:
    return f"lesson{exercise.lesson:02d}-{exercise.name}"


@pytest.fixture(scope="module")
async def lab(dev_server: EmbeddedServer) -> AsyncIterator[Lab]:
    """One lab on the session's dev server for every check of this module (module-scoped: no open_test_lab)."""
    with published_session(dev_server):
        opened = await open_lab("exercises")
    yield opened
    await opened.close()


def solution_answer(exercise: Exercise, lab: Lab) -> Any:
    """Run the exercise's solution code, as a learner pasting it would, and return the answer."""
    namespace: dict[str, Any] = {"lab": lab}
    exec(exercise.solution_code, namespace)  # noqa: S102 - the kit's own solution code
    return namespace[exercise.answer_name]


def assert_deterministic(feedback: Feedback, lab: Lab) -> None:
    """Nothing in the text changes from run to run once notebooks/sanitize.cfg has done its job."""
    text = str(feedback) + feedback._repr_html_()
    assert "127.0.0.1" not in text and lab.task_queue not in text
    assert not re.search(r"\b\d+\.\d{3,}\b", text), f"a timing leaked into {text!r}"
    assert not re.search(r"\bex-[0-9a-f]{8}\b", str(feedback)), "a payment id leaked (sanitized, but useless to a learner)"


# Every exercise: the solution passes, the blank is not attempted.


def test_every_lesson_with_exercises_has_them_named_in_order() -> None:
    modules = [lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson09, lesson10, lesson11]
    assert [m.__name__.rsplit(".", 1)[1] for m in modules] == list(LESSONS)
    for module in modules:
        lesson = int(module.__name__.removeprefix("payments_lab.exercises.lesson"))
        assert module.EXERCISES, f"lesson {lesson} has no exercise"
        for number, exercise in enumerate(module.EXERCISES, start=1):
            assert (exercise.lesson, exercise.number) == (lesson, number)
            assert getattr(module, f"q{number}") is exercise
            assert exercise.hints and exercise.explanation and exercise.task


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
async def test_the_solution_passes(exercise: Exercise, lab: Lab) -> None:
    feedback = await exercise.check_async(solution_answer(exercise, lab), lab=lab)
    assert feedback.outcome is CheckOutcome.CORRECT, str(feedback)
    assert feedback.passed and feedback.verified
    assert str(feedback).startswith("✓ Correct · ") and "#2e7d32" in feedback._repr_html_()
    assert_deterministic(feedback, lab)


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
async def test_the_blank_is_not_attempted(exercise: Exercise) -> None:
    # No lab: an unanswered exercise must not start a server, let alone run anything.
    for feedback in (await exercise.check_async(____), await exercise.check_async()):
        assert feedback.outcome is CheckOutcome.NOT_ATTEMPTED
        assert "Not attempted" in str(feedback) and "____" in feedback.message and "hint()" in feedback.message
        assert not feedback.passed and feedback.expected is None


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
async def test_the_practice_version_of_the_solution_is_not_attempted(exercise: Exercise) -> None:
    """What the practice notebook holds (the solution with its answer blanked) counts as not attempted."""
    cells = _solution_cells(exercise)
    answer_cell = next(c for c in cells if re.search(rf"\b{exercise.answer_name}\b", c) and "# SOLUTION" in c)
    practice, blanked = practice_code(answer_cell)
    assert blanked == 1
    namespace: dict[str, Any] = {"____": ____}
    exec(practice, namespace)  # noqa: S102 - a cell of the kit's own notebook
    feedback = await exercise.check_async(namespace[exercise.answer_name])
    assert feedback.outcome is CheckOutcome.NOT_ATTEMPTED


# Plausible wrong answers: each fails, with what was expected, what was seen, and where to look.


async def _current_step_from_describe(handle: Any) -> Any:
    return (await handle.status()).payment_status


def _count_started_events(history: Any) -> int:
    events = events_frame(history)
    return len(events[(events.event_type == "ActivityTaskStarted") & (events.activity_type == "charge_payment")])


def _failure_of_failed_events(history: Any) -> Any:
    events = events_frame(history)
    failed = events[events.event_type == "ActivityTaskFailed"]
    return failed.failure.iloc[-1] if len(failed) else None


async def _confirm_by_webhook(checkout: Any, payment_id: str) -> None:
    await checkout.deliver_webhook(payment_id, ProcessorEvent("evt_x", AUTHENTICATED))


async def _do_nothing(checkout: Any, payment_id: str) -> None:
    pass


async def _two_different_events(checkout: Any, payment_id: str) -> None:
    for event_id in ("evt_1", "evt_2"):
        await checkout.deliver_webhook(payment_id, ProcessorEvent(event_id, AUTHENTICATED))


async def _confirm_then_redeliver(checkout: Any, payment_id: str) -> None:
    await checkout.confirm(payment_id)  # the customer decides; the webhooks then change nothing
    event = ProcessorEvent("evt_1", AUTHENTICATED)
    await checkout.deliver_webhook(payment_id, event)
    await checkout.deliver_webhook(payment_id, event)


async def _deliver_once(checkout: Any, payment_id: str) -> None:
    await checkout.deliver_webhook(payment_id, ProcessorEvent("evt_1", AUTHENTICATED))


async def _pay_and_wait(lab: Lab, request: Any) -> Any:
    return await lab.pay(request, show_link=False)


async def _answer_after_the_end(lab: Lab, request: Any) -> Any:
    started = await lab.service.start_early(request)
    await started.handle.result()
    return started.answer


async def _answer_then_cancel(lab: Lab, request: Any) -> Any:
    """Off the script (exq round): called right ("then the payment ended `refunded`" ticked as verified)."""
    from payments_lab.messages import TUNED

    started = await lab.service.start_early(request, options=TUNED)
    await started.handle.cancel()
    return started.answer


async def _answer_then_terminate(lab: Lab, request: Any) -> Any:
    from payments_lab.messages import TUNED

    started = await lab.service.start_early(request, options=TUNED)
    await started.handle.workflow.terminate("clean up the test payment")
    return started.answer


async def _the_early_answer(started: Any) -> Any:
    return started.answer.status


async def _always_failed(started: Any) -> Any:
    return "failed"  # never reads the payment


async def _cancel_then_read(started: Any) -> Any:
    """Off the script (exq D5): returned `cancelled`, and was told the check's payment did not run as planned or that
    it did not return how the payment ended, never that it ended the payment itself."""
    await started.handle.cancel()
    return (await started.handle.result()).status


async def _terminate_then_say_failed(started: Any) -> Any:
    await started.handle.workflow.terminate("done with it")
    return "failed"


async def _cancel_instead_of_confirming(checkout: Any, payment_id: str) -> None:
    """Off the script (exq D5): told "The payment ended cancelled." with no word of who cancelled it."""
    await checkout.service.handle(payment_id).cancel()


async def _terminate_before_the_webhook(checkout: Any, payment_id: str) -> None:
    await checkout.service.handle(payment_id).workflow.terminate("start over")


async def _cancel_at_once(lab: Lab, handle: Any) -> None:
    await handle.cancel()


async def _cancel_after_a_second(lab: Lab, handle: Any) -> None:
    await asyncio.sleep(1)
    await handle.cancel()


async def _cancel_once_charged(lab: Lab, handle: Any) -> None:
    await lab.wait_until_charged(handle.payment_id)
    await handle.cancel()


async def _terminate_after_charge(lab: Lab, handle: Any) -> None:
    await lab.wait_until_charged(handle.payment_id)
    await handle.workflow.terminate("wrong answer")


async def _cancelled_while_waiting(lab: Lab, handle: Any) -> None:
    await lab.wait_until_charged(handle.payment_id)
    raise asyncio.CancelledError()  # e.g. awaiting a task that was cancelled


def _attempt_counted_for_ever(history: Any) -> int:
    attempts = 0
    while attempts >= 0:  # a condition that never changes: the kernel would freeze without the check's thread
        attempts += 1
    return attempts


async def _share_as_percentage(service: Any, organization_id: str) -> float:
    return 100 * await service.count(organization_id=organization_id, status="failed") / await service.count(organization_id=organization_id)


async def _share_past_a_float(service: Any, organization_id: str) -> int:
    return 10**400 * await service.count(organization_id=organization_id, status="failed")


async def _step_as_a_row(handle: Any) -> object:
    import pandas as pd

    progress = await handle.progress()
    return pd.Series({"step": progress.step, "status": progress.status})


async def _share_of_all_organizations(service: Any, organization_id: str) -> float:
    return await service.count(status="failed") / await service.count()


def _first_line_of_the_trace(history: Any) -> int:
    failed = next(e for e in history.events if e.HasField("workflow_task_failed_event_attributes"))
    return int(re.findall(r"line (\d+)", failed.workflow_task_failed_event_attributes.failure.stack_trace)[0])


def _fixed_with_a_settling_timer() -> str:
    fixed = lesson09.BUGGY_SOURCE.replace("receipt['receipt_id']", "receipt['charge_id']")
    run = "        return await super().run(input)"
    return fixed.replace(run, "        await workflow.sleep(0.1)\n" + run)


def _fixed_but_stalling() -> str:
    """The right key, after code that keeps the workflow task 3 s (past the worker's 2 s deadlock timeout)."""
    fixed = lesson09.BUGGY_SOURCE.replace("receipt['receipt_id']", "receipt['charge_id']")
    stall = (
        "        with workflow.unsafe.sandbox_unrestricted():\n"
        "            import time\n"
        "            until = time.monotonic() + 3\n"
        "            while time.monotonic() < until:\n"
        "                pass\n"
    )
    line = "        receipt = "
    return fixed.replace(line, stall + line, 1)


def _rolled_back() -> str:
    return lesson09.BUGGY_SOURCE.rsplit("        return f", 1)[0] + "        return charge.message\n"


WrongAnswer = Callable[[Lab], Any]


async def _start_nothing(lab: Lab, request: object) -> None:
    return None


async def _start_without_await(lab: Lab, request: object) -> object:
    return lab.service.start_early(request, options=TUNED)  # type: ignore[arg-type]

WRONG_ANSWERS: list[tuple[Exercise, WrongAnswer, str]] = [
    (lesson01.q1, lambda lab: lab.request("-5", "EUR"), "not because of its organization"),
    (lesson01.q1, lambda lab: lab.request("25.00", "EUR"), "was not declined"),
    (lesson01.q2, lambda lab: _current_step_from_describe, "handle.progress()"),
    (lesson01.q2, lambda lab: _step_as_a_row, "should return the step, as a string"),  # a pandas Series: a traceback
    (lesson01.q3, lambda lab: WorkflowIDConflictPolicy.FAIL, "WorkflowAlreadyStartedError"),
    (lesson01.q3, lambda lab: WorkflowIDConflictPolicy.TERMINATE_EXISTING, "TERMINATE_EXISTING"),
    (lesson02.q1, lambda lab: PaymentOptions(backoff_coefficient=2, maximum_attempts=4), "backoff_coefficient"),
    (lesson02.q1, lambda lab: PaymentOptions(backoff_coefficient=3, maximum_attempts=3), "counts every attempt"),
    # Millions of attempts: the kernel froze while the check listed them all.
    (lesson02.q1, lambda lab: PaymentOptions(backoff_coefficient=3, maximum_attempts=2_000_000_000), "(1,999,999,999 waits)"),
    (lesson02.q1, lambda lab: RetryPolicy(initial_interval=1, backoff_coefficient=3, maximum_attempts=4), "Temporal would refuse"),  # type: ignore[arg-type]
    (
        lesson02.q1,
        lambda lab: RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=3, maximum_attempts=4, non_retryable_error_types=["SimulatedOutage"]),
        "never retries the charge's failures",
    ),
    (lesson02.q2, lambda lab: FaultPlan.failing(charge=3), "never succeeded"),
    (lesson02.q3, lambda lab: FaultPlan.failing(notify=2), "got through on attempt 3"),
    (lesson02.q3, lambda lab: FaultPlan(notify=StepFaults(delay=60)), "`delay` slows every attempt"),
    (lesson02.q4, lambda lab: PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=1)), "heartbeat timeout never fires"),
    (
        lesson02.q4,
        lambda lab: PaymentOptions(
            charge_timeout=timedelta(seconds=1),
            initial_interval=timedelta(milliseconds=100),
            charge_schedule_to_close_timeout=timedelta(seconds=1.05),
        ),
        "`charge_schedule_to_close_timeout` (yours: 1.05 s) bounds every attempt together",
    ),
    (lesson02.q5, lambda lab: PaymentOptions(maximum_attempts=0, initial_interval=timedelta(milliseconds=200), charge_timeout=timedelta(seconds=1)), "charge_schedule_to_close_timeout"),
    (lesson02.q5, lambda lab: PaymentOptions(maximum_attempts=3), "maximum_attempts=0"),
    (lesson03.q1, lambda lab: _count_started_events, "ActivityTaskStarted"),
    (lesson03.q1, lambda lab: _attempt_counted_for_ever, "was stopped"),
    (lesson03.q2, lambda lab: 3, "attempt log"),
    (lesson03.q2, lambda lab: 10**5000, "an int of about 5,001 digits"),  # too long for str(): a traceback
    (lesson03.q3, lambda lab: _failure_of_failed_events, "last_failure"),
    (lesson04.q1, lambda lab: 1, "idempotency key"),
    (lesson04.q2, lambda lab: PaymentOptions(), "charge_heartbeat_timeout"),
    (lesson04.q2, lambda lab: PaymentOptions(charge_timeout=timedelta(seconds=1)), "cut short a healthy charge"),
    (lesson04.q2, lambda lab: PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=1), maximum_attempts=1), "never retried"),
    (
        lesson04.q2,
        lambda lab: PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=1), charge_schedule_to_close_timeout=timedelta(milliseconds=500)),
        "ends the charge before its retry",
    ),
    (lesson05.q1, lambda lab: _cancel_at_once, "too early"),
    (lesson05.q1, lambda lab: _terminate_after_charge, "terminated"),
    (lesson05.q1, lambda lab: _cancelled_while_waiting, "raised CancelledError"),
    (lesson05.q2, lambda lab: _cancel_at_once, "too early"),
    (lesson05.q2, lambda lab: _cancel_after_a_second, "while charge attempt 1 was running"),
    (lesson05.q2, lambda lab: _cancel_once_charged, "while charge attempt 1 was running"),
    (lesson06.q1, lambda lab: lambda organization_id: "ExecutionStatus = 'Failed'", "ExecutionStatus"),
    (lesson06.q1, lambda lab: lambda organization_id: f"OrganizationId = '{organization_id}'", "PaymentStatus"),
    (lesson06.q1, lambda lab: lambda organization_id: f"OrganizationId = {organization_id}", "The server refused your query"),
    (lesson06.q2, lambda lab: _share_of_all_organizations, "organization_id="),
    (lesson06.q2, lambda lab: _share_as_percentage, "that is a percentage"),
    (lesson06.q2, lambda lab: _share_past_a_float, "should return a number"),  # float() overflowed: a traceback
    (lesson06.q1, lambda lab: lambda organization_id: "PaymentStatus = 'f\udce4iled'", "lone surrogate"),
    (lesson07.q1, lambda lab: PaymentWorkflowWithFraudScreen, "Nondeterminism"),
    (lesson07.q2, lambda lab: True, "patch marker"),
    (lesson09.q1, lambda lab: _first_line_of_the_trace, "outermost call first"),
    (lesson09.q2, lambda lab: lesson09.BUGGY_SOURCE, "KeyError"),
    (lesson09.q2, lambda lab: _fixed_with_a_settling_timer(), "non-determinism"),
    (lesson09.q2, lambda lab: _rolled_back(), "rollback"),
    (lesson09.q2, lambda lab: _fixed_but_stalling(), "does not return"),
    (lesson10.q1, lambda lab: _pay_and_wait, "without the `answer` update"),
    (lesson10.q1, lambda lab: _start_nothing, "No payment was started"),
    (lesson10.q1, lambda lab: _start_without_await, "without awaiting it"),
    (lesson10.q1, lambda lab: _answer_after_the_end, "after the payment had ended"),
    (lesson10.q1, lambda lab: _answer_then_cancel, "Your function cancelled the payment it answered for"),
    (lesson10.q1, lambda lab: _answer_then_terminate, "Your function terminated the payment it answered for"),
    (lesson10.q2, lambda lab: _the_early_answer, "early answer (`processing`)"),
    (lesson10.q2, lambda lab: _always_failed, "did not read the payment it was given"),
    (lesson10.q2, lambda lab: _cancel_then_read, "Your function cancelled the payment it was given"),
    (lesson10.q2, lambda lab: _terminate_then_say_failed, "Your function terminated the payment it was given"),
    (lesson11.q1, lambda lab: _cancel_instead_of_confirming, "Your function cancelled the payment it was given"),
    (lesson11.q2, lambda lab: _terminate_before_the_webhook, "Your function terminated the payment it was given"),
    (lesson11.q1, lambda lab: _confirm_by_webhook, "not by the customer's update"),
    (lesson11.q1, lambda lab: _do_nothing, "deadline timer fired"),
    (lesson11.q2, lambda lab: _two_different_events, "two different events"),
    (lesson11.q2, lambda lab: _deliver_once, "not two"),
    (lesson11.q2, lambda lab: _confirm_then_redeliver, "confirmed by the customer, not by the webhook"),
]


def test_every_exercise_has_a_wrong_answer_tested() -> None:
    assert {_id(e) for e, _, _ in WRONG_ANSWERS} == {_id(e) for e in EXERCISES}


@pytest.mark.parametrize(
    ("exercise", "wrong", "clue"), WRONG_ANSWERS, ids=[f"{_id(e)}-{clue}" for e, _, clue in WRONG_ANSWERS]
)
async def test_a_wrong_answer_is_explained(
    exercise: Exercise, wrong: WrongAnswer, clue: str, lab: Lab, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    feedback = await exercise.check_async(wrong(lab), lab=lab)
    printed = capsys.readouterr()
    # A traceback would reach the cell printed, or logged (pytest keeps log records from reaching stderr).
    logged = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]
    assert "Traceback" not in printed.out + printed.err and not logged, f"a traceback under the check's cell: {logged}"
    assert feedback.outcome is CheckOutcome.INCORRECT, str(feedback)
    assert feedback.message and feedback.expected and feedback.seen and feedback.where_to_look
    assert clue in str(feedback), str(feedback)
    assert f"(lesson {exercise.lesson:02d}" in feedback.where_to_look, "a wrong answer points to its lesson"
    text, rich = str(feedback), feedback._repr_html_()
    assert text.startswith("✗ Not quite · ") and "Where to look: " in text
    assert "#c62828" in rich and "Expected" in rich and "Where to look" in rich


def test_whole_numbers_and_truth_values_of_any_kind_are_taken_and_bools_are_not_counts() -> None:
    import numpy as np

    from payments_lab.exercises.checking import truth_answer, whole_number_answer

    for value in (2, np.int64(2), 2.0, np.float64(2.0), Decimal("2"), Decimal("2.00")):
        assert whole_number_answer(value, "m", expected="e", where_to_look="w") == 2
    for wrong in (True, np.bool_(True), 2.5, "2", None, Decimal("2.5"), Decimal("NaN"), Decimal("sNaN"), Fraction(10**400, 3)):
        with pytest.raises(Mismatch) as raised:
            whole_number_answer(wrong, "an int, please", expected="e", where_to_look="w")
        assert raised.value.message == "an int, please" and type(wrong).__name__ in raised.value.seen
    assert truth_answer(np.bool_(False), "False") is False and truth_answer(True, "False") is True
    for wrong in ("False", 0, None):
        with pytest.raises(Mismatch, match="True or False"):
            truth_answer(wrong, "False")


@pytest.mark.parametrize(
    ("exercise", "answer", "seen"),
    [
        (lesson01.q1, "org-unknown", "str 'org-unknown'"),
        (lesson01.q2, lambda: "charge", "<lambda>()"),
        (lesson02.q1, timedelta(seconds=1), "timedelta"),
        (lesson02.q2, {"charge": 2}, "dict {'charge': 2}"),
        (lesson03.q2, "1", "str '1'"),
        (lesson07.q1, "PaymentWorkflowWithPatchedFraudScreen", "str 'PaymentWorkflowWithPatchedFraudScreen'"),
    ],
    ids=["request-as-text", "function-without-handle", "policy-as-timedelta", "plan-as-dict", "count-as-text", "class-by-name"],
)
async def test_an_answer_of_the_wrong_kind_says_what_kind_is_expected(exercise: Exercise, answer: Any, seen: str, lab: Lab) -> None:
    feedback = await exercise.check_async(answer, lab=lab)
    assert feedback.outcome is CheckOutcome.INCORRECT
    assert feedback.expected and feedback.where_to_look and feedback.seen and seen in feedback.seen, str(feedback)


async def test_an_error_in_the_learners_code_is_feedback_not_a_traceback(lab: Lab) -> None:
    def broken(history: Any) -> int:
        raise KeyError("attempt")

    feedback = await lesson03.q1.check_async(broken, lab=lab)
    assert feedback.outcome is CheckOutcome.INCORRECT
    assert feedback.seen == "KeyError: 'attempt'" and "raised an error" in feedback.message


# The machinery: the blank, feedback, hints, solutions, the synchronous check.


def test_the_blank_is_found_wherever_it_hides() -> None:
    @dataclasses.dataclass(frozen=True)
    class Pair:
        left: object
        right: object

    def unanswered(history: object) -> object:
        return ____

    async def unanswered_async(lab: object, handle: object) -> None:
        ____  # noqa: B018 - a blank statement, as practice notebooks hold them

    def outer() -> Callable[[], object]:
        hidden = ____
        return lambda: hidden

    def answered(history: object) -> int:
        return 3

    for value in (____, [1, ____], {"a": ____}, {____: 1}, Pair(1, ____), unanswered, unanswered_async, outer(),
                  functools.partial(answered, ____), lambda h: ____):
        assert contains_blank(value), value
    for value in (None, 0, "____", FaultPlan(), Pair(1, 2), answered, [answered], PaymentOptions()):
        assert not contains_blank(value), value
    assert repr(____) == "____"
    import copy
    import pickle

    assert copy.deepcopy(____) is ____ and pickle.loads(pickle.dumps(____)) is ____


def test_hints_and_solutions_render_as_text_and_html() -> None:
    exercise = lesson02.q1
    first, last = exercise.hint(), exercise.hint(len(exercise.hints))
    assert "Hint 1 of 3" in str(first) and "Another hint: ex.q1.hint(2)" in str(first)
    assert "<code>ex.q1.hint(2)</code>" in first._repr_html_()
    assert "Another hint" not in str(last)
    with pytest.raises(NoSuchHintError, match="has hints 1 to 3, not 4"):
        exercise.hint(4)
    solution = exercise.solution()
    assert exercise.solution_code in str(solution)
    assert "backoff_coefficient=3" in solution._repr_html_() and "<pre" in solution._repr_html_()
    assert "Lesson 02 · Q1 · Waits of 1, 3 and 9 seconds" in repr(exercise)
    assert "<code>ex.q1.check(answer)</code>" in exercise._repr_html_() and "ex.q1.check(answer)" in repr(exercise)
    # The task's markdown: **bold** in the notebook's view, plain in a terminal.
    assert "retried <strong>1 s</strong>, then" in exercise._repr_html_() and "retried 1 s, then" in repr(exercise)


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
async def test_every_hint_names_what_the_learner_types(exercise: Exercise) -> None:
    """The practice notebooks import each lesson as `ex`: `q1.hint()` alone would be a NameError."""
    typed = re.compile(r"(?<![\w.])q\d\.(hint|check|solution)\(")
    blank = await exercise.check_async(____)
    assert f"Stuck? `ex.{exercise.name}.hint()`" in blank.message
    texts = [blank.message, repr(exercise), *(str(exercise.hint(n)) for n in range(1, len(exercise.hints) + 1))]
    for text in texts:
        assert not typed.search(text), text
    if len(exercise.hints) > 1:
        assert f"Another hint: ex.{exercise.name}.hint(2)" in str(exercise.hint())


def test_feedback_escapes_html_and_shows_code() -> None:
    feedback = Feedback("Lesson 09 · Q1 · <b>", CheckOutcome.INCORRECT, "Use `a < b`", expected="x", seen="<script>", where_to_look="y")
    rich = feedback._repr_html_()
    assert "<code>a &lt; b</code>" in rich and "&lt;script&gt;" in rich and "<script>" not in rich and "&lt;b&gt;" in rich


def test_exercise_refuses_a_bad_definition() -> None:
    async def checker(answer: object, lab: object) -> Any:
        raise AssertionError

    base: dict[str, Any] = dict(
        lesson=1, number=1, title="t", task="t", answer="a", checker=checker, hints=("h",), explanation="e",
        solution="x = 1", answer_name="x",
    )
    Exercise(**base)
    # The kit's own error, still a ValueError for code that catches that.
    with pytest.raises(InvalidExerciseError, match="at least one hint"):
        Exercise(**{**base, "hints": ()})
    with pytest.raises(InvalidExerciseError, match="lesson must be"):
        Exercise(**{**base, "number": 0})
    with pytest.raises(ValueError, match="solution code"):
        Exercise(**{**base, "answer_name": "not a name"})
    assert issubclass(InvalidExerciseError, PaymentsLabError) and issubclass(NoSuchHintError, PaymentsLabError)


def test_check_is_synchronous_outside_an_event_loop() -> None:
    """In a plain script (no loop running), check() runs the async check to its end; lesson 04 q1 needs no lab.

    Inside a running loop (a notebook's kernel) check() nests on it with nest_asyncio: the
    solution notebooks, run by nbval, prove that. It is not tested here, where patching
    the session's loop would change it for every later test.
    """
    assert lesson04.q1.check().outcome is CheckOutcome.NOT_ATTEMPTED
    feedback = lesson04.q1.check(2)
    assert feedback.passed, str(feedback)
    assert "2 charges for one payment" in str(feedback)


def test_check_in_a_script_opens_a_lab_of_its_own_and_closes_it(dev_server: EmbeddedServer) -> None:
    with published_session(dev_server):
        feedback = lesson02.q2.check(FaultPlan.failing(charge=2))
    assert feedback.passed, str(feedback)


# The notebooks: one per lesson, the practice ones generated from the solutions.


def _solution_notebook(lesson: int) -> Path:
    (path,) = [p for p in solution_paths() if p.name.startswith(f"{lesson:02d}-")]
    return path


def _solution_cells(exercise: Exercise) -> list[str]:
    notebook = nbformat.read(_solution_notebook(exercise.lesson), as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
def test_every_exercise_is_checked_in_its_solution_notebook(exercise: Exercise) -> None:
    cells = _solution_cells(exercise)
    assert any(f"ex.{exercise.name}.check({exercise.answer_name})" in cell for cell in cells)
    assert any(f"# ex.{exercise.name}.hint()" in cell for cell in cells)


def test_solution_notebooks_open_the_lab_and_import_their_lesson() -> None:
    paths = solution_paths()
    assert [p.name[:2] for p in paths] == [f"{n:02d}" for n in (*range(1, 8), 9, 10, 11)]
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        first_code = next(c.source for c in notebook.cells if c.cell_type == "code")
        assert "lab = await open_lab()" in first_code and f"lesson{path.name[:2]} as ex" in first_code
        assert notebook.cells[0].source.startswith(f"# {path.name[:2]} · Exercises: ")
        assert "## Recap" in notebook.cells[-1].source


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e.section], ids=_id)
def test_the_lesson_section_an_exercise_points_to_exists(exercise: Exercise) -> None:
    (lesson,) = EXERCISE_NOTEBOOKS.parent.glob(f"{exercise.lesson:02d}-*.ipynb")
    headings = [
        line.removeprefix("## ").strip()
        for cell in nbformat.read(lesson, as_version=4).cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    assert exercise.section in headings, f"{lesson.name} has no section {exercise.section!r}: update the exercise"


def test_exercise_notebooks_do_not_drift_from_their_sources() -> None:
    assert drifted() == [], "run `python -m tools.exercises` and commit the exercise notebooks"


@pytest.mark.parametrize("exercise", EXERCISES, ids=_id)
def test_the_task_in_the_notebook_is_the_one_in_the_lesson_module(exercise: Exercise) -> None:
    notebook = nbformat.read(_solution_notebook(exercise.lesson), as_version=4)
    markdown = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
    assert task_markdown(exercise) in markdown
    assert " ".join(task_markdown(exercise).split("\n\n", 1)[1].split()) == " ".join(exercise.task.split())


def test_a_task_edited_in_the_notebook_is_reported_and_written_back(tmp_path: Path) -> None:
    solution = _solution_notebook(1)
    copy = tmp_path / solution.name
    copy.write_text(solution.read_text())
    generate(tmp_path)
    assert drifted(tmp_path) == []
    notebook = nbformat.read(copy, as_version=4)
    (cell,) = [c for c in notebook.cells if c.cell_type == "markdown" and c.source.startswith("## Q2 · ")]
    cell.source = cell.source.replace("by asking the workflow itself", "by asking the server")
    nbformat.write(notebook, copy)
    # The practice notebook takes its tasks from the module too: it has not drifted.
    assert drifted(tmp_path) == [
        f"{solution.name} has a title or task that differs from payments_lab/exercises/lesson01.py, where it is written",
    ]
    assert generate(tmp_path) == [copy]
    assert drifted(tmp_path) == [] and copy.read_text() == solution.read_text()
    assert practice_path(copy).read_text() == practice_path(solution).read_text()


def test_every_exercise_has_its_task_cell_once(tmp_path: Path) -> None:
    solution = _solution_notebook(1)
    notebook = nbformat.read(solution, as_version=4)
    headings = [i for i, c in enumerate(notebook.cells) if c.cell_type == "markdown" and c.source.startswith("## Q")]
    notebook.cells[headings[0]].source = "## Q9 · Not an exercise\n\nText."
    nbformat.write(notebook, tmp_path / solution.name)
    with pytest.raises(MarkingError, match="Q9 is no exercise of payments_lab/exercises/lesson01.py"):
        drifted(tmp_path)
    del notebook.cells[headings[0]]
    nbformat.write(notebook, tmp_path / solution.name)
    with pytest.raises(MarkingError, match=r"one '## QN · <title>' cell per exercise .*\(Q1, Q2, Q3\); it has Q2, Q3"):
        drifted(tmp_path)


def test_tasks_are_wrapped_as_markdown_that_reads_the_same() -> None:
    long_task = "Write `async def f(lab, handle)`: " + "word " * 30 + "- then 1. and # are no list, no heading; wait 10 s."
    exercise = lesson02.q1
    cell = task_markdown(
        Exercise(
            lesson=2, number=1, title=exercise.title, task=long_task, answer="a", checker=exercise._checker, hints=("h",),
            explanation="e", solution="x = 1", answer_name="x",
        )
    )
    heading, text = cell.split("\n\n", 1)
    lines = text.splitlines()
    assert heading == f"## Q1 · {exercise.title}"
    assert len(lines) > 1 and " ".join(lines) == long_task
    assert lines[0].startswith("Write `async def f(lab, handle)`: "), "a code span is never broken"
    assert not any(re.match(r"(-|\d+\.|#)(\s|$)", line) for line in lines[1:]), f"a line markdown reads as a list or heading: {lines}"
    assert lines[-1].endswith("wait 10 s.") and not lines[-1].startswith("s."), "a number stays with its unit"


def test_practice_notebooks_hold_no_answer() -> None:
    for solution in solution_paths():
        practice = nbformat.read(solution.with_name(solution.name.replace("-solution", "-practice")), as_version=4)
        sources = "\n".join(c.source for c in practice.cells)
        assert "SOLUTION" not in sources and "____" in sources
        assert all(c.execution_count is None and not c.outputs for c in practice.cells if c.cell_type == "code")


def test_the_marking_convention() -> None:
    assert blank_line("plan = FaultPlan.failing(charge=2)  # SOLUTION") == "plan = ____"
    assert blank_line("options: PaymentOptions = PaymentOptions()  # SOLUTION") == "options: PaymentOptions = ____"
    assert blank_line("    return progress.step  # SOLUTION") == "    return ____"
    assert blank_line("    await handle.cancel()  # SOLUTION") == "    ____"
    with pytest.raises(MarkingError, match="one whole statement"):
        blank_line("total = (1 +  # SOLUTION")
    source = "async def f(lab, handle):\n    await lab.wait()  # SOLUTION ONLY\n    await handle.cancel()  # SOLUTION\n\nex.q1.check(f)"
    assert practice_code(source) == ("async def f(lab, handle):\n    ____\n\nex.q1.check(f)", 1)
    assert practice_markdown("# Title\n*Solutions.* <!-- SOLUTION ONLY -->\nText") == "# Title\nText"
    assert EXERCISE_NOTEBOOKS.name == "exercises"


async def test_a_check_that_hangs_becomes_a_verdict_about_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cell may hang: a check stuck on the lab gives up with feedback that says what to do."""
    import payments_lab.exercises as framework
    from payments_lab.exercises import problem

    async def stuck(answer: object, lab: object) -> object:
        await asyncio.sleep(3600)
        raise AssertionError("never reached")

    monkeypatch.setattr(problem, "CHECK_TIMEOUT", 0.2)
    exercise = framework.Exercise(
        lesson=1, number=9, title="stuck", task="t", answer="anything", checker=stuck,  # type: ignore[arg-type]
        hints=("h",), explanation="e", solution="x = 1", answer_name="x", needs_lab=False,
    )
    feedback = await exercise.check_async("an answer")
    assert feedback.outcome is CheckOutcome.INCORRECT
    assert "did not finish within 0.2 s" in str(feedback) and "open_lab()" in str(feedback)


async def test_an_answer_that_closes_the_lab_is_told_at_once_and_so_is_the_next_check(open_test_lab: OpenLab) -> None:
    """A closed lab's server is gone: the check must not wait for it as for an outage (2 minutes), nor raise."""
    lab = await open_test_lab("closed-by-answer")

    async def closes_the_lab(lab: Lab, handle: Any) -> None:
        await lab.close()

    async with asyncio.timeout(30):  # the check would otherwise wait out CHECK_TIMEOUT (90 s)
        feedback = await lesson05.q1.check_async(closes_the_lab, lab=lab)
        assert feedback.outcome is CheckOutcome.INCORRECT and "The lab closed during the check" in str(feedback), str(feedback)
        again = await lesson05.q1.check_async(solution_answer(lesson05.q1, lab), lab=lab)
    assert again.outcome is CheckOutcome.INCORRECT and "The lab is closed" in str(again), str(again)
    assert "lab = await open_lab()" in again.where_to_look


@pytest.mark.parametrize(
    ("exercise", "answer"),
    [
        (lesson02.q4, PaymentOptions(charge_timeout=timedelta(seconds=3.5), initial_interval=timedelta(milliseconds=100))),
        # Attempts 100 ms apart, not doubling: the server gives the retries up once the next one could not start
        # before the 3.5 s (doubling waits, on a loaded machine, gave up after 2.1 s, before the deadline this tests).
        (lesson02.q5, PaymentOptions(maximum_attempts=0, initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0,
                                     charge_schedule_to_close_timeout=timedelta(seconds=3.5))),
    ],
    ids=["02.q4", "02.q5"],
)
async def test_a_deadline_is_judged_on_the_options_not_on_a_busy_labs_wall_clock(
    exercise: Exercise, answer: PaymentOptions, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy room's server can push a right answer past the 3 s the task names (a room of 30 once
    turned every right 02·Q4/Q5 red): a payment that ends after the deadline, of options that end it
    in time on paper, is green. Here "on paper" is widened by 1 s, so the payment surely ends past 3 s."""
    monkeypatch.setattr(lesson02, "REST_OF_PAYMENT", -1.0)
    started = time.monotonic()
    feedback = await exercise.check_async(answer, lab=lab)
    assert time.monotonic() - started > lesson02.HANG_DEADLINE, "the payment really ran past the deadline"
    assert feedback.outcome is CheckOutcome.CORRECT, str(feedback)


def test_options_past_the_deadline_on_paper_are_wrong() -> None:
    assert lesson02._on_paper(1.1, lesson02.HANG_DEADLINE)
    assert not lesson02._on_paper(2.9, lesson02.HANG_DEADLINE), "no time left for the rest of the payment"


def test_a_check_given_no_lab_says_its_exercise_is_declared_wrong() -> None:
    """Not an `assert` (gone under `python -O`): an exercise error that names the fix."""
    from payments_lab.errors import PaymentsLabError
    from payments_lab.exercises.checking import required_lab

    with pytest.raises(PaymentsLabError, match="needs_lab=True"):
        required_lab(None)


async def _current_step_answered_late(handle: Any) -> str:
    await asyncio.sleep(1.5)  # a busy lab: the query comes back after the charge has ended
    return (await handle.progress()).step


async def _current_step_that_never_returns(handle: Any) -> str:
    await asyncio.Event().wait()
    return "charge"


async def test_01_q2_blames_a_slow_lab_not_a_late_right_answer(lab: Lab) -> None:
    """A room of 30 made queries slower than 0.5 s: a right function was called wrong. Now a late
    answer from after the charge is a verdict about the lab, and a function that never returns is
    still stopped (at ANSWER_BOUND) and called wrong."""
    late = await lesson01.q2.check_async(_current_step_answered_late, lab=lab)
    assert late.outcome is CheckOutcome.INCORRECT and "lab is too slow to tell" in str(late), str(late)
    assert "(lesson 01" not in late.where_to_look, "a slow lab is not the learner's lesson to reread"
    stuck = await lesson01.q2.check_async(_current_step_that_never_returns, lab=lab)
    assert f"did not return within {lesson01.ANSWER_BOUND:g} s" in str(stuck), str(stuck)


def test_nothing_read_from_a_table_counts_as_no_error_and_an_array_does_not_raise() -> None:
    """Lesson 03 Q3: a learner's `None` may come back as pandas' NA or NaN; an array has no single truth value."""
    import numpy as np
    import pandas as pd

    from payments_lab.exercises.lesson03 import _is_nothing

    assert all(_is_nothing(v) for v in (None, "", float("nan"), np.float64("nan"), pd.NA, pd.NaT))
    assert not any(_is_nothing(v) for v in ("an error", 0, np.array([]), pd.Series([], dtype=object)))


async def test_two_overlapping_checks_of_the_early_answer_leave_the_labs_charges_as_they_were(lab: Lab) -> None:
    """10 Q1 slows the lab's charges while it runs: a cell run again before the first check ends must not keep them slow."""
    before = lab.fault_profile
    answer = solution_answer(lesson10.q1, lab)

    async def later() -> Feedback:
        await asyncio.sleep(0.05)
        return await lesson10.q1.check_async(answer, lab=lab)

    first, second = await asyncio.gather(lesson10.q1.check_async(answer, lab=lab), later())
    assert first.outcome is second.outcome is CheckOutcome.CORRECT, (str(first), str(second))
    assert lab.fault_profile == before


async def test_a_workflow_class_the_sandbox_refuses_is_a_verdict_not_a_traceback(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """07 Q1: a class defined in a module that reads the clock at import fails the sandbox, as it would on a worker."""
    import importlib

    (tmp_path / "clock_at_import.py").write_text(
        "from __future__ import annotations\n\nimport datetime\n\nfrom temporalio import workflow\n\n"
        "from payments_lab.workflows import PaymentInput, PaymentResult, PaymentWorkflow\n\n"
        "LOADED_AT = datetime.datetime.now()\n\n\n"
        '@workflow.defn(name="PaymentWorkflow")\nclass ClockedPaymentWorkflow(PaymentWorkflow):\n'
        "    @workflow.run\n    async def run(self, input: PaymentInput) -> PaymentResult:\n        return await super().run(input)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    clocked = importlib.import_module("clock_at_import").ClockedPaymentWorkflow
    feedback = await lesson07.q1.check_async(clocked, lab=lab)
    assert feedback.outcome is CheckOutcome.INCORRECT and "sandbox refused this workflow class" in str(feedback), str(feedback)
    assert "RestrictedWorkflowAccessError" in feedback.seen, feedback.seen


def _stuck_checker(stopped: asyncio.Event, first: Callable[[], object] = lambda: None) -> Callable[[object, object], Awaitable[object]]:
    """A checker that waits for ever and sets ``stopped`` once cancelled, where a real check stops its payment."""

    async def stuck(answer: object, lab: object) -> object:
        first()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.set()
            raise
        raise AssertionError("never reached")

    return stuck


async def test_a_check_past_its_deadline_is_stopped_not_left_running(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch for a closing lab sits between the deadline and the check: the deadline must still stop the check."""
    import payments_lab.exercises as framework
    from payments_lab.exercises import problem

    stopped = asyncio.Event()
    stuck = _stuck_checker(stopped)
    monkeypatch.setattr(problem, "CHECK_TIMEOUT", 0.3)
    exercise = framework.Exercise(
        lesson=1, number=9, title="stuck", task="t", answer="anything", checker=stuck,  # type: ignore[arg-type]
        hints=("h",), explanation="e", solution="x = 1", answer_name="x",
    )
    feedback = await exercise.check_async("an answer", lab=lab)
    assert feedback.outcome is CheckOutcome.INCORRECT and "did not finish within 0.3 s" in str(feedback)
    assert stopped.is_set()


async def test_two_09_q2_checks_at_once_each_judge_their_own_payment(lab: Lab) -> None:
    # A script may run two checks together: each one's stuck payment logs into every open
    # worker log, and the right answer must not be judged by the wrong one's failures.
    fixed = lesson09.BUGGY_SOURCE.replace("receipt['receipt_id']", "receipt['charge_id']")
    right, wrong = await asyncio.gather(
        lesson09.q2.check_async(fixed, lab=lab), lesson09.q2.check_async(lesson09.BUGGY_SOURCE, lab=lab)
    )
    assert right.outcome is CheckOutcome.CORRECT, str(right)
    assert wrong.outcome is CheckOutcome.INCORRECT and "KeyError" in str(wrong), str(wrong)
    logger = logging.getLogger(WorkerLog.LOGGER)
    assert logger.propagate, "once both checks end, the worker's warnings reach the notebook again"


def test_overlapping_worker_logs_put_the_logger_back_whichever_stops_first() -> None:
    logger = logging.getLogger(WorkerLog.LOGGER)
    for first_to_stop in (0, 1):
        logs = [WorkerLog().start(), WorkerLog().start()]
        assert not logger.propagate
        logger.warning("seen by both")
        logs[first_to_stop].stop()
        assert not logger.propagate, "the other log still keeps the warnings"
        logs[1 - first_to_stop].stop()
        assert logger.propagate and not logger.handlers
        assert [len(log.records) for log in logs] == [1, 1]


def test_a_worker_log_nobody_holds_any_more_stops_itself() -> None:
    # Lesson 09's first cell, `worker_log = WorkerLog().start()`, run twice: the second log
    # replaces the first in the notebook, and the first must not keep the warnings for good.
    logger = logging.getLogger(WorkerLog.LOGGER)
    worker_log = WorkerLog().start()
    worker_log = WorkerLog().start()
    assert len(logger.handlers) == 1, "the log the cell replaced stopped"
    logger.warning("seen by the log in use")
    assert [record.getMessage() for record in worker_log.records] == ["seen by the log in use"]
    worker_log.stop()
    worker_log.stop()  # stopping twice is harmless
    assert logger.propagate and not logger.handlers


async def test_an_async_answer_that_blocks_the_event_loop_is_told_so_and_one_that_never_yields_is_stopped() -> None:
    """The lab's worker runs on the kernel's event loop: an ``async def`` that blocks it stalls the payment it is judged on."""
    import time

    from payments_lab.exercises.checking import call_learner

    async def sleeps(value: int) -> int:
        time.sleep(0.7)  # meant: await asyncio.sleep(0.7)
        return value

    with pytest.raises(Mismatch, match=r"blocked the kernel's event loop for 0\.\d s") as blocked:
        await call_learner(sleeps, 1, what="function", timeout=3)
    assert blocked.value.seen.startswith(f"line {sleeps.__code__.co_firstlineno + 1} of your cell held the event loop")
    assert "never `time.sleep(...)`" in blocked.value.where_to_look

    async def spins(value: int) -> int:
        while True:  # a polling loop with no await
            value += 1

    started = time.monotonic()
    with pytest.raises(Mismatch, match="did not return within 0.5 s: it never let the kernel's event loop turn") as stopped:
        await call_learner(spins, 1, what="function", timeout=0.5)
    assert "ran on without an `await`, and was stopped" in stopped.value.seen and time.monotonic() - started < 5

    async def waits(value: int) -> int:
        await asyncio.sleep(0.6)
        return value

    assert await call_learner(waits, 7, what="function", timeout=3) == 7, "waiting with await is not blocking"


async def test_a_loop_that_drops_a_coroutine_each_turn_or_catches_its_cancellation_is_stopped_with_a_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Off the script: a poll loop that forgot `await` froze the kernel for good (the one stop sent landed in Python's
    "never awaited" finalizer and was swallowed); one with a bare `except:` swallowed the timeout's cancellation, ran on
    after the verdict, and the check blamed the lab 90 s later."""
    import time

    from payments_lab.exercises.checking import call_learner

    async def progress() -> str:
        return "validate"

    async def forgets_await(value: int) -> int:
        while True:
            step = progress()  # meant: await progress()
            if step == "charge":
                return value

    started = time.monotonic()
    with pytest.raises(Mismatch, match="did not return within 0.5 s: it never let the kernel's event loop turn") as stopped:
        await call_learner(forgets_await, 1, what="function", timeout=0.5)
    first = forgets_await.__code__.co_firstlineno
    assert any(f"line {first + n} of your cell" in stopped.value.seen for n in range(1, 5)) and time.monotonic() - started < 15
    assert "Exception ignored" not in capsys.readouterr().err, "the stops a finalizer swallowed are not shown"

    polls = 0

    async def swallows(value: int) -> int:
        nonlocal polls
        while True:
            try:
                polls += 1
                await asyncio.sleep(0.05)
            except:  # noqa: E722 - what the learner wrote
                pass

    started = time.monotonic()
    with pytest.raises(Mismatch, match="did not return within 0.5 s, and caught the cancellation that was to stop it") as caught:
        await call_learner(swallows, 1, what="function", timeout=0.5)
    assert time.monotonic() - started < 5 and "`except Exception:` at most" in caught.value.where_to_look
    after_verdict = polls
    await asyncio.sleep(0.3)
    assert polls == after_verdict, "the learner's loop was dropped, not left running in the background"

    cleaned = []

    async def cleans_up_then_raises(value: int) -> int:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # a clean-up that awaits, then the cancellation goes on: textbook asyncio
            cleaned.append(value)
            raise

    with pytest.raises(Mismatch, match=r"did not return within 0.5 s\.$"):
        await call_learner(cleans_up_then_raises, 1, what="function", timeout=0.5)
    assert cleaned == [1], "its clean-up ran, and it is not blamed for catching its cancellation"


@pytest.mark.parametrize("form", ["async def", "functools.partial", "lambda"])
async def test_an_answer_that_swallows_everything_gets_its_verdict_and_is_gone_after_it(form: str) -> None:
    """Off the script (lesson 11 Q1, `except BaseException: pass` in a `while True`): the verdict came, but the
    dropped coroutine lived on in the verdict's traceback, and the garbage collection that freed it later, in
    whatever thread, spun for ever (its `asyncio.sleep` raised there for want of a loop, swallowed); as a
    `functools.partial` or a lambda, the answer got no verdict at all and polled on in the background."""
    import gc
    import types

    from payments_lab.exercises.checking import call_learner

    polls = 0

    async def swallows(checkout: object, payment_id: str) -> None:
        nonlocal polls
        while True:
            try:
                polls += 1
                await asyncio.sleep(0.05)
            except BaseException:  # noqa: BLE001 - what the learner wrote
                pass

    answer: Callable[..., Any] = {
        "async def": swallows,
        "functools.partial": functools.partial(swallows),
        "lambda": lambda checkout, payment_id: swallows(checkout, payment_id),
    }[form]
    gc.disable()  # no collection may free it meanwhile: it is freed by the check, or not at all
    try:
        async with asyncio.timeout(10):
            with pytest.raises(Mismatch, match="caught the cancellation that was to stop it") as caught:
                await call_learner(answer, None, "p-1", what="function", timeout=0.5)
        alive = [o for o in gc.get_objects() if isinstance(o, types.CoroutineType) and o.cr_code is swallows.__code__]
        assert not alive, "the dropped coroutine outlives the verdict"
        del alive
        assert caught.value.__traceback__ is not None  # the verdict's traceback, kept as a notebook keeps it
    finally:
        gc.enable()
    after_verdict = polls
    await asyncio.sleep(0.2)
    assert polls == after_verdict, "the learner's loop was dropped, not left running in the background"


async def test_an_interrupted_check_stops_with_its_work_and_says_so_in_one_line() -> None:
    """The ■ button during ``check()``: the check is stopped (its payment with it), not left judging in the background."""
    import payments_lab.exercises as framework
    from payments_lab.exercises.errors import CheckInterruptedError

    stopped = asyncio.Event()

    def interrupt() -> None:
        raise KeyboardInterrupt  # what the kernel's SIGINT handler raises in the event loop

    slow = _stuck_checker(stopped, first=lambda: asyncio.get_running_loop().call_later(0.2, interrupt))

    exercise = framework.Exercise(
        lesson=1, number=8, title="slow", task="t", answer="anything", checker=slow,  # type: ignore[arg-type]
        hints=("h",), explanation="e", solution="x = 1", answer_name="x", needs_lab=False,
    )
    with pytest.raises(CheckInterruptedError, match="the check was interrupted and stopped, with its payment; nothing was judged") as told:
        exercise.check("an answer")
    assert stopped.is_set(), "the check's task was cancelled, not left running"
    assert isinstance(told.value, KeyboardInterrupt) and told.value._render_traceback_()[0].count("\n") == 0


async def test_an_answer_that_tries_to_end_the_program_gets_a_verdict_and_the_kernel_lives_on() -> None:
    """``sys.exit()`` in an answer used to leave the kernel's event loop stopped: every later cell hung."""
    import sys

    from payments_lab.exercises.checking import call_learner

    def exits(history: object) -> object:
        sys.exit(1)

    async def exits_async(history: object) -> object:
        raise SystemExit(2)

    def interrupts(history: object) -> object:
        raise KeyboardInterrupt

    for answer, raised in ((exits, "SystemExit(1)"), (exits_async, "SystemExit(2)"), (interrupts, "KeyboardInterrupt()")):
        with pytest.raises(Mismatch, match=rf"tried to end the program \({re.escape(raised)}\) instead of returning its answer") as told:
            await call_learner(answer, None, what="function", timeout=3)
        assert "remove `sys.exit()`" in told.value.where_to_look
    assert await asyncio.sleep(0, "the loop") == "the loop", "the event loop still turns"


async def test_an_answer_that_closes_a_lab_with_its_own_server_is_told_so_not_blamed_for_blocking() -> None:
    """Closing a lab stops its server, a wait that blocks the loop: the check used to call it a `time.sleep`."""
    lab = await open_lab(f"own-{uuid.uuid4().hex[:6]}", server=EmbeddedServer(ui=False))

    async def answer_first(lab: Lab, request: Any) -> None:
        await lab.close()

    try:
        feedback = await lesson10.q1.check_async(answer_first, lab=lab)
    finally:
        await lab.close()
    assert feedback.outcome is CheckOutcome.INCORRECT and "The lab closed during the check" in str(feedback), str(feedback)
    assert "time.sleep" not in str(feedback)


async def _confirm_after_a_nap(checkout: Any, payment_id: str) -> None:
    time.sleep(2.5)  # the mistake under test: a blocking call in an async def
    await checkout.confirm(payment_id)


def _confirm_without_await(checkout: Any, payment_id: str) -> None:
    checkout.confirm(payment_id)  # the mistake under test: the coroutine is dropped


@pytest.mark.parametrize(
    ("answer", "clue"),
    [
        (_confirm_after_a_nap, "blocked the kernel's event loop"),
        (_confirm_without_await, "called `Checkout.confirm(...)` without `await`, so that call never ran"),
    ],
)
async def test_a_blocking_call_or_a_missing_await_in_exercise_11_is_named(lab: Lab, answer: Any, clue: str) -> None:
    """Both used to be judged by their consequence: a Temporal timeout error, or "Nothing confirmed the payment"."""
    feedback = await lesson11.q1.check_async(answer, lab=lab)
    assert feedback.outcome is CheckOutcome.INCORRECT and clue in str(feedback), str(feedback)


async def test_a_lesson_09_check_refunds_the_payments_it_ends_stuck(lab: Lab) -> None:
    """Off the script (exq round): every lesson 09 check terminated its stuck payments after their charge, and left the
    money taken for ever (two per Q1 run, right answer or wrong)."""
    before = {entry.payment_id for entry in lab.repository.ledger()}
    feedback = await lesson09.q1.check_async(solution_answer(lesson09.q1, lab), lab=lab)
    assert feedback.outcome is CheckOutcome.CORRECT, str(feedback)
    ended = {entry.payment_id for entry in lab.repository.ledger()} - before
    assert ended, "the check's payments were charged"
    for payment_id in ended:
        summary = lab.repository.ledger_summary(payment_id)
        assert summary.charges == 1 and summary.refunds == 1 and summary.kept == 0, (payment_id, summary)


async def test_a_check_whose_lab_worker_stops_leaves_no_payment_running_nor_money_taken(open_test_lab: OpenLab) -> None:
    """Off the script (exq round): an answer that confirmed, then stopped the lab's worker: the check was abandoned and
    its confirmed, charged payment stayed running (3 runs of 4), to be "charged and never settled" at close."""
    from payments_lab.orphans import running_on

    lab = await open_test_lab(f"stopped-mid-check-{uuid.uuid4().hex[:6]}")
    before = {entry.payment_id for entry in lab.repository.ledger()}

    async def confirm_then_stop_the_worker(checkout: Any, payment_id: str) -> None:
        await checkout.confirm(payment_id)
        await lab.worker.stop()

    feedback = await lesson11.q1.check_async(confirm_then_stop_the_worker, lab=lab)
    assert feedback.outcome is not CheckOutcome.CORRECT
    assert await running_on(lab.client, [lab.task_queue]) == []
    for payment_id in {entry.payment_id for entry in lab.repository.ledger()} - before:
        status = (await lab.service.status(payment_id)).workflow_status
        kept = lab.repository.ledger_summary(payment_id).kept
        assert status == "completed" or kept == 0, (payment_id, status, kept)  # completed: the money is the sale's


async def test_checks_that_start_early_or_through_the_checkout_repair_a_namespace_changed_under_the_lab_or_judge_nothing() -> None:
    """Lessons 10 and 11 start their payments with `lab.service.start_early` (10 Q1 in the learner's own function) and
    `Checkout.start`, which did not go through the repair `lab.service.start` has: search attributes removed by hand
    made 10 Q1 a judged, recorded wrong answer ("Your function raised an error") and the others a raw RPCError; a
    deleted namespace the same. Now the attributes come back, and a deleted namespace is the lab's trouble, not judged."""
    from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest, RemoveSearchAttributesRequest

    from payments_lab.search_attributes import ALL

    checks = (lesson10.q1, lesson10.q2, lesson11.q1)
    lab = await open_lab(f"ns-{uuid.uuid4().hex[:6]}", server=EmbeddedServer(ui=False, namespace="ana"))
    try:
        for exercise in checks:
            await lab.client.operator_service.remove_search_attributes(
                RemoveSearchAttributesRequest(namespace="ana", search_attributes=[key.name for key in ALL])
            )
            feedback = await exercise.check_async(solution_answer(exercise, lab), lab=lab)
            assert feedback.outcome is CheckOutcome.CORRECT, (exercise.label, str(feedback))
        await lab.client.operator_service.delete_namespace(DeleteNamespaceRequest(namespace="ana"))
        for exercise in checks:
            feedback = await exercise.check_async(solution_answer(exercise, lab), lab=lab)
            assert feedback.outcome is CheckOutcome.INCORRECT, (exercise.label, str(feedback))
            assert feedback.message.startswith("The lab's namespace is not ready: the namespace 'ana' is gone"), (exercise.label, str(feedback))
            assert "your answer was not judged" in str(feedback), str(feedback)
    finally:
        await lab.close()


async def test_a_checks_own_cancel_or_termination_is_not_blamed_on_the_answer(lab: Lab) -> None:
    """A check stops a payment that overran (cancel, then terminate) with its own reason, which the history keeps."""
    from payments_lab.exercises import checking
    from payments_lab.exercises.checking import CHECK_STOP, ended_by_the_answer

    for reason, blamed in ((CHECK_STOP, None), ("done with it", "cancelled")):
        payment_id = f"ended-{uuid.uuid4().hex[:8]}"
        handle = lab.service.handle(payment_id)
        # A workflow type no worker runs: both requests are written to its history at once.
        await lab.client.start_workflow("NobodyRunsThis", id=handle.workflow_id, task_queue=f"nobody-{payment_id}")
        await handle.cancel(reason=reason)
        await handle.workflow.terminate(reason=reason)
        assert ended_by_the_answer(await handle.history()) == blamed
    # The check's own way of ending one: its reason once went as the termination's details, and was blamed.
    handle = lab.service.handle(f"ended-{uuid.uuid4().hex[:8]}")
    await lab.client.start_workflow("NobodyRunsThis", id=handle.workflow_id, task_queue=f"nobody-{handle.payment_id}")
    await checking._terminate(handle)
    assert ended_by_the_answer(await handle.history()) is None
