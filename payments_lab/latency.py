"""Latency measured side by side: the same payment run several ways, in alternating rounds."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from payments_lab.errors import InvalidArgumentError
from payments_lab.history import activity_spans, payments_frame, workflow_task_spans
from payments_lab.history.decoding import WORKFLOW_CLOSED

BREAKDOWN_PARTS = (
    "waiting for a worker",
    "running workflow code",
    "running activities",
    "server and network",
)
"""The parts of :func:`time_breakdown`, in the order they are drawn."""


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


@dataclass(frozen=True)
class Continuing:
    """What a runner returns when its caller has its answer but the work runs on.

    :func:`compare_latency` stops the clock when the runner returns it, then awaits
    ``rest`` (untimed) before the next run, so that one payment's tail never overlaps
    the next one's measurement.
    """

    rest: Awaitable[object]
    """The rest of the work, e.g. ``handle.result()``."""


async def compare_latency(
    runners: Mapping[str, Callable[[], Awaitable[object]]],
    *,
    rounds: int = 5,
    per_round: int = 5,
    warmup: int = 2,
    spacing: float = 0.0,
) -> dict[str, LatencyReport]:
    """Time each runner ``rounds × per_round`` times, one at a time, alternating runners.

    Alternating rounds spread the machine's noise (the other core busy, a garbage
    collection) over every runner instead of charging it to one. A runner that returns
    :class:`Continuing` is timed up to its first answer; its rest is awaited untimed.

    Args:
        runners: Ways of running a payment, by name.
        rounds: Rounds; each runs every runner ``per_round`` times.
        per_round: Runs of one runner in a row.
        warmup: Untimed runs of each runner first.
        spacing: Seconds to wait (untimed) after each run: 0 runs payments back to back,
            ~0.2 s is a person clicking one payment at a time.

    Raises:
        ValueError: no runner, or counts below 1.
    """
    if not runners:
        raise InvalidArgumentError("runners must name at least one way to run a payment")
    if rounds < 1 or per_round < 1 or warmup < 0 or spacing < 0:
        raise InvalidArgumentError(
            f"rounds and per_round must be >= 1, warmup and spacing >= 0, got {rounds}, {per_round}, {warmup}, {spacing}"
        )
    for run in runners.values():
        for _ in range(warmup):
            await _finish(await run())
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(per_round):
                started = time.perf_counter()
                outcome = await run()
                samples[name].append((time.perf_counter() - started) * 1000)
                await _finish(outcome)
                if spacing:
                    await asyncio.sleep(spacing)
    return {name: LatencyReport(name, tuple(values)) for name, values in samples.items()}


async def _finish(outcome: object) -> None:
    if isinstance(outcome, Continuing):
        await outcome.rest


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


def time_breakdown(history: WorkflowHistory) -> pd.Series:
    """Where one workflow's time went, according to its history, in milliseconds.

    ``running workflow code``: workflow tasks from started to completed (local activities
    run inside them); ``running activities``: activity attempts from started to closed;
    ``waiting for a worker``: tasks handed through a task queue, from scheduled to started;
    ``server and network``: the rest of the time between the workflow's start and its end
    (the trips between server and worker, the server's own work, and for a retried activity
    its earlier attempts and the waits between them: the history keeps only the last
    attempt's start). Each moment counts once, under the first of those parts that covers it:
    activities that run at the same time are one stretch of ``running activities``, so the
    parts add up to the workflow's time.

    Raises:
        ValueError: the workflow has not ended.
    """
    payment = payments_frame(history).iloc[0]
    if pd.isna(payment["closed_at"]):
        raise InvalidArgumentError(f"{history.workflow_id} has not ended: there is no total to break down yet")
    tasks = workflow_task_spans(history)
    spans = activity_spans(history)
    first_attempts = spans[spans["attempt"] <= 1]
    covering = {
        "running workflow code": _intervals(tasks["started_at"], tasks["closed_at"]),
        "running activities": _intervals(spans["started_at"], spans["closed_at"]),
        "waiting for a worker": _intervals(tasks["scheduled_at"], tasks["started_at"])
        + _intervals(first_attempts["scheduled_at"], first_attempts["started_at"]),
    }
    start, end = payment["started_at"].value, payment["closed_at"].value
    spent = dict.fromkeys(BREAKDOWN_PARTS, 0)
    edges = sorted({start, end, *(t for pairs in covering.values() for pair in pairs for t in pair if start < t < end)})
    for left, right in itertools.pairwise(edges):
        middle = (left + right) / 2
        part = next((name for name, pairs in covering.items() if any(a <= middle < b for a, b in pairs)), "server and network")
        spent[part] += right - left
    return pd.Series([spent[part] / 1e6 for part in BREAKDOWN_PARTS], index=list(BREAKDOWN_PARTS), name=history.workflow_id)


def _intervals(starts: pd.Series, ends: pd.Series) -> list[tuple[int, int]]:
    """The (start, end) pairs in ns where both are known."""
    return [(a.value, b.value) for a, b in zip(starts, ends, strict=True) if pd.notna(a) and pd.notna(b)]


def answer_times(history: WorkflowHistory) -> pd.Series:
    """When a workflow gave its first answer and when it ended, in ms from its start (server clock).

    ``first answer``: the first ``WorkflowExecutionUpdateCompleted`` event (an early
    return's answer), or the end when no update completed; ``end``: the workflow's
    closing event.

    Raises:
        ValueError: the workflow has not ended.
    """
    events = history.events
    if not events or events[-1].event_type not in WORKFLOW_CLOSED:
        raise InvalidArgumentError(f"{history.workflow_id} has not ended: there is no end to measure yet")
    start = events[0].event_time.ToNanoseconds()
    end = (events[-1].event_time.ToNanoseconds() - start) / 1e6
    answered = next(
        (e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED), None
    )
    first = (answered.event_time.ToNanoseconds() - start) / 1e6 if answered is not None else end
    return pd.Series([first, end], index=["first answer", "end"], name=history.workflow_id)


def breakdown_chart(breakdowns: Mapping[str, pd.Series]) -> Figure:
    """One horizontal bar per way of running a payment, split by :func:`time_breakdown`."""
    if not breakdowns:
        raise InvalidArgumentError("breakdowns must hold at least one time_breakdown")
    frame = pd.DataFrame(breakdowns).T.reindex(columns=list(BREAKDOWN_PARTS)).fillna(0)
    figure = Figure(figsize=(10, 1.4 + 0.6 * len(frame)), layout="constrained")
    ax = figure.subplots()
    left = pd.Series(0.0, index=frame.index)
    colours = ("#9E9E9E", "#1F77B4", "#2CA02C", "#FDAE6B")
    for part, colour in zip(BREAKDOWN_PARTS, colours):
        ax.barh(frame.index, frame[part], left=left, color=colour, label=part, height=0.5)
        left += frame[part]
    for row, total in enumerate(left):
        ax.text(total, row, f" {total:.0f} ms", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds, from the workflow's start to its end (server clock)")
    ax.set_title("Where a payment's time goes, according to its history")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return figure

