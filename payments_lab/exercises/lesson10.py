"""Exercises of lesson 10 · answer first: return the first answer early, and find out how the payment really ended."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from temporalio.client import WorkflowExecutionStatus, WorkflowHistory

from payments_lab.domain import ActivityType, PaymentRequest, PaymentResult, PaymentStatus
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    Event,
    await_result,
    call_learner,
    ended_by_the_answer,
    events_of,
    expect_function,
    first_index,
    fresh_request,
    required_lab,
    short_repr,
)
from payments_lab.faults import FaultPlan, FaultProfile, StepFaults
from payments_lab.lab import Lab
from payments_lab.messages import TUNED, PaymentAnswer
from payments_lab.service import EarlyStart, PaymentNotFoundError, not_found_as

SLOW_CHARGE = 1.0
"""Seconds the processor takes to answer a charge in Q1: an answer that waited for the end comes after it."""

LEARNER_TIMEOUT = 5.0
"""Seconds the learner's function may take."""

END_WITHIN = 5.0
"""Seconds within which a payment must end once the learner's function returned."""


def _update_events(events: list[Event]) -> str:
    names = [e.name for e in events if e.name.startswith("WorkflowExecutionUpdate")]
    return ", ".join(f"`{n}`" for n in names) or "no update event"


_SLOWED: dict[int, tuple[FaultProfile, int]] = {}
"""By lab (``id``): its fault profile before the checks that slowed its charges, and how many of them run."""


@contextmanager
def _slow_charges(lab: Lab) -> Iterator[None]:
    """Slow the lab's charges while the block runs, and put its own profile back once the last such check ends.

    Two checks of this question may overlap (a cell run again while the first still runs): each
    restoring what it found would leave the second's slow profile on the lab for good.
    """
    original, holders = _SLOWED.get(id(lab), (lab.fault_profile, 0))
    _SLOWED[id(lab)] = (original, holders + 1)
    lab.fault_profile = replace(original, charge_latency=SLOW_CHARGE)
    try:
        yield
    finally:
        original, holders = _SLOWED.pop(id(lab))
        if holders > 1:
            _SLOWED[id(lab)] = (original, holders - 1)
        else:
            lab.fault_profile = original


async def _check_answer_first(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    function = expect_function(answer, "an async function `(lab, request)`", 2)
    request = fresh_request(lab, amount="42.00")
    with _slow_charges(lab):
        returned = await call_learner(function, lab, request, what="function", timeout=LEARNER_TIMEOUT)
        handle = lab.service.handle(request.payment_id)
        try:
            with not_found_as(request.payment_id):
                status = (await handle.workflow.describe()).status
        except PaymentNotFoundError:  # only this: a server away is the lab's trouble, not the answer's
            status = None
        if status is None:
            raise Mismatch(
                "No payment was started for the request your function was given.",
                expected=f"a payment workflow `{request.workflow_id}`",
                seen="no such workflow",
                where_to_look="pass the `request` your function receives to `lab.service.start_early(...)`",
            )
        running_at_return = status is WorkflowExecutionStatus.RUNNING
        result = await await_result(handle, END_WITHIN, terminate=True, settle_in=lab.repository)
    history = await handle.history()
    events = events_of(history)
    expected = "a `PaymentAnswer` with `accepted=True`, returned while the charge still runs; `WorkflowExecutionUpdateCompleted` before the charge started"
    ended = ended_by_the_answer(history)
    if ended is not None:  # an answer that ends the payment it answered for told the customer "accepted" for nothing
        raise Mismatch(
            f"Your function {ended} the payment it answered for: the caller heard \"accepted\", and the payment never completed.",
            expected=expected + ", and the payment left to run to its end",
            seen=f"`WorkflowExecution{'CancelRequested' if ended == 'cancelled' else 'Terminated'}` in the payment's history",
            where_to_look="return `started.answer` and let the payment run: do not cancel or terminate it",
        )
    if first_index(events, "WorkflowExecutionUpdateCompleted") is None:
        raise Mismatch(
            "The payment was started without the `answer` update: its caller could only wait for the end.",
            expected=expected,
            seen=f"history: {_update_events(events)}; your function returned {short_repr(returned)}",
            where_to_look="`await lab.service.start_early(request, options=TUNED)` sends the update with the start",
        )
    if isinstance(returned, EarlyStart):
        raise Mismatch(
            "Your function returned the whole `EarlyStart`: the caller wants the answer in it.",
            expected=expected,
            seen="an `EarlyStart` (answer and handle)",
            where_to_look="return `started.answer`",
        )
    if not running_at_return or isinstance(returned, PaymentResult):
        raise Mismatch(
            "Your function returned after the payment had ended: the caller waited for the charge "
            f"({SLOW_CHARGE:g} s in this check) after all.",
            expected=expected,
            seen=f"the workflow had ended when your function returned {short_repr(returned)}",
            where_to_look="return `started.answer` at once; do not await `started.handle.result()`",
        )
    if not isinstance(returned, PaymentAnswer) or not returned.accepted:
        raise Mismatch(
            "Your function did not return an accepted `PaymentAnswer`.",
            expected=expected,
            seen=f"{type(returned).__name__} {short_repr(returned)}",
            where_to_look="`started = await lab.service.start_early(request, options=TUNED)`, then `return started.answer`",
        )
    completed = first_index(events, "WorkflowExecutionUpdateCompleted")
    charge_started = first_index(events, "ActivityTaskStarted", ActivityType.CHARGE)
    if charge_started is not None and completed is not None and completed > charge_started:
        raise Mismatch(
            "The answer came after the charge had started.",
            expected=expected,
            seen=f"`WorkflowExecutionUpdateCompleted` is event {events[completed].event_id}, after the charge's "
            f"`ActivityTaskStarted` (event {events[charge_started].event_id})",
            where_to_look="send the update with the start: `lab.service.start_early(...)`",
        )
    ended = result.status.value if result is not None else "not within the check's deadline"
    return Verdict(
        "The caller heard 'accepted' while the charge was still running.",
        (
            f"your function returned `{returned.status.value}` (accepted) while the workflow was still running",
            "history: `WorkflowExecutionUpdateCompleted` before the charge's `ActivityTaskStarted`",
            f"then the payment ended `{ended}`",
        ),
    )


q1 = Exercise(
    lesson=10,
    number=1,
    title="Answer first",
    task="Write `async def answer_first(lab, request)`: start the payment so that its caller hears \"accepted\" as "
    "soon as it is validated, and return that answer — not how the payment ends. In the check, the processor takes "
    f"{SLOW_CHARGE:g} s to charge: an answer that waits for the charge comes {SLOW_CHARGE:g} s late.",
    answer="an async function of `(lab, request)` returning a `PaymentAnswer`",
    checker=_check_answer_first,
    hints=(
        "Update-with-Start: one call starts the workflow and sends it the `answer` update. The service has a "
        "method for it, next to `start`.",
        "`started = await lab.service.start_early(request, options=TUNED)`, then `return started.answer`.",
    ),
    explanation="`start_early` sends the `answer` update with the start; the update returns once validation is "
    "done (in the first workflow task, validation being a local activity with `TUNED`), and the charge runs on. "
    "Awaiting `started.handle.result()` would bring the wait back.",
    solution="""from payments_lab.messages import TUNED

async def answer_first(lab, request):
    started = await lab.service.start_early(request, options=TUNED)
    return started.answer""",
    answer_name="answer_first",
    section="The same payment, answered first",
)


async def _check_final_word(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    function = expect_function(answer, "an async function `(started)`", 1)
    request: PaymentRequest = fresh_request(lab, amount="88.00")
    started = await lab.service.start_early(request, options=TUNED, faults=FaultPlan(charge=StepFaults(decline=True)))
    try:
        returned = await call_learner(function, started, what="function", timeout=LEARNER_TIMEOUT)
    finally:
        result = await await_result(started.handle, END_WITHIN, terminate=True, settle_in=lab.repository)
    history = await started.handle.history()
    expected = f"`{PaymentStatus.FAILED.value}`: the charge was declined after the answer, and the workflow settled it"
    _not_ended_by_the_answer(history, returned, expected)
    events = events_of(history)
    answered = first_index(events, "WorkflowExecutionUpdateCompleted")
    settled = first_index(events, "ActivityTaskScheduled", ActivityType.SETTLE)
    if answered is None or settled is None or answered > settled:
        raise Mismatch(
            "The check's payment did not run as planned (answer, then a declined charge settled).",
            expected="`WorkflowExecutionUpdateCompleted`, then `settle_unfinished_payment`",
            seen=f"history: {_update_events(events)}; settle step {'scheduled' if settled is not None else 'missing'}",
            where_to_look="the lab's worker: run `lab = await open_lab()` again",
            about_the_lab=True,
        )
    final = result.status if result is not None else None
    seen_status = _status_of(returned)
    if seen_status is PaymentStatus.PROCESSING or isinstance(returned, PaymentAnswer):
        raise Mismatch(
            "Your function returned the early answer (`processing`): that is what the customer heard, "
            "not how the payment ended.",
            expected=expected,
            seen=f"{short_repr(returned)}; history: `WorkflowExecutionUpdateCompleted`, then the charge declined, then "
            "`settle_unfinished_payment`",
            where_to_look="`started.handle` follows the rest: `(await started.handle.result()).status`",
        )
    if seen_status is not final or final is not PaymentStatus.FAILED:
        raise Mismatch(
            "Your function did not return how the payment ended.",
            expected=expected,
            seen=f"{type(returned).__name__} {short_repr(returned)}",
            where_to_look="`(await started.handle.result()).status`",
        )
    # A function that returns "failed" without reading the payment would pass the declined
    # payment alone: a second one, whose charge goes through, must come back completed.
    paid = await lab.service.start_early(fresh_request(lab, amount="12.00"), options=TUNED)
    try:
        returned_for_paid = await call_learner(function, paid, what="function", timeout=LEARNER_TIMEOUT)
    finally:
        await await_result(paid.handle, END_WITHIN, terminate=True, settle_in=lab.repository)
    _not_ended_by_the_answer(await paid.handle.history(), returned_for_paid, f"`{PaymentStatus.COMPLETED.value}` for a payment whose charge goes through")
    if _status_of(returned_for_paid) is not PaymentStatus.COMPLETED:
        raise Mismatch(
            "Your function did not read the payment it was given: for a second payment, whose charge went through, "
            "it returned the same kind of answer.",
            expected=f"`{PaymentStatus.COMPLETED.value}` for the second payment (and `{PaymentStatus.FAILED.value}` for the declined one)",
            seen=f"{type(returned_for_paid).__name__} {short_repr(returned_for_paid)}",
            where_to_look="`(await started.handle.result()).status`: the status of the payment `started` holds",
        )
    return Verdict(
        "'Accepted' first, 'failed' in the end: the workflow settled the declined charge.",
        (
            f"the early answer was `{started.answer.status.value}`; your function returned `{final.value}`",
            "history: `WorkflowExecutionUpdateCompleted`, then the declined charge, then `settle_unfinished_payment`",
            f"ledger: {lab.repository.charge_count(request.payment_id)} charges; "
            f"{len(lab.repository.notifications(request.payment_id))} notifications: nobody told the customer yet",
        ),
    )


def _not_ended_by_the_answer(history: WorkflowHistory, returned: object, expected: str) -> None:
    """Refuse an answer that cancelled or terminated the payment: it then returned an end it caused itself."""
    ended = ended_by_the_answer(history)
    if ended is not None:
        raise Mismatch(
            f"Your function {ended} the payment it was given: it returned an end it caused, not how the payment ended.",
            expected=expected,
            seen=f"`WorkflowExecution{'CancelRequested' if ended == 'cancelled' else 'Terminated'}` in the payment's "
            f"history; your function returned {short_repr(returned)}",
            where_to_look="read the payment without changing it: `(await started.handle.result()).status`",
        )


def _status_of(returned: object) -> object:
    """The status a learner's function returned: a ``PaymentStatus``, its value, or a result or answer that has one."""
    status = returned.status if isinstance(returned, (PaymentResult, PaymentAnswer)) else returned
    if isinstance(status, str) and not isinstance(status, PaymentStatus):
        try:
            return PaymentStatus(status)
        except ValueError:
            return status
    return status


q2 = Exercise(
    lesson=10,
    number=2,
    title="Accepted is not paid",
    task="The customer heard \"accepted\"; then the processor declined the card. Write "
    "`async def final_status(started)`: given what `lab.service.start_early` returned, return the payment's final "
    "`PaymentStatus` — what the customer must now be told.",
    answer="an async function of `(started)` returning a `PaymentStatus`",
    checker=_check_final_word,
    hints=(
        "`started.answer` is what was said first. `started.handle` is the payment that ran on.",
        "`return (await started.handle.result()).status`",
    ),
    explanation="The early answer is written before the charge starts, so it cannot know how the charge ends. The "
    "workflow's result does: the charge was declined, the workflow settled the payment through "
    "`settle_unfinished_payment` (refunding what had been taken, here nothing), and it ended `failed`.",
    solution="""async def final_status(started):
    return (await started.handle.result()).status""",
    answer_name="final_status",
    section="What the early answer no longer says",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 10, in order."""
