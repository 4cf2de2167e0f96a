"""The payment repository: payments, organizations, the charge ledger, notifications, attempts.

It runs on SQLite: in memory by default (one lab, one process), or on a file when several
processes share it (a worker process that is killed and restarted in a crash lesson, the
notebook that watches it). Every operation is one transaction, so concurrent activities,
threads and processes never see half a change.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from payments_lab.domain import Payment, PaymentStatus, text_problems
from payments_lab.errors import InvalidArgumentError, PaymentsLabError

DEMO_ORGANIZATIONS: dict[str, str] = {
    "org-acme": "Acme Corporation",
    "org-globex": "Globex",
    "org-initech": "Initech",
    "org-gyroscops": "Gyroscops",
}
"""Organizations every new repository knows, so a first payment works out of the box."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_identity (
    id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_organization ON payments (organization_id);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    payment_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_payment ON ledger (payment_id);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL,
    activity TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    due_at TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_payment ON attempts (payment_id);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Organization:
    """An organization that may pay."""

    id: str
    """Its id, e.g. ``org-acme``: what a payment request's ``organization_id`` names."""
    name: str
    """Its name, for people."""


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of money at the simulated payment processor."""

    entry_id: str
    """Id of the movement, e.g. ``ch_3f9a…`` for a charge, ``re_…`` for a refund."""
    payment_id: str
    """The payment the money moved for."""
    kind: str
    """``"charge"`` or ``"refund"``."""
    amount: Decimal
    """How much moved, in ``currency``."""
    currency: str
    """ISO 4217 code."""
    idempotency_key: str | None
    """Key the caller sent; a second charge with the same key charges nothing."""
    created_at: datetime
    """When the processor recorded it (UTC)."""


@dataclass(frozen=True)
class LedgerSummary:
    """What the ledger holds for one payment: the proof of "never charged twice"."""

    charges: int
    """Charges taken (more than one is a double charge)."""
    refunds: int
    """Refunds given back."""
    kept: Decimal
    """Money kept: the charges minus the refunds."""

    @classmethod
    def of(cls, entries: Iterable[LedgerEntry]) -> LedgerSummary:
        """Sum up ``entries``, all of one payment."""
        charges = refunds = 0
        kept = Decimal(0)
        for entry in entries:
            if entry.kind == "charge":
                charges, kept = charges + 1, kept + entry.amount
            else:
                refunds, kept = refunds + 1, kept - entry.amount
        return cls(charges, refunds, kept)


@dataclass(frozen=True)
class ChargeOutcome:
    """What :meth:`PaymentRepository.charge` did."""

    entry: LedgerEntry
    """The charge, new or found."""
    created: bool
    """False when the idempotency key had been seen: nothing more was charged."""


@dataclass(frozen=True)
class Notification:
    """A notification the notify step sent (the kit records instead of sending)."""

    payment_id: str
    """The payment it tells about."""
    channel: str
    """``"email"`` or ``"webhook"``."""
    recipient: str
    """Who it went to: the user, or the organization's webhook."""
    message: str
    """What it said: how the payment ended."""
    sent_at: datetime
    """When it was sent (UTC)."""


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of one activity, as the activity itself saw it.

    Temporal's history keeps only the last attempt of a retried activity; these records
    keep all of them.
    """

    payment_id: str
    """The payment."""
    activity: str
    """The activity type, e.g. ``charge_payment`` (its step: :data:`payments_lab.domain.STEPS`)."""
    attempt: int
    """Temporal's attempt number, from 1."""
    workflow_id: str
    """The workflow that ran it."""
    run_id: str
    """The workflow run that ran it."""
    worker: str
    """``pid@host`` of the worker that ran it."""
    started_at: datetime
    """When the attempt began (UTC)."""
    ended_at: datetime | None
    """When it ended; None while it runs, or if its worker died during it."""
    outcome: str
    """``"running"`` (or the worker died during it), ``"completed"``, ``"failed"``, ``"cancelled"``, or ``"timed out"``
    (its worker was paused past a timeout of the attempt: Temporal had given up on it and retried it)."""
    error: str | None = None
    """What a failed attempt raised."""
    due_at: datetime | None = None
    """When the server scheduled this attempt to run (after the retry's back-off): the gap to
    ``started_at`` is how long it waited for a worker."""
    """The time the server scheduled this attempt for (for a retry: the previous failure's
    arrival plus the backoff), as the activity was told; it started ``started_at``, after
    the timer fired and the attempt travelled to the worker."""


_SETTLED = (PaymentStatus.CANCELLED, PaymentStatus.FAILED, PaymentStatus.REFUNDED)
"""Statuses a settled payment ends in."""


class ChargeRefusedError(PaymentsLabError, RuntimeError):
    """The payment is not in a state that can be charged (for example it was cancelled)."""


class RepositoryClosedError(PaymentsLabError, RuntimeError):
    """The repository was closed (with its lab) and cannot be read or written any more."""


class RepositoryFileError(PaymentsLabError, ValueError):
    """The file given for the repository cannot hold it: no such folder, a folder, another kind of file."""


class RepositoryBusyError(PaymentsLabError, RuntimeError):
    """Another process holds the repository file's write lock: the call changed nothing and may be made again."""


LOCK_WAIT = 10.0
"""Seconds a call waits at most for another process to let go of the repository file's write lock."""

_WAITING = ContextVar("payments_lab_repository_waiting", default=True)
"""Whether a call made here may wait for the file's lock inside SQLite (see :meth:`PaymentRepository.without_waiting`)."""


@contextmanager
def _busy_told(path: Path | None) -> Iterator[None]:
    """Turn SQLite's "database is locked" into :class:`RepositoryBusyError`, with what to do about it."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if err.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise
        raise RepositoryBusyError(
            f"another process holds the write lock of the repository file {path}: nothing was changed. A worker "
            "stopped with Ctrl-Z (resume it with `fg`, or stop it), or a long transaction in another program."
        ) from None


@contextmanager
def _refused_values(params: tuple[object, ...]) -> Iterator[None]:
    """Turn SQLite's refusal of a value (text that is not valid Unicode, an object) into one clear error."""
    try:
        yield
    except (UnicodeEncodeError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        problems: list[str] = []
        for value in params:
            if isinstance(value, str):
                problems += text_problems("the id", value)
            elif not isinstance(value, (int, float, bytes, Decimal, type(None))):
                problems.append(f"an id must be a string such as 'pay-1a2b3c4d', not {type(value).__name__}")
        if not problems:
            raise
        raise InvalidArgumentError("; ".join(problems)) from None


def _file_problem(path: Path) -> str:
    """Why SQLite could not open or use ``path``, in plain words."""
    if path.is_dir():
        return f"{path} is a folder; give a file in it, e.g. {path / 'payments.sqlite'}"
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist; create it, or give a file in a folder that exists"
    if path.exists():
        return f"{path} is not a SQLite file of the kit (another kind of file?); give a new file name"
    return f"{path} cannot be created here (no permission to write in {path.parent}?)"


class PaymentRepository:
    """Payments, organizations, the processor's ledger, notifications and activity attempts.

    Args:
        path: SQLite file shared by several processes, or None to keep everything in memory.
        demo_organizations: Register :data:`DEMO_ORGANIZATIONS` if they are missing.
        on_close: Called once the database is closed (a temporary file removes itself).

    Raises:
        RepositoryFileError: ``path`` cannot hold the repository; the message says why.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        demo_organizations: bool = True,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._on_close = on_close
        self._closed = False
        self._lock = threading.RLock()
        self._unwaiting_db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(
                str(self.path) if self.path else ":memory:",
                check_same_thread=False,
                isolation_level=None,
                timeout=LOCK_WAIT,
            )
            self._db.row_factory = sqlite3.Row
            if self.path:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                self._db.executescript(_SCHEMA)
            self.ledger_id = self._ledger_id()
        except sqlite3.DatabaseError as err:  # OperationalError included: cannot open the file
            if self.path is None:
                raise
            raise RepositoryFileError(f"the payments repository cannot live in {self.path}: {_file_problem(self.path)}") from err
        if demo_organizations:
            for org_id, name in DEMO_ORGANIZATIONS.items():
                self.register_organization(org_id, name, replace=False)

    def _ledger_id(self) -> str:
        """The id this ledger got when it was created, the same for every process that opens its file."""
        with self._transaction() as db:  # two processes creating one file: the second reads the first's id
            row = db.execute("SELECT id FROM ledger_identity").fetchone()
            if row is not None:
                return str(row["id"])
            ledger_id = uuid.uuid4().hex[:12]
            db.execute("INSERT INTO ledger_identity (id) VALUES (?)", (ledger_id,))
            return ledger_id

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        return f"PaymentRepository({where}: {'closed' if self._closed else f'{self.count()} payments'})"

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Calls made in this block raise :class:`RepositoryBusyError` at once, instead of waiting up to
        :data:`LOCK_WAIT` inside SQLite, while another process holds the file's write lock.

        For async code (the activities), which waits on its event loop instead: a wait inside
        SQLite holds up every other task of the worker, heartbeats included.
        """
        token = _WAITING.set(False)
        try:
            yield
        finally:
            _WAITING.reset(token)

    def _connection(self) -> sqlite3.Connection:
        """The connection for a call made now: one that does not wait for the file's lock in a ``without_waiting`` block."""
        if _WAITING.get() or self.path is None:  # in memory, no other process shares the lock
            return self._db
        if self._unwaiting_db is None:
            self._unwaiting_db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=0)
            self._unwaiting_db.row_factory = sqlite3.Row
        return self._unwaiting_db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            db = self._connection()
            with _busy_told(self.path):
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _write(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        """Run one statement that changes the database: atomic on its own, as SQLite runs it.

        No BEGIN and COMMIT around it: each ``execute`` lets go of the GIL and must win it
        back, which a busy worker makes slow (measured: with 39 statements per payment,
        ``execute`` took a quarter of the wall time of the worker's activity tasks).
        """
        with self._lock:
            self._check_open()
            with _refused_values(params), _busy_told(self.path):
                return self._connection().execute(sql, params)

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            with _refused_values(params), _busy_told(self.path):
                return self._connection().execute(sql, params).fetchall()

    def _check_open(self) -> None:
        if self._closed:
            raise RepositoryClosedError(
                "this repository was closed, with its lab: open the lab again (`lab = await open_lab()`) and use `lab.repository`"
            )

    def keep_in_memory(self) -> None:
        """Go on in memory with what the repository holds, and let go of its file.

        What a closed lab does: its repository stays readable (a cell may still count the
        charges of the payments it ran), its file is no longer held open, and a lab's
        temporary file is removed.
        """
        with self._lock:
            if self.path is None or self._closed:
                return
            memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.backup(memory)
            self._db.close()
            self._close_unwaiting()
            memory.row_factory = sqlite3.Row
            self._db, self.path = memory, None
            on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _close_unwaiting(self) -> None:
        if self._unwaiting_db is not None:
            self._unwaiting_db.close()
            self._unwaiting_db = None

    def close(self) -> None:
        """Close the database; a file-backed repository keeps its data unless it is a lab's temporary one."""
        with self._lock:
            self._db.close()
            self._close_unwaiting()
            self._closed = True
            on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    # Organizations

    def register_organization(self, organization_id: str, name: str | None = None, *, replace: bool = True) -> Organization:
        """Make ``organization_id`` known, so its payments pass validation."""
        if not isinstance(organization_id, str) or not organization_id.strip():
            raise InvalidArgumentError(f"organization_id must be a non-blank string such as 'org-acme', got {organization_id!r}")
        organization = Organization(organization_id, name or organization_id)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self._write(f"{verb} INTO organizations (id, name) VALUES (?, ?)", (organization.id, organization.name))
        return organization

    def organization_exists(self, organization_id: str) -> bool:
        """Whether ``organization_id`` is registered."""
        return bool(self._query("SELECT 1 FROM organizations WHERE id = ?", (organization_id,)))

    def organizations(self) -> list[Organization]:
        """Every registered organization, by id."""
        return [Organization(r["id"], r["name"]) for r in self._query("SELECT * FROM organizations ORDER BY id")]

    # Payments: the seed's PaymentRepositoryInterface

    def save(self, payment: Payment) -> None:
        """Insert or update ``payment``."""
        with self._transaction() as db:
            self._save(db, payment)

    @staticmethod
    def _save(db: sqlite3.Connection, payment: Payment) -> None:
        db.execute(
            "INSERT OR REPLACE INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                payment.id,
                payment.organization_id,
                payment.user_id,
                str(payment.amount),
                payment.currency,
                payment.description,
                payment.status.value,
                payment.failure_reason,
                payment.created_at.isoformat(),
                payment.updated_at.isoformat(),
            ),
        )

    @staticmethod
    def _payment(row: sqlite3.Row) -> Payment:
        return Payment(
            id=row["id"],
            organization_id=row["organization_id"],
            user_id=row["user_id"],
            amount=Decimal(row["amount"]),
            currency=row["currency"],
            description=row["description"],
            status=PaymentStatus(row["status"]),
            failure_reason=row["failure_reason"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
        )

    def find_by_id(self, payment_id: str) -> Payment | None:
        """The payment ``payment_id``, or None."""
        rows = self._query("SELECT * FROM payments WHERE id = ?", (payment_id,))
        return self._payment(rows[0]) if rows else None

    def find_by_organization(self, organization_id: str) -> list[Payment]:
        """Payments of ``organization_id``, oldest first."""
        rows = self._query(
            "SELECT * FROM payments WHERE organization_id = ? ORDER BY created_at, id", (organization_id,)
        )
        return [self._payment(r) for r in rows]

    def delete(self, payment_id: str) -> bool:
        """Delete the payment; return whether it existed. Its ledger entries stay: money moved."""
        return self._write("DELETE FROM payments WHERE id = ?", (payment_id,)).rowcount > 0

    def count(self, organization_id: str | None = None) -> int:
        """Number of payments, of one organization or of all."""
        if organization_id is None:
            return self._query("SELECT COUNT(*) FROM payments")[0][0]
        return self._query("SELECT COUNT(*) FROM payments WHERE organization_id = ?", (organization_id,))[0][0]

    def transition(self, payment: Payment, status: PaymentStatus, reason: str | None = None) -> Payment:
        """Save ``payment`` (creating it if needed) moved to ``status``; return what was stored.

        Raises:
            InvalidTransitionError: the stored payment cannot move to ``status``.
        """
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM payments WHERE id = ?", (payment.id,)).fetchall()
            current = self._payment(rows[0]) if rows else payment
            moved = current.transition(status, reason)
            self._save(db, moved)
            return moved

    # The simulated processor's ledger

    @staticmethod
    def _entry(row: sqlite3.Row) -> LedgerEntry:
        return LedgerEntry(
            entry_id=row["entry_id"],
            payment_id=row["payment_id"],
            kind=row["kind"],
            amount=Decimal(row["amount"]),
            currency=row["currency"],
            idempotency_key=row["idempotency_key"],
            created_at=datetime.fromisoformat(row["created_at"]),
        )

    def charge(
        self, payment_id: str, amount: Decimal, currency: str, *, idempotency_key: str | None
    ) -> ChargeOutcome:
        """Take ``amount`` for ``payment_id`` at the processor.

        With an ``idempotency_key`` seen before, nothing more is charged and the earlier
        charge is returned: this is what makes a retried or replayed charge safe. Without a
        key, every call charges again, as a naive client would.

        Raises:
            ChargeRefusedError: the payment is stored and is cancelled, failed or refunded.
        """
        with self._transaction() as db:
            if idempotency_key is not None:
                rows = db.execute("SELECT * FROM ledger WHERE idempotency_key = ?", (idempotency_key,)).fetchall()
                if rows:
                    return ChargeOutcome(self._entry(rows[0]), created=False)
            status = db.execute("SELECT status FROM payments WHERE id = ?", (payment_id,)).fetchone()
            if status and status[0] in _SETTLED:
                raise ChargeRefusedError(f"payment {payment_id} is {status[0]}; it must not be charged")
            entry = LedgerEntry(
                entry_id=f"ch_{uuid.uuid4().hex[:16]}",
                payment_id=payment_id,
                kind="charge",
                amount=amount,
                currency=currency,
                idempotency_key=idempotency_key,
                created_at=_now(),
            )
            self._insert_entry(db, entry)
            return ChargeOutcome(entry, created=True)

    @staticmethod
    def _insert_entry(db: sqlite3.Connection, entry: LedgerEntry) -> None:
        db.execute(
            "INSERT INTO ledger (entry_id, payment_id, kind, amount, currency, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.entry_id,
                entry.payment_id,
                entry.kind,
                str(entry.amount),
                entry.currency,
                entry.idempotency_key,
                entry.created_at.isoformat(),
            ),
        )

    def ledger(self, payment_id: str | None = None) -> list[LedgerEntry]:
        """Ledger entries, of one payment or all, in the order they happened."""
        if payment_id is None:
            rows = self._query("SELECT * FROM ledger ORDER BY seq")
        else:
            rows = self._query("SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq", (payment_id,))
        return [self._entry(r) for r in rows]

    def charge_count(self, payment_id: str) -> int:
        """How many times ``payment_id`` was charged (more than one is a double charge)."""
        return self._query(
            "SELECT COUNT(*) FROM ledger WHERE payment_id = ? AND kind = 'charge'", (payment_id,)
        )[0][0]

    def balance(self, payment_id: str) -> Decimal:
        """Money kept for ``payment_id``: its charges minus its refunds."""
        return self.ledger_summary(payment_id).kept

    def ledger_summary(self, payment_id: str) -> LedgerSummary:
        """Charges, refunds and money kept for ``payment_id``."""
        return LedgerSummary.of(self.ledger(payment_id))

    def settle_unfinished(self, payment_id: str, status: PaymentStatus, reason: str) -> PaymentStatus:
        """End a payment that will not complete, refunding it if money was taken.

        Called when a payment is cancelled or its charge gave up. In one transaction: if
        the ledger holds more charges than refunds, the difference is refunded. The
        payment ends ``refunded`` if it was ever charged, ``status`` otherwise. A payment
        that was never stored (stopped before the charge step) is left unstored.

        Settling again changes nothing and returns the same status: Temporal retries an
        activity whose completion was lost, and the workflow must hear the same answer.

        Returns:
            The status the payment ended with.
        """
        if status not in (PaymentStatus.CANCELLED, PaymentStatus.FAILED):
            raise InvalidArgumentError(f"status must be cancelled or failed, not {status.value}")
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchall()
            stored = self._payment(rows[0]) if rows else None
            if stored is not None and stored.status in _SETTLED:
                return stored.status
            entries = [
                self._entry(r)
                for r in db.execute("SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq", (payment_id,))
            ]
            summary = LedgerSummary.of(entries)
            if summary.kept > 0:
                self._insert_entry(
                    db,
                    LedgerEntry(
                        entry_id=f"re_{uuid.uuid4().hex[:16]}",
                        payment_id=payment_id,
                        kind="refund",
                        amount=summary.kept,
                        currency=next(e.currency for e in entries if e.kind == "charge"),
                        idempotency_key=f"refund:{payment_id}:{len(entries)}",
                        created_at=_now(),
                    ),
                )
            final = PaymentStatus.REFUNDED if summary.charges else status
            if stored is not None:
                self._save(db, stored.transition(final, reason))
            return final

    # Notifications

    def record_notification(self, *notifications: Notification) -> None:
        """Keep ``notifications`` so a learner can see what was sent: all of them or, if that fails, none."""
        if not notifications:
            return
        self._write(
            "INSERT INTO notifications (payment_id, channel, recipient, message, sent_at) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(notifications)),
            tuple(
                value
                for n in notifications
                for value in (n.payment_id, n.channel, n.recipient, n.message, n.sent_at.isoformat())
            ),
        )

    def notifications(self, payment_id: str | None = None) -> list[Notification]:
        """Notifications sent, of one payment or all, in order."""
        sql = "SELECT * FROM notifications" + (" WHERE payment_id = ?" if payment_id else "") + " ORDER BY seq"
        rows = self._query(sql, (payment_id,) if payment_id else ())
        return [
            Notification(r["payment_id"], r["channel"], r["recipient"], r["message"], datetime.fromisoformat(r["sent_at"]))
            for r in rows
        ]

    # Activity attempts

    def start_attempt(self, record: AttemptRecord) -> int:
        """Record that an attempt started; return its key for :meth:`finish_attempt`."""
        cursor = self._write(
            "INSERT INTO attempts (payment_id, activity, attempt, workflow_id, run_id, worker, started_at, ended_at,"
            " outcome, error, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.payment_id,
                record.activity,
                record.attempt,
                record.workflow_id,
                record.run_id,
                record.worker,
                record.started_at.isoformat(),
                record.ended_at.isoformat() if record.ended_at else None,
                record.outcome,
                record.error,
                record.due_at.isoformat() if record.due_at else None,
            ),
        )
        return int(cursor.lastrowid or 0)

    def finish_attempt(self, key: int, outcome: str, error: str | None = None) -> None:
        """Record how the attempt ``key`` ended."""
        self._write(
            "UPDATE attempts SET ended_at = ?, outcome = ?, error = ? WHERE seq = ?",
            (_now().isoformat(), outcome, error, key),
        )

    def attempts(self, payment_id: str | None = None) -> list[AttemptRecord]:
        """Every recorded attempt, of one payment or all, in the order they started."""
        sql = "SELECT * FROM attempts" + (" WHERE payment_id = ?" if payment_id else "") + " ORDER BY seq"
        rows = self._query(sql, (payment_id,) if payment_id else ())
        return [
            AttemptRecord(
                payment_id=r["payment_id"],
                activity=r["activity"],
                attempt=r["attempt"],
                workflow_id=r["workflow_id"],
                run_id=r["run_id"],
                worker=r["worker"],
                started_at=datetime.fromisoformat(r["started_at"]),
                ended_at=_time(r["ended_at"]),
                outcome=r["outcome"],
                error=r["error"],
                due_at=_time(r["due_at"]),
            )
            for r in rows
        ]
