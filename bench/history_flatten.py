"""Fetch and flatten 1,000 payment histories: the kit's way against a naive way, side by side.

1,000 payments run first on an embedded dev server (untimed; 20 % of charges fail once or
twice, retried after 100 ms). Then, in alternating rounds:

* the kit: :func:`payments_lab.history.fetch_histories` (32 at a time, with its progress
  bar, which goes to stderr here), then the events, activity spans and payments tables
  read straight from the protobuf events;
* the same without the progress bar;
* a naive way: histories fetched one after the other, and events flattened through
  ``MessageToDict`` into the events table alone (what a first notebook would do).

Figures are medians over the rounds; the headline ``history_flatten_1000_s`` is the kit's
fetch + flatten with its progress bar.

``--histories 10000`` adds a room-sized run (it takes minutes: the payments run first, at the
server's pace of about 28 a second): 10,000 histories fetched and flattened by the kit, timed
once the payments are in (``history_flatten_10000_s``), with the memory they take:
``history_bytes_per_history`` is the growth of the process's resident set size (RSS, from
``/proc/self/statm``) while it holds the fetched histories, divided by their number (protobuf
keeps its messages outside Python's allocator, where tracemalloc would not see them), and
``history_table_bytes_per_history`` the three tables' ``memory_usage(deep=True)``, per history.
The room view is read there too, on a namespace holding all of them (``room_view_10000_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from datetime import timedelta

import pandas as pd
from google.protobuf.json_format import MessageToDict
from temporalio.client import Client, WorkflowHistory

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.fleet import FleetPlan, run_fleet
from payments_lab.history import activity_spans, events_frame, fetch_histories, payments_frame
from payments_lab.lab import quiet_logs
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, new_task_queue

FAST = PaymentOptions(initial_interval=timedelta(milliseconds=100), maximum_interval=timedelta(seconds=1))


def flatten(histories: list[WorkflowHistory]) -> tuple[pd.DataFrame, ...]:
    """The kit's three tables."""
    return events_frame(histories), activity_spans(histories), payments_frame(histories)


def flatten_naively(histories: list[WorkflowHistory]) -> pd.DataFrame:
    """Events as dicts, one MessageToDict per event, then a DataFrame."""
    rows = []
    for history in histories:
        for event in history.events:
            data = MessageToDict(event)
            attributes = next((v for k, v in data.items() if k.endswith("Attributes")), {})
            rows.append(
                {
                    "workflow_id": history.workflow_id,
                    "event_id": int(data["eventId"]),
                    "event_type": data["eventType"],
                    "time": data["eventTime"],
                    "attempt": attributes.get("attempt"),
                    "identity": attributes.get("identity"),
                    "failure": (attributes.get("failure") or attributes.get("lastFailure") or {}).get("message"),
                }
            )
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def settle() -> None:
    """Collect the previous round's garbage before timing, so no variant pays for another's."""
    gc.collect()


async def fetch_one_by_one(client: Client, workflow_ids: list[str]) -> list[WorkflowHistory]:
    return [await client.get_workflow_handle(w).fetch_history() for w in workflow_ids]


async def run_payments(server: EmbeddedServer, count: int, *, seed: int) -> tuple[Client, list[str]]:
    """Run ``count`` payments (untimed; 20 % of charges fail once or twice), then warm up the connection."""
    client = (await connect(address=server.address)).client
    task_queue = new_task_queue("bench-history")
    service = PaymentService(client, task_queue, options=FAST)
    started = time.perf_counter()
    async with BackgroundWorker(client, task_queue, PaymentActivities(PaymentRepository())):
        fleet = await run_fleet(service, FleetPlan(count=count, charge_failure_rate=0.2, seed=seed), concurrency=100, progress=False)
    print(f"payments={len(fleet)} statuses={fleet.status_counts} run_untimed_s={time.perf_counter() - started:.1f}", flush=True)
    ids = fleet.workflow_ids
    await fetch_histories(client, ids[:50], progress=False)
    return client, ids


async def main(payments: int, rounds: int) -> None:
    quiet_logs()
    with EmbeddedServer(ui=False) as server:
        client, ids = await run_payments(server, payments, seed=1)

        timings: dict[str, list[float]] = {name: [] for name in ("kit", "kit_fetch", "kit_flatten", "quiet", "naive", "naive_fetch", "naive_flatten")}
        events = 0

        async def kit(progress: bool) -> None:
            nonlocal events
            settle()
            t0 = time.perf_counter()
            histories = await fetch_histories(client, ids, progress=progress)
            t1 = time.perf_counter()
            tables = flatten(histories)
            t2 = time.perf_counter()
            events = len(tables[0])
            if progress:
                timings["kit_fetch"].append(t1 - t0)
                timings["kit_flatten"].append(t2 - t1)
            timings["kit" if progress else "quiet"].append(t2 - t0)

        async def naive() -> None:
            settle()
            t0 = time.perf_counter()
            histories = await fetch_one_by_one(client, ids)
            t1 = time.perf_counter()
            flatten_naively(histories)
            t2 = time.perf_counter()
            timings["naive_fetch"].append(t1 - t0)
            timings["naive_flatten"].append(t2 - t1)
            timings["naive"].append(t2 - t0)

        for round_number in range(rounds):
            # Alternate the order of the two kit variants: neither always follows the naive way.
            for progress in (True, False) if round_number % 2 == 0 else (False, True):
                await kit(progress)
            await naive()

    median = statistics.median
    t = timings
    print(f"rounds={rounds} histories={len(ids)} events={events}")
    print(f"kit_fetch_s={median(t['kit_fetch']):.2f}")
    print(f"kit_flatten_s={median(t['kit_flatten']):.2f}")
    print(f"kit_without_progress_bar_s={median(t['quiet']):.2f}")
    print(f"naive_fetch_one_by_one_s={median(t['naive_fetch']):.2f}")
    print(f"naive_flatten_messagetodict_s={median(t['naive_flatten']):.2f}")
    print(f"naive_total_s={median(t['naive']):.2f}")
    print(f"fetch_speedup={median(n / k for n, k in zip(t['naive_fetch'], t['kit_fetch'])):.1f}")
    print(f"flatten_speedup={median(n / k for n, k in zip(t['naive_flatten'], t['kit_flatten'])):.1f}")
    print(f"kit_vs_naive_total_ratio={median(k / n for k, n in zip(t['kit'], t['naive'])):.2f}")
    print(f"history_flatten_{len(ids)}_s={median(t['kit']):.2f}")


def rss_bytes() -> int:
    """The process's resident set size now (Linux), in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def at_room_scale(histories: int) -> None:
    """Run ``histories`` payments, then fetch and flatten them all once: time, and memory per history."""
    from payments_lab.progress import progress_view

    quiet_logs()
    with EmbeddedServer(ui=False) as server:
        client, ids = await run_payments(server, histories, seed=2)
        settle()
        before = rss_bytes()
        t0 = time.perf_counter()
        fetched = await fetch_histories(client, ids, progress=False)
        t1 = time.perf_counter()
        held = rss_bytes() - before
        tables = flatten(fetched)
        t2 = time.perf_counter()
        table_bytes = sum(int(t.memory_usage(deep=True).sum()) for t in tables)
        t3 = time.perf_counter()
        view = await progress_view(client)
        t4 = time.perf_counter()
    print(f"histories={len(fetched)} events={len(tables[0])} room_view_payments={view.learners[0].payments}")
    print(f"history_fetch_{len(ids)}_s={t1 - t0:.2f}")
    print(f"history_tables_{len(ids)}_s={t2 - t1:.2f}")
    print(f"history_bytes_per_history={held / len(fetched):.0f}")
    print(f"history_table_bytes_per_history={table_bytes / len(fetched):.0f}")
    print(f"room_view_{len(ids)}_s={t4 - t3:.2f}")
    print(f"history_flatten_{len(ids)}_s={t2 - t0:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=1000, help="payments to run, then fetch and flatten")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--histories", type=int, default=0, help="also fetch and flatten this many at once (e.g. 10000: minutes)")
    args = parser.parse_args()
    asyncio.run(main(args.payments, args.rounds))
    if args.histories:
        asyncio.run(at_room_scale(args.histories))
