"""Observed retry gaps against the configured backoff, on the kit's server and on a default dev server.

Two embedded dev servers, driven from one process: the kit's (timers fire within 10 ms)
and one with Temporal's default timer granularity (``timer_granularity=None``, short
delays round up to about a second). Each round runs on one server then the other:
payments whose charge fails three times, with a 100 ms and a 1 s initial interval (×2
each retry: 100, 200, 400 ms and 1, 2, 4 s). The gap before a retry is measured from the kit's attempt
log: from the end of the failed attempt to the start of the next one, as the activity
saw them, so it includes the failure's trip to the server and the next attempt's trip
back to the worker.

Each gap is measured end to end: from the end of the failed attempt to the start of the
next, as the activities saw them. Its first part is also shown: from that end to the time
the server scheduled the next attempt for (the activity is told it), which is the backoff
as computed, not as delivered — the timer's lateness and the trip to the worker come after.

For each configured gap the figures are medians over every round. ``retry_gap_error_pct``
is the largest relative error of a median end-to-end gap against its configured gap on the
kit's server; ``retry_gap_scheduled_error_pct`` is the same for the scheduled part;
``retry_gap_error_max_single_pct`` is the worst single end-to-end gap.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

import pandas as pd

from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.domain import PaymentRequest
from payments_lab.faults import FaultPlan
from payments_lab.history import attempts_frame, fetch_histories
from payments_lab.lab import quiet_logs
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.retries import compare_gaps
from payments_lab.server import DEFAULT_TIMER_GRANULARITY, EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, new_task_queue

INTERVALS = (timedelta(milliseconds=100), timedelta(seconds=1))
"""Initial intervals compared; each retry waits twice as long as the one before."""

FAILURES = 3
"""Charge attempts that fail before one succeeds: three gaps per payment."""


class Lane:
    """One server with its own worker, repository and service."""

    def __init__(self, name: str, granularity: timedelta | None) -> None:
        self.name = name
        self.server = EmbeddedServer(ui=False, timer_granularity=granularity)
        self.repository = PaymentRepository()
        self.task_queue = new_task_queue("bench-gaps")
        self.gaps: list[pd.DataFrame] = []

    async def start(self) -> None:
        self.server.start()
        self.client = (await connect(address=self.server.address)).client
        self.worker = await BackgroundWorker(self.client, self.task_queue, PaymentActivities(self.repository)).start()
        self.service = PaymentService(self.client, self.task_queue)

    async def run_round(self, round_number: int, per_interval: int) -> None:
        """Run ``per_interval`` failing payments per initial interval, all at once."""
        handles = []
        for interval in INTERVALS:
            options = PaymentOptions(
                initial_interval=interval, maximum_interval=interval * 2**FAILURES, maximum_attempts=FAILURES + 1
            )
            for n in range(per_interval):
                payment_id = f"gaps-{self.task_queue}-{round_number}-{interval.total_seconds()}-{n}"
                request = PaymentRequest(payment_id, "org-acme", "bench", "10.00", "EUR")
                handles.append(await self.service.start(request, faults=FaultPlan.failing(charge=FAILURES), options=options))
        await asyncio.gather(*(h.result() for h in handles))
        histories = await fetch_histories(self.client, [h.workflow_id for h in handles], progress=False)
        attempts = attempts_frame(self.repository.attempts(), histories)
        self.gaps.append(compare_gaps(attempts[attempts["step"] == "charge"]))

    async def stop(self) -> None:
        await self.worker.stop()
        self.server.stop()


async def main(rounds: int, per_interval: int) -> None:
    quiet_logs()
    kit = Lane("kit", DEFAULT_TIMER_GRANULARITY)
    default = Lane("default", None)
    lanes = (kit, default)
    try:
        for lane in lanes:
            await lane.start()
        for lane in lanes:  # warm up: first workflows pay for caches and connections
            await lane.run_round(0, 1)
            lane.gaps.clear()
        started = time.perf_counter()
        for round_number in range(1, rounds + 1):
            # One server at a time: the two workers share this process's event loop.
            for lane in lanes:
                await lane.run_round(round_number, per_interval)
        elapsed = time.perf_counter() - started
    finally:
        for lane in lanes:
            await lane.stop()

    print(f"rounds={rounds} payments_per_interval_per_round={per_interval} failures_per_payment={FAILURES} elapsed_s={elapsed:.1f}")
    errors = {lane.name: _report(lane, "10ms" if lane is kit else "none") for lane in lanes}
    (kit_errors, kit_due_errors), (default_errors, _) = errors["kit"], errors["default"]
    print(f"retry_gap_error_pct={max(kit_errors.values()):.1f}")
    print(f"retry_gap_error_pct_100ms_to_400ms={max(e for c, e in kit_errors.items() if c < 0.5):.1f}")
    print(f"retry_gap_error_pct_1s_and_longer={max(e for c, e in kit_errors.items() if c >= 1):.1f}")
    print(f"retry_gap_scheduled_error_pct={max(kit_due_errors.values()):.1f}")
    dispatch = pd.concat(kit.gaps)
    print(f"retry_dispatch_ms_median={statistics.median((dispatch['observed'] - dispatch['due']) * 1000):.1f}")
    worst_single = pd.concat(kit.gaps)["error"].abs().max() * 100
    print(f"retry_gap_error_max_single_pct={worst_single:.1f}")
    print(f"retry_gap_error_pct_without_timer_granularity={max(default_errors.values()):.1f}")


def _report(lane: Lane, granularity: str) -> tuple[dict[float, float], dict[float, float]]:
    """Print one server's figures; return the errors of the median end-to-end and scheduled
    gaps, per configured gap, in %."""
    gaps = pd.concat(lane.gaps, ignore_index=True)
    errors: dict[float, float] = {}
    due_errors: dict[float, float] = {}
    for configured, group in gaps.groupby("configured"):
        observed = statistics.median(group["observed"])
        due = statistics.median(group["due"])
        errors[configured] = abs(observed / configured - 1) * 100
        due_errors[configured] = abs(due / configured - 1) * 100
        print(
            f"timer_granularity={granularity} configured_s={configured:.1f} gaps={len(group)} "
            f"observed_median_s={observed:.3f} error_of_median_pct={errors[configured]:.1f} "
            f"scheduled_median_s={due:.3f} scheduled_error_of_median_pct={due_errors[configured]:.1f} "
            f"error_max_single_pct={group['error'].abs().max() * 100:.1f}"
        )
    early = (gaps["observed"] - gaps["configured"]).min() * 1000
    print(f"timer_granularity={granularity} smallest_observed_minus_configured_ms={early:.1f}")
    for interval in INTERVALS:
        seconds = interval.total_seconds()
        subset = gaps[(gaps["configured"] >= seconds) & (gaps["configured"] < seconds * 2**FAILURES)]
        ratio = statistics.median(subset["observed"] / subset["configured"])
        print(f"observed_vs_configured_ratio_{granularity}_{int(seconds * 1000)}ms_initial={ratio:.3f}")
    return errors, due_errors

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each on one server then the other")
    parser.add_argument("--per-interval", type=int, default=3, help="failing payments per initial interval per round")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.per_interval))
