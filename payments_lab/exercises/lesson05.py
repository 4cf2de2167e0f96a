"""Exercises of lesson 05 · cancellation: cancel mid-charge and get refunded, reverse a charge nobody was told of."""

from __future__ import annotations

from payments_lab.cancellation import CancelTiming, cancel_timing
from payments_lab.domain import ActivityType, PaymentStatus
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    CHECK_OPTIONS,
    PaymentRun,
    after_learner,
    call_learner,
    expect_function,
    first_index,
    fresh_request,
    plural,
    required_lab,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab

LEARNER_TIMEOUT = 3.0
"""Seconds the learner's function may take."""

END_WITHIN = 3.0
"""Seconds within which the payment must end once the learner's function returned."""

SLOW_VALIDATION = 0.3
"""Seconds validation takes in these checks: a cancel sent at once lands before the charge."""

SLOW_CHARGE = 1.5
"""Seconds the charge takes in Q2: a cancel sent after a fixed wait, or once the money is taken, lands during it."""

WATCH_TIMEOUT = 5.0
"""Seconds the learner's function may take in Q2, which waits for validate and the slow charge."""


async def _drive(lab: Lab, answer: object, faults: FaultPlan, amount: str, timeout: float = LEARNER_TIMEOUT) -> PaymentRun:
    """Start a payment, hand it to the learner's function, and collect how it ended."""
    function = expect_function(answer, "an async function `(lab, handle)`", 2)
    request = fresh_request(lab, amount=amount)
    handle = await lab.start(request, faults=faults, options=CHECK_OPTIONS, show_link=False)
    learner = call_learner(function, lab, handle, what="function", timeout=timeout)
    return await after_learner(learner, handle, request, lab.repository, end_within=END_WITHIN)


def _ledger(run: PaymentRun) -> str:
    return f"{plural(run.charges, 'charge')}, {plural(run.refunds, 'refund')}"


def _common_mistakes(run: PaymentRun, expected: str, too_early: str) -> None:
    """Raise the feedback of the mistakes both questions share."""
    if run.status == "terminated":
        raise Mismatch(
            "The workflow was terminated: it stopped dead, with no chance to settle the payment.",
            expected=expected,
            seen=f"workflow terminated; ledger {_ledger(run)}: the customer's money is still taken",
            where_to_look="`await handle.cancel()` asks the workflow to cancel, and it compensates; "
            "terminating skips the workflow's code entirely",
        )
    if run.result is None:
        raise Mismatch(
            f"The payment was still running {END_WITHIN:g} s after your function returned: it was not cancelled.",
            expected=expected,
            seen="still running (the check then cancelled it)",
            where_to_look="`await handle.cancel()` sends the cancellation request",
        )
    if run.result.status is PaymentStatus.CANCELLED and not run.charges:
        raise Mismatch(
            "The payment ended cancelled with nothing charged: your cancel arrived too early.",
            expected=expected,
            seen=f"status cancelled; ledger {_ledger(run)}",
            where_to_look=too_early,
        )


async def _check_cancel_after_charge(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    faults = FaultPlan(validate=StepFaults(delay=SLOW_VALIDATION), charge=StepFaults(delay=30))
    run = await _drive(lab, answer, faults, "30.00")
    expected = "status refunded: charged, then refunded"
    _common_mistakes(
        run,
        expected,
        "wait until the processor has taken the money, `await lab.wait_until_charged(handle.payment_id)`, then cancel",
    )
    assert run.result is not None
    events = run.events
    cancel_requested = first_index(events, "ActivityTaskCancelRequested", ActivityType.CHARGE)
    settled = first_index(events, "ActivityTaskScheduled", ActivityType.SETTLE)
    stopped_then_settled = cancel_requested is not None and settled is not None and cancel_requested < settled
    if run.result.status is not PaymentStatus.REFUNDED or run.charges != 1 or run.refunds != 1 or not stopped_then_settled:
        raise Mismatch(
            f"The payment ended {run.status}, not refunded while its charge ran.",
            expected=expected,
            seen=f"status {run.status}; ledger {_ledger(run)}",
            where_to_look="cancel while the charge is under way: right after `lab.wait_until_charged(...)`",
        )
    return Verdict(
        "Cancelled mid-charge: the workflow stopped the charge, then refunded it.",
        (
            f"result: `{run.status}`, '{run.result.message}'",
            "history: `ActivityTaskCancelRequested` for `charge_payment`, then `settle_unfinished_payment`, "
            f"then `{run.closing_event}`",
            f"ledger: {_ledger(run)}; balance {lab.repository.balance(run.payment_id)} {run.request.currency}",
        ),
    )


q1 = Exercise(
    lesson=5,
    number=1,
    title="Cancel in the middle of the charge",
    task="Write `async def cancel_after_charge(lab, handle)`: the processor takes the money at once but answers "
    "slowly; cancel the payment once the money is taken, so that it ends **refunded**.",
    answer="an async function of `(lab, handle)`",
    checker=_check_cancel_after_charge,
    hints=(
        "Two steps: wait until the money is taken, then ask the workflow to cancel.",
        "`await lab.wait_until_charged(handle.payment_id)`, then `await handle.cancel()`.",
    ),
    explanation="`wait_until_charged` returns once the ledger holds the charge; `handle.cancel()` sends a "
    "cancellation request. The workflow waits for the charge attempt to stop, then settles the payment: it "
    "finds the charge and refunds it.",
    solution="""async def cancel_after_charge(lab, handle):
    await lab.wait_until_charged(handle.payment_id)
    await handle.cancel()""",
    answer_name="cancel_after_charge",
    section="Cancel it",
)


def _charge_when_cancelled(timing: CancelTiming) -> str:
    """What the charge was doing when the cancel arrived, from the attempt log when an attempt was running."""
    if timing.running is None:
        return "`WorkflowExecutionCancelRequested` while `charge_payment` was scheduled and unfinished"
    return (
        f"`WorkflowExecutionCancelRequested` while charge attempt {timing.running.attempt} was running "
        f"(attempt log: it then ended {timing.running.outcome})"
    )


async def _check_reverse_unnotified(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    faults = FaultPlan(
        validate=StepFaults(delay=SLOW_VALIDATION), charge=StepFaults(delay=SLOW_CHARGE), notify=StepFaults(delay=30)
    )
    run = await _drive(lab, answer, faults, "45.00", timeout=WATCH_TIMEOUT)
    expected = "`WorkflowExecutionCancelRequested` while `send_notification` runs: status refunded, nobody notified"
    watch = (
        "poll `(await handle.progress()).step` until it says 'notify', with `await asyncio.sleep(0.05)` between "
        "two questions, then `await handle.cancel()`"
    )
    _common_mistakes(run, expected, watch)
    assert run.result is not None
    timing = cancel_timing(run.payment_id, run.history, run.attempts)
    if timing.during_charge:
        raise Mismatch(
            "Your cancel arrived while the charge was still running, before the notify step.",
            expected=expected,
            seen=f"{_charge_when_cancelled(timing)}; status {run.status}, {plural(run.notifications, 'notification')}",
            where_to_look="a fixed wait, or waiting for the money (`wait_until_charged`), does not tell which step "
            f"runs: {watch}",
        )
    if timing.step != "notify":
        raise Mismatch(
            "The cancel did not arrive during the notify step.",
            expected=expected,
            seen=f"status {run.status}; {timing}",
            where_to_look=watch,
        )
    if run.result.status is not PaymentStatus.REFUNDED or run.refunds != 1 or run.notifications:
        raise Mismatch(
            f"The payment ended {run.status}.",
            expected=expected,
            seen=f"status {run.status}; ledger {_ledger(run)}; {plural(run.notifications, 'notification')}",
            where_to_look="a cancelled payment that was charged is refunded by `settle_unfinished_payment`",
        )
    return Verdict(
        "The charge was reversed because the customer could not be told.",
        (
            "history: `charge_payment` completed, `send_notification` scheduled, then `WorkflowExecutionCancelRequested` "
            "before it completed, then `settle_unfinished_payment`",
            f"result: `{run.status}`; ledger {_ledger(run)}; {run.notifications} notifications sent",
            "the payment was already `completed` in the repository: `refunded` is allowed after it",
        ),
    )


q2 = Exercise(
    lesson=5,
    number=2,
    title="Reverse a charge nobody was told of",
    task="The notification service hangs, and the business rule says a customer who cannot be told must not be "
    "charged. Write `async def reverse_if_notification_stuck(lab, handle)`: watch the payment and, once it is in "
    "its `notify` step, cancel it, so that the charge is refunded.",
    answer="an async function of `(lab, handle)`",
    checker=_check_reverse_unnotified,
    hints=(
        "The `progress` query says which step the payment is in (lesson 01): ask it in a loop. A fixed "
        "`asyncio.sleep(...)` guesses; the check's charge takes its time.",
        "`while (await handle.progress()).step != 'notify': await asyncio.sleep(0.05)`, then `await handle.cancel()`.",
    ),
    explanation="The workflow handles a cancellation in any step: during the notification, the charge has "
    "completed, so settling the payment refunds it. Polling a query is how a client watches a workflow it "
    "does not own.",
    solution="""import asyncio

async def reverse_if_notification_stuck(lab, handle):
    while (await handle.progress()).step != "notify":
        await asyncio.sleep(0.05)
    await handle.cancel()""",
    answer_name="reverse_if_notification_stuck",
    section="Cancel it",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 05, in order."""
