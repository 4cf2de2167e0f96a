"""Kit vs bare temporalio: payments per second and single-payment latency, side by side.

Both run on the same embedded dev server, with the same worker settings, in rounds that
alternate kit-bare and bare-kit; throughput is payments over the seconds all rounds took,
latency the median of one-at-a-time payments. Beside them: the CPU each side cost the
server and this process per payment, and what one payment's history asks of the server.
Prints ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from bare_workflow import BareWorkflow, charge, notify, validate
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.lab import quiet_logs
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService, result_in_windows
from payments_lab.worker import create_worker


async def _timed(start_one: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    """Run ``count`` at once; return (per second, elapsed seconds)."""
    started = time.perf_counter()
    await asyncio.gather(*(start_one() for _ in range(count)))
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) process ``pid`` has used so far; NaN where /proc is missing (not Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _core_thread_cpu_seconds() -> float:
    """CPU time this process's threads of Temporal's Rust core have used (the SDK names them, the
    Python threads keep the process's name); NaN where /proc is missing (not Linux)."""
    total = 0.0
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return float("nan")
    for thread in threads:
        try:
            name = Path(f"/proc/self/task/{thread}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{thread}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith(("tokio", "workflow-proces", "temporal")):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


_COUNTED = {
    "workflow_tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    "activity_tasks": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "search_attribute_upserts": EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
}


async def _history_costs(client: Client, workflow_id: str) -> dict[str, int]:
    """What one payment asked of the server, read from its history."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    types = Counter(event.event_type for event in history.events)
    costs = {"history_events": len(history.events), "history_bytes": sum(e.ByteSize() for e in history.events)}
    costs |= {name: types[event_type] for name, event_type in _COUNTED.items()}
    started = history.events[0].workflow_execution_started_event_attributes
    costs["search_attributes_at_start"] = len(started.search_attributes.indexed_fields)
    return costs


def bare_worker(client: Client, task_queue: str) -> Worker:
    """A worker of the bare workflow, with the kit's worker settings where they matter here."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BareWorkflow],
        activities=[validate, charge, notify],
        max_concurrent_activities=100,
    )


async def run_bare(client: Client, task_queue: str, workflow_id: str) -> object:
    """Run one bare workflow and wait for its result as the kit waits for a payment's.

    The dev server now and then holds a result request 20 s after the workflow closed
    (see ``RESULT_POLL_WINDOW``): both sides must ride that out the same way.
    """
    handle = await client.start_workflow(BareWorkflow.run, uuid.uuid4().hex[:12], id=workflow_id, task_queue=task_queue)
    return await result_in_windows(handle, client)


async def _latencies(start_one: Callable[[], Awaitable[object]], count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.perf_counter()
        await start_one()
        found.append((time.perf_counter() - started) * 1000)
    return found


async def main(batch: int, rounds: int, sequential: int) -> None:
    quiet_logs()
    with EmbeddedServer(ui=False) as server:
        connection = await connect(address=server.address)
        client: Client = connection.client
        kit_queue, bare_queue = f"bench-kit-{uuid.uuid4().hex[:6]}", f"bench-bare-{uuid.uuid4().hex[:6]}"
        service = PaymentService(client, kit_queue)
        kit_worker = create_worker(client, kit_queue, PaymentActivities(PaymentRepository()))
        bare = bare_worker(client, bare_queue)

        last_id: dict[str, str] = {}

        async def kit_payment() -> object:
            request = PaymentRequest(uuid.uuid4().hex[:12], "org-acme", "bench", "10.00", "EUR")
            last_id["kit"] = request.workflow_id
            return await service.process(request)

        async def bare_payment() -> object:
            last_id["bare"] = f"bare-{uuid.uuid4().hex}"
            return await run_bare(client, bare_queue, last_id["bare"])

        cpu: dict[str, Counter[str]] = {"kit": Counter(), "bare": Counter()}

        async def timed_batch(side: str, payment: Callable[[], Awaitable[object]]) -> float:
            """Run one batch; return its seconds, and add the CPU it cost the server and this process."""
            server_before, own_before, core_before = _cpu_seconds(server.pid), time.process_time(), _core_thread_cpu_seconds()
            _, elapsed = await _timed(payment, batch)
            cpu[side]["server"] += _cpu_seconds(server.pid) - server_before
            cpu[side]["worker_and_client"] += time.process_time() - own_before
            # Of which the SDK's Rust core (polling, history, payload bytes), the rest being Python.
            cpu[side]["sdk_core_threads"] += _core_thread_cpu_seconds() - core_before
            return elapsed

        async with kit_worker, bare:
            await _timed(kit_payment, 20)  # warm up both
            await _timed(bare_payment, 20)
            kit_seconds, bare_seconds, ratios = [], [], []
            sides = {"kit": kit_payment, "bare": bare_payment}
            for round_number in range(rounds):
                # Kit-bare, then bare-kit: the machine's speed drifts over seconds, and the
                # server's leftover work from one batch (visibility, transfer tasks) slows the
                # batch after it, whichever it is. Each pair of rounds cancels both.
                order = ("kit", "bare") if round_number % 2 == 0 else ("bare", "kit")
                elapsed = {side: await timed_batch(side, sides[side]) for side in order}
                kit_seconds.append(elapsed["kit"])
                bare_seconds.append(elapsed["bare"])
                ratios.append(elapsed["bare"] / elapsed["kit"])
            history_costs = {side: await _history_costs(client, last_id[side]) for side in ("kit", "bare")}
            kit_ms, bare_ms = [], []
            for _ in range(rounds):
                kit_ms += await _latencies(kit_payment, sequential)
                bare_ms += await _latencies(bare_payment, sequential)

    print(f"rounds={rounds} batch={batch} sequential_per_round={sequential}")
    # Payments per second over all rounds: one slow round weighs what it lasted, no more.
    print(f"kit_payments_per_s={batch * rounds / sum(kit_seconds):.1f}")
    print(f"bare_payments_per_s={batch * rounds / sum(bare_seconds):.1f}")
    print("per_round_ratios=" + ",".join(f"{r:.2f}" for r in ratios))
    print(f"kit_vs_bare_throughput_ratio={sum(bare_seconds) / sum(kit_seconds):.2f}")
    # Where the kit's extra cost goes: CPU per payment on each side of the wire, and what
    # one payment's history asks of the server (visibility writes: start, upserts, close).
    for side in ("kit", "bare"):
        for where, seconds in cpu[side].items():
            print(f"{side}_{where}_cpu_ms_per_payment={seconds * 1000 / (batch * rounds):.1f}")
        for name, count in history_costs[side].items():
            print(f"{side}_{name}={count}")
    print(f"kit_payment_latency_ms={statistics.median(kit_ms):.0f}")
    print(f"bare_payment_latency_ms={statistics.median(bare_ms):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=100, help="payments started at once per round")
    parser.add_argument("--rounds", type=int, default=60, help="alternating rounds")
    parser.add_argument("--sequential", type=int, default=4, help="one-at-a-time payments per round, for latency")
    args = parser.parse_args()
    asyncio.run(main(args.batch, args.rounds, args.sequential))
