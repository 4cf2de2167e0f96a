"""Latency measured side by side: the same payment run several ways, in alternating rounds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class LatencyReport:
    """Client-observed latencies of one way of running a payment, in milliseconds."""

    name: str
    """Which way."""
    samples_ms: tuple[float, ...]
    """Every measurement, in the order taken."""

    @property
    def median_ms(self) -> float:
        """Median latency."""
        return statistics.median(self.samples_ms)

    @property
    def p90_ms(self) -> float:
        """90th percentile latency."""
        return statistics.quantiles(self.samples_ms, n=10, method="inclusive")[-1]


async def compare_latency(
    runners: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    rounds: int = 5,
    per_round: int = 5,
    warmup: int = 2,
) -> dict[str, LatencyReport]:
    """Time each runner ``rounds × per_round`` times, one at a time, alternating runners.

    Alternating rounds spread the machine's noise (the other core busy, a garbage
    collection) over every runner instead of charging it to one.

    Raises:
        ValueError: no runner, or counts below 1.
    """
    if not runners:
        raise ValueError("runners must name at least one way to run a payment")
    if rounds < 1 or per_round < 1 or warmup < 0:
        raise ValueError(f"rounds and per_round must be >= 1 and warmup >= 0, got {rounds}, {per_round}, {warmup}")
    for run in runners.values():
        for _ in range(warmup):
            await run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(per_round):
                started = time.perf_counter()
                await run()
                samples[name].append((time.perf_counter() - started) * 1000)
    return {name: LatencyReport(name, tuple(values)) for name, values in samples.items()}


def latency_table(reports: Mapping[str, LatencyReport]) -> pd.DataFrame:
    """One row per way of running: median and 90th percentile in ms, and runs measured."""
    return pd.DataFrame(
        {
            "median_ms": [round(r.median_ms, 1) for r in reports.values()],
            "p90_ms": [round(r.p90_ms, 1) for r in reports.values()],
            "runs": [len(r.samples_ms) for r in reports.values()],
        },
        index=pd.Index(list(reports), name="way"),
    )
