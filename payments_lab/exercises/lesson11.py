"""Exercises of lesson 11 · waiting for the customer: confirm through an update, survive a webhook delivered twice."""

from __future__ import annotations

from datetime import timedelta

from payments_lab.checkout import Checkout
from payments_lab.confirmation_messages import AUTHENTICATED
from payments_lab.domain import PaymentStatus
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    CHECK_OPTIONS,
    PaymentRun,
    after_learner,
    call_learner,
    ended_by_the_answer,
    expect_function,
    fresh_request,
    plural,
    required_lab,
)
from payments_lab.lab import Lab

DEADLINE = timedelta(seconds=2)
"""The confirmation deadline of the checks' payments: a payment nobody confirms ends within it."""

LEARNER_TIMEOUT = 3.0
"""Seconds the learner's function may take."""

END_WITHIN = 5.0
"""Seconds within which the payment must end once the learner's function returned."""


async def _drive(lab: Lab, answer: object, amount: str) -> tuple[PaymentRun, Checkout]:
    """Start a payment that waits for the customer, hand it to the learner's function, collect how it ended."""
    function = expect_function(answer, "an async function `(checkout, payment_id)`", 2)
    checkout = Checkout(lab.service, options=CHECK_OPTIONS)
    request = fresh_request(lab, amount=amount)
    handle = await checkout.start(request, deadline=DEADLINE)
    learner = call_learner(function, checkout, request.payment_id, what="function", timeout=LEARNER_TIMEOUT)
    return await after_learner(learner, handle, request, lab.repository, end_within=END_WITHIN), checkout


def _count(run: PaymentRun, name: str) -> int:
    return sum(1 for event in run.events if event.name == name)


def _seen(run: PaymentRun) -> str:
    names = ("WorkflowExecutionUpdateAccepted", "WorkflowExecutionSignaled", "TimerFired", "TimerCanceled")
    found = [f"{_count(run, n)} `{n}`" for n in names if _count(run, n)]
    return f"status {run.status}; history: {', '.join(found) or 'no update, signal or timer event'}; ledger: {plural(run.charges, 'charge')}"


def _not_ended_by_the_answer(run: PaymentRun, expected: str, what_to_type: str) -> None:
    """Refuse an answer that cancelled or terminated the payment: its feedback would otherwise name another cause."""
    ended = ended_by_the_answer(run.history)
    if ended is not None:
        raise Mismatch(
            f"Your function {ended} the payment it was given: nobody can confirm a payment that was ended.",
            expected=expected,
            seen=f"`WorkflowExecution{'CancelRequested' if ended == 'cancelled' else 'Terminated'}` in the payment's history; {_seen(run)}",
            where_to_look=what_to_type + "; do not cancel or terminate the payment",
        )


def _deadline_passed(run: PaymentRun, expected: str, what_to_type: str) -> None:
    if _count(run, "TimerFired"):
        raise Mismatch(
            "Nothing confirmed the payment: its deadline timer fired and it was cancelled.",
            expected=expected,
            seen=_seen(run),
            where_to_look=what_to_type,
        )


async def _check_confirm(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    run, _ = await _drive(lab, answer, "49.90")
    expected = "one `WorkflowExecutionUpdateAccepted`, the timer cancelled, status completed, 1 charge"
    what_to_type = "`await checkout.confirm(payment_id)` sends the `confirm` update"
    _not_ended_by_the_answer(run, expected, what_to_type)
    _deadline_passed(run, expected, what_to_type)
    accepted = _count(run, "WorkflowExecutionUpdateAccepted")
    if not accepted and _count(run, "WorkflowExecutionSignaled"):
        raise Mismatch(
            "The payment was confirmed by a signal (the processor's webhook), not by the customer's update: "
            "the checkout page would never hear whether its confirmation counted.",
            expected=expected,
            seen=_seen(run),
            where_to_look=what_to_type + ", which returns the workflow's receipt",
        )
    if run.result is None or run.result.status is not PaymentStatus.COMPLETED or accepted != 1 or run.charges != 1:
        raise Mismatch(
            f"The payment ended {run.status}.",
            expected=expected,
            seen=_seen(run),
            where_to_look=what_to_type + " with `approved=True` (the default)",
        )
    return Verdict(
        "Confirmed by the customer: the update was accepted and the payment charged.",
        (
            "history: `WorkflowExecutionUpdateAccepted`, then `WorkflowExecutionUpdateCompleted` (the receipt)",
            "history: the deadline timer was cancelled (`TimerCanceled`): it never fired",
            f"result: `{run.status}`; ledger: {plural(run.charges, 'charge')}",
        ),
    )


q1 = Exercise(
    lesson=11,
    number=1,
    title="The customer confirms",
    task="Write `async def confirm_payment(checkout, payment_id)`: confirm the waiting payment as the customer's "
    "checkout page would — the page must hear whether the confirmation counted.",
    answer="an async function of `(checkout, payment_id)`",
    checker=_check_confirm,
    hints=(
        "The checkout page must hear accepted or refused: that is an update, not a signal. `Checkout` has a "
        "method that sends it.",
        "`await checkout.confirm(payment_id)`: it returns the workflow's receipt, or raises "
        "`ConfirmationRefusedError`.",
    ),
    explanation="`checkout.confirm` runs the workflow's `confirm` update: its validator may refuse it (too late, "
    "already decided); accepted, it is written to the history as `WorkflowExecutionUpdateAccepted` and its "
    "receipt comes back to the caller. The workflow's wait ends, the deadline timer is cancelled, the charge runs.",
    solution="""async def confirm_payment(checkout, payment_id):
    await checkout.confirm(payment_id)""",
    answer_name="confirm_payment",
    section="A payment that waits for the customer",
)


async def _check_webhook_twice(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    run, checkout = await _drive(lab, answer, "19.00")
    expected = "two `WorkflowExecutionSignaled` (both deliveries), one event id, one duplicate ignored, 1 charge"
    what_to_type = (
        "build one `ProcessorEvent(\"evt_…\", AUTHENTICATED)` and pass the same object to "
        "`await checkout.deliver_webhook(payment_id, event)` twice"
    )
    _not_ended_by_the_answer(run, expected, what_to_type)
    _deadline_passed(run, expected, what_to_type)
    signaled = _count(run, "WorkflowExecutionSignaled")
    state = await checkout.state(run.payment_id)
    if signaled != 2:
        raise Mismatch(
            f"The workflow received {signaled} webhook {'delivery' if signaled == 1 else 'deliveries'}, not two.",
            expected=expected,
            seen=_seen(run),
            where_to_look=what_to_type,
        )
    if len(state.webhook_events) != 1 or state.duplicate_webhooks != 1:
        raise Mismatch(
            f"The two deliveries carried {plural(len(state.webhook_events), 'event id')}: to the workflow they were "
            "two different events, not one delivered twice.",
            expected=expected,
            seen=f"event ids {list(state.webhook_events)}; {state.duplicate_webhooks} duplicates ignored",
            where_to_look="a redelivery carries the same `event_id`: " + what_to_type,
        )
    if run.result is None or run.result.status is not PaymentStatus.COMPLETED or run.charges != 1:
        raise Mismatch(
            f"The payment ended {run.status}: the webhook did not authenticate it.",
            expected=expected,
            seen=_seen(run) + f"; decided by {state.decided_by}",
            where_to_look=f"the event's type: `AUTHENTICATED` (`{AUTHENTICATED}`)",
        )
    if not (state.decided_by or "").startswith("webhook"):
        raise Mismatch(
            f"The payment was confirmed by the {state.decided_by}, not by the webhook.",
            expected=expected + ", decided by the webhook",
            seen=_seen(run) + f"; decided by the {state.decided_by}",
            where_to_look="the webhook alone must confirm it: deliver the event, and do not call `checkout.confirm`",
        )
    return Verdict(
        "The webhook arrived twice and confirmed the payment once.",
        (
            "history: 2 `WorkflowExecutionSignaled` events, both deliveries recorded",
            f"query `confirmation`: event ids {list(state.webhook_events)}, {state.duplicate_webhooks} duplicate ignored, "
            f"decided by the {state.decided_by}",
            f"result: `{run.status}`; ledger: {plural(run.charges, 'charge')}",
        ),
    )


q2 = Exercise(
    lesson=11,
    number=2,
    title="The webhook, delivered twice",
    task="The processor's first delivery timed out on its side, so it delivers the same event again. Write "
    "`async def redeliver(checkout, payment_id)`: deliver one `payment.authenticated` event to the payment twice. "
    "The payment must be charged once.",
    answer="an async function of `(checkout, payment_id)`",
    checker=_check_webhook_twice,
    hints=(
        "A redelivery is the same event again: same `event_id`. `ProcessorEvent(event_id, type)` is in "
        "`payments_lab.confirmation_messages`, with the type `AUTHENTICATED`.",
        "`event = ProcessorEvent(\"evt_1\", AUTHENTICATED)`, then `await checkout.deliver_webhook(payment_id, event)` "
        "twice.",
    ),
    explanation="Each delivery is a signal, so the history holds both. The workflow keeps the event ids it has "
    "seen and ignores the second one: Temporal itself deduplicates a signal only when the same client call is "
    "retried, never two deliveries of one webhook.",
    solution="""from payments_lab.confirmation_messages import AUTHENTICATED, ProcessorEvent

async def redeliver(checkout, payment_id):
    event = ProcessorEvent("evt_1", AUTHENTICATED)
    await checkout.deliver_webhook(payment_id, event)
    await checkout.deliver_webhook(payment_id, event)""",
    answer_name="redeliver",
    section="The processor's webhook, twice",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 11, in order."""
