"""Exercises of lesson 09 · fixing workflow code: find the failing line from the history, fix forward charged once."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import WorkflowHistory

from payments_lab.activities import PaymentActivities
from payments_lab.authoring import WorkflowModuleError, WorkflowModules, deploy
from payments_lab.domain import ActivityType, PaymentRequest, PaymentResult, PaymentStatus
from payments_lab.evolution import replay
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    await_result,
    call_learner,
    expect_function,
    expect_type,
    fresh_request,
    plural,
    required_lab,
    scheduled_activities,
    service_of,
    whole_number_answer,
)
from payments_lab.lab import Lab
from payments_lab.service import PaymentHandle
from payments_lab.wording import sandbox_refusal_words
from payments_lab.worker import BackgroundWorker
from payments_lab.workflow_tasks import DEADLOCK_CODE, TaskFailure, WorkerLog, wait_for_task_failure

VERSION_2_HEAD = '''from __future__ import annotations
from temporalio import workflow
from payments_lab.workflows import PaymentInput, PaymentResult, PaymentWorkflow


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflowV2(PaymentWorkflow):
    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        return await super().run(input)

'''
"""Version 2 of the payment workflow up to its notification message, which is all its versions change."""

BUGGY_SOURCE = VERSION_2_HEAD + '''    def notification_message(self, request, charge):
        receipt = {"charge_id": charge.charge_id, "amount": request.amount}
        return f"{receipt['amount']} {request.currency} charged, receipt {receipt['receipt_id']}"
'''
"""Version 2 of the payment workflow, as lesson 09 wrote it: a KeyError on line 14, after the charge."""

BUGGY_LINE = 14
"""The line of :data:`BUGGY_SOURCE` that raises."""

MODULE = "payment_v2"
"""The module name the checks load the versions under."""

TASK_TIMEOUT = timedelta(seconds=1)
"""Workflow task timeout of the checks' payments: a fixed worker gets the next attempt within a second."""

FIX_DEADLINE = 8.0
"""Seconds a fixed payment has to complete."""


@dataclass
class _Stuck:
    """A payment stuck on a bug, on a worker and task queue of a check's own."""

    worker: BackgroundWorker
    modules: WorkflowModules
    request: PaymentRequest
    handle: PaymentHandle
    failure: TaskFailure
    history: WorkflowHistory
    log: WorkerLog


@asynccontextmanager
async def _stuck_payment(lab: Lab, source: str = BUGGY_SOURCE) -> AsyncIterator[_Stuck]:
    """Run a payment on a worker running ``source`` until its workflow task fails; clean up after."""
    task_queue = f"{lab.task_queue}-l09-{uuid.uuid4().hex[:4]}"
    worker = await BackgroundWorker(lab.client, task_queue, lab.activities or PaymentActivities(lab.repository)).start()
    modules = WorkflowModules()
    log = WorkerLog().start()  # the failures are the point: keep them out of the notebook's cells
    handle: PaymentHandle | None = None
    try:
        await deploy(worker, modules, MODULE, source)
        request = fresh_request(lab, amount="42.00")
        handle = await service_of(lab, task_queue).start(request, task_timeout=TASK_TIMEOUT)
        failure = await wait_for_task_failure(handle.workflow)
        yield _Stuck(worker, modules, request, handle, failure, await handle.history(), log)
    finally:
        if handle is not None:
            await await_result(handle, 0, terminate=True, settle_in=lab.repository)  # ends it if still running; nothing is left failing
        await worker.stop()
        modules.close()
        log.stop()


def _with_lines_before_the_bug(extra: int) -> str:
    """The buggy version with ``extra`` comment lines inserted, so that it raises on another line."""
    comments = "".join(f"    # receipts, step {n}\n" for n in range(1, extra + 1))
    return VERSION_2_HEAD + comments + BUGGY_SOURCE.removeprefix(VERSION_2_HEAD)


async def _check_failing_line(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    function = expect_function(answer, "a function `(history)` that returns a line number", 1)
    seen_lines = []
    for extra in (0, 3):
        async with _stuck_payment(lab, _with_lines_before_the_bug(extra)) as stuck:
            line = await call_learner(function, stuck.history, what="function")
        expected = BUGGY_LINE + extra
        where = stuck.failure.where
        line = whole_number_answer(
            line,
            "Your function should return the line number, an int.",
            expected=f"{expected}",
            where_to_look="`int(...)` of the number after `line ` in the stack trace",
        )
        if line != expected:
            frames = stuck.failure.frames
            first = frames[0] if frames else None
            hint = (
                "that is the first frame, in temporalio's own code: a stack trace lists the outermost call first, "
                "read its last frame"
                if first is not None and line == first.line
                else "the line must come from the `WorkflowTaskFailed` event's `failure.stack_trace`"
            )
            raise Mismatch(
                f"The workflow raised on line {expected} of its module, not on line {line}.",
                expected=f"{expected}: `{where}`" if where else str(expected),
                seen=f"{line}; {hint}",
                where_to_look="`event.workflow_task_failed_event_attributes.failure.stack_trace`, its last "
                "`File \"…\", line N` (lesson 09 printed `failure.frames[-3:]`)",
            )
        seen_lines.append(line)
    return Verdict(
        "Right: the last frame of the failed workflow task's stack trace is the line that raised.",
        (
            f"two versions with the bug on lines {seen_lines[0]} and {seen_lines[1]}: your function found both from "
            "the history alone",
            f"the event: `WorkflowTaskFailed`, cause '{stuck.failure.cause}', `{stuck.failure.error_type}: "
            f"{stuck.failure.message}`",
        ),
    )


q1 = Exercise(
    lesson=9,
    number=1,
    title="Find the failing line from the history alone",
    task="A payment is stuck: its workflow code raises after the charge. Write `failing_line(history)`, which "
    "returns the line number (an `int`) of the workflow code that raised, read from the history only "
    "(`history.events`).",
    answer="a function of `history` that returns an int",
    checker=_check_failing_line,
    hints=(
        "Find the event whose `workflow_task_failed_event_attributes` is set: "
        "`event.HasField('workflow_task_failed_event_attributes')`.",
        "Its `failure.stack_trace` is text with one `File \"…\", line N, in f` per frame, the outermost first: "
        "`re.findall(r'line (\\d+)', trace)[-1]`.",
    ),
    explanation="The `WorkflowTaskFailed` event carries the failure the worker sent, with its stack trace. A Python "
    "stack trace lists the outermost call first, so the line that raised is the last frame's: here the "
    "`notification_message` line of the module.",
    solution="""import re


def failing_line(history):
    failed = next(e for e in history.events if e.HasField("workflow_task_failed_event_attributes"))
    trace = failed.workflow_task_failed_event_attributes.failure.stack_trace
    return int(re.findall(r"line (\\d+)", trace)[-1])""",
    answer_name="failing_line",
    section="What you can see while it waits",
)


def _notification_input(history: WorkflowHistory) -> bytes:
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == ActivityType.NOTIFY and attributes.input.payloads:
                return attributes.input.payloads[0].data
    return b""


async def _check_fix_forward(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, str, "BUGGY_SOURCE.replace(...)")
    assert isinstance(answer, str)
    async with _stuck_payment(lab) as stuck:
        try:
            candidate = await deploy(None, stuck.modules, MODULE, answer)
        except (ValueError, WorkflowModuleError) as error:
            raise Mismatch(
                "Your fixed version does not load.",
                expected="a module that loads: one `@workflow.defn(name=\"PaymentWorkflow\")` class",
                seen=str(error),
                where_to_look="the message says which line",
            ) from None
        cls = candidate.workflows.get("PaymentWorkflow")
        if cls is None:
            raise Mismatch(
                "Your version defines no `PaymentWorkflow`: the stuck payment would wait for ever.",
                expected="a class decorated `@workflow.defn(name=\"PaymentWorkflow\")`",
                seen=f"workflows {', '.join(candidate.workflows) or 'none'}",
                where_to_look="keep the decorator of `BUGGY_SOURCE`",
            )
        (outcome,) = await replay([stuck.history], cls)
        if not outcome.ok:
            nondeterministic = "Nondeterminism" in (outcome.error or "")
            raise Mismatch(
                "Your fix does not replay the stuck payment's history: deployed, it would leave the payment stuck"
                + (", with a non-determinism error." if nondeterministic else "."),
                expected="the history replays: the code issues the commands it recorded (validate, then charge), "
                "then gets past the notification line",
                seen=outcome.error or "replay failed",
                where_to_look="change only the line that raised; a change to what already ran needs `workflow.patched`"
                if nondeterministic
                else "the line the stack trace names: which key does `receipt` have?",
            )
        await deploy(stuck.worker, stuck.modules, MODULE, answer)
        # Counted once the old worker has stopped: what is logged from now on comes from the new one.
        logged = len(stuck.log.failures)
        result, still_failing = await _outcome(stuck, logged)
        history = await stuck.handle.history()
        charges = lab.repository.charge_count(stuck.request.payment_id)
    activities = scheduled_activities(history)
    if result is None or result.status is not PaymentStatus.COMPLETED:
        raise Mismatch(
            "The payment did not complete with your fix: its workflow task still fails.",
            expected=f"status completed within {FIX_DEADLINE:g} s",
            seen=(
                f"the restarted worker logged `{still_failing}` (the history records only the first failure)"
                if still_failing
                else f"status {result.status.value if result else 'still running (the check terminated it)'}"
            ),
            where_to_look=_where_to_look(still_failing),
        )
    if charges != 1 or activities.count(ActivityType.CHARGE) != 1:
        raise Mismatch(
            "The payment completed, but it was charged more than once.",
            expected="one charge in the ledger, `charge_payment` scheduled once",
            seen=f"{plural(charges, 'charge')}; activities {', '.join(activities)}",
            where_to_look="fix the running workflow; never start the payment again",
        )
    if result.charge_id is None or result.charge_id.encode() not in _notification_input(history):
        raise Mismatch(
            "The payment completed, but the notification carries no receipt: that is a rollback, not a fix.",
            expected="the charge id in the notification's message, as version 2 intended",
            seen="a notification without the charge id",
            where_to_look="keep version 2's receipt and correct the key it looks up",
        )
    return Verdict(
        "Fixed forward: the stuck payment completed with your code, charged once, its receipt in the notification.",
        (
            "replay of the stuck history with your version: it reproduces it",
            "after the worker restarted with it: the same run completed; `WorkflowTaskFailed` stays in its history",
            f"ledger: {plural(charges, 'charge')}; activities scheduled {', '.join(activities)}",
        ),
    )


def _where_to_look(still_failing: str | None) -> str:
    """Where to look for what made the fixed version fail its task again."""
    if still_failing and DEADLOCK_CODE in still_failing:
        return "your code does not return: a loop that never ends, or a blocking call (the worker gives up after 2 s)"
    if still_failing and "RestrictedWorkflowAccessError" in still_failing:
        refused = re.search(r"the sandbox refused `([^`]*)`", still_failing)
        return sandbox_refusal_words(refused.group(1) if refused else "a call")
    return "the line the stack trace names: which key does `receipt` have?"


async def _outcome(stuck: _Stuck, logged: int) -> tuple[PaymentResult | None, str | None]:
    """The payment's result once it ends, or the failure the worker logged again after the fix."""
    deadline = time.monotonic() + FIX_DEADLINE
    while time.monotonic() < deadline:
        if (await stuck.handle.status()).workflow_status != "running":
            return await await_result(stuck.handle, FIX_DEADLINE), None
        # Another check may run at the same moment (a script's gather): its stuck payment logs
        # into every open log, so read only this payment's failures.
        ids = {stuck.handle.workflow_id, stuck.handle.workflow.result_run_id}
        again = [failure for failure in stuck.log.failures[logged:] if failure[0] in ids]
        if again:
            # The first is the cause: what follows can be its consequence (code that did not return is
            # evicted next, and that eviction fails too: "Eviction processed, but 1 tasks remain").
            return None, again[0][1]
        await asyncio.sleep(0.05)
    return None, None


q2 = Exercise(
    lesson=9,
    number=2,
    title="Fix forward without a double charge",
    task="`ex.BUGGY_SOURCE` is version 2 of lesson 09: its receipt lookup raises after the charge. Write the fixed "
    "source (a `str`). The check runs a payment on the buggy version until it is stuck, replays its history with "
    "your version, restarts the worker with it, and expects the same payment to complete, charged once, with the "
    "receipt in its notification.",
    answer="the module's source, a `str`",
    checker=_check_fix_forward,
    hints=(
        "Start from `ex.BUGGY_SOURCE`: `print(ex.BUGGY_SOURCE)`. Which key does `receipt` have?",
        "Change only the line that raised: `ex.BUGGY_SOURCE.replace(\"receipt['receipt_id']\", \"receipt['charge_id']\")`.",
    ),
    explanation="The fix changes only the line the history never got past, so the history replays: validate and "
    "charge come back from it, not run again, and the new code schedules the notification. Anything that changes "
    "the commands before that point (a timer, an activity) is a non-determinism error, and reverting the receipt "
    "is a rollback.",
    solution="""from payments_lab.exercises.lesson09 import BUGGY_SOURCE

fixed_source = BUGGY_SOURCE.replace("receipt['receipt_id']", "receipt['charge_id']")""",
    answer_name="fixed_source",
    section="Fix forward",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 09, in order."""
