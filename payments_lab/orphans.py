"""Payments left running by a kernel that ended: found when a lab opens, and finished by its worker.

Each lab polls a task queue of its own. Restart a notebook's kernel while one of its payments
runs, and the new kernel's lab polls a new queue: nothing polls the old one any more, and the
payment stays running for ever, its money taken and never settled. A lab that opens on a
shared server (a lab session, ``TEMPORAL_ADDRESS``) therefore looks for running payments
whose task queue was a lab's and whose workers were all processes of this machine that have
ended, and starts a worker of its own on each such queue: the workflows carry on from their
histories, and a charge retried finds the first one in the shared ledger.

Only with code their histories replay with: a payment that ran workflow code written in the
ended kernel's cells (``lab.load_module``) would fail every task with the kit's code. Such a
payment waits until the new lab loads code that replays it, then is finished with that code.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Replayer

from payments_lab.client import quiet_runtime
from payments_lab.domain import payment_id_of
from payments_lab.repository import PaymentRepository
from payments_lab.task_queues import ended_here, pollers
from payments_lab.visibility import PAYMENTS_QUERY, quoted
from payments_lab.wording import plural

LAB_TASK_QUEUE = re.compile(r".+-[0-9a-f]{8}(?:-[A-Za-z0-9_-]{1,40})?")
"""How a lab's task queue is named (:func:`payments_lab.worker.new_task_queue`), and its side workers'
(the lab's queue, ``-`` and the side worker's name: :meth:`payments_lab.lab.Lab.side_worker`); a queue
named by hand (``payments``, the command line's) is left to whoever named it."""

MAX_RUNNING = 200
"""Running payments looked at when a lab opens."""

LOOK_WINDOW = timedelta(seconds=5)
"""How long each question to the server may take: opening a lab never waits long on this."""


@dataclass(frozen=True)
class Orphans:
    """Running payments of one task queue that no live process polls."""

    task_queue: str
    """The queue of the lab that ended."""
    workflow_ids: tuple[str, ...]
    """Its running payments."""


async def find_orphans(
    client: Client, repository: PaymentRepository, *, own_task_queue: str, lab_name: str | None = None
) -> list[Orphans]:
    """Running payments whose lab's task queue nothing alive polls, by queue.

    A queue qualifies when every worker the server saw polling it lately (workflow or
    activity tasks) ended on this machine; when the server saw none (it forgets pollers
    after a few minutes), when every payment's last attempt in the shared attempt log was
    made by such a worker. A queue polled by a process elsewhere is never taken; one this
    process polled is taken only if a lab named ``lab_name`` closed it (``lab.close()``, then
    ``open_lab()`` again in the same kernel).
    """
    running: dict[str, list[str]] = {}
    query = f"{PAYMENTS_QUERY} AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, limit=MAX_RUNNING, rpc_timeout=LOOK_WINDOW):
        queue = execution.task_queue
        if queue != own_task_queue and LAB_TASK_QUEUE.fullmatch(queue):
            running.setdefault(queue, []).append(execution.id)
    found = [Orphans(queue, tuple(ids)) for queue, ids in running.items()]
    return [orphans for orphans in found if await still_orphaned(client, repository, orphans, lab_name=lab_name)]


async def still_orphaned(client: Client, repository: PaymentRepository, orphans: Orphans, *, lab_name: str | None = None) -> bool:
    """Whether nothing alive polls the queue of ``orphans`` (another kernel may have taken it over since it was found)."""
    queue = orphans.task_queue
    identities = await pollers(client, queue, timeout=LOOK_WINDOW)
    if identities:
        return all(ended_here(identity, queue, lab_name=lab_name) for identity in identities)
    workers = [_last_worker(repository, workflow_id) for workflow_id in orphans.workflow_ids]
    return all(worker is not None and ended_here(worker, queue, lab_name=lab_name) for worker in workers)


def _last_worker(repository: PaymentRepository, workflow_id: str) -> str | None:
    attempts = repository.attempts(payment_id_of(workflow_id))
    return attempts[-1].worker if attempts else None


def _which(orphans: Sequence[Orphans]) -> tuple[str, str]:
    """How many payments, and where: ``("2 payments", "task queue lab-…: payment-…, payment-…")``."""
    payments = sum(len(o.workflow_ids) for o in orphans)
    queues = ", ".join(o.task_queue for o in orphans)
    sample = ", ".join(wid for o in orphans for wid in o.workflow_ids[:3])
    return plural(payments, "payment"), f"task queue {queues}: {sample}"


def describe_orphans(orphans: Sequence[Orphans]) -> str:
    """One line on what a lab took over."""
    payments, where = _which(orphans)
    return (
        f"This lab's worker also finishes {payments} left running by a kernel that ended "
        f"({where}): nothing else polled them, and they would have waited for ever."
    )


async def replays_with(client: Client, workflow_ids: Sequence[str], workflows: Sequence[type]) -> bool:
    """Whether every one of these workflows' histories replays with ``workflows``: code a worker can carry them on with.

    A history replays when the code gives the commands it recorded, in order; other code would
    fail each of the payment's tasks with a non-determinism error, for ever. Code that raises in
    the task a payment waits on still replays (that task's activation is not run again): it
    fails that task, as it did for the kernel that ended, until a fix is loaded.
    """
    replayer = Replayer(workflows=list(workflows), data_converter=client.data_converter, runtime=quiet_runtime())
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history(rpc_timeout=LOOK_WINDOW)
        if (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is not None:
            return False
    return True


def describe_stranded(orphans: Sequence[Orphans]) -> str:
    """One line on payments a lab found but cannot finish with the code it has."""
    payments, where = _which(orphans)
    return (
        f"{payments} left running by a kernel that ended ran workflow code this lab does not have "
        f"({where}), most likely written in that kernel's cells: their histories do not replay "
        "with the kit's code. Load a version that replays them (`await lab.load_module(name, source)`, as that kernel "
        "did, with any bug fixed, or run the cell that started its side worker, `lab.side_worker(...)`): this lab then "
        "finishes them with it."
    )


async def forget_sticky_workers(client: Client, workflow_ids: Sequence[str]) -> None:
    """Tell the server that the ended worker no longer holds these workflows in its cache (``ResetStickyTaskQueue``).

    A workflow's next task goes first to the *sticky* queue of the worker that ran its last one; with that worker
    gone, it waits there for the sticky schedule-to-start timeout (10 s) before reaching the task queue. Off the
    script, the first confirmation sent after a kernel restart (lesson 11) waited just that, and was told no worker
    took it. Best effort: a workflow that ended meanwhile, or a server that does not answer, changes nothing.
    """

    async def reset(workflow_id: str) -> None:
        request = ResetStickyTaskQueueRequest(namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id))
        try:
            await client.workflow_service.reset_sticky_task_queue(request, timeout=LOOK_WINDOW)
        except RPCError:
            pass

    await asyncio.gather(*(reset(workflow_id) for workflow_id in workflow_ids))


async def running_on(client: Client, task_queues: Sequence[str]) -> list[str]:
    """The running payments of ``task_queues`` (at most :data:`MAX_RUNNING`), by workflow id."""
    queues = " OR ".join(f"TaskQueue = {quoted(queue)}" for queue in task_queues)
    query = f"{PAYMENTS_QUERY} AND ExecutionStatus = 'Running' AND ({queues})"
    return [execution.id async for execution in client.list_workflows(query, limit=MAX_RUNNING, rpc_timeout=LOOK_WINDOW)]
