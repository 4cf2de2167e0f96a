"""The ``payments-lab`` command line: lab, server, worker, pay, status, cancel, list."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from payments_lab import kernel_startup
from payments_lab.errors import InvalidArgumentError, PaymentsLabError

if TYPE_CHECKING:
    from temporalio.worker import Worker

    from payments_lab.client import Connection
    from payments_lab.processes import StopRequests
    from payments_lab.repository import PaymentRepository
    from payments_lab.server import EmbeddedServer

EXIT_OK = 0
"""The command did what was asked (for ``pay``: the payment completed)."""
EXIT_PAYMENT_NOT_DONE = 1
"""``pay``: the payment was declined, failed, was cancelled, or was a duplicate."""
EXIT_USAGE = 2
"""Bad arguments."""
EXIT_UNAVAILABLE = 3
"""No server could be reached, or the payment asked for does not exist."""

EXIT_READER_GONE = 141
"""The reader of the output went away (``payments-lab list | head``): what a shell reports for a command SIGPIPE ended."""


class UsageError(PaymentsLabError):
    """Arguments that parse but make no sense; reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def _port(text: str) -> int:
    """A TCP port a person names: 1 to 65535 (0 would let the system choose, and the room's lines would say 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: give 1 to 65535 (leave the option out for the default)")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate between 0 and 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def _task_queue(text: str) -> str:
    from payments_lab.task_queues import checked_task_queue

    if not text.strip():
        raise argparse.ArgumentTypeError("a task queue needs a name, e.g. payments")
    try:
        return checked_task_queue(text, "--task-queue")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = _Parser(prog="payments-lab", description="A Jupyter lab for Temporal durable workflows, with payments.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lab = commands.add_parser("lab", help="start the Temporal server and JupyterLab, shared by every notebook")
    lab.add_argument("--notebook-dir", type=Path, default=None, help="folder to open (default: ./notebooks, else the kit's own notebooks/)")
    lab.add_argument("--port", type=_port, default=8888, help="JupyterLab port (default 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--db", type=Path, default=None, help="persist the server's state in this SQLite file")

    server = commands.add_parser("server", help="run the embedded Temporal server in the foreground")
    server.add_argument("--db", type=Path, default=None, help="persist the server's state in this SQLite file")
    server.add_argument("--port", type=_port, default=None, help="gRPC port (default: a free one)")
    server.add_argument("--ui-port", type=_port, default=None, help="Web UI port (default: a free one)")

    room = commands.add_parser("room", help="one Temporal server for a whole room: a namespace per learner")
    learners = room.add_mutually_exclusive_group(required=True)
    learners.add_argument("--learners", type=_count, help="number of learners (learner-01, learner-02, ...)")
    learners.add_argument("--names", type=Path, help="file with one learner name per line")
    room.add_argument("--db", type=Path, default=None, help="SQLite file of the server (default: room.sqlite in the state folder)")
    room.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the room's network)")
    room.add_argument("--port", type=_port, default=7233, help="gRPC port (default 7233)")
    room.add_argument("--ui-port", type=_port, default=8233, help="Web UI port (default 8233)")
    room.add_argument("--ui-public-path", default=None, help="serve the Web UI under this path (e.g. behind a JupyterHub service)")
    room.add_argument("--ui-url", default=None, help="the Web UI's address as the learners' browsers reach it")
    room.add_argument(
        "--ui-behind-login", action="store_true",
        help="the proxy in front of the Web UI asks for a login (JupyterHub's gate, payments_lab.ui_gate)",
    )
    room.add_argument(
        "--advertise", default=None, metavar="HOST",
        help="the host learners reach this machine at (default: --ip, or with 0.0.0.0 this machine's address on its default route)",
    )
    room.add_argument("--address", default=None, help="prepare this existing cluster instead of starting a server")
    room.add_argument("--out", type=Path, default=None, help="also write each learner's lines to OUT/<name>.env")

    worker = commands.add_parser("worker", help="run a payment worker against the configured server")
    _add_connection_arguments(worker)
    worker.add_argument("--task-queue", type=_task_queue, default="payments", help="task queue to poll (default: payments)")
    worker.add_argument(
        "--db", type=Path, default=None,
        help="repository file (default: the lab session's, shared by every worker: keep it so)",
    )
    worker.add_argument(
        "--own-ledger", action="store_true",
        help="accept a --db other than the lab session's, on a task queue no other worker polls (checked)",
    )
    worker.add_argument("--failure-rate", type=_rate, default=0.0, help="share of charges that fail (0 to 1)")
    worker.add_argument("--latency", type=_positive_seconds, default=0.0, help="seconds the processor takes per charge")
    worker.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    worker.add_argument("--crash-friendly", action="store_true", help="hand work back fast if this worker is killed")

    pay = commands.add_parser("pay", help="run one payment and print its result as JSON")
    _add_connection_arguments(pay)
    pay.add_argument("--org", required=True, help="organization id, e.g. org-acme")
    pay.add_argument("--amount", required=True, help="amount as a decimal, e.g. 12.50")
    pay.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    pay.add_argument("--user", default="cli-user", help="user id (default: cli-user)")
    pay.add_argument("--id", dest="payment_id", default=None, help="payment id (default: a new one)")
    pay.add_argument("--description", default="", help="free text")
    pay.add_argument("--fail-charge", type=_count, default=0, help="fail the first N charge attempts")
    pay.add_argument("--fail-notify", type=_count, default=0, help="fail the first N notify attempts")
    pay.add_argument(
        "--task-queue", type=_task_queue, default=None,
        help="leave the payment to the `payments-lab worker` processes of this task queue "
        "(default: run it with a worker of this command's own)",
    )

    status = commands.add_parser("status", help="show one payment")
    _add_connection_arguments(status)
    status.add_argument("payment_id")

    cancel = commands.add_parser("cancel", help="cancel one payment")
    _add_connection_arguments(cancel)
    cancel.add_argument("payment_id")

    listing = commands.add_parser("list", help="list payments, newest first")
    _add_connection_arguments(listing)
    listing.add_argument("--org", default=None, help="only this organization's payments")
    listing.add_argument("--status", default=None, help="only payments in this status")
    listing.add_argument("--limit", type=_count, default=50, help="at most this many (default 50)")
    return parser


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=None, help="host:port of a server (default: Temporal's environment configuration, "
        "then the running lab session, else an embedded server for `pay`)"
    )
    parser.add_argument("--namespace", default=None, help="namespace, with --address (default: default)")


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


@asynccontextmanager
async def _connected(args: argparse.Namespace, *, start_server: bool) -> AsyncIterator[Connection]:
    """The command's connection, closed however the command ends (stopping a server it started)."""
    from payments_lab.client import connect

    connection = await connect(address=args.address, namespace=args.namespace, start_server=start_server)
    try:
        yield connection
    finally:
        await connection.close()


def _report_json(report) -> dict[str, object]:  # noqa: ANN001
    return {
        "payment_id": report.payment_id,
        "workflow_id": report.workflow_id,
        "workflow_status": report.workflow_status,
        "payment_status": report.payment_status.value if report.payment_status else None,
        "organization_id": report.organization_id,
        "started_at": report.started_at.isoformat(),
        "closed_at": report.closed_at.isoformat() if report.closed_at else None,
        "ui_url": report.ui_url,
    }


def _money_json(repository, payment_id: str, *, charged: bool) -> dict[str, object]:  # noqa: ANN001
    """What the processor's ledger holds for one payment: the proof of "never charged twice".

    ``charged``: Temporal says the payment was charged (its result has a charge id, or it
    ended completed or refunded). A ledger with no charge of it then is not the ledger of the
    worker that ran it: one started with ``--db FILE --own-ledger`` (whose file holds the charge), or a lab's in memory.
    """
    summary = repository.ledger_summary(payment_id)
    money: dict[str, object] = {"charges": summary.charges, "refunds": summary.refunds, "kept": str(summary.kept)}
    if charged and summary.charges == 0:
        where = repository.path or "this process's memory"
        money["ledger_note"] = (
            f"the ledger read here ({where}) holds no charge of {payment_id}, yet Temporal says it was charged: "
            "the worker that ran it kept another ledger (one started with `--db FILE --own-ledger`: FILE holds the charge; "
            "or a notebook lab's, kept in its memory)"
        )
    return money


async def _attempts_json(handle) -> dict[str, int]:  # noqa: ANN001
    from payments_lab.domain import STEPS
    from payments_lab.history import attempts_per_activity

    history = await handle.history()
    attempts = {STEPS.get(name, name): n for name, n in attempts_per_activity(history).items()}
    # The history writes an attempt when it ends: one under way (a charge waiting for the
    # processor) is known from describe() only.
    from temporalio.api.enums.v1 import PendingActivityState

    under_way = (PendingActivityState.PENDING_ACTIVITY_STATE_STARTED, PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED)
    described = await handle.workflow.describe()
    for pending in described.raw_description.pending_activities:
        step = STEPS.get(pending.activity_type.name, pending.activity_type.name)
        made = pending.attempt if pending.state in under_way else pending.attempt - 1  # else the next one is only due
        attempts[step] = max(attempts.get(step, 0), made)
    return attempts


def _open_repository(connection, **options: object):  # noqa: ANN001, ANN202
    from payments_lab.ledger import open_repository

    try:
        return open_repository(connection.address, own_server=connection.server is not None, **options)  # type: ignore[arg-type]
    except ValueError as err:
        raise UsageError(str(err)) from None


async def _pay(args: argparse.Namespace) -> int:
    from payments_lab.activities import PaymentActivities
    from payments_lab.client import notebook_servers_words
    from payments_lab.domain import PaymentRequest
    from payments_lab.faults import FaultPlan
    from payments_lab.lab import quiet_logs
    from payments_lab.service import DuplicatePaymentError, PaymentService
    from payments_lab.worker import BackgroundWorker, new_task_queue

    try:
        request = PaymentRequest(
            payment_id=args.payment_id or f"cli-{secrets.token_hex(4)}",
            organization_id=args.org,
            user_id=args.user,
            amount=args.amount,
            currency=args.currency,
            description=args.description,
        )
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None
    faults = FaultPlan.failing(charge=args.fail_charge, notify=args.fail_notify)
    quiet_logs()
    paying = asyncio.current_task()
    with contextlib.suppress(NotImplementedError, AttributeError):  # Windows: no SIGTERM handler on an event loop
        # `kill`, `timeout`, `docker stop`: as Ctrl-C, so that the payment its own worker runs is settled, not left pending.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, paying.cancel)  # type: ignore[union-attr]
    async with _connected(args, start_server=args.task_queue is None) as connection:
        repository = _open_repository(connection)
        task_queue = args.task_queue or new_task_queue("cli")
        service = PaymentService(connection.client, task_queue, ui_url=connection.ui_url, scoped=False)
        worker = None if args.task_queue else BackgroundWorker(connection.client, task_queue, PaymentActivities(repository))
        if worker:
            await worker.start()
        try:
            try:
                handle = await service.start(request, faults=faults)
            except asyncio.CancelledError:  # Ctrl-C while the start was on its way: it may have reached the server
                await _after_interrupt(service.handle(request.payment_id), task_queue, own_worker=worker is not None)
                raise
            except DuplicatePaymentError as err:
                _print_json(
                    {"payment_id": request.payment_id, "duplicate": True, "message": str(err), **_report_json(err.existing)}
                )
                return EXIT_PAYMENT_NOT_DONE
            if args.task_queue:
                print(
                    f"payment {request.payment_id} started on task queue {task_queue!r}; waiting for a "
                    "`payments-lab worker` of that queue to run it…",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                result = await handle.result()
            except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task once; a second Ctrl-C leaves at once
                await _after_interrupt(handle, task_queue, own_worker=worker is not None)
                raise
            output: dict[str, object] = {
                "payment_id": result.payment_id,
                "workflow_id": handle.workflow_id,
                "status": result.status.value,
                "success": result.success,
                "message": result.message,
                "charge_id": result.charge_id,
                "attempts": await _attempts_json(handle),
                **_money_json(repository, request.payment_id, charged=result.charge_id is not None),
                "ui_url": handle.ui_url if connection.server is None else None,
            }
            _print_json(output)
            if connection.server is not None:  # hence no ui_url: nothing of this payment outlives the command
                print(
                    "payments-lab pay: this ran on a Temporal server of the command's own, stopped with it: the payment is "
                    "in no Web UI and no list. Start `payments-lab lab` (or `payments-lab server`) first to keep payments."
                    + notebook_servers_words(),
                    file=sys.stderr,
                    flush=True,
                )
            return EXIT_OK if result.success else EXIT_PAYMENT_NOT_DONE
        finally:
            if worker:
                with contextlib.suppress(TimeoutError):  # a second Ctrl-C, or a stopped server: never hang here
                    await asyncio.wait_for(worker.stop(), WORKER_STOP_WAIT)
            repository.close()


WORKER_STOP_WAIT = 10.0
"""Seconds ``pay`` waits for its own worker to stop before it leaves."""

INTERRUPTED_SETTLE_WAIT = 15.0
"""Seconds an interrupted ``pay`` waits for its payment to settle once cancelled."""


async def _after_interrupt(handle, task_queue: str, *, own_worker: bool) -> None:  # noqa: ANN001
    """What an interrupted ``pay`` does with its payment: with the command's own worker, cancel it and wait for it
    to settle (else it would wait for ever on a task queue nothing polls); with another's, say it runs on.

    The interrupt may come while the start is on its way, so first ask the server whether the payment started,
    and on this command's task queue (a payment of the same id started earlier is not this command's to cancel).
    """
    from payments_lab.service import PaymentNotFoundError
    from payments_lab.task_queues import worker_command

    payment_id = handle.payment_id
    try:
        async with asyncio.timeout(INTERRUPTED_SETTLE_WAIT):
            report = await handle.status()
    except PaymentNotFoundError:
        print(f"payments-lab pay: interrupted before payment {payment_id} started: nothing was charged",
              file=sys.stderr, flush=True)
        return
    except Exception as err:  # noqa: BLE001 - a stopped server: say where the payment may be
        print(f"payments-lab pay: interrupted; whether payment {payment_id} started is unknown ({type(err).__name__}): "
              f"`payments-lab status {payment_id}` tells; if it did, `{worker_command(task_queue)}` runs it",
              file=sys.stderr, flush=True)
        return
    if report.task_queue != task_queue:  # an earlier payment with this id, another command's: not this one to cancel
        print(f"payments-lab pay: interrupted; payment {payment_id} was started earlier by another command (task queue "
              f"{report.task_queue!r}) and is left as it is: `payments-lab status {payment_id}` shows it",
              file=sys.stderr, flush=True)
        return
    if not own_worker:
        print(f"payments-lab pay: stopped waiting; payment {payment_id} runs on with the workers of task queue "
              f"{task_queue!r} (`payments-lab status {payment_id}` follows it)", file=sys.stderr, flush=True)
        return
    print(f"payments-lab pay: interrupted; cancelling payment {payment_id}, which only this command's worker runs "
          "(Ctrl-C again to leave at once)...", file=sys.stderr, flush=True)
    try:
        async with asyncio.timeout(INTERRUPTED_SETTLE_WAIT):  # the cancel too: it would wait out a stopped server
            await handle.cancel()
            result = await handle.result()
    except Exception as err:  # noqa: BLE001 - whatever kept it from settling, say how to finish it
        print(f"payments-lab pay: payment {payment_id} did not settle ({type(err).__name__}): it waits on task queue "
              f"{task_queue!r}; `{worker_command(task_queue)}` finishes it", file=sys.stderr, flush=True)
        return
    print(f"payments-lab pay: payment {payment_id} {result.status.value}: {result.message}", file=sys.stderr, flush=True)


def _service(connection):  # noqa: ANN001, ANN202
    from payments_lab.service import PaymentService

    return PaymentService(connection.client, "", ui_url=connection.ui_url, scoped=False)


def _checked_id(payment_id: str) -> str:
    from payments_lab.domain import text_problems

    problems = text_problems("payment_id", payment_id)
    if problems:
        raise UsageError("; ".join(problems))
    return payment_id


async def _status(args: argparse.Namespace) -> int:
    from payments_lab.domain import PaymentStatus

    payment_id = _checked_id(args.payment_id)
    async with _connected(args, start_server=False) as connection:
        service = _service(connection)
        report = await service.status(payment_id)
        output = _report_json(report)
        handle = service.handle(payment_id)
        if report.is_running:
            try:
                progress = await handle.progress()
                output["step"] = progress.step
                output["message"] = progress.message
            except Exception as err:  # noqa: BLE001 - a query needs a live worker; the status stands without it
                output["step"] = f"unknown (no worker answered the query: {err})"
        output["attempts"] = await _attempts_json(handle)
        repository = _open_repository(connection)
        try:
            charged = report.payment_status in (PaymentStatus.COMPLETED, PaymentStatus.REFUNDED)
            output.update(_money_json(repository, payment_id, charged=charged))
            output["ledger"] = str(repository.path) if repository.path else None
        finally:
            repository.close()
    _print_json(output)
    return EXIT_OK


async def _cancel(args: argparse.Namespace) -> int:
    from payments_lab.task_queues import live_pollers, worker_command

    payment_id = _checked_id(args.payment_id)
    async with _connected(args, start_server=False) as connection:
        service = _service(connection)
        report = await service.status(payment_id)
        if not report.is_running:
            ended = report.payment_status.value if report.payment_status else report.workflow_status
            print(f"payment {payment_id} already ended ({ended}): nothing to cancel", file=sys.stderr)
            return EXIT_PAYMENT_NOT_DONE
        await service.cancel(payment_id)
        queue = (await service.handle(payment_id).status()).task_queue
        nobody = not await live_pollers(connection.client, queue)
    print(
        f"cancellation requested for payment {payment_id}; follow it with `payments-lab status {payment_id}`"
    )
    if nobody:  # the workflow settles on a worker: until one runs it, the payment stays as it is
        print(f"no worker polls task queue {queue!r}: the payment is settled once one runs it "
              f"(`{worker_command(queue)}`)", file=sys.stderr)
    return EXIT_OK


async def _list(args: argparse.Namespace) -> int:
    from payments_lab.domain import PaymentStatus, checked_text

    try:
        status = PaymentStatus(args.status) if args.status is not None else None
        if args.org is not None:
            checked_text("organization_id", args.org)  # refused before any server is looked for
    except ValueError as err:
        raise UsageError(str(err)) from None
    async with _connected(args, start_server=False) as connection:
        reports = await _service(connection).search(organization_id=args.org, status=status, limit=args.limit)
    _print_json([_report_json(r) for r in reports])
    return EXIT_OK


async def _worker(args: argparse.Namespace) -> int:
    from payments_lab import processes
    from payments_lab.activities import PaymentActivities, default_identity
    from payments_lab.faults import FaultProfile, latency_warning
    from payments_lab.lab import quiet_logs
    from payments_lab.ledger import (
        LedgerMismatchError,
        keeps_own_ledger,
        ledger_identity,
        own_ledger_identity,
        refuse_a_second_ledger,
        task_queue_claim,
        until_polling,
    )
    from payments_lab.messages import PaymentOptions
    from payments_lab.worker import READY_LINE, create_worker

    quiet_logs()
    async with _connected(args, start_server=False) as connection:
        repository = _open_repository(connection, explicit=args.db, own_ledger=args.own_ledger)
        try:
            own_ledger = keeps_own_ledger(connection.address, repository)
            # Checked and started under a claim: two workers started at once check one after the other.
            async with task_queue_claim(connection.address, connection.namespace, args.task_queue):
                try:
                    await refuse_a_second_ledger(connection.client, args.task_queue, own_ledger=own_ledger, ledger_id=repository.ledger_id)
                except LedgerMismatchError as err:
                    raise UsageError(str(err)) from None
                profile = FaultProfile(charge_failure_rate=args.failure_rate, charge_latency=args.latency, seed=args.seed)
                warning = latency_warning(profile, PaymentOptions().charge_timeout)
                if warning is not None:
                    print(f"payments-lab worker: warning: --latency: {warning}", file=sys.stderr, flush=True)
                identity = default_identity()
                activities = PaymentActivities(
                    repository, fault_profile=profile, identity=own_ledger_identity(identity) if own_ledger else identity
                )
                worker = create_worker(
                    connection.client,
                    args.task_queue,
                    activities,
                    sticky_queue_schedule_to_start_timeout=timedelta(seconds=1 if args.crash_friendly else 10),
                )
                processes.call_on_stop_signals(asyncio.get_running_loop(), lambda: asyncio.ensure_future(worker.shutdown()))
                running = asyncio.ensure_future(worker.run())
                await until_polling(connection.client, args.task_queue, ledger_identity(activities.identity, repository.ledger_id), running)
            print(
                f"{READY_LINE}: task queue {args.task_queue!r} on {connection.address} (pid {os.getpid()}), "
                f"ledger {repository.path or 'in memory'}. Ctrl-C stops it (run from a notebook cell with `!`: interrupt the kernel, ■)",
                flush=True,
            )
            lab_gone = asyncio.Event()
            watching = _stop_with_the_notebook_lab(connection.address, repository, worker, lab_gone)
            try:
                await running
            finally:
                watching.cancel()
        finally:
            repository.close()
    print("worker stopped", flush=True)
    return EXIT_UNAVAILABLE if lab_gone.is_set() else EXIT_OK


LAB_WATCHED_EVERY = 2.0
"""Seconds between two looks, by a terminal worker that joined a notebook lab's own server, at whether that lab still runs."""


def _stop_with_the_notebook_lab(address: str, repository: PaymentRepository, worker: Worker, gone: asyncio.Event) -> asyncio.Future[None]:
    """Shut ``worker`` down once the notebook lab whose own server it joined has closed (or its kernel ended).

    Such a server lives in the kernel's memory on a port of its own, and the lab's temporary ledger goes with it:
    nothing can come back at that address. Off the script, the worker polled it for ever, silent for minutes,
    then said every 5 minutes that it "keeps trying". A lab session's server (`payments-lab lab` or `server`) is
    not watched: it may be restarted on its file, and its workers ride that out. Sets ``gone`` when it stops the worker.
    """
    from payments_lab.ledger import announced_repository_file

    path = repository.path
    joined = path is not None and path.name.startswith("payments-server-") and announced_repository_file(address) == path

    async def watch() -> None:
        while announced_repository_file(address) == path:
            await asyncio.sleep(LAB_WATCHED_EVERY)
        gone.set()
        print(
            f"payments-lab worker: the notebook lab whose server this worker joined ({address}) has closed, or its kernel "
            "ended, and its server and ledger with it: this worker stops. Start one with `--address` of the next lab's "
            "server (`lab.connection.address` in its notebook), or run the lab with `payments-lab lab`, whose server "
            "outlives kernels.",
            file=sys.stderr,
            flush=True,
        )
        await worker.shutdown()

    if not joined:
        return asyncio.get_running_loop().create_future()  # never done: nothing to watch
    return asyncio.ensure_future(watch())


def _room_learners(args: argparse.Namespace) -> list[str]:
    from payments_lab.room import learner_names

    try:
        return learner_names(args.learners, args.names)
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from None


def _check_out_folder(out: Path | None) -> None:
    """Make ``--out`` (a folder for the learners' .env files) before anything starts, or refuse it in one line."""
    if out is None:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        what = "is a file" if out.exists() and not out.is_dir() else f"cannot be made ({err.strerror})"
        raise UsageError(f"--out {out} {what}: pass a folder for the learners' .env files") from None


def _print_room(learners: list, out: Path | None) -> None:
    # Every file is written before any line is printed: whoever reads the lines finds the files.
    if out is not None:  # made before the room started (_check_out_folder)
        for learner in learners:
            (out / f"{learner.name}.env").write_text(
                "".join(f"export {key}={value}\n" for key, value in learner.environment.items()), encoding="utf-8"
            )
    for learner in learners:
        print(learner.line())


async def _prepare_room(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from payments_lab.client import connect, web_ui_url
    from payments_lab.room import learners, prepare_namespaces

    names = _room_learners(args)
    _check_out_folder(args.out)
    connection = await connect(address=args.address)
    # A frontend creates at most 20 namespaces a second by default: a large room takes a while, so say so.
    print(f"Preparing {len(names)} learners' namespaces on {args.address}...", file=sys.stderr, flush=True)
    try:
        with tqdm(total=len(names), desc="namespaces ready", unit="namespace", file=sys.stderr, disable=None) as bar:
            created = await prepare_namespaces(connection.client, names, on_ready=lambda _: bar.update())
    finally:
        await connection.close()
    print(f"Room of {len(names)} learners on {args.address}: {len(created)} namespaces created, "
          f"{len(names) - len(created)} already there; the kit's search attributes registered in each.")
    _print_room(learners(names, args.address, args.ui_url or web_ui_url(args.address, "default")), args.out)
    return EXIT_OK


def _room(args: argparse.Namespace) -> int:
    """Run one server for a whole room, a namespace per learner, until Ctrl-C."""
    from payments_lab import processes
    from payments_lab.advertise import advertised_host
    from payments_lab.server import EmbeddedServer, server_using_db, state_dir

    if args.address:
        return asyncio.run(_prepare_room(args))
    names = _room_learners(args)
    if args.ui_port == args.port:
        raise UsageError(f"--ui-port and --port are both {args.port}: the Web UI needs a port of its own (e.g. --ui-port {args.port + 1000 if args.port <= 64535 else args.port - 1000})")
    for flag, port in (("--port", args.port), ("--ui-port", args.ui_port)):
        if processes.port_open("127.0.0.1", port):
            raise UsageError(f"port {port} is already in use; choose another with {flag}")
    _check_out_folder(args.out)
    try:
        host = advertised_host(args.ip, args.advertise)
    except InvalidArgumentError as err:
        raise UsageError(str(err)) from None
    db_file = Path(args.db or state_dir() / "room.sqlite").resolve()
    holder = server_using_db(db_file)
    if holder is not None:
        on_port = f"the room on port {holder.port}" if holder.port else "a Temporal server"
        raise UsageError(f"{db_file} is in use by {on_port} (pid {holder.pid}): pass --db OTHER.sqlite")
    server = EmbeddedServer(
        db_file=db_file,
        ip=args.ip,
        port=args.port,
        ui_port=args.ui_port,
        namespaces=names,
        ui_public_path=args.ui_public_path,
    )
    with processes.StopRequests() as stop_requests:
        server.start()
        try:
            return _run_room(args, server, names, host, stop_requests)
        finally:
            print("Stopping the room...", file=sys.stderr, flush=True)
            server.stop()


def _run_room(args: argparse.Namespace, server: EmbeddedServer, names: list[str], host: str, stop_requests: StopRequests) -> int:
    """Prepare the room's started server, hand out the learners' lines, and wait for a stop signal or the server's end."""
    from payments_lab.advertise import is_loopback
    from payments_lab.room import learners

    # The server's own flags add search attributes only to the namespaces it creates: on a --db that a room used,
    # a learner's namespace whose attributes were removed by hand would stay without them.
    earlier = asyncio.run(_prepare_namespaces_of(server.address, names))
    if stop_requests.received:  # Ctrl-C while the server started: no lines for a room that is stopping
        return EXIT_OK
    if earlier:
        # The room view shows every learner namespace of the server: an earlier room's learners would be counted
        # (and flagged idle), and a name used again keeps the earlier person's payments and checks.
        shown = ", ".join(earlier[:10]) + (f", … ({len(earlier)} in all)" if len(earlier) > 10 else "")
        print(f"Warning: {server.db_file} holds namespaces of an earlier room that this one does not have: {shown}. The room "
              "view counts them as learners, and a learner's name used again keeps that namespace's payments and checks. "
              "For a fresh room, stop it and pass --db NEW.sqlite.", file=sys.stderr, flush=True)
    ui_url = args.ui_url or (args.ui_public_path.rstrip("/") if args.ui_public_path else f"http://{host}:{args.ui_port}")
    print(f"Room of {len(names)} learners on one Temporal server at {host}:{args.port} "
          f"(state in {server.db_file}); Web UI {ui_url}")
    # A Web UI behind a proxy (a hub's service, --ui-public-path) is as open as the proxy: the UI has no login,
    # unless the proxy asks for one (--ui-behind-login: the hub's gate).
    ui_exposed = (args.ui_public_path or (args.ui_url and not is_loopback(_url_host(args.ui_url)))) and not args.ui_behind_login
    exposed = not is_loopback(args.ip) or ui_exposed
    if exposed:
        print(f"Warning: the dev server has no authentication: anyone who reaches {host}:{args.port} or the Web UI "
              f"({ui_url}) can read and change every learner's namespace. Use a trusted network only.", file=sys.stderr)
    if is_loopback(args.ip) and not is_loopback(host):
        # Each learner would be told the room "is not up (yet)" while it runs; only a port forward or a proxy
        # to this machine's 127.0.0.1 makes such lines work.
        print(f"Warning: the lines hand out {host}, but the server listens on {args.ip} only: no other machine reaches "
              f"it. Add --ip 0.0.0.0 (or --ip {host}, if that is this machine's address), unless a port forward "
              f"to this machine's {args.ip}:{args.port} stands behind {host}.", file=sys.stderr)
    _print_room(learners(names, f"{host}:{args.port}", ui_url), args.out)
    print("Each learner sets their line's variables before starting JupyterLab. Ctrl-C stops the room.", flush=True)
    while server.running:
        if stop_requests.wait(0.5):
            return EXIT_OK
    print(f"The Temporal server stopped unexpectedly:\n{server.log_tail()}", file=sys.stderr)
    return EXIT_UNAVAILABLE


async def _prepare_namespaces_of(address: str, names: list[str]) -> list[str]:
    """Make sure every learner's namespace of the room's server has the kit's search attributes; return the
    namespaces the server holds besides the learners' (an earlier room's, on a --db used again)."""
    from payments_lab.client import SYSTEM_NAMESPACES, connect, namespace_names
    from payments_lab.room import prepare_namespaces

    connection = await connect(address=address)
    await prepare_namespaces(connection.client, names)
    held = await namespace_names(connection.client, timedelta(seconds=10))
    return sorted(set(held) - set(names) - SYSTEM_NAMESPACES)


def _url_host(url: str) -> str:
    """The host of ``url`` (empty for a path)."""
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


FIRST_LESSON = "00-welcome.ipynb"
"""The notebook a learner opens first; a folder that has it holds the lessons."""

KIT_NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
"""The lessons next to the package, when the kit runs from a git checkout (an editable install)."""


def lesson_folder(given: Path | None, *, kit_notebooks: Path = KIT_NOTEBOOKS) -> tuple[Path, bool]:
    """The folder ``payments-lab lab`` serves, and whether it holds the lessons.

    ``--notebook-dir`` wins; else ``./notebooks`` when it holds the lessons (``make lab`` at the
    repository's root), else the kit's own ``notebooks/`` (the command run from another folder),
    else the current folder, which then holds no lessons.

    Raises:
        UsageError: ``given`` is not a folder.
    """
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"--notebook-dir {given} is not a folder: give the folder that holds {FIRST_LESSON}")
        return given, (given / FIRST_LESSON).is_file()
    for folder in (Path("notebooks"), kit_notebooks):
        if (folder / FIRST_LESSON).is_file():
            return folder, True
    return Path.cwd(), False


def kernel_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for JupyterLab and its kernels: with :mod:`payments_lab.kernel_startup` as ``PYTHONSTARTUP``
    (a name not defined gets a hint), unless a start-up file of the learner's own is set."""
    return {**environ, "PYTHONSTARTUP": environ.get("PYTHONSTARTUP") or kernel_startup.__file__}


def _serve(args: argparse.Namespace, *, jupyter: bool) -> int:
    """Run the embedded server (and JupyterLab) as the machine's lab session until Ctrl-C."""
    from payments_lab import processes
    from payments_lab.ledger import remove_repository_file, session_repository_file
    from payments_lab.repository import PaymentRepository
    from payments_lab.server import EmbeddedServer, LabSession, clear_session, read_session, write_session

    running = read_session()
    if running is not None:
        print(
            f"A lab session is already running (pid {running.pid}): server {running.address}, "
            f"Web UI {running.ui_url}. Stop it first, or just use it.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    for flag, port in (("--port", args.port), ("--ui-port", getattr(args, "ui_port", None))):
        if port is not None and processes.port_open("127.0.0.1", port):
            free = processes.free_port()
            # Under `make lab` a flag cannot be passed: the Makefile takes the port as a variable.
            fix = f"make lab PORT={free}" if jupyter and flag == "--port" and os.environ.get("MAKELEVEL") else f"{flag} {free}"
            raise UsageError(
                f"port {port} is already in use by another program (another JupyterLab?); "
                f"choose a free one, e.g. {fix}"
            )
    lessons, has_lessons = lesson_folder(args.notebook_dir) if jupyter else (Path.cwd(), False)
    if jupyter:
        server = EmbeddedServer(db_file=args.db)
    else:
        server = EmbeddedServer(db_file=args.db, port=args.port, ui_port=args.ui_port)
    with processes.StopRequests() as stop_requests:
        server.start()
        repository_file = session_repository_file(args.db, os.getpid())
        repository_file.parent.mkdir(parents=True, exist_ok=True)
        PaymentRepository(repository_file).close()
        db_file = str(args.db) if args.db else None
        write_session(
            LabSession(server.address, server.namespace, server.ui_url, os.getpid(), db_file, str(repository_file))
        )
        print(f"Temporal server: {server.address} (namespace {server.namespace})")
        print(f"Temporal Web UI: {server.ui_url}")
        print(f"Payments ledger: {repository_file} (shared by every notebook, worker and command of this session)")
        jupyter_process = None
        try:
            if jupyter:
                token = secrets.token_hex(16)
                command = [
                    sys.executable, "-m", "jupyterlab",
                    f"--notebook-dir={lessons}",
                    "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.port={args.port}",
                    "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={token}",
                ]
                if args.no_browser:
                    command.append("--no-browser")
                if hasattr(os, "geteuid") and os.geteuid() == 0:
                    command.append("--allow-root")  # containers and CI machines often run as root
                jupyter_process = processes.spawn(command, log=sys.stderr.fileno(), env=kernel_environment(os.environ))
                print(f"JupyterLab:      http://127.0.0.1:{args.port}/lab?token={token}")
                if has_lessons:
                    print(f"Open {FIRST_LESSON} to begin ({lessons}). Ctrl-C stops JupyterLab and the server.", flush=True)
                else:
                    print(
                        f"No lessons found ({FIRST_LESSON} is neither in ./notebooks nor next to the kit): serving {lessons}; "
                        "point at them with --notebook-dir <the kit's notebooks folder>. Ctrl-C stops JupyterLab and the server.",
                        flush=True,
                    )
            else:
                print("Notebooks and payments-lab commands on this machine use this server. Ctrl-C stops it.", flush=True)
            while server.running and (jupyter_process is None or jupyter_process.poll() is None):
                if stop_requests.wait(0.5):
                    return EXIT_OK
            if not server.running:
                print(f"The Temporal server stopped unexpectedly:\n{server.log_tail()}", file=sys.stderr)
                return EXIT_UNAVAILABLE
            if jupyter_process is not None and jupyter_process.returncode:
                print(f"JupyterLab exited with code {jupyter_process.returncode}; see its messages above.", file=sys.stderr)
                return EXIT_UNAVAILABLE
        finally:
            print(f"Stopping the {'lab' if jupyter else 'server'}...", file=sys.stderr, flush=True)
            if jupyter_process is not None:
                processes.stop(jupyter_process, sig=signal.SIGTERM)
            server.stop()
            clear_session(os.getpid())
            if args.db is None:
                remove_repository_file(repository_file)  # the server's state went with it
        return EXIT_OK


_FIELD_OF_ARGUMENT = {"org": "organization_id", "user": "user_id", "payment_id": "payment_id", "description": "description", "currency": "currency"}


def _refuse_text_no_server_takes(args: argparse.Namespace) -> None:
    """Refuse, as a usage error, an argument holding a byte a terminal that is not UTF-8 passed on (a lone surrogate).

    Python hands such a byte over as a lone surrogate, which nothing downstream can encode:
    left in, it surfaced as a traceback from wherever the text was first sent or stored.
    """
    from payments_lab.domain import lone_surrogate_problem

    for name, value in vars(args).items():
        if isinstance(value, str):
            # Named as the request's fields are when they refuse the same text; other options by their flag.
            problem = lone_surrogate_problem(_FIELD_OF_ARGUMENT.get(name, f"--{name.replace('_', '-')}"), value)
            if problem is not None:
                raise UsageError(problem)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    args = build_parser().parse_args(argv)
    from payments_lab.client import NamespaceNotFoundError, SearchAttributesError, TemporalUnavailableError
    from payments_lab.server import TemporalNotFoundError
    from payments_lab.service import PaymentNotFoundError

    prog = f"payments-lab {args.command}"
    try:
        _refuse_text_no_server_takes(args)
        if args.command in ("lab", "server"):
            return _serve(args, jupyter=args.command == "lab")
        if args.command == "room":
            return _room(args)
        run = {"pay": _pay, "status": _status, "cancel": _cancel, "list": _list, "worker": _worker}[args.command]
        return asyncio.run(run(args))
    except (UsageError, InvalidArgumentError) as err:  # an argument the kit refused is bad usage here, whoever checked it
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TemporalUnavailableError, TemporalNotFoundError, PaymentNotFoundError, NamespaceNotFoundError, SearchAttributesError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PaymentsLabError as err:  # anything else the kit refused, in its own words
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_PAYMENT_NOT_DONE
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM (`kill`, `timeout`), which `pay` handles as Ctrl-C
        return 143
    except BrokenPipeError:
        return _reader_gone()



def _reader_gone() -> int:
    """The output's reader closed its end: stop writing there, without a traceback (Python's documented idiom)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the exit-time flush of what is left would raise again
    return EXIT_READER_GONE


def run() -> NoReturn:
    """Entry point of ``payments-lab`` and ``python -m payments_lab``: run, then exit at once.

    Temporal's Rust core keeps threads that can abort CPython's interpreter teardown in a
    short-lived process ("PyGILState_Release ... finalizing", temporalio/sdk-python#300).
    Servers and workers are stopped by the time a command returns, so the teardown is
    skipped.
    """
    try:
        code = main()  # `--help | head` breaks the pipe in the parser, before main's own handlers
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    sys.stderr.flush()
    os._exit(code)

