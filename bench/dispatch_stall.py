"""Where back-to-back payments lose ~40 ms per hand-off: the history service's transfer-task reads.

Runs the bare one-activity workflow on two dev servers, one with Temporal's default
``history.transferProcessorMaxPollRPS`` (20 reads per second, burst 20, per history shard;
the dev server has one shard) and one with the kit's setting, each back to back and spaced
``--spacing`` seconds apart, in alternating blocks. Reports the client-observed median, the
mean wait of a workflow task in its task queue (``WorkflowTaskScheduled`` → ``Started``, from
the histories) and how many waited more than 25 ms. (An activity task's wait cannot be read
from its history: its ``ActivityTaskStarted`` event carries the scheduled time.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from payments_lab.server import DEFAULT_TRANSFER_READS_PER_SECOND, EmbeddedServer


@activity.defn
async def noop(payment_id: str) -> str:
    """Do nothing."""
    return payment_id


@workflow.defn
class OneActivity:
    """One no-op activity: two workflow tasks, one activity task."""

    @workflow.run
    async def run(self, payment_id: str) -> str:
        """Run the activity."""
        return await workflow.execute_activity(noop, payment_id, start_to_close_timeout=timedelta(seconds=10))


STALL_MS = 25.0
"""A workflow task that waited longer than this in its task queue counts as stalled."""


async def _run(client: Client, task_queue: str, count: int, spacing: float) -> tuple[list[float], list[float]]:
    """Client latency of each of ``count`` workflows run one at a time, and each workflow task's queue wait (ms).

    The histories are fetched after the block: fetching one between two workflows would
    space them, and spacing is what hides the stall.
    """
    latencies: list[float] = []
    handles = []
    for _ in range(count):
        started = time.perf_counter()
        handle = await client.start_workflow(OneActivity.run, "p", id=f"stall-{uuid.uuid4().hex}", task_queue=task_queue)
        await handle.result()
        latencies.append((time.perf_counter() - started) * 1000)
        handles.append(handle)
        if spacing:
            await asyncio.sleep(spacing)
    waits: list[float] = []
    for handle in handles:
        scheduled = 0
        for event in (await handle.fetch_history()).events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                scheduled = event.event_time.ToNanoseconds()
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                waits.append((event.event_time.ToNanoseconds() - scheduled) / 1e6)
    return latencies, waits


async def main(rounds: int, count: int, spacing: float) -> None:
    lanes = {"temporal_default": None, "kit": DEFAULT_TRANSFER_READS_PER_SECOND}
    servers = {name: EmbeddedServer(ui=False, transfer_reads_per_second=reads).start() for name, reads in lanes.items()}
    results: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    try:
        clients = {name: await Client.connect(server.address) for name, server in servers.items()}
        task_queue = f"stall-{uuid.uuid4().hex[:6]}"
        workers = [Worker(c, task_queue=task_queue, workflows=[OneActivity], activities=[noop]) for c in clients.values()]
        for worker in workers:
            await worker.__aenter__()
        try:
            for _ in range(rounds):  # alternating blocks: the machine's noise falls on every lane
                for mode, gap in (("back_to_back", 0.0), ("spaced", spacing)):
                    for name, client in clients.items():
                        await _run(client, task_queue, 15, gap)  # the block's first runs use up the burst of reads
                        latencies, waits = await _run(client, task_queue, count, gap)
                        kept = results.setdefault((name, mode), ([], []))
                        kept[0].extend(latencies)
                        kept[1].extend(waits)
        finally:
            for worker in workers:
                await worker.__aexit__(None, None, None)
    finally:
        for server in servers.values():
            server.stop()
    for name, reads in lanes.items():
        print(f"# {name}: history.transferProcessorMaxPollRPS={reads or 20}")
        for mode in ("back_to_back", "spaced"):
            latencies, waits = results[(name, mode)]
            print(f"{name}_one_activity_{mode}_ms={statistics.median(latencies):.0f}")
            print(f"{name}_workflow_task_wait_{mode}_ms={statistics.mean(waits):.1f}")
            stalled = sum(1 for wait in waits if wait > STALL_MS)
            print(f"{name}_workflow_tasks_stalled_{mode}={stalled}/{len(waits)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=15, help="workflows per block")
    parser.add_argument("--spacing", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.count, args.spacing))
