"""Tests of which repository a process uses: one per lab session, shared, whatever the process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import FAST, new_id
from payments_lab.domain import PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import open_lab
from payments_lab.ledger import (
    LedgerMismatchError,
    announce_repository_file,
    announced_repository_file,
    machine_repository_file,
    open_repository,
    own_server_repository_file,
    remove_stale_announcements,
    session_repository_file,
    shared_repository_file,
)
from payments_lab.repository import PaymentRepository, RepositoryClosedError
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


def test_another_server_shares_the_machine_file_and_an_own_server_announces_a_file_of_its_own(session: LabSession) -> None:
    assert shared_repository_file("127.0.0.1:1", own_server=False) == machine_repository_file()
    assert shared_repository_file(session.address, own_server=True) is None
    own = open_repository("127.0.0.1:1", own_server=True)
    assert own.path == own_server_repository_file("127.0.0.1:1", os.getpid()) and own.path.is_file()
    # A worker started elsewhere on that server finds it, however the address is written.
    assert shared_repository_file("localhost:1", own_server=False) == own.path
    assert open_repository("127.0.0.1:1", explicit=own.path).path == own.path
    with pytest.raises(LedgerMismatchError, match="is not the repository of the lab that runs the server at 127.0.0.1:1"):
        open_repository("127.0.0.1:1", explicit=own.path.with_name("other.sqlite"))
    own.close()
    assert not own.path.exists(), "a lab's temporary file goes with it"
    assert shared_repository_file("127.0.0.1:1", own_server=False) == machine_repository_file()
    with pytest.raises(RepositoryClosedError, match="closed, with its lab: open the lab again"):
        own.ledger()


def test_a_lab_file_given_by_name_is_announced_and_kept(session: LabSession, tmp_path: Path) -> None:
    named = open_repository("127.0.0.1:2", own_server=True, explicit=tmp_path / "lab.sqlite")
    assert announced_repository_file("127.0.0.1:2") == tmp_path / "lab.sqlite"
    named.close()
    assert (tmp_path / "lab.sqlite").exists(), "the learner's file is the learner's"


def test_the_announcement_of_a_killed_kernel_is_forgotten_with_its_temporary_file(session: LabSession) -> None:
    dead = psutil.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = own_server_repository_file("127.0.0.1:3", dead.pid)
    PaymentRepository(orphan).close()
    announce_repository_file("127.0.0.1:3", orphan, dead.pid)
    assert announced_repository_file("127.0.0.1:3") is None, "its owner is gone: nobody shares it"
    remove_stale_announcements()
    assert not orphan.exists() and not list((orphan.parent / "servers").glob("*3.json"))


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


async def test_a_cli_worker_on_a_notebook_labs_own_server_shares_its_ledger_and_a_retry_charges_once(
    isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learner points ``payments-lab worker`` at the server their notebook's lab started, and kills it mid-charge."""
    monkeypatch.setenv("PAYMENTS_LAB_STATE_DIR", isolated["PAYMENTS_LAB_STATE_DIR"])
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    lab = await open_lab(f"own-{new_id()}", options=FAST)
    cli = None
    try:
        assert lab.connection.server is not None, "the lab runs a server of its own"
        await lab.worker.stop()  # the charge goes to the command's worker
        cli = subprocess.Popen(
            [sys.executable, "-m", "payments_lab", "worker", "--address", lab.connection.address, "--task-queue", lab.task_queue],
            stdout=subprocess.PIPE, text=True, env=isolated,
        )
        assert cli.stdout is not None
        ready = await asyncio.to_thread(cli.stdout.readline)
        assert f"ledger {lab.repository.path}" in ready, ready
        handle = await lab.start(lab.request("10.00"), faults=FaultPlan(charge=StepFaults(delay=3)), show_link=False)
        await lab.wait_until_charged(handle.payment_id)  # seen in the lab's own repository: one ledger
        cli.kill()
        cli.wait()
        await lab.worker.start()
        result = await asyncio.wait_for(handle.result(), 60)
        assert result.status is PaymentStatus.COMPLETED
        assert lab.repository.ledger_summary(handle.payment_id).charges == 1
        charges = [a for a in lab.repository.attempts(handle.payment_id) if a.activity == "charge_payment"]
        assert len(charges) == 2 and charges[0].worker != charges[1].worker
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
        path = lab.repository.path
        await lab.close()
    assert path is not None and not path.exists(), "the lab's temporary file goes with it"
    assert lab.repository.path is None and lab.repository.ledger_summary(handle.payment_id).charges == 1, "still readable"


async def test_a_cli_worker_on_a_notebook_labs_own_server_stops_when_that_lab_closes(
    isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the script (kernels round): the lab closed, its in-memory server and temporary ledger went with it, and the
    terminal's worker polled the dead address for ever, silent for minutes, then "keeps trying" every 5 minutes."""
    monkeypatch.setenv("PAYMENTS_LAB_STATE_DIR", isolated["PAYMENTS_LAB_STATE_DIR"])
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    lab = await open_lab(f"own-{new_id()}", options=FAST)
    cli = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "worker", "--address", lab.connection.address, "--task-queue", lab.task_queue],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated,
    )
    try:
        assert cli.stdout is not None
        assert "worker ready" in await asyncio.to_thread(cli.stdout.readline)
        await lab.close()
        _, said = await asyncio.to_thread(cli.communicate, timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        await lab.close()
    assert cli.returncode == 3, said
    assert "the notebook lab whose server this worker joined" in said and "this worker stops" in said, said
    assert "payments-lab lab" in said


async def test_a_cli_worker_that_finds_no_server_names_the_notebook_labs_own_one_and_that_way_in_works(
    isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the script: `!payments-lab worker` in a notebook whose lab runs its own server said "No Temporal server
    found", with a server running in the kernel beside it. The message now gives its address, and following it works."""
    monkeypatch.setenv("PAYMENTS_LAB_STATE_DIR", isolated["PAYMENTS_LAB_STATE_DIR"])
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    worker = [sys.executable, "-m", "payments_lab", "worker"]
    alone = await asyncio.to_thread(subprocess.run, worker, capture_output=True, text=True, env=isolated, timeout=60)
    assert alone.returncode != 0 and "No Temporal server found" in alone.stderr and "notebook" not in alone.stderr, alone.stderr
    lab = await open_lab(f"own-{new_id()}", options=FAST)
    try:
        found = await asyncio.to_thread(subprocess.run, worker, capture_output=True, text=True, env=isolated, timeout=60)
        assert found.returncode == alone.returncode
        assert f"runs a server of its own at {lab.connection.address} (process {os.getpid()})" in found.stderr, found.stderr
        assert f"`--address {lab.connection.address}`" in found.stderr and "`lab.task_queue`" in found.stderr
        # `pay` finds no server either: it pays on one of its own, gone with it, and says where the lab's is.
        pay = [sys.executable, "-m", "payments_lab", "pay", "--org", "org-acme", "--amount", "1.00", "--currency", "EUR"]
        paid = await asyncio.to_thread(subprocess.run, pay, capture_output=True, text=True, env=isolated, timeout=60)
        assert paid.returncode == 0 and "stopped with it" in paid.stderr, paid.stderr
        assert f"`--address {lab.connection.address}`" in paid.stderr
        cli = subprocess.Popen(
            [*worker, "--address", lab.connection.address, "--task-queue", lab.task_queue],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated,
        )
        try:
            assert cli.stdout is not None
            ready = await asyncio.to_thread(cli.stdout.readline)
            assert "worker ready" in ready and "Ctrl-C stops it" in ready, ready
            result = await lab.pay("5.00")
            assert result.status is PaymentStatus.COMPLETED and lab.repository.charge_count(result.payment_id) == 1
            cli.send_signal(signal.SIGINT)
            said, _ = await asyncio.to_thread(cli.communicate, timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0 and "worker stopped" in said, said
    finally:
        await lab.close()
