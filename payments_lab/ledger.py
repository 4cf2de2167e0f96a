"""Which repository a process keeps payments and the processor's ledger in: one per lab, shared.

A company's services share one payment provider, and its idempotency keys are what stop a
retried charge from charging twice. Here every process that can run a payment of a lab
session — its notebooks, every ``payments-lab worker``, every ``payments-lab pay`` —
shares one repository file, whatever order they start in:

1. a lab session (``payments-lab lab`` or ``payments-lab server``) names its file;
2. a process that runs an embedded server of its own (a notebook's lab outside a session,
   ``payments-lab pay``) keeps its repository in a file of its own, and announces it under
   the server's address: a ``payments-lab worker`` pointed at that server shares it, as a
   worker of the session does (its address is in the lab's links, so a learner can);
3. on a server found another way (``TEMPORAL_ADDRESS``, a profile), the machine's file
   in the state folder is shared.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import quote

from payments_lab.errors import PaymentsLabError
from payments_lab.processes import pid_alive
from payments_lab.repository import PaymentRepository
from payments_lab.server import LabSession, read_session, state_dir
from payments_lab.task_queues import live_pollers, pollers

if TYPE_CHECKING:
    from temporalio.client import Client


class LedgerMismatchError(PaymentsLabError, ValueError):
    """A worker was pointed at another repository than the one its lab session shares."""


OWN_LEDGER_MARK = "own-ledger"
"""The word in a worker's identity when it keeps a ledger of its own (``--db FILE --own-ledger``)."""

LEDGER_MARK = "ledger="
"""What precedes, in a kit worker's identity, the id of the ledger it charges into (``pid@host ledger=3f9a0c…``)."""


def own_ledger_identity(identity: str) -> str:
    """``identity`` marked as a worker's that keeps a ledger of its own, for every other worker of its task queue to see."""
    return f"{identity} {OWN_LEDGER_MARK}"


def ledger_identity(identity: str, ledger_id: str) -> str:
    """A worker's identity for Temporal: ``identity`` and the id of the ledger it charges into, which every other
    worker of its task queue compares with its own (:func:`refuse_a_second_ledger`)."""
    return f"{identity} {LEDGER_MARK}{ledger_id}"


def ledger_of(identity: str) -> str | None:
    """The ledger id a kit worker's identity carries; None for another worker (bare temporalio, the CLI's)."""
    return next((word[len(LEDGER_MARK):] for word in identity.split() if word.startswith(LEDGER_MARK)), None)


async def refuse_a_second_ledger(
    client: Client, task_queue: str, *, own_ledger: bool, ledger_id: str | None = None, timeout: timedelta = timedelta(seconds=5)
) -> None:
    """Refuse to run a worker where the workers of ``task_queue`` would keep two ledgers.

    A charge is made once per payment thanks to the ledger's idempotency key: a payment charged
    by a worker with one ledger and retried by a worker with another (the first was killed, or
    timed out) is charged in both. Workers of one machine started at the very same moment are
    checked one after the other (:func:`task_queue_claim`).

    Args:
        client: A client of the task queue's server.
        task_queue: The task queue the worker is about to poll.
        own_ledger: Whether the worker keeps a ledger of its own (``--db FILE --own-ledger``).
        ledger_id: The id of the ledger the worker charges into (:attr:`PaymentRepository.ledger_id`).
        timeout: How long to wait for the server's list of pollers.

    Raises:
        LedgerMismatchError: ``own_ledger`` and another worker polls ``task_queue``; or another
            worker that keeps a ledger of its own polls it; or one that charges into another ledger
            than ``ledger_id`` (another lab session's, an old session's, one kept in memory).
    """
    others = sorted(await live_pollers(client, task_queue, timeout=timeout))
    if own_ledger and others:
        raise LedgerMismatchError(
            f"--own-ledger needs a task queue no other worker polls, and {task_queue!r} is polled by "
            f"{', '.join(others)}: a payment charged by one worker and retried by the other would be charged twice, "
            f"once in each ledger. Give this worker a queue of its own (`--task-queue {task_queue}-own`, and start "
            "payments there), or drop --db and --own-ledger to share the lab's ledger."
        )
    apart = [identity for identity in others if OWN_LEDGER_MARK in identity.split()]
    if apart:
        raise LedgerMismatchError(
            f"task queue {task_queue!r} is polled by a worker that keeps a ledger of its own ({', '.join(apart)}, "
            "started with --own-ledger): a payment charged by one worker and retried by the other would be charged "
            "twice. Stop that worker, or start this one with another --task-queue."
        )
    elsewhere = [identity for identity in others if ledger_id is not None and ledger_of(identity) not in (None, ledger_id)]
    if elsewhere:
        raise LedgerMismatchError(
            f"task queue {task_queue!r} is polled by a worker that charges into another ledger ({', '.join(elsewhere)}; "
            f"this one's is {ledger_id}): a payment charged by one worker and retried by the other would be charged "
            "twice, once in each ledger. Start this worker where it shares that ledger (the same lab session, or "
            "`--db` its file), stop that worker (one of a session that ended, say), or poll a task queue of your own "
            f"(`--task-queue {task_queue}-2`; in Python `new_task_queue()`)."
        )


POLL_SEEN_WITHIN = 5.0
"""Seconds a worker that claimed its task queue waits at most for the server to list its polls."""


@contextlib.asynccontextmanager
async def task_queue_claim(address: str, namespace: str, task_queue: str) -> AsyncIterator[None]:
    """Let one worker of this machine at a time check ``task_queue`` and start polling it.

    :func:`refuse_a_second_ledger` reads the pollers the server lists, and a worker is listed
    only once it polls: two workers started at the same moment would both find the queue free.
    The claim is a lock on a file of the state folder, held from the check until the server
    lists the new worker (:func:`until_polling`), so the second one finds the first. Workers
    of other machines are not covered: they are seen once they poll.
    """
    key = hashlib.sha256(f"{address}\0{namespace}\0{task_queue}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
    folder = state_dir() / "task-queue-claims"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a+b") as claim:
        await asyncio.to_thread(_lock, claim)
        try:
            yield
        finally:
            _unlock(claim)


def _lock(file: IO[bytes]) -> None:
    """Wait for the lock on ``file``; the system lets it go when the process ends, however it ends."""
    if sys.platform == "win32":
        import msvcrt

        while True:
            try:
                file.seek(0)
                msvcrt.locking(file.fileno(), msvcrt.LK_LOCK, 1)  # tries for 10 s, then raises
                return
            except OSError:
                continue
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX)


def _unlock(file: IO[bytes]) -> None:
    if sys.platform == "win32":
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


async def until_polling(client: Client, task_queue: str, identity: str, running: Awaitable[object], *, within: float = POLL_SEEN_WITHIN) -> None:
    """Return once the server lists worker ``identity`` among ``task_queue``'s pollers, ``running`` (the worker) ended, or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    running = asyncio.ensure_future(running)
    while not running.done() and time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the server away: the claim goes after ``within`` seconds all the same
            if identity in await pollers(client, task_queue):
                return
        await asyncio.wait({running}, timeout=0.1)


def machine_repository_file() -> Path:
    """The repository shared by the processes of this machine when no lab session names one."""
    return state_dir() / "payments.sqlite"


def session_repository_file(db_file: str | Path | None, pid: int) -> Path:
    """The repository file a lab session shares: beside its server's database, or a temporary one.

    Args:
        db_file: The server's SQLite file, if the session persists; the repository is kept
            beside it, so payments and ledger outlive a restart as the workflows do.
        pid: The session's process, which names the temporary file otherwise.
    """
    if db_file is not None:
        path = Path(db_file)
        return path.with_name(f"{path.stem}-payments.sqlite")
    return state_dir() / f"payments-session-{pid}.sqlite"


def remove_repository_file(path: Path) -> None:
    """Delete a repository file and SQLite's companion files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _endpoint(address: str) -> tuple[str, str]:
    host, _, port = address.strip().rpartition(":")
    return ("127.0.0.1" if host in ("localhost", "[::1]", "::1") else host, port)


def session_of(address: str) -> LabSession | None:
    """The running lab session whose server is at ``address``, if any."""
    session = read_session()
    if session is None or _endpoint(session.address) != _endpoint(address):
        return None
    return session


def shared_repository_file(address: str, *, own_server: bool) -> Path | None:
    """The repository file every process working with the server at ``address`` shares.

    Args:
        address: ``host:port`` of the server this process uses.
        own_server: Whether the server is this process's own embedded one.

    Returns:
        The file, or None when the server is this process's own: its file is made by
        :func:`open_repository`.
    """
    if own_server:
        return None
    return _lab_repository_file(address) or machine_repository_file()


def keeps_own_ledger(address: str, repository: PaymentRepository) -> bool:
    """Whether ``repository`` is another ledger than the one the processes working with the server at ``address`` share."""
    shared = shared_repository_file(address, own_server=False)
    return repository.path is None or shared is None or not _same_file(Path(repository.path), shared)


def _lab_repository_file(address: str) -> Path | None:
    """The file the lab of the server at ``address`` names: its session's, or its owner's announced one."""
    session = session_of(address)
    if session is not None and session.repository_file:
        return Path(session.repository_file)
    return announced_repository_file(address)


def _announcement(address: str) -> Path:
    host, port = _endpoint(address)
    return state_dir() / "servers" / f"{quote(host, safe='')}-{port}.json"


def own_server_repository_file(address: str, pid: int) -> Path:
    """The file a process that runs its own server at ``address`` keeps its repository in."""
    return state_dir() / f"payments-server-{_endpoint(address)[1]}-{pid}.sqlite"


def announce_repository_file(address: str, path: Path, pid: int) -> None:
    """Say that the lab of the server at ``address``, owned by process ``pid``, keeps its repository in ``path``."""
    announcement = _announcement(address)
    announcement.parent.mkdir(parents=True, exist_ok=True)
    record = {"address": address, "pid": pid, "repository_file": str(path)}
    scratch = announcement.with_suffix(f".{pid}.tmp")
    scratch.write_text(json.dumps(record), encoding="utf-8")
    scratch.replace(announcement)  # a reader sees the old record or the new one, never half of one


def _read_announcement(announcement: Path) -> tuple[int, Path] | None:
    """The owner's pid and the repository file an announcement names; None if it is gone or unreadable."""
    try:
        record = json.loads(announcement.read_text(encoding="utf-8"))
        return int(record["pid"]), Path(record["repository_file"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def announced_repository_file(address: str) -> Path | None:
    """The repository file announced for the server at ``address``, if its owner still runs."""
    announced = _read_announcement(_announcement(address))
    if announced is None:
        return None
    pid, path = announced
    return path if pid_alive(pid) and path.exists() else None


def announced_servers() -> list[tuple[str, int]]:
    """The servers of their own that other processes' labs on this machine (notebooks') run now: (address, owner's pid)."""
    folder = state_dir() / "servers"
    found: list[tuple[str, int]] = []
    for announcement in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(announcement.read_text(encoding="utf-8"))
            address, pid = str(record["address"]), int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # gone meanwhile, or unreadable
        if pid != os.getpid() and pid_alive(pid):
            found.append((address, pid))
    return found


def remove_stale_announcements() -> None:
    """Forget the servers whose owners died without closing their lab (a killed kernel), and their temporary files."""
    folder = state_dir() / "servers"
    for announcement in folder.glob("*.json") if folder.is_dir() else ():
        announced = _read_announcement(announcement)
        if announced is None or pid_alive(announced[0]):
            continue
        path = announced[1]
        announcement.unlink(missing_ok=True)
        if path.name.startswith("payments-server-"):  # the kit's own temporary file, never a learner's
            remove_repository_file(path)


def open_repository(
    address: str,
    *,
    own_server: bool = False,
    explicit: str | Path | None = None,
    own_ledger: bool = False,
) -> PaymentRepository:
    """Open the repository this process should use (see the module docstring).

    Args:
        address: ``host:port`` of the server this process uses.
        own_server: Whether the server is this process's own embedded one. Its repository is
            announced under ``address``: ``explicit``, or else a temporary file removed when the
            repository is closed or moved to memory (:meth:`PaymentRepository.keep_in_memory`,
            what a closing lab does), or when this process exits.
        explicit: A file asked for by name (``--db``), used instead of the shared one.
        own_ledger: Accept ``explicit`` even though the lab shares another file (for a worker
            whose task queue no other worker polls).

    Raises:
        LedgerMismatchError: ``explicit`` differs from the file the lab of that server shares,
            without ``own_ledger``: two workers with two ledgers would charge a payment twice.
        RepositoryFileError: the file cannot hold the repository (its folder does not exist,
            it is a folder or another kind of file).
    """
    if own_server:
        return _open_own_server_repository(address, None if explicit is None else Path(explicit))
    shared = shared_repository_file(address, own_server=own_server)
    path = Path(explicit) if explicit is not None else shared
    if explicit is not None and not own_ledger:
        lab_file = _lab_repository_file(address)
        if lab_file is not None and not _same_file(Path(explicit), lab_file):
            raise LedgerMismatchError(
                f"--db {explicit} is not the repository of the lab that runs the server at {address} ({lab_file}): "
                "a payment charged by this worker and retried by another would be charged twice. Drop --db to "
                "share the lab's, or add --own-ledger for a task queue no other worker polls."
            )
    if explicit is None and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # the state folder, made on first use
    return PaymentRepository(path)


def _open_own_server_repository(address: str, explicit: Path | None) -> PaymentRepository:
    remove_stale_announcements()
    pid = os.getpid()
    path = explicit or own_server_repository_file(address, pid)
    if explicit is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_repository_file(path)  # a file left by an earlier process with this pid
    repository = PaymentRepository(path, on_close=None if explicit else lambda: _forget(address, path, pid))
    announce_repository_file(address, path, pid)
    if explicit is None:
        atexit.register(_forget, address, path, pid)  # a kernel shut down without closing its lab
    return repository


def _forget(address: str, path: Path, pid: int) -> None:
    """Withdraw this process's announcement for ``address`` and remove its temporary repository file."""
    announcement = _announcement(address)
    announced = _read_announcement(announcement)
    if announced is not None and announced[0] == pid:
        with contextlib.suppress(OSError):
            announcement.unlink(missing_ok=True)
    try:
        remove_repository_file(path)
    except OSError:  # on Windows, while a worker elsewhere still has it open: left for the next clean-up
        pass


def _same_file(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()
