"""The fault matrix, small: every payment ends, is charged at most once, never stays stuck, and no client call fails.

The scenarios are those of ``bench/faults.py`` (imported from there, so the bench and the
tests cannot drift apart), run with a few payments each.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

from payments_lab.processes import leftovers

_BENCH_FILE = Path(__file__).resolve().parent.parent / "bench" / "faults.py"
_spec = importlib.util.spec_from_file_location("bench_faults", _BENCH_FILE)
assert _spec is not None and _spec.loader is not None
matrix = importlib.util.module_from_spec(_spec)
sys.modules["bench_faults"] = matrix  # dataclasses look their module up by name
_spec.loader.exec_module(matrix)


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> str:
    """A mark in the environment of every process the scenario starts, to find leftovers."""
    mark = f"faults-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(matrix.MARK_VARIABLE, mark)
    return mark


def assert_sound(outcome: matrix.Outcome, marker: str) -> None:
    """Every payment terminal, none charged twice or stuck, no client error, no process left."""
    assert outcome.errors == [], outcome.errors
    found = (outcome.terminal, outcome.double_charges, outcome.stuck, outcome.client_errors)
    assert found == (outcome.total, 0, 0, 0), outcome.lines()
    assert outcome.ok
    assert leftovers(marker) == []


async def test_load_with_failing_charges(marker: str) -> None:
    outcome = await matrix.scenario_load(100, failure_rate=0.05)
    assert_sound(outcome, marker)
    assert sum(outcome.statuses.values()) == 100
    assert set(outcome.statuses) <= {"completed", "failed"}, "a failed charge is retried, or the payment fails"


async def test_a_worker_process_killed_under_load(marker: str) -> None:
    outcome = await matrix.scenario_worker_kill(30)
    assert_sound(outcome, marker)
    assert outcome.statuses == {"completed": 30}
    assert outcome.notes["charges_in_flight_at_kill"] >= 1, "the kill hit charges on their way"


async def test_clients_ride_out_a_server_outage(marker: str) -> None:
    # 7 s: longer than the ~5 s after which an un-ridden client call fails.
    outcome = await matrix.scenario_server_outage(10, outage=7.0)
    assert_sound(outcome, marker)
    assert outcome.statuses == {"completed": 10}
    assert outcome.notes["waiting_at_kill"] == 10, "every client was waiting when the server died"


@pytest.mark.skipif(sys.platform == "win32", reason="Ctrl-Z (SIGSTOP) stops a process on Linux and macOS only")
async def test_clients_ride_out_a_server_stopped_with_ctrl_z(marker: str) -> None:
    # 12 s: more than a result's 5 s window and the 5 s health check that follows it.
    outcome = await matrix.scenario_server_stop(10, outage=12.0)
    assert_sound(outcome, marker)
    assert outcome.statuses == {"completed": 10}
    assert outcome.notes["waiting_at_kill"] == 10, "every client was waiting when the server stopped"


async def test_cancellations_at_random_moments(marker: str) -> None:
    outcome = await matrix.scenario_cancel(20)
    assert_sound(outcome, marker)
    assert sum(outcome.statuses.values()) == 20
    assert set(outcome.statuses) <= {"cancelled", "refunded", "completed"}


async def test_cli_workers_share_one_ledger_through_a_kill(marker: str) -> None:
    outcome = await matrix.scenario_cli_workers(3)
    assert_sound(outcome, marker)
    assert outcome.statuses == {"completed": 3}
    assert outcome.notes["killed_worker_mid_charge"] == 1
    assert outcome.notes["charges_retried_on_another_worker"] >= 1
