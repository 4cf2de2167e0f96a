"""Tests of workers: the background worker, and a worker process killed mid-charge."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from conftest import FAST, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import NO_FAULTS, FaultPlan, StepFaults
from payments_lab.processes import pid_alive
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, WorkerProcess


async def test_background_worker_starts_and_stops_once(client: Client, task_queue: str, activities: PaymentActivities) -> None:
    worker = BackgroundWorker(client, task_queue, activities)
    assert not worker.running
    await worker.start()
    await worker.start()
    assert worker.running
    result = await PaymentService(client, task_queue, options=FAST).process(PaymentRequest(new_id(), "org-acme", "u", "1", "EUR"))
    assert result.success
    await worker.stop()
    await worker.stop()
    assert not worker.running
    await worker.start()  # Temporal's Worker runs once: this one is built again, with the same code
    again = await PaymentService(client, task_queue, options=FAST).process(PaymentRequest(new_id(), "org-acme", "u", "2", "EUR"))
    assert again.success and worker.running
    await worker.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="killed from outside with SIGKILL")
async def test_a_worker_stopped_before_it_polled_stops_at_once_and_raises_nothing(task_queue: str, activities: PaymentActivities) -> None:
    """Off the script: the lab's server killed from a terminal just after it opened. The worker was still making its
    first call (which temporalio retries for seconds): closing the lab waited 15 s, then raised that call's RuntimeError."""
    server = EmbeddedServer(ui=False).start()
    gone = await Client.connect(server.address)
    os.kill(server.pid or 0, signal.SIGKILL)
    async with asyncio.timeout(10):
        while server.exit_code_on_its_own is None:
            await asyncio.sleep(0.01)
    worker = await BackgroundWorker(gone, task_queue, activities).start()
    stopping = time.monotonic()
    await worker.stop()
    assert time.monotonic() - stopping < 2
    assert not worker.running and worker.ended_with is None


async def test_a_worker_that_failed_by_itself_is_stopped_without_raising_and_says_why(
    client: Client, task_queue: str, activities: PaymentActivities
) -> None:
    elsewhere = Client(client.service_client, namespace=f"no-such-namespace-{new_id()}", data_converter=client.data_converter)
    worker = await BackgroundWorker(elsewhere, task_queue, activities).start()
    async with asyncio.timeout(10):
        while worker.running:
            await asyncio.sleep(0.02)
    await worker.stop()
    assert isinstance(worker.ended_with, RuntimeError) and "Worker validation failed" in str(worker.ended_with)


async def test_a_worker_killed_mid_charge_is_replaced_and_charges_once(
    dev_server: EmbeddedServer, client: Client, task_queue: str, tmp_path: Path
) -> None:
    db_file = tmp_path / "repo.sqlite"
    repository = PaymentRepository(db_file)
    service = PaymentService(client, task_queue, options=FAST)  # 2 s heartbeat timeout
    first = WorkerProcess(dev_server.address, task_queue, db_file).start()
    paid = PaymentRequest(new_id(), "org-acme", "u", "42.00", "EUR")
    handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=3)))
    while not repository.ledger(paid.payment_id):
        await asyncio.sleep(0.05)
    pid = first.pid
    first.kill()  # kill -9 while the processor's answer is on its way
    assert pid is not None and not pid_alive(pid)
    second = WorkerProcess(dev_server.address, task_queue, db_file).start()
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(handle.result(), timeout=60)
        recovery = time.monotonic() - started
    finally:
        await second.stop()
    assert result.status is PaymentStatus.COMPLETED
    assert repository.charge_count(paid.payment_id) == 1
    charges = [a for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"]
    assert [(a.attempt, a.outcome) for a in charges] == [(1, "running"), (2, "completed")]
    assert charges[0].worker != charges[1].worker
    assert recovery < 30


def test_a_worker_process_refuses_a_fault_plan_as_its_profile(tmp_path: Path) -> None:
    # Before, the mistake surfaced only when the process was next started, as an AttributeError.
    with pytest.raises(ValueError, match="got a FaultPlan, the faults of one payment"):
        WorkerProcess("127.0.0.1:7233", "payments", tmp_path / "repo.sqlite", fault_profile=FaultPlan.failing(charge=1))  # type: ignore[arg-type]
    worker = WorkerProcess("127.0.0.1:7233", "payments", tmp_path / "repo.sqlite")
    with pytest.raises(ValueError, match="must be a FaultProfile"):
        worker.fault_profile = 0.5  # type: ignore[assignment]
    assert worker.fault_profile == NO_FAULTS


async def test_a_worker_that_charges_into_another_ledger_is_refused_on_a_queue_by_the_api_too(client: Client, task_queue: str) -> None:
    """Off the script: a script's `BackgroundWorker(..., PaymentActivities(PaymentRepository()))` on the session's queue,
    killed mid-charge: the session's worker retried its charges, 10 of 30 payments charged once in each ledger."""
    from payments_lab.ledger import LedgerMismatchError, ledger_of
    from payments_lab.task_queues import live_pollers

    shared = PaymentRepository()
    first = await BackgroundWorker(client, task_queue, PaymentActivities(shared)).start()
    try:
        while not await live_pollers(client, task_queue):
            await asyncio.sleep(0.1)
        assert {ledger_of(identity) for identity in await live_pollers(client, task_queue)} == {shared.ledger_id}
        elsewhere = BackgroundWorker(client, task_queue, PaymentActivities(PaymentRepository()))
        with pytest.raises(LedgerMismatchError, match=rf"polled by a worker that charges into another ledger \(.*ledger={shared.ledger_id}"):
            await elsewhere.start()
        assert not elsewhere.running
    finally:
        await first.stop()


def test_a_ledger_file_keeps_its_id_for_every_process_and_a_ledger_in_memory_has_its_own(tmp_path: Path) -> None:
    one, again = PaymentRepository(tmp_path / "l.sqlite"), PaymentRepository(tmp_path / "l.sqlite")
    assert one.ledger_id == again.ledger_id and len(one.ledger_id) == 12
    assert PaymentRepository().ledger_id not in (one.ledger_id, PaymentRepository().ledger_id)
    one.close()
    again.close()


async def test_a_worker_paused_past_the_heartbeat_timeout_records_its_late_attempts_as_timed_out(
    dev_server: EmbeddedServer, client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Off the script: the only worker stopped with Ctrl-Z mid-charge, `fg` 30 s later. Temporal timed the charge out
    three times and the payment ended refunded, yet the attempt log, which lessons 01 and 03 read as the record of every
    attempt, said all three charges "completed": the paused worker ran them to the end once resumed."""
    import os
    import signal

    db_file = tmp_path / "repo.sqlite"
    repository = PaymentRepository(db_file)
    service = PaymentService(client, task_queue, options=FAST)  # 2 s heartbeat timeout, 3 attempts
    worker = WorkerProcess(dev_server.address, task_queue, db_file).start()
    paid = PaymentRequest(new_id(), "org-acme", "u", "42.00", "EUR")
    try:
        handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=3)))
        while not repository.ledger(paid.payment_id):
            await asyncio.sleep(0.05)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGSTOP)  # Ctrl-Z, while the processor's answer is on its way
        await asyncio.sleep(9)  # three 2 s heartbeat timeouts and the waits between them
        os.kill(worker.pid, signal.SIGCONT)
        result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        await worker.stop()
    assert result.status is PaymentStatus.REFUNDED and repository.charge_count(paid.payment_id) == 1
    charges = [a for a in repository.attempts(paid.payment_id) if a.activity == "charge_payment"]
    assert charges and all(a.outcome == "timed out" for a in charges), [(a.attempt, a.outcome, a.error) for a in charges]
    assert "paused past its heartbeat timeout" in (charges[0].error or "")
