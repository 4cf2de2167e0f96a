"""Tests of the plain-Python payment: what it does, and what a crash and a re-run do to it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.plain import CHARGED_LINE, pay_plainly, run_plain_script
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
