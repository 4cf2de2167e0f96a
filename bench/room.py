"""A measured room: learners in processes of their own, one namespace each, on one ``payments-lab room`` server.

Each learner is a process like a learner's kernel: ``TEMPORAL_ADDRESS`` and
``TEMPORAL_NAMESPACE`` from the room's lines, a state folder (and so a ledger) of its own,
``open_lab()``. Once every learner's lab is open, all start at once: the calls of lessons
01–03 (payments that complete, are declined, retry, fail; a query; a history read as a
table), each lesson followed by its exercise checks, answered with the solutions. No pause
between steps: every learner works flat out, a harder room than a real one. The learners'
kernels run on this machine too, next to the server, where a real room's run on laptops.

Prints ``room_learners=30 room_checks_passed=N/N room_check_p50_s=… room_check_p95_s=…``,
then tries other sizes and prints the largest that keeps the p95 of a check within 5 s,
``room_max_learners_p95_5s=``. Every process it starts is stopped, also on failure.

``measure_room`` is imported by ``tests/test_room_bench.py``, which runs a room of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from payments_lab import processes

P95_TARGET_S = 5.0
"""A check that takes longer than this feels broken to a learner."""

LESSONS = (1, 2, 3)
"""The lessons whose calls and checks each learner runs."""


@dataclass(frozen=True)
class CheckTiming:
    """One check a learner ran."""

    learner: str
    """Who ran it."""
    exercise: str
    """Which exercise, e.g. ``02.q2``."""
    passed: bool
    """Whether it came back green."""
    seconds: float
    """How long the check took, as the learner waited for it."""
    message: str = ""
    """The verdict's sentence, for a red check."""


@dataclass(frozen=True)
class RoomRun:
    """A room of ``learners`` measured once."""

    learners: int
    """How many learners."""
    checks: tuple[CheckTiming, ...]
    """Every check of every learner."""
    expected_checks: int
    """How many checks there should have been."""
    errors: tuple[str, ...] = field(default=())
    """Learners that failed, with why."""
    wall_s: float = 0.0
    """From the go to the last learner done."""

    @property
    def passed(self) -> int:
        """Green checks."""
        return sum(1 for c in self.checks if c.passed)

    def percentile(self, share: float) -> float:
        """The check time below which ``share`` of the checks fall (nan without checks)."""
        times = sorted(c.seconds for c in self.checks)
        if not times:
            return float("nan")
        if len(times) == 1:
            return times[0]
        return statistics.quantiles(times, n=100, method="inclusive")[round(share * 100) - 1]

    @property
    def ok(self) -> bool:
        """Every learner ran to the end and the p95 of a check is within target (green counts are printed apart)."""
        return not self.errors and len(self.checks) == self.expected_checks and self.percentile(0.95) <= P95_TARGET_S


# ---------------------------------------------------------------- one learner, in its own process


async def _lesson_calls(lab, lesson: int, state: dict) -> None:  # noqa: ANN001
    """What a learner runs in the lesson notebook before its exercises."""
    from payments_lab.faults import FaultPlan, StepFaults
    from payments_lab.history import events_frame
    from payments_lab.messages import PaymentOptions

    quick = PaymentOptions(initial_interval=timedelta(milliseconds=300))
    if lesson == 1:
        await lab.pay("12.50", "EUR", show_link=False)
        await lab.pay("-5", "EUR", show_link=False)
        handle = await lab.start(lab.request("30.00", "EUR"), faults=FaultPlan(charge=StepFaults(delay=0.5)), show_link=False)
        await handle.progress()
        await handle.result()
        await handle.workflow.describe()
    elif lesson == 2:
        state["retried"] = await lab.start(lab.request("18.00", "EUR"), faults=FaultPlan.failing(charge=2), options=quick, show_link=False)
        await state["retried"].result()
        await lab.pay("9.00", "EUR", faults=FaultPlan.failing(charge=3), options=quick, show_link=False)
    else:
        history = await state["retried"].workflow.fetch_history()
        events_frame(history)


async def _learner(name: str, go: Path, ready: Path, out: Path) -> None:
    from payments_lab.exercises import all_exercises
    from payments_lab.lab import open_lab, quiet_logs
    from payments_lab.simulated_room import answer

    quiet_logs()
    timings: list[dict] = []
    try:
        lab = await open_lab("bench-room")
        ready.write_text(lab.connection.namespace)
        while not go.exists():
            await asyncio.sleep(0.05)
        state: dict = {}
        for lesson in LESSONS:
            await _lesson_calls(lab, lesson, state)
            for exercise in (e for e in all_exercises() if e.lesson == lesson):
                started = time.perf_counter()
                feedback = await exercise.check_async(answer(exercise, lab), lab=lab)
                timings.append({
                    "exercise": exercise.id, "passed": feedback.passed, "seconds": time.perf_counter() - started,
                    "message": "" if feedback.passed else str(feedback).replace("\n", " / "),
                })
        await lab.close()
        _publish(out, {"learner": name, "checks": timings})
    except BaseException as err:  # noqa: BLE001 - reported to the room
        import traceback

        where = " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_tb(err.__traceback__)[-4:]))
        _publish(out, {"learner": name, "checks": timings, "error": f"{type(err).__name__}: {err} (at {where})"})


def _publish(out: Path, result: dict) -> None:
    """Write the results at once: the room reads them as soon as the file exists."""
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(out)


# ---------------------------------------------------------------- the room


def _expected_checks(learners: int) -> int:
    from payments_lab.exercises import all_exercises

    return learners * sum(1 for e in all_exercises() if e.lesson in LESSONS)


def _environment(env_file: Path) -> dict[str, str]:
    lines = env_file.read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))


def _wait(what: str, condition, timeout: float, watched: list) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in watched if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: a process exited early (exit code {dead[0].returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def measure_room(learners: int, *, ready_timeout: float = 900.0, run_timeout: float = 1800.0) -> RoomRun:
    """Start a ``payments-lab room`` of ``learners``, run every learner at once, stop everything.

    Raises:
        ValueError: ``learners`` is below 1.
        RuntimeError, TimeoutError: the room or a learner did not start.
    """
    if isinstance(learners, bool) or not isinstance(learners, int) or learners < 1:
        raise ValueError(f"learners must be a whole number >= 1, got {learners!r}")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    with tempfile.TemporaryDirectory(prefix="bench-room-") as tmp:
        folder = Path(tmp)
        port, ui_port = processes.free_port(), processes.free_port()
        started: list = []
        room_log = open(folder / "room.log", "wb")  # noqa: SIM115 - closed in finally
        try:
            room = processes.spawn(
                [sys.executable, "-m", "payments_lab", "room", "--learners", str(learners), "--port", str(port),
                 "--ui-port", str(ui_port), "--db", str(folder / "room.sqlite"), "--out", str(folder / "env")],
                log=room_log,
                env={**base_env, "PAYMENTS_LAB_STATE_DIR": str(folder / "room-state")},
            )
            started.append(room)
            names = [f"learner-{n:02d}" for n in range(1, learners + 1)]
            env_files = [folder / "env" / f"{name}.env" for name in names]
            # The room prints this line once every learner's file is written.
            _wait("the room", lambda: b"Each learner sets" in (folder / "room.log").read_bytes(), 120, [room])
            go = folder / "go"
            for name, env_file in zip(names, env_files):
                state = folder / name
                state.mkdir()
                env = {**base_env, **_environment(env_file), "PAYMENTS_LAB_STATE_DIR": str(state)}
                started.append(processes.spawn(
                    [sys.executable, __file__, "learner", name, str(go), str(state / "ready"), str(state / "out.json")],
                    log=open(state / "log", "wb"),  # noqa: SIM115 - the child keeps it
                    env=env,
                ))
            _wait("the learners' labs", lambda: all((folder / n / "ready").exists() for n in names), ready_timeout, started)
            go.touch()
            began = time.perf_counter()
            learner_processes = dict(zip(names, started[1:]))

            def finished() -> bool:
                lost = [n for n, p in learner_processes.items() if p.poll() is not None and not (folder / n / "out.json").exists()]
                if lost:
                    raise RuntimeError(f"{lost[0]} exited without its results: see its log in {folder / lost[0] / 'log'}")
                return all((folder / n / "out.json").exists() for n in names)

            _wait("the learners", finished, run_timeout, [room])
            wall = time.perf_counter() - began
            checks, errors = [], []
            for name in names:
                result = json.loads((folder / name / "out.json").read_text())
                checks += [CheckTiming(name, c["exercise"], c["passed"], c["seconds"], c.get("message", "")) for c in result["checks"]]
                if "error" in result:
                    errors.append(f"{name}: {result['error']}")
            return RoomRun(learners, tuple(checks), _expected_checks(learners), tuple(errors), wall)
        finally:
            for process in started[1:]:
                processes.stop(process, grace=5)
            if started:
                processes.stop(started[0], grace=30)
            room_log.close()


def _line(run: RoomRun) -> str:
    return (
        f"room_learners={run.learners} room_checks_passed={run.passed}/{run.expected_checks} "
        f"room_check_p50_s={run.percentile(0.5):.2f} room_check_p95_s={run.percentile(0.95):.2f} room_wall_s={run.wall_s:.1f}"
    )


def largest_room(first: RoomRun, sizes: list[int]) -> tuple[int, list[RoomRun]]:
    """The largest of ``sizes`` (and ``first``) whose p95 is within target: up while rooms pass, down while they fail."""
    runs = [first]
    if first.ok:
        best = first.learners
        for size in sorted(s for s in sizes if s > first.learners):
            run = measure_room(size)
            runs.append(run)
            if not run.ok:
                break
            best = size
        return best, runs
    for size in sorted((s for s in sizes if s < first.learners), reverse=True):
        run = measure_room(size)
        runs.append(run)
        if run.ok:
            return size, runs
    return 0, runs


def main(learners: int, sizes: list[int]) -> None:
    from payments_lab.lab import quiet_logs

    quiet_logs()
    first = measure_room(learners)
    print(_line(first), flush=True)
    for error in first.errors:
        print(f"error: {error}", flush=True)
    for check in first.checks:
        if not check.passed:
            print(f"red: {check.learner} {check.exercise} after {check.seconds:.1f} s: {check.message}", flush=True)
    best, runs = largest_room(first, sizes)
    for run in runs[1:]:
        print(_line(run), flush=True)
    print(f"room_max_learners_p95_{P95_TARGET_S:g}s={best}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "learner":
        _, _, learner_name, go_file, ready_file, out_file = sys.argv
        asyncio.run(_learner(learner_name, Path(go_file), Path(ready_file), Path(out_file)))
        os._exit(0)  # Temporal's core threads can abort CPython's teardown (see README, Known noise)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=30, help="learners of the headline room")
    parser.add_argument("--sizes", default="5,10,15,20,40,50", help="other room sizes to try, comma-separated")
    args = parser.parse_args()
    main(args.learners, [int(s) for s in args.sizes.split(",") if s])
    sys.stdout.flush()
    os._exit(0)
