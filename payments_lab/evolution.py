"""Changing a workflow that already has histories: a breaking change, and the same change patched.

Lesson 7 adds a fraud screen before the charge. Added plainly, histories recorded before
the change no longer replay: the new code schedules an activity where the history says a
charge was scheduled, and Temporal stops with a non-determinism error. Added behind
``workflow.patched``, old histories replay (the patch is absent from them, so the screen
is skipped) and new payments are screened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from payments_lab.client import quiet_runtime
from payments_lab.converter import DATA_CONVERTER
from payments_lab.domain import PaymentRequest, PaymentResult
from payments_lab.errors import InvalidArgumentError
from payments_lab.messages import PaymentInput
from payments_lab.workflows import PaymentWorkflow

FRAUD_SCREEN_PATCH = "fraud-screen"
"""Name of the patch that guards the fraud screen."""


@activity.defn(name="screen_for_fraud")
async def screen_for_fraud(request: PaymentRequest) -> bool:
    """Return whether ``request`` looks safe; the lab's screen only distrusts round millions."""
    return request.amount < 1_000_000


async def _screen(request: PaymentRequest) -> None:
    safe = await workflow.execute_activity(screen_for_fraud, request, start_to_close_timeout=timedelta(seconds=10))
    if not safe:
        raise ApplicationError(f"payment {request.payment_id} was stopped by the fraud screen", type="FraudSuspected")


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflowWithFraudScreen(PaymentWorkflow):
    """The payment workflow with a fraud screen added before the charge, unsafely."""

    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        """Run the payment."""
        return await super().run(input)

    async def before_charge(self, request: PaymentRequest) -> None:
        """Screen every payment: histories recorded before this change no longer replay."""
        await _screen(request)


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflowWithPatchedFraudScreen(PaymentWorkflow):
    """The same fraud screen, behind ``workflow.patched``: old histories still replay."""

    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        """Run the payment."""
        return await super().run(input)

    async def before_charge(self, request: PaymentRequest) -> None:
        """Screen payments that started after the patch; replaying older ones skips it."""
        if workflow.patched(FRAUD_SCREEN_PATCH):
            await _screen(request)


@dataclass(frozen=True)
class ReplayOutcome:
    """What replaying one history with some workflow code gave."""

    workflow_id: str
    """The workflow whose history was replayed."""
    ok: bool
    """Whether the code reproduced the history."""
    error: str | None
    """The first line of the failure, when it did not."""


async def replay(
    histories: WorkflowHistory | str | os.PathLike[str] | Iterable[WorkflowHistory | str | os.PathLike[str]], workflow_class: type
) -> list[ReplayOutcome]:
    """Replay each history with ``workflow_class``, as a new worker version would on restart.

    Args:
        histories: One history or many, or the files :func:`payments_lab.history.save_histories` wrote.
        workflow_class: The workflow class to replay them with (decorated with ``@workflow.defn``).

    Raises:
        ValueError: ``workflow_class`` is not a workflow class, or a history is neither a
            history nor the file of one.
    """
    if not isinstance(workflow_class, type) or not hasattr(workflow_class, "__temporal_workflow_definition"):
        raise InvalidArgumentError(
            f"workflow_class must be a workflow class such as PaymentWorkflow (the class itself, decorated with "
            f"@workflow.defn), not {type(workflow_class).__name__} {workflow_class!r}"
        )
    # Imported here, not at the top: this module's workflows run in Temporal's sandbox, which
    # imports the module again for every run, and the history tools bring pandas.
    from payments_lab.history import as_histories, load_history

    items = [histories] if isinstance(histories, (WorkflowHistory, str, os.PathLike)) else list(histories)
    loaded = as_histories([load_history(Path(item)) if isinstance(item, (str, os.PathLike)) else item for item in items])
    replayer = Replayer(workflows=[workflow_class], data_converter=DATA_CONVERTER, runtime=quiet_runtime())
    outcomes = []
    for history in loaded:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        failure = result.replay_failure
        outcomes.append(ReplayOutcome(history.workflow_id, failure is None, _readable(failure) if failure else None))
    return outcomes


def _readable(failure: Exception) -> str:
    """The failure's own message: the core wraps it in a debug dump of its structures."""
    text = str(failure)
    inner = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
    return inner.group(1) if inner else text.strip().splitlines()[0]
