"""Fault matrix: load with failing charges, a killed worker, a server outage, a stopped server, cancellations, CLI workers.

Each scenario runs real payments on real servers, then audits what Temporal and the processor's
ledger recorded, and prints::

    <name>_terminal=N/N <name>_double_charges=0 <name>_stuck=0 <name>_client_errors=0
    <name>_median_s=… <name>_elapsed_s=… <name>_statuses=completed:…

* terminal: payments whose workflow closed with a final payment status;
* double charges: payments with more than one ``charge`` entry in the ledger;
* stuck: payments left ``pending``/``processing`` in visibility or in the repository;
* client errors: client calls that raised (a start, a result, a cancel; a ``pay`` command
  that crashed or printed no JSON).

Usage::

    python bench/faults.py                         # the six scenarios at full size (server_stop: Linux, macOS)
    python bench/faults.py --scale 0.1             # a tenth of every count
    python bench/faults.py --only cancel --count cancel=300

The scenario functions are imported by ``tests/test_fault_matrix.py``, which runs them small.
Everything started here is stopped at the end, even on failure; the last line counts leftovers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from payments_lab import processes
from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentStatus, workflow_id_for
from payments_lab.faults import FaultProfile
from payments_lab.fleet import FleetPlan, PlannedPayment, plan_fleet
from payments_lab.lab import quiet_logs
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.search_attributes import PAYMENT_STATUS
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentHandle, PaymentService
from payments_lab.worker import READY_LINE, BackgroundWorker, WorkerProcess

SCENARIOS = ("load", "worker_kill", "server_outage", "server_stop", "cancel", "cli_workers")
"""The scenarios, in the order they run."""

FULL_COUNTS: dict[str, int] = {
    "load": 1000,
    "worker_kill": 300,
    "server_outage": 100,
    "server_stop": 100,
    "cancel": 100,
    "cli_workers": 30,
}
"""Payments per scenario at ``--scale 1``."""

MARK_VARIABLE = "PAYMENTS_LAB_MARK"
"""Environment variable that marks every process a run starts, to find leftovers."""

OPTIONS = PaymentOptions(
    initial_interval=timedelta(milliseconds=100),
    maximum_interval=timedelta(seconds=1),
    validate_timeout=timedelta(seconds=5),
    notify_timeout=timedelta(seconds=5),
    charge_heartbeat_timeout=timedelta(seconds=2),
)
"""Retry options of the scenarios' payments: quick retries, and a lost attempt noticed within seconds."""

_UNFINISHED = (PaymentStatus.PENDING.value, PaymentStatus.PROCESSING.value)


@dataclass
class Outcome:
    """What one scenario did and what the audit found."""

    name: str
    """Scenario name."""
    total: int
    """Payments it ran."""
    terminal: int = 0
    """Payments whose workflow closed with a final payment status."""
    double_charges: int = 0
    """Payments with more than one charge in the ledger."""
    stuck: int = 0
    """Payments left pending or processing in visibility or the repository."""
    client_errors: int = 0
    """Client calls that raised."""
    latencies: list[float] = field(default_factory=list)
    """Seconds from start to result, per payment that returned one."""
    elapsed: float = 0.0
    """Wall-clock seconds of the whole scenario, set-up and audit included."""
    statuses: Counter[str] = field(default_factory=Counter)
    """Final payment statuses, as the clients saw them."""
    errors: list[str] = field(default_factory=list)
    """The first client errors, to read."""
    notes: dict[str, object] = field(default_factory=dict)
    """Scenario-specific figures (outage length, late cancellations, ...)."""

    @property
    def ok(self) -> bool:
        """Whether every payment ended, none was charged twice or left stuck, and no client call raised."""
        return (
            self.terminal == self.total and self.double_charges == 0 and self.stuck == 0 and self.client_errors == 0
        )

    def client_error(self, what: str, err: BaseException | str) -> None:
        """Count one client call that raised."""
        self.client_errors += 1
        if len(self.errors) < 5:
            self.errors.append(f"{what}: {err if isinstance(err, str) else f'{type(err).__name__}: {err}'}")

    def lines(self) -> list[str]:
        """The printed figures: the invariants, then timings and what happened."""
        n = self.name
        median = statistics.median(self.latencies) if self.latencies else float("nan")
        statuses = ",".join(f"{s}:{c}" for s, c in sorted(self.statuses.items())) or "none"
        timing = f"{n}_median_s={median:.2f} {n}_elapsed_s={self.elapsed:.1f} {n}_statuses={statuses}"
        extra = " ".join(f"{n}_{key}={value}" for key, value in self.notes.items())
        lines = [
            f"{n}_terminal={self.terminal}/{self.total} {n}_double_charges={self.double_charges} "
            f"{n}_stuck={self.stuck} {n}_client_errors={self.client_errors}",
            timing + (f" {extra}" if extra else ""),
        ]
        lines += [f"{n}_error: {e}" for e in self.errors]
        return lines


# Audit


async def audit(outcome: Outcome, client: Client, payment_ids: Sequence[str], repository: PaymentRepository) -> None:
    """Fill ``terminal``, ``double_charges`` and ``stuck`` from Temporal and the ledger.

    Terminal comes from ``describe()`` of every workflow (closed, with a final payment
    status in its search attribute); stuck from visibility (a ``pending``/``processing``
    payment status listed for any of the payments, waiting a few seconds for visibility to
    catch up) and from the repository's stored status.
    """
    limit = asyncio.Semaphore(20)

    async def terminal(payment_id: str) -> bool:
        async with limit:
            try:
                described = await client.get_workflow_handle(workflow_id_for(payment_id)).describe()
            except RPCError:
                return False
        status = described.typed_search_attributes.get(PAYMENT_STATUS)
        closed = described.status not in (None, WorkflowExecutionStatus.RUNNING)
        return closed and status is not None and PaymentStatus(status).is_final

    outcome.terminal = sum(await asyncio.gather(*(terminal(p) for p in payment_ids)))
    outcome.double_charges = sum(1 for p in payment_ids if repository.charge_count(p) > 1)
    stored_stuck = {
        p for p in payment_ids if (stored := repository.find_by_id(p)) is not None and not stored.status.is_final
    }
    outcome.stuck = len(stored_stuck | await _stuck_in_visibility(client, payment_ids))


async def _stuck_in_visibility(client: Client, payment_ids: Sequence[str], patience: float = 10.0) -> set[str]:
    """The payments visibility lists as pending or processing, once it has caught up (within ``patience``)."""
    wanted = {workflow_id_for(p): p for p in payment_ids}
    statuses = ", ".join(f"'{s}'" for s in _UNFINISHED)
    query = f"WorkflowType = 'PaymentWorkflow' AND {PAYMENT_STATUS.name} IN ({statuses})"
    deadline = time.monotonic() + patience
    while True:
        found = {wanted[e.id] async for e in client.list_workflows(query) if e.id in wanted}
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


# Driving payments


@dataclass
class Drive:
    """Payments in flight: how many started, and the ledger to watch."""

    started: int = 0
    """Payments whose workflow has started."""
    finished: int = 0
    """Payments whose result (or error) came back."""


async def drive(
    service: PaymentService,
    planned: Sequence[PlannedPayment],
    outcome: Outcome,
    *,
    concurrency: int = 50,
    state: Drive | None = None,
    after_start: Callable[[int, PaymentHandle], Awaitable[None]] | None = None,
) -> None:
    """Run every payment to its end, ``concurrency`` at a time; count results and client errors.

    Args:
        service: Starts the payments and waits for them (riding out server outages).
        planned: The payments.
        outcome: Where latencies, statuses and client errors go.
        concurrency: Payments in flight at once.
        state: Counters another task watches (to strike at the right moment).
        after_start: Called with each payment's index and handle once it started (to cancel it).
    """
    state = state or Drive()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, payment: PlannedPayment) -> None:
        async with gate:
            began = time.perf_counter()
            try:
                handle = await service.start(payment.request, faults=payment.faults)
            except Exception as err:  # noqa: BLE001 - counted, never fatal
                outcome.client_error(f"start {payment.request.payment_id}", err)
                state.finished += 1
                return
            state.started += 1
            if after_start is not None:
                await after_start(index, handle)
            try:
                result = await handle.result()
            except Exception as err:  # noqa: BLE001 - counted, never fatal
                outcome.client_error(f"result {payment.request.payment_id}", err)
            else:
                outcome.latencies.append(time.perf_counter() - began)
                outcome.statuses[result.status.value] += 1
            state.finished += 1

    async with asyncio.TaskGroup() as group:
        for index, payment in enumerate(planned):
            group.create_task(one(index, payment))


def _plan(count: int, seed: int, prefix: str) -> list[PlannedPayment]:
    """``count`` seeded, valid payments with no per-payment faults (the worker's profile injects them)."""
    return plan_fleet(FleetPlan(count=count, charge_failure_rate=0.0, seed=seed, prefix=prefix))


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        await asyncio.sleep(0.05)


def _new_queue(name: str) -> str:
    return f"faults-{name}-{uuid.uuid4().hex[:8]}"


# The scenarios


async def scenario_load(count: int = 1000, *, seed: int = 1, failure_rate: float = 0.05) -> Outcome:
    """``count`` payments through one worker whose processor fails ``failure_rate`` of charge attempts."""
    outcome = Outcome("load", count)
    began = time.perf_counter()
    repository = PaymentRepository()
    with EmbeddedServer(ui=False) as server:
        client = (await connect(address=server.address)).client
        queue = _new_queue("load")
        profile = FaultProfile(charge_failure_rate=failure_rate, charge_latency=0, seed=seed)
        planned = _plan(count, seed, "load")
        service = PaymentService(client, queue, options=OPTIONS)
        async with BackgroundWorker(client, queue, PaymentActivities(repository, fault_profile=profile)):
            await drive(service, planned, outcome)
            await audit(outcome, client, [p.request.payment_id for p in planned], repository)
        failed_attempts = sum(1 for a in repository.attempts() if a.activity == "charge_payment" and a.outcome == "failed")
        outcome.notes["failed_charge_attempts"] = failed_attempts
    repository.close()
    outcome.elapsed = time.perf_counter() - began
    return outcome


async def scenario_worker_kill(count: int = 300, *, seed: int = 2, charge_latency: float = 0.5) -> Outcome:
    """``count`` payments on a worker process that is ``kill -9``ed once a third are charged; a new one finishes."""
    outcome = Outcome("worker_kill", count)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faults-worker-kill-") as folder, EmbeddedServer(ui=False) as server:
        db_file = Path(folder) / "payments.sqlite"
        repository = PaymentRepository(db_file)
        client = (await connect(address=server.address)).client
        queue = _new_queue("kill")
        profile = FaultProfile(charge_failure_rate=0.0, charge_latency=charge_latency, seed=seed)
        workers = [WorkerProcess(server.address, queue, db_file, fault_profile=profile)]
        try:
            workers[0].start()
            planned = _plan(count, seed, "kill")
            service = PaymentService(client, queue, options=OPTIONS)
            state = Drive()
            running = asyncio.create_task(drive(service, planned, outcome, state=state))
            try:
                await _until(lambda: len(repository.ledger()) >= max(1, count // 3) or running.done(), 300, "charges")
                in_flight = sum(1 for a in repository.attempts() if a.activity == "charge_payment" and a.outcome == "running")
                workers[0].kill()  # kill -9, charges on their way
                outcome.notes["charges_in_flight_at_kill"] = in_flight
                workers.append(WorkerProcess(server.address, queue, db_file, fault_profile=profile).start())
            finally:
                await running
            await audit(outcome, client, [p.request.payment_id for p in planned], repository)
        finally:
            for worker in workers:
                await worker.stop()
            repository.close()
    outcome.elapsed = time.perf_counter() - began
    return outcome


async def scenario_server_outage(count: int = 100, *, outage: float = 20.0, seed: int = 3, charge_latency: float = 1.0) -> Outcome:
    """``count`` clients wait for their payments while the server is ``kill -9``ed, down ``outage`` s, restarted on its file."""

    def restart(server: EmbeddedServer) -> None:
        server.start()  # same port, same SQLite file

    return await _server_away("server_outage", count, EmbeddedServer.kill, restart, outage=outage, seed=seed, charge_latency=charge_latency)


async def scenario_server_stop(count: int = 100, *, outage: float = 20.0, seed: int = 5, charge_latency: float = 1.0) -> Outcome:
    """``count`` clients wait for their payments while the server is stopped as Ctrl-Z stops it (SIGSTOP), ``outage`` s, then resumed.

    A stopped server keeps its port: the kernel accepts connections for it and nothing answers.
    """

    def stop(server: EmbeddedServer) -> None:
        os.kill(_pid(server), signal.SIGSTOP)  # type: ignore[attr-defined,unused-ignore]

    def resume(server: EmbeddedServer) -> None:
        os.kill(_pid(server), signal.SIGCONT)  # type: ignore[attr-defined,unused-ignore]

    return await _server_away("server_stop", count, stop, resume, outage=outage, seed=seed, charge_latency=charge_latency)


def _pid(server: EmbeddedServer) -> int:
    assert server.pid is not None, "the server is not running"
    return server.pid


async def _server_away(
    name: str,
    count: int,
    take_away: Callable[[EmbeddedServer], None],
    bring_back: Callable[[EmbeddedServer], None],
    *,
    outage: float,
    seed: int,
    charge_latency: float,
) -> Outcome:
    """``count`` clients wait for their payments while ``take_away`` has the server away ``outage`` s, until ``bring_back``."""
    outcome = Outcome(name, count)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as folder:
        server = EmbeddedServer(ui=False, db_file=Path(folder) / "temporal.sqlite", port=processes.free_port())
        repository = PaymentRepository(Path(folder) / "payments.sqlite")
        try:
            server.start()
            client = (await connect(address=server.address)).client
            queue = _new_queue(name)
            profile = FaultProfile(charge_failure_rate=0.0, charge_latency=charge_latency, seed=seed)
            planned = _plan(count, seed, name)
            service = PaymentService(client, queue, options=OPTIONS, outage_wait=timedelta(seconds=outage + 120))
            state = Drive()
            async with BackgroundWorker(client, queue, PaymentActivities(repository, fault_profile=profile)):
                running = asyncio.create_task(drive(service, planned, outcome, concurrency=count, state=state))
                try:
                    await _until(lambda: state.started + outcome.client_errors >= count or running.done(), 120, "starts")
                    await _until(lambda: bool(repository.ledger()) or running.done(), 120, "a first charge")
                    outcome.notes["waiting_at_kill"] = state.started - state.finished
                    take_away(server)  # every client is waiting for a result
                    try:
                        await asyncio.sleep(outage)
                    finally:
                        bring_back(server)
                finally:
                    await running
                await audit(outcome, client, [p.request.payment_id for p in planned], repository)
            outcome.notes["outage_s"] = f"{outage:g}"
        finally:
            server.stop()
            repository.close()
    outcome.elapsed = time.perf_counter() - began
    return outcome


async def scenario_cancel(count: int = 100, *, seed: int = 4, charge_latency: float = 0.5) -> Outcome:
    """``count`` payments cancelled at seeded random moments: before, during or after their charge.

    Cancelled before the charge, a payment ends ``cancelled``; during or after it (while it
    notifies), ``refunded``; once it has ended, the cancellation changes nothing: ``completed``.
    """
    outcome = Outcome("cancel", count)
    began = time.perf_counter()
    repository = PaymentRepository()
    draw = random.Random(seed)
    # Validation takes a few tens of ms, the charge ``charge_latency``, notification a few more.
    # 100 payments share one worker and queue up: the window is wide enough to land cancels
    # before, during and after the charges.
    moments = [draw.uniform(0.0, charge_latency * 6.0) for _ in range(count)]

    async def cancel_later(index: int, handle: PaymentHandle) -> None:
        await asyncio.sleep(moments[index])
        try:
            # Cancelling a workflow that has just closed is accepted and changes nothing.
            await handle.cancel()
        except Exception as err:  # noqa: BLE001 - counted, never fatal
            outcome.client_error(f"cancel {handle.payment_id}", err)

    with EmbeddedServer(ui=False) as server:
        client = (await connect(address=server.address)).client
        queue = _new_queue("cancel")
        profile = FaultProfile(charge_failure_rate=0.0, charge_latency=charge_latency, seed=seed)
        planned = _plan(count, seed, "cancel")
        service = PaymentService(client, queue, options=OPTIONS)
        async with BackgroundWorker(client, queue, PaymentActivities(repository, fault_profile=profile)):
            await drive(service, planned, outcome, after_start=cancel_later)
            await audit(outcome, client, [p.request.payment_id for p in planned], repository)
    unexpected = set(outcome.statuses) - {"cancelled", "refunded", "completed"}
    if unexpected:
        outcome.client_error("outcome", f"cancelled payments ended {sorted(unexpected)}")
    for payment in planned:
        if repository.balance(payment.request.payment_id) not in (0, payment.request.amount):
            outcome.client_error("ledger", f"{payment.request.payment_id} keeps a partial amount")
    repository.close()
    outcome.elapsed = time.perf_counter() - began
    return outcome


def _child_env(state_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PAYMENTS_LAB_STATE_DIR": str(state_dir)}
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"):
        env.pop(name, None)
    return env


def _spawn_logged(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return processes.spawn(args, log=out, env=env)


async def _wait_for_line(process: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{log.name} exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        return text in log.read_text(errors="replace")

    await _until(ready, timeout, f"{text!r} in {log.name}")


async def scenario_cli_workers(count: int = 30, *, workers: int = 3, latency: float = 2.0, concurrency: int = 8) -> Outcome:
    """The CLI way: ``payments-lab server`` as the lab session, ``workers`` × ``payments-lab worker``
    without ``--db``, ``count`` × ``payments-lab pay --task-queue payments``, one worker ``kill -9``ed mid-charge."""
    outcome = Outcome("cli_workers", count)
    began = time.perf_counter()
    cli = [sys.executable, "-m", "payments_lab"]
    with tempfile.TemporaryDirectory(prefix="faults-cli-") as folder:
        base = Path(folder)
        env = _child_env(base / "state")
        children: list[subprocess.Popen[bytes]] = []
        pays: list[asyncio.subprocess.Process] = []
        try:
            server = _spawn_logged([*cli, "server"], env, base / "server.log")
            children.append(server)
            await _wait_for_line(server, base / "server.log", "Payments ledger:")
            session = json.loads((base / "state" / "session.json").read_text())
            repository_file = Path(session["repository_file"])
            worker_pids: list[int] = []
            for n in range(workers):
                worker = _spawn_logged(
                    [*cli, "worker", "--task-queue", "payments", "--latency", str(latency), "--crash-friendly"],
                    env,
                    base / f"worker-{n}.log",
                )
                children.append(worker)
                worker_pids.append(worker.pid)
            for n, worker in enumerate(children[1:]):
                await _wait_for_line(worker, base / f"worker-{n}.log", READY_LINE)
            if not all(str(repository_file) in (base / f"worker-{n}.log").read_text() for n in range(workers)):
                outcome.client_error("worker", "a worker does not use the session's repository file")
            repository = PaymentRepository(repository_file)
            token = uuid.uuid4().hex[:6]
            payment_ids = [f"cli-{token}-{i:03d}" for i in range(count)]
            gate = asyncio.Semaphore(concurrency)

            async def pay(index: int, payment_id: str) -> None:
                amount = f"{random.Random(index).randint(100, 50_000) / 100:.2f}"
                async with gate:
                    began_one = time.perf_counter()
                    process = await asyncio.create_subprocess_exec(
                        *cli, "pay", "--task-queue", "payments", "--org", "org-acme", "--amount", amount,
                        "--currency", "EUR", "--id", payment_id,
                        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                    )
                    pays.append(process)
                    stdout, stderr = await process.communicate()
                try:
                    output = json.loads(stdout)
                except ValueError:
                    output = None
                if process.returncode not in (0, 1) or output is None or b"Traceback" in stderr:
                    outcome.client_error(f"pay {payment_id}", f"exit {process.returncode}: {stderr.decode(errors='replace')[-300:]}")
                    return
                outcome.latencies.append(time.perf_counter() - began_one)
                outcome.statuses[output["status"]] += 1
                if output["charges"] != 1:
                    outcome.client_error(f"pay {payment_id}", f"its JSON shows {output['charges']} charges")

            paying = asyncio.create_task(_gather(*(pay(i, p) for i, p in enumerate(payment_ids))))
            try:
                victim = await _charging_worker(repository, worker_pids, paying)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    outcome.notes["killed_worker_mid_charge"] = 1
            finally:
                await paying
            outcome.notes["charges_retried_on_another_worker"] = sum(
                1
                for p in payment_ids
                if len({a.worker for a in repository.attempts(p) if a.activity == "charge_payment"}) > 1
            )
            connection = await connect(address=session["address"])
            await audit(outcome, connection.client, payment_ids, repository)
            repository.close()
        finally:
            for process in pays:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            for child in reversed(children):  # workers first, the server (and its Temporal) last
                processes.stop(child, grace=15)
    outcome.elapsed = time.perf_counter() - began
    return outcome


async def _gather(*calls: Awaitable[None]) -> None:
    await asyncio.gather(*calls)


async def _charging_worker(repository: PaymentRepository, pids: Sequence[int], paying: asyncio.Task[None]) -> int | None:
    """The pid of one of ``pids`` while it runs a charge attempt (None if the payments ended first)."""
    while not paying.done():
        for attempt in repository.attempts():
            if attempt.activity == "charge_payment" and attempt.outcome == "running":
                pid = int(attempt.worker.split("@")[0])
                if pid in pids:
                    return pid
        await asyncio.sleep(0.05)
    return None


SCENARIO_FUNCTIONS: dict[str, Callable[..., Awaitable[Outcome]]] = {
    "load": scenario_load,
    "worker_kill": scenario_worker_kill,
    "server_outage": scenario_server_outage,
    "server_stop": scenario_server_stop,
    "cancel": scenario_cancel,
    "cli_workers": scenario_cli_workers,
}


def _counts(scale: float, overrides: Sequence[str]) -> dict[str, int]:
    counts = {name: max(1, round(n * scale)) for name, n in FULL_COUNTS.items()}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in counts or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--count takes NAME=N with NAME one of {', '.join(SCENARIOS)}, got {item!r}")
        counts[name] = int(value)
    return counts


async def main(only: Sequence[str], counts: dict[str, int], outage: float) -> int:
    """Run the chosen scenarios, print their lines; return 0 if every invariant held."""
    quiet_logs()
    failed = []
    for name in only:
        if name == "server_stop" and sys.platform == "win32":
            print("server_stop=skipped (Windows has no SIGSTOP)", flush=True)
            continue
        kwargs: dict[str, object] = {"outage": outage} if name in ("server_outage", "server_stop") else {}
        outcome = await SCENARIO_FUNCTIONS[name](counts[name], **kwargs)
        for line in outcome.lines():
            print(line, flush=True)
        if not outcome.ok:
            failed.append(name)
    if failed:
        print(f"failed={','.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (default 1: 1000/300/100/100/100/30)")
    parser.add_argument("--count", action="append", default=[], metavar="NAME=N", help="payments of one scenario")
    parser.add_argument("--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the server stays down or stopped (default 20)")
    args = parser.parse_args()
    marker = os.environ.setdefault(MARK_VARIABLE, f"faults-{uuid.uuid4().hex}")
    code = 2
    try:
        code = asyncio.run(main(args.only or SCENARIOS, _counts(args.scale, args.count), args.outage))
    finally:
        left = processes.leftovers(marker)
        print(f"leftover_processes={len(left)}", flush=True)
        if left:
            code = 1
        sys.stdout.flush()
        # Temporal's Rust core threads can abort interpreter teardown (temporalio/sdk-python#300).
        os._exit(code)
