"""Payments left running by a kernel that ended: found when a lab opens, and finished by its worker.

Each lab polls a task queue of its own. Restart a notebook's kernel while one of its payments
runs, and the new kernel's lab polls a new queue: nothing polls the old one any more, and the
payment stays running for ever, its money taken and never settled. A lab that opens on a
shared server (a lab session, ``TEMPORAL_ADDRESS``) therefore looks for running payments
whose task queue was a lab's and whose workers were all processes of this machine that have
ended, and starts a worker of its own on each such queue: the workflows carry on from their
histories, and a charge retried finds the first one in the shared ledger.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from payments_lab.domain import payment_id_of
from payments_lab.processes import pid_alive
from payments_lab.repository import PaymentRepository
from payments_lab.visibility import PAYMENTS_QUERY
from payments_lab.wording import plural

LAB_TASK_QUEUE = re.compile(r".+-[0-9a-f]{8}")
"""How a lab's task queue is named (:func:`payments_lab.worker.new_task_queue`); a queue named by hand
(``payments``, the command line's) is left to whoever named it."""

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


def ended_here(identity: str) -> bool:
    """Whether a worker identity (``pid@host``, Temporal's default) names a process of this machine that has ended."""
    pid, _, host = identity.partition("@")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


async def find_orphans(client: Client, repository: PaymentRepository, *, own_task_queue: str) -> list[Orphans]:
    """Running payments whose lab's task queue nothing alive polls, by queue.

    A queue qualifies when every worker the server saw polling it lately (workflow or
    activity tasks) ended on this machine; when the server saw none (it forgets pollers
    after a few minutes), when every payment's last attempt in the shared attempt log was
    made by such a worker. A queue polled by a process elsewhere is never taken.
    """
    running: dict[str, list[str]] = {}
    query = f"{PAYMENTS_QUERY} AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, limit=MAX_RUNNING, rpc_timeout=LOOK_WINDOW):
        queue = execution.task_queue
        if queue != own_task_queue and LAB_TASK_QUEUE.fullmatch(queue):
            running.setdefault(queue, []).append(execution.id)
    found = []
    for queue, workflow_ids in running.items():
        identities = await _pollers(client, queue)
        if identities:
            orphaned = all(ended_here(identity) for identity in identities)
        else:
            workers = [_last_worker(repository, workflow_id) for workflow_id in workflow_ids]
            orphaned = all(worker is not None and ended_here(worker) for worker in workers)
        if orphaned:
            found.append(Orphans(queue, tuple(workflow_ids)))
    return found


async def _pollers(client: Client, task_queue: str) -> set[str]:
    identities: set[str] = set()
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind),
            timeout=LOOK_WINDOW,
        )
        identities |= {poller.identity for poller in described.pollers}
    return identities


def _last_worker(repository: PaymentRepository, workflow_id: str) -> str | None:
    attempts = repository.attempts(payment_id_of(workflow_id))
    return attempts[-1].worker if attempts else None


def describe_orphans(orphans: Sequence[Orphans]) -> str:
    """One line on what a lab took over."""
    payments = sum(len(o.workflow_ids) for o in orphans)
    queues = ", ".join(o.task_queue for o in orphans)
    sample = ", ".join(wid for o in orphans for wid in o.workflow_ids[:3])
    return (
        f"This lab's worker also finishes {plural(payments, 'payment')} left running by a kernel that ended "
        f"(task queue {queues}: {sample}): nothing else polled them, and they would have waited for ever."
    )
