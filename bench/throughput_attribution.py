"""What the kit's throughput would be without each of its costs: the kit, the kit with parts switched off, and bare temporalio.

``throughput.py`` gives the kit's ratio to bare temporalio; this bench asks what that ratio
would become if a part of the kit that teaches something were taken away: the attempt log
(every attempt in the repository, which Temporal's history does not keep), the search
attributes (``OrganizationId``, ``PaymentCurrency`` and ``PaymentStatus`` at start, and the
final status upserted as the payment ends), the charge's heartbeat timeout (how a crashed
worker is noticed in seconds), and all three together. Each part is switched off in this
process only, between batches, so every side runs on the same server and the same workers
in the same run. Beside them, the kit and bare temporalio on workers without Temporal's
sandbox: not a way to run (the kit never does), a measure of what the sandbox costs each side.
Prints ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import temporalio.workflow
from bare_workflow import BareWorkflow, charge, notify, validate
from temporalio.client import Client
from temporalio.common import TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from throughput import _core_thread_cpu_seconds, _cpu_seconds, _history_costs, _timed, bare_worker, run_bare

import payments_lab.service
from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.lab import quiet_logs
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import create_worker
from payments_lab.workflows import PaymentWorkflow

ATTEMPT_LOG = "attempt_log"
SEARCH_ATTRIBUTES = "search_attributes"
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
PARTS = (ATTEMPT_LOG, SEARCH_ATTRIBUTES, HEARTBEAT_TIMEOUT)


@dataclass(frozen=True)
class Side:
    """One way of running payments."""

    name: str
    """How the printed figures are prefixed."""
    without: frozenset[str] = frozenset()
    """Parts of the kit switched off while this side runs."""
    bare: bool = False
    """Bare temporalio instead of the kit."""
    sandboxed: bool = True
    """Workflows run in Temporal's sandbox, as everywhere in the kit; without it, the figures say
    what the sandbox costs that side (it re-imports the workflow's module for every run)."""


SIDES = (
    Side("bare", bare=True),
    Side("kit"),
    *(Side(f"kit_without_{part}", frozenset({part})) for part in PARTS),
    Side("kit_without_all_three", frozenset(PARTS)),
    Side("bare_unsandboxed", bare=True, sandboxed=False),
    Side("kit_unsandboxed", sandboxed=False),
)


@asynccontextmanager
async def _no_attempt_record(self: PaymentActivities, payment_id: str) -> AsyncIterator[None]:
    yield


def _no_upsert(*args: object, **kwargs: object) -> None:
    return None


@contextmanager
def _switched_off(parts: frozenset[str]) -> Iterator[None]:
    """Run with ``parts`` of the kit switched off in this process (the heartbeat timeout is an option: see ``main``)."""
    saved = (
        PaymentActivities._attempt,
        payments_lab.service._search_attributes,
        temporalio.workflow.upsert_search_attributes,
    )
    try:
        if ATTEMPT_LOG in parts:
            PaymentActivities._attempt = _no_attempt_record  # type: ignore[method-assign]
        if SEARCH_ATTRIBUTES in parts:
            # The sandbox passes temporalio through from this process, so the workflow's
            # ``workflow.upsert_search_attributes`` is this module attribute.
            payments_lab.service._search_attributes = lambda request: TypedSearchAttributes.empty
            temporalio.workflow.upsert_search_attributes = _no_upsert
        yield
    finally:
        (
            PaymentActivities._attempt,  # type: ignore[method-assign]
            payments_lab.service._search_attributes,
            temporalio.workflow.upsert_search_attributes,
        ) = saved


async def main(batch: int, rounds: int) -> None:
    quiet_logs()
    with EmbeddedServer(ui=False) as server:
        client: Client = (await connect(address=server.address)).client
        queues = {(bare, sandboxed): f"attr-{uuid.uuid4().hex[:6]}" for bare in (False, True) for sandboxed in (False, True)}
        services = {
            (heartbeat_off, sandboxed): PaymentService(
                client, queues[False, sandboxed], options=PaymentOptions(charge_heartbeat_timeout=None) if heartbeat_off else PaymentOptions()
            )
            for heartbeat_off in (False, True)
            for sandboxed in (False, True)
        }

        def payment(side: Side) -> Callable[[], Awaitable[object]]:
            if side.bare:
                return lambda: run_bare(client, queues[True, side.sandboxed], f"bare-{uuid.uuid4().hex}")
            service = services[HEARTBEAT_TIMEOUT in side.without, side.sandboxed]

            async def kit_payment() -> object:
                request = PaymentRequest(uuid.uuid4().hex[:12], "org-acme", "bench", "10.00", "EUR")
                last_payment[side.name] = request.payment_id
                return await service.process(request)

            return kit_payment

        last_payment: dict[str, str] = {}
        seconds = dict.fromkeys((side.name for side in SIDES), 0.0)
        server_cpu, own_cpu, core_cpu = dict(seconds), dict(seconds), dict(seconds)
        repository = PaymentRepository()
        activities = PaymentActivities(repository)
        workers = (
            create_worker(client, queues[False, True], activities),
            bare_worker(client, queues[True, True]),
            # The same workers without the sandbox (the worker options that matter here are the same).
            Worker(
                client,
                task_queue=queues[False, False],
                workflows=[PaymentWorkflow],
                activities=activities.all,
                max_concurrent_activities=100,
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
            Worker(
                client,
                task_queue=queues[True, False],
                workflows=[BareWorkflow],
                activities=[validate, charge, notify],
                max_concurrent_activities=100,
                workflow_runner=UnsandboxedWorkflowRunner(),
            ),
        )
        async with workers[0], workers[1], workers[2], workers[3]:
            for side in SIDES:  # warm up every path
                with _switched_off(side.without):
                    await _timed(payment(side), 20)
            for round_number in range(rounds):
                # Forwards, then backwards: each side follows a different one from round to round.
                for side in SIDES if round_number % 2 == 0 else SIDES[::-1]:
                    with _switched_off(side.without):
                        server_before, own_before, core_before = (
                            _cpu_seconds(server.pid),
                            time.process_time(),
                            _core_thread_cpu_seconds(),
                        )
                        _, elapsed = await _timed(payment(side), batch)
                        server_cpu[side.name] += _cpu_seconds(server.pid) - server_before
                        own_cpu[side.name] += time.process_time() - own_before
                        core_cpu[side.name] += _core_thread_cpu_seconds() - core_before
                        seconds[side.name] += elapsed
            # What each side's last payment left behind: proof that its switches took effect.
            left = {}
            for side in SIDES:
                if side.bare:
                    continue
                payment_id = last_payment[side.name]
                workflow_id = services[False, True].handle(payment_id).workflow_id
                costs = await _history_costs(client, workflow_id)
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                heartbeat = max(
                    event.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta().total_seconds()
                    for event in history.events
                    if event.HasField("activity_task_scheduled_event_attributes")
                )
                left[side.name] = {
                    "attempts_recorded": len(repository.attempts(payment_id)),
                    "search_attributes_at_start": costs["search_attributes_at_start"],
                    "search_attribute_upserts": costs["search_attribute_upserts"],
                    "charge_heartbeat_timeout_s": heartbeat,
                }

    payments = batch * rounds
    print(f"rounds={rounds} batch={batch}")
    for side in SIDES:
        print(f"{side.name}_payments_per_s={payments / seconds[side.name]:.1f}")
        print(f"{side.name}_vs_bare_throughput_ratio={seconds['bare'] / seconds[side.name]:.3f}")
        if not side.bare:
            print(f"{side.name}_vs_kit_throughput_ratio={seconds['kit'] / seconds[side.name]:.3f}")
        print(f"{side.name}_server_cpu_ms_per_payment={server_cpu[side.name] * 1000 / payments:.1f}")
        print(f"{side.name}_worker_and_client_cpu_ms_per_payment={own_cpu[side.name] * 1000 / payments:.1f}")
        print(f"{side.name}_sdk_core_threads_cpu_ms_per_payment={core_cpu[side.name] * 1000 / payments:.1f}")
        for name, value in left.get(side.name, {}).items():
            print(f"{side.name}_{name}={value:g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100, help="payments started at once per batch")
    parser.add_argument("--rounds", type=int, default=10, help="rounds; each runs one batch of every side")
    args = parser.parse_args()
    asyncio.run(main(args.batch, args.rounds))
