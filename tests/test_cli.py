"""Tests of the command line, run as a learner would run it, in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from conftest import OpenLab, new_id
from payments_lab import cli
from payments_lab.domain import PaymentRequest, PaymentStatus
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.processes import free_port, leftovers
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "payments_lab", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def interrupt_all(processes: Iterable[subprocess.Popen[str]]) -> None:
    """Ctrl-C each process still running, in order, as a learner would; kill one that does not stop within 30 s."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def assert_no_process_left(env: dict[str, str]) -> None:
    if sys.platform.startswith("linux"):  # leftovers are found through /proc
        assert leftovers(env["PAYMENTS_LAB_MARK"]) == []


def test_pay_retries_the_charge_and_charges_once(isolated: dict[str, str]) -> None:
    done = run("pay", "--org", "org-acme", "--amount", "10.00", "--currency", "EUR", "--fail-charge", "2", env=isolated)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["status"] == "completed" and output["success"] is True
    assert output["attempts"] == {"validate": 1, "charge": 3, "notify": 1}
    assert output["charges"] == 1
    said = done.stderr.strip().splitlines()
    assert len(said) == 1, "failed attempts on purpose are not shouted on stderr: " + done.stderr
    assert said[0].startswith("payments-lab pay: this ran on a Temporal server of the command's own, stopped with it")
    assert output["ui_url"] is None and "notebook" not in said[0], "no link to a server that is gone, and no notebook lab here"
    assert_no_process_left(isolated)


def test_pay_declines_a_negative_amount(isolated: dict[str, str]) -> None:
    done = run("pay", "--org", "org-acme", "--amount", "-5", "--currency", "EUR", env=isolated)
    assert done.returncode == 1
    output = json.loads(done.stdout)
    assert output["status"] == "declined" and output["success"] is False
    assert output["message"] == "declined: amount must be greater than zero, got -5"
    assert output["charges"] == 0 and output["attempts"] == {"validate": 1}
    assert_no_process_left(isolated)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pay", "--org", "org-acme", "--amount", "ten", "--currency", "EUR"], "amount 'ten' is not a number"),
        (["pay", "--org", "org-acme", "--amount", "1"], "the following arguments are required: --currency"),
        (["pay", "--org", "o", "--amount", "1", "--currency", "EUR", "--fail-charge", "-1"], "not a whole number"),
        (["list", "--status", "weird"], "unknown payment status 'weird'"),
        (["list", "--limit", "-1"], "-1 is not a whole number >= 0"),
        (["fly"], "invalid choice: 'fly'"),
        (["pay", "--org", "o", "--amount", "1", "--currency", "EUR", "--fail-charge", "1.5"], "--fail-charge: '1.5' is not a whole number"),
        (["worker", "--task-queue", " "], "--task-queue: a task queue needs a name"),
        (["worker", "--latency", "inf"], "--latency: inf is not a number of seconds >= 0"),
        (["worker", "--failure-rate", "x"], "--failure-rate: 'x' is not a rate between 0 and 1"),
        # Off the script (rooms round): port 0 handed every learner a line with port 0; 70000 started a server that failed.
        (["room", "--learners", "2", "--port", "0"], "--port: 0 is not a port: give 1 to 65535"),
        (["room", "--learners", "2", "--ui-port", "70000"], "--ui-port: 70000 is not a port: give 1 to 65535"),
        (["server", "--port", "x"], "--port: 'x' is not a port number"),
        # The same port twice: the lines were handed out, then the server died ("stopped unexpectedly").
        (["room", "--learners", "2", "--port", "17233", "--ui-port", "17233"], "--ui-port and --port are both 17233"),
    ],
)
def test_bad_usage_is_one_line_and_exit_code_2(isolated: dict[str, str], args: list[str], expected: str) -> None:
    done = run(*args, env=isolated)
    assert done.returncode == 2
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_commands_without_a_server_say_how_to_start_one(isolated: dict[str, str]) -> None:
    done = run("status", "nope", env=isolated)
    assert done.returncode == 3
    assert "payments-lab lab" in done.stderr and "Traceback" not in done.stderr


def test_a_lab_server_is_shared_by_every_command(isolated: dict[str, str]) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    try:
        banner = [server.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        assert banner[0].startswith("Temporal server: 127.0.0.1:")
        assert banner[1].startswith("Temporal Web UI: http://127.0.0.1:")
        payment_id = f"cli-{uuid.uuid4().hex[:8]}"
        paid = run("pay", "--org", "org-globex", "--amount", "7.25", "--currency", "USD", "--id", payment_id, env=isolated)
        assert paid.returncode == 0, paid.stderr
        assert json.loads(paid.stdout)["ui_url"].endswith(f"/workflows/payment-{payment_id}")

        again = run("pay", "--org", "org-globex", "--amount", "7.25", "--currency", "USD", "--id", payment_id, env=isolated)
        assert again.returncode == 1
        duplicate = json.loads(again.stdout)
        assert duplicate["duplicate"] is True and "nothing was started or charged again" in duplicate["message"]

        status = run("status", payment_id, env=isolated)
        assert status.returncode == 0
        assert json.loads(status.stdout)["payment_status"] == "completed"

        listed = run("list", "--org", "org-globex", env=isolated)
        assert [p["payment_id"] for p in json.loads(listed.stdout)] == [payment_id]

        missing = run("cancel", "nope", env=isolated)
        assert missing.returncode == 3 and "no payment 'nope'" in missing.stderr

        second = subprocess.run(
            [sys.executable, "-m", "payments_lab", "server"], capture_output=True, text=True, env=isolated, timeout=30
        )
        assert second.returncode == 2 and "already running" in second.stderr
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert not (Path(isolated["PAYMENTS_LAB_STATE_DIR"]) / "session.json").exists()
    assert_no_process_left(isolated)


def test_the_main_command_brings_up_jupyterlab_and_the_server(isolated: dict[str, str]) -> None:
    import urllib.request

    from payments_lab.processes import free_port

    port = free_port()
    lab = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "lab", "--no-browser", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=isolated,
        cwd=Path(isolated["PAYMENTS_LAB_STATE_DIR"]).parent,  # not the repository: the lessons are found all the same
    )
    try:
        lines = [lab.stdout.readline().strip() for _ in range(5)]  # type: ignore[union-attr]
        assert lines[4].startswith("Open 00-welcome.ipynb to begin ("), lines[4]
        assert lines[0].startswith("Temporal server: 127.0.0.1:")
        assert lines[1].startswith("Temporal Web UI: http://127.0.0.1:")
        assert lines[2].startswith("Payments ledger: ")
        assert lines[3].startswith(f"JupyterLab:      http://127.0.0.1:{port}/lab?token=")
        token = lines[3].split("token=")[1]
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/00-welcome.ipynb?content=0&token={token}") as reply:
                    assert json.load(reply)["name"] == "00-welcome.ipynb"
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer"
                time.sleep(0.5)
        session = json.loads((Path(isolated["PAYMENTS_LAB_STATE_DIR"]) / "session.json").read_text())
        assert lines[0].endswith(session["address"] + " (namespace default)")
        ledger = Path(session["repository_file"])
        assert lines[2].startswith(f"Payments ledger: {ledger} ")
        assert ledger.is_file()
    finally:
        lab.send_signal(signal.SIGINT)
        lab.wait(timeout=60)
    assert lab.returncode == 0
    assert not ledger.exists()  # an in-memory server's payments go with it
    assert_no_process_left(isolated)


def _readme_commands(section: str) -> list[list[str]]:
    """The commands of the README's first console block under ``section``, split like a shell would."""
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split(section, 1)[1].split("```console", 1)[1].split("```", 1)[0]
    return [shlex.split(line[2:], comments=True) for line in block.splitlines() if line.startswith("$ ")]


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_crash_it_by_hand_as_the_readme_says(isolated: dict[str, str]) -> None:
    """The README's four-terminal crash: one worker killed mid-charge, another one finishes, one charge."""
    from payments_lab.repository import PaymentRepository

    commands = _readme_commands("### Crash it by hand")
    assert [c[:2] for c in commands] == [
        ["payments-lab", "server"], ["payments-lab", "worker"], ["payments-lab", "pay"], ["pkill", "-9"], ["payments-lab", "worker"]
    ]
    script = str(Path(sys.executable).parent / "payments-lab")

    def start(command: list[str]) -> subprocess.Popen[str]:
        assert command[0] == "payments-lab"
        return subprocess.Popen(
            [script, *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
        )

    server = start(commands[0])
    started: list[subprocess.Popen[str]] = [server]
    try:
        assert server.stdout.readline().startswith("Temporal server: ")  # type: ignore[union-attr]
        session = json.loads((Path(isolated["PAYMENTS_LAB_STATE_DIR"]) / "session.json").read_text())
        ledger = PaymentRepository(session["repository_file"])
        first = start(commands[1])
        started.append(first)
        assert "payments-lab worker ready" in first.stdout.readline()  # type: ignore[union-attr]
        pay = start(commands[2])
        started.append(pay)
        _wait_for(lambda: ledger.ledger(), 60, "the first worker's charge")
        # The README's `pkill -9 -f "payments-lab worker"` would also hit other runs' workers: kill this one.
        pattern = commands[3][-1]
        assert pattern in Path(f"/proc/{first.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        first.kill()
        first.wait()
        second = start(commands[4])
        started.append(second)
        out, err = pay.communicate(timeout=90)
        assert pay.returncode == 0, err
        result = json.loads(out)
        assert result["status"] == "completed"
        assert result["attempts"]["charge"] == 2
        assert result["charges"] == 1 and result["refunds"] == 0
        assert [e.kind for e in ledger.ledger(result["payment_id"])] == ["charge"]

        status = run("status", result["payment_id"], env=isolated)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["payment_status"] == "completed" and shown["charges"] == 1 and shown["attempts"]["charge"] == 2
        ledger.close()
    finally:
        interrupt_all(reversed(started))
    assert_no_process_left(isolated)


def test_a_worker_on_another_ledger_than_the_session_is_refused(isolated: dict[str, str], tmp_path: Path) -> None:
    from payments_lab.repository import PaymentRepository

    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    try:
        server.stdout.readline()  # type: ignore[union-attr]
        refused = run("worker", "--db", str(tmp_path / "b.sqlite"), env=isolated, timeout=30)
        assert refused.returncode == 2
        assert "charged twice" in refused.stderr and "Drop --db" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        missing = run("worker", "--db", str(tmp_path / "missing" / "x.sqlite"), "--own-ledger", env=isolated, timeout=30)
        assert missing.returncode == 2 and "does not exist" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
        own = subprocess.Popen(
            [sys.executable, "-m", "payments_lab", "worker", "--task-queue", "own", "--db", str(tmp_path / "own.sqlite"), "--own-ledger"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated,
        )
        try:
            assert "payments-lab worker ready" in own.stdout.readline()  # type: ignore[union-attr]
            paid = run("pay", "--org", "org-acme", "--amount", "3.00", "--currency", "EUR", "--task-queue", "own", "--id", "own-1",
                       env=isolated)
            shown = run("status", "own-1", env=isolated)
        finally:
            own.send_signal(signal.SIGINT)
            own.wait(timeout=30)
        for output in (json.loads(paid.stdout), json.loads(shown.stdout)):
            assert output["charges"] == 0, "the session's ledger does not hold that worker's charge"
            assert "--own-ledger" in output["ledger_note"] and "holds no charge of own-1" in output["ledger_note"]
        own_ledger = PaymentRepository(tmp_path / "own.sqlite")
        assert own_ledger.ledger_summary("own-1").charges == 1, "that worker's own file holds it"
        own_ledger.close()
        alone = run("pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--task-queue", "q", env={
            **isolated, "PAYMENTS_LAB_STATE_DIR": str(tmp_path / "nowhere")}, timeout=30)
        assert alone.returncode == 3 and "payments-lab server" in alone.stderr, "no server for --task-queue: no hang"
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert_no_process_left(isolated)


def _until_the_session_shows(what: str, check: Callable[[Client], Awaitable[bool]]) -> None:
    """Until ``check`` says the isolated session's server shows ``what`` (10 s at most)."""
    from payments_lab.client import connect

    async def wait() -> None:
        connection = await connect(start_server=False)
        try:
            for _ in range(200):
                with contextlib.suppress(RPCError):
                    if await check(connection.client):
                        return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the session's server never showed {what}")
        finally:
            await connection.close()

    asyncio.run(wait())


def _wait_for_the_charge(payment_id: str) -> None:
    """Until payment ``payment_id`` has started its charge (it has a pending charge activity)."""

    async def charging(client: Client) -> bool:
        pending = (await client.get_workflow_handle(f"payment-{payment_id}").describe()).raw_description.pending_activities
        return any(p.activity_type.name == "charge_payment" for p in pending)

    _until_the_session_shows(f"payment {payment_id} in its charge", charging)


def test_ctrl_c_or_sigterm_on_pay_settles_the_payment_its_own_worker_ran_and_says_what_runs_on(
    isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off the script: Ctrl-C (or `kill`, `timeout`: SIGTERM) on `pay` during the charge's retries exited without a word,
    and the payment stayed pending for ever on the command's private task queue (`cancel` said it worked and changed
    nothing: no worker ran it)."""
    for name, value in isolated.items():
        monkeypatch.setenv(name, value)  # this test's own client finds the isolated session
    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    try:
        server.stdout.readline()  # type: ignore[union-attr]
        outcomes = {}
        cases = (
            ("own-1", ["--fail-charge", "3"], signal.SIGINT),
            ("own-2", ["--fail-charge", "3"], signal.SIGTERM),
            ("queued-1", ["--task-queue", "nobody-polls"], signal.SIGINT),
        )
        for payment_id, extra, stop in cases:
            pay = subprocess.Popen(
                [sys.executable, "-m", "payments_lab", "pay", "--org", "org-acme", "--amount", "7.00", "--currency", "EUR",
                 "--id", payment_id, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated,
            )
            said = ""
            if "--task-queue" in extra:
                said = pay.stderr.readline()  # type: ignore[union-attr]  # started, and waiting for a worker that never comes
                assert "started on task queue 'nobody-polls'" in said, said
            else:
                _wait_for_the_charge(payment_id)  # its charge's first attempt failed or runs: 1 s and 2 s of retries ahead
            pay.send_signal(stop)
            _, err = pay.communicate(timeout=60)
            outcomes[payment_id] = (pay.returncode, said + err)
        for payment_id, code in (("own-1", 130), ("own-2", 143)):
            returned, err = outcomes[payment_id]
            assert returned == code and f"cancelling payment {payment_id}" in err and f"payment {payment_id} cancelled" in err, err
            assert json.loads(run("status", payment_id, env=isolated).stdout)["payment_status"] == "cancelled"
        code, err = outcomes["queued-1"]
        assert code == 130 and "payment queued-1 runs on with the workers of task queue 'nobody-polls'" in err, err
        cancelled = run("cancel", "queued-1", env=isolated)
        assert cancelled.returncode == 0
        assert "no worker polls task queue 'nobody-polls'" in cancelled.stderr and "--task-queue nobody-polls" in cancelled.stderr
    finally:
        interrupt_all([server])
    assert_no_process_left(isolated)


async def test_ctrl_c_while_pay_starts_asks_the_server_before_it_cancels(
    client: Client, task_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off the script: Ctrl-C on a slow machine reached `pay` while its start was on its way, and it left in silence: a
    start that had reached the server left the payment pending for ever on the command's private task queue."""
    service = PaymentService(client, task_queue, scoped=False)
    never = new_id("never")
    await cli._after_interrupt(service.handle(never), task_queue, own_worker=True)
    assert f"interrupted before payment {never} started: nothing was charged" in capsys.readouterr().err
    earlier = new_id("earlier")
    await service.start(PaymentRequest(earlier, "org-acme", "u", "7.00", "EUR"))  # another command's, waiting on its queue
    try:
        await cli._after_interrupt(service.handle(earlier), f"cli-{uuid.uuid4().hex[:8]}", own_worker=True)
        said = capsys.readouterr().err
        assert f"payment {earlier} was started earlier by another command (task queue {task_queue!r}) and is left" in said, said
        assert (await service.status(earlier)).is_running  # not this command's to cancel
    finally:
        await service.handle(earlier).workflow.terminate(reason="test over")
    # The server gone as well: nothing to ask, so `pay` says where to look and how the payment would run, and leaves.
    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", namespace=client.namespace, lazy=True)
    unknown = new_id("unknown")
    async with asyncio.timeout(cli.INTERRUPTED_SETTLE_WAIT + 10):
        await cli._after_interrupt(PaymentService(nowhere, task_queue, scoped=False).handle(unknown), task_queue, own_worker=True)
    said = capsys.readouterr().err
    assert f"whether payment {unknown} started is unknown" in said, said
    assert f"`payments-lab status {unknown}` tells" in said and f"--task-queue {task_queue}" in said, said


def _wait_for_poller(task_queue: str, count: int) -> None:
    """Until the session's server lists ``count`` live workers of ``task_queue`` (a worker says it is ready just before it polls)."""
    from payments_lab.task_queues import live_pollers

    async def polled(client: Client) -> bool:
        return len(await live_pollers(client, task_queue)) >= count

    _until_the_session_shows(f"{count} workers of {task_queue!r}", polled)


def test_workers_with_two_ledgers_never_share_a_task_queue(isolated: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the script: `--own-ledger` on the session's queue, then the worker killed mid-charge: the other worker's retry
    charged the customer a second time, in the other ledger, and `pay` said one charge."""
    for name, value in isolated.items():
        monkeypatch.setenv(name, value)  # this test's own client finds the isolated session
    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        server.stdout.readline()  # type: ignore[union-attr]
        for extra in ([], ["--task-queue", "own", "--db", str(tmp_path / "own.sqlite"), "--own-ledger"]):
            workers.append(subprocess.Popen([sys.executable, "-m", "payments_lab", "worker", *extra],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated))
            assert "payments-lab worker ready" in workers[-1].stdout.readline()  # type: ignore[union-attr]
        _wait_for_poller("payments", 1)
        _wait_for_poller("own", 1)
        beside_shared = run("worker", "--db", str(tmp_path / "b.sqlite"), "--own-ledger", env=isolated, timeout=30)
        assert beside_shared.returncode == 2, beside_shared.stdout
        assert "needs a task queue no other worker polls" in beside_shared.stderr and "charged twice" in beside_shared.stderr
        assert "--task-queue payments-own" in beside_shared.stderr, "the message names the fix"
        beside_own = run("worker", "--task-queue", "own", env=isolated, timeout=30)
        assert beside_own.returncode == 2, beside_own.stdout
        assert "keeps a ledger of its own" in beside_own.stderr and "own-ledger" in beside_own.stderr
        assert all(len(refused.stderr.strip().splitlines()) == 1 for refused in (beside_shared, beside_own))
        second_shared = subprocess.Popen([sys.executable, "-m", "payments_lab", "worker"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated)
        workers.append(second_shared)
        assert "payments-lab worker ready" in second_shared.stdout.readline(), "workers sharing the lab's ledger may share a queue"  # type: ignore[operator]
        # Off the script: a second session's worker (another state folder: another learner, another terminal) pointed at
        # this server kept the machine file of its own folder: killed mid-charge, 20 of 40 payments were charged twice.
        address = json.loads((Path(isolated["PAYMENTS_LAB_STATE_DIR"]) / "session.json").read_text())["address"]
        other_session = {**isolated, "PAYMENTS_LAB_STATE_DIR": str(tmp_path / "other-state"), "TEMPORAL_ADDRESS": address}
        from_elsewhere = run("worker", env=other_session, timeout=30)
        assert from_elsewhere.returncode == 2, from_elsewhere.stdout
        assert "polled by a worker that charges into another ledger" in from_elsewhere.stderr and "--task-queue payments-2" in from_elsewhere.stderr
    finally:
        interrupt_all([*workers, server])
    assert_no_process_left(isolated)


def test_two_ledgers_started_at_the_same_moment_still_never_share_a_task_queue(isolated: dict[str, str], tmp_path: Path) -> None:
    """Off the script: a shell line starting an `--own-ledger` worker and a plain one on one queue at once. Both read the
    server's pollers before either polled, so both passed, and a retried charge could land in the other ledger."""
    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    workers: list[subprocess.Popen[str]] = []
    try:
        server.stdout.readline()  # type: ignore[union-attr]
        for round_number in range(3):
            queue = f"race-{round_number}"
            together = [
                ["worker", "--task-queue", queue, "--db", str(tmp_path / f"own-{round_number}.sqlite"), "--own-ledger"],
                ["worker", "--task-queue", queue],
            ]
            started = [subprocess.Popen([sys.executable, "-m", "payments_lab", *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=isolated) for args in together]
            workers += started
            lines = [process.stdout.readline() for process in started]  # type: ignore[union-attr]
            ready = [line for line in lines if "payments-lab worker ready" in line]
            assert len(ready) == 1, f"round {round_number}: exactly one of the two may poll {queue!r}, got {lines}"
            refused = next(process for process, line in zip(started, lines, strict=True) if line not in ready)
            assert refused.wait(timeout=30) == 2
            assert "charged twice" in refused.stderr.read()  # type: ignore[union-attr]
    finally:
        interrupt_all([*workers, server])
    assert_no_process_left(isolated)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pay", "--org", "org\udcff", "--amount", "1", "--currency", "EUR"], "organization_id is not valid text"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--description", "caf\udce9"], "description is not valid text"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--id", "x\udcff"], "payment_id is not valid text"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--id", "p" * 1200], "at most 200"),
        (["pay", "--org", "o" * 3000, "--amount", "1", "--currency", "EUR"], "organization_id is 3,000 characters"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "E" * 3000], "currency is 3,000 characters"),
        (["status", "x\udcff"], "payment_id is not valid text"),
        (["cancel", "x\x01"], "payment_id contains a control character"),
        (["list", "--org", "caf\udce9"], "organization_id is not valid text"),
        (["worker", "--task-queue", "q\udce9"], "--task-queue is not valid text"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--task-queue", "q\udce9"], "--task-queue is not valid text"),
        (["worker", "--namespace", "n\udce9"], "--namespace is not valid text"),
        # Off the script, each: a traceback and exit 1, or a payment pending on a queue no typed command reaches.
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--task-queue", "pay\tments"], "holds a control character"),
        (["pay", "--org", "org-acme", "--amount", "1", "--currency", "EUR", "--task-queue", "q" * 2000], "is 2,000 bytes long"),
        (["list", "--org", "o\x01"], "organization_id contains a control character"),
        (["pay", "--org", "\U0001f642" * 171, "--amount", "1", "--currency", "EUR"], "at most 170 are accepted"),
        (["pay", "--org", "org-acme", "--amount", "9" * 20000, "--currency", "EUR"], "amount has 20,000 digits"),
    ],
)
def test_input_that_cannot_reach_temporal_is_refused_at_the_door(
    isolated: dict[str, str], args: list[str], expected: str
) -> None:
    # os.fsencode turns a lone surrogate back into the raw byte a Latin-1 terminal sends.
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"payments_lab", *map(os.fsencode, args)],
        capture_output=True, env=isolated, timeout=60,
    )
    stderr = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 2, stderr
    assert expected in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (Path(isolated["PAYMENTS_LAB_STATE_DIR"]) / "session.json").exists()


def test_cancelling_an_ended_payment_says_so_and_a_taken_port_names_the_fix(isolated: dict[str, str]) -> None:
    import socket

    server = subprocess.Popen(
        [sys.executable, "-m", "payments_lab", "server"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated
    )
    try:
        server.stdout.readline()  # type: ignore[union-attr]
        paid = run("pay", "--org", "org-acme", "--amount", "3.00", "--currency", "EUR", env=isolated)
        payment_id = json.loads(paid.stdout)["payment_id"]
        cancelled = run("cancel", payment_id, env=isolated)
        assert cancelled.returncode == 1
        assert f"payment {payment_id} already ended (completed): nothing to cancel" in cancelled.stderr
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert "Stopping the server" in err and "Stopping the lab" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outside_make = {k: v for k, v in isolated.items() if k != "MAKELEVEL"}  # `make test` sets it
        done = run("lab", "--no-browser", "--port", str(port), env=outside_make, timeout=60)
        under_make = run("lab", "--no-browser", "--port", str(port), env={**isolated, "MAKELEVEL": "1"}, timeout=60)
    assert done.returncode == 2
    assert f"port {port} is already in use" in done.stderr and "--port " in done.stderr
    assert under_make.returncode == 2 and "e.g. make lab PORT=" in under_make.stderr, "make cannot pass --port"
    assert_no_process_left(isolated)


def test_make_lab_takes_the_port_as_a_variable() -> None:
    root = Path(__file__).resolve().parent.parent
    dry = subprocess.run(["make", "-n", "lab", "PORT=8890"], capture_output=True, text=True, timeout=30, cwd=root)
    assert ".venv/bin/payments-lab lab --port 8890" in dry.stdout.splitlines(), dry.stdout


def test_the_lab_serves_the_lessons_from_any_folder_or_says_where_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from payments_lab.cli import KIT_NOTEBOOKS, UsageError, lesson_folder

    monkeypatch.chdir(tmp_path)  # not the repository's root: no ./notebooks here
    assert lesson_folder(None) == (KIT_NOTEBOOKS, True) and (KIT_NOTEBOOKS / "00-welcome.ipynb").is_file()
    assert lesson_folder(None, kit_notebooks=tmp_path / "installed-without-them") == (tmp_path, False)
    (tmp_path / "empty").mkdir()
    assert lesson_folder(tmp_path / "empty") == (tmp_path / "empty", False)
    with pytest.raises(UsageError, match="--notebook-dir .*missing is not a folder"):
        lesson_folder(tmp_path / "missing")


def test_status_cancel_and_list_close_their_connection(dev_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, to see each command's connection closed, also when the payment does not exist."""
    from payments_lab import cli
    from payments_lab.client import Connection

    closed: list[str] = []
    close = Connection.close

    async def counted_close(self: Connection) -> None:
        closed.append(self.address)
        await close(self)

    monkeypatch.setattr(Connection, "close", counted_close)
    address = ["--address", dev_server.address]
    assert cli.main(["list", *address]) == cli.EXIT_OK
    assert cli.main(["status", "no-such-payment", *address]) == cli.EXIT_UNAVAILABLE
    assert cli.main(["cancel", "no-such-payment", *address]) == cli.EXIT_UNAVAILABLE
    assert closed == [dev_server.address] * 3


async def test_status_counts_an_attempt_still_under_way(open_test_lab: OpenLab) -> None:
    """A charge waiting for the processor is not in the history yet: `status` said "charge": 0 beside "charges": 1."""
    from payments_lab.cli import _attempts_json

    lab = await open_test_lab("under-way")
    handle = await lab.start(lab.request("4.00"), faults=FaultPlan(charge=StepFaults(delay=3)), show_link=False)
    await lab.wait_until_charged(handle.payment_id)
    assert await _attempts_json(handle) == {"validate": 1, "charge": 1}
    assert (await handle.result()).status is PaymentStatus.COMPLETED
    assert await _attempts_json(handle) == {"validate": 1, "charge": 1, "notify": 1}


@pytest.mark.skipif(sys.platform == "win32", reason="a pipe closed under a writer is EPIPE on POSIX")
def test_output_read_by_a_reader_that_went_away_ends_without_a_traceback(dev_server: EmbeddedServer, isolated: dict[str, str]) -> None:
    """Off the script: `payments-lab list | head -3` ended now and then in a BrokenPipeError traceback, exit 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # `head` has read its lines and gone: every write now fails
    try:
        ended = subprocess.run(
            [sys.executable, "-m", "payments_lab", "list", "--address", dev_server.address],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=isolated, timeout=90,
        )
    finally:
        os.close(write_end)
    assert ended.returncode == 141, ended.stderr
    assert "Traceback" not in ended.stderr and "BrokenPipeError" not in ended.stderr, ended.stderr


def test_a_room_out_folder_that_is_a_file_is_refused_before_the_server_starts(isolated: dict[str, str], tmp_path: Path) -> None:
    """Off the script (rooms round): `--out` naming a file gave a FileExistsError traceback after the server had started."""
    taken = tmp_path / "room-env"
    taken.write_text("not a folder")
    done = run("room", "--learners", "2", "--port", str(free_port()), "--ui-port", str(free_port()), "--out", str(taken), env=isolated)
    assert done.returncode == 2 and f"--out {taken} is a file: pass a folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Room of" not in done.stdout
    assert_no_process_left(isolated)
