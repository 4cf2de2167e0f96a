"""Tests of workflow evolution: an unpatched change breaks replay, a patched one does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from conftest import FAST, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.evolution import (
    PaymentWorkflowWithFraudScreen,
    PaymentWorkflowWithPatchedFraudScreen,
    replay,
    screen_for_fraud,
)
from payments_lab.history import save_histories
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, create_worker
from payments_lab.workflows import PaymentWorkflow


async def test_patched_changes_replay_and_unpatched_ones_do_not(
    client: Client, task_queue: str, activities: PaymentActivities, tmp_path: Path
) -> None:
    service = PaymentService(client, task_queue, options=FAST)
    async with BackgroundWorker(client, task_queue, activities):
        handles = [await service.start(PaymentRequest(new_id(), "org-acme", "u", amount, "EUR")) for amount in ("5", "-1")]
        for handle in handles:
            await handle.result()
        histories = [await h.workflow.fetch_history() for h in handles]

    assert all(o.ok for o in await replay(histories, PaymentWorkflow))
    broken = await replay(histories, PaymentWorkflowWithFraudScreen)
    assert [o.ok for o in broken] == [False, True], "the declined payment never reached the changed code"
    assert broken[0].error is not None and broken[0].error.startswith("[TMPRL1100] Nondeterminism error")
    assert "charge_payment" in broken[0].error and "screen_for_fraud" in broken[0].error
    assert all(o.ok for o in await replay(histories, PaymentWorkflowWithPatchedFraudScreen))
    # One history, or the files save_histories wrote, replay as well; a class's name is refused in one line.
    assert [o.ok for o in await replay(histories[0], PaymentWorkflow)] == [True]
    files = save_histories(histories, tmp_path)
    assert [o.ok for o in await replay(files, PaymentWorkflowWithFraudScreen)] == [False, True]
    assert [o.ok for o in await replay(str(files[1]), PaymentWorkflow)] == [True]
    with pytest.raises(ValueError, match="workflow_class must be a workflow class such as PaymentWorkflow .* not str 'PaymentWorkflow'"):
        await replay(histories, "PaymentWorkflow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nope.json is not a file: save_histories"):
        await replay([tmp_path / "nope.json"], PaymentWorkflow)


async def test_new_payments_run_the_patched_screen(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    worker = create_worker(
        client, task_queue, activities, workflows=[PaymentWorkflowWithPatchedFraudScreen], extra_activities=[screen_for_fraud]
    )
    async with worker:
        service = PaymentService(client, task_queue, options=FAST)
        handle = await service.start(PaymentRequest(new_id(), "org-acme", "u", "12", "EUR"))
        result = await handle.result()
        history = await handle.workflow.fetch_history()
    assert result.status is PaymentStatus.COMPLETED
    types = [EventType.Name(e.event_type) for e in history.events]
    assert "EVENT_TYPE_MARKER_RECORDED" in types
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == ["validate_payment", "screen_for_fraud", "charge_payment", "send_notification"]
