"""The room bench, small: three learner processes on one `payments-lab room` server, every check green, nothing left running."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

from payments_lab.processes import processes_marked

_BENCH_FILE = Path(__file__).resolve().parent.parent / "bench" / "room.py"
_spec = importlib.util.spec_from_file_location("bench_room", _BENCH_FILE)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_room"] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)


@pytest.mark.timeout(600)
def test_a_room_of_three_learner_processes_passes_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = uuid.uuid4().hex
    monkeypatch.setenv("PAYMENTS_LAB_MARK", marker)
    run = bench.measure_room(3)
    assert run.errors == ()
    assert run.expected_checks == 3 * 11 and len(run.checks) == run.expected_checks
    # Every check green: a check judges a deadline on the answer's options and waits for the
    # lab as long as LAB_PATIENCE (a room of 30 on 2 cores once turned every right 02·Q4/Q5 red).
    assert [c for c in run.checks if not c.passed] == []
    assert run.passed == run.expected_checks
    assert {c.learner for c in run.checks} == {"learner-01", "learner-02", "learner-03"}
    assert sorted({c.exercise for c in run.checks})[:2] == ["01.q1", "01.q2"]
    assert run.percentile(0.5) <= run.percentile(0.95)
    assert processes_marked(marker) == [], "the room and every learner process are stopped"


def test_a_room_needs_a_learner() -> None:
    with pytest.raises(ValueError, match="learners must be a whole number >= 1, got 0"):
        bench.measure_room(0)


def test_03_q1_says_the_lab_is_overloaded_instead_of_raising() -> None:
    """Seen in the room of 30: a check payment cancelled at its deadline left no completed charge, and the
    check crashed with 'coroutine raised StopIteration' instead of giving a verdict."""
    from types import SimpleNamespace

    from payments_lab.exercises import Mismatch
    from payments_lab.exercises.lesson03 import _completed_attempt

    missed = SimpleNamespace(attempts=(), status="cancelled", describe_attempts=lambda _activity: "none")
    with pytest.raises(Mismatch, match="did not complete in time") as raised:
        _completed_attempt(missed)  # type: ignore[arg-type]
    assert raised.value.about_the_lab and "payment cancelled" in raised.value.seen
