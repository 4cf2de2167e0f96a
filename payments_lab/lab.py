"""The lab a lesson works in: a server, a worker of its own, the payment service and repository.

In a notebook::

    lab = await open_lab()
    result = await lab.pay("12.50", "EUR", faults=FaultPlan.failing(charge=2))

Running the first cell again returns the same lab: one worker per kernel, whatever the
number of re-runs. Each lab polls a task queue of its own, so two notebooks sharing a
server never run each other's payments.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import temporalio.client
from temporalio.client import Client

from payments_lab import kernel_startup
from payments_lab.activities import PaymentActivities
from payments_lab.arguments import seconds
from payments_lab.authoring import LoadedModule, WorkflowModules, deploy
from payments_lab.client import Connection, connect
from payments_lab.domain import (
    STEPS,
    PaymentRequest,
    PaymentResult,
    Step,
    checked_payment_id,
    payment_id_of,
    workflow_id_for,
)
from payments_lab.errors import InvalidArgumentError, PaymentsLabError, WaitTimedOutError
from payments_lab.faults import NO_FAULTS, FaultPlan, FaultProfile, checked_fault_profile, latency_warning
from payments_lab.ledger import open_repository
from payments_lab.messages import PaymentOptions, checked_payment_options
from payments_lab.orphans import (
    Orphans,
    describe_orphans,
    describe_stranded,
    find_orphans,
    forget_sticky_workers,
    replays_with,
    running_on,
    still_orphaned,
)
from payments_lab.repository import LedgerSummary, PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentHandle, PaymentService
from payments_lab.task_queues import checked_task_queue, closed_here
from payments_lab.wording import plural
from payments_lab.worker import DEFAULT_WORKFLOWS, BackgroundWorker, WorkerProcess, new_task_queue

_LABS: dict[str, Lab] = {}

_ACTIVITY_OF_STEP = {step: activity for activity, step in STEPS.items()}
"""The activity type that performs each step that runs one."""


class LabClosedError(PaymentsLabError, RuntimeError):
    """The lab was closed: a payment, a wait or a module needs a lab that runs."""


class WorkerElsewhereError(PaymentsLabError, RuntimeError):
    """What was asked needs the lab's worker in this kernel, and it runs in a process of its own."""


class ClosedGate(temporalio.client.Interceptor):
    """Makes every call of a lab's Temporal client raise :class:`LabClosedError` once the lab has closed.

    The kit's own calls check that first; a bare temporalio object a lesson uses (``handle.workflow``,
    ``lab.client``) waited for its stopped server 6 to 10 s, then showed a page of ``RPCError``.
    """

    def __init__(self) -> None:
        self.closed_because: Callable[[], Exception] | None = None

    def on(self, client: temporalio.client.Client) -> temporalio.client.Client:
        """A client like ``client`` (the same connection), whose calls go through this gate."""
        config = client.config()
        config["interceptors"] = [*config["interceptors"], self]
        return temporalio.client.Client(**config)

    def intercept_client(self, next: temporalio.client.OutboundInterceptor) -> temporalio.client.OutboundInterceptor:
        """See :py:meth:`temporalio.client.Interceptor.intercept_client`."""
        return _gated(next, self)


def _gated(next: temporalio.client.OutboundInterceptor, gate: ClosedGate) -> temporalio.client.OutboundInterceptor:
    def guard(name: str) -> Callable[..., Any]:
        def call(self: temporalio.client.OutboundInterceptor, input: Any) -> Any:
            if gate.closed_because is not None:
                raise gate.closed_because()
            return getattr(self.next, name)(input)

        return call

    methods = {
        name: guard(name)
        for name, value in vars(temporalio.client.OutboundInterceptor).items()
        if not name.startswith("_") and callable(value)
    }
    return type("ClosedGateOutbound", (temporalio.client.OutboundInterceptor,), methods)(next)


def quiet_logs() -> None:
    """Hide the tracebacks of activity attempts that fail on purpose, and the sandbox's echo of a refused call.

    ``temporalio.worker`` stays audible: a workflow bug shows up only there.
    """
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    logging.getLogger("temporalio.workflow").setLevel(logging.ERROR)
    # "__call__ on random.random restricted": said again by the error the access raises, which the
    # worker logs and the kit reports (a refused module, a failing workflow task).
    logging.getLogger("temporalio.worker.workflow_sandbox._restrictions").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Link:
    """A Web UI link that shows as a link in a notebook and as text elsewhere."""

    label: str
    url: str | None

    def __str__(self) -> str:
        return f"{self.label}: {self.url}" if self.url else self.label

    def _repr_html_(self) -> str:
        if not self.url:
            return html.escape(self.label)
        return f'{html.escape(self.label)}: <a href="{html.escape(self.url)}" target="_blank">open in the Temporal Web UI</a>'

    def __repr__(self) -> str:
        return str(self)


def show_figures_inline() -> None:
    """Let a notebook display the Figures the kit's functions return.

    The kit builds figures without pyplot (no global state, no figure shown twice); a
    notebook displays a bare Figure once pyplot has set up its inline backend.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and "inline" in str(os.environ.get("MPLBACKEND", "inline")):
        shell.run_line_magic("matplotlib", "inline")


def _display(link: Link) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None:
        display(link)


class Lab:
    """A server connection, a worker on a task queue of its own, a repository.

    The worker runs in the background of this process, or (for crash lessons) in a
    process of its own that shares the repository through a file. Use :func:`open_lab`
    rather than building one.
    """

    def __init__(
        self,
        name: str,
        connection: Connection,
        repository: PaymentRepository,
        activities: PaymentActivities | None,
        worker: BackgroundWorker | WorkerProcess,
        service: PaymentService,
    ) -> None:
        self.name = name
        self.connection = connection
        self.repository = repository
        self.activities = activities
        self.worker = worker
        self.service = service
        self.modules: WorkflowModules | None = None
        """The modules written in this lab's cells (:meth:`load_module`), once there is one."""
        self.closed = False
        self._closed_fully = False
        self._gate: ClosedGate | None = None
        """Whether :meth:`close` was called: the lab's server (if its own), worker and repository are gone."""
        self.adopted: list[BackgroundWorker] = []
        """Workers finishing the payments a kernel that ended left on its own task queue (:mod:`payments_lab.orphans`)."""
        self.stranded: list[Orphans] = []
        """Payments a kernel that ended left running with code this lab does not have yet (see :meth:`load_module`)."""
        self.reopen_with = f"lab = await open_lab({'' if name == DEFAULT_LAB_NAME else repr(name)})"
        """The line that opens this lab again, for the message of a closed one."""
        self.side_workers: dict[str, BackgroundWorker] = {}
        """Workers of other workflow code on queues of their own (:meth:`side_worker`), by name."""
        self._following_cell_code: set[str] = set()
        """Queues of adopted payments that run the lab's code written in cells: each new version reaches them too."""
        self._records: set[asyncio.Task[None]] = set()
        """Waits for the exercise records this lab started and its worker has not completed yet."""

    def __repr__(self) -> str:
        return (
            f"Lab({self.name!r}: server {self.connection.address} ({self.connection.source}), "
            f"task queue {self.task_queue!r}, worker {'running' if self.worker.running else 'stopped'})"
        )

    @property
    def client(self) -> Client:
        """The Temporal client."""
        return self.connection.client

    @property
    def task_queue(self) -> str:
        """The task queue this lab's worker polls."""
        return self.worker.task_queue

    @property
    def ui_url(self) -> str | None:
        """Base URL of the Temporal Web UI."""
        return self.connection.ui_url

    @property
    def fault_profile(self) -> FaultProfile:
        """Faults applied to every payment; assign a new profile to change them at once."""
        if self.activities is None:
            return self.worker.fault_profile  # type: ignore[union-attr]
        return self.activities.fault_profile

    @fault_profile.setter
    def fault_profile(self, profile: FaultProfile) -> None:
        if self.activities is None:
            raise WorkerElsewhereError(
                "this lab's worker runs in its own process: set lab.worker.fault_profile, "
                "then restart it with `await lab.worker.stop()` and lab.worker.start()"
            )
        profile = checked_fault_profile(profile)
        warning = latency_warning(profile, self.service.options.charge_timeout)
        if warning is not None:
            print(f"Note: {warning}")
        self.activities.fault_profile = profile

    async def wait_until_charged(self, payment_id: str, timeout: float = 30.0) -> None:
        """Return once the processor has taken the money for ``payment_id``.

        Raises:
            TimeoutError: nothing was charged within ``timeout`` seconds; the message says how
                to see where the payment is.
            ValueError: ``timeout`` is not a number of seconds >= 0.
        """
        await self._wait_until(lambda: bool(self.repository.ledger(payment_id)), payment_id, f"payment {payment_id!r} was not charged", timeout)

    async def wait_until_step(self, payment_id: str, step: Step | str, timeout: float = 30.0) -> None:
        """Return once an attempt of ``step`` (``"validate"``, ``"charge"``…) has begun for ``payment_id``.

        It reads the attempt log, which every attempt writes as it starts: a cell can then act
        while that step runs (cancel during a slow validation, kill a worker mid-charge).

        Raises:
            TimeoutError: no attempt of ``step`` began within ``timeout`` seconds; the message says
                how to see where the payment is.
            ValueError: ``step`` is not a step that runs an activity, or ``timeout`` is not a
                number of seconds >= 0.
        """
        activity = _ACTIVITY_OF_STEP.get(str(step))
        if activity is None:
            raise InvalidArgumentError(f"step must be one of {', '.join(map(repr, _ACTIVITY_OF_STEP))}, got {step!r}")
        await self._wait_until(
            lambda: any(a.activity == activity for a in self.repository.attempts(payment_id)),
            payment_id,
            f"no {step} attempt of payment {payment_id!r} began",
            timeout,
        )

    async def _wait_until(self, reached: Callable[[], bool], payment_id: str, missed: str, timeout: float) -> None:
        """Poll ``reached`` until it is true; ``missed`` begins the error's sentence if it never is."""
        self._require_open()
        checked_payment_id(payment_id)
        seconds("timeout", timeout)
        try:
            async with asyncio.timeout(timeout):
                while not reached():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise WaitTimedOutError(
                f"{missed} within {timeout:g} s: "
                f"`await lab.service.status({payment_id!r})` says where it is"
            ) from None

    @property
    def running(self) -> bool:
        """Whether the worker runs and the server (if the lab owns it) is up."""
        server = self.connection.server
        return self.worker.running and (server is None or server.running)

    def new_payment_id(self, prefix: str = "pay") -> str:
        """A payment id never used before: re-running a cell starts a new payment."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def request(
        self,
        amount: Decimal | str | int,
        currency: str = "EUR",
        *,
        organization_id: str = "org-acme",
        user_id: str = "learner",
        payment_id: str | None = None,
        description: str = "",
    ) -> PaymentRequest:
        """A payment request with sensible defaults and a fresh id."""
        return PaymentRequest(
            payment_id=payment_id or self.new_payment_id(),
            organization_id=organization_id,
            user_id=user_id,
            amount=amount,  # type: ignore[arg-type]
            currency=currency,
            description=description,
        )

    def link(self, payment_id: str) -> Link:
        """The Web UI link of one payment.

        Raises:
            ValueError: ``payment_id`` is not an id any payment could have.
        """
        workflow_id = workflow_id_for(checked_payment_id(payment_id))
        return Link(workflow_id, self.service.workflow_url(workflow_id))

    async def start(
        self,
        request: PaymentRequest,
        *,
        faults: FaultPlan | None = None,
        options: PaymentOptions | None = None,
        eager_start: bool = False,
        show_link: bool = True,
        task_timeout: timedelta | None = None,
    ) -> PaymentHandle:
        """Start a payment, show its Web UI link, and return its handle.

        Raises:
            LabClosedError: the lab was closed; nothing is started.
        """
        self._require_open()
        handle = await self.service.start(
            request, faults=faults, options=options, eager_start=eager_start, task_timeout=task_timeout
        )
        if show_link:
            _display(self.link(request.payment_id))
        return handle

    async def pay(
        self,
        amount: Decimal | str | int | PaymentRequest,
        currency: str | None = None,
        *,
        organization_id: str | None = None,
        faults: FaultPlan | None = None,
        options: PaymentOptions | None = None,
        eager_start: bool = False,
        show_link: bool = True,
    ) -> PaymentResult:
        """Run one payment to its end: ``await lab.pay("12.50", "EUR")``, or ``await lab.pay(request)``.

        ``currency`` defaults to ``"EUR"`` and ``organization_id`` to ``"org-acme"``; a
        :class:`PaymentRequest` carries its own.

        Raises:
            ValueError: a request is given with a ``currency`` or ``organization_id`` other
                than its own (nothing is started).
        """
        if isinstance(amount, PaymentRequest):
            _refuse_other_fields(amount, currency=currency, organization_id=organization_id)
            request = amount
        else:
            request = self.request(
                amount,
                "EUR" if currency is None else currency,
                organization_id="org-acme" if organization_id is None else organization_id,
            )
        handle = await self.start(request, faults=faults, options=options, eager_start=eager_start, show_link=show_link)
        return await handle.result()

    async def side_worker(
        self, name: str, *, workflows: Sequence[type], extra_activities: Sequence[Callable[..., object]] = ()
    ) -> BackgroundWorker:
        """Start a worker of other workflow code on a task queue of its own: the lab's, plus ``-<name>``.

        It runs until the lab closes (or ``await worker.stop()``), so a payment started on its
        queue finishes even when the cell that waits for it is interrupted. Called again with
        the same name (a cell run again), it replaces the worker of that name.

        Raises:
            ValueError: ``name`` is not letters, digits, ``-`` or ``_`` (at most 40).
        """
        self._require_open()
        if not isinstance(name, str) or not _SIDE_NAME.fullmatch(name):
            raise InvalidArgumentError(f"side worker name must be letters, digits, '-' or '_' (at most 40), got {name!r}")
        earlier = self.side_workers.pop(name, None)
        if earlier is not None:
            await earlier.stop()
        activities = self.activities or PaymentActivities(self.repository)
        worker = BackgroundWorker(
            self.client, f"{self.task_queue}-{name}", activities, workflows=workflows, extra_activities=extra_activities
        )
        self.side_workers[name] = await worker.start()
        # A kernel that ended may have left payments on its own side queue of that name: this code may finish them.
        mine = [found for found in self.stranded if found.task_queue.endswith(f"-{name}")]
        taken = await self._take_stranded(mine, activities, workflows=workflows, extra_activities=extra_activities)
        if taken:
            print(f"With side worker {name!r}: " + describe_orphans(taken))
        return worker

    async def load_module(self, name: str, source: str, *, restart_worker: bool = True) -> LoadedModule:
        """Run workflow code written in a cell: ``await lab.load_module("payment_v2", source)``.

        The source is written to a file of its own in the lab's folder and imported with
        Temporal's sandbox intact; the lab's worker then restarts on the same task queue
        with its workflow classes (replacing the kit's by workflow name) and activities.
        Payments already running carry on with the new code. Loading the same name again
        replaces the earlier version. With ``restart_worker=False`` the version is only
        loaded and validated, not run: replay a history against its classes first.

        Raises:
            ValueError: ``name`` is not a valid module name.
            WorkflowModuleError: the source does not compile, import or pass the worker's
                validation; the message says what to change, and the worker keeps the code
                it had.
            WorkerElsewhereError: the lab's worker runs in a process of its own.
        """
        self._require_open()
        if not isinstance(self.worker, BackgroundWorker):
            raise WorkerElsewhereError("load_module needs the lab's worker in this kernel: open the lab without worker_process=True")
        if self.modules is None:
            self.modules = WorkflowModules()
        loaded = await deploy(self.worker if restart_worker else None, self.modules, name, source)
        for note in loaded.notes:
            print(f"Note: {note}")
        if restart_worker:
            await self._carry_orphans_on(loaded)
        return loaded

    async def _carry_orphans_on(self, loaded: LoadedModule) -> None:
        """After the lab's worker took new code: payments of an ended kernel that ran cell code follow it."""
        assert isinstance(self.worker, BackgroundWorker)
        for adopted in self.adopted:
            if adopted.task_queue in self._following_cell_code:  # taken over with code written in cells: keep up with it
                await adopted.restart(workflows=self.worker.workflows, extra_activities=self.worker.extra_activities)
        if self.stranded and self.activities is not None:
            taken = await self._take_stranded(self.stranded, self.activities)
            if taken:
                print(f"With {loaded.name}: " + describe_orphans(taken))
            if self.stranded:
                print(f"Not with {loaded.name}: " + describe_stranded(self.stranded))

    async def _take_stranded(
        self,
        orphans: Sequence[Orphans],
        activities: PaymentActivities,
        *,
        workflows: Sequence[type] | None = None,
        extra_activities: Sequence[Callable[..., object]] | None = None,
        checked: bool = False,
    ) -> list[Orphans]:
        """Start a worker on each queue of ``orphans`` whose histories replay with ``workflows`` (by default the code
        of the lab's worker); return those. The one place that keeps :attr:`stranded`: the others stay in it, to
        wait for code that replays them, and a queue another kernel took over meanwhile leaves it.

        Args:
            checked: ``orphans`` were just found orphaned (:func:`find_orphans` asked): do not ask again.
        """
        follows = workflows is None
        if workflows is None:
            workflows = self.worker.workflows if isinstance(self.worker, BackgroundWorker) else DEFAULT_WORKFLOWS
            extra_activities = self.worker.extra_activities if isinstance(self.worker, BackgroundWorker) else ()
        follows = follows and tuple(workflows) != tuple(DEFAULT_WORKFLOWS)
        extra = tuple(extra_activities or ())
        adopted = []
        for found in list(orphans):
            taken_elsewhere = not checked and not await still_orphaned(self.client, self.repository, found, lab_name=self.name)
            if not taken_elsewhere and await replays_with(self.client, found.workflow_ids, workflows):
                worker = BackgroundWorker(self.client, found.task_queue, activities, workflows=workflows, extra_activities=extra)
                self.adopted.append(await worker.start())
                await forget_sticky_workers(self.client, found.workflow_ids)  # their next task comes here at once
                self.service.taken_over.add(found.task_queue)  # its payments are the lab's now: searches find them
                if follows:
                    self._following_cell_code.add(found.task_queue)
                adopted.append(found)
            if taken_elsewhere or found in adopted:
                self.stranded = [other for other in self.stranded if other != found]
            elif found not in self.stranded:
                self.stranded.append(found)
        return adopted

    def _require_open(self) -> None:
        if self.closed:
            raise self._closed_error()

    def _closed_error(self) -> LabClosedError:
        return LabClosedError(
            f"the lab {self.name!r} was closed (`await lab.close()`), with its worker"
            f"{' and server' if self.connection.server is not None else ''}: open it again, `{self.reopen_with}`"
        )

    async def record_verdict(self, exercise_id: str, verdict: str, message: str = "") -> bool:
        """Record an exercise check's verdict in the lab's namespace (:func:`payments_lab.verdicts.record_verdict`),
        completed by this lab's worker; :meth:`close` lets it complete first.

        Returns:
            Whether the record was accepted; never raises for the server's sake.
        """
        from payments_lab.verdicts import record_id, record_verdict

        workflow_id = record_id(exercise_id)
        started = await record_verdict(self.client, self.task_queue, exercise_id, verdict, message, workflow_id=workflow_id)
        if started:
            task = asyncio.ensure_future(self._record_completed(workflow_id))
            self._records.add(task)
            task.add_done_callback(self._records.discard)
        return started

    async def _record_completed(self, workflow_id: str) -> None:
        try:
            await self.client.get_workflow_handle(workflow_id).result()
        except Exception:  # noqa: BLE001 - a record never fails anything; its execution timeout closes it
            pass

    async def _let_records_complete(self) -> None:
        """Give the records still open a moment to complete, then stop waiting for them."""
        from payments_lab.verdicts import RECORD_COMPLETED_WITHIN

        loop = asyncio.get_running_loop()
        # A record started under another event loop (asyncio.run called twice) cannot be awaited here.
        open_records = [task for task in self._records if task.get_loop() is loop]
        if open_records:
            await asyncio.wait(open_records, timeout=RECORD_COMPLETED_WITHIN)
        for task in list(self._records):
            if task.get_loop() is loop:
                task.cancel()
        self._records.clear()

    async def close(self) -> None:
        """Stop the worker, and the server if this lab started it; the repository goes on in memory, readable.

        The exercise records the lab started are given a moment to complete first (at most
        :data:`payments_lab.verdicts.RECORD_COMPLETED_WITHIN`): its worker completes them. Closing again
        does nothing (a closing cell run twice took 10 s asking its stopped server what still ran).
        """
        if self._closed_fully:
            return
        _LABS.pop(self.name, None)
        self.closed = True
        self.service.closed_because = self._closed_error  # its service, handles and checkout say so too, at once
        for worker in (self.worker, *self.adopted, *self.side_workers.values()):
            worker.closed_because = self._closed_error  # `lab.worker.start()` in a later cell: not a doomed worker
        await self._let_records_complete()
        for side in (*self.adopted, *self.side_workers.values()):
            await side.stop()
        await self.worker.stop()
        if self.connection.server is None:  # a shared server: what this lab ran goes on there
            await self._say_what_is_left_running()
        else:  # its own server stops with it: what still runs there ends unfinished
            await self._say_what_ends_with_the_server()
        if self.modules is not None:
            self.modules.close()
        said = str(self._closed_error())  # before the connection forgets its server
        await self.connection.close()
        if self._gate is not None:
            self._gate.closed_because = lambda: LabClosedError(said)
        self.repository.keep_in_memory()
        self._closed_fully = True

    def _task_queues(self) -> list[str]:
        """The queues this lab's workers poll: its own, its side workers', and those it took over."""
        return [self.task_queue, *(w.task_queue for w in (*self.side_workers.values(), *self.adopted))]

    async def _say_what_is_left_running(self) -> None:
        """Note that this process no longer polls the lab's queues, and say which payments still run there.

        The next lab opened in this process takes them over (:mod:`payments_lab.orphans`);
        another kernel would not, while this one lives: the server lists its pollers for 5 minutes.
        """
        queues = self._task_queues()
        closed_here(queues, self.name)
        try:
            left = await running_on(self.client, queues)
        except Exception:  # noqa: BLE001 - closing matters more than the count
            return
        if left:
            shown = ", ".join(left[:3]) + (", …" if len(left) > 3 else "")
            print(
                f"{plural(len(left), 'payment')} of this lab still run on the server ({shown}), with no worker now: "
                f"`{self.reopen_with}` in this kernel finishes them."
            )


    async def _say_what_ends_with_the_server(self) -> None:
        """Say which payments still run on the lab's own server, which stops with it: they end unfinished
        (unless the server keeps its state in a file, where they wait for a server started on it again).

        Off the script, a payment charged and stuck on a failing workflow task (lesson 09 before
        its fix), or one waiting for its customer (lesson 11), went with the server in silence,
        the money taken and never settled.
        """
        server = self.connection.server
        if server is None or server.db_file is not None:  # on a file, they wait there for a server started on it again
            return
        if not server.running:
            # Killed under the lab, from a terminal or by the kit (lesson 04), or crashed: nothing to ask (a question
            # waited out its window, closing took 5–10 s), and what ran in its memory went with it. The ledger, in this
            # process, still knows what was taken.
            unsettled = [p for p in self._charged_unsettled(self._ledger_payments()) if not self._settled(p)]
            if unsettled:
                print(
                    f"This lab's own server was down (killed, or it crashed), and the payments that ran in its memory went with it. "
                    f"Charged and never settled: {self._taken(unsettled)}: the ledger keeps it "
                    "(`lab.repository.ledger(payment_id)`)."
                )
            return
        queues = self._task_queues()
        try:
            left = await running_on(self.client, queues)
        except Exception:  # noqa: BLE001 - closing matters more than the count
            return
        if not left:
            return
        charged = self._charged_unsettled(map(payment_id_of, left))
        shown = ", ".join(left[:3]) + (", …" if len(left) > 3 else "")
        money = (
            f" Charged and never settled: {self._taken(charged)}: the ledger keeps it (`lab.repository.ledger(payment_id)`)."
            if charged
            else " None of them had been charged."
        )
        print(
            f"{plural(len(left), 'payment')} still ran on this lab's own server ({shown}), which stops with the lab: "
            f"they end here, unfinished.{money} To let payments outlive a kernel, start the lab with `payments-lab lab` "
            "(a server of its own, shared); to end them first, `await lab.service.cancel(payment_id)` before closing."
        )

    def _charged_unsettled(self, payment_ids: Iterable[str]) -> list[str]:
        """Of ``payment_ids``, those whose money the ledger still holds."""
        return [payment_id for payment_id in payment_ids if LedgerSummary.of(self.repository.ledger(payment_id)).kept]

    def _ledger_payments(self) -> list[str]:
        """Every payment the ledger has an entry for, in order."""
        return list(dict.fromkeys(entry.payment_id for entry in self.repository.ledger()))

    def _settled(self, payment_id: str) -> bool:
        payment = self.repository.find_by_id(payment_id)
        return payment is not None and payment.status.is_final

    def _taken(self, payment_ids: Sequence[str]) -> str:
        """``pay-1 (5.00 EUR taken), …`` for the first three."""
        said = []
        for payment_id in payment_ids[:3]:
            entries = self.repository.ledger(payment_id)
            said.append(f"{payment_id} ({LedgerSummary.of(entries).kept} {entries[0].currency} taken)")
        return ", ".join(said) + (", …" if len(payment_ids) > 3 else "")


_SIDE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")

DEFAULT_LAB_NAME = "lab"
"""The name of the lab ``open_lab()`` opens (one lab per name and kernel)."""


async def _close_quietly(lab: Lab, patience: float = 10.0) -> None:
    """Close a lab that no longer runs; what cannot be stopped within ``patience`` seconds is left."""
    try:
        await asyncio.wait_for(lab.close(), patience)
    except TimeoutError:  # its message is empty: the warning ended in a colon
        logging.getLogger(__name__).warning(
            "The lab %r did not close within %g s: what it still ran is left to end by itself.", lab.name, patience
        )
    except Exception as error:  # noqa: BLE001 - it is being replaced: say what happened, never stop the new one
        logging.getLogger(__name__).warning("The lab %r could not be closed cleanly: %s", lab.name, error)


def _refuse_other_fields(request: PaymentRequest, **given: str | None) -> None:
    """Refuse a field given beside ``request`` that says something else than the request does."""
    other = {name: value for name, value in given.items() if value is not None and value != getattr(request, name)}
    if other:
        said = ", ".join(f"{name}={value!r} (the request says {getattr(request, name)!r})" for name, value in other.items())
        raise InvalidArgumentError(
            f"lab.pay(request, ...) pays the request as it is, and {said} would be ignored: build the "
            "request with them, e.g. lab.request(amount, currency, organization_id=...)"
        )


async def open_lab(
    name: str = DEFAULT_LAB_NAME,
    *,
    db_file: str | Path | None = None,
    fault_profile: FaultProfile = NO_FAULTS,
    options: PaymentOptions | None = None,
    server: EmbeddedServer | None = None,
    worker_process: bool = False,
    quiet: bool = True,
) -> Lab:
    """Open the lab ``name``, or return it if it is already open in this process.

    Args:
        name: Labs are kept by name: opening an open one returns it unchanged.
        db_file: Keep the repository in this SQLite file (to share it with a worker
            process); None shares the lab session's or, when the lab runs its own server, keeps
            it in a temporary file announced under the server's address, so that a worker
            started elsewhere on that server shares it (see :mod:`payments_lab.ledger`).
        fault_profile: Faults applied to every payment.
        options: Default retry and timeout options of payments.
        server: An embedded server of the lab's own, used instead of the lab session or
            configured server (for instance one on a SQLite file that a lesson restarts).
        worker_process: Run the worker in a process of its own (``lab.worker.kill()``
            crashes it); needs ``db_file``, through which both processes share the repository.
        quiet: Hide the tracebacks of activity attempts that fail on purpose.
    """
    # The name begins the lab's task queue (``<name>-<8 hex digits>``): refused as one would be, before anything starts.
    checked_task_queue(name, "the lab's name", reserve=len(new_task_queue("")))
    existing = _LABS.get(name)
    if existing is not None and existing.running:
        return existing
    if existing is not None:
        # Its server stopped (or its worker did): close what is left, or its worker would poll a dead
        # address for the kernel's life, the SDK's errors landing under whichever cell runs.
        await _close_quietly(existing)
    if worker_process and db_file is None:
        raise InvalidArgumentError("worker_process=True needs a db_file: the worker process shares the repository through it")
    # Refused before anything starts: a refusal must leave no server or worker running behind it.
    options = checked_payment_options(options, PaymentOptions())
    fault_profile = checked_fault_profile(fault_profile)
    warning = latency_warning(fault_profile, options.charge_timeout)
    if warning is not None:
        print(f"Note: {warning}")
    try:
        return await _open_lab(name, db_file, fault_profile, options, server, worker_process=worker_process, quiet=quiet)
    except asyncio.CancelledError as stopped:
        # The cell was interrupted while the lab opened (its server starting, its worker's first call): in a notebook,
        # one line in place of 13 frames of asyncio and temporalio ending in a bare `CancelledError:`.
        stopped._render_traceback_ = lambda: [  # type: ignore[attr-defined]
            f"\x1b[31mStopped opening\x1b[0m the lab {name!r}: run the cell again to open it. What the interrupted "
            "opening had started is stopped; if the lab had opened, running the cell again returns it."
        ]
        raise


async def _open_lab(
    name: str,
    db_file: str | Path | None,
    fault_profile: FaultProfile,
    options: PaymentOptions,
    server: EmbeddedServer | None,
    *,
    worker_process: bool,
    quiet: bool,
) -> Lab:
    """:func:`open_lab`, its arguments checked."""
    if quiet:
        quiet_logs()
    show_figures_inline()
    kernel_startup.install_hints()  # where no kit launcher gave the kernel its start-up file
    connection = await connect(server=server)
    gate = ClosedGate()
    connection.client = gate.on(connection.client)
    worker: BackgroundWorker | WorkerProcess | None = None
    repository: PaymentRepository | None = None
    try:
        # A lab file given by name is the learner's to share (own_ledger); a server of the lab's own
        # announces the lab's file, so that a worker started elsewhere on that server shares it.
        repository = open_repository(connection.address, own_server=connection.server is not None, explicit=db_file, own_ledger=True)
        task_queue = new_task_queue(name)
        activities: PaymentActivities | None = None
        if worker_process:
            worker = WorkerProcess(
                connection.address, task_queue, db_file, namespace=connection.namespace, fault_profile=fault_profile  # type: ignore[arg-type]
            ).start()
        else:
            activities = PaymentActivities(repository, fault_profile=fault_profile)
            worker = await BackgroundWorker(connection.client, task_queue, activities).start()
        service = PaymentService(connection.client, task_queue, options=options, ui_url=connection.ui_url)
    except BaseException:
        if worker is not None:
            await worker.stop()
        await connection.close()
        if repository is not None:
            repository.close()
        raise
    lab = Lab(name, connection, repository, activities, worker, service)
    lab._gate = gate
    # A closed lab's message gives the line that opens it again: with the settings a lesson opened it with
    # (lesson 04's worker process and files), not the name alone, which opened another kind of lab.
    settings = [f"db_file={str(db_file)!r}"] if db_file is not None else []
    settings += ["worker_process=True"] if worker_process else []
    if server is not None and server.db_file is not None:
        settings.append(f"server=EmbeddedServer(db_file={str(server.db_file)!r})")
    if settings:
        lab.reopen_with = f"lab = await open_lab({name!r}, {', '.join(settings)})"
    _LABS[name] = lab
    if connection.server is None and activities is not None:  # a shared server: a kernel that ended may have left payments
        await _finish_orphans(lab, activities)
    return lab


async def _finish_orphans(lab: Lab, activities: PaymentActivities) -> None:
    """Start a worker on each task queue whose payments a kernel that ended left running (:mod:`payments_lab.orphans`).

    Payments whose histories do not replay with the lab's code wait in ``lab.stranded`` for code that does.
    """
    try:
        orphans = await find_orphans(lab.client, lab.repository, own_task_queue=lab.task_queue, lab_name=lab.name)
        adopted = await lab._take_stranded(orphans, activities, checked=True)
    except Exception as error:  # noqa: BLE001 - opening the lab matters more; say it, once
        logging.getLogger(__name__).warning("Could not look for payments left running by a kernel that ended: %s", error)
        return
    if adopted:
        print(describe_orphans(adopted))
    if lab.stranded:
        print(describe_stranded(lab.stranded))
