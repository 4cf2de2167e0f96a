"""Tests of which repository a process uses: one per lab session, shared, whatever the process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from payments_lab.ledger import (
    LedgerMismatchError,
    machine_repository_file,
    open_repository,
    session_repository_file,
    shared_repository_file,
)
from payments_lab.server import LabSession, clear_session, write_session


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabSession:
    """A published lab session whose 'server' is this test's listening socket."""
    import socket

    monkeypatch.setenv("PAYMENTS_LAB_STATE_DIR", str(tmp_path / "state"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    published = LabSession(address, "default", None, os.getpid(), None, str(tmp_path / "state" / "session-payments.sqlite"))
    write_session(published)
    yield published
    clear_session()
    listener.close()


def test_every_process_of_a_session_shares_its_file(session: LabSession) -> None:
    assert shared_repository_file(session.address, own_server=False) == Path(session.repository_file or "")
    same_server = session.address.replace("127.0.0.1", "localhost")
    assert shared_repository_file(same_server, own_server=False) == Path(session.repository_file or "")
    repository = open_repository(session.address)
    assert repository.path == Path(session.repository_file or "") and repository.path.is_file()
    repository.close()


def test_another_server_shares_the_machine_file_and_an_own_server_keeps_memory(session: LabSession) -> None:
    assert shared_repository_file("127.0.0.1:1", own_server=False) == machine_repository_file()
    assert shared_repository_file(session.address, own_server=True) is None
    assert open_repository("127.0.0.1:1", own_server=True).path is None


def test_a_worker_pointed_at_another_file_is_refused_unless_it_says_so(session: LabSession, tmp_path: Path) -> None:
    with pytest.raises(LedgerMismatchError, match="charged twice. Drop --db"):
        open_repository(session.address, explicit=tmp_path / "b.sqlite")
    assert open_repository(session.address, explicit=tmp_path / "b.sqlite", own_ledger=True).path == tmp_path / "b.sqlite"
    assert open_repository(session.address, explicit=session.repository_file).path == Path(session.repository_file or "")
    with pytest.raises(ValueError, match="the folder .* does not exist"):
        open_repository(session.address, explicit=tmp_path / "missing" / "x.sqlite", own_ledger=True)


def test_a_persistent_session_keeps_its_ledger_beside_the_server_database(tmp_path: Path) -> None:
    assert session_repository_file(tmp_path / "lab.sqlite", 42) == tmp_path / "lab-payments.sqlite"
    assert session_repository_file(None, 42).name == "payments-session-42.sqlite"
