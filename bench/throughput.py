"""Kit vs bare temporalio: payments per second and single-payment latency, side by side.

Both run on the same embedded dev server, with the same worker settings, in alternating
rounds; the figures are medians over the rounds. Prints ``name=value`` headline lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from bare_workflow import BareWorkflow, charge, notify, validate
from temporalio.client import Client
from temporalio.worker import Worker

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.lab import quiet_logs
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import create_worker


async def _timed(start_one: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    """Run ``count`` at once, return (per second, elapsed)."""
    started = time.perf_counter()
    await asyncio.gather(*(start_one() for _ in range(count)))
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed


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
        bare_worker = Worker(
            client,
            task_queue=bare_queue,
            workflows=[BareWorkflow],
            activities=[validate, charge, notify],
            max_concurrent_activities=100,
        )

        async def kit_payment() -> object:
            request = PaymentRequest(uuid.uuid4().hex[:12], "org-acme", "bench", "10.00", "EUR")
            return await service.process(request)

        async def bare_payment() -> object:
            return await client.execute_workflow(
                BareWorkflow.run, uuid.uuid4().hex[:12], id=f"bare-{uuid.uuid4().hex}", task_queue=bare_queue
            )

        async with kit_worker, bare_worker:
            await _timed(kit_payment, 20)  # warm up both
            await _timed(bare_payment, 20)
            kit_rates, bare_rates, ratios = [], [], []
            for round_number in range(rounds):
                # Each side goes first in every other round: the server's leftover work from one
                # batch (visibility, transfer tasks) slows the batch after it, whichever it is.
                if round_number % 2 == 0:
                    kit_rate, _ = await _timed(kit_payment, batch)
                    bare_rate, _ = await _timed(bare_payment, batch)
                else:
                    bare_rate, _ = await _timed(bare_payment, batch)
                    kit_rate, _ = await _timed(kit_payment, batch)
                kit_rates.append(kit_rate)
                bare_rates.append(bare_rate)
                ratios.append(kit_rate / bare_rate)
            kit_ms, bare_ms = [], []
            for _ in range(rounds):
                kit_ms += await _latencies(kit_payment, sequential)
                bare_ms += await _latencies(bare_payment, sequential)

    print(f"rounds={rounds} batch={batch} sequential_per_round={sequential}")
    print(f"kit_payments_per_s={statistics.median(kit_rates):.1f}")
    print(f"bare_payments_per_s={statistics.median(bare_rates):.1f}")
    print("per_round_ratios=" + ",".join(f"{r:.2f}" for r in ratios))
    print(f"kit_vs_bare_throughput_ratio={statistics.median(ratios):.2f}")
    print(f"kit_payment_latency_ms={statistics.median(kit_ms):.0f}")
    print(f"bare_payment_latency_ms={statistics.median(bare_ms):.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=200, help="payments started at once per round")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds")
    parser.add_argument("--sequential", type=int, default=10, help="one-at-a-time payments per round, for latency")
    args = parser.parse_args()
    asyncio.run(main(args.batch, args.rounds, args.sequential))
