"""Tests of side-by-side latency measurement."""

from __future__ import annotations

import asyncio

import pytest

from payments_lab.latency import LatencyReport, compare_latency, latency_table


async def test_runners_alternate_and_are_all_measured() -> None:
    calls: list[str] = []

    def runner(name: str, seconds: float):  # noqa: ANN202
        async def run() -> None:
            calls.append(name)
            await asyncio.sleep(seconds)

        return run

    reports = await compare_latency({"fast": runner("fast", 0), "slow": runner("slow", 0.02)}, rounds=3, per_round=2, warmup=1)
    assert calls[:2] == ["fast", "slow"], "one warm-up each"
    assert calls[2:] == ["fast", "fast", "slow", "slow"] * 3
    assert len(reports["fast"].samples_ms) == 6
    assert reports["slow"].median_ms >= 20 > reports["fast"].median_ms
    table = latency_table(reports)
    assert list(table.index) == ["fast", "slow"] and list(table.columns) == ["median_ms", "p90_ms", "runs"]


def test_percentiles() -> None:
    report = LatencyReport("x", tuple(float(v) for v in range(1, 11)))
    assert report.median_ms == 5.5
    assert report.p90_ms == pytest.approx(9.1)


async def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one way"):
        await compare_latency({})
    with pytest.raises(ValueError, match="rounds and per_round must be >= 1"):
        await compare_latency({"x": asyncio.sleep}, rounds=0)  # type: ignore[dict-item]
