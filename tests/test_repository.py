"""Tests of the repository: the seed's operations, the ledger's idempotency, concurrency, files."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from payments_lab.domain import InvalidTransitionError, Payment, PaymentStatus
from payments_lab.repository import (
    DEMO_ORGANIZATIONS,
    AttemptRecord,
    ChargeRefusedError,
    LedgerSummary,
    Notification,
    PaymentRepository,
    RepositoryFileError,
)


def payment(payment_id: str = "p-1", org: str = "org-acme", amount: str = "12.50") -> Payment:
    return Payment(id=payment_id, organization_id=org, user_id="u-1", amount=Decimal(amount), currency="EUR")


def test_demo_organizations_exist(repository: PaymentRepository) -> None:
    assert "org-acme" in DEMO_ORGANIZATIONS
    assert all(repository.organization_exists(org) for org in DEMO_ORGANIZATIONS)
    assert not repository.organization_exists("org-nope")
    assert [o.id for o in repository.organizations()] == sorted(DEMO_ORGANIZATIONS)


def test_register_organization(repository: PaymentRepository) -> None:
    repository.register_organization("org-new", "New Co")
    assert repository.organization_exists("org-new")
    with pytest.raises(ValueError, match="non-blank"):
        repository.register_organization("  ")


def test_save_find_count_delete(repository: PaymentRepository) -> None:
    repository.save(payment("p-1"))
    repository.save(payment("p-2", org="org-globex", amount="0.10"))
    found = repository.find_by_id("p-2")
    assert found is not None and found.amount == Decimal("0.10") and str(found.amount) == "0.10"
    assert repository.find_by_id("missing") is None
    assert [p.id for p in repository.find_by_organization("org-acme")] == ["p-1"]
    assert repository.count() == 2
    assert repository.count("org-globex") == 1
    assert repository.delete("p-1") is True
    assert repository.delete("p-1") is False
    assert repository.count() == 1


def test_transition_creates_then_moves_and_guards(repository: PaymentRepository) -> None:
    stored = repository.transition(payment(), PaymentStatus.PROCESSING)
    assert stored.status is PaymentStatus.PROCESSING
    assert repository.transition(payment(), PaymentStatus.COMPLETED).status is PaymentStatus.COMPLETED
    with pytest.raises(InvalidTransitionError):
        repository.transition(payment(), PaymentStatus.PROCESSING)
    assert repository.find_by_id("p-1").status is PaymentStatus.COMPLETED  # type: ignore[union-attr]


def test_charge_is_idempotent_by_key(repository: PaymentRepository) -> None:
    first = repository.charge("p-1", Decimal("12.50"), "EUR", idempotency_key="p-1")
    again = repository.charge("p-1", Decimal("12.50"), "EUR", idempotency_key="p-1")
    assert first.created and not again.created
    assert again.entry == first.entry
    assert repository.charge_count("p-1") == 1
    assert repository.balance("p-1") == Decimal("12.50")


def test_charge_without_key_charges_every_time(repository: PaymentRepository) -> None:
    repository.charge("p-1", Decimal("5"), "EUR", idempotency_key=None)
    repository.charge("p-1", Decimal("5"), "EUR", idempotency_key=None)
    assert repository.charge_count("p-1") == 2
    assert repository.balance("p-1") == Decimal("10")


def test_concurrent_charges_with_one_key_charge_once(repository: PaymentRepository) -> None:
    barrier = threading.Barrier(8)

    def charge() -> None:
        barrier.wait()
        repository.charge("p-1", Decimal("1"), "EUR", idempotency_key="p-1")

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert repository.charge_count("p-1") == 1


def _charge_from_another_process(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    repo = PaymentRepository(path)
    barrier.wait()
    repo.charge("p-1", Decimal("1"), "EUR", idempotency_key="p-1")
    repo.close()


def test_processes_sharing_a_file_charge_once(tmp_path: Path) -> None:
    path = str(tmp_path / "lab.sqlite")
    PaymentRepository(path).close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_charge_from_another_process, args=(path, barrier)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert PaymentRepository(path).charge_count("p-1") == 1


def test_file_repository_keeps_data_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "lab.sqlite"
    first = PaymentRepository(path)
    first.save(payment())
    first.close()
    assert PaymentRepository(path).find_by_id("p-1") is not None


def test_cancelled_payment_is_never_charged(repository: PaymentRepository) -> None:
    cancelled = payment()
    cancelled.status = PaymentStatus.CANCELLED
    repository.save(cancelled)
    with pytest.raises(ChargeRefusedError, match="p-1 is cancelled"):
        repository.charge("p-1", Decimal("12.50"), "EUR", idempotency_key="p-1")
    assert repository.ledger() == []


def test_settle_refunds_what_was_taken(repository: PaymentRepository) -> None:
    repository.transition(payment(), PaymentStatus.PROCESSING)
    repository.charge("p-1", Decimal("12.50"), "EUR", idempotency_key="p-1")
    assert repository.settle_unfinished("p-1", PaymentStatus.CANCELLED, "stop") is PaymentStatus.REFUNDED
    assert [e.kind for e in repository.ledger("p-1")] == ["charge", "refund"]
    assert repository.balance("p-1") == 0
    assert repository.ledger_summary("p-1") == LedgerSummary(charges=1, refunds=1, kept=Decimal("0.00"))
    assert repository.find_by_id("p-1").status is PaymentStatus.REFUNDED  # type: ignore[union-attr]
    # Settling again (a retry whose first completion was lost) takes nothing more back,
    # and says the same thing.
    assert repository.settle_unfinished("p-1", PaymentStatus.CANCELLED, "again") is PaymentStatus.REFUNDED
    assert repository.settle_unfinished("p-1", PaymentStatus.FAILED, "again") is PaymentStatus.REFUNDED
    assert len(repository.ledger("p-1")) == 2


def test_a_ledger_summary_counts_each_kind_and_keeps_decimal_money(repository: PaymentRepository) -> None:
    assert repository.ledger_summary("nothing") == LedgerSummary(charges=0, refunds=0, kept=Decimal(0))
    repository.transition(payment(amount="0.10"), PaymentStatus.PROCESSING)
    repository.charge("p-1", Decimal("0.10"), "EUR", idempotency_key="k-1")
    repository.charge("p-1", Decimal("0.20"), "EUR", idempotency_key="k-2")  # a double charge, as a bug would make
    summary = repository.ledger_summary("p-1")
    assert (summary.charges, summary.refunds, summary.kept) == (2, 0, Decimal("0.30"))
    assert isinstance(summary.kept, Decimal), "0.1 + 0.2 in floats is not 0.3"
    repository.settle_unfinished("p-1", PaymentStatus.FAILED, "gave up")
    assert repository.ledger_summary("p-1") == LedgerSummary(charges=2, refunds=1, kept=Decimal("0.00"))


def test_settle_without_charge_keeps_the_status_asked(repository: PaymentRepository) -> None:
    repository.transition(payment(), PaymentStatus.PROCESSING)
    assert repository.settle_unfinished("p-1", PaymentStatus.FAILED, "gave up") is PaymentStatus.FAILED
    stored = repository.find_by_id("p-1")
    assert stored is not None and stored.status is PaymentStatus.FAILED and stored.failure_reason == "gave up"
    with pytest.raises(ValueError, match="cancelled or failed"):
        repository.settle_unfinished("p-1", PaymentStatus.COMPLETED, "no")


def test_settle_of_an_unstored_payment_stores_nothing(repository: PaymentRepository) -> None:
    assert repository.settle_unfinished("p-9", PaymentStatus.CANCELLED, "early") is PaymentStatus.CANCELLED
    assert repository.count() == 0


def test_notifications_and_attempts_are_kept_in_order(repository: PaymentRepository) -> None:
    now = datetime.now(UTC)
    repository.record_notification(Notification("p-1", "email", "a@b", "hi", now))
    repository.record_notification(Notification("p-2", "webhook", "https://x", "hi", now))
    assert [n.channel for n in repository.notifications()] == ["email", "webhook"]
    assert [n.payment_id for n in repository.notifications("p-2")] == ["p-2"]

    record = AttemptRecord("p-1", "charge_payment", 1, "payment-p-1", "run", "w", now, None, "running")
    key = repository.start_attempt(record)
    assert repository.attempts("p-1")[0].outcome == "running"
    repository.finish_attempt(key, "failed", "boom")
    attempt = repository.attempts("p-1")[0]
    assert (attempt.outcome, attempt.error) == ("failed", "boom")
    assert attempt.ended_at is not None and attempt.ended_at >= attempt.started_at


def test_notifications_sent_together_are_kept_together_or_not_at_all(repository: PaymentRepository) -> None:
    now = datetime.now(UTC)
    repository.record_notification(Notification("p-3", "email", "a@b", "one", now), Notification("p-3", "webhook", "h", "one", now))
    assert [(n.channel, n.message) for n in repository.notifications("p-3")] == [("email", "one"), ("webhook", "one")]
    repository.record_notification()  # nothing to send: nothing written
    with pytest.raises(sqlite3.Error):
        # The second row breaks a NOT NULL constraint: the first must not be kept either.
        repository.record_notification(
            Notification("p-4", "email", "a@b", "two", now), Notification("p-4", "webhook", None, "two", now)  # type: ignore[arg-type]
        )
    assert repository.notifications("p-4") == []


def test_attempts_written_from_many_threads_keep_their_own_keys(repository: PaymentRepository) -> None:
    """start_attempt writes without BEGIN/COMMIT: each key must still be the row that thread inserted."""
    now = datetime.now(UTC)

    def one(n: int) -> None:
        key = repository.start_attempt(AttemptRecord(f"t-{n}", "validate_payment", 1, f"payment-t-{n}", "r", "w", now, None, "running"))
        repository.finish_attempt(key, "completed", f"done {n}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    attempts = repository.attempts()
    assert len(attempts) == 200
    assert all(a.outcome == "completed" and a.error == f"done {a.payment_id[2:]}" for a in attempts)


def test_a_file_that_cannot_hold_the_repository_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RepositoryFileError, match="the folder .*missing does not exist; create it"):
        PaymentRepository(tmp_path / "missing" / "payments.sqlite")
    with pytest.raises(RepositoryFileError, match=r"is a folder; give a file in it, e\.g\. .*payments\.sqlite"):
        PaymentRepository(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, and it stays as it was\n" * 200)
    with pytest.raises(RepositoryFileError, match="is not a SQLite file of the kit"):
        PaymentRepository(notes)
    assert notes.read_text() == "not a database, and it stays as it was\n" * 200
    assert isinstance(RepositoryFileError("x"), ValueError)


def test_an_id_sqlite_cannot_take_is_one_clear_refusal(repository: PaymentRepository) -> None:
    """An id pasted from a file that is not UTF-8, or a handle instead of its id: the kit's one line, not SQLite's."""
    for read in (repository.charge_count, repository.ledger_summary, repository.ledger, repository.find_by_id, repository.attempts):
        with pytest.raises(ValueError, match="the id is not valid text: character 4 is .*a lone surrogate"):
            read("caf\udce9")
    with pytest.raises(ValueError, match="an id must be a string such as 'pay-1a2b3c4d', not object"):
        repository.ledger(object())  # type: ignore[arg-type]
    assert repository.ledger("café") == [], "any valid text is an id that simply has no entry"
