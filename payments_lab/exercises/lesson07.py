"""Exercises of lesson 07 · determinism and replay: ship a change that old histories survive, and a rollback."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHistory
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from payments_lab.activities import PaymentActivities
from payments_lab.evolution import PaymentWorkflowWithPatchedFraudScreen, replay, screen_for_fraud
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    await_result,
    events_of,
    fresh_request,
    required_lab,
    run_payments,
    scheduled_activities,
    service_of,
    short_repr,
    truth_answer,
)
from payments_lab.faults import FaultPlan
from payments_lab.lab import Lab
from payments_lab.worker import create_worker
from payments_lab.workflows import PaymentWorkflow

SCREEN = "screen_for_fraud"


async def _run_on_new_version(lab: Lab, workflow_class: type) -> WorkflowHistory:
    """Run one payment on a worker that runs ``workflow_class`` (a new deployment) and return its history."""
    task_queue = f"{lab.task_queue}-v2-{uuid.uuid4().hex[:4]}"
    activities = lab.activities or PaymentActivities(lab.repository)
    worker = create_worker(lab.client, task_queue, activities, workflows=[workflow_class], extra_activities=[screen_for_fraud])
    async with worker:
        handle = await service_of(lab, task_queue).start(fresh_request(lab, amount="30.00"))
        await await_result(handle, 5.0)
        return await handle.workflow.fetch_history()


def _expect_workflow_class(answer: object) -> type:
    # ``@workflow.defn`` leaves its definition on the class under this name.
    if not isinstance(answer, type) or not hasattr(answer, "__temporal_workflow_definition"):
        raise Mismatch(
            "The answer should be a workflow class.",
            expected="one of the classes of `payments_lab.evolution`, or `PaymentWorkflow`",
            seen=f"{type(answer).__name__} {short_repr(answer)}",
            where_to_look="`from payments_lab.evolution import ...`; pass the class itself, not an instance",
        )
    try:
        # What a worker and a replayer do to a workflow class first: run it in a fresh sandbox.
        SandboxedWorkflowRunner().prepare_workflow(getattr(answer, "__temporal_workflow_definition"))
    except Exception as error:  # noqa: BLE001 - whatever the sandbox refused, say it in the feedback
        cause = error.__cause__ or error
        raise Mismatch(
            "Temporal's sandbox refused this workflow class: no worker could run it.",
            expected="a class whose module imports and runs in the sandbox, as `payments_lab.evolution`'s do",
            seen=f"{type(cause).__name__}: {_first_line(str(cause))}",
            where_to_look="the module that defines the class: no I/O, clock or randomness at import (`tempfile`, "
            "`datetime.now()`…); write it in a module of its own, or with `lab.load_module` (lesson 09)",
        ) from None
    return answer


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


async def _check_safe_change(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    workflow_class = _expect_workflow_class(answer)
    runs = await run_payments(lab, [{}, {"faults": FaultPlan.failing(charge=1)}])
    outcomes = await replay([run.history for run in runs], workflow_class)
    broken = [o for o in outcomes if not o.ok]
    if broken:
        raise Mismatch(
            "Histories recorded before the change no longer replay with this version.",
            expected="every history recorded by today's code replays",
            seen=f"{len(broken)} of {len(outcomes)} failed: {_first_line(broken[0].error)}",
            where_to_look="an activity inserted before the charge changes the commands of payments already past "
            "that point; `workflow.patched(...)` lets them keep the old path",
        )
    history = await _run_on_new_version(lab, workflow_class)
    activities = scheduled_activities(history)
    markers = [e for e in events_of(history) if e.name == "MarkerRecorded"]
    if SCREEN not in activities:
        raise Mismatch(
            "Old histories replay, but new payments are not screened for fraud.",
            expected=f"`{SCREEN}` scheduled before `charge_payment` in a new payment's history",
            seen=f"activities {', '.join(activities)}",
            where_to_look="the new version must screen new payments: the screen guarded by `workflow.patched(...)`",
        )
    return Verdict(
        "Old histories replay, and new payments are screened.",
        (
            f"replay of {len(outcomes)} histories recorded by today's code: all reproduced",
            f"a new payment on a worker running `{workflow_class.__name__}`: "
            f"{'a patch marker, then ' if markers else ''}activities {', '.join(activities)}",
        ),
    )


q1 = Exercise(
    lesson=7,
    number=1,
    title="Ship the fraud screen safely",
    task="The fraud screen must go live while payments recorded by today's code (`PaymentWorkflow`) may still be "
    "replayed. Which workflow class should the new deployment's workers run?",
    answer="a workflow class",
    checker=_check_safe_change,
    hints=(
        "Two versions of the change are in `payments_lab.evolution`; one of them asks `workflow.patched(...)`.",
        "Without the patch, a history recorded before the change has `charge_payment` where the new code "
        "schedules `screen_for_fraud`.",
    ),
    explanation="`PaymentWorkflowWithPatchedFraudScreen` screens only when `workflow.patched('fraud-screen')` "
    "is true: replaying a history without the patch's marker skips the screen, and a new run records the "
    "marker and screens.",
    solution="""from payments_lab.evolution import PaymentWorkflowWithPatchedFraudScreen

new_version = PaymentWorkflowWithPatchedFraudScreen""",
    answer_name="new_version",
    section="The same change, patched",
)


async def _check_rollback(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    answer = truth_answer(answer, "False")
    history = await _run_on_new_version(lab, PaymentWorkflowWithPatchedFraudScreen)
    (outcome,) = await replay([history], PaymentWorkflow)
    activities = scheduled_activities(history)
    if answer != outcome.ok:
        raise Mismatch(
            f"You said {answer}; the replay {'succeeded' if outcome.ok else 'failed'}.",
            expected=f"{outcome.ok}: {_first_line(outcome.error) if outcome.error else 'it replays'}",
            seen=str(answer),
            where_to_look=f"the new payment's history holds the patch marker and schedules {', '.join(activities)}; "
            f"the old code never asks for the patch nor for `{SCREEN}`. A rollback is a code change too",
        )
    return Verdict(
        "Right: a payment screened by the new version cannot be replayed by the old code.",
        (
            f"history of a payment run by the patched version: a patch marker, then {', '.join(activities)}",
            f"replay with `PaymentWorkflow`: {_first_line(outcome.error) if outcome.error else 'it replays'}",
        ),
    )


q2 = Exercise(
    lesson=7,
    number=2,
    title="Can you roll back?",
    task="A payment ran on the patched version (`PaymentWorkflowWithPatchedFraudScreen`). The deployment is then "
    "rolled back to `PaymentWorkflow`. Does that payment's history replay on the old code? Answer `True` or `False`.",
    answer="`True` or `False`",
    checker=_check_rollback,
    hints=(
        "What did the new version record in that payment's history that the old code never does?",
        "The patched version recorded a `MarkerRecorded` event for the patch `fraud-screen`, and then a "
        "`screen_for_fraud` activity. Does `PaymentWorkflow` ever ask for either?",
    ),
    explanation="False. The history holds the `fraud-screen` patch marker and a `screen_for_fraud` activity, "
    "which the old code never asks for: replay stops at the marker with a non-determinism error. Rolling back "
    "is a code change too: while payments recorded by the new version may replay, the code must still "
    "understand their patches.",
    solution="replays_on_old_code = False",
    answer_name="replays_on_old_code",
    section="The same change, patched",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 07, in order."""
