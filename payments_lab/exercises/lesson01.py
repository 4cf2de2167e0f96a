"""Exercises of lesson 01 · first payment: a declined payment, a query to a running workflow, a start sent twice."""

from __future__ import annotations

import time
from enum import Enum
from typing import cast

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from payments_lab.domain import ActivityType, PaymentRequest, PaymentStatus, Step
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    CHECK_OPTIONS,
    await_result,
    call_learner,
    closing_event,
    expect_function,
    expect_type,
    fresh_request,
    lab_too_slow,
    required_lab,
    run_payment,
    scheduled_activities,
    short_repr,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab
from payments_lab.messages import PaymentInput
from payments_lab.workflows import PaymentWorkflow


async def _check_unknown_organization(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, PaymentRequest, 'lab.request("25.00", "EUR", organization_id="org-…")')
    run = await run_payment(lab, answer)  # type: ignore[arg-type]
    assert run.result is not None, "a declined payment ends at once"
    message = run.result.message
    if run.result.status is not PaymentStatus.DECLINED:
        raise Mismatch(
            f"The payment was not declined: it ended {run.status}.",
            expected="status `declined`, because the organization does not exist",
            seen=f"status `{run.status}`: {message}",
            where_to_look="`organization_id=` of `lab.request`; the organizations the kit knows are in "
            "`lab.repository.organizations()`: pick any other",
        )
    reasons = message.removeprefix("declined: ").split("; ")
    if not any("organization" in reason and "does not exist" in reason for reason in reasons):
        raise Mismatch(
            "The payment was declined, but not because of its organization.",
            expected="the message `organization '…' does not exist`",
            seen=message,
            where_to_look="keep a valid amount and currency, and change `organization_id=` to one the kit does not know",
        )
    if len(reasons) > 1:
        raise Mismatch(
            "The payment was declined for more than one reason.",
            expected="one reason: the unknown organization",
            seen=message,
            where_to_look="validation names every broken rule: keep the amount, currency and ids valid, "
            "and change only `organization_id=`",
        )
    activities = scheduled_activities(run.history)
    if activities != [ActivityType.VALIDATE] or run.outcomes(ActivityType.VALIDATE) != ["completed"] or run.charges:
        raise Mismatch(
            "The payment was declined, but more happened than validation.",
            expected="one validate attempt, no charge",
            seen=f"activities {activities}, validate attempts {run.describe_attempts('validate_payment')}, "
            f"{run.charges} charge(s)",
            where_to_look="a declined payment runs the validate step only, once",
        )
    return Verdict(
        f"Declined, for one reason: {reasons[0]}.",
        (
            f"history: one activity, `validate_payment`, then `{closing_event(run.history)}`: "
            "a declined payment is a result of the workflow, not a failure",
            "attempt log: validate ran once; a declined payment is never retried",
            "repository: nothing charged, nothing stored",
        ),
    )


q1 = Exercise(
    lesson=1,
    number=1,
    title="Decline a payment for its organization",
    task="Build a payment request that the validate step declines because its **organization is unknown**, "
    "and for no other reason. `lab.request(amount, currency, organization_id=...)` builds one.",
    answer='a `PaymentRequest`, e.g. from `lab.request(...)`',
    checker=_check_unknown_organization,
    hints=(
        "`lab.request(amount, currency, organization_id=...)` builds a request; "
        "`lab.repository.organizations()` lists the organizations the kit knows.",
        "Use a valid amount such as `\"25.00\"` and a valid currency such as `\"EUR\"`, so that "
        "the organization is the only thing wrong.",
    ),
    explanation="Any organization id the repository does not know makes validation say "
    "`organization '…' does not exist`; everything else must be valid, or the message names it too.",
    solution='request = lab.request("25.00", "EUR", organization_id="org-unknown")',
    answer_name="request",
    section="A declined payment",
)


def _as_text(value: object) -> object:
    """A step given as an enum or a string, compared as text."""
    return value.value if isinstance(value, Enum) else value


CHARGE_DELAY = 0.8
"""Seconds the check's payment stays in its charge step once the money is taken."""

QUICK_ANSWER = 0.5
"""Seconds within which a query answers on a quiet lab; a later answer may come after the charge."""

ANSWER_BOUND = 5.0
"""Seconds after which the learner's function is stopped: a loop that never ends, not a slow lab."""


async def _check_current_step(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    current_step = expect_function(answer, "a function `async def current_step(handle)` that returns a string", 1)
    request = fresh_request(lab, amount="30.00")
    # The processor takes the money at once and answers 0.8 s later: the payment sits in its charge step.
    handle = await lab.start(request, faults=FaultPlan(charge=StepFaults(delay=CHARGE_DELAY)), options=CHECK_OPTIONS, show_link=False)
    try:
        await lab.wait_until_charged(request.payment_id, timeout=5)
        asked = time.monotonic()
        seen = _as_text(await call_learner(current_step, handle, what="function", timeout=ANSWER_BOUND))
        answered_in = time.monotonic() - asked
    finally:
        await await_result(handle, 5)
    if not isinstance(seen, str):  # a row, an array, the whole progress: comparing it with a step means nothing
        raise Mismatch(
            "Your function should return the step, as a string.",
            expected="`'charge'`: the `step` of `await handle.progress()`",
            seen=f"{type(seen).__name__} {short_repr(seen)}",
            where_to_look="return only the step: `return (await handle.progress()).step`",
        )
    if seen in (Step.NOTIFY.value, Step.DONE.value) and answered_in > QUICK_ANSWER:
        raise lab_too_slow(
            f"Your function answered after {answered_in:.1f} s, when the charge had ended: the lab is too slow to tell.",
            expected=f"`'charge'`, asked while the charge runs (it lasts {CHARGE_DELAY:g} s)",
            seen=short_repr(seen),
        )
    if seen != "charge":
        if seen == PaymentStatus.PENDING.value:
            where = (
                "`handle.status()` asks the server (describe), whose `PaymentStatus` search attribute changes "
                "only when the payment ends; ask the workflow itself: `await handle.progress()`"
            )
        elif seen == PaymentStatus.PROCESSING.value:
            where = "that is the payment's status (`.status`) in the `progress` query's answer; the step is its `.step`"
        elif hasattr(seen, "step"):
            where = "return only the step: the `.step` of the query's answer"
        else:
            where = "`await handle.progress()` is the query; its answer has a `step`"
        raise Mismatch(
            "Your function did not say which step the running payment is in.",
            expected="`'charge'` while the charge is under way",
            seen=short_repr(seen),
            where_to_look=where,
        )
    after = _as_text(await call_learner(current_step, handle, what="function"))
    if after != "done":
        raise Mismatch(
            "Right while the payment ran, but not once it had ended.",
            expected="`'done'` after the payment completed",
            seen=short_repr(after),
            where_to_look="ask the workflow every time, with `await handle.progress()`: a query works on ended workflows too",
        )
    return Verdict(
        "Your function asked the workflow itself, with the `progress` query.",
        (
            "during the charge it said `'charge'` (the search attribute still said `pending`)",
            "after the payment ended it said `'done'`: queries also answer for closed workflows",
        ),
    )


q2 = Exercise(
    lesson=1,
    number=2,
    title="Ask a running payment where it is",
    task="Write `async def current_step(handle)`: return the step a payment is in — `'validate'`, `'charge'`, "
    "`'notify'`, `'settle'` or `'done'` — by asking the workflow itself.",
    answer="an async function of a payment handle that returns a string",
    checker=_check_current_step,
    hints=(
        "A *query* asks the workflow itself; `handle.progress()` sends the payment workflow's `progress` query.",
        "`progress = await handle.progress()` answers a `PaymentProgress`; return its `.step`.",
    ),
    explanation="`handle.progress()` is a Temporal query, answered by the workflow code from its own state "
    "(rebuilt from the history for a closed workflow). `handle.status()` asks the server instead, whose "
    "search attributes only change when the payment ends.",
    solution="""async def current_step(handle):
    progress = await handle.progress()
    return progress.step""",
    answer_name="current_step",
    section="Ask the workflow where it is",
)

async def _check_start_twice(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, WorkflowIDConflictPolicy, "WorkflowIDConflictPolicy.…")
    policy = cast(WorkflowIDConflictPolicy, answer)  # expect_type refused anything else
    request = fresh_request(lab, amount="20.00")
    faults = FaultPlan(charge=StepFaults(delay=0.8))
    first = await lab.start(request, faults=faults, options=CHECK_OPTIONS, show_link=False)
    first_run = first.workflow.result_run_id
    refused = None
    second_run = None
    try:
        await lab.wait_until_charged(request.payment_id, timeout=5)
        try:
            second = await lab.client.start_workflow(
                PaymentWorkflow.run,
                PaymentInput(request, CHECK_OPTIONS, faults),
                id=request.workflow_id,
                task_queue=lab.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,  # the id is fresh; the server refuses REJECT_DUPLICATE with TERMINATE_EXISTING
                id_conflict_policy=policy,
            )
            second_run = second.result_run_id
        except WorkflowAlreadyStartedError as err:
            refused = err
    finally:
        await await_result(first, 5)
        await await_result(lab.service.handle(request.payment_id), 5)
    runs = [w async for w in lab.client.list_workflows(f"WorkflowId = '{request.workflow_id}'")]
    statuses = sorted(w.status.name.lower() for w in runs if w.status is not None)
    expected = "the second start returns the running payment: one run, completed, charged once"
    if refused is not None:
        raise Mismatch(
            "The second start was refused with an error.",
            expected=expected,
            seen="`WorkflowAlreadyStartedError`: what `FAIL` does (the kit's choice, which `DuplicatePaymentError` reports)",
            where_to_look="a conflict policy that hands back the workflow already running under that id",
        )
    if len(runs) != 1 or second_run != first_run:
        raise Mismatch(
            "The second start started a second run.",
            expected=expected,
            seen=f"{len(runs)} runs of the workflow ({', '.join(statuses)})",
            where_to_look="`TERMINATE_EXISTING` stops the running payment dead — mid-charge, with no chance to settle — "
            "and starts it again; pick the policy that keeps the running one",
        )
    charges = lab.repository.charge_count(request.payment_id)
    return Verdict(
        "The second start got the running payment back: no error, no second run.",
        (
            "the handle it returned points at the run already under way (the same run id)",
            f"visibility: one run of `{request.workflow_id.split('-')[0]}-…`, {statuses[0] if statuses else '?'}",
            f"ledger: charged {'once' if charges == 1 else f'{charges} times'}",
        ),
    )


q3 = Exercise(
    lesson=1,
    number=3,
    title="A start sent twice",
    task="A client sends its start request again — it never saw the server's answer — while the payment is still "
    "running. Pick the `WorkflowIDConflictPolicy` under which the second start hands back the **running** payment: "
    "no error, no second run.",
    answer="a `WorkflowIDConflictPolicy`",
    checker=_check_start_twice,
    hints=(
        "The conflict policy decides what a start does when a workflow with that id is *running*: "
        "`FAIL`, `USE_EXISTING` or `TERMINATE_EXISTING`.",
        "`from temporalio.common import WorkflowIDConflictPolicy`, then `WorkflowIDConflictPolicy.USE_EXISTING`.",
    ),
    explanation="`USE_EXISTING` answers a start for a running id with a handle on that run: safe for a client that "
    "retries its own start. `FAIL` (the kit's choice) raises `WorkflowAlreadyStartedError`; `TERMINATE_EXISTING` "
    "terminates the running payment and starts a new one.",
    solution="""from temporalio.common import WorkflowIDConflictPolicy

policy = WorkflowIDConflictPolicy.USE_EXISTING""",
    answer_name="policy",
    section="One payment id, one payment",
)

EXERCISES = (q1, q2, q3)
"""The exercises of lesson 01, in order."""
