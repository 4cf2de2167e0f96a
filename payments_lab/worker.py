"""Workers: one running in the background of a notebook, or one running as its own process."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from payments_lab import processes
from payments_lab.activities import PaymentActivities
from payments_lab.bytecode import compile_once
from payments_lab.confirmation import ConfirmedPaymentWorkflow
from payments_lab.faults import NO_FAULTS, FaultProfile, checked_fault_profile
from payments_lab.ledger import ledger_identity, refuse_a_second_ledger
from payments_lab.server import down_here
from payments_lab.task_queues import polled_here_again, stopped_here
from payments_lab.verdicts import ExerciseCheckWorkflow
from payments_lab.workflows import PaymentWorkflow

DEFAULT_WORKFLOWS: tuple[type, ...] = (PaymentWorkflow, ConfirmedPaymentWorkflow)
"""The workflow classes a worker runs unless told otherwise."""

READY_LINE = "payments-lab worker ready"
"""What a worker process prints once it polls its task queue."""

LEDGER_CHECK_WINDOW = timedelta(seconds=2)
"""How long a starting worker waits for the server's list of its queue's pollers (a few ms when the server
answers): on a server stopped with Ctrl-Z, ``await lab.worker.start()`` starts without the check after this."""


def new_task_queue(prefix: str = "payments") -> str:
    """A task queue name no other lab, test or kernel uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_worker(
    client: Client,
    task_queue: str,
    activities: PaymentActivities,
    *,
    workflows: Sequence[type] = DEFAULT_WORKFLOWS,
    extra_activities: Sequence[Callable[..., Any]] = (),
    sticky_queue_schedule_to_start_timeout: timedelta = timedelta(seconds=10),
    max_concurrent_activities: int = 100,
) -> Worker:
    """A worker that runs the payment workflow and activities, and completes exercise check records.

    Args:
        client: Client of the server.
        task_queue: Task queue to poll.
        activities: The payment activities, bound to their repository.
        workflows: Workflow classes to run: the payment workflow and the one that waits
            for the customer (lesson 11); another version of the payment workflow
            (lesson 7) can take the place of :class:`PaymentWorkflow`.
        extra_activities: Activities that another version of the workflow needs.
        sticky_queue_schedule_to_start_timeout: How long a workflow task waits for this
            worker before any worker may take it (short for crash demonstrations).
        max_concurrent_activities: Activity attempts run at once.
    """
    workflow_classes = list(dict.fromkeys([*workflows, ExerciseCheckWorkflow]))
    compile_once(workflow_classes)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflow_classes,
        activities=[*activities.all, *extra_activities],
        identity=ledger_identity(activities.identity, activities.repository.ledger_id),
        max_concurrent_activities=max_concurrent_activities,
        sticky_queue_schedule_to_start_timeout=sticky_queue_schedule_to_start_timeout,
        # On shutdown, running attempts get this long to finish before being cancelled.
        graceful_shutdown_timeout=timedelta(seconds=1),
        # Heartbeats reach the server at least every second, and so do cancellations.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    )


_ENDING_OUT_OF_SIGHT: set[asyncio.Future[Any]] = set()
"""Shutdowns of workers whose server was down, kept until they end (the event loop keeps only weak references)."""


def _end_out_of_sight(worker: Worker, run: asyncio.Task[None]) -> asyncio.Future[Any]:
    """Shut ``worker`` down without waiting; how it ends is read (``return_exceptions``), so nothing is logged later.

    Returns:
        What ends with it: until then, the core refuses another worker on its client and task queue.
    """
    ending = asyncio.gather(worker.shutdown(), run, return_exceptions=True)
    _ENDING_OUT_OF_SIGHT.add(ending)
    ending.add_done_callback(_ENDING_OUT_OF_SIGHT.discard)
    return ending


def _never_polled(error: Exception) -> bool:
    """Whether ``error`` ended a worker before it polled: its first call to the server, describing the namespace,
    failed (temporalio's ``Worker.run``, which retries it for some seconds first)."""
    return isinstance(error, RuntimeError) and str(error).startswith("Worker validation failed")


class BackgroundWorker:
    """A worker running as a task of this process's event loop, between notebook cells.

    ``await worker.start()`` returns at once; the worker keeps polling while cells run.
    ``await worker.stop()`` shuts it down. Also an async context manager, which a cell can run
    again: Temporal's ``Worker`` runs once and holds its task queue from the moment it is built,
    so this one builds it when it starts, and builds a new one each time it starts again.
    """

    def __init__(
        self,
        client: Client,
        task_queue: str,
        activities: PaymentActivities,
        *,
        workflows: Sequence[type] = DEFAULT_WORKFLOWS,
        extra_activities: Sequence[Callable[..., Any]] = (),
    ) -> None:
        self.task_queue = task_queue
        self.activities = activities
        self._client = client
        self.workflows: tuple[type, ...] = tuple(workflows)
        """The workflow classes the worker runs."""
        self.extra_activities: tuple[Callable[..., Any], ...] = tuple(extra_activities)
        """The activities it runs besides the payment's."""
        self._worker: Worker | None = None
        self._ran = False
        self._task: asyncio.Task[None] | None = None
        # One start, stop or restart at a time: two restarts at once (a cell interrupted and run again
        # while the first deployment went on) both shut the old worker down, and the second then waited
        # for ever on the new worker's task.
        self._changing = asyncio.Lock()
        self.closed_because: Callable[[], Exception] | None = None
        """What to raise on :meth:`start` once the lab this worker belongs to has closed."""
        self._ending: asyncio.Future[Any] | None = None
        self.ended_with: Exception | None = None
        """Why the worker had stopped by itself when it was stopped (e.g. its server was killed before it could
        start polling: ``Worker validation failed``); None if it ran until :meth:`stop`."""

    def __repr__(self) -> str:
        return f"BackgroundWorker(task_queue={self.task_queue!r}, running={self.running})"

    @property
    def running(self) -> bool:
        """Whether the worker is polling."""
        return self._task is not None and not self._task.done()

    async def start(self) -> BackgroundWorker:
        """Start polling in the background (does nothing if already running); a stopped worker starts again.

        Raises:
            LabClosedError: the lab of this worker has closed (a lesson's cell run after its closing cell).
            LedgerMismatchError: a worker that charges into another ledger polls the task queue: a charge
                retried by one after the other took it would be taken twice (see :mod:`payments_lab.ledger`).
        """
        if self.closed_because is not None:
            raise self.closed_because()
        async with self._changing:
            await self._after_the_one_before()
            if not self.running:
                with suppress(RPCError):  # a server away: the worker's own polls will say so
                    await refuse_a_second_ledger(
                        self._client,
                        self.task_queue,
                        own_ledger=False,
                        ledger_id=self.activities.repository.ledger_id,
                        timeout=LEDGER_CHECK_WINDOW,
                    )
            self._start()
        return self

    def _start(self) -> None:
        if not self.running:
            if self._worker is None or self._ran:  # Temporal's Worker runs once: started again, it is a new one
                self._worker = self._build(self.workflows, self.extra_activities)
            self._ran = True
            self.ended_with = None
            self._task = asyncio.create_task(self._worker.run(), name=f"worker {self.task_queue}")
            polled_here_again(self.task_queue)

    def _build(self, workflows: Sequence[type], extra_activities: Sequence[Callable[..., Any]]) -> Worker:
        return create_worker(self._client, self.task_queue, self.activities, workflows=workflows, extra_activities=extra_activities)

    async def _after_the_one_before(self) -> None:
        """Return once the worker stopped before, with its server gone, has ended out of sight (a server started again
        on its file meanwhile): the core takes a new worker on this client and queue only then."""
        if self._ending is not None:
            await self._ending
            self._ending = None

    async def stop(self) -> None:
        """Shut the worker down and wait until it has stopped."""
        async with self._changing:
            await self._stop()

    async def _stop(self) -> None:
        task, worker = self._task, self._worker
        if task is None:
            return
        ended_by_itself = task.done()
        try:
            if not ended_by_itself and worker is not None:
                if down_here(self._client.service_client.config.target_host) is not None:
                    # The server this process started is down (killed from a terminal, crashed, or killed by the kit,
                    # lesson 04): nothing answers the worker's last calls (its first one, the report of an attempt it
                    # cancels), which temporalio retries for 10–18 s. Closing the lab waited them out, and `open_lab()`
                    # again, the fix the lab's errors give, gave up on the old lab after 10 s with a warning. The worker
                    # holds nothing the server could still want: it ends out of sight (against the server, should it be
                    # started again on its file meanwhile).
                    self._ending = _end_out_of_sight(worker, task)
                    return
                await worker.shutdown()
            await asyncio.wait([task])
            error = task.exception()  # raises the CancelledError of a cancellation from elsewhere
            if error is not None:
                if not isinstance(error, Exception) or not (ended_by_itself or _never_polled(error)):
                    raise error
                # Off the script, a server killed just after the lab opened failed the worker's first call: closing
                # the lab then raised that raw RuntimeError, and opening it again warned that it could not be closed.
                # The calls that needed the server have said it was gone; stopping a stopped worker is done.
                self.ended_with = error
        finally:
            self._task = None
            stopped_here(self.task_queue)  # the server lists it 5 minutes more: "who polls?" must not count it

    async def restart(self, *, workflows: Sequence[type], extra_activities: Sequence[Callable[..., Any]] = ()) -> None:
        """Run other workflow code on the same task queue: running workflows carry on with it.

        Temporal's core allows one worker per task queue in a process, so this one stops
        before the new one is built; if building it raises (the worker validates its
        workflows in the sandbox), the code it had runs again and the error is raised.
        """
        async with self._changing:
            was_running = self.running
            await self._stop()
            await self._after_the_one_before()
            try:
                self._worker = self._build(workflows, extra_activities)
            except Exception:
                self._worker = None  # _start() builds the code it had
                raise
            finally:
                self._ran = False
                if was_running:
                    self._start()
            self.workflows = tuple(workflows)
            self.extra_activities = tuple(extra_activities)

    async def __aenter__(self) -> BackgroundWorker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class WorkerProcess(processes.ChildProcess):
    """A worker in its own process (``payments-lab worker``), to crash on purpose or to scale out.

    It shares the payments, ledger and attempts through a repository file, and dies with
    this process.

    Args:
        address: ``host:port`` of the server.
        task_queue: Task queue to poll.
        db_file: Repository file shared with this process.
        namespace: Namespace of the task queue.
        fault_profile: Faults applied to every payment.
    """

    def __init__(
        self,
        address: str,
        task_queue: str,
        db_file: str | Path,
        *,
        namespace: str = "default",
        fault_profile: FaultProfile = NO_FAULTS,
    ) -> None:
        self.address = address
        self.task_queue = task_queue
        self.db_file = Path(db_file)
        self.namespace = namespace
        self.fault_profile = fault_profile
        self.closed_because: Callable[[], Exception] | None = None
        """What to raise on :meth:`start` once the lab this worker belongs to has closed."""
        super().__init__("The worker process")

    @property
    def fault_profile(self) -> FaultProfile:
        """Faults applied to every payment; a new one takes effect when the process starts again."""
        return self._fault_profile

    @fault_profile.setter
    def fault_profile(self, profile: FaultProfile) -> None:
        # Checked here, in the cell that sets it, not when the process is next started.
        self._fault_profile = checked_fault_profile(profile)

    def __repr__(self) -> str:
        return f"WorkerProcess(pid={self.pid}, task_queue={self.task_queue!r}, running={self.running})"

    def command(self) -> list[str]:
        """The command line of the worker process."""
        profile = self.fault_profile
        return [
            sys.executable, "-m", "payments_lab", "worker",
            "--address", self.address,
            "--namespace", self.namespace,
            "--task-queue", self.task_queue,
            "--db", str(self.db_file),
            "--failure-rate", str(profile.charge_failure_rate),
            "--latency", str(profile.charge_latency),
            "--seed", str(profile.seed),
            "--crash-friendly",
            # The lab's task queue is its own: no other worker charges from another ledger.
            "--own-ledger",
        ]

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        """Start the process (again, after a crash) and return once it polls its task queue.

        Raises:
            LabClosedError: the lab of this worker has closed: its server is gone, and the process would fail to
                reach it.
        """
        if self.closed_because is not None:
            raise self.closed_because()
        if self.running:
            return self
        self.launch(self.command(), self._ready, timeout)
        return self

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the process (SIGINT, then SIGKILL after ``grace`` seconds) and wait until it has exited.

        Awaited, as :meth:`BackgroundWorker.stop` is, so a lab stops either worker the same
        way; the wait runs in a thread, so the event loop (a notebook's) carries on meanwhile.
        :meth:`terminate` is the same stop for code with no event loop.
        """
        await asyncio.to_thread(self.terminate, grace)

    def _ready(self) -> bool:
        return self.log_path is not None and READY_LINE in self.log_path.read_text(errors="replace")
