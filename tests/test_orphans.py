"""Tests of payments left running by a kernel that ended: the next lab on the shared server finishes them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from conftest import new_id, published_session
from payments_lab import workflow_tasks
from payments_lab.domain import PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import open_lab
from payments_lab.orphans import Orphans, still_orphaned
from payments_lab.server import EmbeddedServer
from payments_lab.task_queues import ended_here
from payments_lab.workflow_tasks import WorkflowTaskFailingError

KERNEL = """
import asyncio
from datetime import timedelta
from payments_lab import FaultPlan, PaymentOptions, StepFaults, open_lab

async def main():
    lab = await open_lab("kernel", options=PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=2)))
    handle = await lab.start(lab.request("33.00"), faults=FaultPlan(charge=StepFaults(delay=3)), show_link=False)
    await lab.wait_until_charged(handle.payment_id)
    print(handle.payment_id, lab.task_queue, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def killed_kernel(program: str, folder: Path) -> tuple[str, str]:
    """Run ``program`` as a kernel would, read the payment id and task queue it prints, then kill it (SIGKILL)."""
    script = folder / "kernel.py"
    script.write_text(program, encoding="utf-8")
    kernel = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert kernel.stdout is not None
        payment_id, queue = (await asyncio.wait_for(asyncio.to_thread(kernel.stdout.readline), 90)).split()
    finally:
        kernel.kill()
        kernel.wait()
    return payment_id, queue


def test_an_identity_names_a_process_that_ended_here_only_when_it_did() -> None:
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    assert ended_here(f"{dead.pid}@{host}")
    assert not ended_here(f"{os.getpid()}@{host}"), "alive"
    assert not ended_here(f"{dead.pid}@another-machine"), "a process elsewhere cannot be checked: never taken"
    assert not ended_here("my-worker")


async def test_a_payment_left_running_by_a_kernel_killed_mid_charge_is_finished_by_the_next_lab_charged_once(
    dev_server: EmbeddedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with published_session(dev_server):
        payment_id, queue = await killed_kernel(KERNEL, tmp_path)  # Kernel > Restart, mid-charge
        lab = await open_lab(f"after-{new_id()}")
    try:
        assert [worker.task_queue for worker in lab.adopted] == [queue]
        said = capsys.readouterr().out
        assert f"finishes 1 payment left running by a kernel that ended (task queue {queue}: payment-{payment_id})" in said
        # Lesson 05's "what is still running?" asks the lab's service: it said [] while the taken-over payment ran on.
        assert payment_id in [report.payment_id for report in await lab.service.search()]
        result = await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED
        assert lab.repository.ledger_summary(payment_id).charges == 1
        charges = [a for a in lab.repository.attempts(payment_id) if a.activity == "charge_payment"]
        assert len(charges) == 2 and charges[-1].worker == lab.activities.identity  # type: ignore[union-attr]
    finally:
        await lab.close()
    assert all(not worker.running for worker in lab.adopted)


V2 = '''from __future__ import annotations
from temporalio import workflow
from payments_lab.workflows import PaymentInput, PaymentResult, PaymentWorkflow

@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflowV2(PaymentWorkflow):
    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        await workflow.sleep(0.1)  # a command the kit's code does not give
        return await super().run(input)

    def notification_message(self, request, charge):
        receipt = {"charge_id": charge.charge_id}
        return f"charged, receipt {receipt['receipt_id']}"
'''
FIXED_V2 = V2.replace("receipt['receipt_id']", "receipt['charge_id']")

KERNEL_WITH_CELL_CODE = f"""
import asyncio
from datetime import timedelta
from payments_lab import open_lab
from payments_lab.workflow_tasks import wait_for_task_failure

async def main():
    lab = await open_lab("kernel")
    await lab.load_module("payment_v2", {V2!r})
    handle = await lab.start(lab.request("42.00"), task_timeout=timedelta(seconds=2), show_link=False)
    await wait_for_task_failure(handle.workflow, timeout=30)
    print(handle.payment_id, lab.task_queue, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_a_payment_left_failing_with_code_written_in_a_cell_waits_for_code_that_replays_it_then_completes(
    dev_server: EmbeddedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lesson 09 in a kernel that died: the next lab used to take the payment over with the kit's code, which
    cannot replay its history, and the payment failed its task for ever, the fix loaded later never reaching it."""
    with published_session(dev_server):
        payment_id, queue = await killed_kernel(KERNEL_WITH_CELL_CODE, tmp_path)
        lab = await open_lab(f"after-{new_id()}")
    try:
        assert lab.adopted == [] and [found.task_queue for found in lab.stranded] == [queue]
        said = capsys.readouterr().out
        assert f"1 payment left running by a kernel that ended ran workflow code this lab does not have (task queue {queue}" in said
        assert "`await lab.load_module(name, source)`" in said
        # Awaited meanwhile, it says that nothing polls its queue (the dead kernel's poller is still listed).
        told: list[str] = []
        monkeypatch.setattr(workflow_tasks, "WAITING_SAID_AFTER", 0)
        handle = lab.service.handle(payment_id)
        waiting = asyncio.ensure_future(workflow_tasks.until_task_fails(handle.workflow, every=0.1, say=told.append, client=lab.client))
        for _ in range(100):
            if told:
                break
            await asyncio.sleep(0.1)
        waiting.cancel()
        assert told and f"no worker polls its task queue {queue!r}: nothing runs it until one does" in told[0]
        without_timer = FIXED_V2.replace("        await workflow.sleep(0.1)  # a command the kit's code does not give\n", "")
        await lab.load_module("payment_v3", without_timer)  # not the commands that kernel gave
        assert lab.adopted == [] and len(lab.stranded) == 1
        assert "Not with payment_v3: 1 payment left running by a kernel that ended" in capsys.readouterr().out
        await lab.load_module("payment_v2", V2)  # the code that kernel ran, bug included: it replays the history
        assert [worker.task_queue for worker in lab.adopted] == [queue] and lab.stranded == []
        assert "With payment_v2: This lab's worker also finishes 1 payment" in capsys.readouterr().out
        taken = Orphans(queue, (f"payment-{payment_id}",))
        for _ in range(50):  # once the server has seen the new worker poll
            if not await still_orphaned(lab.client, lab.repository, taken):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("polled now by this lab's worker: another lab must leave it alone")
        with pytest.raises(WorkflowTaskFailingError, match="KeyError"):
            await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        await lab.load_module("payment_v2", FIXED_V2)  # the fix reaches it, as it reaches the lab's own payments
        result = await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED
        history = await lab.service.handle(payment_id).workflow.fetch_history()
        (notified,) = [e.activity_task_scheduled_event_attributes for e in history.events
                       if e.activity_task_scheduled_event_attributes.activity_type.name == "send_notification"]
        assert b"charged, receipt ch_" in notified.input.payloads[0].data, "sent by the fixed code"
        assert lab.repository.ledger_summary(payment_id).charges == 1
    finally:
        await lab.close()


KERNEL_WITH_SIDE_WORKER = """
import asyncio
from payments_lab import FaultPlan, StepFaults, open_lab
from payments_lab.evolution import PaymentWorkflowWithPatchedFraudScreen, screen_for_fraud
from payments_lab.service import PaymentService

async def main():
    lab = await open_lab("kernel")
    v2 = await lab.side_worker("v2", workflows=[PaymentWorkflowWithPatchedFraudScreen], extra_activities=[screen_for_fraud])
    handle = await PaymentService(lab.client, v2.task_queue).start(lab.request("21.00"), faults=FaultPlan(charge=StepFaults(delay=3)))
    await lab.wait_until_charged(handle.payment_id)
    print(handle.payment_id, v2.task_queue, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_a_payment_left_on_a_side_queue_by_a_kernel_that_ended_is_finished_when_the_side_worker_runs_again(
    dev_server: EmbeddedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lesson 07's v2 queue: nothing polled it after a kernel restart, and the payment stayed running, its money taken."""
    from payments_lab.evolution import PaymentWorkflowWithPatchedFraudScreen, screen_for_fraud

    with published_session(dev_server):
        payment_id, queue = await killed_kernel(KERNEL_WITH_SIDE_WORKER, tmp_path)
        lab = await open_lab(f"after-{new_id()}")
    try:
        assert lab.adopted == [] and [found.task_queue for found in lab.stranded] == [queue], "the kit's code cannot replay it"
        assert "or run the cell that started its side worker" in capsys.readouterr().out
        # Awaited meanwhile, its charge (started, or retried after its worker died) is said to have no worker.
        await lab.service.handle(payment_id)._say_what_a_long_wait_waits_for(after=0)
        assert f"is waiting for its charge step, and no worker polls its task queue {queue!r}" in capsys.readouterr().err
        await lab.side_worker("v2", workflows=[PaymentWorkflowWithPatchedFraudScreen], extra_activities=[screen_for_fraud])
        assert [worker.task_queue for worker in lab.adopted] == [queue] and lab.stranded == []
        assert "With side worker 'v2': This lab's worker also finishes 1 payment" in capsys.readouterr().out
        result = await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED and lab.repository.ledger_summary(payment_id).charges == 1
    finally:
        await lab.close()
    assert all(not worker.running for worker in lab.adopted)


async def test_a_lab_closed_while_its_payment_runs_says_so_and_the_lab_opened_again_finishes_it(
    dev_server: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lesson 04's last cell run early: the payment used to stay running, money taken, the server listing this live kernel as its poller."""
    name = f"closer-{new_id()}"
    with published_session(dev_server):
        lab = await open_lab(name)
        handle = await lab.start(lab.request("8.00"), faults=FaultPlan(charge=StepFaults(delay=3)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)
        queue = lab.task_queue
        await lab.close()
        said = capsys.readouterr().out
        assert f"1 payment of this lab still run on the server ({handle.workflow_id}), with no worker now" in said
        assert f"`lab = await open_lab({name!r})` in this kernel finishes them" in said
        other = await open_lab(f"other-{new_id()}")  # another lab of this kernel leaves it alone
        again = await open_lab(name)
    try:
        assert queue not in [worker.task_queue for worker in other.adopted]
        assert queue in [worker.task_queue for worker in again.adopted]
        result = await asyncio.wait_for(again.service.handle(handle.payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED and again.repository.ledger_summary(handle.payment_id).charges == 1
    finally:
        await again.close()
        await other.close()


KERNEL_WAITING_FOR_ITS_CUSTOMER = """
import asyncio
from payments_lab import open_lab
from payments_lab.checkout import Checkout

async def main():
    lab = await open_lab("kernel")
    checkout = Checkout(lab.service)
    request = lab.request("30.00")
    await checkout.start(request)
    await checkout.wait_until_waiting(request.payment_id)
    print(request.payment_id, lab.task_queue, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_the_first_answer_to_a_payment_taken_over_from_an_ended_kernel_is_heard_at_once(
    dev_server: EmbeddedServer, tmp_path: Path
) -> None:
    """Off the script (lesson 11 after a kernel restart): the confirmation's workflow task went to the ended kernel's
    sticky queue and waited its 10 s there, so `confirm` said no worker took it (4 runs of 4), though one did."""
    from payments_lab.checkout import Checkout

    with published_session(dev_server):
        payment_id, queue = await killed_kernel(KERNEL_WAITING_FOR_ITS_CUSTOMER, tmp_path)
        lab = await open_lab(f"after-{new_id()}")
    try:
        assert [worker.task_queue for worker in lab.adopted] == [queue]
        checkout = Checkout(lab.service)
        checkout.service.call_window = timedelta(seconds=5)  # under the sticky queue's 10 s: heard at once, or not at all
        receipt = await checkout.confirm(payment_id)
        assert receipt.approved
        result = await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED and lab.repository.ledger_summary(payment_id).charges == 1
    finally:
        await lab.close()
