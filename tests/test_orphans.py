"""Tests of payments left running by a kernel that ended: the next lab on the shared server finishes them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import new_id, published_session
from payments_lab.domain import PaymentStatus
from payments_lab.lab import open_lab
from payments_lab.orphans import ended_here
from payments_lab.server import EmbeddedServer

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
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL, encoding="utf-8")
    with published_session(dev_server):
        kernel = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            assert kernel.stdout is not None
            payment_id, queue = (await asyncio.wait_for(asyncio.to_thread(kernel.stdout.readline), 60)).split()
        finally:
            kernel.kill()  # Kernel > Restart, mid-charge
            kernel.wait()
        lab = await open_lab(f"after-{new_id()}")
    try:
        assert [worker.task_queue for worker in lab.adopted] == [queue]
        said = capsys.readouterr().out
        assert f"finishes 1 payment left running by a kernel that ended (task queue {queue}: payment-{payment_id})" in said
        result = await asyncio.wait_for(lab.service.handle(payment_id).result(), 60)
        assert result.status is PaymentStatus.COMPLETED
        assert lab.repository.ledger_summary(payment_id).charges == 1
        charges = [a for a in lab.repository.attempts(payment_id) if a.activity == "charge_payment"]
        assert len(charges) == 2 and charges[-1].worker == lab.activities.identity  # type: ignore[union-attr]
    finally:
        await lab.close()
    assert all(not worker.running for worker in lab.adopted)
