"""Payments on a server that caches search attributes beside one that reads them through on every use.

The ``temporal`` CLI's dev server sets ``system.forceSearchAttributesCacheRefreshOnRead``, so
every search-attribute read goes to its database (a profile of the server put those reads at
about 1.7 ms of CPU per kit payment). This bench runs two servers at once, one with the setting
(as the kit starts it) and one without (``EmbeddedServer(cache_search_attributes=True)``, as a
production cluster), and alternates batches of payments between them, for the kit and for bare
temporalio. Prints ``name=value`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from temporalio.worker import Worker
from throughput import _cpu_seconds, _timed, bare_worker, run_bare

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.lab import quiet_logs
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import create_worker


async def _side(server: EmbeddedServer, kit: bool) -> tuple[Callable[[], Awaitable[object]], Worker]:
    """One payment on ``server`` (the kit's, or bare temporalio's), and the worker that runs it."""
    client = (await connect(address=server.address)).client
    task_queue = f"sa-cache-{uuid.uuid4().hex[:6]}"
    if kit:
        service = PaymentService(client, task_queue)

        async def kit_payment() -> object:
            return await service.process(PaymentRequest(uuid.uuid4().hex[:12], "org-acme", "bench", "10.00", "EUR"))

        return kit_payment, create_worker(client, task_queue, PaymentActivities(PaymentRepository()))

    async def bare_payment() -> object:
        return await run_bare(client, task_queue, f"bare-{uuid.uuid4().hex}")

    return bare_payment, bare_worker(client, task_queue)


async def compare(kit: bool, rounds: int, batch: int) -> None:
    """Alternate batches between a read-through server and a caching one; print both rates."""
    name = "kit" if kit else "bare"
    with EmbeddedServer(ui=False) as read_through, EmbeddedServer(ui=False, cache_search_attributes=True) as cached:
        servers = {"read_through": read_through, "cached": cached}
        sides = {label: await _side(server, kit) for label, server in servers.items()}
        async with sides["read_through"][1], sides["cached"][1]:
            for payment, _ in sides.values():
                await _timed(payment, 20)  # warm up
            seconds, cpu = Counter[str](), Counter[str]()
            for round_number in range(rounds):
                order = ("read_through", "cached") if round_number % 2 == 0 else ("cached", "read_through")
                for label in order:
                    before = _cpu_seconds(servers[label].pid)
                    _, elapsed = await _timed(sides[label][0], batch)
                    seconds[label] += elapsed
                    cpu[label] += _cpu_seconds(servers[label].pid) - before
    payments = rounds * batch
    for label in servers:
        print(f"{name}_{label}_payments_per_s={payments / seconds[label]:.1f}")
        print(f"{name}_{label}_server_cpu_ms_per_payment={cpu[label] * 1000 / payments:.1f}")
    print(f"{name}_cached_vs_read_through_throughput_ratio={seconds['read_through'] / seconds['cached']:.3f}")


async def main(rounds: int, batch: int) -> None:
    quiet_logs()
    print(f"rounds={rounds} batch={batch}")
    for kit in (True, False):
        await compare(kit, rounds, batch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds per side")
    parser.add_argument("--batch", type=int, default=100, help="payments started at once per round")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.batch))
