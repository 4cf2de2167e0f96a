"""Tests of the plain-Python payment: what it does, and what a crash and a re-run do to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.plain import CHARGED_LINE, pay_plainly, run_plain_script
from payments_lab.processes import WATCHDOG_ENV, leftovers, processes_marked
from payments_lab.repository import PaymentRepository


def test_plain_payment_validates_charges_and_notifies(repository: PaymentRepository) -> None:
    result = pay_plainly(repository, PaymentRequest("p-1", "org-acme", "u", "12.50", "EUR"))
    assert result.status is PaymentStatus.COMPLETED and result.notified
    assert repository.charge_count("p-1") == 1
    assert len(repository.notifications("p-1")) == 2
    declined = pay_plainly(repository, PaymentRequest("p-2", "org-acme", "u", "-1", "EUR"))
    assert declined.status is PaymentStatus.DECLINED and repository.find_by_id("p-2") is None


def _script(db: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "payments_lab.plain", "--db", str(db), "--id", "p-1", "--amount", "9.99", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def test_a_killed_script_run_again_charges_twice(tmp_path: Path) -> None:
    db = tmp_path / "plain.sqlite"
    first = _script(db, "--delay", "30")
    assert first.stdout.readline().strip() == CHARGED_LINE  # type: ignore[union-attr]
    first.send_signal(signal.SIGKILL)
    first.wait()
    repository = PaymentRepository(db)
    assert repository.find_by_id("p-1").status is PaymentStatus.PROCESSING  # type: ignore[union-attr]
    second = _script(db)
    assert second.wait(timeout=60) == 0
    assert repository.charge_count("p-1") == 2, "the naive re-run charged again"


def test_with_an_idempotency_key_the_re_run_charges_once(tmp_path: Path) -> None:
    db = tmp_path / "plain.sqlite"
    first = _script(db, "--delay", "30", "--idempotent")
    assert first.stdout.readline().strip() == CHARGED_LINE  # type: ignore[union-attr]
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert _script(db, "--idempotent").wait(timeout=60) == 0
    assert PaymentRepository(db).charge_count("p-1") == 1


def test_the_lesson_helper_kills_after_the_charge_then_runs_again(tmp_path: Path) -> None:
    db = tmp_path / "plain.sqlite"
    request = PaymentRequest("p-9", "org-globex", "u", "4.20", "USD")
    assert run_plain_script(db, request, delay=30, kill_after_charge=True) == f"{CHARGED_LINE}\n(killed)"
    assert run_plain_script(db, request).endswith("completed: Payment processed successfully")
    assert PaymentRepository(db).charge_count("p-9") == 2


def test_the_script_run_again_on_a_completed_payment_refuses_in_one_line(tmp_path: Path) -> None:
    # Lesson 04's re-run cell run once more: the payment is completed, the script stops at its
    # first write, charges nothing, and says why without a traceback.
    db = tmp_path / "plain.sqlite"
    request = PaymentRequest("p-9", "org-globex", "u", "4.20", "USD")
    assert run_plain_script(db, request).endswith("completed: Payment processed successfully")
    again = run_plain_script(db, request)
    assert again == "refused: payment p-9 cannot go from completed to processing", again
    assert PaymentRepository(db).charge_count("p-9") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="leftover processes are found through /proc")
@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_the_plain_script_dies_with_the_kernel_that_ran_it(tmp_path: Path, tie: str) -> None:
    """Lesson 04's kernel killed while its plain script waits for the processor: the script must not live on and write later."""
    from jupyter_client.manager import KernelManager

    marker = uuid.uuid4().hex
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, "PAYMENTS_LAB_PLAIN_CHECK": marker, WATCHDOG_ENV: "1" if tie == "watchdog" else "0"})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        client.execute(
            "from payments_lab.domain import PaymentRequest\n"
            "from payments_lab.plain import run_plain_script\n"
            f"run_plain_script({str(tmp_path / 'plain.sqlite')!r}, PaymentRequest('order-1', 'org-acme', 'u', '5.00', 'EUR'), delay=30)"
        )
        database = tmp_path / "plain.sqlite"
        deadline = time.monotonic() + 30
        while not (database.exists() and PaymentRepository(database).ledger("order-1")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the script has taken the money and waits for the processor's answer
        assert len(processes_marked(marker)) >= 2, "the kernel, and the script it started"
        os.kill(manager.provisioner.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        assert leftovers(marker, 10) == [], "the plain script outlived its kernel"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
        for pid in processes_marked(marker):
            os.kill(pid, signal.SIGKILL)
