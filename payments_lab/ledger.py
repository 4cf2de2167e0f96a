"""Which repository a process keeps payments and the processor's ledger in: one per lab, shared.

A company's services share one payment provider, and its idempotency keys are what stop a
retried charge from charging twice. Here every process that can run a payment of a lab
session — its notebooks, every ``payments-lab worker``, every ``payments-lab pay`` —
shares one repository file, whatever order they start in:

1. a lab session (``payments-lab lab`` or ``payments-lab server``) names its file;
2. on a server found another way (``TEMPORAL_ADDRESS``, a profile), the machine's file
   in the state folder is shared;
3. a process that runs its own embedded server, which nothing else reaches, keeps its
   repository in memory.
"""

from __future__ import annotations

from pathlib import Path

from payments_lab.errors import PaymentsLabError
from payments_lab.repository import PaymentRepository
from payments_lab.server import LabSession, read_session, state_dir


class LedgerMismatchError(PaymentsLabError, ValueError):
    """A worker was pointed at another repository than the one its lab session shares."""


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
    host, _, port = address.rpartition(":")
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
        The file, or None when the server is this process's own (memory is enough).
    """
    if own_server:
        return None
    session = session_of(address)
    if session is not None and session.repository_file:
        return Path(session.repository_file)
    return machine_repository_file()


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
        own_server: Whether the server is this process's own embedded one.
        explicit: A file asked for by name (``--db``), used instead of the shared one.
        own_ledger: Accept ``explicit`` even though a lab session shares another file
            (for a worker whose task queue no other worker polls).

    Raises:
        LedgerMismatchError: ``explicit`` differs from the lab session's file, without
            ``own_ledger``: two workers with two ledgers would charge a payment twice.
        RepositoryFileError: the file cannot hold the repository (its folder does not exist,
            it is a folder or another kind of file).
    """
    shared = shared_repository_file(address, own_server=own_server)
    path = Path(explicit) if explicit is not None else shared
    if explicit is not None and not own_ledger:
        session = session_of(address)
        if session is not None and session.repository_file and not _same_file(Path(explicit), Path(session.repository_file)):
            raise LedgerMismatchError(
                f"--db {explicit} is not the lab session's repository ({session.repository_file}): a payment "
                "charged by this worker and retried by another would be charged twice. Drop --db to share "
                "the session's, or add --own-ledger for a task queue no other worker polls."
            )
    if explicit is None and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # the state folder, made on first use
    return PaymentRepository(path)


def _same_file(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()
